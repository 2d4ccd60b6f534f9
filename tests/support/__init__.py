"""Test helpers: an in-process server on port 0, raw line connections, deadlines.

Nothing here sleeps to wait: every wait polls a condition until a deadline.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from filedock.server.config import ServerConfig
from filedock.server.server import Server, ServerStatistics, event_loop_factory

T = TypeVar("T")

HOST = "127.0.0.1"
SGR = re.compile(rb"\x1b\[[0-9;]*m")  # a colour (Select Graphic Rendition) code on a terminal


def wait_until(
    condition: Callable[[], bool], timeout: float = 5.0, interval: float = 0.005
) -> None:
    """Poll ``condition`` until it is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        time.sleep(interval)


class ServerThread:
    """A :class:`Server` running on its own event loop in a background thread."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.loop = event_loop_factory(config.loop)()
        self.server: Server | None = None
        self._thread = threading.Thread(
            target=self.loop.run_forever, name="test-server", daemon=True
        )

    def start(self) -> ServerThread:
        self._thread.start()
        self.server = Server(self.config)
        self.call(self.server.start())
        return self

    @property
    def port(self) -> int:
        assert self.server is not None
        return self.server.address[1]

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        """Run ``coro`` on the server's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def sync(self, fn: Callable[[], T], timeout: float = 10.0) -> T:
        """Run ``fn`` on the server's loop thread (where its state lives)."""

        async def run() -> T:
            return fn()

        return self.call(run(), timeout)

    def statistics(self) -> ServerStatistics:
        assert self.server is not None
        return self.sync(self.server.statistics)

    def connected_count(self) -> int:
        return self.statistics().clients_connected

    def session_count(self) -> int:
        return self.statistics().sessions_open

    def stop(self) -> None:
        if self.server is not None and self._thread.is_alive():
            self.call(self.server.aclose())
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(10)
        if not self.loop.is_running():
            self.loop.close()


@contextlib.contextmanager
def running_server(repo: Path, **options: Any) -> Iterator[ServerThread]:
    # The standard loop unless a test asks for another; FILEDOCK_TEST_LOOP=uvloop
    # runs the whole suite on uvloop.
    options.setdefault("loop", os.environ.get("FILEDOCK_TEST_LOOP", "asyncio"))
    config = replace(ServerConfig(), host=HOST, port=0, repo=str(repo), **options)
    thread = ServerThread(config).start()
    try:
        yield thread
    finally:
        thread.stop()


class LineConn:
    """A raw TCP connection that reads the server's lines with a deadline."""

    def __init__(
        self, port: int, host: str = HOST, timeout: float = 5.0, source: str | None = None
    ) -> None:
        # source: the local address to connect from (127.0.0.2, say), the kernel's pick if None.
        origin = None if source is None else (source, 0)
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=origin)
        self.timeout = timeout
        self._buffer = bytearray()

    def send(self, data: bytes | str) -> None:
        self.sock.sendall(data.encode() if isinstance(data, str) else data)

    def send_line(self, text: str) -> None:
        self.send(text + "\n")

    def _fill(self, deadline: float) -> bool:
        """Read more bytes; False at EOF."""
        self.sock.settimeout(max(deadline - time.monotonic(), 0.001))
        chunk = self.sock.recv(65536)
        if not chunk:
            return False
        self._buffer += chunk
        return True

    def read_line(self, timeout: float | None = None) -> str:
        """The next line, without CR/LF; AssertionError at EOF."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while b"\n" not in self._buffer:
            if not self._fill(deadline):
                raise AssertionError(f"connection closed; unread: {bytes(self._buffer)!r}")
        line, _, rest = bytes(self._buffer).partition(b"\n")
        self._buffer = bytearray(rest)
        return line.decode("utf-8", "replace").rstrip("\r")

    def read_exactly(self, size: int, timeout: float | None = None) -> bytes:
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self._buffer) < size:
            if not self._fill(deadline):
                raise AssertionError("connection closed before the body ended")
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def request(self, text: str) -> str:
        self.send_line(text)
        return self.read_line()

    def greet(self) -> str:
        """Read NAME, send HELLO, read WELCOME; return the name."""
        name_line = self.read_line()
        assert name_line.startswith("NAME "), name_line
        name = name_line.split(" ", 1)[1]
        welcome = self.request(f"HELLO {name}")
        assert welcome.startswith(f"WELCOME {name} "), welcome
        return name

    def at_eof(self, timeout: float | None = None) -> bool:
        """Whether the server closes the connection (after any unread lines)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        try:
            while self._fill(deadline):
                pass
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
        return True

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> LineConn:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0)."""
        self.sock.setsockopt(
            socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
        )
        self.sock.close()


def write_file(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def random_bytes(size: int) -> bytes:
    return os.urandom(size)


class BackgroundLoad:
    """``threads`` threads running ``_run`` against a server until the ``with`` ends.

    ``_run`` loops a bounded number of times and returns once ``_stop`` is set.
    """

    def __init__(self, port: int, threads: int) -> None:
        self.port = port
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]

    def __enter__(self: _Load) -> _Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(20)

    def _run(self) -> None:
        raise NotImplementedError


_Load = TypeVar("_Load", bound=BackgroundLoad)


def partial_size(folder: Path) -> int:
    """The size of the largest partial download (``.NAME.part``) in ``folder``; 0 if none.

    Only partials: a resume record is written under another name and renamed
    over its own, so it may vanish between the listing and its ``stat``.
    """
    sizes = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.startswith(".") and entry.name.endswith(".part"):
                with contextlib.suppress(FileNotFoundError):
                    sizes.append(entry.stat(follow_symlinks=False).st_size)
    return max(sizes, default=0)


def ipv6_loopback() -> bool:
    """Whether this machine has an IPv6 loopback (``::1``) to test on."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


class TypedAtATerminal(io.StringIO):
    """Lines for ``sys.stdin`` that say they come from a terminal: the prompt as a
    person sees it (greeting, prompts), not the quiet reading of a script."""

    def isatty(self) -> bool:
        return True
