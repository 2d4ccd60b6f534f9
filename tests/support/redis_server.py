"""A real ``redis-server`` for the tests, on a free port of 127.0.0.1 (never 6379).

:class:`RedisServer` starts one with no persistence (``--save ''
--appendonly no``) in a temporary folder, waits until it answers, and stops
it; :meth:`RedisServer.restart` starts it again on the same port, empty.
Without redis-server installed the test is skipped with the reason, unless
the environment variable CI is set: there a missing tool is a failure.
"""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests.support import HOST, wait_until
from tests.support.tools import free_port, require_program


def redis_server_binary() -> str:
    """The path of ``redis-server``; skips the test without it (fails it under CI)."""
    return require_program("redis-server", "redis-server")


def _answers(port: int) -> bool:
    """Whether a Redis on ``port`` answers PING (a raw RESP exchange: no client needed)."""
    try:
        with socket.create_connection((HOST, port), timeout=0.5) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """``redis-server`` on a free port of 127.0.0.1, in ``folder``; ``url`` to reach it."""

    def __init__(self, folder: Path, port: int = 0) -> None:
        self.binary = redis_server_binary()
        self.folder = folder
        self.port = port
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def start(self) -> RedisServer:
        """Start it (on a new free port unless it has one) and wait until it answers."""
        for _ in range(1 if self.port else 5):
            if self._launch(self.port or free_port()):
                return self
        raise RuntimeError(f"redis-server did not start on port {self.port or 'any'}")

    def _launch(self, port: int) -> bool:
        """Run it on ``port``; False if it exited instead (the port was taken, most likely)."""
        proc = self.proc = subprocess.Popen(
            [
                *(self.binary, "--port", str(port), "--bind", HOST),
                *("--save", "", "--appendonly", "no", "--dir", str(self.folder)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: proc.poll() is not None or _answers(port), 10.0)
        except BaseException:
            self.stop()
            raise
        if proc.poll() is not None:
            self.proc = None
            return False
        self.port = port
        return True

    def stop(self) -> None:
        """Stop it (SIGTERM) and wait; the port stays its own for a restart."""
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def restart(self) -> RedisServer:
        """Stop it and start it again on the same port: empty, as nothing persists."""
        self.stop()
        return self.start()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()
