"""The options of ``get``, ``mirror`` and ``put``, read the same way on the command line and
at the prompt.

``filedock-client get …`` adds them to its sub-command; the prompt reads a
``get …``, ``mirror …`` or ``put …`` line with :func:`parse_prompt_line`, whose
parser raises :class:`UsageError` instead of ending the program.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, TextIO


@dataclass(frozen=True, slots=True)
class GetRequest:
    """``get PATH… [-o DIR | -O FILE] [-r] [--no-resume] [--no-clobber] [--json]``.

    ``output`` is None for the default folder (``--downloads``).
    """

    paths: tuple[str, ...]
    output: str | None = None
    save_as: str | None = None
    recursive: bool = False
    resume: bool = True
    no_clobber: bool = False
    json: bool = False


@dataclass(frozen=True, slots=True)
class MirrorRequest:
    """``mirror [FOLDER] DIR [--delete] [--dry-run] [--json]``; ``folder`` None: everything."""

    dest: str
    folder: str | None = None
    delete: bool = False
    dry_run: bool = False
    json: bool = False


@dataclass(frozen=True, slots=True)
class PutRequest:
    """``put LOCAL… [--to REMOTE_FOLDER] [-r] [--replace] [--json]``; ``to`` "" is the top."""

    paths: tuple[str, ...]
    to: str = ""
    recursive: bool = False
    replace: bool = False
    json: bool = False


GET_HELP = "download files or folders (-r), verified by SHA-256; a partial download resumes"
MIRROR_HELP = "make a local folder hold exactly the server's files (of one folder, or all)"
PUT_HELP = "upload files or folders (-r), verified by SHA-256, if the server takes uploads"
PUT_EPILOG = """\
Each file goes to REMOTE_FOLDER/<its name> (a folder with -r: REMOTE_FOLDER/<its
name>/…, hidden files and symlinks leading out of it left out). A file the
server has with the same SHA-256 is skipped; a different one is kept (exit 10)
unless --replace. An upload cut short resumes when run again."""
GET_EPILOG = """\
A PATH with *, ? or [ is a pattern over the server's listing, matched one
folder level at a time as a shell does (quote it: 'docs/*.txt'); ** matches
any number of folders. A file already there with the server's SHA-256 is
skipped; a different one is replaced (or kept with --no-clobber)."""


def add_get_arguments(parser: argparse.ArgumentParser, *, output_default: object) -> None:
    """``get``'s arguments; ``output_default`` is ``-o``'s (argparse.SUPPRESS keeps
    the program's ``--downloads`` when ``-o`` is not given)."""
    parser.add_argument(
        "paths",
        nargs="+",
        metavar="PATH",
        help="a path as `list` shows it, a folder (-r) or a pattern",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "-o",
        "--output",
        dest="downloads",
        default=output_default,
        metavar="DIR",
        help="where files are saved, at their path on the server (default: --downloads)",
    )
    where.add_argument(
        "-O",
        "--output-file",
        dest="save_as",
        metavar="FILE",
        help="save the one file downloaded as FILE",
    )
    parser.add_argument(
        "-r", "--recursive", action="store_true", help="fetch folders, with everything under them"
    )
    parser.add_argument(
        "--no-resume",
        action="store_true",
        help="start again from the first byte instead of continuing a partial download",
    )
    parser.add_argument(
        "--no-clobber",
        action="store_true",
        help="keep a local file that differs from the server's (exit 9) instead of replacing it",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object a line, one per file (see the README)",
    )


def add_mirror_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "folder", nargs="?", metavar="FOLDER", help="the server's folder (default: everything)"
    )
    parser.add_argument("dest", metavar="DIR", help="the local folder made to match it")
    parser.add_argument(
        "--delete", action="store_true", help="delete local files the server does not have"
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would be done, and change nothing"
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object a line, one per change, then the summary",
    )


def add_put_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="LOCAL", help="a local file, or folder (-r)")
    parser.add_argument(
        "--to",
        default="",
        metavar="REMOTE_FOLDER",
        help="the server folder the files go to (default: the top)",
    )
    parser.add_argument(
        "-r", "--recursive", action="store_true", help="send folders, with everything under them"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace a file the server has at that path (by default it is kept: exit 10)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object a line, one per file (see the README)",
    )


def put_request(args: argparse.Namespace) -> PutRequest:
    return PutRequest(
        paths=tuple(args.paths),
        to=args.to.strip("/"),
        recursive=args.recursive,
        replace=args.replace,
        json=args.json,
    )


def get_request(args: argparse.Namespace, fail: Callable[[str], NoReturn]) -> GetRequest:
    """The :class:`GetRequest` of parsed arguments; ``fail`` reports a usage error."""
    if args.save_as is not None and (len(args.paths) > 1 or args.recursive):
        fail("-O FILE names the file of ONE download: give one PATH, without -r (or use -o DIR)")
    return GetRequest(
        paths=tuple(args.paths),
        output=getattr(args, "downloads", None),
        save_as=args.save_as,
        recursive=args.recursive,
        resume=not args.no_resume,
        no_clobber=args.no_clobber,
        json=args.json,
    )


def mirror_request(args: argparse.Namespace) -> MirrorRequest:
    return MirrorRequest(
        dest=args.dest,
        folder=args.folder,
        delete=args.delete,
        dry_run=args.dry_run,
        json=args.json,
    )


class UsageError(Exception):
    """A ``get`` or ``mirror`` line at the prompt that cannot be read; the text says why."""


class HelpShown(Exception):
    """``get --help`` at the prompt: the help was printed, there is nothing to run."""


class _PromptParser(argparse.ArgumentParser):
    """An argument parser that reports instead of ending the program (the prompt goes on),
    and prints its help to the prompt's ``out``."""

    out: TextIO | None = None

    def _print_message(self, message: str, file: object = None) -> None:
        if message:
            (self.out or sys.stdout).write(message)

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status:
            raise UsageError(message or f"{self.prog}: cannot read the line")
        raise HelpShown


_PROMPT_HELP = {
    "get": (GET_HELP, GET_EPILOG),
    "mirror": (MIRROR_HELP, None),
    "put": (PUT_HELP, PUT_EPILOG),
}


def _prompt_parser(word: str, out: TextIO | None) -> _PromptParser:
    description, epilog = _PROMPT_HELP[word]
    parser = _PromptParser(
        prog=word,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    if word == "get":
        add_get_arguments(parser, output_default=None)
    elif word == "put":
        add_put_arguments(parser)
    else:
        add_mirror_arguments(parser)
    parser.out = out
    return parser


PROMPT_WORDS = ("get", "mirror", "put")


def prompt_words(rest: str, is_one_file: Callable[[str], bool]) -> list[str]:
    """The words of what follows ``get`` at the prompt, split as a shell splits them.

    A name with spaces that TAB completed is not quoted: when the unsplit text
    is one of the server's files (``is_one_file``), it is that one path.
    """
    if not rest.startswith("-") and " " in rest and is_one_file(rest):
        return [rest]
    return _split(rest)


def parse_prompt_line(
    word: str, rest: str, is_one_file: Callable[[str], bool], out: TextIO | None = None
) -> GetRequest | MirrorRequest | PutRequest:
    """The request of a ``get``, ``mirror`` or ``put`` line typed at the prompt
    (``--help`` is printed to ``out``, and raises :class:`HelpShown`)."""
    parser = _prompt_parser(word, out)
    args = parser.parse_args(prompt_words(rest, is_one_file) if word == "get" else _split(rest))
    if word == "get":
        return get_request(args, parser.error)
    if word == "put":
        return put_request(args)
    return mirror_request(args)


def _split(rest: str) -> list[str]:
    try:
        return shlex.split(rest)
    except ValueError as exc:  # an unclosed quote
        raise UsageError(f"cannot read the line: {exc}") from None
