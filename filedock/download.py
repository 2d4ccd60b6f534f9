"""Receiving a file body: hash while receiving, save only what verifies.

The body is read into large buffers on the calling thread; a second thread
hashes each buffer and a third writes it, so receiving, hashing and writing
overlap (``hashlib`` and ``os.write`` release the GIL). The bytes go to a
temporary file in the destination folder, renamed into place only when the
SHA-256 matches; on any failure the temporary file is removed.
"""

from __future__ import annotations

import contextlib
import hashlib
import mmap
import os
import queue
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from .errors import ConnectionLost, IntegrityError, ProtocolError, SaveError

# Buffers of this size are filled with recv_into, hashed, then written.
BUFFER_SIZE = 4 * 1024 * 1024
# Buffers in flight: a few, so a slow disk or hash does not stall receiving.
BUFFER_COUNT = 6
# Bodies up to this size are hashed and written on the receiving thread.
_INLINE_LIMIT = BUFFER_SIZE

# mkstemp creates files readable by their owner only; saved files get the
# usual mode (0666 less the umask), like any file a program writes.
_UMASK = os.umask(0o022)
os.umask(_UMASK)

RecvInto = Callable[[memoryview], int]
Progress = Callable[[int, int], None]


def local_path(dest_dir: str | os.PathLike[str], server_path: str) -> Path:
    """Where a file named ``server_path`` by the server is saved under ``dest_dir``.

    The server is untrusted: a path that is absolute, has an empty, ``.`` or
    ``..`` component, a backslash or a NUL is refused with ProtocolError.
    """
    if not server_path or "\0" in server_path or "\\" in server_path:
        raise ProtocolError(f"server sent an unsafe path: {server_path!r}")
    if server_path.startswith("/"):
        raise ProtocolError(f"server sent an absolute path: {server_path!r}")
    parts = server_path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ProtocolError(f"server sent an unsafe path: {server_path!r}")
    return Path(dest_dir).joinpath(*PurePosixPath(server_path).parts)


def receive_file(
    recv_into: RecvInto,
    first: bytes,
    size: int,
    sha256: str,
    dest: Path,
    progress: Progress | None = None,
) -> Path:
    """Receive ``size`` bytes (``first`` already read), verify them, save to ``dest``.

    Raises :class:`IntegrityError` on a hash mismatch, :class:`ConnectionLost`
    when the connection ends early, :class:`SaveError` when the file cannot be
    written (the body is still read whole, so the session can go on). No file
    is left under ``dest`` or beside it unless the hash matched.
    """
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, temp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    except OSError as exc:
        _discard(recv_into, first, size)
        raise SaveError(f"cannot write to {dest.parent}: {exc.strerror}") from None
    try:
        try:
            digest, write_error = _receive(recv_into, first, size, fd, progress)
        finally:
            os.close(fd)
        if write_error is not None:
            raise SaveError(f"cannot write {dest}: {write_error.strerror}")
        os.chmod(temp_name, 0o666 & ~_UMASK)
        if digest != sha256:
            raise IntegrityError(
                f"SHA-256 mismatch for {dest.name}", expected=sha256, actual=digest
            )
        try:
            os.replace(temp_name, dest)
        except OSError as exc:  # e.g. a folder under the final name
            raise SaveError(f"cannot save {dest}: {exc.strerror}") from None
    except BaseException:
        _remove(temp_name)
        raise
    return dest


def _receive(
    recv_into: RecvInto, first: bytes, size: int, fd: int, progress: Progress | None
) -> tuple[str, OSError | None]:
    if size <= _INLINE_LIMIT:
        return _receive_inline(recv_into, first, size, fd, progress)
    pipeline = _Pipeline(fd)
    try:
        received = 0
        if first:
            buffer = pipeline.free.get()
            buffer[: len(first)] = first
            received = _fill(recv_into, buffer, len(first), min(len(buffer), size))
            pipeline.to_hash.put((buffer, received))
        while received < size:
            buffer = pipeline.free.get()
            filled = _fill(recv_into, buffer, 0, min(len(buffer), size - received))
            pipeline.to_hash.put((buffer, filled))
            received += filled
            if progress is not None:
                progress(received, size)
    finally:
        pipeline.finish()
    return pipeline.digest.hexdigest(), pipeline.write_error


def _receive_inline(
    recv_into: RecvInto, first: bytes, size: int, fd: int, progress: Progress | None
) -> tuple[str, OSError | None]:
    buffer = bytearray(size)
    buffer[: len(first)] = first
    _fill(recv_into, buffer, len(first), size)
    if progress is not None:
        progress(size, size)
    try:
        _write_all(fd, memoryview(buffer))
        error = None
    except OSError as exc:
        error = exc
    return hashlib.sha256(buffer).hexdigest(), error


def _fill(recv_into: RecvInto, buffer: bytearray | memoryview, start: int, end: int) -> int:
    """Fill ``buffer[start:end]`` from the connection; returns ``end``."""
    view = memoryview(buffer)
    while start < end:
        count = recv_into(view[start:end])
        if count == 0:
            raise ConnectionLost("connection closed in the middle of a file")
        start += count
    return end


def _discard(recv_into: RecvInto, first: bytes, size: int) -> None:
    """Read and drop a body, so the next reply can be read."""
    left = size - len(first)
    buffer = memoryview(bytearray(min(BUFFER_SIZE, max(left, 1))))
    while left > 0:
        count = recv_into(buffer[: min(len(buffer), left)])
        if count == 0:
            raise ConnectionLost("connection closed in the middle of a file")
        left -= count


def _write_all(fd: int, view: memoryview) -> None:
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _remove(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)


def _page_aligned(size: int) -> memoryview:
    """A zeroed buffer of ``size`` bytes that starts on a page boundary.

    malloc puts a fresh large block 16 bytes past a page boundary, and the
    kernel copies socket data into such a buffer 2-3 times slower than into an
    aligned one (AMD Zen 3, recv_into of 1 GiB over loopback: 0.5 s of system
    time against 0.2 s). An anonymous mapping always starts on a page.
    """
    return memoryview(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE))


class _Pipeline:
    """A hashing thread and a writing thread fed with filled buffers."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.digest = hashlib.sha256()
        self.write_error: OSError | None = None
        self.free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
        for _ in range(BUFFER_COUNT):
            self.free.put(_page_aligned(BUFFER_SIZE))
        self.to_hash: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self.to_write: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._hash, name="filedock-hash", daemon=True),
            threading.Thread(target=self._write, name="filedock-write", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _hash(self) -> None:
        while (item := self.to_hash.get()) is not None:
            buffer, count = item
            self.digest.update(memoryview(buffer)[:count])
            self.to_write.put(item)
        self.to_write.put(None)

    def _write(self) -> None:
        while (item := self.to_write.get()) is not None:
            buffer, count = item
            if self.write_error is None:
                try:
                    _write_all(self.fd, memoryview(buffer)[:count])
                except OSError as exc:
                    self.write_error = exc  # keep reading the body; report it after
            self.free.put(buffer)

    def finish(self) -> None:
        """Let the threads drain what they were given, and wait for them."""
        self.to_hash.put(None)
        for thread in self._threads:
            thread.join()
