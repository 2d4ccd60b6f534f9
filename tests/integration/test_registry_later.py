"""A registry whose answers come a round trip later (a shared one, on Redis):
the session waits for NAME and for its slot without blocking the loop, and the
lines a client pipelines meanwhile are answered in order after them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from filedock.server import server as server_module
from filedock.server.config import ServerConfig
from filedock.server.registry import ClientEntry, MemoryRegistry, PendingPool, Refusal
from tests.support import LineConn, ServerThread, running_server, wait_until

T = TypeVar("T")

ROUND_TRIP = 0.05  # seconds each answer takes


class LaterRegistry(MemoryRegistry):
    """The in-memory registry, answering NAME and HELLO ``ROUND_TRIP`` later;
    with ``holding`` set, HELLO's answers wait until :meth:`release`."""

    holding = False
    held: list[Callable[[], None]]

    def _later(self, answer: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        loop.call_later(ROUND_TRIP, lambda: future.set_result(answer()))
        return future

    def release(self) -> None:
        for answer in self.held:
            answer()
        self.held.clear()

    def take_name(self, source: str = "") -> Any:
        return self._later(lambda: super(LaterRegistry, self).take_name(source))

    def welcome(self, number: int, name: str, address: str, source: str) -> Any:
        parent = super()

        def answer() -> ClientEntry | Refusal:
            return parent.welcome(number, name, address, source)

        if not self.holding:
            return self._later(answer)
        future: asyncio.Future[ClientEntry | Refusal] = asyncio.get_running_loop().create_future()
        self.held.append(lambda: future.set_result(answer()))
        return future


@pytest.fixture
def later_server(repo: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ServerThread]:
    def later(config: ServerConfig, pending: PendingPool[Any]) -> LaterRegistry:
        registry = LaterRegistry(config.max_clients, config.history, pending=pending)
        registry.held = []
        return registry

    monkeypatch.setattr(server_module, "registry_for", later)
    with running_server(repo, max_clients=2) as thread:
        yield thread


def test_lines_pipelined_after_hello_are_answered_in_order_after_welcome(
    later_server: ServerThread,
) -> None:
    with LineConn(later_server.port) as conn:
        conn.send(b"HELLO me proto=2\nPING\nWHO\nPING\n")  # all before NAME came
        assert conn.read_line() == "NAME Client01"
        assert conn.read_line().startswith("WELCOME Client01 ")
        assert conn.read_line() == "PONG"
        assert conn.read_line() == "WHO Client01"
        assert conn.read_line() == "PONG"


def test_the_cap_holds_and_full_comes_from_the_later_answer(later_server: ServerThread) -> None:
    with LineConn(later_server.port) as one, LineConn(later_server.port) as two:
        assert one.read_line() == "NAME Client01"
        assert two.read_line() == "NAME Client02"
        assert one.request("HELLO").startswith("WELCOME Client01")
        assert two.request("HELLO").startswith("WELCOME Client02")
        with LineConn(later_server.port) as three:
            assert three.read_line() == "FULL server is at capacity (2/2 clients)"
        assert later_server.connected_count() == 2


def test_a_slot_granted_after_the_client_left_is_freed(later_server: ServerThread) -> None:
    assert later_server.server is not None
    registry = later_server.server.registry
    assert isinstance(registry, LaterRegistry)
    registry.holding = True
    with LineConn(later_server.port) as conn:
        assert conn.read_line() == "NAME Client01"
        conn.send_line("HELLO")
        wait_until(lambda: later_server.sync(lambda: len(registry.held)) == 1)
        conn.reset()  # gone before the slot's answer comes
    wait_until(lambda: later_server.session_count() == 0)
    later_server.sync(registry.release)
    records = later_server.sync(registry.snapshot)
    assert [(r.name, r.connected) for r in records] == [("Client01", False)]
    assert later_server.connected_count() == 0
