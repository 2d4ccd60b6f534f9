"""The repository: what a client may read, the listing, and the hash cache.

The repository is a boundary. :meth:`Repository.resolve` is the one function
that turns a client's path into a file inside the root, or refuses it; every
read on behalf of a client goes through it (``open`` and ``listing`` use it).
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import mmap
import os
import stat
from collections import OrderedDict
from dataclasses import dataclass
from datetime import UTC, datetime

from .errors import Forbidden, NotFound, RequestError
from .protocol import FileInfo

log = logging.getLogger("filedock.repository")

# Characters that cannot travel inside one protocol line or one record field.
_UNSENDABLE = frozenset("\t\r\n")

# Hashing reads this much at a time: large enough that hashlib releases the
# GIL and system calls are few, small enough to stay in the CPU cache.
_HASH_CHUNK = 1024 * 1024

# Names logged as unservable are remembered so each is logged once; the set
# is bounded so a hostile folder of millions of names costs little memory.
_MAX_REPORTED_NAMES = 10_000


@dataclass(frozen=True, slots=True)
class FileKey:
    """What identifies a file's contents for the hash cache."""

    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> FileKey:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


class OpenedFile:
    """A repository file opened for one download; close it when done."""

    __slots__ = ("fd", "path", "key")

    def __init__(self, fd: int, path: str, key: FileKey) -> None:
        self.fd = fd
        self.path = path
        self.key = key

    @property
    def size(self) -> int:
        return self.key.size

    def unchanged(self) -> bool:
        """Whether the file still has the size and mtime it had when opened."""
        return FileKey.of(os.fstat(self.fd)) == self.key

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> OpenedFile:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


class Repository:
    """The folder a server shares, read-only."""

    def __init__(self, root: str | os.PathLike[str], *, hash_cache_size: int = 4096) -> None:
        self.root = os.path.realpath(root)
        if not os.path.isdir(self.root):
            raise NotADirectoryError(f"repository is not a folder: {os.fspath(root)}")
        self.hashes = HashCache(hash_cache_size)
        self._reported: set[str] = set()

    # -- the boundary -------------------------------------------------------

    def resolve(self, client_path: str) -> str:
        """The real path of the regular file ``client_path`` names, or an error.

        Raises :class:`Forbidden` for a path that leaves the repository (``..``,
        absolute, a symlink resolving outside), a hidden name, a backslash or
        NUL, or anything that is not a regular file; :class:`NotFound` when
        there is nothing there. Error texts never show the server's paths.
        """
        _check_client_path(client_path)
        real = os.path.realpath(os.path.join(self.root, client_path))
        inside = os.path.relpath(real, self.root) if real.startswith(self.root + os.sep) else None
        if inside is None:
            raise Forbidden("path leaves the repository")
        if any(part.startswith(".") for part in inside.split(os.sep)):
            raise Forbidden("hidden files are not served")
        try:
            st = os.stat(real)
        except (FileNotFoundError, NotADirectoryError):
            raise NotFound("no such file in the repository") from None
        except OSError:
            raise Forbidden("file cannot be read") from None
        if not stat.S_ISREG(st.st_mode):
            raise Forbidden("not a regular file")
        return real

    def serves(self, client_path: str) -> bool:
        """Whether ``client_path`` names a file this repository would serve."""
        try:
            self.resolve(client_path)
        except RequestError:
            return False
        return True

    def open(self, client_path: str) -> OpenedFile:
        """Open the file ``client_path`` names, once, for a download."""
        real = self.resolve(client_path)
        try:
            # O_NOFOLLOW: the last component was resolved above and must not have
            # become a symlink since; O_NONBLOCK: a FIFO swapped in cannot block.
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise NotFound("no such file in the repository") from None
        except OSError:
            raise Forbidden("file cannot be read") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise Forbidden("not a regular file")
        except BaseException:
            os.close(fd)
            raise
        return OpenedFile(fd, client_path, FileKey.of(st))

    # -- listing ----------------------------------------------------------

    def listing(self) -> list[FileInfo]:
        """Every file the repository serves, sorted by path. Blocks: run it in a thread."""
        files: list[FileInfo] = []
        seen_dirs: set[tuple[int, int]] = set()
        # Folders reached through a symlink are scanned after every real folder,
        # so a folder also linked from elsewhere is listed under its own path
        # whatever order the disk returns names in.
        linked: list[tuple[str, str]] = []
        self._scan(self.root, "", files, seen_dirs, linked)
        while linked:
            folder, prefix = linked.pop(0)
            self._scan(folder, prefix, files, seen_dirs, linked)
        files.sort(key=lambda info: info.path)
        return files

    def _scan(
        self,
        folder: str,
        prefix: str,
        files: list[FileInfo],
        seen_dirs: set[tuple[int, int]],
        linked: list[tuple[str, str]],
    ) -> None:
        try:
            folder_stat = os.stat(folder)
            if (folder_stat.st_dev, folder_stat.st_ino) in seen_dirs:
                return  # a symlink loop, or a folder linked twice
            seen_dirs.add((folder_stat.st_dev, folder_stat.st_ino))
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("Cannot read folder %r of the repository: %s", prefix or ".", exc.strerror)
            return
        for entry in entries:
            name = entry.name
            if name.startswith("."):
                continue
            path = prefix + name
            if not self._sendable(path):
                continue
            try:
                is_dir = entry.is_dir()  # follows symlinks
            except OSError:
                continue
            if is_dir:
                if not entry.is_symlink():
                    self._scan(entry.path, path + "/", files, seen_dirs, linked)
                elif self._inside(entry.path):
                    linked.append((entry.path, path + "/"))
                continue
            try:
                self.resolve(path)
                st = entry.stat()
            except (RequestError, OSError):
                continue
            mtime = datetime.fromtimestamp(int(st.st_mtime), UTC)
            files.append(FileInfo(path, st.st_size, mtime))

    def _inside(self, path: str) -> bool:
        return os.path.realpath(path).startswith(self.root + os.sep)

    def _sendable(self, path: str) -> bool:
        """Whether a name can travel in one record; logs once each one that cannot."""
        try:
            path.encode("utf-8")
            ok = not _UNSENDABLE.intersection(path)
        except UnicodeEncodeError:  # not UTF-8 on disk: scandir gave surrogates
            ok = False
        if not ok and path not in self._reported and len(self._reported) < _MAX_REPORTED_NAMES:
            self._reported.add(path)
            log.warning("Not listing %a: the name cannot travel on one protocol line", path)
        return ok


def _check_client_path(path: str) -> None:
    """Refuse, without touching the disk, a path no repository file can have."""
    if not path:
        raise Forbidden("empty path")
    if "\0" in path or "\\" in path or not _UNSENDABLE.isdisjoint(path):
        raise Forbidden("path holds a character that is not allowed")
    if path.startswith("/"):
        raise Forbidden("absolute paths are not allowed")
    for part in path.split("/"):
        if part == "..":
            raise Forbidden("path leaves the repository")
        if part == "" or part == ".":
            raise Forbidden("path has an empty or '.' component")
        if part.startswith("."):
            raise Forbidden("hidden files are not served")


class FileChanged(RequestError):
    """The file changed while it was being read."""

    code = "internal"


class HashCache:
    """SHA-256 of repository files, computed off the event loop, once.

    Digests are kept per :class:`FileKey` (device, inode, size, mtime), at most
    ``max_entries`` of them, least recently used dropped first. Requests for a
    file that is being hashed wait for that one hashing instead of starting
    another.
    """

    def __init__(self, max_entries: int = 4096) -> None:
        self.max_entries = max_entries
        self._digests: OrderedDict[FileKey, str] = OrderedDict()
        self._pending: dict[FileKey, asyncio.Future[str]] = {}
        self.hashings = 0  # how many times a file was read and hashed

    def cached(self, key: FileKey) -> str | None:
        digest = self._digests.get(key)
        if digest is not None:
            self._digests.move_to_end(key)
        return digest

    async def sha256(self, opened: OpenedFile) -> str:
        """The SHA-256 hex digest of ``opened``'s contents.

        Raises :class:`FileChanged` if the file changed while it was hashed.
        """
        key = opened.key
        digest = self.cached(key)
        if digest is not None:
            return digest
        pending = self._pending.get(key)
        if pending is None:
            # The hashing thread gets its own descriptor: the session may close
            # its own (a client leaving) while others wait for this digest.
            fd = os.dup(opened.fd)
            pending = asyncio.ensure_future(asyncio.to_thread(_hash_and_close, fd, key))
            self._pending[key] = pending
            self.hashings += 1
            pending.add_done_callback(lambda done: self._store(key, done))
        # shield: one waiter giving up must not cancel the others' hashing.
        return await asyncio.shield(pending)

    def _store(self, key: FileKey, done: asyncio.Future[str]) -> None:
        del self._pending[key]
        if done.cancelled() or done.exception() is not None:
            return
        self._digests[key] = done.result()
        while len(self._digests) > self.max_entries:
            self._digests.popitem(last=False)

    def __len__(self) -> int:
        return len(self._digests)


def _hash_and_close(fd: int, key: FileKey) -> str:
    try:
        return hash_fd(fd, key)
    finally:
        os.close(fd)


def hash_fd(fd: int, key: FileKey) -> str:
    """SHA-256 of the first ``key.size`` bytes of ``fd``, checking the file did not change."""
    digest = hashlib.sha256()
    # Page-aligned (an anonymous mapping): malloc puts a fresh large block 16
    # bytes past a page boundary, and the kernel copies into that 2-4 times slower.
    view = memoryview(mmap.mmap(-1, _HASH_CHUNK, flags=mmap.MAP_PRIVATE))
    offset = 0
    while offset < key.size:
        count = os.preadv(fd, [view[: min(_HASH_CHUNK, key.size - offset)]], offset)
        if count == 0:
            raise FileChanged("the file shrank while it was read; try again")
        digest.update(view[:count])
        offset += count
    if FileKey.of(os.fstat(fd)) != key:
        raise FileChanged("the file changed while it was read; try again")
    return digest.hexdigest()
