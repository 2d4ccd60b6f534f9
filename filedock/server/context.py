"""What every session of one server shares: a context object, not the Server.

Sessions read the configuration, the registry, the repository, the auth guard
and the workers here, count what they do in its statistics, and report their
end through :attr:`ServerContext.session_closed` (uvicorn passes its
``ServerState`` the same way). The :class:`~.server.Server`
builds it and keeps listening, shutdown and statistics to itself.
"""

from __future__ import annotations

import asyncio
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .addresses import source_group
from .auth import AuthGuard, TokenChecker
from .config import ServerConfig
from .listing_cache import ListingCache
from .logs import WarningLimiter
from .registry import Refusal, Registry
from .repository import Repository
from .stats import Statistics
from .status import StatusReplies
from .upload_area import UploadArea
from .workers import Workers

if TYPE_CHECKING:
    from .session import Session

# The log kind of a connection turned away (rate-limited, see ServerContext.reject).
REJECTED = "rejected"


@dataclass(eq=False)
class ServerContext:
    """The state one server's sessions share."""

    config: ServerConfig
    registry: Registry
    status: StatusReplies  # the STATUS reply, kept until the registry changes
    repository: Repository
    workers: Workers
    tls: ssl.SSLContext | None
    tokens: TokenChecker | None
    # Its tickets are the turns of greetings queued behind a source's answers.
    auth_guard: AuthGuard[asyncio.Future[None]]
    banner: str
    about: str
    limiter: WarningLimiter  # replaced by the server's start(), which has the loop
    read_buffer: memoryview  # every session reads into it (see Session.get_buffer)
    session_closed: Callable[[Session], None]  # the server counts its sessions
    # ... and into this one an upload's body: larger reads, fewer of them.
    body_buffer: memoryview = field(default_factory=lambda: memoryview(bytearray(1024 * 1024)))
    started: float = field(default_factory=time.monotonic)
    sessions: set[Session] = field(default_factory=set)
    lingering: set[Session] = field(default_factory=set)  # turned away, saying FULL
    # Dropped from the pending pool, told so after a moment (admission.drop_for_newcomer).
    notices_held: set[Session] = field(default_factory=set)
    uploads: UploadArea | None = None  # with --allow-upload, from start() on
    # From start() on, where the kernel can vouch for cached listings (see listing_cache).
    listing_cache: ListingCache | None = None
    stats: Statistics = field(default_factory=Statistics)  # the one set of counters

    def warn(self, kind: str, message: str, *args: object, source: str | None = None) -> None:
        """Log a warning that a flood of clients could repeat (rate-limited by kind and source)."""
        self.limiter.warning(kind, message, *args, source=source)

    def note(self, kind: str, message: str, *args: object, source: str | None = None) -> None:
        """Log a refusal at INFO, rate-limited as :meth:`warn` is: a storm of bad
        clients costs a bounded number of lines."""
        self.limiter.info(kind, message, *args, source=source)

    def reject(self, who: str, refusal: Refusal, source: str) -> None:
        """Count and log a connection turned away for want of room (FULL)."""
        self.stats.connections_rejected[refusal.kind] += 1
        self.note(REJECTED, "Rejected %s: %s", who, refusal.summary, source=source)

    def uptime(self) -> int:
        return int(time.monotonic() - self.started)

    def source_of(self, host: str) -> str:
        """The source group of a client's ``host``, for every per-source rule."""
        return source_group(host, self.config.ipv4_prefix, self.config.ipv6_prefix)
