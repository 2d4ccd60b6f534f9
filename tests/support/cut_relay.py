"""A TCP relay that can be cut as a network partition cuts: nothing passes, nothing closes.

A node's ``--registry`` names the relay instead of Redis; :meth:`CutRelay.cut`
stops every byte both ways and leaves new connections unanswered in the
listen backlog, so the node sees what a lost network looks like (timeouts,
not resets); :meth:`CutRelay.heal` lets everything through again. Redis
itself, HAProxy and the clients are not touched: only that node is cut off.
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading

from tests.support import HOST

# How often the relay's one thread looks at its state when nothing moves.
TICK = 0.02


class CutRelay:
    """Listens on a free port of 127.0.0.1 and relays each connection to ``port``."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server((HOST, 0), backlog=64)
        self.listener.setblocking(False)
        self.port: int = self.listener.getsockname()[1]
        self._flowing = threading.Event()
        self._flowing.set()
        self._stop = threading.Event()
        self._peers: dict[socket.socket, socket.socket] = {}
        self._selector = selectors.DefaultSelector()
        self._thread = threading.Thread(target=self._run, name="cut-relay", daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"redis://{HOST}:{self.port}/0"

    def cut(self) -> None:
        self._flowing.clear()

    def heal(self) -> None:
        self._flowing.set()

    def _run(self) -> None:
        self._selector.register(self.listener, selectors.EVENT_READ)
        while not self._stop.is_set():
            if not self._flowing.is_set():
                self._flowing.wait(TICK)
                continue
            for key, _ in self._selector.select(TICK):
                sock = key.fileobj
                assert isinstance(sock, socket.socket)
                if sock is self.listener:
                    self._accept()
                else:
                    self._forward(sock)

    def _accept(self) -> None:
        try:
            client, _ = self.listener.accept()
        except BlockingIOError:
            return
        try:
            server = socket.create_connection((HOST, self.target), timeout=2)
        except OSError:
            client.close()  # Redis itself is down: the node sees a refused connection
            return
        for sock in (client, server):
            sock.setblocking(False)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._selector.register(sock, selectors.EVENT_READ)
        self._peers[client], self._peers[server] = server, client

    def _forward(self, sock: socket.socket) -> None:
        other = self._peers[sock]
        try:
            data = sock.recv(65536)
            if data:
                other.setblocking(True)  # small Redis replies: never blocks for long
                other.sendall(data)
                other.setblocking(False)
                return
        except OSError:
            pass
        self._drop(sock)

    def _drop(self, sock: socket.socket) -> None:
        for end in (sock, self._peers.pop(sock, None)):
            if end is not None:
                self._peers.pop(end, None)
                with contextlib.suppress(KeyError, ValueError):
                    self._selector.unregister(end)
                end.close()

    def close(self) -> None:
        self._stop.set()
        self._flowing.set()
        self._thread.join(5)
        for sock in list(self._peers):
            self._drop(sock)
        self._selector.close()
        self.listener.close()
