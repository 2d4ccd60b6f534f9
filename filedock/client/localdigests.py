"""The SHA-256 digests of local files, cached so an unchanged file is hashed once.

Keyed as the server keys its own (device, inode, size, mtime and ctime in
nanoseconds), in the same SQLite store (:mod:`filedock.digests`) in the
client's cache folder: ``Client(cache_dir=...)``, else ``FILEDOCK_CACHE_DIR``,
else ``$XDG_CACHE_HOME/filedock``, else ``~/.cache/filedock``. A cache that
cannot be used leaves the digests in memory only; it never fails a download.

git's racy rule: a digest read from a file changed in the last 2 s is not
kept, as the file may change again without its key changing. A file this
client saved itself is kept at once: its digest is of the bytes it wrote.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path

from ..digests import DigestStore, Key, open_store

CACHE_DIR_VARIABLE = "FILEDOCK_CACHE_DIR"
RACY_NS = 2_000_000_000
# Digests kept in memory besides the store (a mirror's tree, many times over).
_MEMORY_ROWS = 65_536
_HASH_CHUNK = 1024 * 1024
# Digests of files this client saved, written to the store together: one
# statement per this many downloads, not one each (a folder of small files).
_SAVE_BATCH = 512


def default_cache_dir() -> Path:
    chosen = os.environ.get(CACHE_DIR_VARIABLE)
    if chosen:
        return Path(chosen)
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg) if xdg and os.path.isabs(xdg) else Path.home() / ".cache"
    return base / "filedock"


def key_of(st: os.stat_result) -> Key:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class LocalDigests:
    """Digests of local files: memory first, then the store, then hashing.

    The store is opened at the first lookup, so a download that needs none
    (a missing destination) never touches it. ``misses`` counts the files hashed.
    """

    def __init__(
        self, cache_dir: str | os.PathLike[str] | None, clock: Callable[[], int] = time.time_ns
    ) -> None:
        self._dir = None if cache_dir is None else Path(cache_dir)
        self._clock = clock
        self._store: DigestStore | None = None
        self._memory: dict[Key, str] = {}
        self._unsaved: list[tuple[Key, str]] = []  # in memory, not yet in the store
        self.misses = 0

    def _opened(self) -> DigestStore:
        if self._store is None:
            folder = default_cache_dir() if self._dir is None else self._dir
            self._store = open_store(os.fspath(folder))
        return self._store

    def lookup(self, st: os.stat_result) -> str | None:
        key = key_of(st)
        digest = self._memory.get(key)
        if digest is None:
            digest = self._opened().get(key)
            if digest is not None:
                self._remember(key, digest)
        return digest

    def digest_of(self, path: Path, st: os.stat_result) -> str | None:
        """The SHA-256 of the file at ``path`` whose lstat is ``st``; None if it cannot be read."""
        digest = self.lookup(st)
        if digest is not None:
            return digest
        self.misses += 1
        try:
            digest, opened = _hash_file(path)
        except OSError:
            return None
        if key_of(opened) != key_of(st):
            return digest  # it changed under us: good for this look, not to keep
        if self._clock() - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_NS:
            self.put(st, digest)
        return digest

    def digest_of_fd(self, fd: int, st: os.stat_result) -> str | None:
        """The SHA-256 of the open file ``fd`` whose fstat is ``st``, hashed from
        ``fd`` itself when not cached; None if it changed while it was read."""
        digest = self.lookup(st)
        if digest is not None:
            return digest
        self.misses += 1
        digest = _hash_fd(fd)
        if key_of(os.fstat(fd)) != key_of(st):
            return None
        if self._clock() - max(st.st_mtime_ns, st.st_ctime_ns) >= RACY_NS:
            self.put(st, digest)
        return digest

    def put(self, st: os.stat_result, digest: str) -> None:
        """Keep the digest of a file whose contents are known (one this client wrote);
        it reaches the store with the next batch, at :meth:`flush` or :meth:`close`."""
        key = key_of(st)
        self._remember(key, digest)
        self._unsaved.append((key, digest))
        if len(self._unsaved) >= _SAVE_BATCH:
            self._save()

    def _save(self) -> None:
        if self._unsaved:
            rows, self._unsaved = self._unsaved, []
            self._opened().put_many(rows)

    def _remember(self, key: Key, digest: str) -> None:
        if len(self._memory) >= _MEMORY_ROWS:
            self._save()  # what is cleared from memory must be in the store
            self._memory.clear()
        self._memory[key] = digest

    def flush(self) -> None:
        self._save()
        if self._store is not None:
            self._store.flush()

    def close(self) -> None:
        self._save()
        if self._store is not None:
            self._store.close()
            self._store = None


def _hash_file(path: Path) -> tuple[str, os.stat_result]:
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        return _hash_fd(fd), os.fstat(fd)
    finally:
        os.close(fd)


def _hash_fd(fd: int) -> str:
    """The SHA-256 of all of ``fd``, read with pread (its offset is left as it was)."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(_HASH_CHUNK))
    offset = 0
    while count := os.preadv(fd, [buffer], offset):
        digest.update(buffer[:count])
        offset += count
    return digest.hexdigest()
