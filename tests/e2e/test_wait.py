"""``--wait SECONDS``: a client that waits for a free slot, or for a server that is
not up yet, against real servers; each wait polled, never slept."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from filedock.client.client import Client
from filedock.errors import ServerFull
from filedock.server.config import ServerConfig
from tests.support import HOST, ServerThread, running_server, wait_until

ROOT = Path(__file__).resolve().parents[2]


class ClientProcess:
    """``python3 Client.py ARGS``, its stderr collected line by line as it comes."""

    def __init__(self, *args: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
        self.proc = subprocess.Popen(
            [sys.executable, "Client.py", *args],
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.errors: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.errors.append(line.rstrip("\n"))

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.errors))

    def finish(self, timeout: float = 20.0) -> tuple[int, str]:
        # stdout is small: the process never blocks on it, so waiting first is safe.
        code = self.proc.wait(timeout)
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        self._reader.join(5)  # stderr is the reader's alone (communicate would race it)
        return code, out

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self._reader.join(5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def clients() -> Iterator[list[ClientProcess]]:
    started: list[ClientProcess] = []
    yield started
    for client in started:
        client.kill()


def free_port() -> int:
    """A port nothing listens on now (the kernel's pick, let go at once)."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


def test_a_full_server_is_waited_out_until_a_slot_frees(
    repo: Path, clients: list[ClientProcess]
) -> None:
    with running_server(repo, max_clients=1) as server:
        holder = Client(HOST, server.port, timeout=10)
        waiting = ClientProcess("--port", str(server.port), "--wait", "30", "who")
        clients.append(waiting)
        wait_until(lambda: waiting.said("trying again for up to 30 s (--wait)"), timeout=15)
        assert waiting.said("[CLIENT] Server is at capacity")
        assert waiting.proc.poll() is None  # still waiting
        holder.close()
        code, out = waiting.finish()
    assert code == 0, waiting.errors
    assert out == "[SERVER] WHO Client02\n"
    assert sum("trying again" in line for line in waiting.errors) == 1  # said once


def test_a_server_not_up_yet_is_waited_for(repo: Path, clients: list[ClientProcess]) -> None:
    port = free_port()
    waiting = ClientProcess("--port", str(port), "--wait", "30", "ping")
    clients.append(waiting)
    wait_until(lambda: waiting.said("Connection refused; trying again"), timeout=15)
    config = replace(ServerConfig(), host=HOST, port=port, repo=str(repo), loop="asyncio")
    server = ServerThread(config).start()
    try:
        code, out = waiting.finish()
    finally:
        server.stop()
    assert (code, out) == (0, "[SERVER] PONG\n"), waiting.errors


def test_after_the_wait_the_usual_error_and_status(
    repo: Path, clients: list[ClientProcess]
) -> None:
    with running_server(repo, max_clients=1) as server, Client(HOST, server.port, timeout=10):
        full = ClientProcess("--port", str(server.port), "--wait", "0.5", "who")
        clients.append(full)
        assert full.finish()[0] == 4
        assert full.said("Server is at capacity")
    down = ClientProcess("--port", str(free_port()), "--wait", "0.5", "-q", "ping")
    clients.append(down)
    assert down.finish()[0] == 3
    assert not down.said("trying again")  # -q: only the error
    assert down.said("Connection refused")


def test_the_library_waits_for_a_slot(repo: Path) -> None:
    with running_server(repo, max_clients=1) as server:
        holder = Client(HOST, server.port, timeout=10)
        got: list[Client | BaseException] = []

        def connect() -> None:
            try:
                got.append(Client.from_url(f"filedock://{HOST}:{server.port}", wait=30.0))
            except BaseException as exc:
                got.append(exc)

        thread = threading.Thread(target=connect, daemon=True)
        thread.start()
        wait_until(lambda: server.statistics().connections_refused >= 1, timeout=15)
        holder.close()
        thread.join(20)
        [client] = got
        assert isinstance(client, Client), client
        with client:
            assert client.who() == [client.name]
        with Client(HOST, server.port, timeout=10), pytest.raises(ServerFull):
            Client.wait_for(HOST, server.port, wait=0.3)
