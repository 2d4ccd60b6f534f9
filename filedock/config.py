"""The server's settings: one frozen object, passed down, never global."""

from __future__ import annotations

from dataclasses import dataclass

from .protocol import DEFAULT_MAX_LINE

# "auto" runs on uvloop when it is installed (pip install filedock[fast]) and on
# the standard library's loop otherwise; the other two insist on one of them.
LOOP_CHOICES = ("auto", "asyncio", "uvloop")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Every server option; each maps 1:1 to a command-line flag (see cli.py)."""

    host: str = "127.0.0.1"
    port: int = 50000
    max_clients: int = 3
    repo: str = "server_repo"
    handshake_timeout: float = 10.0  # seconds to send HELLO after NAME
    idle_timeout: float = 0.0  # seconds without a complete line; 0 = never
    max_line: int = DEFAULT_MAX_LINE
    history: int = 1000  # finished clients kept for STATUS
    shutdown_grace: float = 5.0  # seconds a transfer in flight may finish at shutdown
    send_timeout: float = 60.0  # seconds without write progress before a client is dropped
    log_level: str = "INFO"
    max_clients_per_ip: int = 0  # slots one address may hold; 0 = only max_clients applies
    tls_cert: str | None = None  # with tls_key: serve over TLS
    tls_key: str | None = None
    token_file: str | None = None  # one token a line: HELLO must carry token=<one of them>
    loop: str = "auto"  # the event loop: one of LOOP_CHOICES

    def __post_init__(self) -> None:
        checks = (
            (0 <= self.port <= 65535, "port must be from 0 to 65535"),
            (self.max_clients >= 1, "max_clients must be at least 1"),
            (self.handshake_timeout > 0, "handshake_timeout must be positive"),
            (self.idle_timeout >= 0, "idle_timeout cannot be negative"),
            (self.max_line >= 64, "max_line must be at least 64 bytes"),
            (self.history >= 0, "history cannot be negative"),
            (self.shutdown_grace >= 0, "shutdown_grace cannot be negative"),
            (self.send_timeout > 0, "send_timeout must be positive"),
            (self.max_clients_per_ip >= 0, "max_clients_per_ip cannot be negative"),
            ((self.tls_cert is None) == (self.tls_key is None), "TLS needs both a cert and a key"),
            (self.loop in LOOP_CHOICES, f"loop must be one of {', '.join(LOOP_CHOICES)}"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
