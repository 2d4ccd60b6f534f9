"""The command table (protocol.COMMANDS) and what is made from it.

Every verb is declared once; these tests check that the parser, the server's
dispatch and HELP, the shell's words and help screens and the one-shot
commands offer exactly the table's verbs, and that the error codes are one
enum that the error classes and the client share.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import re
import typing
from pathlib import Path

import pytest

import filedock.errors as errors_module
from filedock import protocol as p
from filedock.cli import oneshot, screen, shell
from filedock.cli.client import client_parser
from filedock.errors import (
    BadRequest,
    RequestError,
    ServerClosing,
    Unauthorized,
    error_for_code,
)
from filedock.server import commands

VERBS = [command for command in p.COMMANDS if command.word is not None]


def _ids(command: p.Command) -> str:
    return command.word or "message"


# The argument a verb's example takes: a path, or fields before one.
_ARGUMENTS = {
    p.Range: f"7 {'ab' * 32} some thing.txt",
    p.Put: f"7 {'ab' * 32} new some thing.txt",
}


def _argument(command: p.Command) -> str:
    return _ARGUMENTS.get(command.request, "some thing.txt")


def _example(command: p.Command) -> p.CommandRequest:
    """A request of ``command``'s verb, with an argument if it takes one."""
    if command.argument is None:
        return p.parse_request(command.usage)
    return p.parse_request(f"{command.word} {_argument(command)}")


# -- the table itself ----------------------------------------------------------------


def test_each_request_type_is_in_the_table_once() -> None:
    requests = [command.request for command in p.COMMANDS]
    assert len(requests) == len(set(requests))
    assert set(requests) == set(typing.get_args(p.CommandRequest))
    assert set(typing.get_args(p.Request)) == {p.Hello, *requests}


def test_each_word_is_declared_once_in_lower_case() -> None:
    words = [str(command.word) for command in VERBS]
    assert len(words) == len(set(words))
    assert all(word == word.lower() and " " not in word for word in words)
    assert tuple(words) == p.COMMAND_WORDS
    # Only a message has no word: it is what a line without a command word is.
    assert [c.request for c in p.COMMANDS if c.word is None] == [p.Message]


@pytest.mark.parametrize("command", p.COMMANDS, ids=_ids)
def test_each_verb_has_help_for_people(command: p.Command) -> None:
    assert command.help.strip()
    assert command.usage
    if command.argument is not None and command.word is not None and not command.optional:
        assert command.missing.strip(), "a verb with an argument says what is missing"


# -- the parser ----------------------------------------------------------------------


@pytest.mark.parametrize("command", VERBS, ids=_ids)
def test_each_verb_parses_in_any_case(command: p.Command) -> None:
    request = _example(command)
    assert type(request) is command.request
    assert command.word is not None
    for spelling in (command.word, command.word.upper(), command.word.title()):
        line = spelling if command.argument is None else f"{spelling} {_argument(command)}"
        assert p.parse_request(line) == request
        assert p.parse_request_line(line.encode()) == request


@pytest.mark.parametrize("command", p.COMMANDS, ids=_ids)
def test_each_verb_round_trips(command: p.Command) -> None:
    request = p.Message("just a line") if command.word is None else _example(command)
    line = p.encode_request(request)
    assert line.endswith(b"\n")
    assert p.parse_request_line(line[:-1]) == request


@pytest.mark.parametrize(
    "command", [c for c in VERBS if c.argument is not None and not c.optional], ids=_ids
)
def test_a_verb_without_its_argument_is_a_bad_request(command: p.Command) -> None:
    assert command.word is not None
    for line in (command.word, command.word.upper()):
        with pytest.raises(BadRequest) as caught:
            p.parse_request_line(line.encode())
        assert caught.value.text == command.missing


@pytest.mark.parametrize("command", [c for c in VERBS if c.argument is None], ids=_ids)
def test_a_word_without_argument_followed_by_more_is_a_message(command: p.Command) -> None:
    line = f"{command.word} and more"
    assert p.parse_request(line) == p.Message(line)


def test_an_optional_argument_may_be_left_out() -> None:
    assert p.parse_request("list") == p.ListFiles()
    assert p.parse_request("LIST docs/sub dir") == p.ListFiles("docs/sub dir")
    assert p.encode_request(p.ListFiles()) == b"LIST\n"
    assert p.encode_request(p.ListFiles("docs")) == b"LIST docs\n"


def test_the_fast_path_holds_exactly_the_verbs_without_argument() -> None:
    expected = {
        spelling.encode(): command.request
        for command in VERBS
        if (command.argument is None or command.optional) and command.word is not None
        for spelling in (command.word, command.word.upper())
    }
    fast = p.messages._LINE_REQUESTS
    assert {line: type(request) for line, request in fast.items()} == expected
    assert fast[b"PING"] == p.Ping()
    assert fast[b"ping"] == p.Ping()


def test_the_missing_argument_texts_keep_their_wording() -> None:
    assert p.COMMANDS_BY_REQUEST[p.Get].missing == "GET needs a path: GET <path>"
    assert p.COMMANDS_BY_REQUEST[p.Say].missing == "SAY needs a text: SAY <text>"
    assert p.COMMANDS_BY_REQUEST[p.Hash].missing == "HASH needs a path: HASH <path>"


def test_encoding_something_that_is_no_request_raises() -> None:
    with pytest.raises(AssertionError):
        p.encode_request(object())  # type: ignore[arg-type]
    with pytest.raises(AssertionError):
        p.encode_reply(object())  # type: ignore[arg-type]


# -- the server ----------------------------------------------------------------------


def test_the_server_has_one_handler_for_each_verb_of_the_table() -> None:
    assert set(commands.HANDLERS) == {command.request for command in p.COMMANDS}


def test_help_keeps_its_wording_and_names_each_verb_once() -> None:
    # A v1 greeting hears v1's line, byte for byte.
    assert p.HELP_TEXT_V1 == (
        "CMDs: help | status | list | get <file> | <filename> | say <text> | ping | who | "
        "uptime | about | exit"
    )
    assert p.HELP_TEXT == (
        "CMDs: help | status | list [folder] | get <file> | hash <path> | "
        "range <offset> <sha256> <path> | put <size> <sha256> <mode> <path> | stats | "
        "<filename> | say <text> | ping | who | "
        "uptime | about | exit"
    )
    listed = p.HELP_TEXT.removeprefix("CMDs: ").split(" | ")
    assert listed == [command.usage for command in p.COMMANDS]


# -- the shell -----------------------------------------------------------------------


def test_the_shell_completes_exactly_the_verbs_it_offers() -> None:
    offered = [c for c in VERBS if c.shell]
    words = {str(c.word) for c in offered} | {alias for c in offered for alias in c.shell_aliases}
    words |= set(shell.PROMPT_WORDS)  # mirror: the prompt's own, made of several requests
    assert set(shell.COMPLETION_WORDS) == words
    assert list(shell.COMPLETION_WORDS) == sorted(words)
    assert shell.ALIASES == {"quit": "exit"}


def test_the_greeting_line_keeps_its_wording() -> None:
    # Quoted word for word by the README's walk-through (cli.md).
    assert screen.COMMANDS_LINE == (
        "Commands: help | list | status | who | ping | uptime | get <file> | <filename> | "
        "about | exit"
    )


def test_the_help_screen_keeps_its_wording_and_lists_every_verb() -> None:
    assert screen.HELP_LINES == (
        ("help", "this list (and the server's own)"),
        ("list [folder]", "the files on the server (or in one folder): path, size, last modified"),
        ("status", "every client since the server started: when it came, when it left"),
        ("stats", "the server's counters: connections, requests, bytes, transfers, refusals"),
        ("who", "the clients connected now"),
        ("ping", "check that the server answers"),
        ("ping -c <n>", "n pings, each with its round trip, then min/avg/max"),
        ("uptime", "how long the server has been running"),
        ("about", "the server's name and version"),
        ("get <file>", "download a file into {downloads}, verified by SHA-256"),
        ("<file>", "the same as get <file>"),
        ("get -r <folder>", "a folder and everything under it"),
        (
            "get 'docs/*.txt'",
            "the files a pattern matches (* stays within a folder, ** crosses them)",
        ),
        (
            "get … -O <file>",
            "save the one file as <file>; also -o <dir>, --no-clobber, --no-resume",
        ),
        (
            "mirror [folder] <dir>",
            "make <dir> hold exactly the server's files (--delete, --dry-run)",
        ),
        ("put <file>…", "upload files, verified by SHA-256 (--to <folder>, -r, --replace)"),
        ("hash <path>", "the SHA-256 of files on the server, printed as sha256sum does"),
        ("say <text>", "send <text> as a message, even if it is a command word"),
        ("<anything else>", "a message: the server echoes it with ACK"),
        ("exit, quit", "leave; Ctrl-D (end of input) leaves too"),
        ("TAB, Up/Down", "complete a command or file name; recall earlier lines (on a terminal)"),
        ("Ctrl-C", "stop a download (the same get resumes it), or cancel the line being typed"),
    )
    shown = {row.split(",")[0] for row, _ in screen.HELP_LINES}
    assert {c.usage for c in VERBS if c.shell} <= shown
    assert "range" not in str(screen.HELP_LINES)  # for the library: not offered at the prompt
    assert "<sha256> <mode>" not in str(screen.HELP_LINES)  # PUT's wire form: the library's


@dataclasses.dataclass(frozen=True)
class _Quota:
    """The request of a verb that is not in the table (yet)."""


def test_a_new_verb_is_listed_by_the_prompt_without_more_code(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A verb the screens' orders do not name comes after the ones they do."""
    extra = p.Command("quota", _Quota, "numbers")  # type: ignore[arg-type]
    monkeypatch.setattr(p, "COMMANDS", (*p.COMMANDS, extra))
    order = screen._in_order(screen._GREETING_ORDER)
    greeting = [c.short_usage for c in order if c.shell_greeting]
    assert " | ".join(greeting[:-1]) == screen.COMMANDS_LINE.removeprefix("Commands: ")
    assert greeting[-1] == "quota"
    help_screen = [c.usage for c in screen._in_order(screen._HELP_ORDER)]
    assert help_screen[-1] == "quota"


class _NoClient:
    """A client that must not be used."""

    closed = False

    def __getattr__(self, name: str) -> object:
        raise AssertionError(f"the shell used client.{name}")


def test_the_shell_refuses_a_verb_it_does_not_offer(monkeypatch: pytest.MonkeyPatch) -> None:
    hidden = dataclasses.replace(p.COMMANDS_BY_REQUEST[p.Ping], shell=False)
    monkeypatch.setitem(p.COMMANDS_BY_REQUEST, p.Ping, hidden)
    out = io.StringIO()
    prompt = shell.Shell(_NoClient(), out=out, err=out, colour=False, line_editing=False)  # type: ignore[arg-type]
    assert prompt.execute("ping") is False
    assert out.getvalue() == "[CLIENT] ping: not available at this prompt\n"


# -- the one-shot commands -----------------------------------------------------------


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = client_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("no sub-commands")


def test_the_one_shot_commands_are_exactly_the_table_s() -> None:
    offered = [c for c in p.COMMANDS if c.oneshot]
    assert tuple(offered) == oneshot.ONESHOT_COMMANDS
    assert set(oneshot._HANDLERS) == {c.request for c in offered}
    # The table's verbs, then the client's own commands made of several requests.
    assert list(_subcommands()) == [c.word for c in offered] + list(oneshot.CLIENT_COMMANDS)


@pytest.mark.parametrize("command", [c for c in p.COMMANDS if c.oneshot], ids=_ids)
def test_each_one_shot_command_has_its_help_and_options(command: p.Command) -> None:
    sub = _subcommands()[str(command.word)]
    assert command.help in sub.format_help().replace("\n", " ").replace("  ", " ")
    options = {option for action in sub._actions for option in action.option_strings}
    assert ("--json" in options) is command.json
    positional = [action for action in sub._actions if not action.option_strings]
    assert bool(positional) is (command.argument is not None)
    if command.argument is not None:
        # get takes folders (-r) and patterns too: PATH, not FILE.
        expected = "PATH" if command.request is p.Get else command.argument.upper()
        assert positional[0].metavar == expected
        assert positional[0].nargs == ("?" if command.optional else "+")


# -- error codes ---------------------------------------------------------------------


def test_each_error_code_is_one_word_of_the_wire() -> None:
    for code in p.ErrorCode:
        reply = p.ErrorReply(code, "why")
        assert p.parse_reply(p.encode_reply(reply).decode()[:-1]) == reply


def test_the_error_classes_take_their_codes_from_the_enum() -> None:
    classes = [
        value
        for value in vars(errors_module).values()
        if isinstance(value, type) and isinstance(getattr(value, "code", None), str)
    ]
    assert len(classes) >= 8
    for cls in classes:
        assert isinstance(getattr(cls, "code", None), p.ErrorCode), cls


@pytest.mark.parametrize("code", list(p.ErrorCode))
def test_the_closing_codes_are_the_same_for_errors_and_client(code: p.ErrorCode) -> None:
    error = error_for_code(code, "text")
    assert isinstance(error, RequestError)
    assert error.code == code
    assert isinstance(error, ServerClosing) is code.closes
    assert code.closes is (code in p.CLOSING_CODES)
    if code == p.ErrorCode.UNAUTHORIZED:
        assert isinstance(error, Unauthorized)


def test_protocol_md_lists_each_code_and_whether_it_closes() -> None:
    text = (Path(__file__).resolve().parents[2] / "PROTOCOL.md").read_text(encoding="utf-8")
    rows = dict(re.findall(r"^\| `([a-z-]+)` \| .* \| ([a-z ]+) \|$", text, re.M))
    assert set(rows) == set(p.ErrorCode)
    for code in p.ErrorCode:
        assert (rows[code] == "closed") is code.closes, code
