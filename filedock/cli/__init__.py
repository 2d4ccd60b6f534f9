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
    from .server import server_main as run

    return run(argv)


def client_main(argv: Sequence[str] | None = None) -> int:
    """The client: the prompt, or one COMMAND (see ``--help``); its exit status."""
    from .client import client_main as run

    return run(argv)


_PROGRAMS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "server": server_main,
    "client": client_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    """``filedock server …`` or ``filedock client …``."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in _PROGRAMS:
        print(
            "usage: filedock {server,client} [options]   (filedock server --help)", file=sys.stderr
        )
        return ExitCode.USAGE if args and args[0] not in ("-h", "--help") else ExitCode.OK
    return _PROGRAMS[args[0]](args[1:])
