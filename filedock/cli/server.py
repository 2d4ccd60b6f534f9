"""``filedock server …``: the server's command line, its logging, signals and event loop.

Every option maps 1:1 to a :class:`~filedock.server.config.ServerConfig` field
and has an environment-variable twin (``--max-clients`` is
``FILEDOCK_SERVER_MAX_CLIENTS``; the older ``FILEDOCK_MAX_CLIENTS`` is read
when it is unset, see :mod:`.options`). :func:`server_main` returns the exit status, so
tests can call it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import fields
from typing import Any

try:
    import resource
except ImportError:  # not on Windows: no descriptor limit to raise there
    resource = None  # type: ignore[assignment]

from ..server.auth import generate_token
from ..server.config import (
    DEFAULT_REPO,
    LOG_FORMATS,
    LOOP_CHOICES,
    STATUS_ADDRESSES,
    ConfigError,
    ServerConfig,
)
from ..server.logs import LogWriter, configure_logging
from ..server.server import Server, event_loop_factory
from ..version import __version__, server_banner
from .exitcodes import ExitCode
from .options import (
    ENV_PREFIX,
    SERVER_ENV_PREFIX,
    HelpFormatter,
    byte_count,
    env_default,
    env_name,
    server_env_name,
)

log = logging.getLogger("filedock.server")

_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

# --registry without redis-py: what to install, in one line (exit 2).
REDIS_MISSING = "filedock-server: --registry needs the Redis client: pip install 'filedock[redis]'"

_SERVER_HELP = {
    "host": "address to listen on: 0.0.0.0 for every IPv4 address, :: for every IPv6 and IPv4 one",
    "port": "TCP port to listen on (0 picks a free one, named in the log)",
    "max_clients": "clients served at once; more are answered FULL",
    "repo": "folder whose files are served (must exist; the default one is created if missing)",
    "handshake_timeout": "seconds a new connection has to finish TLS and send HELLO",
    "idle_timeout": "seconds without a complete line before a client is dropped (0 = never)",
    "max_line": "longest line accepted, in bytes, CR and LF included",
    "history": "finished clients kept in status",
    "status_addresses": "what a client sees in status of the addresses: all, its own only, "
    "or hidden (none); the log shows them all",
    "compact_history": "a run of brief sessions (under 2 s, such as one-shot commands) from one "
    "address keeps only its latest row in status",
    "shutdown_grace": "seconds a transfer in flight may finish at shutdown",
    "send_timeout": "seconds without write progress before a client that does not read is dropped",
    "log_level": "least severe log level shown (the Starting server line is shown at any level)",
    "log_file": "append the log to this file (made mode 0640) instead of stderr, where errors "
    "still show too; SIGHUP then reopens it (for logrotate) instead of stopping the server",
    "log_format": "log lines as text ([time] LEVEL: message) or json (one object a line: "
    "time, level, message, and the line's fields: event, client, path, bytes, seconds, …)",
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
    "state_dir": "folder for what the server keeps across restarts (the digest cache); "
    "default: .filedock inside the repository, never listed or served",
    "allow_upload": "take uploads (PUT); with --token-file, only from tokens with the write right",
    "max_upload_size": "largest upload taken, in bytes (K, M, G, T: powers of 1024)",
    "min_free_space": "space an upload must leave free on its file system, in bytes (K, M, G, "
    "T); -1: the larger of 1 GiB and 5%% of the file system",
    "upload_expiry": "seconds an interrupted upload is kept for a resume; older ones are "
    "removed at start-up",
    "http": "serve the status page, /metrics, /healthz and /status.json over HTTP on "
    "HOST:PORT (PORT or :PORT: this machine only); off by default",
    "http_insecure": "let --http listen beyond this machine with no --token-file "
    "(anyone who reaches it sees who is connected and what they fetch)",
    "registry": "share clients, names and capacity with the other servers on this Redis "
    "(redis://HOST:PORT/DB, rediss://…, unix://PATH): several servers as one "
    "(pip install 'filedock[redis]'); off by default",
    "node": "this server's name among several with --registry, shown in status and the log "
    "(default: the host name)",
    "lease": "seconds a server's slots in --registry outlive it if it stops renewing them "
    "(every lease/3); it closes its clients itself if it cannot renew in time",
    "proxy_protocol": "behind a load balancer: every connection must start with a PROXY "
    "protocol header (v1 or v2: HAProxy's send-proxy, send-proxy-v2), whose client address "
    "is then used for status, the per-address limits and the log",
    "proxy_from": "addresses or networks (CIDR), comma-separated, allowed to send the PROXY "
    "header; a connection from any other is closed",
}


# Options that take one of a few words: the words, and how a value is read
# (log levels in capitals, the rest in lower case).
_CHOICES: dict[str, tuple[tuple[str, ...], Callable[[str], str]]] = {
    "log_level": (_LOG_LEVELS, str.upper),
    "loop": (LOOP_CHOICES, str.lower),
    "log_format": (LOG_FORMATS, str.lower),
    "status_addresses": (STATUS_ADDRESSES, str.lower),
}


def server_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="filedock-server",
        description="Serve a folder's files to up to --max-clients clients over TCP.",
        formatter_class=HelpFormatter,
        epilog="Every option can also be set with an environment variable: "
        f"{SERVER_ENV_PREFIX}PORT, {SERVER_ENV_PREFIX}MAX_CLIENTS, … (the option's name in "
        "capitals). The older names "
        "without SERVER_ (FILEDOCK_PORT, …) are still read when the new one is unset; the "
        "client reads FILEDOCK_HOST and FILEDOCK_PORT for itself.",
    )
    defaults = ServerConfig()
    for field in fields(ServerConfig):
        default = getattr(defaults, field.name)
        kind: Callable[[str], Any] = str if default is None else type(default)
        flag = "--" + field.name.replace("_", "-")
        extra: dict[str, Any] = {}
        if field.name in _CHOICES:
            extra["choices"], extra["type"] = _CHOICES[field.name]
        elif kind is bool:
            kind = on_or_off
            extra["action"] = argparse.BooleanOptionalAction
        elif field.name in _BYTE_FIELDS:
            kind = extra["type"] = _bytes_or_auto
        elif field.name == "proxy_from":
            kind = extra["type"] = comma_list
            default = ",".join(default)  # shown as written; argparse reads it with the type
        else:
            extra["type"] = kind
        names = server_env_name(field.name), env_name(field.name)  # the new name first
        from_env = env_default(parser, field.name, default, kind, names)
        if "action" in extra:  # a switch: no value, no metavar
            parser.add_argument(
                flag,
                dest=field.name,
                default=from_env,
                help=f"{_SERVER_HELP[field.name]} [env {names[0]}=1, or {names[1]}]",
                **extra,
            )
            continue
        parser.add_argument(
            flag,
            dest=field.name,
            default=from_env,
            help=f"{_SERVER_HELP[field.name]} [env {names[0]}, or {names[1]}]",
            metavar=None if "choices" in extra else field.name.upper(),
            **extra,
        )
    parser.add_argument(
        "folder",
        nargs="?",
        metavar="DIR",
        help="the folder to share: the same as --repo DIR (give one of them, or both the same)",
    )
    parser.add_argument("--version", action="version", version=server_banner())
    parser.add_argument(
        "--generate-token",
        action="store_true",
        help="print a new random access token (256 bits) for a --token-file, and exit",
    )
    return parser


# The server's older environment names that the client reads too (FILEDOCK_HOST,
# FILEDOCK_PORT): still honoured, and said at start, since one shell's client
# settings would otherwise move the server without a word.
_SHARED_FIELDS = ("host", "port")


def shared_env_names_used() -> list[str]:
    """The older shared names the server took its value from (its own name unset)."""
    return [
        env_name(field)
        for field in _SHARED_FIELDS
        if env_name(field) in os.environ and server_env_name(field) not in os.environ
    ]


_BYTE_FIELDS = frozenset({"max_upload_size", "min_free_space"})

_ON = frozenset({"1", "yes", "true", "on"})
_OFF = frozenset({"0", "no", "false", "off", ""})


def on_or_off(text: str) -> bool:
    """A switch's environment value: 1, yes, true, on, or 0, no, false, off."""
    word = text.strip().lower()
    if word in _ON:
        return True
    if word in _OFF:
        return False
    raise argparse.ArgumentTypeError(f"{text!r} is not on or off (1 or 0, yes or no)")


def comma_list(text: str) -> tuple[str, ...]:
    """``a, b,c`` as ``("a", "b", "c")``: empty items dropped."""
    return tuple(item.strip() for item in text.split(",") if item.strip())


def _bytes_or_auto(text: str) -> int:
    """A size in bytes (``4G``), or -1 (the option's automatic value)."""
    if text.strip() == "-1":
        return -1
    return byte_count(text)


def server_main(argv: Sequence[str] | None = None) -> int:
    """Run the server until SIGINT, SIGTERM or SIGHUP (SIGHUP reopens a --log-file
    instead); 0 after a clean shutdown."""
    parser = server_parser()
    args = parser.parse_args(argv)
    if args.__dict__.pop("generate_token"):
        print(generate_token(), flush=True)
        return 0
    _folder_or_repo(parser, args)
    try:
        config = ServerConfig(**vars(args))
    except ConfigError as exc:
        parser.error(exc.option_text())
    if config.registry is not None and importlib.util.find_spec("redis") is None:
        print(REDIS_MISSING, file=sys.stderr, flush=True)  # the one line, before any other
        return ExitCode.USAGE
    try:
        writer = configure_logging(
            config.log_level, log_file=config.log_file, log_format=config.log_format
        )
    except OSError as exc:
        parser.error(f"--log-file {config.log_file}: {exc.strerror or exc}")
    print(f"filedock server {__version__}", flush=True)
    for old in shared_env_names_used():
        log.warning(
            "%s is read as the server's: an older name the client reads too; "
            "%s is the server's own",
            old,
            old.replace(ENV_PREFIX, SERVER_ENV_PREFIX, 1),
        )
    raise_descriptor_limit(config.max_clients)
    try:
        _prepare_repo(config.repo)
        with asyncio.Runner(loop_factory=event_loop_factory(config.loop)) as runner:
            return runner.run(_serve(config, writer))
    except (OSError, ValueError) as exc:
        log.error("Cannot start the server: %s", _reason(exc))
        return 1
    finally:
        writer.close()  # every line out before the exit status


async def _serve(config: ServerConfig, writer: LogWriter | None = None) -> int:
    server = Server(config)
    loop = asyncio.get_running_loop()
    # Handlers before start(): a script that sends a signal as soon as it reads
    # the "Starting server" line must get a clean shutdown, not a traceback.
    # SIGHUP (the terminal closed) stops it the same way when the log goes to
    # stderr; with a log file it is logrotate's "reopen the log" instead.
    for signum in _STOP_SIGNALS:
        if signum == _SIGHUP and writer is not None and writer.file is not None:
            on_signal(loop, signum, writer.reopen)
        else:
            on_signal(loop, signum, server.request_stop)
    await server.start()
    try:
        await server.serve_until_stopped()
    except OSError as exc:  # anything else is a bug, and its traceback is wanted
        log.error("The server stopped on an error: %s", _reason(exc))
        return 1
    finally:
        _ignore_stop_signals(loop)
    return 0


# SIGHUP is Unix only.
_SIGHUP = getattr(signal, "SIGHUP", None)
_STOP_SIGNALS = tuple(
    signum for signum in (signal.SIGINT, signal.SIGTERM, _SIGHUP) if signum is not None
)


def on_signal(loop: asyncio.AbstractEventLoop, signum: int, callback: Callable[[], None]) -> None:
    """Run ``callback`` on the loop when ``signum`` arrives.

    ``loop.add_signal_handler`` where the loop has it (Unix); else (Windows'
    loop raises NotImplementedError) a plain handler that hands the call to
    the loop, which is safe from a signal handler.
    """
    try:
        loop.add_signal_handler(signum, callback)
    except NotImplementedError:
        signal.signal(signum, lambda _signum, _frame: loop.call_soon_threadsafe(callback))


def _ignore_stop_signals(loop: asyncio.AbstractEventLoop) -> None:
    """Once the server has shut down the process only exits. Closing the loop would
    give these signals their default action back, and a repeated Ctrl-C or SIGTERM
    would then kill a process whose shutdown was clean: ignore them instead.

    Ignored first, then forgotten by the loop: ``remove_signal_handler`` restores
    the default action, and a signal in that moment killed the process."""
    for signum in _STOP_SIGNALS:
        signal.signal(signum, signal.SIG_IGN)
    # asyncio's own loop keeps its handlers in this dict; forgetting them there
    # leaves SIG_IGN in place when the loop closes. Another loop (uvloop) gets
    # the public call, and the short moment of the default action with it.
    handlers = getattr(loop, "_signal_handlers", None)
    if isinstance(handlers, dict):
        for signum in _STOP_SIGNALS:
            handlers.pop(signum, None)
        if not handlers:
            signal.set_wakeup_fd(-1)
        return
    for signum in _STOP_SIGNALS:
        with contextlib.suppress(NotImplementedError):  # a loop with none (see on_signal)
            loop.remove_signal_handler(signum)
        signal.signal(signum, signal.SIG_IGN)


# Descriptors the server needs besides one per client: listening sockets,
# files being sent, hashing threads, the log.
_SPARE_DESCRIPTORS = 64


def raise_descriptor_limit(max_clients: int) -> None:
    """Raise the open-file soft limit to the hard limit, as Redis and nginx do.

    Logs one line when ``max_clients`` still cannot be honoured; does nothing
    where there is no :mod:`resource` (Windows).
    """
    if resource is None:
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError):
            pass
    if soft != resource.RLIM_INFINITY and soft < max_clients + _SPARE_DESCRIPTORS:
        log.warning(
            "Only %d file descriptors available: fewer than max_clients=%d can be served at once",
            soft,
            max_clients,
        )


def _folder_or_repo(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``filedock-server DIR`` is ``--repo DIR`` (as ``python -m http.server``
    and ``miniserve DIR``); both naming different folders is a usage error."""
    folder = args.__dict__.pop("folder")
    if folder is None:
        return
    given = args.repo != parser.get_default("repo")  # --repo on the command line
    if given and os.path.normpath(args.repo) != os.path.normpath(folder):
        parser.error(f"the folder {folder} and --repo {args.repo} differ: give one of them")
    args.repo = folder


def _prepare_repo(repo: str) -> None:
    """Make the default repository on first start; any other must exist already.

    Making a mistyped ``--repo typo/deep/er`` on the spot served an empty tree
    without a word. Raises ValueError naming the option and the value.
    """
    if os.path.isdir(repo):
        return
    if os.path.lexists(repo):
        raise ValueError(f"--repo {repo}: not a folder")
    if repo != DEFAULT_REPO:
        raise ValueError(f"--repo {repo}: no such folder (create it first)")
    os.mkdir(repo)
    log.info("Created repository folder %r", os.path.abspath(repo))


def _reason(exc: BaseException) -> str:
    """An error in words for the log, naming the file when there is one (a token
    file or a certificate that is not there said only "No such file or directory")."""
    text = str(getattr(exc, "strerror", None) or exc)
    filename = getattr(exc, "filename", None)
    return f"{filename}: {text}" if filename and str(filename) not in text else text
