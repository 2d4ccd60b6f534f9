"""The server's worker threads: one bounded pool per kind of blocking work.

Hashing a large file takes seconds to minutes; listing a folder or opening a
file takes milliseconds. Sharing one pool, a few hashings would make every
``LIST`` and ``GET`` wait behind them, so each kind has its own pool, and a
source (one client address) may hold only its share of the hashing workers:
a client with many connections cannot take them all. Hashing polls
:attr:`Workers.cancel` between blocks, so a shutdown does not wait for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future, ThreadPoolExecutor
from functools import partial
from typing import Any, TypeVar

from .. import protocol as p
from ..errors import RequestError

T = TypeVar("T")

# Hashing is CPU-bound (hashlib releases the GIL): two threads use two cores
# without starving the event loop's own core for long.
HASH_WORKERS = 2
# One source hashes one file at a time: with two workers, another client can
# always have the second.
HASH_SHARE = 1
# Listing and opening wait on the disk more than on the CPU: a few more threads.
METADATA_WORKERS = 4
# Threads that write uploads' bytes (each upload has one job at a time): apart
# from the others, so a slow disk under uploads holds back no listing or hashing.
UPLOAD_WORKERS = 4


class Stopping(RequestError):
    """The server is shutting down: the work was given up."""

    code = p.ErrorCode.SHUTDOWN


class WorkerPool:
    """A bounded pool of threads for one kind of blocking work."""

    def __init__(self, name: str, size: int) -> None:
        self.name = name
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=name)
        self._closed = False
        # Jobs submitted and not finished; they finish in the pool's threads.
        self._busy = 0
        self._busy_lock = threading.Lock()

    @property
    def busy(self) -> int:
        """Jobs queued or running now (one abandoned by its caller counts until it ends)."""
        return self._busy

    async def run(
        self,
        fn: Callable[..., T],
        *args: Any,
        never_ran: Callable[[], None] | None = None,
        abandoned: Callable[[T], None] | None = None,
    ) -> T:
        """``fn(*args)`` in one of the pool's threads. Raises :class:`Stopping` once closed.

        If the wait is given up (cancelled), ``never_ran()`` is called when
        ``fn`` had not started (it never will), or ``abandoned(result)`` when
        it finishes: what it opened for nobody is closed.
        """
        if self._closed:
            if never_ran is not None:
                never_ran()
            raise Stopping("server is shutting down")
        job = self._executor.submit(fn, *args)
        with self._busy_lock:
            self._busy += 1
        job.add_done_callback(self._job_done)
        try:
            return await asyncio.wrap_future(job)
        except asyncio.CancelledError:
            if job.cancel():  # true only for a job that had not started
                if never_ran is not None:
                    never_ran()
            elif abandoned is not None:
                job.add_done_callback(partial(_hand_over, abandoned))
            raise

    def _job_done(self, job: Future[Any]) -> None:
        with self._busy_lock:
            self._busy -= 1

    def close(self) -> None:
        """Take no more work; what is queued still runs, and ends at once (it polls the
        cancel flag), so what it holds is released; never waits."""
        self._closed = True
        self._executor.shutdown(wait=False)


def _hand_over(abandoned: Callable[[T], None], job: Future[T]) -> None:
    if not job.cancelled() and job.exception() is None:
        abandoned(job.result())


class FairShare:
    """At most ``share`` jobs at once per source; a source's other jobs wait in order.

    The waiting is on the event loop, holding no thread: a source asking for
    many jobs leaves the pool's threads to the others.
    """

    def __init__(self, share: int) -> None:
        self.share = share
        self._running: dict[str, int] = {}
        self._waiting: dict[str, deque[asyncio.Future[None]]] = {}

    def running(self, source: str) -> int:
        return self._running.get(source, 0)

    @property
    def sources(self) -> int:
        """How many sources have jobs running or waiting: one with none is forgotten."""
        return len(self._running.keys() | self._waiting.keys())

    @contextlib.asynccontextmanager
    async def slot(self, source: str) -> AsyncIterator[None]:
        await self._acquire(source)
        try:
            yield
        finally:
            self._release(source)

    async def _acquire(self, source: str) -> None:
        if self.running(source) < self.share and not self._waiting.get(source):
            self._running[source] = self.running(source) + 1
            return
        turn = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(source, deque()).append(turn)
        try:
            await turn  # a finishing job hands its slot over
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self._release(source)  # handed over just as we gave up: pass it on
            else:
                self._forget(source, turn)
            raise

    def _release(self, source: str) -> None:
        waiters = self._waiting.get(source)
        while waiters:
            turn = waiters.popleft()
            if not turn.done():
                turn.set_result(None)  # the slot moves on; the count stays
                if not waiters:
                    del self._waiting[source]
                return
        self._waiting.pop(source, None)
        left = self.running(source) - 1
        if left > 0:
            self._running[source] = left
        else:
            self._running.pop(source, None)  # bounded: only sources with work in hand

    def _forget(self, source: str, turn: asyncio.Future[None]) -> None:
        waiters = self._waiting.get(source)
        if waiters is not None:
            with contextlib.suppress(ValueError):
                waiters.remove(turn)
            if not waiters:
                del self._waiting[source]


class Workers:
    """The hashing pool, the metadata pool (listing, opening), the uploads' pool,
    and the cancel flag."""

    def __init__(
        self,
        *,
        hash_workers: int = HASH_WORKERS,
        hash_share: int = HASH_SHARE,
        metadata_workers: int = METADATA_WORKERS,
    ) -> None:
        self.cancel = threading.Event()
        self.hashing = WorkerPool("filedock-hash", hash_workers)
        self.metadata = WorkerPool("filedock-meta", metadata_workers)
        self.uploads = WorkerPool("filedock-upload", UPLOAD_WORKERS)
        self.hash_share = FairShare(hash_share)
        # Small files are hashed in the metadata threads; one source may take all
        # of them but one, so a LIST (or another source's request) finds a thread.
        self.small_hash_share = FairShare(max(1, metadata_workers - 1))

    def stop_hashing(self) -> None:
        """Make hashings in progress give up at their next block."""
        self.cancel.set()

    def close(self) -> None:
        """Stop every job at its next check and drop those not started; never waits."""
        self.cancel.set()
        self.hashing.close()
        self.metadata.close()
        self.uploads.close()
