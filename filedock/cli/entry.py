"""Command lines of both programs: ``filedock server …`` and ``filedock client …``.

Each server option has an environment-variable twin (``--max-clients`` is
``FILEDOCK_MAX_CLIENTS``); the command line wins over the environment. The
entry points return an exit status, so tests can call them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import math
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from typing import Any

from ..client.client import (
    DEFAULT_HOST,
    DEFAULT_PORT,
    MAX_SECONDS,
    Client,
    check_port,
    check_seconds,
)
from ..errors import FiledockError
from ..server.config import LOOP_CHOICES, ServerConfig
from ..server.logs import configure_logging
from ..version import __version__, server_banner
from .exitcodes import EXIT_CODES_HELP, ExitCode, exit_code_for

ENV_PREFIX = "FILEDOCK_"

log = logging.getLogger("filedock.server")

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

_SERVER_HELP = {
    "host": "address to listen on",
    "port": "TCP port to listen on (0 picks a free one, named in the log)",
    "max_clients": "clients served at once; more are answered FULL",
    "repo": "folder whose files are served (created if missing)",
    "handshake_timeout": "seconds a new connection has to finish TLS and send HELLO",
    "idle_timeout": "seconds without a complete line before a client is dropped (0 = never)",
    "max_line": "longest line accepted, in bytes, CR and LF included",
    "history": "finished clients kept in status",
    "shutdown_grace": "seconds a transfer in flight may finish at shutdown",
    "send_timeout": "seconds without write progress before a client that does not read is dropped",
    "log_level": "least severe log level shown",
    "max_clients_per_ip": "slots one client source may hold (0 = no limit beyond --max-clients; "
    "-1 = half of --max-clients, rounded up, for a remote source and no cap for this machine)",
    "max_pending": "connections still in their handshake (TLS, HELLO, token) at once; "
    "more are answered FULL",
    "max_pending_per_ip": "connections one source may have in their handshake at once",
    "max_auth_failures_at_once": "answers to wrong access tokens one source may have in "
    "progress; more wait their turn, in order",
    "max_auth_failures_per_minute": "failed access tokens one source may have in 60 s; "
    "past it every token answer from it waits the longest delay (8 s)",
    "ipv4_prefix": "leading bits of an IPv4 address that make one source for the per-source "
    "limits (every 127.x address is one source)",
    "ipv6_prefix": "leading bits of an IPv6 address that make one source for the per-source limits",
    "tls_cert": "certificate chain (PEM) to serve over TLS; needs --tls-key",
    "tls_key": "private key (PEM) of --tls-cert",
    "token_file": "file of access tokens, one a line; clients must greet with one",
    "loop": "event loop: uvloop (pip install filedock[fast]) or the standard asyncio one; "
    "auto uses uvloop when it is installed",
}


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


class _Formatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    pass


def _env_default(parser: argparse.ArgumentParser, field: str, default: Any, kind: type) -> Any:
    raw = os.environ.get(env_name(field))
    if raw is None:
        return default
    try:
        return kind(raw)
    except ValueError:
        parser.error(f"{env_name(field)}={raw!r} is not a valid {kind.__name__}")


def server_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="filedock-server",
        description="Serve a folder's files to up to --max-clients clients over TCP.",
        formatter_class=_Formatter,
        epilog=f"Every option can also be set with an environment variable: {ENV_PREFIX}PORT, "
        f"{ENV_PREFIX}MAX_CLIENTS, … (the option's name in capitals).",
    )
    defaults = ServerConfig()
    for field in fields(ServerConfig):
        default = getattr(defaults, field.name)
        kind = str if default is None else type(default)
        flag = "--" + field.name.replace("_", "-")
        extra: dict[str, Any] = {}
        if field.name == "log_level":
            extra["choices"] = _LOG_LEVELS
            extra["type"] = str.upper
        elif field.name == "loop":
            extra["choices"] = LOOP_CHOICES
            extra["type"] = str.lower
        else:
            extra["type"] = kind
        parser.add_argument(
            flag,
            dest=field.name,
            default=_env_default(parser, field.name, default, kind),
            help=f"{_SERVER_HELP[field.name]} [env {env_name(field.name)}]",
            metavar=None if "choices" in extra else field.name.upper(),
            **extra,
        )
    parser.add_argument("--version", action="version", version=server_banner())
    parser.add_argument(
        "--generate-token",
        action="store_true",
        help="print a new random access token (256 bits) for a --token-file, and exit",
    )
    return parser


def server_main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT, SIGTERM or SIGHUP; 0 after a clean shutdown."""
    parser = server_parser()
    args = parser.parse_args(argv)
    if args.__dict__.pop("generate_token"):
        from ..server.auth import generate_token

        print(generate_token(), flush=True)
        return 0
    try:
        config = ServerConfig(**vars(args))
    except ValueError as exc:
        parser.error(str(exc))
    configure_logging(config.log_level)
    print(f"filedock server {__version__}", flush=True)
    try:
        if not os.path.isdir(config.repo):
            os.makedirs(config.repo)
            log.info("Created repository folder %r", os.path.abspath(config.repo))
        from ..server.server import (
            event_loop_factory,  # the client never needs the server's modules
        )

        with asyncio.Runner(loop_factory=event_loop_factory(config.loop)) as runner:
            return runner.run(_serve(config))
    except (OSError, ValueError) as exc:
        log.error("Cannot start the server: %s", _reason(exc))
        return 1


async def _serve(config: ServerConfig) -> int:
    from ..server.server import Server  # the client never needs the server's modules

    server = Server(config)
    loop = asyncio.get_running_loop()
    # Handlers before start(): a script that sends a signal as soon as it reads
    # the "Starting server" line must get a clean shutdown, not a traceback.
    # SIGHUP (the terminal closed) stops it the same way; the log goes to
    # stderr, so there is no log file to reopen.
    for signum in _STOP_SIGNALS:
        loop.add_signal_handler(signum, server.request_stop)
    await server.start()
    try:
        await server.serve_until_stopped()
    except OSError as exc:  # anything else is a bug, and its traceback is wanted
        log.error("The server stopped on an error: %s", _reason(exc))
        return 1
    finally:
        _ignore_stop_signals(loop)
    return 0


_STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _ignore_stop_signals(loop: asyncio.AbstractEventLoop) -> None:
    """Once the server has shut down the process only exits. Closing the loop would
    give these signals their default action back, and a repeated Ctrl-C or SIGTERM
    would then kill a process whose shutdown was clean: ignore them instead."""
    for signum in _STOP_SIGNALS:
        loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)


def _reason(exc: BaseException) -> str:
    return str(getattr(exc, "strerror", None) or exc)


def client_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="filedock-client",
        description="Connect to a filedock server. With no COMMAND, talk to it at a prompt; "
        "with one, run it, print the result and exit (for scripts).",
        formatter_class=_Formatter,
        epilog=f"examples:\n{_CLIENT_EXAMPLES}\n{EXIT_CODES_HELP}",
    )
    parser.add_argument(
        "--host",
        default=_client_env(parser, "host", DEFAULT_HOST, str),
        help=f"server address [env {env_name('host')}]",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=_client_env(parser, "port", DEFAULT_PORT, port_number),
        help=f"server port, 1-65535 [env {env_name('port')}]",
    )
    parser.add_argument(
        "--downloads", default="downloads", metavar="DIR", help="where files are saved"
    )
    parser.add_argument(
        "--connect-timeout",
        type=seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the connection (and the TLS handshake)",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long the server may take over each answer; during a file, "
        "how long it may stay silent",
    )
    parser.add_argument(
        "--max-time",
        type=seconds_or_none,
        default=0,
        metavar="SECONDS",
        help="how long a whole command may take, a download included (0 = no limit)",
    )
    parser.add_argument(
        "--max-size",
        type=byte_count,
        default=0,
        metavar="BYTES",
        help="refuse a file larger than this, before writing it; "
        "K, M, G, T suffixes are powers of 1024 (0 = no limit)",
    )
    security = parser.add_argument_group("security (see the README)")
    security.add_argument(
        "--tls", action="store_true", help="connect with TLS, trusting the system's CAs"
    )
    security.add_argument(
        "--cafile", metavar="FILE", help="connect with TLS, trusting the CA certificates in FILE"
    )
    security.add_argument(
        "--insecure",
        action="store_true",
        help="connect with TLS but check no certificate (testing a self-signed server only)",
    )
    security.add_argument(
        "--token-file",
        metavar="FILE",
        help=f"read the access token from FILE's first token line [env {env_name('token')}]",
    )
    parser.add_argument("--version", action="version", version=f"filedock-client {__version__}")
    _add_client_commands(parser)
    return parser


def _client_env(
    parser: argparse.ArgumentParser, field: str, default: Any, kind: Callable[[str], Any]
) -> Any:
    """The value of ``FILEDOCK_<FIELD>`` read as the option would be, or ``default``."""
    raw = os.environ.get(env_name(field))
    if raw is None:
        return default
    try:
        return kind(raw)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        parser.error(f"{env_name(field)}: {exc}")


def _plain_number(text: str) -> str:
    """``text`` if it is written in ASCII with no ``_``: Python's own parsers also
    read ``5_0000`` and other scripts' digits, which nobody means on a command line."""
    if not text.isascii() or "_" in text:
        raise ValueError(text)
    return text


def port_number(text: str) -> int:
    """A ``--port`` value: a whole number from 1 to 65535."""
    try:
        return check_port(int(_plain_number(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1-65535)") from None


def seconds(text: str) -> float:
    """A time in seconds: over 0, finite."""
    try:
        return check_seconds("a time", float(_plain_number(text)))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time in seconds (over 0, at most {MAX_SECONDS:.0f})"
        ) from None


def seconds_or_none(text: str) -> float:
    """A time in seconds, or 0 for none."""
    try:
        value = float(_plain_number(text))
    except ValueError:
        value = math.nan
    if value == 0:
        return 0.0
    try:
        return check_seconds("a time", value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time in seconds (0 for none, at most {MAX_SECONDS:.0f})"
        ) from None


_SIZE_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}
_SIZE = re.compile(r"(\d{1,20})([KMGT]?)(?:i?B)?", re.IGNORECASE | re.ASCII)


def byte_count(text: str) -> int:
    """A size in bytes: digits, with an optional K, M, G or T (powers of 1024)."""
    match = _SIZE.fullmatch(text.strip())
    if match is None or not match.group(1).isascii():
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a size in bytes (such as 1000000, 500K, 2G)"
        )
    return int(match.group(1)) * _SIZE_UNITS[match.group(2).upper()]


def _resolve_security(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Turn the security options into ``args.tls_context`` and ``args.token``."""
    from .. import tls
    from ..server.auth import read_token_file

    args.tls_context = None
    if args.tls or args.cafile or args.insecure:
        if args.insecure:
            print(
                "[CLIENT] WARNING: --insecure: the server's certificate is NOT checked; "
                "anyone on the path can read and change this session",
                file=sys.stderr,
                flush=True,
            )
        try:
            args.tls_context = tls.client_context(args.cafile, insecure=args.insecure)
        except OSError as exc:  # ssl.SSLError included: a missing or bad CA file
            parser.error(f"--cafile {args.cafile}: {exc.strerror or exc}")
    args.token = os.environ.get(env_name("token")) or None
    if args.token_file:
        try:
            args.token = read_token_file(args.token_file)[0]
        except (OSError, ValueError) as exc:
            parser.error(f"--token-file {args.token_file}: {getattr(exc, 'strerror', None) or exc}")
    if args.token is not None and (any(c.isspace() for c in args.token)):
        parser.error("an access token cannot hold white space")


_CLIENT_EXAMPLES = """\
  filedock-client                        the interactive prompt
  filedock-client --port 50001 ping
  filedock-client list --json            one JSON document (schema in the README)
  filedock-client get sample.txt docs/a.pdf -o DIR
  filedock-client say "hello there"
"""


def _add_client_commands(parser: argparse.ArgumentParser) -> None:
    """One sub-command per one-shot command; their options come after the command word."""
    from .. import protocol as p
    from .oneshot import ONESHOT_COMMANDS

    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands (run one and exit)"
    )
    for command in ONESHOT_COMMANDS:
        assert command.word is not None  # a message is no one-shot command
        sub = commands.add_parser(command.word, help=command.help, description=command.help)
        if command.argument is not None:
            sub.add_argument(
                "arguments",
                nargs="+",
                metavar=command.argument.upper(),
                help=command.argument_help,
            )
        if command.json:
            sub.add_argument(
                "--json", action="store_true", help="print one JSON document (see the README)"
            )
        if command.request is p.Get:  # where the files go
            sub.add_argument(
                "-o",
                "--output",
                dest="downloads",
                default=argparse.SUPPRESS,
                metavar="DIR",
                help="where files are saved (default: --downloads, ./downloads)",
            )


def _open_client(args: argparse.Namespace) -> Client:
    return Client(
        args.host,
        args.port,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
        tls=args.tls_context,
        token=args.token,
        max_time=args.max_time or None,
        max_size=args.max_size or None,
    )


def client_main(argv: Sequence[str] | None = None) -> int:
    """The client: the prompt, or one COMMAND (see ``--help``); its exit status."""
    parser = client_parser()
    args = parser.parse_args(argv)
    _resolve_security(parser, args)
    with _signals_end_the_run():
        return _run_client(args)


@contextlib.contextmanager
def _signals_end_the_run() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as an exception does (exit status 128 + the signal).

    By default they kill the process at once, leaving the partial file of a
    download in progress behind; as an exception they unwind it, so it is
    removed and the server is left cleanly.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; a caller's thread keeps its own
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    wanted = (signal.SIGTERM, signal.SIGHUP)
    previous = {signum: signal.signal(signum, stop) for signum in wanted}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _run_client(args: argparse.Namespace) -> int:
    if args.command is not None:
        from .oneshot import run_oneshot

        return run_oneshot(args, _open_client)
    from .screen import Screen
    from .shell import Shell

    try:
        client = _open_client(args)
    except FiledockError as exc:
        Screen(sys.stdout).cannot_start(exc)  # on stdout, where the session would have been
        return exit_code_for(exc)
    with client:
        return Shell(client, args.downloads).run()


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
