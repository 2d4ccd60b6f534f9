"""Resume records and local digests, without a server: what a partial can be
trusted for, how the durable length moves, what a cache of local digests keeps."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import filedock.client.download as download
import filedock.client.resume as resume
from filedock.client.download import INLINE_LIMIT, hash_back, receive_body
from filedock.client.localdigests import RACY_NS, LocalDigests, default_cache_dir
from filedock.client.resume import (
    CHECKPOINT_BYTES,
    Checkpoints,
    ResumeRecord,
    keeps_partial,
    load_record,
    new_record,
    record_path,
    remove_record,
)
from filedock.digests import SqliteStore
from filedock.errors import Changed, ConnectionLost, IntegrityError, SaveError
from tests.support import wait_until


def test_a_record_is_read_back_as_written(tmp_path: Path) -> None:
    dest = tmp_path / "file.bin"
    record = new_record("127.0.0.1:50000", "file.bin", 10, None)
    record.save(dest)
    assert record_path(dest) == tmp_path / ".file.bin.resume"
    assert load_record(dest) == record
    remove_record(dest)
    assert load_record(dest) is None


@pytest.mark.parametrize(
    "text",
    ['{"version": 1, "serv', "[]", '{"version": 99}', '{"version": 1, "server": 5}', "\xff"],
)
def test_a_torn_or_foreign_record_is_none(tmp_path: Path, text: str) -> None:
    dest = tmp_path / "file.bin"
    record_path(dest).write_text(text, errors="surrogateescape")
    assert load_record(dest) is None


def test_a_long_name_still_has_one_record_name(tmp_path: Path) -> None:
    dest = tmp_path / ("n" * 250)
    new_record("h:1", "x", 1, None).save(dest)
    assert len(record_path(dest).name) <= 255
    assert load_record(dest) is not None


def test_on_the_same_boot_the_whole_partial_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(resume, "boot_id", lambda: "this boot")
    record = ResumeRecord("h:1", "x", 100, None, "this boot", durable=10)
    assert record.good_length(60) == 60
    assert record.good_length(500) == 100  # never past the file's size
    after_a_crash = ResumeRecord("h:1", "x", 100, None, "an earlier boot", durable=10)
    assert after_a_crash.good_length(60) == 10
    unknown = ResumeRecord("h:1", "x", 100, None, "", durable=10)
    monkeypatch.setattr(resume, "boot_id", lambda: "")
    assert unknown.good_length(60) == 10  # no boot id: only what was fsynced


def test_checkpoints_fsync_then_move_the_durable_length(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "file.bin"
    now = [0.0]
    synced: list[int] = []
    monkeypatch.setattr(os, "fdatasync", lambda fd: synced.append(fd))
    fd = os.open(tmp_path / "partial", os.O_CREAT | os.O_RDWR)
    try:
        record = new_record("h:1", "file.bin", 10**9, None)
        checkpoints = Checkpoints(fd, dest, record, offset=100, clock=lambda: now[0])
        checkpoints(1024)  # too soon, too little
        assert synced == []
        checkpoints(CHECKPOINT_BYTES)  # enough bytes
        checkpoints.finish()
        assert synced == [fd]
        saved = load_record(dest)
        assert saved is not None
        assert saved.durable == 100 + CHECKPOINT_BYTES
        now[0] = 1.5  # enough time
        checkpoints(CHECKPOINT_BYTES + 1)
        checkpoints.finish()
        assert len(synced) == 2
        saved = load_record(dest)
        assert saved is not None
        assert saved.durable == 101 + CHECKPOINT_BYTES
    finally:
        os.close(fd)


class SlowDisk:
    """``os.fdatasync`` on a disk that finishes only when told: ``syncing`` once a sync
    began, ``done`` to let it end."""

    def __init__(self) -> None:
        self.syncing = threading.Event()
        self.done = threading.Event()

    def fdatasync(self, fd: int) -> None:
        self.syncing.set()
        assert self.done.wait(10)


@pytest.fixture
def slow_disk(monkeypatch: pytest.MonkeyPatch) -> Iterator[SlowDisk]:
    disk = SlowDisk()
    monkeypatch.setattr(os, "fdatasync", disk.fdatasync)
    yield disk
    disk.done.set()


@pytest.fixture
def partial_fd(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "partial", os.O_CREAT | os.O_RDWR)
    yield fd
    os.close(fd)


def test_a_slow_disk_never_holds_the_writer_and_the_record_waits_for_the_sync(
    tmp_path: Path, slow_disk: SlowDisk, partial_fd: int
) -> None:
    dest = tmp_path / "file.bin"
    new_record("h:1", "file.bin", 10**9, None).save(dest)
    record = load_record(dest)
    assert record is not None
    checkpoints = Checkpoints(partial_fd, dest, record)
    checkpoints(CHECKPOINT_BYTES)  # returns while the sync waits for the disk
    assert slow_disk.syncing.wait(10)
    checkpoints(2 * CHECKPOINT_BYTES)  # one sync in flight at most: this one is skipped
    saved = load_record(dest)
    assert saved is not None
    assert saved.durable == 0  # not claimed before the disk has it
    slow_disk.done.set()
    checkpoints.finish()
    saved = load_record(dest)
    assert saved is not None
    assert saved.durable == CHECKPOINT_BYTES


def test_a_body_received_whole_never_waits_for_the_sync_in_flight(
    tmp_path: Path, slow_disk: SlowDisk, partial_fd: int
) -> None:
    dest = tmp_path / "file.bin"
    record = new_record("h:1", "file.bin", 10**9, None)
    record.save(dest)
    checkpoints = Checkpoints(partial_fd, dest, record)
    checkpoints(CHECKPOINT_BYTES)
    assert slow_disk.syncing.wait(10)
    checkpoints.finish(wait=False)  # returns while the disk still writes
    remove_record(dest)  # what a download does next, once the file checks out
    slow_disk.done.set()
    wait_until(lambda: not any(t.name == "filedock-sync" for t in threading.enumerate()))
    assert load_record(dest) is None  # the late sync wrote no record back


def test_a_prefix_is_hashed_back_as_far_as_asked(tmp_path: Path) -> None:
    data = os.urandom(3 * 1024 * 1024 + 5)
    (tmp_path / "p").write_bytes(data)
    fd = os.open(tmp_path / "p", os.O_RDONLY)
    try:
        digest = hashlib.sha256()
        assert hash_back(fd, 0, len(data) - 5, digest)
        assert digest.hexdigest() == hashlib.sha256(data[:-5]).hexdigest()
        assert not hash_back(fd, 0, len(data) + 1, hashlib.sha256())  # shorter than asked
    finally:
        os.close(fd)


def body_from(data: bytes) -> Callable[[memoryview], int]:
    """A connection that sends ``data`` in pieces of odd sizes."""
    sent = [0]

    def recv_into(view: memoryview) -> int:
        count = min(len(view), 777_777, len(data) - sent[0])
        view[:count] = data[sent[0] : sent[0] + count]
        sent[0] += count
        return count

    return recv_into


@pytest.mark.parametrize(
    ("prefix", "part"),
    [(0, 9 * 1024 * 1024), (1, 9 * 1024 * 1024), (20 * 1024 * 1024 + 3, 9 * 1024 * 1024 + 1),
     (6 * 1024 * 1024, 1000), (3, INLINE_LIMIT + 1)],
)  # fmt: skip
def test_a_resumed_body_is_hashed_after_its_prefix_read_back(
    tmp_path: Path, prefix: int, part: int
) -> None:
    whole = os.urandom(prefix + part)
    path = tmp_path / "partial"
    path.write_bytes(whole[:prefix])
    fd = os.open(path, os.O_RDWR)
    try:
        os.lseek(fd, prefix, os.SEEK_SET)
        received = receive_body(body_from(whole[prefix:]), b"", part, fd, rehash=prefix)
    finally:
        os.close(fd)
    assert (received.whole, received.write_error) == (True, None)
    assert received.sha256 == hashlib.sha256(whole).hexdigest()
    assert path.read_bytes() == whole


class _SignalAfterSecondBuffer(download._Pipeline):
    """A pipeline whose receiver meets a signal's exception just as its
    second buffer has been handed over, as SIGTERM can arrive then."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        handed = self.to_hash
        count = [0]

        class Interrupted:
            def put(self, item: tuple[memoryview, int] | None) -> None:
                handed.put(item)
                if item is not None:
                    count[0] += 1
                    if count[0] == 2:
                        raise SystemExit(143)

            def get(self) -> tuple[memoryview, int] | None:
                return handed.get()

        self.to_hash = Interrupted()  # type: ignore[assignment]


def test_a_signal_just_after_a_hand_over_writes_each_buffer_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(download, "_Pipeline", _SignalAfterSecondBuffer)
    body = os.urandom(5 * download.BUFFER_SIZE)
    path = tmp_path / "partial"
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        with pytest.raises(SystemExit):
            receive_body(body_from(body), b"", len(body), fd)
    finally:
        os.close(fd)
    kept = path.read_bytes()
    assert kept == body[: 2 * download.BUFFER_SIZE]  # what a resume goes on from


def test_a_prefix_that_cannot_be_read_back_never_verifies(tmp_path: Path) -> None:
    part = 9 * 1024 * 1024
    path = tmp_path / "partial"
    path.write_bytes(b"x" * 100)
    fd = os.open(path, os.O_WRONLY)  # the prefix cannot be read through it
    try:
        os.lseek(fd, 100, os.SEEK_SET)
        received = receive_body(body_from(os.urandom(part)), b"", part, fd, rehash=100)
    finally:
        os.close(fd)
    assert received.whole
    assert received.sha256 == ""  # matches no digest: the file is fetched whole


@pytest.mark.parametrize(
    ("exc", "kept"),
    [
        (KeyboardInterrupt(), True),
        (SystemExit(143), True),
        (ConnectionLost("gone"), True),
        (IntegrityError("bad", expected="a", actual="b"), False),
        (Changed("changed"), False),
        (SaveError("disk"), False),
    ],
)
def test_what_keeps_a_partial(exc: BaseException, kept: bool) -> None:
    assert keeps_partial(exc) is kept


def test_the_cache_folder_by_default(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FILEDOCK_CACHE_DIR", str(tmp_path / "chosen"))
    assert default_cache_dir() == tmp_path / "chosen"
    monkeypatch.delenv("FILEDOCK_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "filedock"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative")  # ignored, as the spec says
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "filedock"


def test_local_digests_hash_once_and_survive_a_new_process(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"contents\n")
    st = path.lstat()
    later = max(st.st_mtime_ns, st.st_ctime_ns) + RACY_NS
    first = LocalDigests(tmp_path / "cache", clock=lambda: later)
    try:
        assert first.digest_of(path, st) == hashlib.sha256(b"contents\n").hexdigest()
        assert first.digest_of(path, st) is not None
        assert first.misses == 1
    finally:
        first.close()
    second = LocalDigests(tmp_path / "cache", clock=lambda: later)
    try:
        assert second.digest_of(path, st) is not None
        assert second.misses == 0  # from the file on disk
    finally:
        second.close()


def test_a_racy_file_is_hashed_each_time(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"just written\n")
    st = path.lstat()
    digests = LocalDigests(tmp_path / "cache", clock=lambda: st.st_ctime_ns + RACY_NS // 2)
    try:
        digests.digest_of(path, st)
        digests.digest_of(path, st)
        assert digests.misses == 2
    finally:
        digests.close()


def test_a_same_size_same_mtime_rewrite_is_hashed_again(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"first\n")
    before = path.lstat()
    digests = LocalDigests(tmp_path / "cache", clock=lambda: before.st_ctime_ns + 10 * RACY_NS)
    try:
        assert digests.digest_of(path, before) == hashlib.sha256(b"first\n").hexdigest()
        path.write_bytes(b"other\n")
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
        after = path.lstat()
        assert digests.digest_of(path, after) == hashlib.sha256(b"other\n").hexdigest()
        assert digests.misses == 2  # the ctime moved: another key
    finally:
        digests.close()


def test_an_unusable_cache_folder_keeps_digests_in_memory(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    path = tmp_path / "f"
    path.write_bytes(b"x\n")
    digests = LocalDigests(blocker / "cache")
    try:
        digests.put(path.lstat(), "ab" * 32)
        assert digests.lookup(path.lstat()) == "ab" * 32
    finally:
        digests.close()


def test_saved_files_digests_reach_the_store_together_at_flush_and_close(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One statement for a folder's worth of downloads, not one each; none is lost."""
    batches: list[int] = []
    real_put_many = SqliteStore.put_many

    def counted(self: SqliteStore, rows: list[Any]) -> None:
        batches.append(len(rows))
        real_put_many(self, rows)

    monkeypatch.setattr(SqliteStore, "put_many", counted)
    stats = []
    for number in range(3):
        path = tmp_path / f"f{number}"
        path.write_bytes(b"%d\n" % number)
        stats.append(path.lstat())
    first = LocalDigests(tmp_path / "cache")
    try:
        first.put(stats[0], "aa" * 32)
        first.put(stats[1], "bb" * 32)
        assert batches == []  # in memory until the flush
        first.flush()
        assert batches == [2]
        first.put(stats[2], "cc" * 32)
    finally:
        first.close()  # saves the last one
    assert batches == [2, 1]
    second = LocalDigests(tmp_path / "cache")  # as a new process
    try:
        found = [second.digest_of(tmp_path / f"f{n}", stats[n]) for n in range(3)]
        assert found == ["aa" * 32, "bb" * 32, "cc" * 32]
        assert second.misses == 0
    finally:
        second.close()
