"""``filedock client …``: the client's command line, its options object, and the run.

The command line and the environment (``FILEDOCK_HOST``, ``FILEDOCK_PORT``,
``FILEDOCK_DOWNLOADS``, ``FILEDOCK_TIMEOUT``, ``FILEDOCK_CONNECT_TIMEOUT``,
``FILEDOCK_TOKEN``) are read once into a frozen :class:`ClientOptions`;
the prompt (:mod:`.shell`) or one command (:mod:`.oneshot`) runs on it.
:func:`client_main` returns the exit status, so tests can call it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .. import protocol as p
from ..client.address import Address, parse_address
from ..client.client import DEFAULT_HOST, DEFAULT_PORT, Client
from ..client.connection import client_context
from ..client.retry import connect_retrying
from ..errors import FiledockError, ServerFull
from ..hostport import host_port
from ..safetext import printable
from ..version import __version__
from .exitcodes import EXIT_CODES_HELP, ExitCode, exit_code_for
from .oneshot import ONESHOT_COMMANDS, run_oneshot
from .options import (
    HelpFormatter,
    byte_count,
    env_default,
    env_name,
    line_limit,
    ping_count,
    port_number,
    seconds,
    seconds_or_none,
)
from .screen import NORMAL, QUIET, VERBOSE, Screen, capacity_line
from .transfer_options import (
    GET_EPILOG,
    MIRROR_HELP,
    PUT_EPILOG,
    PUT_HELP,
    GetRequest,
    MirrorRequest,
    PutRequest,
    add_get_arguments,
    add_mirror_arguments,
    add_put_arguments,
    get_request,
    mirror_request,
    put_request,
)

if TYPE_CHECKING:
    import ssl  # loaded only for a TLS connection (see client/connection.py)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Every client option, read once; :meth:`connect` opens a :class:`Client` with them.

    ``command`` is the one-shot command (None: the prompt), with its
    ``arguments`` and ``json`` (``get``, ``mirror`` and ``put``: its ``transfer``);
    ``max_time`` and ``max_size`` are None for no limit; ``tls`` is the TLS
    context (None: plain TCP).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    downloads: str = "downloads"
    connect_timeout: float = 10.0
    timeout: float = 30.0
    max_time: float | None = None
    max_size: int | None = None
    max_line: int = p.DEFAULT_MAX_LINE
    tls: ssl.SSLContext | None = None
    token: str | None = None
    command: str | None = None
    arguments: tuple[str, ...] = ()
    json: bool = False
    transfer: GetRequest | MirrorRequest | PutRequest | None = None
    keep_going: bool = False
    verbosity: int = NORMAL
    ping_count: int | None = None
    wait: float | None = None
    pager: bool = True
    # --tls without --cafile or --insecure: a certificate no CA signed is pinned on first use.
    trust_on_first_use: bool = False
    accept_new_certificate: bool = False

    def connect(self) -> Client:
        """A connected, greeted :class:`Client`; raises what connecting raises
        (with ``wait``, once that long has passed while the server was full or not up)."""
        if self.wait is None:
            return self._connect_once()
        told = False

        def waiting(exc: FiledockError, pause: float) -> None:
            nonlocal told
            if not told and self.verbosity > QUIET:  # once: why nothing happens yet
                told = True
                reason = capacity_line(exc.reason) if isinstance(exc, ServerFull) else str(exc)
                print(
                    f"[CLIENT] {printable(reason)}; trying again for up to {self.wait:g} s "
                    "(--wait)",
                    file=sys.stderr,
                    flush=True,
                )

        return connect_retrying(self._connect_once, self.wait, waiting=waiting)

    def _connect_once(self) -> Client:
        client = Client(
            self.host,
            self.port,
            timeout=self.timeout,
            connect_timeout=self.connect_timeout,
            tls=self.tls,
            token=self.token,
            max_time=self.max_time,
            max_size=self.max_size,
            max_line=self.max_line,
            known_servers=self.trust_on_first_use or None,
            accept_new_certificate=self.accept_new_certificate,
        )
        if client.certificate_pinned:
            print(_pinned_notice(client, replaced=self.accept_new_certificate), file=sys.stderr)
        return client


def _pinned_notice(client: Client, *, replaced: bool) -> str:
    """The line that says a server's certificate was pinned, with its fingerprint."""
    where = host_port(client.host, client.port)
    if replaced:
        said = f"the certificate of {where} is now the one pinned for it"
    else:
        said = (
            f"first TLS connection to {where}: its certificate is signed by no CA this "
            "machine trusts, so it is pinned; later connections take only this one"
        )
    return (
        f"[CLIENT] {said} (SHA-256 {client.tls_fingerprint}, in {client.known_servers}). "
        "Compare it with the server's: openssl x509 -noout -fingerprint -sha256 -in cert.pem"
    )


def client_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="filedock-client",
        description="Connect to a filedock server. With no COMMAND, talk to it at a prompt; "
        "with one, run it, print the result and exit (for scripts).",
        formatter_class=HelpFormatter,
        epilog=f"examples:\n{_CLIENT_EXAMPLES}\n{EXIT_CODES_HELP}",
    )
    defaults = ClientOptions()
    parser.add_argument(
        "--host",
        default=argparse.SUPPRESS,  # told apart from FILEDOCK_HOST: see _server_address
        metavar="ADDRESS",
        help=f"the server: HOST, HOST:PORT ([::1]:50001 for IPv6), or a URL "
        f"filedock://[TOKEN@]HOST[:PORT] (filedocks:// for TLS) "
        f"(default: {defaults.host}) [env {env_name('host')}]",
    )
    parser.add_argument(
        "--port",
        type=port_number,
        default=argparse.SUPPRESS,  # told apart from a port in --host
        help=f"server port, 1-65535; a port in --host wins over {env_name('port')}, and a "
        f"different --port with it is an error (default: {defaults.port}) "
        f"[env {env_name('port')}]",
    )
    parser.add_argument(
        "--downloads",
        default=env_default(parser, "downloads", defaults.downloads, str),
        metavar="DIR",
        help=f"where files are saved [env {env_name('downloads')}]",
    )
    parser.add_argument(
        "--connect-timeout",
        type=seconds,
        default=env_default(parser, "connect_timeout", defaults.connect_timeout, seconds),
        metavar="SECONDS",
        help="how long to wait for the connection (and the TLS handshake) "
        f"[env {env_name('connect_timeout')}]",
    )
    parser.add_argument(
        "--timeout",
        type=seconds,
        default=env_default(parser, "timeout", defaults.timeout, seconds),
        metavar="SECONDS",
        help="how long the server may take over each answer; during a file, "
        f"how long it may stay silent [env {env_name('timeout')}]",
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
    parser.add_argument(
        "--wait",
        type=seconds_or_none,
        default=0,
        metavar="SECONDS",
        help="while the server is full or not up yet (connection refused), try again for up "
        "to SECONDS, pausing 0.1 s doubling to 1 s, as curl --retry does; then fail as "
        "without it (0 = try once)",
    )
    parser.add_argument(
        "--max-line",
        type=line_limit,
        default=defaults.max_line,
        metavar="BYTES",
        help="the server's line limit (its --max-line): a longer line is refused here, "
        "unsent, instead of the server closing the session",
    )
    security = parser.add_argument_group("security (see the README)")
    security.add_argument(
        "--tls",
        action="store_true",
        help="connect with TLS, trusting the system's CAs; a certificate none of them signed "
        "is pinned on first use, as ssh does (see --accept-new-certificate)",
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
        "--accept-new-certificate",
        action="store_true",
        help="with --tls: take the certificate the server shows now as its pinned one, "
        "replacing a pin it no longer matches (only when you know the server changed it)",
    )
    security.add_argument(
        "--token-file",
        metavar="FILE",
        help="read the access token from FILE's first token line (or put the token "
        f"itself in {env_name('token')}; this option wins)",
    )
    chatter = parser.add_mutually_exclusive_group()
    chatter.add_argument(
        "-q",
        "--quiet",
        dest="verbosity",
        action="store_const",
        const=QUIET,
        default=argparse.SUPPRESS,  # NORMAL when neither is given, not shown as a "default"
        help="errors only, and what a command was asked to show (a listing, a digest, JSON): "
        "no line per file moved, no progress line, no summary",
    )
    chatter.add_argument(
        "-v",
        "--verbose",
        dest="verbosity",
        action="store_const",
        const=VERBOSE,
        default=argparse.SUPPRESS,
        help="the summary line (files, bytes, time, rate, failures) after every get and put, "
        "of one file too (without it, after those of several files), and a ping's round trip",
    )
    parser.add_argument(
        "--no-pager",
        dest="pager",
        action="store_false",
        default=argparse.SUPPRESS,  # paged when not given; no "(default: True)" in --help
        help="print a long list or status as it is; by default, on a terminal, one that does "
        "not fit goes through FILEDOCK_PAGER, else PAGER, else less (LESS=FRX unless set), "
        "as git does; empty or cat: none. Output that is not a terminal is never paged",
    )
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="with commands piped in (not a terminal): run every line even after one fails "
        "(by default the first failure stops the run, as sftp -b does); the exit status is "
        "the first failure's",
    )
    parser.add_argument("--version", action="version", version=f"filedock-client {__version__}")
    _add_client_commands(parser)
    return parser


_CLIENT_EXAMPLES = """\
  filedock-client                        the interactive prompt
  filedock-client --port 50001 ping
  filedock-client list --json            one JSON document (schema in the README)
  filedock-client list docs              only the files under docs/
  filedock-client hash docs/a.pdf        its SHA-256, as sha256sum prints it
  filedock-client get sample.txt docs/a.pdf -o DIR
  filedock-client get -r docs 'notes/*.txt'   a folder, and files matching a pattern
  filedock-client get big.iso -O /tmp/x.iso   resumes if an earlier run was cut short
  filedock-client mirror docs ./copy --delete  ./copy holds exactly the server's docs/
  filedock-client put report.pdf --to inbox   stored as inbox/report.pdf, verified
  filedock-client put -r photos --to backup   backup/photos/…, what the server has skipped
  filedock-client say "hello there"
  filedock-client < script.txt           one command a line, no prompts; stops at the first
                                         failure with its status (--keep-going: runs them all)
"""


def _add_client_commands(parser: argparse.ArgumentParser) -> None:
    """One sub-command per one-shot command; their options come after the command word."""
    commands = parser.add_subparsers(
        dest="command", metavar="COMMAND", title="commands (run one and exit)"
    )
    for command in ONESHOT_COMMANDS:
        assert command.word is not None  # a message is no one-shot command
        if command.request is p.Get:
            sub = commands.add_parser(
                "get",
                help=command.help,
                description=command.help,
                epilog=GET_EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter,
            )
            add_get_arguments(sub, output_default=argparse.SUPPRESS)
            continue
        sub = commands.add_parser(command.word, help=command.help, description=command.help)
        if command.argument is not None:
            sub.add_argument(
                "arguments",
                nargs="?" if command.optional else "+",
                metavar=command.argument.upper(),
                help=command.argument_help,
            )
        if command.json:
            sub.add_argument(
                "--json", action="store_true", help="print one JSON document (see the README)"
            )
        if command.request is p.Ping:
            sub.add_argument(
                "-c",
                "--count",
                type=ping_count,
                metavar="N",
                help="send N pings, one after the other's answer, printing each round trip "
                "and then min/avg/max, as ping(8) does (without it: the one PONG line)",
            )
    mirror = commands.add_parser("mirror", help=MIRROR_HELP, description=MIRROR_HELP)
    add_mirror_arguments(mirror)
    put = commands.add_parser(
        "put",
        help=PUT_HELP,
        description=PUT_HELP,
        epilog=PUT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_put_arguments(put)


def read_options(argv: Sequence[str] | None = None) -> ClientOptions:
    """The options of a command line (and the environment); exits on a usage error."""
    parser = client_parser()
    args = parser.parse_args(argv)
    host, port, url_token, url_tls = _server_address(parser, args)
    return ClientOptions(
        host=host,
        port=port,
        downloads=args.downloads,
        connect_timeout=args.connect_timeout,
        timeout=args.timeout,
        max_time=args.max_time or None,
        max_size=args.max_size or None,
        max_line=args.max_line,
        tls=_tls_context(parser, args, url_tls),
        trust_on_first_use=_trusts_on_first_use(parser, args, url_tls),
        accept_new_certificate=args.accept_new_certificate,
        token=_token(parser, args, url_token),
        command=args.command,
        arguments=_arguments(getattr(args, "arguments", getattr(args, "paths", None))),
        json=getattr(args, "json", False),
        transfer=_transfer(parser, args),
        keep_going=args.keep_going,
        verbosity=getattr(args, "verbosity", NORMAL),
        ping_count=getattr(args, "count", None),
        wait=args.wait or None,
        pager=getattr(args, "pager", True),
    )


def _transfer(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> GetRequest | MirrorRequest | PutRequest | None:
    if args.command == "get":
        return get_request(args, parser.error)
    if args.command == "mirror":
        return mirror_request(args)
    if args.command == "put":
        return put_request(args)
    return None


def _arguments(given: list[str] | str | None) -> tuple[str, ...]:
    """A command's arguments as a tuple: an optional one is a string, or None."""
    if given is None:
        return ()
    return (given,) if isinstance(given, str) else tuple(given)


def _server_address(
    parser: argparse.ArgumentParser, args: argparse.Namespace
) -> tuple[str, int, str | None, bool]:
    """Host, port, the URL's token and whether it says TLS, from ``--host`` (or
    ``FILEDOCK_HOST``) and ``--port`` (or ``FILEDOCK_PORT``)."""
    given = getattr(args, "host", None)
    source = "--host" if given is not None else env_name("host")
    text = given if given is not None else os.environ.get(env_name("host"))
    try:
        address = parse_address(text) if text is not None else Address(DEFAULT_HOST)
    except ValueError as exc:
        parser.error(f"{source}: {exc}")
    port = getattr(args, "port", None)
    if address.port is not None and port is not None and port != address.port:
        parser.error(f"{source} names port {address.port} and --port {port}: give the port once")
    if port is None:
        port = address.port or env_default(parser, "port", DEFAULT_PORT, port_number)
    if address.token is not None and given is not None:
        # As redis-cli warns of -a: the command line is not private.
        print(
            "[CLIENT] WARNING: a token in --host can be seen by other users of this machine "
            f"(ps); put the address in {env_name('host')}, or the token in --token-file",
            file=sys.stderr,
            flush=True,
        )
    return address.host, port, address.token, bool(address.tls)


def _tls_context(
    parser: argparse.ArgumentParser, args: argparse.Namespace, url_tls: bool = False
) -> ssl.SSLContext | None:
    if not (args.tls or args.cafile or args.insecure or url_tls):
        return None
    if args.insecure:
        print(
            "[CLIENT] WARNING: --insecure: the server's certificate is NOT checked; "
            "anyone on the path can read and change this session",
            file=sys.stderr,
            flush=True,
        )
    try:
        return client_context(args.cafile, insecure=args.insecure)
    except OSError as exc:  # ssl.SSLError included: a missing or bad CA file
        parser.error(f"--cafile {args.cafile}: {exc.strerror or exc}")


def _trusts_on_first_use(
    parser: argparse.ArgumentParser, args: argparse.Namespace, url_tls: bool = False
) -> bool:
    """--tls (or a filedocks:// address) alone pins what no CA signed; --cafile
    trusts that CA only, --insecure nothing."""
    tls = args.tls or url_tls
    if args.accept_new_certificate and not tls:
        parser.error("--accept-new-certificate needs --tls (it replaces a pinned certificate)")
    if args.accept_new_certificate and (args.cafile or args.insecure):
        parser.error("--accept-new-certificate goes with --tls alone, not --cafile or --insecure")
    return bool(tls and not args.cafile and not args.insecure)


def _token(
    parser: argparse.ArgumentParser, args: argparse.Namespace, url_token: str | None = None
) -> str | None:
    token = url_token or os.environ.get(env_name("token")) or None
    if args.token_file and url_token is not None:
        parser.error("a token in the address and --token-file too: give the token once")
    if args.token_file:
        # Here, not at the top: the server's auth module brings asyncio in.
        from ..server.auth import read_token_file

        try:
            token = read_token_file(args.token_file)[0]
        except (OSError, ValueError) as exc:
            parser.error(f"--token-file {args.token_file}: {getattr(exc, 'strerror', None) or exc}")
    if token is not None and (any(c.isspace() for c in token)):
        parser.error("an access token cannot hold white space")
    return token


def client_main(argv: Sequence[str] | None = None) -> int:
    """The client: the prompt, or one COMMAND (see ``--help``); its exit status."""
    options = read_options(argv)
    with _signals_end_the_run():
        return run_client(options)


@contextlib.contextmanager
def _signals_end_the_run() -> Iterator[None]:
    """SIGTERM and SIGHUP end the run as an exception does (exit status 128 + the signal).

    By default they kill the process at once; as an exception they unwind a
    download in progress as Ctrl-C does (its partial file is kept with what
    a resume needs, or removed when it cannot be resumed), and the server is
    left cleanly.
    """
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread may set handlers; a caller's thread keeps its own
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    # SIGHUP is Unix only: where there is none, SIGTERM alone.
    wanted = [signum for signum in (signal.SIGTERM, getattr(signal, "SIGHUP", None)) if signum]
    previous = {signum: signal.signal(signum, stop) for signum in wanted}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def run_client(options: ClientOptions) -> int:
    """The prompt, or ``options.command``; the exit status."""
    if options.command is not None:
        return run_oneshot(options)
    from .shell import Shell, is_terminal  # the prompt's modules: a one-shot command needs none

    batch = not is_terminal(sys.stdin)  # a script's lines, as sftp -b reads them
    try:
        client = options.connect()
    except FiledockError as exc:
        # At a terminal on stdout, where the session would have been; a script's on stderr.
        Screen(sys.stdout, errors=sys.stderr if batch else None).cannot_start(exc)
        return exit_code_for(exc)
    except KeyboardInterrupt:  # Ctrl-C while connecting (or waiting, --wait): no traceback
        return ExitCode.INTERRUPTED
    with client:
        shell = Shell(
            client,
            options.downloads,
            reconnect=options.connect,
            batch=batch,
            keep_going=options.keep_going,
            verbosity=options.verbosity,
            pager=options.pager,
        )
        return shell.run()
