"""The digest cache on disk: SHA-256 digests that survive a restart, in SQLite.

The server keeps one in its state folder, the client library one in its
cache folder; both key a file the same way. One file, ``digests.sqlite``. A row is one
file's key (device, inode, size, mtime and ctime in nanoseconds) and its
digest; at most ``max_rows`` rows are kept, the least recently used dropped
first. It is only a cache: a file that cannot be used (damaged, not SQLite,
unreadable) is set aside and a new one begun, and when that fails too the
digests are kept in memory only. Each case logs one warning and never stops
the program.

Its methods block: call them from worker threads, never the event loop. One
connection is shared by every thread under a lock; writes are committed in
small batches (WAL, ``synchronous=NORMAL``: no fsync per commit; a crash may
lose the last batch, which is only re-hashed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger("filedock.digests")

FILE_NAME = "digests.sqlite"
# Where an unusable file is moved, replacing the one set aside before.
SET_ASIDE_SUFFIX = ".unusable"

# Rows kept: a repository of a million files stays warm. A row is ~130 bytes
# on disk (the key, a 32-byte digest, two indexes), so 130 MB at most.
MAX_ROWS = 1_000_000
# Past the bound, this share of the rows is dropped at once, so the delete
# (a scan of the "used" index) runs once per many inserts, not at each one.
_EVICT_FRACTION = 64

# A row read is marked used again only when this share of the bound has been
# used since: a read is a write only for rows in danger of eviction, so a warm
# repository's reads after a restart write nothing.
_TOUCH_FRACTION = 4

# Writes waiting for a commit, at most: a burst of hashings is committed in
# batches, a quiet server at once (see flush()).
_BATCH_ROWS = 64
_BATCH_NS = 500_000_000

# How long a statement waits for another process's lock before giving up.
_BUSY_TIMEOUT_S = 0.5

# Bumped when the table changes shape: an older file is then set aside.
_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    device INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    sha256 BLOB NOT NULL,
    used INTEGER NOT NULL,
    PRIMARY KEY (device, inode, size, mtime_ns, ctime_ns)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS digests_used ON digests (used);
"""

_KEY_MATCH = "device = ? AND inode = ? AND size = ? AND mtime_ns = ? AND ctime_ns = ?"

# (device, inode, size, mtime_ns, ctime_ns): what a FileKey is, as SQLite stores it.
Key = tuple[int, int, int, int, int]

# Error codes that mean another process holds the file: it is not ours to set aside.
_LOCKED_CODES = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
# Error codes that mean the file is not (or no longer) a database we can read.
_DAMAGED_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


class DigestStore(Protocol):
    """What the hash cache asks of the disk (blocking: from worker threads)."""

    def get(self, key: Key) -> str | None: ...

    def put(self, key: Key, digest: str) -> None: ...

    def put_many(self, rows: list[tuple[Key, str]]) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class NoStore:
    """No disk: every digest is computed again after a restart."""

    def get(self, key: Key) -> str | None:
        return None

    def put(self, key: Key, digest: str) -> None:
        pass

    def put_many(self, rows: list[tuple[Key, str]]) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


class SqliteStore:
    """The digests in one SQLite file; thread-safe, one connection under a lock."""

    def __init__(
        self,
        connection: sqlite3.Connection,
        path: str,
        *,
        max_rows: int = MAX_ROWS,
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.path = path
        self.max_rows = max_rows
        self._clock = clock
        self._db: sqlite3.Connection | None = connection
        self._lock = threading.Lock()
        self._rows: int = connection.execute("SELECT COUNT(*) FROM digests").fetchone()[0]
        # "used" is a counter, not a time: a clock set back cannot reorder the rows.
        self._tick: int = connection.execute(
            "SELECT COALESCE(MAX(used), 0) FROM digests"
        ).fetchone()[0]
        self._unsaved = 0
        self._unsaved_since = 0

    def __len__(self) -> int:
        return self._rows

    def get(self, key: Key) -> str | None:
        with self._lock:
            if self._db is None:
                return None
            try:
                row = self._db.execute(
                    f"SELECT sha256, used FROM digests WHERE {_KEY_MATCH}", key
                ).fetchone()
                if row is None:
                    return None
                if self._tick - row[1] > self.max_rows // _TOUCH_FRACTION:
                    self._tick += 1
                    self._db.execute(
                        f"UPDATE digests SET used = ? WHERE {_KEY_MATCH}", (self._tick, *key)
                    )
                    self._wrote()
            except sqlite3.Error as exc:
                self._failed(exc)
                return None
            return bytes(row[0]).hex()

    def put(self, key: Key, digest: str) -> None:
        with self._lock:
            if self._db is None:
                return
            try:
                self._tick += 1
                self._db.execute(
                    "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (*key, bytes.fromhex(digest), self._tick),
                )
                self._rows += 1  # an estimate, made exact before any eviction
                if self._rows > self.max_rows:
                    self._evict()
                self._wrote()
            except sqlite3.Error as exc:
                self._failed(exc)

    def put_many(self, rows: list[tuple[Key, str]]) -> None:
        """Keep several digests at once, committed together: one statement for
        a folder's worth of downloads, not one each."""
        with self._lock:
            if self._db is None or not rows:
                return
            try:
                values = [
                    (*key, bytes.fromhex(digest), self._tick + number)
                    for number, (key, digest) in enumerate(rows, 1)
                ]
                self._tick += len(rows)
                self._db.executemany(
                    "INSERT OR REPLACE INTO digests VALUES (?, ?, ?, ?, ?, ?, ?)", values
                )
                self._rows += len(rows)  # an estimate, made exact before any eviction
                if self._rows > self.max_rows:
                    self._evict()
                self._commit()
            except sqlite3.Error as exc:
                self._failed(exc)

    def _evict(self) -> None:
        assert self._db is not None
        self._rows = self._db.execute("SELECT COUNT(*) FROM digests").fetchone()[0]
        excess = self._rows - self.max_rows
        if excess <= 0:
            return
        excess += self.max_rows // _EVICT_FRACTION
        self._db.execute(
            "DELETE FROM digests WHERE used IN (SELECT used FROM digests ORDER BY used LIMIT ?)",
            (excess,),
        )
        self._rows -= self._db.execute("SELECT changes()").fetchone()[0]

    def _wrote(self) -> None:
        """Count one write; commit when the batch is full or old."""
        now = self._clock()
        if self._unsaved == 0:
            self._unsaved_since = now
        self._unsaved += 1
        if self._unsaved >= _BATCH_ROWS or now - self._unsaved_since >= _BATCH_NS:
            self._commit()

    def _commit(self) -> None:
        assert self._db is not None
        self._db.commit()
        self._unsaved = 0

    def flush(self) -> None:
        """Commit what is waiting (the hash cache calls it when no hashing is left)."""
        with self._lock:
            if self._db is None or self._unsaved == 0:
                return
            try:
                self._commit()
            except sqlite3.Error as exc:
                self._failed(exc)

    def _failed(self, exc: sqlite3.Error) -> None:
        """An error after opening. Another process's lock: that one step is skipped.
        The file damaged meanwhile: it is set aside and a new one begun. Anything
        else (disk full, I/O error): memory only from now on. One warning each."""
        code = getattr(exc, "sqlite_errorcode", None)
        if code in _LOCKED_CODES:
            log.debug("The digest cache %s is busy: %s", self.path, exc)
            return
        self._close()
        reason: Exception = exc
        if code in _DAMAGED_CODES:
            try:
                _set_aside(self.path)
                self._db = _connect(self.path)
            except (OSError, sqlite3.Error) as again:
                reason = again
            else:
                self._rows = self._unsaved = 0
                log.warning(
                    "The digest cache %s is damaged (%s): set aside as %s%s, starting a new one",
                    self.path,
                    exc,
                    FILE_NAME,
                    SET_ASIDE_SUFFIX,
                )
                return
        log.warning(
            "The digest cache %s failed (%s): digests are kept in memory only from now on",
            self.path,
            reason,
        )

    def close(self) -> None:
        with self._lock:
            if self._db is None:
                return
            try:
                self._commit()
            except sqlite3.Error as exc:
                log.warning("Could not save the digest cache %s: %s", self.path, exc)
            self._close()

    def _close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def open_store(state_dir: str, *, max_rows: int = MAX_ROWS) -> DigestStore:
    """The digest store in ``state_dir`` (made if missing, private), never an exception.

    Logs at most one warning: a file that cannot be used is set aside and a new
    one begun; a folder that cannot be written, or a file another process holds
    locked, leaves the cache in memory only.
    """
    path = os.path.join(state_dir, FILE_NAME)
    try:
        os.makedirs(state_dir, mode=0o700, exist_ok=True)
        return SqliteStore(_connect(path), path, max_rows=max_rows)
    except OSError as exc:
        return _memory_only(f"the state folder {state_dir} cannot be used ({exc.strerror})")
    except sqlite3.Error as exc:
        if getattr(exc, "sqlite_errorcode", None) in _LOCKED_CODES:
            return _memory_only(f"the digest cache {path} is locked by another process")
        first = exc
    try:
        _set_aside(path)
        store = SqliteStore(_connect(path), path, max_rows=max_rows)
    except (OSError, sqlite3.Error) as exc:
        return _memory_only(f"the digest cache {path} cannot be used ({first}; then {exc})")
    log.warning(
        "The digest cache %s could not be used (%s): set aside as %s%s, starting a new one",
        path,
        first,
        FILE_NAME,
        SET_ASIDE_SUFFIX,
    )
    return store


def _connect(path: str) -> sqlite3.Connection:
    """Open (or make) the file and check it is ours; sqlite3.Error if it is not."""
    _refuse_links(path)
    db = sqlite3.connect(
        path, timeout=_BUSY_TIMEOUT_S, check_same_thread=False, isolation_level="DEFERRED"
    )
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            raise sqlite3.DatabaseError(f"made by another version (schema {version})")
        if db.execute("PRAGMA journal_mode = WAL").fetchone()[0] != "wal":
            raise sqlite3.DatabaseError("cannot write its journal")
        db.execute("PRAGMA synchronous = NORMAL")
        db.executescript(_SCHEMA)
        db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        db.commit()
    except BaseException:
        db.close()
        raise
    return db


def _refuse_links(path: str) -> None:
    """SQLite follows a link in the state folder, and would make or write a
    database wherever it points: the cache's files must be the folder's own."""
    for name in (path, path + "-wal", path + "-shm"):
        if os.path.islink(name):
            raise sqlite3.DatabaseError(f"{os.path.basename(name)} is a symbolic link")


def _set_aside(path: str) -> None:
    """Move an unusable file (and its journal) out of the way, for a look later."""
    with contextlib.suppress(FileNotFoundError):  # only a journal may be wrong
        os.replace(path, path + SET_ASIDE_SUFFIX)
    for journal in ("-wal", "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path + journal)


def _memory_only(reason: str) -> NoStore:
    log.warning("Digests are kept in memory only: %s", reason)
    return NoStore()
