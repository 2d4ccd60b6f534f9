"""A connection's admission on accept: a place in the pending pool, then NAME or FULL.

The pending pool holds connections until their HELLO. When it is full, a
silent connection may make room for a newcomer (see ``PendingPool.make_room``):
it leaves the pool at once and is told so a moment later.
"""

from __future__ import annotations

import asyncio
import time
from functools import partial
from typing import TYPE_CHECKING

from .. import protocol as p
from .addresses import peer_address
from .registry import Refusal, registry_unavailable
from .transfer import unread_bytes

if TYPE_CHECKING:
    from .session import Session

# A silent connection dropped for a newer one (see PendingPool.make_room)
# leaves the pending pool at once but is told only this much later: silent
# connections that reconnect when dropped then come back at most this often,
# each, instead of as fast as the server can drop them, so an honest client
# of the same source is not dropped before its HELLO arrives.
DROP_NOTICE_DELAY = 1.0


def admit(s: Session, peer: tuple[str, int] | None = None) -> bool:
    """Give the new connection a place in the pending pool, or turn it away; as
    ``peer`` (a PROXY header's client) when given, else as its transport's peer."""
    assert s.transport is not None
    if peer is None:
        peer = s.transport.get_extra_info("peername")
    s.address = peer_address(peer)
    context = s.context
    source = s.source = context.source_of(str(peer[0]) if isinstance(peer, tuple) else "")
    # Under TLS, FULL for lack of a slot waits until it can be sent encrypted.
    refusal = (None if context.tls else context.registry.refusal(source)) or _room_in_pool(s)
    if refusal is not None:
        _turn_away(s, refusal, tell=context.tls is None)
        return False
    context.registry.pending.enter(source, s)
    s.pending = True
    context.sessions.add(s)
    return True


def may_be_dropped(s: Session) -> bool:
    """Whether a newcomer may take this connection's place (see PendingPool.make_room):
    not while its NAME is awaited (it could not be told why)."""
    return s.conn.may_be_dropped() and not s.naming


def has_spoken(s: Session) -> bool:
    """Whether it did more than connect (see PendingPool.make_room): sent a
    ClientHello or a line, whether the loop has read it yet or not."""
    return s.spoke or unread_bytes(s.transport) > 0


def leave_pool(s: Session) -> None:
    if s.pending:
        s.pending = False
        s.context.registry.pending.leave(s.source, s)


def _room_in_pool(s: Session) -> Refusal | None:
    """Make room in the pending pool if a silent connection may go; why not, if not."""
    pool = s.context.registry.pending
    victim = pool.make_room(s.source)
    if victim is not None:
        drop_for_newcomer(victim)
    return pool.refusal(s.source)


def drop_for_newcomer(s: Session) -> None:
    """Give this silent connection's place in the pending pool to a newer one now;
    tell it after ``DROP_NOTICE_DELAY`` (see there)."""
    context = s.context
    context.warn(
        "timeout",
        "Timeout: %s dropped for a newer connection: no HELLO yet",
        s.label(),
        source=s.source,
    )
    transport = s.transport
    assert transport is not None
    now = time.monotonic()
    s.leave_pool()
    if len(context.notices_held) >= context.registry.pending.size:
        s.conn.drop(notice_at=now)  # past the bound, nothing more is held
        s.handle_timer(now)
        return
    s.conn.drop(notice_at=now + DROP_NOTICE_DELAY)
    context.notices_held.add(s)
    if s.upgrade is None:  # (the TLS layer reads for itself; it is told nothing)
        transport.pause_reading()
    s.arm()


def _turn_away(s: Session, refusal: Refusal, *, tell: bool) -> None:
    """Refuse a connection on accept: ``FULL``, or (before TLS) a plain close."""
    assert s.transport is not None
    s.context.reject(s.address, refusal, s.source)
    if not tell:
        s.conn.end()
        s.transport.abort()  # a line in clear would be garbage to a TLS client
        return
    s.transport.write(s.conn.send(p.FullReply(refusal.reason)))
    s.context.lingering.add(s)
    s.close_gracefully()


def offer_name(s: Session) -> None:
    """``NAME`` (the number taken for good), or ``FULL`` when every slot is taken;
    or, when the registry's answer is a round trip away, nothing yet: lines the
    client sends meanwhile wait (see :func:`name_came`)."""
    registry = s.context.registry
    refusal = registry.refusal(s.source)
    if refusal is not None:  # under TLS: the slots filled during the TLS handshake
        _refuse_name(s, refusal)
        return
    named = registry.take_name(s.source)
    if isinstance(named, tuple):
        s.number, s.name = named
        s.send(p.NameReply(s.name))
    elif isinstance(named, Refusal):
        _refuse_name(s, named)
    else:
        s.naming = True
        named.add_done_callback(partial(name_came, s))


def name_came(s: Session, later: asyncio.Future[tuple[int, str] | Refusal]) -> None:
    """The registry answered: ``NAME`` or ``FULL``, then what the client sent meanwhile."""
    s.naming = False
    if s.closing or s.transport is None or s.transport.is_closing():
        return  # gone meanwhile: the number is spent, never reused
    if later.cancelled() or later.exception() is not None:  # (the registry closed)
        named: tuple[int, str] | Refusal = registry_unavailable("no answer")
    else:
        named = later.result()
    if isinstance(named, Refusal):
        _refuse_name(s, named)
        return
    s.number, s.name = named
    s.send(p.NameReply(s.name))
    s.arm()
    s.process()


def _refuse_name(s: Session, refusal: Refusal) -> None:
    s.context.reject(s.address, refusal, s.source)
    s.close_with(p.FullReply(refusal.reason))
