"""Shutdown of the real program (python3 Server.py) on SIGINT and SIGTERM."""

from __future__ import annotations

import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LineConn
from tests.support.process import ServerProcess


@pytest.fixture
def server_process(repo: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(repo)
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize(
    "signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=["SIGINT", "SIGTERM", "SIGHUP"]
)
def test_signal_shuts_the_server_down_cleanly(
    server_process: ServerProcess, signum: signal.Signals
) -> None:
    match = server_process.wait_for_log(r"Starting server on 127\.0\.0\.1:(\d+)")
    port = int(match.group(1))
    assert port > 0
    conns = [LineConn(port) for _ in range(2)]
    try:
        assert [conn.greet() for conn in conns] == ["Client01", "Client02"]
        server_process.wait_for_log(r"Connected: Client02 from 127\.0\.0\.1:\d+")

        server_process.proc.send_signal(signum)
        for conn in conns:
            line = conn.read_line()
            assert line.startswith("ERR shutdown "), line
            assert conn.at_eof()
    finally:
        for conn in conns:
            conn.close()
    assert server_process.wait(timeout=5) == 0
    log = server_process.log
    assert "Finished: Client01" in log
    assert "Finished: Client02" in log
    assert "Traceback" not in log
    assert re.search(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] INFO: Starting server", log, re.M)


def test_signal_with_no_clients_exits_zero(server_process: ServerProcess) -> None:
    server_process.wait_for_log(r"Starting server on 127\.0\.0\.1:\d+")
    server_process.proc.send_signal(signal.SIGINT)
    assert server_process.wait(timeout=5) == 0
    assert "Traceback" not in server_process.log


def test_signal_while_a_client_is_mid_handshake(server_process: ServerProcess) -> None:
    match = server_process.wait_for_log(r"Starting server on 127\.0\.0\.1:(\d+)")
    conn = LineConn(int(match.group(1)))
    try:
        assert conn.read_line() == "NAME Client01"
        server_process.proc.send_signal(signal.SIGTERM)
        assert conn.read_line().startswith("ERR shutdown ")
        assert conn.at_eof()
    finally:
        conn.close()
    assert server_process.wait(timeout=5) == 0
    log = server_process.log
    assert "Client01" not in log  # it never greeted: never connected, never finished
    assert "Traceback" not in log


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_repeated_until_the_exit_still_exits_zero(
    server_process: ServerProcess, signum: signal.Signals
) -> None:
    """An impatient Ctrl-C (or a supervisor's SIGTERM) sent again and again while the
    server shuts down: the shutdown is already under way, so the exit stays clean."""
    proc = server_process.proc
    sent = 0
    while proc.poll() is None and sent < 5000:  # about 5 s at most
        proc.send_signal(signum)
        sent += 1
        time.sleep(0.001)  # the pace of the repeats, not a wait for anything
    assert sent > 1  # at least one came during the shutdown
    assert server_process.wait(timeout=5) == 0, server_process.log
    assert "Traceback" not in server_process.log
