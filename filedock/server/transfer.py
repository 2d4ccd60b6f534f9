"""Sending a file body: zero-copy ``sendfile`` on plain TCP, chunks otherwise.

Both ways keep memory constant whatever the file's size, honour
backpressure, and give up on a client that makes no progress for
``stall_limit`` seconds.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import sys
import termios

from ..errors import FiledockError
from .activity import Activity
from .repository import OpenedFile
from .stats import Statistics

# Zeros sent at a time to make up a body whose file shrank.
CHUNK_SIZE = 256 * 1024
# Bytes read at a time when sendfile cannot be used (TLS): one read, one
# encryption and one socket write amortised over a megabyte, and still little
# memory a connection.
TLS_READ_SIZE = 1024 * 1024
# Read flag for "only what the page cache holds, never wait for the disk"
# (Linux 4.14+); 0 where there is none: every read then goes to a thread.
_NOWAIT = getattr(os, "RWF_NOWAIT", 0)


def unread_bytes(transport: asyncio.BaseTransport | None) -> int:
    """How many bytes the peer sent that wait, unread, in the socket's buffer.

    What the peer did, not what the loop has got round to reading: a loop busy
    with a burst of accepts may not have read a ClientHello that came first.
    """
    sock = None if transport is None else transport.get_extra_info("socket")
    if sock is None:
        return 0
    try:
        count = fcntl.ioctl(sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    except OSError:  # closed meanwhile, or not a socket this call knows
        return 0
    return int.from_bytes(count, sys.byteorder)


class TransferError(FiledockError):
    """A body could not be sent whole; the connection must be closed (but see
    :class:`FileShrank`). ``sent`` is how many of its bytes went out."""

    sent = 0


class FileShrank(TransferError):
    """The file ended before the size announced: the rest of the body can be
    made up (:func:`send_padding`) where a line after it says it is no good."""


class SendStalled(TransferError):
    """The client stopped taking data for longer than the send timeout."""


class WriteFlow:
    """The transport's write flow control, as something a coroutine can wait on.

    The session forwards ``pause_writing``/``resume_writing`` here.
    """

    __slots__ = ("paused", "_waiter")

    def __init__(self) -> None:
        self.paused = False
        self._waiter: asyncio.Future[None] | None = None

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def abort(self) -> None:
        """The connection is gone: wake any waiter with an error."""
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(TransferError("connection closed"))

    async def wait_resumed(self, stall_limit: float) -> None:
        """Wait until the transport takes data again; SendStalled after ``stall_limit`` s."""
        if not self.paused:
            return
        waiter = self._waiter
        if waiter is None:
            waiter = self._waiter = asyncio.get_running_loop().create_future()
        try:
            async with asyncio.timeout(stall_limit):
                await asyncio.shield(waiter)
        except TimeoutError:
            raise SendStalled(f"no progress for {stall_limit:g} s") from None


async def wait_flushed(
    transport: asyncio.WriteTransport, flow: WriteFlow, stall_limit: float
) -> None:
    """Wait until everything written to ``transport`` has gone to the socket."""
    if transport.get_write_buffer_size() == 0:
        return
    low, high = transport.get_write_buffer_limits()
    # With both limits at 0 the transport pauses us now and resumes us exactly
    # when its buffer is empty.
    transport.set_write_buffer_limits(high=0, low=0)
    try:
        await flow.wait_resumed(stall_limit)
    finally:
        if not transport.is_closing():
            transport.set_write_buffer_limits(high=high, low=low)


async def send_body(
    transport: asyncio.WriteTransport,
    flow: WriteFlow,
    opened: OpenedFile,
    stall_limit: float,
    progress: Activity,
    stats: Statistics,
    offset: int = 0,
) -> None:
    """Send exactly ``opened.size - offset`` bytes of ``opened``, from ``offset``
    on, after what was written; ``progress.done`` and ``stats.bytes_sent`` grow
    as the bytes go.

    Raises :class:`TransferError` when the body cannot be sent whole (the file
    shrank, the client went away or stalled); the caller must then close the
    connection, since the client cannot tell a short body from a slow one.
    """
    await wait_flushed(transport, flow, stall_limit)
    sock = transport.get_extra_info("socket")
    progress.done = offset  # how far the body got, for the error that cuts it too
    try:
        if sock is not None and transport.get_extra_info("sslcontext") is None:
            await _sendfile(sock.fileno(), opened, stall_limit, progress, stats)
        else:
            await _send_chunks(transport, flow, opened, stall_limit, progress, stats)
    except TransferError as exc:
        exc.sent = progress.done - offset
        raise


def count_stall(stats: Statistics, exc: TransferError) -> None:
    """A body cut short by a client that stopped reading is a send timeout too."""
    if isinstance(exc, SendStalled):
        stats.timeouts["send"] += 1


async def send_padding(
    transport: asyncio.WriteTransport, flow: WriteFlow, count: int, stall_limit: float
) -> None:
    """Send ``count`` zero bytes: the rest of a body whose file shrank, so that
    the stream stays in step and the line after it can say so."""
    zeros = bytes(min(CHUNK_SIZE, count))
    while count > 0:
        if transport.is_closing():
            raise TransferError("connection closed")
        transport.write(zeros[:count])
        count -= len(zeros)
        await flow.wait_resumed(stall_limit)


async def _sendfile(
    socket_fd: int, opened: OpenedFile, stall_limit: float, progress: Activity, stats: Statistics
) -> None:
    loop = asyncio.get_running_loop()
    # A duplicate descriptor: the loop refuses to watch the transport's own one,
    # and the kernel sends through either alike. Closing it never closes the
    # connection.
    fd = os.dup(socket_fd)
    offset = progress.done
    try:
        size = opened.size
        while offset < size:
            try:
                count = os.sendfile(fd, opened.fd, offset, size - offset)
            except BlockingIOError:
                await _wait_writable(loop, fd, stall_limit)
                continue
            except OSError as exc:
                raise TransferError(f"connection broken: {exc.strerror}") from None
            if count == 0:
                raise FileShrank(f"file shrank during the send ({offset} of {size} bytes)")
            offset += count
            progress.done = offset
            stats.bytes_sent += count
    finally:
        os.close(fd)


async def _wait_writable(loop: asyncio.AbstractEventLoop, fd: int, stall_limit: float) -> None:
    writable = loop.create_future()
    loop.add_writer(fd, _set_done, writable)
    try:
        async with asyncio.timeout(stall_limit):
            await writable
    except TimeoutError:
        raise SendStalled(f"no progress for {stall_limit:g} s") from None
    finally:
        loop.remove_writer(fd)


def _set_done(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


async def _send_chunks(
    transport: asyncio.WriteTransport,
    flow: WriteFlow,
    opened: OpenedFile,
    stall_limit: float,
    progress: Activity,
    stats: Statistics,
) -> None:
    size, offset = opened.size, progress.done
    buffer: bytearray | None = None  # what the next read goes into; None: a new one
    while offset < size:
        if transport.is_closing():
            raise TransferError("connection closed")
        if buffer is None:
            buffer = bytearray(min(TLS_READ_SIZE, size - offset))
        chunk = await read_chunk(opened.fd, min(len(buffer), size - offset), offset, buffer)
        if not chunk:
            raise FileShrank(f"file shrank during the send ({offset} of {size} bytes)")
        transport.write(chunk)
        if transport.get_write_buffer_size():
            # It holds bytes not encrypted or not sent yet, maybe this very
            # buffer's: the next read must not write over them.
            buffer = None
        offset += len(chunk)
        progress.done = offset
        stats.bytes_sent += len(chunk)
        await flow.wait_resumed(stall_limit)


async def read_chunk(
    fd: int, count: int, offset: int, buffer: bytearray | None = None
) -> bytes | memoryview:
    """Up to ``count`` bytes of ``fd`` from ``offset`` (empty at its end), read
    into ``buffer`` (of ``count`` bytes at least) when the page cache has them.

    Read on the loop when the page cache holds them: a read that has to wait
    for the disk would stall every connection, so that one goes to a thread,
    and a round trip to a thread costs more than copying a cached megabyte.
    """
    if _NOWAIT:
        if buffer is None or len(buffer) < count:
            buffer = bytearray(count)
        view = memoryview(buffer)[:count]
        try:
            got = os.preadv(fd, [view], offset, _NOWAIT)
        except OSError:  # BlockingIOError: not cached; others: the thread's read says
            pass
        else:
            return view[:got]  # fewer: only part was cached, or the file ends (0 there)
    return await asyncio.to_thread(os.pread, fd, count, offset)
