"""Worker pools: hashing cannot starve listing, a source gets its share, shutdown keeps time."""

from __future__ import annotations

import asyncio
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import filedock.protocol
import filedock.server.repository
from filedock.server.workers import (
    HASH_SHARE,
    METADATA_WORKERS,
    FairShare,
    Stopping,
    WorkerPool,
    Workers,
)
from tests.support import HOST, LineConn, ServerThread, wait_until

GiB = 1024**3


# -- the per-source share ---------------------------------------------------------------


def test_a_source_holds_at_most_its_share_and_others_go_ahead() -> None:
    async def scenario() -> list[str]:
        share = FairShare(1)
        order: list[str] = []
        release = asyncio.Event()

        async def job(source: str, name: str) -> None:
            async with share.slot(source):
                order.append(name)
                await release.wait()

        greedy = [asyncio.create_task(job("a", f"a{i}")) for i in range(4)]
        other = asyncio.create_task(job("b", "b0"))
        await asyncio.sleep(0)  # one turn of the loop: every job has tried its slot
        await asyncio.sleep(0)
        assert order == ["a0", "b0"]
        assert share.running("a") == 1
        release.set()
        await asyncio.gather(*greedy, other)
        assert share.running("a") == share.running("b") == 0
        return order

    assert asyncio.run(scenario()) == ["a0", "b0", "a1", "a2", "a3"]


def test_a_waiter_that_gives_up_passes_its_turn_on() -> None:
    async def scenario() -> None:
        share = FairShare(1)
        first_in = asyncio.Event()
        release = asyncio.Event()
        done: list[str] = []

        async def job(name: str) -> None:
            async with share.slot("a"):
                first_in.set()
                await release.wait()
                done.append(name)

        first = asyncio.create_task(job("first"))
        await first_in.wait()
        quitter = asyncio.create_task(job("quitter"))
        last = asyncio.create_task(job("last"))
        await asyncio.sleep(0)
        quitter.cancel()
        release.set()
        await asyncio.gather(first, last)
        assert done == ["first", "last"]
        assert share.running("a") == 0
        assert share.sources == 0  # nothing kept for a source with no work

    asyncio.run(scenario())


def test_a_closed_pool_refuses_work_with_stopping() -> None:
    async def scenario() -> None:
        pool = WorkerPool("test-pool", 1)
        assert await pool.run(sum, [1, 2]) == 3
        pool.close()
        with pytest.raises(Stopping):
            await pool.run(sum, [1, 2])

    asyncio.run(scenario())


# -- hashing does not starve listing -----------------------------------------------------


@pytest.fixture
def held_hashing(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[threading.Event, list[int]]]:
    """Every hashing waits for the gate (bounded); yields (gate, sizes of hashings begun)."""
    gate = threading.Event()
    started: list[int] = []
    real_hash_fd = filedock.server.repository.hash_fd

    def held(fd: int, key: filedock.server.repository.FileKey, *args: Any) -> str:
        started.append(key.size)
        gate.wait(60)
        return real_hash_fd(fd, key, *args)

    monkeypatch.setattr(filedock.server.repository, "hash_fd", held)
    # Every hashing in a worker, where it can be held (none on the loop).
    monkeypatch.setattr(filedock.server.repository, "INLINE_HASH_BYTES", 0)
    yield gate, started
    gate.set()


def connect_from(port: int, source: str) -> LineConn:
    """A greeted connection from the loopback address ``source``."""
    conn = LineConn.__new__(LineConn)
    conn.sock = socket.create_connection((HOST, port), timeout=10, source_address=(source, 0))
    conn.timeout = 10
    conn._buffer = bytearray()
    conn.greet()
    return conn


# Large files are hashed in the hashing pool (one at a time per source), small
# ones in the metadata pool (all its threads but one per source).
@pytest.mark.parametrize(
    ("size", "greedy_share"),
    [(2 * 1024 * 1024, HASH_SHARE), (1000, METADATA_WORKERS - 1)],
    ids=["large", "small"],
)
def test_many_hashings_from_one_source_starve_neither_list_nor_another_source(
    repo: Path,
    make_server: Callable[..., ServerThread],
    held_hashing: tuple[threading.Event, list[int]],
    monkeypatch: pytest.MonkeyPatch,
    size: int,
    greedy_share: int,
) -> None:
    gate, started = held_hashing
    for index in range(8):
        (repo / f"big{index}.bin").write_bytes(bytes([index]) * (size + index))
    (repo / "small.txt").write_bytes(b"small\n")
    server = make_server(max_clients=12, max_clients_per_ip=0)
    assert server.server is not None
    # Every loopback address is one source; here two must count apart.
    monkeypatch.setattr(server.server.context, "source_of", lambda host: host)
    greedy = [connect_from(server.port, "127.0.0.1") for _ in range(8)]
    other = connect_from(server.port, "127.0.0.2")
    try:
        for index, conn in enumerate(greedy):
            conn.send_line(f"GET big{index}.bin")
        wait_until(lambda: len(started) == greedy_share, timeout=10)
        # The greedy source holds its share of workers, whatever it asks for:
        assert other.request("LIST").startswith("FILES ")
        other._buffer.clear()  # the records: not what this test is about
        other.send_line("GET small.txt")
        # the other source's own hashing
        wait_until(lambda: len(started) == greedy_share + 1, timeout=10)
        assert len(started) == greedy_share + 1  # the greedy source's others wait on the loop
        gate.set()
        small_digest = hashlib.sha256(b"small\n").hexdigest()
        assert other.read_line() == f"FILE 6 {small_digest} small.txt"
        for index, conn in enumerate(greedy):
            assert conn.read_line().startswith(f"FILE {size + index} ")
            assert conn.read_exactly(size + index) == bytes([index]) * (size + index)
    finally:
        gate.set()
        for conn in [*greedy, other]:
            conn.close()


# -- shutdown does not wait for a hashing ------------------------------------------------


def _read_bytes(pid: int) -> int:
    """Bytes the process has read so far (Linux /proc/<pid>/io)."""
    with open(f"/proc/{pid}/io") as io:
        for line in io:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar in /proc/<pid>/io")


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/io"), reason="needs /proc/<pid>/io")
def test_workers_close_stops_a_hashing_between_blocks(tmp_path: Path) -> None:
    huge = tmp_path / "huge.bin"
    with open(huge, "wb") as file:
        file.truncate(64 * GiB)
    workers = Workers()
    repo = filedock.server.repository.Repository(tmp_path, workers=workers)

    async def scenario() -> float:
        with repo.open("huge.bin") as opened:
            base = _read_bytes(os.getpid())
            hashing = asyncio.ensure_future(repo.hashes.sha256(opened))
            for _ in range(2000):  # until the hashing thread has read 64 MiB (bounded)
                if _read_bytes(os.getpid()) > base + 64 * 1024**2:
                    break
                await asyncio.sleep(0.005)
            assert not hashing.done()
            closed = time.monotonic()
            workers.close()
            with pytest.raises(Stopping):
                await hashing
            return time.monotonic() - closed

    assert asyncio.run(scenario()) < 1.0


# -- nothing opened is left open ---------------------------------------------------------


def open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc/self/fd")
def test_requests_cut_short_leave_no_descriptor_open(
    repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    """Clients that leave while their file is opened in a worker, hashed, or sent:
    every descriptor the server opened for them is closed."""
    deep = repo.joinpath(*["d"] * 12)
    deep.mkdir(parents=True)
    (deep / "f.bin").write_bytes(os.urandom(4 * 1024 * 1024))
    (repo / "big.bin").write_bytes(os.urandom(16 * 1024 * 1024))
    os.symlink("d", repo / "link")  # on the way: walked, and longer than the loop's steps
    long_path = "/".join(["link"] + ["d"] * 11 + ["f.bin"])
    rounds = 20
    # Room for every connection at once: sessions still hashing for clients gone
    # must not make a later round's greeting a FULL refusal.
    server = make_server(max_clients=3 * rounds)
    baseline = open_descriptors()
    for round_index in range(rounds):
        conns: list[LineConn] = []
        try:
            for _ in range(3):
                conns.append(LineConn(server.port, timeout=10))
                conns[-1].greet()
            conns[0].send_line(f"GET {long_path}")  # a walk in a worker, then a hashing
            conns[1].send_line("GET big.bin")  # hashed on the loop's side, then sent
            conns[2].send_line(long_path)  # a bare line
        finally:
            for conn in conns:
                if round_index % 2:
                    conn.reset()
                else:
                    conn.close()
    wait_until(lambda: server.session_count() == 0, timeout=20)
    wait_until(lambda: descriptors_of(deep / "f.bin") == 0, timeout=20)
    wait_until(lambda: descriptors_of(repo / "big.bin") == 0, timeout=20)
    assert open_descriptors() <= baseline


def descriptors_of(path: Path) -> int:
    """How many descriptors this process holds on ``path``."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}") == str(path):
                count += 1
        except OSError:  # closed meanwhile
            pass
    return count


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs /proc/self/fd")
def test_a_file_opened_in_a_worker_for_a_session_gone_meanwhile_is_closed(
    repo: Path, make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server stops (cancelling the session's task) while a worker opens the
    file the session asked for: the file opened for nobody is closed."""
    deep = repo.joinpath(*["d"] * 12)
    deep.mkdir(parents=True)
    (deep / "f.txt").write_bytes(b"deep\n")
    # A symlink on the way: no one-call open; a walk longer than the loop's steps.
    os.symlink("d", repo / "link")
    in_worker, gate, returned = threading.Event(), threading.Event(), threading.Event()
    real_open = filedock.server.repository.Repository.open

    def held_open(self: filedock.server.repository.Repository, path: str, **kwargs: Any) -> Any:
        if kwargs.get("max_steps") is not None:
            return real_open(self, path, **kwargs)
        in_worker.set()  # the worker's walk
        gate.wait(10)
        try:
            return real_open(self, path, **kwargs)
        finally:
            returned.set()

    monkeypatch.setattr(filedock.server.repository.Repository, "open", held_open)
    server = make_server()
    assert server.server is not None
    conn = LineConn(server.port, timeout=10)
    try:
        conn.greet()
        conn.send_line("GET " + "/".join(["link"] + ["d"] * 11 + ["f.txt"]))
        assert in_worker.wait(10)
        closing = asyncio.run_coroutine_threadsafe(server.server.aclose(), server.loop)
        assert conn.read_line().startswith("ERR shutdown ")
        closing.result(10)
        gate.set()
        assert returned.wait(10)  # the worker's open is done: its file is open or closed
        wait_until(lambda: descriptors_of(deep / "f.txt") == 0, timeout=10)
    finally:
        gate.set()
        conn.close()


# -- the listing is read and encoded in a worker, a piece at a time -------------------------


def test_a_listing_is_read_and_encoded_in_a_worker_a_piece_at_a_time(
    repo: Path, make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    from filedock.server.repository import RUN_RECORDS

    for index in range(2 * RUN_RECORDS + 4):  # with sample.txt: two full pieces and five
        (repo / f"f{index:04d}.txt").write_bytes(b"x")
    encoded: list[tuple[str, int]] = []
    real_encode = filedock.protocol.encode_file_records

    def recording_encode(records: Any) -> bytes:
        encoded.append((threading.current_thread().name, len(records)))
        return real_encode(records)

    monkeypatch.setattr(filedock.protocol, "encode_file_records", recording_encode)
    server = make_server()
    conn = LineConn(server.port, timeout=10)
    try:
        conn.greet()
        header = conn.request("LIST")
        count = int(header.split()[1])
        records = [conn.read_line() for _ in range(count)]
        assert conn.request("PING") == "PONG"  # the reply ended where it said
    finally:
        conn.close()
    assert count == 2 * RUN_RECORDS + 5
    assert records[-1].startswith("sample.txt\t6\t")
    # Encoding 100,000 records takes tens of milliseconds: off the loop, and
    # never the whole listing at once.
    assert {name.rsplit("_", 1)[0] for name, _ in encoded} == {"filedock-meta"}
    assert sorted(size for _, size in encoded) == [5, RUN_RECORDS, RUN_RECORDS]


# -- a listing gives up when the server stops, even inside one huge folder ------------------


def test_a_listing_stops_inside_a_large_folder_when_cancelled(tmp_path: Path) -> None:
    for index in range(3000):
        (tmp_path / f"f{index:04d}").touch()
    repo = filedock.server.repository.Repository(tmp_path)
    polls: list[int] = []

    def stopping_soon() -> bool:
        polls.append(1)
        return len(polls) > 2  # the server stops while this one folder is read

    try:
        with pytest.raises(Stopping):
            repo.listing(stopping_soon)
        assert len(polls) == 3  # not one poll per folder, after the folder was done
        assert len(repo.listing()) == 3000  # nothing was left behind (descriptors, state)
    finally:
        repo.close()


# -- many sources hashing large files do not hold back a small one --------------------------


@pytest.mark.parametrize("apart", [True, False], ids=["many-sources", "one-source"])
def test_a_small_file_is_hashed_while_many_sources_hash_large_ones(
    repo: Path,
    make_server: Callable[..., ServerThread],
    monkeypatch: pytest.MonkeyPatch,
    apart: bool,
) -> None:
    gate = threading.Event()
    large_started: list[int] = []
    real_hash_fd = filedock.server.repository.hash_fd

    def large_ones_held(fd: int, key: filedock.server.repository.FileKey, *args: Any) -> str:
        if key.size > filedock.server.repository.SMALL_FILE_BYTES:
            large_started.append(key.size)
            gate.wait(60)
        return real_hash_fd(fd, key, *args)

    monkeypatch.setattr(filedock.server.repository, "hash_fd", large_ones_held)
    # Every hashing in a worker, where it can be held (none on the loop).
    monkeypatch.setattr(filedock.server.repository, "INLINE_HASH_BYTES", 0)
    sources = [f"127.0.0.{index}" for index in range(2, 8)]
    for index in range(len(sources)):
        with open(repo / f"large{index}.bin", "wb") as file:
            file.truncate(2 * 1024 * 1024 + index)  # sparse, each its own digest
    (repo / "small.txt").write_bytes(b"small\n")
    server = make_server(max_clients=len(sources) + 2, max_clients_per_ip=0)
    assert server.server is not None
    if apart:  # every loopback address is one source, as every local client is
        monkeypatch.setattr(server.server.context, "source_of", lambda host: host)
    greedy = [connect_from(server.port, source) for source in sources]
    honest = connect_from(server.port, "127.0.0.1")
    try:
        for index, conn in enumerate(greedy):
            conn.send_line(f"GET large{index}.bin")
        busy = 2 if apart else 1  # both hashing workers, or the one source's share
        wait_until(lambda: len(large_started) == busy, timeout=10)
        small_digest = hashlib.sha256(b"small\n").hexdigest()
        assert honest.request("GET small.txt") == f"FILE 6 {small_digest} small.txt"
        assert honest.read_exactly(6) == b"small\n"
        assert len(large_started) == busy  # the large ones still wait, in order
        gate.set()
        for index, conn in enumerate(greedy):  # and are all served in the end
            size = 2 * 1024 * 1024 + index
            assert conn.read_line().startswith(f"FILE {size} ")
            assert conn.read_exactly(size) == bytes(size)
    finally:
        gate.set()
        for conn in [*greedy, honest]:
            conn.close()
