from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from filedock.client.client import Client
from tests.support import HOST, LineConn, ServerThread, running_server
from tests.support.fake_server import FakeServer, Script
from tests.support.resources import Resources, leaks_after

SAMPLE = b"hello\n"

# pytester: tests/unit/test_resources.py runs a leaky test file;
# credentials: the TLS and token fixtures.
pytest_plugins = ["pytester", "tests.support.credentials"]


@pytest.hookimpl(optionalhook=True)  # a pytest-xdist hook: unknown without the plugin
def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: two workers for each CPU.

    The tests mostly wait (on a socket, a server's timer, a subprocess), so
    one worker a CPU leaves the CPUs idle; with two on a 2-CPU machine
    the suite takes about 35% of its serial time, with more it slows again.
    """
    return 2 * len(os.sched_getaffinity(0))


@pytest.fixture(scope="session", autouse=True)
def uvloop_process_pipe() -> None:
    """With uvloop installed, make one of its loops before any test: libuv opens a
    pipe for signals at its first loop and keeps it for the process's life, which
    :func:`no_leaks` would otherwise blame on whichever test came first."""
    try:
        uvloop = importlib.import_module("uvloop")
    except ImportError:
        return
    uvloop.new_event_loop().close()


@pytest.fixture(autouse=True)
def no_leaks() -> Iterator[None]:
    """Fail a test that leaves a file descriptor, thread or child process behind.

    Autouse and function-scoped, so the snapshot is taken after any module or
    session fixture has started (what those keep is theirs to close) and
    compared after the test's own fixtures have been torn down.
    """
    before = Resources.now()
    yield
    leaks = leaks_after(before)
    if leaks:
        pytest.fail("the test left behind:\n  " + "\n  ".join(leaks), pytrace=False)


@pytest.fixture(autouse=True)
def client_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's own cache of local digests and state folder (clients it starts
    inherit them), never the user's, and outside tmp_path (tests list what is there)."""
    folder = tmp_path_factory.mktemp("client-cache")
    monkeypatch.setenv("FILEDOCK_CACHE_DIR", str(folder))
    # The known_servers of TLS pins too: never the user's ~/.local/state.
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("client-state")))
    return folder


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository folder holding sample.txt."""
    root = tmp_path / "repo"
    root.mkdir()
    (root / "sample.txt").write_bytes(SAMPLE)
    return root


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    return tmp_path / "downloads"


@pytest.fixture
def make_server(repo: Path) -> Iterator[Callable[..., ServerThread]]:
    """Start an in-process server on port 0 with the given options."""
    started: list[Any] = []

    def make(**options: Any) -> ServerThread:
        manager = running_server(options.pop("repo", repo), **options)
        thread = manager.__enter__()
        started.append(manager)
        return thread

    yield make
    for manager in reversed(started):
        manager.__exit__(None, None, None)


@pytest.fixture
def server(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server()


@pytest.fixture
def port(server: ServerThread) -> str:
    """``server``'s port, as a command line takes it."""
    return str(server.port)


@pytest.fixture
def connect(server: ServerThread) -> Iterator[Callable[..., Client]]:
    """Open library clients to ``server``; all closed at the end."""
    clients: list[Client] = []

    def open_client(**options: Any) -> Client:
        client = Client(HOST, server.port, timeout=options.pop("timeout", 10.0), **options)
        clients.append(client)
        return client

    yield open_client
    for client in clients:
        client.close()


@pytest.fixture
def raw(server: ServerThread) -> Iterator[Callable[[], LineConn]]:
    """Open raw line connections to ``server``; all closed at the end."""
    conns: list[LineConn] = []

    def open_conn() -> LineConn:
        conn = LineConn(server.port)
        conns.append(conn)
        return conn

    yield open_conn
    for conn in conns:
        conn.close()


@pytest.fixture
def fake_server() -> Iterator[Callable[..., FakeServer]]:
    """Start fake servers (``fake_server(script, greet=False)``); each is closed at the end."""
    servers: list[FakeServer] = []

    def start(script: Script, *, greet: bool = False) -> FakeServer:
        server = FakeServer(script, greet=greet)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()
