"""The server's settings: one frozen object, passed down, never global."""

from __future__ import annotations

import ipaddress
import math
import os
import socket
from dataclasses import dataclass

from ..protocol import DEFAULT_MAX_LINE, MAX_LINE_LIMIT
from .addresses import (
    DEFAULT_IPV4_PREFIX,
    DEFAULT_IPV6_PREFIX,
    LOOPBACK,
    check_prefix,
    is_loopback_host,
)

# "auto" runs on uvloop when it is installed (pip install filedock[fast]) and on
# the standard library's loop otherwise; the other two insist on one of them.
LOOP_CHOICES = ("auto", "asyncio", "uvloop")

# --status-addresses: what a client sees of the addresses in STATUS (see status.py).
# "all" by default, as version 1 of the protocol promises (every record's
# address is host:port); "own" for a server shared with colleagues.
STATUS_ADDRESSES = ("hidden", "own", "all")
DEFAULT_STATUS_ADDRESSES = "all"

# The log's line formats: "[time] LEVEL: message", or one JSON object a line.
LOG_FORMATS = ("text", "json")

# max_clients_per_ip's default: a cap that depends on the source (slots_per_source).
AUTO_PER_SOURCE = -1

# --proxy-from's default: the peers trusted to send a PROXY header, this machine
# only (a load balancer on the same host). Anything wider must be said.
DEFAULT_PROXY_FROM = ("127.0.0.0/8", "::1")

# The folder served when --repo is not given: the clone ships it; made on first start if missing.
DEFAULT_REPO = "server_repo"
# state_dir's default, inside the repository: a hidden name, so never listed or served.
DEFAULT_STATE_DIR = ".filedock"

# min_free_space's default: an upload must leave the larger of 1 GiB and 5% of
# its file system free (a full disk breaks more than this server: logs, the
# digest cache, the system's own files).
AUTO_FREE_SPACE = -1
FREE_SPACE_FLOOR = 1024**3
FREE_SPACE_SHARE = 0.05
# max_upload_size's default: a DVD image or a large video fits, and one
# client cannot take the disk with one upload.
DEFAULT_MAX_UPLOAD = 4 * 1024**3


class ConfigError(ValueError):
    """An option's value breaks its rule: which option, the rule, the value."""

    def __init__(self, field: str, rule: str, value: object) -> None:
        super().__init__(f"{field} {rule}, not {value!r}")
        self.field, self.rule, self.value = field, rule, value

    def option_text(self) -> str:
        """The same in the words of ``--help``: the option's flag, not its field name."""
        if self.field == "tls_cert":
            return "--tls-cert and --tls-key go together: give both, or neither"
        if self.field == "http_insecure":
            return (
                f"--http {self.value} is reachable beyond this machine: give a --token-file "
                "(its tokens then open the page), or --http-insecure to serve it to anyone"
            )
        return f"--{self.field.replace('_', '-')} {self.rule}, not {self.value!r}"


# The HTTP listener's host when --http names none: this machine only.
HTTP_DEFAULT_HOST = "127.0.0.1"


def _are_networks(texts: tuple[str, ...]) -> bool:
    try:
        return bool(texts) and all(ipaddress.ip_network(text, strict=False) for text in texts)
    except ValueError:
        return False


def http_address(text: str) -> tuple[str, int] | None:
    """``--http``'s value as (host, port): ``PORT`` and ``:PORT`` mean loopback,
    ``[::1]:PORT`` an IPv6 host; ``None`` when it is none of these."""
    host, colon, port = text.strip().rpartition(":")
    if not colon:
        host = ""
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:  # an IPv6 address must be in brackets, its port after them
        return None
    if not (port.isascii() and port.isdigit()) or int(port) > 65535:  # no sign, no spaces
        return None
    return host or HTTP_DEFAULT_HOST, int(port)


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every server option; each maps 1:1 to a command-line flag (see cli.py)."""

    host: str = "127.0.0.1"
    port: int = 50000
    max_clients: int = 3
    repo: str = DEFAULT_REPO
    handshake_timeout: float = 10.0  # seconds to finish TLS and HELLO after the connect
    # Frees a forgotten terminal's slot; far above a person's pause at the prompt.
    idle_timeout: float = 300.0  # seconds without a complete line; 0 = never
    max_line: int = DEFAULT_MAX_LINE
    history: int = 1000  # finished clients kept for STATUS
    status_addresses: str = DEFAULT_STATUS_ADDRESSES  # one of STATUS_ADDRESSES
    # A run of brief sessions from one source keeps only its latest row in STATUS
    # (off by default: version 1 lists every client, past --history only dropped).
    compact_history: bool = False
    shutdown_grace: float = 5.0  # seconds a transfer in flight may finish at shutdown
    send_timeout: float = 60.0  # seconds without write progress before a client is dropped
    log_level: str = "INFO"
    log_file: str | None = None  # appended to instead of stderr; reopened on SIGHUP
    log_format: str = "text"  # one of LOG_FORMATS
    # Slots one source may hold. AUTO_PER_SOURCE: half the slots (rounded up) for a
    # remote source, every slot for the loopback one; 0 = only max_clients applies.
    max_clients_per_ip: int = AUTO_PER_SOURCE
    # Connections still in their handshake (TLS, HELLO, token), and a source's share.
    max_pending: int = 128
    max_pending_per_ip: int = 16
    # Failed access tokens per source: at once (held for their delay), and per minute.
    max_auth_failures_at_once: int = 2
    max_auth_failures_per_minute: int = 10
    ipv4_prefix: int = DEFAULT_IPV4_PREFIX  # leading bits that make one IPv4 source
    ipv6_prefix: int = DEFAULT_IPV6_PREFIX  # leading bits that make one IPv6 source
    tls_cert: str | None = None  # with tls_key: serve over TLS
    tls_key: str | None = None
    token_file: str | None = None  # one token a line: HELLO must carry token=<one of them>
    loop: str = "auto"  # the event loop: one of LOOP_CHOICES
    # Where the digest cache is kept across restarts; None: DEFAULT_STATE_DIR in the repo.
    state_dir: str | None = None
    # Uploads (PUT): off unless asked for; with a token file, only write tokens upload.
    allow_upload: bool = False
    max_upload_size: int = DEFAULT_MAX_UPLOAD  # bytes
    min_free_space: int = AUTO_FREE_SPACE  # bytes an upload must leave free; see above
    upload_expiry: float = 24 * 3600.0  # seconds an interrupted upload's partial is kept
    # The status page and metrics: HOST:PORT, :PORT or PORT (loopback); None: off.
    http: str | None = None
    # Serve them beyond loopback with no --token-file: anyone who reaches the port sees them.
    http_insecure: bool = False
    # Several servers as one: the shared registry (redis://HOST:PORT/DB, rediss://,
    # unix://), this server's name in it ("": the host name), and the slots' lease.
    registry: str | None = None
    node: str = ""
    lease: float = 15.0  # seconds; each node renews its slots every lease/3
    # Behind a load balancer: each connection starts with a PROXY protocol header
    # (v1 or v2) naming the client, sent by one of proxy_from (addresses or CIDRs).
    proxy_protocol: bool = False
    proxy_from: tuple[str, ...] = DEFAULT_PROXY_FROM

    def __post_init__(self) -> None:
        finite = math.isfinite
        checks = (
            ("port", 0 <= self.port <= 65535, "must be from 0 to 65535"),
            ("max_clients", self.max_clients >= 1, "must be at least 1"),
            (
                "handshake_timeout",
                finite(self.handshake_timeout) and self.handshake_timeout > 0,
                "must be a number of seconds over 0",
            ),
            (
                "idle_timeout",
                finite(self.idle_timeout) and self.idle_timeout >= 0,
                "must be a number of seconds, 0 or more",
            ),
            (
                "max_line",
                64 <= self.max_line <= MAX_LINE_LIMIT,
                f"must be from 64 to {MAX_LINE_LIMIT} bytes",
            ),
            ("history", self.history >= 0, "cannot be negative"),
            (
                "lease",
                finite(self.lease) and self.lease >= 0.5,
                "must be a number of seconds, 0.5 or more",
            ),
            (
                "node",
                len(self.node) <= 64 and self.node.isprintable() and " " not in self.node,
                "must be a name of at most 64 characters without spaces",
            ),
            (
                "shutdown_grace",
                finite(self.shutdown_grace) and self.shutdown_grace >= 0,
                "must be a number of seconds, 0 or more",
            ),
            (
                "send_timeout",
                finite(self.send_timeout) and self.send_timeout > 0,
                "must be a number of seconds over 0",
            ),
            (
                "max_clients_per_ip",
                self.max_clients_per_ip >= AUTO_PER_SOURCE,
                "must be -1 or more",
            ),
            ("max_pending", self.max_pending >= 1, "must be at least 1"),
            ("max_pending_per_ip", self.max_pending_per_ip >= 1, "must be at least 1"),
            (
                "max_auth_failures_at_once",
                self.max_auth_failures_at_once >= 1,
                "must be at least 1",
            ),
            (
                "max_auth_failures_per_minute",
                self.max_auth_failures_per_minute >= 1,
                "must be at least 1",
            ),
            ("ipv4_prefix", check_prefix(self.ipv4_prefix, 32), "must be from 1 to 32"),
            ("ipv6_prefix", check_prefix(self.ipv6_prefix, 128), "must be from 1 to 128"),
            ("tls_cert", (self.tls_cert is None) == (self.tls_key is None), "needs a key too"),
            (
                "status_addresses",
                self.status_addresses in STATUS_ADDRESSES,
                f"must be one of {', '.join(STATUS_ADDRESSES)}",
            ),
            ("loop", self.loop in LOOP_CHOICES, f"must be one of {', '.join(LOOP_CHOICES)}"),
            (
                "log_format",
                self.log_format in LOG_FORMATS,
                f"must be one of {', '.join(LOG_FORMATS)}",
            ),
            ("max_upload_size", self.max_upload_size >= 0, "cannot be negative"),
            ("min_free_space", self.min_free_space >= AUTO_FREE_SPACE, "must be -1 (auto) or more"),
            (
                "upload_expiry",
                finite(self.upload_expiry) and self.upload_expiry > 0,
                "must be a number of seconds over 0",
            ),
        )
        for field, ok, rule in checks:
            if not ok:
                raise ConfigError(field, rule, getattr(self, field))
        self._check_http()
        if not _are_networks(self.proxy_from):
            raise ConfigError(
                "proxy_from", "must be IP addresses or networks (CIDR), comma-separated",
                ",".join(self.proxy_from),
            )  # fmt: skip

    def _check_http(self) -> None:
        if self.http is None:
            return
        address = http_address(self.http)
        if address is None:
            raise ConfigError("http", "must be HOST:PORT, :PORT or PORT (0 to 65535)", self.http)
        if not (is_loopback_host(address[0]) or self.token_file or self.http_insecure):
            raise ConfigError("http_insecure", "is needed beyond loopback", self.http)

    def http_listen(self) -> tuple[str, int] | None:
        """Where the HTTP listener listens, or ``None`` when it is off."""
        return None if self.http is None else http_address(self.http)

    def state_folder(self, repo_root: str) -> str:
        """The state folder for the repository at ``repo_root``."""
        if self.state_dir is None:
            return os.path.join(repo_root, DEFAULT_STATE_DIR)
        return os.path.abspath(self.state_dir)

    def free_space_floor(self, total_bytes: int) -> int:
        """The bytes an upload must leave free on a file system of ``total_bytes``."""
        if self.min_free_space != AUTO_FREE_SPACE:
            return self.min_free_space
        return max(FREE_SPACE_FLOOR, int(total_bytes * FREE_SPACE_SHARE))

    def node_name(self) -> str:
        """This server's name among several (``--node``; by default the host name)."""
        return self.node or socket.gethostname()

    def slots_per_source(self, source: str) -> int:
        """The slots ``source`` may hold (0: no cap beyond ``max_clients``)."""
        if self.max_clients_per_ip != AUTO_PER_SOURCE:
            return self.max_clients_per_ip
        # Every local user is the one loopback source: capping it would bite the
        # three clients of the default set-up on one machine.
        return 0 if source == LOOPBACK else (self.max_clients + 1) // 2
