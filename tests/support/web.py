"""Reaching a test server's HTTP side (``--http``): its port, and one request at a time."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
from dataclasses import dataclass

from tests.support import HOST, ServerThread


@dataclass(frozen=True)
class Answer:
    status: int
    headers: http.client.HTTPMessage
    body: bytes

    @property
    def text(self) -> str:
        return self.body.decode("utf-8")


def http_port(server: ServerThread) -> int:
    def port() -> int:
        assert server.server is not None
        assert server.server.watch is not None, "started with http="
        return server.server.watch.address[1]

    return server.sync(port)


def http_get(
    port: int, path: str, *, method: str = "GET", headers: dict[str, str] | None = None
) -> Answer:
    connection = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        connection.request(method, path, headers=headers or {})
        response = connection.getresponse()
        return Answer(response.status, response.headers, response.read())
    finally:
        connection.close()


class SlowReader:
    """A client that asks for ``path`` and then reads its body slowly, in a thread,
    so its transfer stays in progress for as long as a test watches it."""

    def __init__(self, port: int, path: str, *, chunk: int = 16 * 1024) -> None:
        self.sock = socket.socket()
        # A small receive window: the server's send waits on this reader, not on a buffer.
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
        self.sock.settimeout(5)
        self.sock.connect((HOST, port))
        self.chunk = chunk
        self.received = 0
        self._stop = threading.Event()
        name = self._line().removeprefix("NAME ")
        self.sock.sendall(f"HELLO {name}\n".encode())
        assert self._line().startswith("WELCOME "), "greeted"
        self.name = name
        self.sock.sendall(f"GET {path}\n".encode())
        self._thread = threading.Thread(target=self._read, name="slow-reader", daemon=True)
        self._thread.start()

    def _line(self) -> str:
        line = b""
        while not line.endswith(b"\n"):
            byte = self.sock.recv(1)
            assert byte, "the server closed the connection"
            line += byte
        return line.decode().rstrip("\r\n")

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while not self._stop.is_set():
                data = self.sock.recv(self.chunk)
                if not data:
                    return
                self.received += len(data)
                self._stop.wait(0.01)  # the pace of a slow link, not a wait for a state

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()

    def __enter__(self) -> SlowReader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()
