"""The digest store on disk: kept across reopenings, bounded, and never a crash."""

from __future__ import annotations

import hashlib
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from filedock.digests import (
    FILE_NAME,
    SET_ASIDE_SUFFIX,
    DigestStore,
    NoStore,
    SqliteStore,
    open_store,
)

DIGEST = hashlib.sha256(b"one\n").hexdigest()
OTHER = hashlib.sha256(b"two\n").hexdigest()
KEY = (1, 2, 3, 4, 5)


def key(number: int) -> tuple[int, int, int, int, int]:
    return (1, number, 10, 20, 30)


@pytest.fixture
def opened(tmp_path: Path) -> Iterator[list[DigestStore]]:
    """Stores the test opens, closed after it."""
    stores: list[DigestStore] = []
    yield stores
    for store in stores:
        store.close()


def reopen(state: Path, opened: list[DigestStore], **options: int) -> DigestStore:
    store = open_store(str(state), **options)
    opened.append(store)
    return store


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_a_digest_is_kept_across_a_reopening(tmp_path: Path, opened: list[DigestStore]) -> None:
    state = tmp_path / "state"
    store = reopen(state, opened)
    assert isinstance(store, SqliteStore)
    assert store.get(KEY) is None
    store.put(KEY, DIGEST)
    assert store.get(KEY) == DIGEST
    store.close()
    again = reopen(state, opened)
    assert again.get(KEY) == DIGEST
    # Each of the five parts is the key: a file changed in any of them is another file.
    for changed in range(5):
        other = list(KEY)
        other[changed] += 1
        assert again.get((other[0], other[1], other[2], other[3], other[4])) is None


def test_the_state_folder_is_made_private(tmp_path: Path, opened: list[DigestStore]) -> None:
    state = tmp_path / "deep" / "state"
    reopen(state, opened)
    assert (state / FILE_NAME).is_file()
    assert state.stat().st_mode & 0o777 == 0o700


def test_a_batch_is_committed_once_no_hashing_is_left(
    tmp_path: Path, opened: list[DigestStore]
) -> None:
    store = reopen(tmp_path, opened)
    store.put(KEY, DIGEST)
    other = sqlite3.connect(tmp_path / FILE_NAME)
    try:
        count = "SELECT COUNT(*) FROM digests"
        assert other.execute(count).fetchone()[0] == 0  # one write waits for its batch
        store.flush()
        assert other.execute(count).fetchone()[0] == 1
    finally:
        other.close()


def test_the_store_is_bounded_least_recently_used_first(
    tmp_path: Path, opened: list[DigestStore]
) -> None:
    store = reopen(tmp_path, opened, max_rows=64)
    assert isinstance(store, SqliteStore)
    for number in range(64):
        store.put(key(number), DIGEST)
    store.flush()
    assert store.get(key(63)) == DIGEST  # used lately: reading it writes nothing
    assert store._unsaved == 0
    assert store.get(key(0)) == DIGEST  # now the most recently used
    assert store._unsaved == 1
    store.put(key(64), OTHER)  # one too many: the oldest go (one at least)
    assert len(store) < 64
    assert store.get(key(1)) is None
    assert store.get(key(0)) == DIGEST
    assert store.get(key(64)) == OTHER
    for number in range(65, 200):
        store.put(key(number), DIGEST)
    assert len(store) <= 64
    store.close()
    assert len(reopen(tmp_path, opened, max_rows=64)) == len(store)


def test_a_file_that_is_not_sqlite_is_set_aside_with_one_warning(
    tmp_path: Path, opened: list[DigestStore], caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / FILE_NAME).write_bytes(b"not a database at all\n" * 100)
    store = reopen(tmp_path, opened)
    assert isinstance(store, SqliteStore)
    store.put(KEY, DIGEST)
    assert store.get(KEY) == DIGEST
    [warning] = warnings_of(caplog)
    assert "set aside" in warning
    assert "starting a new one" in warning
    assert (tmp_path / (FILE_NAME + SET_ASIDE_SUFFIX)).read_bytes().startswith(b"not a database")


def test_a_damaged_file_is_set_aside(
    tmp_path: Path, opened: list[DigestStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = reopen(tmp_path, opened)
    store.put(KEY, DIGEST)
    store.close()
    path = tmp_path / FILE_NAME
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # the schema's page, past the header
    path.write_bytes(bytes(data))
    again = reopen(tmp_path, opened)
    assert isinstance(again, SqliteStore)
    assert again.get(KEY) is None
    again.put(KEY, OTHER)
    assert again.get(KEY) == OTHER
    assert len(warnings_of(caplog)) == 1


def test_a_file_of_another_schema_version_is_set_aside(
    tmp_path: Path, opened: list[DigestStore], caplog: pytest.LogCaptureFixture
) -> None:
    other = sqlite3.connect(tmp_path / FILE_NAME)
    other.execute("PRAGMA user_version = 99")
    other.close()
    assert isinstance(reopen(tmp_path, opened), SqliteStore)
    [warning] = warnings_of(caplog)
    assert "schema 99" in warning


def test_a_file_locked_by_another_process_is_left_alone(
    tmp_path: Path, opened: list[DigestStore], caplog: pytest.LogCaptureFixture
) -> None:
    holder = sqlite3.connect(tmp_path / FILE_NAME, isolation_level=None)
    try:
        holder.execute("CREATE TABLE other (x)")
        holder.execute("BEGIN EXCLUSIVE")
        store = reopen(tmp_path, opened)
        assert isinstance(store, NoStore)
        [warning] = warnings_of(caplog)
        assert "locked" in warning
    finally:
        holder.close()
    assert not (tmp_path / (FILE_NAME + SET_ASIDE_SUFFIX)).exists()


def test_a_state_folder_that_cannot_be_made_leaves_memory_only(
    tmp_path: Path, opened: list[DigestStore], caplog: pytest.LogCaptureFixture
) -> None:
    (tmp_path / "a-file").write_bytes(b"")
    store = reopen(tmp_path / "a-file" / "state", opened)  # as for a read-only folder
    assert isinstance(store, NoStore)
    store.put(KEY, DIGEST)
    assert store.get(KEY) is None
    [warning] = warnings_of(caplog)
    assert "memory only" in warning


def test_an_error_after_opening_leaves_memory_only_with_one_warning(
    tmp_path: Path, opened: list[DigestStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = reopen(tmp_path, opened)
    assert isinstance(store, SqliteStore)
    broken = sqlite3.connect(":memory:")  # a connection whose table is gone
    store._db, old = broken, store._db
    assert old is not None
    old.close()
    store.put(KEY, DIGEST)
    assert store.get(KEY) is None
    store.put(key(2), DIGEST)
    store.flush()
    [warning] = warnings_of(caplog)
    assert "memory only" in warning


class _DamagedConnection:
    """A connection to a file found damaged after it was opened."""

    def execute(self, *args: object) -> None:
        error = sqlite3.DatabaseError("database disk image is malformed")
        error.sqlite_errorcode = sqlite3.SQLITE_CORRUPT
        raise error

    def close(self) -> None:
        pass


def holding_one(state: Path, opened: list[DigestStore]) -> SqliteStore:
    """A store in ``state`` holding KEY's DIGEST, committed."""
    store = reopen(state, opened)
    assert isinstance(store, SqliteStore)
    store.put(KEY, DIGEST)
    store.flush()
    return store


def test_a_file_found_damaged_while_in_use_is_set_aside_and_begun_again(
    tmp_path: Path, opened: list[DigestStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = holding_one(tmp_path, opened)
    assert store._db is not None
    store._db.close()
    store._db = _DamagedConnection()  # type: ignore[assignment]
    assert store.get(KEY) is None
    [warning] = warnings_of(caplog)
    assert "damaged" in warning
    assert (tmp_path / (FILE_NAME + SET_ASIDE_SUFFIX)).is_file()
    store.put(KEY, OTHER)  # the new file works
    assert store.get(KEY) == OTHER
    assert len(warnings_of(caplog)) == 1


def test_a_lock_held_by_another_process_skips_a_write_and_keeps_the_store(
    tmp_path: Path, opened: list[DigestStore], caplog: pytest.LogCaptureFixture
) -> None:
    store = holding_one(tmp_path, opened)
    holder = sqlite3.connect(tmp_path / FILE_NAME, isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another server writing
        store.put(key(2), OTHER)  # waits its busy timeout, then is skipped
    finally:
        holder.close()
    store.put(key(3), OTHER)
    assert store.get(key(2)) is None  # skipped
    assert store.get(key(3)) == OTHER
    assert store.get(KEY) == DIGEST
    assert warnings_of(caplog) == []


def test_put_many_keeps_every_row_in_one_commit(tmp_path: Path) -> None:
    store = open_store(str(tmp_path))
    try:
        rows = [((1, inode, 10, 20, 30), f"{inode:02x}" * 32) for inode in range(1, 6)]
        store.put_many(rows)
        store.put_many([])
    finally:
        store.close()
    again = open_store(str(tmp_path))  # committed: a new connection sees them all
    try:
        assert [again.get(key) for key, _ in rows] == [digest for _, digest in rows]
    finally:
        again.close()
