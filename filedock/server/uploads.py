"""``PUT``: an upload from the refusals before its body to ``STORED``.

What needs no disk is refused at once (uploads off, a read-only token, over
the size limit, a path no repository file can have); the destination, the
partial of an earlier try and the free space are looked at in an upload
worker, and the space is reserved before ``READY``, so two uploads that fit
one at a time but not together cannot both be taken.

The body goes from the transport into chunks of :data:`CHUNK` bytes, which an
upload worker hashes and writes in order. While :data:`CHUNKS_QUEUED` chunks
wait for it the session stops reading the transport, so a client faster than
the disk is slowed by TCP itself and an upload holds a few MiB whatever its
size. The end: every byte written, the digest compared, then the partial
placed (see :mod:`.upload_area`) and its digest kept in the hash cache.
An upload cut short keeps its partial for a resume.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING

from .. import protocol as p
from ..errors import Forbidden, NoSpace, RequestError, UploadCorrupted, UploadTooLarge
from .activity import Activity
from .repository import FileKey, check_client_path
from .upload_area import PARTIAL_SUFFIX, Partial, UploadArea, partial_name
from .upload_log import UploadLog

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("filedock.server")

# The body is written this much at a time: few thread hops and system calls.
CHUNK = 1024 * 1024
# Chunks received and not yet written, past which the transport is not read:
# with the chunk being filled and the one being written, an upload holds
# about (CHUNKS_QUEUED + 2) MiB, whatever its size.
CHUNKS_QUEUED = 3

_LOST = "interrupted ({}), its partial kept at {} bytes for a resume"

# Partials being flushed as the server stops: held here until done.
_FLUSHING: set[asyncio.Future[None]] = set()


async def flushes_ended() -> None:
    """Wait for the partials being flushed (see Upload._flush_later): none ends
    after the loop, with nobody left to read how it ended."""
    if _FLUSHING:
        await asyncio.gather(*_FLUSHING, return_exceptions=True)


def _place(area: UploadArea, partial: Partial, path: str, mode: p.PutMode) -> FileKey:
    """In a worker: place the partial; one that cannot be is removed (even if
    nobody waits for the answer any more)."""
    try:
        return area.place(partial, path, mode)
    except BaseException:
        partial.discard()
        raise


async def _both(first: Awaitable[None], second: Awaitable[None]) -> None:
    """Both done, the first failure raised (once both ended: the buffer is free then)."""
    outcomes = await asyncio.gather(first, second, return_exceptions=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome


def _write_and_keep(partial: Partial, chunks: list[tuple[bytearray, int]]) -> None:
    try:
        for chunk, length in chunks:
            partial.write(memoryview(chunk)[:length])
    except NoSpace:
        pass  # what was written stays
    finally:
        partial.keep()


def start(s: Session, put: p.Put) -> bytes | None:
    """Refuse ``put`` at once (its ``ERR``) if no disk is needed to; else start its upload."""
    config, area = s.config, s.context.uploads
    refusal: RequestError | None = None
    reason = None  # for the statistics, when the code alone does not say
    if area is None or not config.allow_upload:
        refusal, reason = Forbidden("this server does not take uploads"), "disabled"
    elif not s.may_write:
        refusal, reason = Forbidden("this access token may not upload"), "read-only"
    elif put.size > config.max_upload_size:
        refusal = UploadTooLarge(
            f"the server takes uploads of {config.max_upload_size} bytes at most"
        )
    else:
        try:
            check_client_path(put.path)
        except RequestError as exc:
            refusal = exc
    if refusal is not None:
        return s.conn.send(_refusal(s, UploadLog(s, put), refusal, reason))
    assert area is not None
    s.start(_upload(s, put, area), Activity("put", put.path, put.size))
    return None


async def _upload(s: Session, put: p.Put, area: UploadArea) -> None:
    name = partial_name(put.size, put.sha256, put.path)
    if name in area.active:  # the same file, at once: a partial of its own, not resumed
        name = name.removesuffix(PARTIAL_SUFFIX) + f"-{secrets.token_hex(4)}{PARTIAL_SUFFIX}"
    area.active.add(name)
    try:
        await _take(s, put, area, name)
    finally:
        area.active.discard(name)


def _prepare(area: UploadArea, put: p.Put, name: str) -> tuple[Partial, int, int]:
    """In a worker: the checked destination's partial, its bytes hashed, and the space."""
    prepared = area.prepare(put, name)
    partial = Partial(area, prepared)
    try:
        partial.hash_held()
    except BaseException:
        partial.keep()
        raise
    return partial, prepared.free, prepared.total


async def _take(s: Session, put: p.Put, area: UploadArea, name: str) -> None:
    pool = s.context.workers.uploads
    upload_log = UploadLog(s, put)
    try:
        partial, free, total = await pool.run(
            _prepare, area, put, name, abandoned=lambda made: made[0].keep()
        )
    except RequestError as exc:
        _refuse(s, upload_log, exc)
        return
    except OSError as exc:
        log.warning("Cannot take an upload of %r from %s: %s", put.path, s.label(), exc)
        _refuse(s, upload_log, Forbidden("the upload cannot be written"))
        return
    need = put.size - partial.offset
    floor = s.config.free_space_floor(total)
    if free - area.reserved - need < floor:
        partial.keep()
        room = max(0, free - area.reserved - floor)
        _refuse(s, upload_log, NoSpace(f"room for {room} more bytes, not {need}"))
        return
    if s.transport is None or s.closing:
        partial.keep()
        return
    area.reserved += need
    upload_log.offset = partial.offset
    if s.activity is not None:
        s.activity.done = partial.offset  # a resume's body starts there
    if partial.offset:
        s.context.stats.transfers_resumed["upload"] += 1
    upload = s.upload = Upload(s, put, partial, upload_log)
    try:
        s.transport.write(s.conn.ready(p.ReadyReply(partial.offset, put.path), put.size))
        s.update_reading()
        s.process()  # body bytes that came right behind the PUT line
        await upload.run()
    finally:
        area.reserved -= need
        s.upload = None


def _refuse(s: Session, upload_log: UploadLog, exc: RequestError) -> None:
    s.send(_refusal(s, upload_log, exc))


def _refusal(
    s: Session, upload_log: UploadLog, exc: RequestError, reason: str | None = None
) -> p.ErrorReply:
    """Count and log a refusal before the body; its ``ERR``."""
    _count_refused(s, exc, reason)
    upload_log.refused(str(exc))
    return p.ErrorReply(exc.code, exc.text)


def _count_refused(s: Session, exc: RequestError, reason: str | None = None) -> None:
    """An upload answered ``ERR``: by ``reason``, or its code."""
    refused = s.context.stats.uploads_refused
    reason = reason or exc.code
    refused[reason if reason in refused else "internal"] += 1


class Upload:
    """One upload's body on its way from the transport to its partial file."""

    __slots__ = (
        *("session", "put", "partial", "log", "received", "_stats", "_activity"),
        *("_filling", "_filled", "_queue", "_spare", "_wake", "_ended", "_failure"),
        *("_inflight", "_paused"),
    )

    def __init__(self, session: Session, put: p.Put, partial: Partial, log: UploadLog) -> None:
        self.session = session
        self.put = put
        self.partial = partial
        self.log = log
        self.received = 0  # body bytes taken from the transport
        self._stats = session.context.stats
        self._activity = session.activity
        self._filling = bytearray(CHUNK)
        self._filled = 0
        self._queue: deque[tuple[bytearray, int]] = deque()  # chunks waiting for the disk
        self._spare: list[bytearray] = []  # written chunks, filled again
        self._wake = asyncio.Event()
        self._ended: str | None = None  # "whole", or why the body was cut short
        self._failure: RequestError | None = None  # the disk filled: the rest is dropped
        self._inflight: asyncio.Future[None] | None = None  # a chunk in a worker's hands
        self._paused = False

    # -- from the line loop (the transport's bytes) ------------------------------------

    @property
    def ends_by_itself(self) -> bool:
        """Whether it is to end without an answer (its body is coming, or was cut
        short): its task writes what came and keeps the partial, uncancelled."""
        return self._ended != "whole"

    @property
    def behind(self) -> bool:
        """Whether the disk is behind: the session stops reading meanwhile."""
        self._paused = len(self._queue) >= CHUNKS_QUEUED
        return self._paused

    def receive(self, data: bytes | memoryview) -> None:
        """Take body bytes (copied: the transport's buffer is lent again)."""
        count = len(data)
        self.received += count
        self._stats.bytes_received += count
        if self._activity is not None:
            self._activity.done += count
        if self._failure is not None:
            return  # nothing more is written: the bytes are only read, in step
        view = memoryview(data)
        while view:
            count = min(CHUNK - self._filled, len(view))
            self._filling[self._filled : self._filled + count] = view[:count]
            self._filled += count
            view = view[count:]
            if self._filled == CHUNK:
                self._queue_filling()

    def body_end(self) -> None:
        """The last body byte came."""
        if self._filled:
            self._queue_filling()
        self._end("whole")

    def lost(self, why: str) -> None:
        """The body will not come whole (the connection went): keep what came."""
        if self._ended is None:
            if self._filled:
                self._queue_filling()
            self._end(why)

    def _end(self, how: str) -> None:
        self._ended = how
        self._wake.set()

    def _queue_filling(self) -> None:
        self._queue.append((self._filling, self._filled))
        self._filling = self._spare.pop() if self._spare else bytearray(CHUNK)
        self._filled = 0
        self._wake.set()
        if len(self._queue) >= CHUNKS_QUEUED and not self._paused:
            self.session.update_reading()

    # -- the session's task ---------------------------------------------------------------

    async def run(self) -> None:
        """Write the chunks as they come, then end the upload as its body did."""
        try:
            await self._write_all()
        except asyncio.CancelledError:  # the server shuts down: the partial stays
            self._count("failed")
            self._flush_later()
            self.log.ended("stopped by the server's shutdown, its partial kept", self.received)
            raise
        if self._ended != "whole":
            self._count("failed")
            self.partial.keep()
            self.log.ended(_LOST.format(self._ended, self.partial.offset), self.received)
            return
        await self._finish()

    def _count(self, outcome: str) -> None:
        stats = self.session.context.stats
        counts = stats.transfers_completed if outcome == "completed" else stats.transfers_failed
        counts["upload"] += 1

    def _flush_later(self) -> None:
        """Write what came and was not written yet, then close the partial, in a
        worker, unwaited: the server is stopping, and a resume goes on from all
        that came (unless the workers stop first: then from what was written)."""
        chunks = list(self._queue)
        if self._filled:
            chunks.append((self._filling, self._filled))
        self._queue.clear()
        job = asyncio.ensure_future(self._flush(self._inflight, chunks))
        _FLUSHING.add(job)
        job.add_done_callback(_FLUSHING.discard)

    async def _flush(
        self, inflight: asyncio.Future[None] | None, chunks: list[tuple[bytearray, int]]
    ) -> None:
        partial = self.partial
        if inflight is not None:  # the chunk in a worker's hands first: in order
            try:
                await inflight
            except Exception:  # the disk is full, or the workers stopped: no more
                chunks = []
        await self.session.context.workers.uploads.run(
            _write_and_keep, partial, chunks, never_ran=partial.keep
        )

    async def _write_all(self) -> None:
        session = self.session
        while True:
            if self._queue:
                chunk, length = self._queue.popleft()
                if self._failure is None:
                    await self._write(memoryview(chunk)[:length])
                self._spare.append(chunk)
                session.conn.heard_at = time.monotonic()  # the body moves: not idle
                if self._paused and len(self._queue) < CHUNKS_QUEUED:
                    session.update_reading()
                continue
            if self._ended is not None:
                return
            self._wake.clear()
            await self._wake.wait()

    async def _write(self, data: memoryview) -> None:
        # Shielded: a shutdown stops the upload between chunks, never in one
        # (see _flush_later, which goes on after it).
        # Hashed and written at once, in two workers: SHA-256 is the slower.
        pool, partial = self.session.context.workers.uploads, self.partial
        self._inflight = asyncio.ensure_future(
            _both(pool.run(partial.hash, data), pool.run(partial.store, data))
        )
        try:
            await asyncio.shield(self._inflight)
        except NoSpace as exc:
            self._fail(exc)
        except OSError as exc:  # an I/O error: the rest is read, in step, and refused
            log.warning("Cannot write an upload of %r: %s", self.put.path, exc)
            self._fail(RequestError("the upload could not be written", code=p.ErrorCode.INTERNAL))
        self._inflight = None

    def _fail(self, failure: RequestError) -> None:
        self._failure = failure
        self._queue.clear()  # dropped: nothing more is written

    async def _finish(self) -> None:
        s, put, partial = self.session, self.put, self.partial
        failure = self._failure
        if failure is None and partial.sha256() != put.sha256:
            failure = UploadCorrupted(
                f"the body's SHA-256 is {partial.sha256()}, not the {put.sha256} announced"
            )
        if failure is not None:
            self._count("failed")
            _count_refused(s, failure)
            partial.discard()
            self.log.ended(f"failed ({failure.code}), nothing placed", self.received)
            s.send(p.ErrorReply(failure.code, failure.text))
            return
        area = partial.area
        try:
            key = await s.context.workers.uploads.run(
                _place, area, partial, put.path, put.mode, never_ran=partial.keep
            )
        except RequestError as exc:  # the name taken meanwhile, a symlink put on the way, …
            self._count("failed")
            _count_refused(s, exc)
            self.log.ended(f"failed ({exc.code}: {exc.text}), nothing placed", self.received)
            s.send(p.ErrorReply(exc.code, exc.text))
            return
        s.context.repository.hashes.learned(key, put.sha256)
        self._count("completed")
        self.log.stored(self.received)
        s.send(p.StoredReply(put.size, put.sha256, put.path))
