"""A relay to a server that stalls a download part way, as a slow or broken network does.

The first connection passes only the first ``stall_after`` bytes the server
sends, then holds the rest back until the relay is closed; later
connections pass everything. A test interrupts the client while it waits,
then checks that the next run resumes.
"""

from __future__ import annotations

import contextlib
import socket

from tests.support.proxy import CountingProxy, RelayedPair


class StallingProxy(CountingProxy):
    """A :class:`CountingProxy` whose first connection stalls after ``stall_after``
    bytes from the server; ``connections`` counts the connections relayed."""

    def __init__(self, port: int, stall_after: int) -> None:
        self.stall_after = stall_after
        self.connections = 0
        super().__init__(port)

    def _relay(
        self, pair: RelayedPair, source: socket.socket, sink: socket.socket, counted: bool
    ) -> None:
        if not counted:  # what the client sends always passes
            super()._relay(pair, source, sink, counted)
            return
        with self._lock:  # one relay from the server per connection
            self.connections += 1
            first = self.connections == 1
        if not first:
            super()._relay(pair, source, sink, counted)
            return
        left = self.stall_after
        with contextlib.suppress(OSError):
            while left > 0 and (data := source.recv(min(1 << 16, left))):
                with self._lock:
                    self.from_server += len(data)
                sink.sendall(data)
                left -= len(data)
        self._stop.wait()  # stalled: the rest is held back until the relay is closed
        pair.relay_done()
