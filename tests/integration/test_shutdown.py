"""Shutdown in process, through Server.aclose() (the real program on a signal: tests/e2e)."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from filedock.client.client import Client
from filedock.errors import ServerClosing
from filedock.server import repository
from filedock.server.workers import Stopping
from tests.support import HOST, LineConn, ServerThread, wait_until

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
            assert any(m.startswith(f"Finished: {name} (shutdown, ") for m in messages), messages
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


def test_aclose_while_a_dropped_connection_waits_for_its_notice(
    make_server: Callable[..., ServerThread],
) -> None:
    """A silent connection dropped for a newcomer is told why after a delay; a
    shutdown meanwhile tells it at once, and nothing is written after its end."""
    server = make_server(max_pending_per_ip=1)
    assert server.server is not None
    running = server.server
    failures: list[dict[str, object]] = []
    server.sync(lambda: server.loop.set_exception_handler(lambda _, ctx: failures.append(ctx)))
    server.sync(lambda: setattr(running.registry.pending, "grace", 0.0))  # evict at once
    silent = LineConn(server.port)
    try:
        assert silent.read_line() == "NAME Client01"
        with LineConn(server.port) as newcomer:
            assert newcomer.read_line() == "NAME Client02"  # Client01 is dropped for it
            wait_until(lambda: server.sync(lambda: bool(running.notices_held)))
            closing = asyncio.run_coroutine_threadsafe(running.aclose(), server.loop)
            assert newcomer.read_line().startswith("ERR shutdown ")
        # The silent one stays connected past its notice's delay, reading nothing.
        wait_until(lambda: server.sync(lambda: not running.notices_held))
        assert failures == []
        assert silent.read_line() == "ERR timeout dropped for a newer connection: no HELLO in time"
        assert silent.at_eof()
        silent.close()
        closing.result(timeout=10)
    finally:
        silent.close()


def test_aclose_lets_every_hashing_in_progress_end_before_it_returns(
    make_server: Callable[..., ServerThread], repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    told: list[float] = []

    def slow_to_stop(fd: int, key: object, cancelled: Callable[[], bool]) -> object:
        deadline = time.monotonic() + 10.0
        while not cancelled() and time.monotonic() < deadline:
            time.sleep(0.01)
        told.append(time.monotonic())
        time.sleep(0.3)  # the block in hand when it was told to stop
        raise Stopping("server is shutting down")

    monkeypatch.setattr(repository, "hash_fd", slow_to_stop)
    with (repo / "large.bin").open("wb") as file:
        file.truncate(4 * 1024 * 1024)  # hashed in the hashing pool, never hashed yet
    server = make_server()
    assert server.server is not None
    hashes = server.server.repository.hashes
    with LineConn(server.port) as conn:
        conn.greet()
        conn.send_line("HASH large.bin")
        wait_until(lambda: server.sync(lambda: len(hashes._pending)) == 1)
    # Its client gone, the hashing goes on (for the digest cache): the session's
    # end does not wait for it.
    server.call(server.server.aclose(), timeout=15)
    # It ended on the loop: none is left to end after it, with nobody to read
    # its Stopping ("Task exception was never retrieved").
    assert told
    assert server.sync(lambda: dict(hashes._pending)) == {}
