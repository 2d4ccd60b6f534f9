"""Shutdown: in-process through Server.aclose(), and the real program on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import logging
import re
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from filedock.client.client import Client
from filedock.errors import ServerClosing
from tests.support import HOST, LineConn, ServerThread, wait_until
from tests.support.process import ServerProcess

# -- in-process ------------------------------------------------------------------------


def test_aclose_sends_err_shutdown_and_finishes_everyone(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="filedock")
    server = make_server()
    assert server.server is not None
    conns = [LineConn(server.port) for _ in range(2)]
    try:
        for conn in conns:
            conn.greet()
        ungreeted = LineConn(server.port)
        conns.append(ungreeted)
        assert ungreeted.read_line() == "NAME Client03"  # waits in the pending pool
        last = LineConn(server.port)
        conns.append(last)
        assert last.greet() == "Client04"
        turned_away = LineConn(server.port)
        assert turned_away.read_line().startswith("FULL ")
        assert server.connected_count() == 3

        server.call(server.server.aclose(), timeout=15)
        assert turned_away.at_eof()
        turned_away.close()

        for conn in conns:
            line = conn.read_line()
            assert line.startswith("ERR shutdown "), line
            assert conn.at_eof()
        assert server.connected_count() == 0
        assert server.session_count() == 0
        records = server.sync(server.server.registry.snapshot)
        # Client03 never greeted: it held no slot and is in no record.
        assert [record.name for record in records] == ["Client01", "Client02", "Client04"]
        assert all(record.finished is not None for record in records)
        messages = [record.getMessage() for record in caplog.records]
        for name in ("Client01", "Client02", "Client04"):
            assert f"Finished: {name}" in messages
        assert [record for record in caplog.records if record.exc_info] == []
    finally:
        for conn in conns:
            conn.close()


def test_aclose_does_not_wait_for_clients_that_read_their_err(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server()
    assert server.server is not None
    conns = [LineConn(server.port) for _ in range(2)]
    try:
        for conn in conns:
            conn.greet()
        closing = asyncio.run_coroutine_threadsafe(server.server.aclose(), server.loop)
        for conn in conns:
            assert conn.read_line().startswith("ERR shutdown ")
            conn.close()
        started = time.monotonic()
        closing.result(timeout=10)
        assert time.monotonic() - started < 1.5
        assert server.connected_count() == 0
    finally:
        for conn in conns:
            conn.close()


def test_aclose_stops_accepting(make_server: Callable[..., ServerThread]) -> None:
    server = make_server()
    assert server.server is not None
    port = server.port
    server.call(server.server.aclose(), timeout=15)
    with pytest.raises(ConnectionRefusedError):
        LineConn(port, timeout=2).close()


def test_library_sees_the_shutdown(make_server: Callable[..., ServerThread]) -> None:
    server = make_server()
    assert server.server is not None
    client = Client(HOST, server.port, timeout=5)
    try:
        closing = asyncio.run_coroutine_threadsafe(server.server.aclose(), server.loop)
        wait_until(lambda: server.connected_count() == 0)  # ERR shutdown is on its way
        with pytest.raises(ServerClosing) as info:
            client.ping()
        assert info.value.code == "shutdown"
        assert client.closed
        closing.result(timeout=10)
    finally:
        client.close()


# -- the real program ------------------------------------------------------------------


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
