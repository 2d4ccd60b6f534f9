"""A TCP relay that counts the bytes each side sends: what a transfer really moved."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from collections.abc import Iterator

from tests.support import HOST


class CountingProxy:
    """Listens on 127.0.0.1, relays each connection to ``port``; ``from_server``
    counts every byte of the server's that reached a client, over all
    connections, and ``from_client`` every byte the clients sent (an upload's body)."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self.from_server = 0
        self.from_client = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._sockets: list[socket.socket] = []
        self._accepting = threading.Thread(target=self._accept, name="proxy", daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            server = socket.create_connection((HOST, self.target), timeout=30)
            self._sockets += [client, server]
            pair = RelayedPair(client, server)
            for source, sink, counted in ((client, server, False), (server, client, True)):
                thread = threading.Thread(
                    target=self._relay, args=(pair, source, sink, counted), daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _relay(
        self, pair: RelayedPair, source: socket.socket, sink: socket.socket, counted: bool
    ) -> None:
        try:
            while data := source.recv(1 << 20):
                sink.sendall(data)
                # Counted once delivered: what the relay read from a server whose
                # client was just killed never reached anyone.
                with self._lock:
                    if counted:
                        self.from_server += len(data)
                    else:
                        self.from_client += len(data)
        except OSError:  # one side is gone: so is the other, as without a relay
            pair.broken = True
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        else:
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
        pair.relay_done()

    def reset(self) -> int:
        """The bytes the server sent so far, and start counting again from zero (both ways)."""
        with self._lock:
            counted, self.from_server, self.from_client = self.from_server, 0, 0
        return counted

    def close(self) -> None:
        self._stop.set()
        self._accepting.join(10)
        self.listener.close()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(10)
        for sock in self._sockets:
            sock.close()


class RelayedPair:
    """The two sockets of one relayed connection, closed when both directions end.

    A side that broke (a killed client) is closed with a reset, as the kernel
    does for a dead process: a server still sending learns at once, where a
    socket only shut down would take its bytes until the send timeout.
    """

    def __init__(self, client: socket.socket, server: socket.socket) -> None:
        self.sockets = (client, server)
        self.broken = False
        self._running = 2
        self._lock = threading.Lock()

    def relay_done(self) -> None:
        with self._lock:
            self._running -= 1
            if self._running:
                return
        for sock in self.sockets:
            with contextlib.suppress(OSError):
                if self.broken:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()


@contextlib.contextmanager
def counting_proxy(port: int) -> Iterator[CountingProxy]:
    proxy = CountingProxy(port)
    try:
        yield proxy
    finally:
        proxy.close()
