"""The real server program against hostile clients: memory, descriptors, history, shutdown.

Memory is measured on a server in a subprocess, whose peak resident size
(VmHWM) does not include the test's own allocations; the descriptor limit
is set on that process alone."""

from __future__ import annotations

import hashlib
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import SAMPLE
from tests.integration.test_hardening import (
    MEMORY_BOUND,
    MiB,
    _pipeline_status,
    greeted,
    overlapping_visits,
    quick_visits,
    read_status,
    sparse_file,
    watching,
)
from tests.support import HOST, LineConn, wait_until
from tests.support.process import ServerProcess


@pytest.fixture
def start_process(repo: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start ``Server.py`` subprocesses; each is stopped (and must exit 0) at the end."""
    started: list[ServerProcess] = []

    def start(*options: str, preexec_fn: Callable[[], None] | None = None) -> ServerProcess:
        process = ServerProcess(repo, *options, preexec_fn=preexec_fn)
        started.append(process)
        return process

    yield start
    for process in started:
        if process.proc.returncode is None:
            assert process.stop() == 0, process.log
        assert "Traceback" not in process.log, process.log


def memory_growth(process: ServerProcess, baseline_kib: int) -> tuple[int, str]:
    """Peak resident memory over ``baseline_kib``, in bytes, and a sentence saying so."""
    peak = process.memory_kib("VmHWM")
    growth = (peak - baseline_kib) * 1024
    text = (
        f"server memory grew by {growth / MiB:.1f} MiB "
        f"(resident before {baseline_kib / 1024:.1f} MiB, peak {peak / 1024:.1f} MiB)"
    )
    print(text)
    return growth, text


@pytest.mark.slow
def test_clients_that_never_read_cost_bounded_memory(
    repo: Path, start_process: Callable[..., ServerProcess]
) -> None:
    sparse_file(repo / "big.bin", 64 * MiB)
    server = start_process("--send-timeout", "1", "--max-clients", "4")
    overlapping_visits(server.port, 300)  # 300 clients in STATUS: each reply is ~20 KB
    baseline = server.memory_kib("VmRSS")
    with watching(server.port):
        getter = greeted(server.port, timeout=10)
        pipeliner = greeted(server.port, timeout=10)
        try:
            getter.send_line("GET big.bin")
            pour = _pipeline_status(pipeliner, blocks=70)  # up to 100 MB, if the server read it
            assert pour is not None
            server.wait_for_log(r"Sent file 'big\.bin' size=\d+ to Client\d+ .* cut short: ")
            server.wait_for_log(r"Dropping Client\d+ .*: no write progress for 1 s")
            pour.join(10)
        finally:
            getter.close()
            pipeliner.close()
    growth, text = memory_growth(server, baseline)
    assert growth < MEMORY_BOUND, text


def test_a_100_mib_line_is_refused_and_memory_stays_bounded(
    start_process: Callable[..., ServerProcess],
) -> None:
    server = start_process()
    baseline = server.memory_kib("VmRSS")
    with watching(server.port):
        conn = greeted(server.port, timeout=15)
        outcome: list[BaseException | None] = []

        def pour() -> None:
            block = memoryview(b"x" * MiB)
            try:
                for _ in range(100):
                    conn.sock.sendall(block)
            except (BrokenPipeError, ConnectionResetError) as exc:
                outcome.append(exc)  # the server closed: what a sender sees
            else:
                outcome.append(None)  # the server read (and dropped) it all first

        sender = threading.Thread(target=pour, name="pour", daemon=True)
        sender.start()
        try:
            line = conn.read_line(timeout=15)
            assert line.startswith("ERR line-too-long "), line
            assert conn.at_eof(timeout=15)
            sender.join(30)
            assert not sender.is_alive()
            assert len(outcome) == 1
        finally:
            conn.close()
    server.wait_for_log(r"Finished: Client02")
    growth, text = memory_growth(server, baseline)
    assert growth < MEMORY_BOUND, text


@pytest.mark.slow
def test_a_million_pipelined_commands_are_answered_in_order(
    start_process: Callable[..., ServerProcess],
) -> None:
    server = start_process()
    baseline = server.memory_kib("VmRSS")
    count = 1_000_000
    # Every 10,000th line is a message with its number, so the order shows, and
    # every 100,000th a download, which the lines behind it must wait for.
    file_reply = f"FILE {len(SAMPLE)} {hashlib.sha256(SAMPLE).hexdigest()} sample.txt\n"
    special = {i: (f"SAY {i}\n".encode(), f"ACK {i}\n".encode()) for i in range(0, count, 10_000)}
    for i in range(5_000, count, 100_000):
        special[i] = (b"GET sample.txt\n", file_reply.encode() + SAMPLE)
    requests = b"".join(special[i][0] if i in special else b"PING\n" for i in range(count))
    expected = b"".join(special[i][1] if i in special else b"PONG\n" for i in range(count))
    with watching(server.port):
        conn = greeted(server.port, timeout=30)
        failures: list[BaseException] = []

        def pour() -> None:
            try:
                conn.sock.sendall(requests)
            except OSError as exc:
                failures.append(exc)

        sender = threading.Thread(target=pour, name="pour", daemon=True)
        sender.start()
        try:
            received = bytearray()
            deadline = time.monotonic() + 60
            while len(received) < len(expected) and time.monotonic() < deadline:
                conn.sock.settimeout(max(deadline - time.monotonic(), 0.01))
                chunk = conn.sock.recv(1 << 20)
                if not chunk:
                    break
                received += chunk
            sender.join(10)
            assert not failures
            assert len(received) == len(expected)
            assert received == expected
            assert conn.request("PING") == "PONG"
        finally:
            conn.close()
    growth, text = memory_growth(server, baseline)
    assert growth < MEMORY_BOUND, text


def _flood(port: int, count: int) -> list[socket.socket]:
    """``count`` connections that the kernel queues whether or not the server accepts them."""
    flood: list[socket.socket] = []
    try:
        for _ in range(count):
            flood.append(socket.create_connection((HOST, port), timeout=5))
    except BaseException:
        for sock in flood:
            sock.close()
        raise
    return flood


def _listen_queue(port: int) -> int:
    """How many connections wait in the kernel for 127.0.0.1:``port``'s listener to accept."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[1] == local and fields[3] == "0A":  # 0A: LISTEN
                return int(fields[4].split(":")[1], 16)  # rx_queue: the accept queue
    raise AssertionError(f"nothing listens on {local}")


def _has_let_go(process: ServerProcess, descriptors: int) -> bool:
    """Whether the server has accepted every queued connection and closed those that
    closed: nothing waits to be accepted and it holds ``descriptors`` again."""
    held = len(os.listdir(f"/proc/{process.proc.pid}/fd"))
    return _listen_queue(process.port) == 0 and held <= descriptors


@pytest.mark.slow
def test_running_out_of_file_descriptors(start_process: Callable[..., ServerProcess]) -> None:
    limit = 32

    def low_limit() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit))

    # The standard loop's behaviour: uvloop (libuv) closes what it cannot accept
    # instead, without a word in the log.
    server = start_process("--max-clients", "100", "--loop", "asyncio", preexec_fn=low_limit)
    warning = server.wait_for_log(r"WARNING: Only (\d+) file descriptors available")
    assert int(warning.group(1)) == limit
    assert "max_clients=100" in warning.string
    watcher = greeted(server.port)
    descriptors = len(os.listdir(f"/proc/{server.proc.pid}/fd"))
    try:
        flood = _flood(server.port, 2 * limit)  # more than the server can accept
        try:
            server.wait_for_log(r"WARNING: Cannot accept connections: .*retrying")
            exhausted = time.monotonic()
            pings = 0
            cpu_before = 0.0
            while time.monotonic() - exhausted < 4.0 and pings < 200:
                if not cpu_before and time.monotonic() - exhausted >= 1.0:
                    cpu_before = server.cpu_seconds()
                    window = time.monotonic()
                assert watcher.request("PING") == "PONG"  # served all along
                pings += 1
                time.sleep(0.05)  # pacing of the well-behaved client
            spent = server.cpu_seconds() - cpu_before
            elapsed = time.monotonic() - window
            print(f"server CPU while out of descriptors: {spent:.2f} s in {elapsed:.1f} s")
            assert spent < 0.15, f"the server used {spent:.2f} s of CPU in {elapsed:.1f} s"
            accept_warnings = server.matching("Cannot accept connections")
            assert 1 <= len(accept_warnings) <= 6, accept_warnings  # about one a second
            assert all("WARNING:" in line for line in accept_warnings)
        finally:
            for sock in flood:
                sock.close()
        # The server accepts again (it retries every second) and takes in what the
        # flood left queued: connections already closed, each holding a place in the
        # pending pool until the server reads its end. Once it has let go of them
        # all, a new client is served. (One that came meanwhile could be told FULL,
        # try again shortly, as any newcomer in a burst past its address's share.)
        wait_until(lambda: _has_let_go(server, descriptors), timeout=15)
        fresh = LineConn(server.port, timeout=15)
        try:
            fresh.greet()
            assert fresh.request("PING") == "PONG"
            assert watcher.request("PING") == "PONG"
        finally:
            fresh.close()
        # Shut down while out of descriptors again: a clean exit all the same.
        seen = len(server.lines)
        flood = _flood(server.port, 2 * limit)
        try:
            server.wait_for_log(r"Cannot accept connections|accept' warnings", since=seen)
            server.proc.send_signal(signal.SIGINT)
            assert watcher.read_line().startswith("ERR shutdown ")
        finally:
            for sock in flood:
                sock.close()
    finally:
        watcher.close()
    assert server.stop() == 0, server.log
    assert "Traceback" not in server.log, server.log
    assert "Exception in callback" not in server.log, server.log


@pytest.mark.slow
def test_history_is_bounded_over_10000_clients(
    start_process: Callable[..., ServerProcess],
) -> None:
    server = start_process("--history", "100")
    overlapping_visits(server.port, 1_000)  # each kept: they overlap (see there)
    after_1k = server.memory_kib("VmRSS")
    overlapping_visits(server.port, 9_000)
    after_10k = server.memory_kib("VmRSS")
    growth = (after_10k - after_1k) * 1024
    text = (
        f"server RSS after 1,000 clients {after_1k / 1024:.1f} MiB, "
        f"after 10,000 {after_10k / 1024:.1f} MiB"
    )
    print(text)
    assert growth < 4 * MiB, text
    checker = greeted(server.port)
    try:
        records = read_status(checker)
    finally:
        checker.close()
    finished = [record[0] for record in records if record[2] != "-"]
    connected = [record[0] for record in records if record[2] == "-"]
    assert connected == ["Client10001"]
    assert finished == [f"Client{number}" for number in range(9_901, 10_001)]


@pytest.mark.slow
def test_by_default_every_visit_is_a_row_of_status(
    start_process: Callable[..., ServerProcess],
) -> None:
    server = start_process()  # version 1: every client since the start is listed
    quick_visits(server.port, 5)
    checker = greeted(server.port)
    try:
        records = read_status(checker)
    finally:
        checker.close()
    assert [record[0] for record in records] == [f"Client0{n}" for n in range(1, 7)]


@pytest.mark.slow
def test_with_compact_history_a_script_of_one_shot_visits_is_one_row_of_status(
    start_process: Callable[..., ServerProcess],
) -> None:
    server = start_process("--compact-history")
    quick_visits(server.port, 30)  # one after another, each brief: a script's run
    checker = greeted(server.port)
    try:
        records = read_status(checker)
    finally:
        checker.close()
    assert [record[0] for record in records] == ["Client30", "Client31"]


@pytest.mark.slow
def test_shutdown_while_three_clients_download(
    repo: Path, start_process: Callable[..., ServerProcess]
) -> None:
    size = 64 * MiB
    sparse_file(repo / "big.bin", size)
    grace = 2.0
    server = start_process("--shutdown-grace", str(grace))
    conns = [greeted(server.port, timeout=15) for _ in range(3)]
    results: dict[int, str] = {}
    try:
        for conn in conns:
            header = conn.request("GET big.bin")
            assert header.startswith(f"FILE {size} "), header
            conn.read_exactly(64 * 1024)
        received = [64 * 1024] * 3

        def drain_fast(index: int) -> None:
            conn = conns[index]
            conn.read_exactly(size - received[index], timeout=15)
            line = conn.read_line()
            results[index] = line if conn.at_eof() else f"{line} (still open)"

        def drain_slowly(index: int) -> None:
            conn = conns[index]
            for _ in range(400):  # 64 KiB every 50 ms: far from 64 MiB in the grace period
                try:
                    conn.sock.settimeout(10)
                    chunk = conn.sock.recv(64 * 1024)
                except ConnectionResetError:
                    results[index] = "reset"
                    return
                if not chunk:
                    results[index] = "eof"
                    return
                received[index] += len(chunk)
                time.sleep(0.05)  # pacing: a slow reader
            results[index] = "still open"

        readers = [
            threading.Thread(target=drain_fast, args=(0,), daemon=True),
            threading.Thread(target=drain_slowly, args=(1,), daemon=True),
            threading.Thread(target=drain_slowly, args=(2,), daemon=True),
        ]
        signalled = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        for reader in readers:
            reader.start()
        code = server.proc.wait(grace + 3.0)
        took = time.monotonic() - signalled
        for reader in readers:
            reader.join(15)
    finally:
        for conn in conns:
            conn.close()
    assert code == 0
    assert took < grace + 3.0, f"exit took {took:.1f} s"
    # The fast reader got the whole body, then the shutdown line; the slow ones were cut.
    assert results[0].startswith("ERR shutdown "), results
    for index in (1, 2):
        assert results[index] in ("reset", "eof"), results
        assert received[index] < size
    server.stop()
    for name in ("Client01", "Client02", "Client03"):
        assert f"Finished: {name}" in server.log, server.log
    assert "Traceback" not in server.log
