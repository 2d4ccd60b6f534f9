"""The digest cache that several servers of one repository share, in Redis.

With ``--registry redis://…`` the servers behind one address serve one folder
(a shared file system), so a file one of them has hashed need not be hashed
by the others: each digest the local cache computes, or finds on its disk, is
also set in Redis under ``filedock:digest:<device>:<inode>:<size>:<mtime_ns>:<ctime_ns>``,
the local cache's own key (see :class:`~.repository.FileKey`: a file changed
in any way has another key, and the racy rule decides what is kept, as it does
locally), for :data:`EXPIRY` seconds. The local cache asks here once, after a
miss in memory and on its disk and before it hashes (see
:class:`~.repository.HashCache`). A file small enough to be hashed on the
loop (``INLINE_HASH_BYTES``) is never asked here: its hashing costs less than
the round trip.

A cache, never a dependency: an error or a slow answer is a miss (the file is
hashed locally), a failed ``SET`` is dropped, and an outage is logged once,
when it begins, and once more when Redis answers again. During an outage
Redis is asked again at most every :data:`RETRY_AFTER` seconds, so downloads
do not each wait for a timeout. The Redis client (redis-py's asyncio one) is
imported only here, and only when a registry is given.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ..digests import Key

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger("filedock.server")

PREFIX = "filedock:digest:"
# A digest stays this long after it was last set: files served often are set
# again by each server that finds them on disk after a restart; a file left
# alone for a month costs one hashing more.
EXPIRY = 30 * 24 * 3600
# An answer slower than this is a miss: hashing a small file locally takes a
# few milliseconds, and Redis on the same network answers in well under one.
TIMEOUT = 0.5
# After a failure, the next ask waits this long: an outage costs downloads
# nothing (a miss at once), and its end is noticed within this.
RETRY_AFTER = 5.0
# Connections to Redis, at most: each answers in well under a millisecond.
MAX_CONNECTIONS = 16
# SETs in flight at once, at most: past it new ones are dropped (a cache may
# forget; memory must not grow while Redis is slow).
MAX_PENDING_SETS = 256

_DIGEST = re.compile(r"[0-9a-f]{64}")


class SharedStore(Protocol):
    """What the local cache asks of the shared level (on the loop; neither raises)."""

    async def get(self, key: Key) -> str | None: ...

    def put(self, key: Key, digest: str) -> None: ...


def redis_key(key: Key) -> str:
    """The Redis key of a local cache key (device, inode, size, mtime_ns, ctime_ns)."""
    return PREFIX + ":".join(map(str, key))


def connect(url: str) -> Redis:
    """A redis-py asyncio client for ``url``, with its timeouts and retries set for a
    cache: a short timeout and no retry (a miss is cheaper than a wait), and at most
    :data:`MAX_CONNECTIONS` connections (a burst of downloads waits for one, up to
    the timeout, rather than opening one each). Raises ``ImportError`` without
    redis-py (``pip install 'filedock[redis]'``)."""
    from redis.asyncio import BlockingConnectionPool, Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    pool = BlockingConnectionPool.from_url(
        url,
        max_connections=MAX_CONNECTIONS,
        timeout=TIMEOUT,  # for a free connection
        socket_timeout=TIMEOUT,
        socket_connect_timeout=TIMEOUT,
        retry=Retry(NoBackoff(), 0),
        decode_responses=True,
    )
    return Redis(connection_pool=pool)


class SharedDigests:
    """The shared level of the digest cache: :meth:`get` and :meth:`put`, which never raise."""

    def __init__(self, client: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.client = client  # a redis.asyncio.Redis, or anything with its get/set
        self.clock = clock
        self._down_since: float | None = None  # when the outage began, if one goes on
        self._retry_at = 0.0
        self._sets: set[asyncio.Task[None]] = set()

    @classmethod
    def from_url(cls, url: str) -> SharedDigests | None:
        """The shared cache in the Redis at ``url``; ``None`` (logged) without redis-py."""
        try:
            return cls(connect(url))
        except ImportError:
            log.warning(
                "No shared digest cache: --registry needs the Redis client "
                "(pip install 'filedock[redis]'); files are hashed by each server"
            )
            return None

    @property
    def reachable(self) -> bool:
        """Whether the last exchange with Redis succeeded (or none failed yet)."""
        return self._down_since is None

    async def get(self, key: Key) -> str | None:
        """The digest another server set for ``key``, or ``None`` (none, or Redis failed)."""
        if not self._may_ask():
            return None
        try:
            async with asyncio.timeout(TIMEOUT):
                value = await self.client.get(redis_key(key))
        except Exception as exc:  # any failure of a cache is a miss
            self._failed(exc)
            return None
        self._answered()
        if isinstance(value, bytes):
            value = value.decode("ascii", "replace")
        return value if isinstance(value, str) and _DIGEST.fullmatch(value) else None

    def put(self, key: Key, digest: str) -> None:
        """Set ``digest`` for ``key`` in the background (dropped if Redis fails or lags)."""
        if not self._may_ask() or len(self._sets) >= MAX_PENDING_SETS:
            return
        task = asyncio.get_running_loop().create_task(self._set(key, digest))
        self._sets.add(task)
        task.add_done_callback(self._sets.discard)

    async def _set(self, key: Key, digest: str) -> None:
        try:
            async with asyncio.timeout(TIMEOUT):
                await self.client.set(redis_key(key), digest, ex=EXPIRY)
        except Exception as exc:  # a cache that forgets is still a cache
            self._failed(exc)
            return
        self._answered()

    def _may_ask(self) -> bool:
        return self._down_since is None or self.clock() >= self._retry_at

    def _failed(self, exc: BaseException) -> None:
        now = self.clock()
        self._retry_at = now + RETRY_AFTER
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "The shared digest cache (Redis) is unreachable: %s; files are hashed "
                "locally until it answers again",
                _describe(exc),
            )

    def _answered(self) -> None:
        if self._down_since is not None:
            log.info(
                "The shared digest cache (Redis) answers again after %.0f s",
                self.clock() - self._down_since,
            )
            self._down_since = None

    async def aclose(self) -> None:
        """Wait for the SETs in flight (each bounded by its timeout), then close the client."""
        if self._sets:
            await asyncio.gather(*self._sets, return_exceptions=True)
        try:
            await self.client.aclose(close_connection_pool=True)
        except Exception as exc:  # closing a broken connection may fail too
            log.debug("Closing the shared digest cache's connection: %s", exc)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return f"no answer within {TIMEOUT:g} s"
    return str(exc) or type(exc).__name__
