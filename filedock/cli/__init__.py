"""The command line: ``filedock server …`` (:mod:`.server`) and ``filedock client …``
(:mod:`.client`), the shell, the one-shot commands and what they print.

Each program's modules are imported when it runs, so the client never loads
the server's (nor the server the client's prompt).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence

from .exitcodes import ExitCode

__all__ = ["client_main", "main", "server_main"]


def server_main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT, SIGTERM or SIGHUP (see ``--help``); its exit status."""
    try:
        from .server import server_main as run
    except ImportError as exc:  # a Unix-only module (fcntl, termios): the client runs there
        print(
            f"filedock server: runs on Linux and macOS only (no module {exc.name!r} here); "
            "the client runs here",
            file=sys.stderr,
        )
        return ExitCode.ERROR
    return run(argv)


def client_main(argv: Sequence[str] | None = None) -> int:
    """The client: the prompt, or one COMMAND (see ``--help``); its exit status."""
    from .client import client_main as run

    return run(argv)


def completion_main(argv: Sequence[str] | None = None) -> int:
    """``filedock completion bash|zsh``: print that shell's completion script."""
    from .completion import completion_main as run

    return run(list(argv or ()))


_PROGRAMS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "server": server_main,
    "client": client_main,
    "completion": completion_main,
}


_HELP = """\
usage: filedock COMMAND [options]

A multi-client TCP file server and its client.

commands:
  server    run the server (filedock server --help)
  client    connect to a server: the prompt, or one command (filedock client --help)
  completion
            print shell completion: eval "$(filedock completion bash)" (or zsh)

options:
  -h, --help  show this help and exit
  --version   print the version and exit
"""


def main(argv: Sequence[str] | None = None) -> int:
    """``filedock server …`` or ``filedock client …``; ``--help``, ``--version``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in _PROGRAMS:
        return _PROGRAMS[args[0]](args[1:])
    if args and args[0] in ("-h", "--help"):
        print(_HELP, end="")
        return ExitCode.OK
    if args and args[0] == "--version":
        from ..version import __version__

        print(f"filedock {__version__}")
        return ExitCode.OK
    if not args:
        print(_HELP, end="", file=sys.stderr)
        return ExitCode.USAGE
    print(f"filedock: unknown command {args[0]!r}{_did_you_mean(args[0])}", file=sys.stderr)
    print("usage: filedock COMMAND [options]   (filedock --help)", file=sys.stderr)
    return ExitCode.USAGE


def _did_you_mean(word: str) -> str:
    import difflib

    close = difflib.get_close_matches(word, list(_PROGRAMS), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""
