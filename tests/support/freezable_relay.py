"""A TCP relay that can be frozen: a network cut, as a node cut off from Redis sees it.

While frozen nothing passes either way and nothing is closed: no FIN, no
reset, the peers just hear nothing (a partition, not a stopped server).
:meth:`~FreezableRelay.thaw` lets everything through again.
"""

from __future__ import annotations

import contextlib
import socket
import threading

from tests.support.proxy import CountingProxy, RelayedPair

_POLL = 0.02  # seconds a relay thread waits between looks at the freeze


class FreezableRelay(CountingProxy):
    """A :class:`CountingProxy` whose bytes stop, both ways, while it is frozen."""

    def __init__(self, port: int) -> None:
        self._flowing = threading.Event()
        self._flowing.set()
        super().__init__(port)

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        self._flowing.set()

    def _relay(
        self, pair: RelayedPair, source: socket.socket, sink: socket.socket, counted: bool
    ) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(1 << 16):
                while not self._flowing.wait(_POLL):  # held, not dropped
                    if self._stop.is_set():
                        return
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)
        pair.relay_done()

    def close(self) -> None:
        self.thaw()
        super().close()
