"""A fake server for client tests: a listening socket in a thread on 127.0.0.1, port 0.

It takes one connection and runs a script on it: the script plays the server
(honest, lying, silent, hanging up) through a :class:`Peer`. Errors in the
script are raised by :meth:`FakeServer.close`, except the client hanging up
first, which a client may always do.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

HOST = "127.0.0.1"
GREETING = b"NAME Client01\n"
WELCOME = b"WELCOME Client01 fakedock 0.0\n"


class Peer:
    """The fake server's side of the one connection; every line read is kept in ``lines``."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.lines: list[str] = []
        self._buffer = bytearray()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> str | None:
        """The client's next line, or None at EOF."""
        for _ in range(1000):  # bounded: the client sends short lines
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end]).decode("utf-8", "replace").rstrip("\r")
                del self._buffer[: end + 1]
                self.lines.append(line)
                return line
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self._buffer += chunk
        raise AssertionError("the client sent too much")

    def greet(self) -> None:
        """NAME, then WELCOME once the client says HELLO."""
        self.send(GREETING)
        hello = self.line()
        assert hello is not None
        assert hello.startswith("HELLO"), hello
        self.send(WELCOME)

    def requested(self) -> str:
        """The path the client's next GET (or bare line) asks for."""
        line = self.line()
        assert line is not None
        return requested(line)

    def goodbye(self) -> None:
        """Answer EXIT with BYE, as the client leaves."""
        if self.line() == "EXIT":
            self.send(b"BYE\n")

    def serve_rest(self) -> None:
        """Answer PING and EXIT like a server until the client leaves."""
        for _ in range(20):
            line = self.line()
            if line is None:
                return
            if line.upper() == "PING":
                self.send(b"PONG\n")
            elif line.upper() == "EXIT":
                self.send(b"BYE\n")
                return
            else:
                self.send(f"ACK {line}\n".encode())

    def wait_closed(self) -> None:
        """Read until the client closes (bounded by the socket timeout)."""
        for _ in range(10_000):
            try:
                if not self.sock.recv(65536):
                    return
            except TimeoutError:
                return


Script = Callable[[Peer], None]
# An answer to a request line: the bytes to send, and whether to hang up after.
Answer = Callable[[str], tuple[bytes, bool]]


def requested(line: str) -> str:
    """The path of a GET line, or the whole line when it is bare."""
    return line[4:] if line.upper().startswith("GET ") else line


def answering(answer: Answer) -> Script:
    """A script that greets, answers PING and EXIT itself and every other line with ``answer``."""

    def script(peer: Peer) -> None:
        peer.greet()
        for _ in range(50):  # bounded: a test sends a handful of lines
            line = peer.line()
            if line is None:
                return
            verb = line.split(" ", 1)[0].upper()
            if verb == "PING":
                peer.send(b"PONG\n")
            elif verb == "EXIT":
                peer.send(b"BYE\n")
                return
            else:
                data, hang_up = answer(line)
                peer.send(data)
                if hang_up:
                    return

    return script


class FakeServer:
    """Listens on 127.0.0.1:0 and runs ``script`` on the first connection.

    ``greet=True`` plays the greeting (NAME, then WELCOME to HELLO) before the script.
    """

    def __init__(self, script: Script, *, greet: bool = False) -> None:
        self.script = script
        self.greet = greet
        self.errors: list[BaseException] = []
        self.peer: Peer | None = None
        self.listener = socket.create_server((HOST, 0))
        self.port: int = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="fake-server", daemon=True)
        self._thread.start()

    @property
    def lines(self) -> list[str]:
        """Every line the client sent, HELLO included."""
        return [] if self.peer is None else self.peer.lines

    def _run(self) -> None:
        self.listener.settimeout(0.05)  # to see close() while no client comes
        deadline = time.monotonic() + 30
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(10)
                self._serve(Peer(conn))
            return

    def _serve(self, peer: Peer) -> None:
        self.peer = peer
        try:
            if self.greet:
                peer.greet()
            self.script(peer)
        except ConnectionError:
            pass  # the client hung up first, as it may
        except BaseException as exc:  # raised by close()
            self.errors.append(exc)

    def close(self) -> None:
        """Wait for the script to end; raise what went wrong in it."""
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        self._thread.join(15)
        self.listener.close()
        assert not self._thread.is_alive(), "the fake server did not end"
        for error in self.errors:
            raise error
