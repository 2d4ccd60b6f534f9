"""The event loop option: --loop auto|asyncio|uvloop, and serving on uvloop.

The uvloop tests run when uvloop is installed (pip install filedock[fast]) and
are skipped otherwise. To run the whole suite on uvloop:
FILEDOCK_TEST_LOOP=uvloop python -m pytest.
"""

from __future__ import annotations

import asyncio
import filecmp
import hashlib
import importlib.util
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from filedock.cli.server import server_parser
from filedock.client.client import Client
from filedock.server.config import LOOP_CHOICES, ServerConfig
from filedock.server.server import event_loop_factory
from tests.support import HOST, LineConn, ServerThread

MiB = 1024 * 1024
HAVE_UVLOOP = importlib.util.find_spec("uvloop") is not None
needs_uvloop = pytest.mark.skipif(not HAVE_UVLOOP, reason="uvloop is not installed")


# -- the option -----------------------------------------------------------------------------


def test_loop_option_choices_default_and_env_twin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FILEDOCK_LOOP", raising=False)
    assert server_parser().parse_args([]).loop == "auto"
    assert server_parser().parse_args(["--loop", "asyncio"]).loop == "asyncio"
    monkeypatch.setenv("FILEDOCK_LOOP", "uvloop")
    assert server_parser().parse_args([]).loop == "uvloop"
    assert server_parser().parse_args(["--loop", "auto"]).loop == "auto"  # the flag wins
    with pytest.raises(SystemExit):
        server_parser().parse_args(["--loop", "trio"])
    assert "--loop {auto,asyncio,uvloop}" in server_parser().format_help()


def test_config_refuses_an_unknown_loop() -> None:
    assert LOOP_CHOICES == ("auto", "asyncio", "uvloop")
    with pytest.raises(ValueError, match="loop must be one of"):
        ServerConfig(loop="trio")


def test_asyncio_is_the_standard_loop() -> None:
    assert event_loop_factory("asyncio") is asyncio.new_event_loop


def test_without_uvloop_auto_falls_back_and_uvloop_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop raises ImportError
    assert event_loop_factory("auto") is asyncio.new_event_loop
    with pytest.raises(ValueError, match="uvloop is not installed"):
        event_loop_factory("uvloop")


# -- serving on uvloop ----------------------------------------------------------------------


@pytest.fixture
def uv_server(make_server: Callable[..., ServerThread]) -> ServerThread:
    server = make_server(loop="uvloop")
    assert type(server.loop).__module__.startswith("uvloop")
    return server


def greeted(server: ServerThread) -> LineConn:
    conn = LineConn(server.port, timeout=10)
    conn.greet()
    return conn


@needs_uvloop
def test_uvloop_commands_and_pipelined_pings(uv_server: ServerThread) -> None:
    conn = greeted(uv_server)
    try:
        assert conn.request("PING") == "PONG"
        conn.send(b"PING\r\n" * 1000 + b"WHO\n")
        assert [conn.read_line() for _ in range(1000)] == ["PONG"] * 1000
        assert conn.read_line() == "WHO Client01"
        assert conn.request("STATUS") == "STATUS 1"
        assert conn.read_line().startswith("Client01\t")
        assert conn.request("EXIT") == "BYE"
        assert conn.at_eof()
    finally:
        conn.close()


@needs_uvloop
def test_uvloop_get_sends_exactly_the_file_with_sendfile(
    repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    data = os.urandom(20 * MiB + 123)
    (repo / "big.bin").write_bytes(data)
    server = make_server(loop="uvloop")
    conn = greeted(server)
    try:
        header = conn.request("GET big.bin")
        assert header == f"FILE {len(data)} {hashlib.sha256(data).hexdigest()} big.bin"
        assert conn.read_exactly(len(data), timeout=30) == data
        assert conn.request("PING") == "PONG"  # the body held exactly <size> bytes
    finally:
        conn.close()


@needs_uvloop
def test_uvloop_three_clients_download_at_once(
    repo: Path, make_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    big = repo / "big.bin"
    big.write_bytes(os.urandom(30 * MiB))
    server = make_server(loop="uvloop")
    clients = [Client(HOST, server.port, timeout=30) for _ in range(3)]
    try:
        barrier = threading.Barrier(3, timeout=10)

        def fetch(index: int) -> Path:
            barrier.wait()
            return clients[index].get("big.bin", tmp_path / f"downloads{index}")

        with ThreadPoolExecutor(max_workers=3) as pool:
            saved = list(pool.map(fetch, range(3), timeout=90))
        for client in clients:
            assert client.ping() < 1.0
    finally:
        for client in clients:
            client.close()
    for path in saved:
        assert filecmp.cmp(path, big, shallow=False)
