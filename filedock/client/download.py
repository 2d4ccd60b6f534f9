"""Receiving a file body: hash while receiving, save only what verifies.

The body is read into large buffers on the calling thread; a second thread
hashes each buffer and a third writes it, so receiving, hashing and writing
overlap (``hashlib`` and ``os.write`` release the GIL). The bytes go to a
hidden partial file beside the destination, renamed into place only when
the SHA-256 matches; a body that does not verify or cannot be written is
removed, one cut short is kept for a resume (see :mod:`.resume`).

Each destination has one partial name (``.NAME.part``), locked while a
client writes it. A client killed mid-download (SIGKILL, a power cut)
leaves at most that one file, and the next download of the same file takes
it over (resuming it, or starting it again), so partial files never pile
up, and nothing half-written ever has the final name.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import mmap
import os
import queue
import re
import stat
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol

try:
    import fcntl
except ImportError:  # Windows: no flock (see _lock_partial)
    fcntl = None  # type: ignore[assignment]

from ..errors import ConnectionLost, ProtocolError, SaveError, TooLarge
from .ledger import HashedPrefix, HashFeed, Ledger, WriteFeed, prefix_matches
from .sha256state import Digest, Sha256

# Buffers of this size are filled with recv_into, hashed, then written.
BUFFER_SIZE = 4 * 1024 * 1024
# Buffers in flight: a few, so a slow disk or hash does not stall receiving.
BUFFER_COUNT = 6
# Bytes a resume's prefix is read back in, to be hashed.
REHASH_CHUNK = 1024 * 1024
# Bodies up to this size are hashed and written on the receiving thread.
INLINE_LIMIT = BUFFER_SIZE

PARTIAL_SUFFIX = ".part"
# Longest file name most file systems take, in bytes.
_NAME_MAX = 255
# Partial files of earlier versions had a random part (``.NAME.x1y2z3w4.part``);
# one untouched this long was left by a client that was killed, and is removed.
_OLD_PARTIAL = re.compile(r"\..+\.[a-z0-9_]{8}\.part")
OLD_PARTIAL_AGE = 600.0

RecvInto = Callable[[memoryview], int]
# (bytes of the body received, the body's size): what the receivers report.
Progress = Callable[[int, int], None]


class Checkpoint(Protocol):
    """Called by the writer with the bytes of the body written so far (a resume record's)."""

    # Where the pipeline notes hash states and piece tags; None: it notes none.
    ledger: Ledger | None

    def __call__(self, written: int, /) -> None: ...


def local_path(dest_dir: str | os.PathLike[str], server_path: str) -> Path:
    """Where a file named ``server_path`` by the server is saved under ``dest_dir``.

    The server is untrusted: a path that is absolute, has an empty, ``.`` or
    ``..`` component, a backslash or a NUL is refused with ProtocolError, and
    so is a hidden name (a server serves none): it could land on a dotfile or
    on another download's ``.NAME.part``.
    """
    if not server_path or "\0" in server_path or "\\" in server_path:
        raise ProtocolError(f"server sent an unsafe path: {server_path!r}")
    if server_path.startswith("/"):
        raise ProtocolError(f"server sent an absolute path: {server_path!r}")
    parts = server_path.split("/")
    if any(part in ("", ".", "..") for part in parts):
        raise ProtocolError(f"server sent an unsafe path: {server_path!r}")
    if any(part.startswith(".") for part in parts):
        raise ProtocolError(f"server sent a hidden path: {server_path!r}")
    return Path(dest_dir).joinpath(*PurePosixPath(server_path).parts)


def linked_folder(root: Path, dest: Path, checked: set[Path] | None = None) -> Path | None:
    """The first folder between ``root`` and ``dest`` that is a symbolic link, if any.

    A file saved through it would land outside ``root``, where the user did
    not ask. ``checked`` holds folders known to be none, so a folder of many
    files costs one lstat.
    """
    try:
        parts = dest.parent.relative_to(root).parts
    except ValueError:
        return None
    folder = root
    for part in parts:
        folder = folder / part
        if checked is not None and folder in checked:
            continue
        try:
            if stat.S_ISLNK(os.lstat(folder).st_mode):
                return folder
        except OSError:
            pass  # missing (made as a real folder), or not a folder: nothing is saved there
        if checked is not None:
            checked.add(folder)
    return None


def refused_link(link: Path, root: Path) -> str:
    return f"not saved: {link} is a symbolic link, and {root} is the destination"


def partial_path(dest: Path) -> Path:
    """The one hidden partial file of ``dest``: ``.NAME.part`` beside it."""
    return hidden_path(dest, PARTIAL_SUFFIX)


def hidden_path(dest: Path, suffix: str) -> Path:
    """The hidden file ``.NAME<suffix>`` beside ``dest``.

    A name too long for that gets a digest of the name instead, so every
    destination still has exactly one such name.
    """
    name = f".{dest.name}{suffix}"
    if len(os.fsencode(name)) > _NAME_MAX:
        digest = hashlib.sha256(os.fsencode(dest.name)).hexdigest()[:32]
        name = f".filedock-{digest}{suffix}"
    return dest.with_name(name)


class Partial:
    """The partial file of one download: open for writing and locked while it lasts.

    :meth:`open` takes it over (creating it, or truncating what a killed
    download left), :meth:`reopen` takes over what an interrupted one left,
    :meth:`commit` renames it into place, :meth:`discard` removes it,
    :meth:`keep` leaves it for a resume.
    """

    def __init__(self, dest: Path, path: Path, fd: int) -> None:
        self.dest = dest
        self.path = path
        self.fd = fd
        self.saved: os.stat_result | None = None  # the saved file's, after commit

    @classmethod
    def reopen(cls, dest: Path) -> Partial | None:
        """The partial file ``dest``'s last download left, locked, as it is; None if none.

        Raises :class:`SaveError` when another client is writing it.
        """
        path = partial_path(dest)
        if not os.path.lexists(path):
            return None
        return cls(dest, path, _open_locked(path, dest))

    def size(self) -> int:
        return os.fstat(self.fd).st_size

    def truncate(self, length: int) -> None:
        """Keep the first ``length`` bytes; the next write goes after them."""
        try:
            os.ftruncate(self.fd, length)
            os.lseek(self.fd, length, os.SEEK_SET)
        except OSError as exc:
            self.discard()
            raise SaveError(f"cannot write to {self.dest.parent}: {exc.strerror}") from None

    @classmethod
    def open(cls, dest: Path, size: int) -> Partial:
        """The partial file of ``dest``, empty, with room for ``size`` bytes on its disk.

        Raises :class:`SaveError` when it cannot be made (a read-only folder,
        a file where a folder should be, another client writing it), and
        :class:`TooLarge` when the file system has less than ``size`` bytes
        free. Nothing is read from the connection.
        """
        path = partial_path(dest)
        fd = _open_locked(path, dest)
        partial = cls(dest, path, fd)
        try:
            os.ftruncate(fd, 0)
            _check_room(fd, size, dest)
        except OSError as exc:
            partial.discard()
            raise SaveError(f"cannot write to {dest.parent}: {exc.strerror}") from None
        except BaseException:
            partial.discard()
            raise
        return partial

    def commit(self, mtime_ns: int | None = None) -> Path:
        """Rename the partial file into place (with ``mtime_ns`` as its mtime, when
        given) and release it; the destination. :attr:`saved` is its status then."""
        try:
            if mtime_ns is not None:
                os.utime(self.fd, ns=(time.time_ns(), mtime_ns))
            os.replace(self.path, self.dest)
            self.saved = os.fstat(self.fd)  # after the rename, which may change its ctime
        except OSError as exc:  # e.g. a folder under the final name
            self.discard()
            raise SaveError(f"cannot save {self.dest}: {exc.strerror}") from None
        os.close(self.fd)  # the lock goes with it
        return self.dest

    def discard(self) -> None:
        """Remove the partial file and release it."""
        _remove(self.path)
        os.close(self.fd)

    def keep(self) -> None:
        """Release the partial file and leave it where it is, for a resume."""
        os.close(self.fd)


def _open_locked(path: Path, dest: Path) -> int:
    """``path`` opened for writing and locked; SaveError if it cannot be."""
    flags = os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    for _ in range(3):  # bounded: each retry follows a rename by another client
        try:
            # 0o666: the kernel takes the umask off, as for any file a program writes.
            fd = _open_making_folders(path, flags)
        except OSError as exc:
            raise SaveError(f"cannot write to {dest.parent}: {_why(exc)}") from None
        try:
            opened = os.fstat(fd)
            if not stat.S_ISREG(opened.st_mode):
                raise SaveError(f"cannot write {path}: not a regular file")
            try:
                _lock_partial(fd)
            except BlockingIOError:
                raise SaveError(f"{dest} is being downloaded by another client") from None
            # The client that held the lock may have renamed this file into place
            # just before we took it: then it is no partial any more.
            with contextlib.suppress(FileNotFoundError):
                if os.path.samestat(opened, os.lstat(path)):
                    if opened.st_nlink == 1:
                        return fd
                    # A hard link to a file elsewhere: writing would change that
                    # file. The name is freed, and the next try makes a file of its own.
                    _free_name(path, dest)
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
    raise SaveError(f"cannot write {path}: it keeps being replaced")


def _free_name(path: Path, dest: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass  # another client freed it first
    except OSError as exc:
        raise SaveError(f"cannot write to {dest.parent}: {_why(exc)}") from None


def _open_making_folders(path: Path, flags: int) -> int:
    """Open ``path``, making its folders only when missing: a folder of many
    files costs one mkdir, not one per file."""
    try:
        return os.open(path, flags, 0o666)
    except FileNotFoundError:
        _make_folders(path.parent)
        return os.open(path, flags, 0o666)


def _make_folders(folder: Path) -> None:
    """Make ``folder`` and the folders missing above it, in a loop: pathlib's
    ``parents=True`` recurses once a level, and a server may name a path
    thousands of folders deep (RecursionError, not an OSError)."""
    missing: list[Path] = []
    while True:
        try:
            folder.mkdir()
        except FileNotFoundError:
            missing.append(folder)
            folder = folder.parent  # "/" at worst, which exists: the loop ends
            continue
        except FileExistsError:
            pass
        break
    for below in reversed(missing):
        below.mkdir(exist_ok=True)


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return f"{exc.filename} is a symbolic link"
    return exc.strerror or type(exc).__name__


def _check_room(fd: int, size: int, dest: Path) -> None:
    """TooLarge when the file system of ``fd`` has less than ``size`` bytes free."""
    info = os.fstatvfs(fd)
    if info.f_blocks == 0:
        return  # a file system that tells nothing of its size (some FUSE ones): no check
    free = info.f_bavail * info.f_frsize
    if size > free:
        raise TooLarge(f"no room for {dest.name} ({size} bytes) in {dest.parent}: {free} free")


def remove_old_partials(folder: Path, now: float | None = None) -> int:
    """Remove partial files earlier versions left in ``folder``; how many.

    Those had a random part in their name, so a killed download's file was
    never taken over. Only ones untouched for OLD_PARTIAL_AGE are removed: an
    older client may still be writing a recent one.
    """
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        if not _OLD_PARTIAL.fullmatch(entry.name):
            continue
        with contextlib.suppress(OSError):
            info = entry.stat(follow_symlinks=False)
            if stat.S_ISREG(info.st_mode) and now - info.st_mtime > OLD_PARTIAL_AGE:
                os.unlink(entry.path)
                removed += 1
    return removed


@dataclass(frozen=True, slots=True)
class Received:
    """How a body went: its SHA-256 as received, and the write error that stopped it.

    ``whole`` says whether every byte of the body was read (the connection is
    still in step with the server).
    """

    sha256: str
    write_error: OSError | None
    whole: bool


def receive_body(
    recv_into: RecvInto,
    first: bytes,
    size: int,
    fd: int,
    progress: Progress | None = None,
    *,
    checkpoint: Checkpoint | None = None,
    rehash: int = 0,
) -> Received:
    """Receive ``size`` bytes (``first`` already read), hash them and write them to ``fd``.

    ``rehash`` says the file's first bytes, already in ``fd``, that the
    digest must cover too (a resume's prefix, checked beside the transfer:
    see _CatchingUp); ``checkpoint`` is called after writes with the bytes
    written so far, and its ledger is told what the record may vouch for.
    A body up to INLINE_LIMIT is read whole before it is written. A larger
    one stops being read at the first write error: the rest would only be
    thrown away (a server can announce 10**12 bytes), so the caller must
    drop the connection. Raises :class:`ConnectionLost` when the connection
    ends early.
    """
    ledger = None if checkpoint is None else checkpoint.ledger
    if size <= INLINE_LIMIT:
        digest = _prefix_digest(fd, rehash, ledger)
        return _receive_inline(recv_into, first, size, fd, progress, digest)
    if rehash:
        pipeline: _Pipeline = _CatchingUp(fd, checkpoint, rehash)
    else:
        pipeline = _Pipeline(fd, checkpoint)
    received = 0
    reached = [0]  # how far the buffer being filled got: kept if the body is cut short
    buffer: memoryview | None = None
    try:
        if first:
            buffer = pipeline.free.get()
            buffer[: len(first)] = first
            reached[0] = len(first)
            received = _fill(recv_into, buffer, len(first), min(len(buffer), size), reached)
            handed, buffer = buffer, None
            pipeline.to_hash.put((handed, received))
        while received < size:
            buffer = pipeline.free.get()
            if pipeline.write_error is not None:
                buffer = None
                break  # never read on: the caller closes the connection
            reached[0] = 0
            filled = _fill(recv_into, buffer, 0, min(len(buffer), size - received), reached)
            # Let go of the name first: a signal's exception right after the put
            # would otherwise hand the buffer over again, and write it twice.
            handed, buffer = buffer, None
            pipeline.to_hash.put((handed, filled))
            received += filled
            if progress is not None:
                progress(received, size)
    except BaseException:
        if buffer is not None and reached[0]:
            pipeline.to_hash.put((buffer, reached[0]))  # written, for a resume to go on from
        raise
    finally:
        pipeline.finish()
    return Received(pipeline.hexdigest(), pipeline.write_error, received == size)


def hash_back(fd: int, start: int, end: int, digest: Digest | HashFeed) -> bool:
    """Hash ``fd``'s bytes from ``start`` to ``end`` into ``digest``; False if unreadable."""
    buffer = memoryview(bytearray(min(REHASH_CHUNK, max(end - start, 1))))
    try:
        while start < end:
            count = os.preadv(fd, [buffer[: min(len(buffer), end - start)]], start)
            if count == 0:
                return False
            digest.update(buffer[:count])
            start += count
    except OSError:
        return False
    return True


def _prefix_digest(fd: int, length: int, ledger: Ledger | None) -> Digest:
    """SHA-256 over ``fd``'s first ``length`` bytes as they are on the disk, from
    the ledger's hashed prefix when it has one (its pieces checked first)."""
    never = hashlib.sha256(b"unreadable")  # never the file's: it starts over
    if ledger is None:
        digest: Digest = hashlib.sha256()
        start = 0
    else:
        if not prefix_matches(fd, ledger.base):
            return never
        digest, start = Sha256(ledger.base.state), ledger.base.length
    return digest if hash_back(fd, start, length, digest) else never


def _receive_inline(
    recv_into: RecvInto,
    first: bytes,
    size: int,
    fd: int,
    progress: Progress | None,
    digest: Digest,
) -> Received:
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
    digest.update(buffer)
    return Received(digest.hexdigest(), error, True)


def _fill(
    recv_into: RecvInto,
    buffer: bytearray | memoryview,
    start: int,
    end: int,
    reached: list[int] | None = None,
) -> int:
    """Fill ``buffer[start:end]`` from the connection; returns ``end``.

    ``reached[0]`` follows how far it got, for a caller cut short on the way.
    """
    view = memoryview(buffer)
    while start < end:
        count = recv_into(view[start:end])
        if count == 0:
            raise ConnectionLost("connection closed in the middle of a file")
        start += count
        if reached is not None:
            reached[0] = start
    return end


def discard_body(recv_into: RecvInto, first: bytes, size: int) -> None:
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


def _remove(name: str | os.PathLike[str]) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(name)


def _lock_partial(fd: int) -> None:
    """Hold the partial file for this client; ``BlockingIOError`` if another holds it.

    Without :mod:`fcntl` (Windows) there is no lock: two clients fetching one
    file into one folder at the same moment are then not kept apart.
    """
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def _page_aligned(size: int) -> memoryview:
    """A zeroed buffer of ``size`` bytes that starts on a page boundary.

    malloc puts a fresh large block 16 bytes past a page boundary, and the
    kernel copies socket data into such a buffer 2-3 times slower than into an
    aligned one (AMD Zen 3, recv_into of 1 GiB over loopback: 0.5 s of system
    time against 0.2 s). An anonymous mapping always starts on a page. Where
    mmap has no MAP_PRIVATE (Windows), a plain buffer does the same job.
    """
    private = getattr(mmap, "MAP_PRIVATE", None)
    if private is None:
        return memoryview(bytearray(size))
    return memoryview(mmap.mmap(-1, size, flags=private))


class _Pipeline:
    """A hashing thread and a writing thread fed with filled buffers.

    With a checkpoint's ledger, the hash is one whose state can be saved, and
    the threads note the state at each piece end and each piece's tag.
    """

    def __init__(self, fd: int, checkpoint: Checkpoint | None) -> None:
        self.fd = fd
        self._checkpoint = checkpoint
        ledger = None if checkpoint is None else checkpoint.ledger
        self.digest: Digest
        self._sink: Digest | HashFeed  # what the hashing thread feeds
        self._written_pieces: WriteFeed | None = None
        if ledger is None:
            self.digest = self._sink = hashlib.sha256()
        else:
            # From the record's hashed prefix on a resume, from nothing otherwise.
            digest = Sha256(ledger.base.state)
            self.digest, self._sink = digest, HashFeed(digest, ledger, ledger.base.length)
            self._written_pieces = WriteFeed(ledger)
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
            self._sink.update(memoryview(buffer)[:count])
            self.to_write.put(item)
        self.to_write.put(None)

    def _write(self) -> None:
        written = 0
        while (item := self.to_write.get()) is not None:
            written = self._write_one(item, written)
            self.free.put(item[0])

    def _write_one(self, item: tuple[memoryview, int], written: int) -> int:
        """Write one buffer (none after a write error); the body's bytes written since."""
        buffer, count = item
        if self.write_error is None:
            try:
                _write_all(self.fd, memoryview(buffer)[:count])
                written += count
            except OSError as exc:
                self.write_error = exc  # the receiver stops at its next buffer
            if self._written_pieces is not None and self.write_error is None:
                self._written_pieces.wrote(memoryview(buffer)[:count])
            if self._checkpoint is not None and self.write_error is None:
                self._checkpoint(written)
        return written

    def hexdigest(self) -> str:
        return self.digest.hexdigest()

    def finish(self) -> None:
        """Let the threads drain what they were given, and wait for them."""
        self.to_hash.put(None)
        for thread in self._threads:
            thread.join()


class _CatchingUp(_Pipeline):
    """A resume's pipeline: the part is written as it comes, never waiting for the hash.

    The whole file's digest needs the prefix first, and hashing it before the
    transfer put it on the download's critical path (0.37 s for 512 MiB).
    Here the receiver feeds the writer directly; the hashing thread reads the
    file back, the prefix and then the part the writer has written, until it
    has caught up with the writer; from there the writer hands it each
    buffer, as _Pipeline does. ``to_hash`` is the writer's queue.

    With the record's hashed prefix (the checkpoint's ledger has it), the
    hash goes on from its saved state, so only the bytes after it are read
    back; a third thread meanwhile reads the hashed prefix back and checks it
    against its tags. Without one, the hash starts from the first byte.
    """

    def __init__(self, fd: int, checkpoint: Checkpoint | None, prefix: int) -> None:
        ledger = None if checkpoint is None else checkpoint.ledger
        base = None if ledger is None else ledger.base
        self._lock = threading.Lock()
        self._hashed = 0 if base is None else base.length  # the file's bytes hashed, from its first
        self._written_end = prefix  # where the writer's bytes end in the file
        self._writer_done = False
        self._caught_up = False  # from here the writer hands its buffers over
        self._in_memory: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
        self._unreadable = False
        self._damaged = False  # the hashed prefix's bytes are not the ones hashed
        super().__init__(fd, checkpoint)
        self._checking: threading.Thread | None = None
        if base is not None and base.length:
            self._checking = threading.Thread(
                target=self._check, args=(base,), name="filedock-check", daemon=True
            )
            self._checking.start()

    def _check(self, base: HashedPrefix) -> None:
        self._damaged = not prefix_matches(self.fd, base)

    def _hash(self) -> None:
        while self._catch_up_step():
            pass
        while (item := self._in_memory.get()) is not None:
            buffer, count = item
            if not self._unreadable:  # a hash that skipped bytes must note no state
                self._sink.update(memoryview(buffer)[:count])
            self.free.put(buffer)

    def _catch_up_step(self) -> bool:
        """Hash one chunk back from the file; False once caught up or done."""
        with self._lock:
            if self._hashed >= self._written_end:
                # Level with the writer: its next buffers come here (none once it is done).
                self._caught_up = not self._writer_done
                return False
            start, end = self._hashed, min(self._written_end, self._hashed + REHASH_CHUNK)
        if not self._unreadable and not hash_back(self.fd, start, end, self._sink):
            self._unreadable = True  # the digest can no longer be the file's
        with self._lock:
            self._hashed = end
        return True

    def _write(self) -> None:
        written = 0
        while (item := self.to_hash.get()) is not None:
            written = self._write_one(item, written)
            with self._lock:
                if self._caught_up:
                    self._in_memory.put(item)  # the hashing frees it
                    continue
                self._written_end += item[1]
            self.free.put(item[0])
        with self._lock:
            self._writer_done = True
        self._in_memory.put(None)

    def finish(self) -> None:
        super().finish()
        if self._checking is not None:
            self._checking.join()

    def hexdigest(self) -> str:
        if self._unreadable or self._damaged:
            return ""  # matches no digest: the file is fetched whole
        return self.digest.hexdigest()
