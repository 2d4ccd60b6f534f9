"""A connection relayed by a load balancer: its PROXY header, read before admission.

With ``--proxy-protocol`` every connection starts with a PROXY protocol header
(v1 or v2, parsed by :mod:`filedock.protocol.proxy_header`) naming the client
the balancer relays. Only a peer in ``--proxy-from`` may send one: anyone
else could name any address, and a connection from elsewhere is closed at
once. Until the header is in, a :class:`HeaderReader` is the transport's
protocol in the session's place, so the session's own read path is the same
with the option or without it; once it is in, the session is admitted as the
address it names (the balancer's own for ``LOCAL`` and ``UNKNOWN``: a health
check) and given the bytes that came after it. The handshake deadline, counted
from the accept, covers the header too.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
from typing import TYPE_CHECKING

from ..protocol.proxy_header import InvalidHeader, ProxyHeader, parse_proxy_header
from .addresses import peer_address

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("filedock.server")

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@functools.lru_cache(maxsize=8)
def trusted_networks(texts: tuple[str, ...]) -> tuple[_Network, ...]:
    """``--proxy-from``'s addresses and networks, parsed (once per server, not per connection)."""
    return tuple(ipaddress.ip_network(text, strict=False) for text in texts)


def is_trusted(host: str, networks: tuple[_Network, ...]) -> bool:
    """Whether the peer ``host`` is in one of ``networks`` (an IPv4-mapped IPv6
    address counts as its IPv4 address, as on a dual-stack listener)."""
    try:
        address = ipaddress.ip_address(host.partition("%")[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    # (Compared by version first: ipaddress would match an IPv4 address against ::/0.)
    return any(address.version == net.version and address in net for net in networks)


def read_header(s: Session) -> None:
    """Start the session of a relayed connection: refuse a peer not trusted to relay,
    else read its PROXY header, then admit it (see :class:`HeaderReader`)."""
    transport = s.transport
    assert transport is not None
    context = s.context
    peer = transport.get_extra_info("peername")
    host = str(peer[0]) if isinstance(peer, tuple) else ""
    s.address = peer_address(peer)  # the balancer's, until its header names the client
    s.source = context.source_of(host)
    if not is_trusted(host, trusted_networks(s.config.proxy_from)):
        context.stats.protocol_errors += 1
        context.note(
            "protocol",
            "Refused %s: not allowed to send a PROXY header (see --proxy-from)",
            s.address,
            source=s.source,
        )
        s.conn.end()
        transport.abort()
        return
    context.sessions.add(s)  # a shutdown ends it too
    transport.set_protocol(HeaderReader(s))
    s.arm()  # the handshake deadline


class HeaderReader(asyncio.BufferedProtocol):
    """The transport's protocol until the PROXY header is in; then the session's again."""

    __slots__ = ("session", "received")

    def __init__(self, session: Session) -> None:
        self.session = session
        self.received = bytearray()  # at most a header's worth (the parser bounds it)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.session.context.read_buffer  # copied out in buffer_updated

    def buffer_updated(self, nbytes: int) -> None:
        self.take(self.session.context.read_buffer[:nbytes])

    def take(self, data: bytes | memoryview) -> None:
        """Add ``data`` to what came; once the header is whole, hand the connection on."""
        s = self.session
        if s.closing:
            return
        self.received += data
        parsed = parse_proxy_header(self.received)
        if isinstance(parsed, InvalidHeader):
            self._refuse(f"invalid PROXY header: {parsed.reason}")
            return
        if not isinstance(parsed, ProxyHeader):
            return  # NEED_MORE: the rest of it is on its way
        rest = bytes(self.received[parsed.length :])  # the client's first line, say
        self.received.clear()
        transport = s.transport
        assert transport is not None
        transport.set_protocol(s)
        s.admit(parsed.source)
        if rest:
            s.data_received(rest)

    def _refuse(self, why: str) -> None:
        s = self.session
        s.context.stats.protocol_errors += 1
        s.context.note("protocol", "Protocol error from %s: %s", s.address, why, source=s.source)
        s.abort("protocol-error")

    def eof_received(self) -> bool:
        s = self.session
        if self.received:
            self._refuse("the connection ended inside its PROXY header")
        else:  # a balancer's health check that only connects: nothing to say
            log.debug("%s closed before its PROXY header", s.address)
            s.conn.end()
        return False  # the transport closes; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.session.connection_lost(exc)
