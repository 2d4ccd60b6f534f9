"""A connection's TLS layer, set up at the first byte of its ClientHello.

The layer (256 KiB and more per connection) exists only for connections
admitted to the pending pool, and only once the client has sent something:
until then the connection is a silent socket, the first to go when a newcomer
needs its place. The bytes read before the layer is set up are handed to it.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from typing import TYPE_CHECKING, cast

from ..protocol.proxy_header import sniff_proxy_header
from .admission import offer_name

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("filedock.server")

# TLS bytes a connection may send before its TLS layer is set up: a TLS record
# (the ClientHello) is at most 16 KiB, and a client waits for the answer to it.
_EARLY_TLS_LIMIT = 16 * 1024 + 64


def _replay_into_layer(raw: asyncio.Transport, data: bytes) -> None:
    """Feed ``data`` to the TLS layer that now reads ``raw``, as if just read."""
    if raw.is_closing():
        return
    layer = cast(asyncio.BufferedProtocol, raw.get_protocol())
    view = memoryview(data)
    while view:
        buffer = memoryview(layer.get_buffer(len(view)))
        count = min(len(buffer), len(view))
        buffer[:count] = view[:count]
        layer.buffer_updated(count)
        view = view[count:]


class TlsUpgrade:
    """One connection's way to TLS: its session holds it until the handshake ends."""

    __slots__ = ("session", "before_layer", "_early", "_task")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.before_layer = True  # the TLS layer does not read for the session yet
        self._early: bytearray | None = None  # TLS bytes read before the layer was there
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only a weak one

    def keep(self, data: bytes | memoryview) -> None:
        """Hold TLS bytes that came before the TLS layer (a ClientHello fits in 16 KiB),
        and set the layer up at the first of them."""
        s = self.session
        early = self._early = self._early or bytearray()
        early += data
        if len(early) > _EARLY_TLS_LIMIT and s.transport is not None:
            s.transport.abort()
            return
        context = s.context.tls
        if self._task is None and context is not None and s.transport is not None:
            opening = sniff_proxy_header(early)
            if opening is None:
                return  # a PROXY signature's first bytes, or a TLS record's? The next ones tell
            if opening:
                self._refuse_proxy_header()
                return
            s.spoke = True
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self.start(s.transport, context))

    def _refuse_proxy_header(self) -> None:
        """A PROXY header the server was not told to expect (or a second one): the
        balancer in front is misconfigured, or a client tries to pass for another
        address. Nothing can be told in clear to a TLS client: the connection is closed."""
        s = self.session
        s.stats.protocol_errors += 1
        s.context.note(
            "protocol",
            "Protocol error from %s: a PROXY protocol header where the TLS handshake was due "
            "(see --proxy-protocol)",
            s.address,
            source=s.source,
        )
        s.abort("protocol-error")

    async def start(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        """Upgrade the pending connection to TLS, then name it; within the handshake timeout."""
        s = self.session
        upgraded: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self.before_layer = False  # start_tls() installs its layer before it awaits
        early, self._early = self._early, None
        if early:
            # After start_tls()'s own call_soon of the layer's connection_made.
            loop.call_soon(loop.call_soon, _replay_into_layer, raw, bytes(early))
        try:
            if s.closing and s in s.context.notices_held:
                return  # dropped for a newcomer before TLS began: its notice timer closes it
            if not raw.is_closing():
                upgraded = await loop.start_tls(
                    raw,
                    s,
                    context,
                    server_side=True,
                    # A backstop: our own handshake timer fires first, and logs it.
                    ssl_handshake_timeout=s.config.handshake_timeout + 1.0,
                )
        except OSError as exc:  # ssl.SSLError included: the client's failure, not ours
            log.debug("TLS handshake with %s failed: %s", s.address, exc)
        finally:
            self._task = None
            s.upgrade = None
        if upgraded is None:
            # The TLS layer owned the raw connection: no connection_lost comes to us.
            raw.abort()
            s.connection_lost(None)
            return
        s.transport = upgraded
        if s.closing:  # the handshake timeout or a shutdown came first
            upgraded.abort()
            return
        offer_name(s)
        s.process()  # lines a hasty client sent before its NAME
