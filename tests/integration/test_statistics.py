"""Server.statistics(): what a server holds and has done, read without its internals."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import filedock.server.repository
from filedock import Client
from filedock.server.workers import WorkerPool
from tests.support import HOST, LineConn, ServerThread, wait_until


def test_a_new_server_has_nothing_to_count(server: ServerThread) -> None:
    statistics = server.statistics()
    assert dataclasses.replace(statistics, uptime=0) == type(statistics)(
        **{field.name: 0 for field in dataclasses.fields(statistics)}
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        statistics.pending = 1  # type: ignore[misc]


def test_connections_are_counted_from_accept_to_close(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(max_clients=1)
    greeting = LineConn(server.port)
    try:
        assert greeting.read_line() == "NAME Client01"
        counts = server.statistics()
        assert (counts.connections_accepted, counts.sessions_open, counts.pending) == (1, 1, 1)
        assert (counts.clients_connected, counts.sessions_welcomed) == (0, 0)
        assert greeting.request("HELLO").startswith("WELCOME Client01 ")
        counts = server.statistics()
        assert (counts.pending, counts.clients_connected, counts.sessions_welcomed) == (0, 1, 1)
        with LineConn(server.port) as turned_away:
            assert turned_away.read_line().startswith("FULL ")
            counts = server.statistics()
            assert (counts.connections_accepted, counts.connections_refused) == (2, 1)
            assert counts.sessions_open == 1  # the refused one never became a session
        wait_until(lambda: server.statistics().lingering == 0)
    finally:
        greeting.close()
    wait_until(lambda: server.statistics().sessions_open == 0)
    counts = server.statistics()
    assert (counts.clients_connected, counts.connections_accepted) == (0, 2)


def test_the_hash_cache_is_counted(
    repo: Path,
    downloads: Path,
    make_server: Callable[..., ServerThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)  # a new file may be cached
    (repo / "twice.txt").write_bytes(b"asked for twice\n")
    server = make_server()
    with Client(HOST, server.port, timeout=10) as client:
        # A get is a GET, then a HASH for the mtime: answered from the cache.
        client.get("twice.txt", downloads / "first")
        counts = server.statistics()
        assert (counts.hashings, counts.hash_cache_entries, counts.hash_cache_hits) == (1, 1, 1)
        client.get("twice.txt", downloads / "second")
    counts = server.statistics()
    assert (counts.hashings, counts.hash_cache_entries, counts.hash_cache_hits) == (1, 1, 3)
    assert (counts.hash_workers_busy, counts.metadata_workers_busy) == (0, 0)


def test_a_worker_pool_counts_its_jobs_until_they_end() -> None:
    gate = threading.Event()

    async def scenario() -> None:
        pool = WorkerPool("test-busy", 1)
        try:
            running = asyncio.ensure_future(pool.run(gate.wait, 10))
            queued = asyncio.ensure_future(pool.run(sum, [1, 2]))
            await asyncio.sleep(0)
            assert pool.busy == 2
            queued.cancel()  # never started: it leaves the count at once
            with pytest.raises(asyncio.CancelledError):
                await queued
            assert pool.busy == 1
            gate.set()
            assert await running is True
            for _ in range(1000):  # the done callback runs in the pool's thread (bounded)
                if pool.busy == 0:
                    break
                await asyncio.sleep(0.001)
            assert pool.busy == 0
        finally:
            gate.set()
            pool.close()

    asyncio.run(scenario())
