"""The end of the handshake: the token, its held answer, then a slot or ``FULL``.

A token is compared at once but answered after the delay its source has
earned (see :class:`~.auth.AuthGuard`), right or wrong alike; a wrong one first
waits for its turn among its source's. The delay is a deadline of the
session's :class:`~filedock.protocol.server.ServerConnection`, so it is read
with the others from ``get_timer()``.
"""

from __future__ import annotations

import asyncio
from functools import partial
from typing import TYPE_CHECKING

from .. import protocol as p
from ..protocol.state import State
from . import client_log
from .auth import pass_turn, token_from_greeting
from .registry import ClientEntry, Refusal, registry_unavailable

if TYPE_CHECKING:
    from .session import Session

UNAUTHORIZED = p.ErrorReply(p.ErrorCode.UNAUTHORIZED, "a valid access token is required")


def hello(s: Session, greeting: p.Hello) -> bytes | None:
    """``WELCOME`` or ``FULL`` now, ``ERR unauthorized`` for no token, or a held answer."""
    context = s.context
    if context.tokens is None:
        return welcome(s)
    token = token_from_greeting(greeting.words)
    if token is None:
        # No guess at all: it reveals nothing, so it is answered at once and
        # counts as no failure (of the guard's: the statistics count it).
        context.stats.connections_rejected["token"] += 1
        context.note("auth", "Unauthorized: %s gave no token", s.label(), source=s.source)
        data = s.conn.send(UNAUTHORIZED)
        s.finish()
        return data
    guard = context.auth_guard
    delay = guard.answer_delay(s.source)  # decided before the comparison
    right, s.may_write = context.tokens.check(token)
    s.conn.authorize(right)
    if right:
        s.answer_after(delay)
        return None
    guard.failed(s.source)
    context.stats.connections_rejected["token"] += 1
    context.note(
        "auth",
        "Unauthorized: %s gave no valid token (answer delayed %g s or more)",
        s.label(),
        delay,
        source=s.source,
    )  # never the token itself
    if guard.try_start(s.source):
        s.has_turn = True
        s.answer_after(delay)
        return None
    turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    guard.queue(s.source, turn)
    s.turn = turn

    def turn_came(future: asyncio.Future[None]) -> None:
        s.turn = None
        if future.cancelled():
            return  # withdrawn (see forget_answer)
        s.has_turn = True
        s.answer_after(delay)

    turn.add_done_callback(turn_came)
    return None


def welcome(s: Session) -> bytes:
    """A slot and ``WELCOME``, or ``FULL`` (and the end) if none is free now; or,
    when the registry's answer is a round trip away, nothing yet: the lines
    after HELLO wait for it (see :func:`slot_came`)."""
    assert s.name is not None
    outcome = s.context.registry.welcome(s.number, s.name, s.address, s.source)
    if isinstance(outcome, asyncio.Future):
        if s.conn.state is State.NAMED:  # (after a token's delay it holds already)
            s.conn.hold()
        outcome.add_done_callback(partial(slot_came, s))
        return b""
    return _slot_answer(s, outcome)


def _slot_answer(s: Session, outcome: ClientEntry | Refusal) -> bytes:
    if isinstance(outcome, Refusal):  # the slots filled since our NAME
        s.context.reject(s.label(), outcome, s.source)
        data = s.conn.send(p.FullReply(outcome.reason))
        s.finish()
        return data
    s.leave_pool()
    s.entry = outcome
    client_log.connected(outcome)
    return s.conn.send(p.WelcomeReply(outcome.name, s.context.banner, s.conn.protocol))


def slot_came(s: Session, later: asyncio.Future[ClientEntry | Refusal]) -> None:
    """The registry answered: ``WELCOME`` or ``FULL``, then the lines that waited.
    A slot granted to a connection gone meanwhile is freed at once."""
    if later.cancelled() or later.exception() is not None:  # (the registry closed)
        outcome: ClientEntry | Refusal = registry_unavailable("no answer")
    else:
        outcome = later.result()
    transport = s.transport
    if s.closing or transport is None or transport.is_closing():
        if isinstance(outcome, ClientEntry):
            s.entry = outcome
            client_log.connected(outcome)
            s.finish()
        return
    transport.write(_slot_answer(s, outcome))
    s.arm()  # the idle deadline, from the WELCOME on
    if s.closing:
        s.close_gracefully()
    else:
        s.process()


def answer_due(s: Session, right: bool) -> None:
    """The held answer is due: the place in the pending pool is free now (even if
    the client left meanwhile), and the next turn of its source starts."""
    end_of_hold(s)
    transport = s.transport
    if s.closing or transport is None or transport.is_closing():
        return
    if not right:
        data = s.conn.send(UNAUTHORIZED)
        s.finish()
        transport.write(data)
        s.close_gracefully()
        return
    s.context.auth_guard.succeeded(s.source)
    transport.write(welcome(s))
    if s.closing:  # FULL: the slots filled meanwhile
        s.close_gracefully()


def forget_answer(s: Session) -> None:
    """Give up a held answer (the server shuts down): withdraw a turn still
    awaited, and free the place and the turn now."""
    s.conn.drop_answer()
    turn = s.turn
    if turn is not None:
        s.turn = None
        s.context.auth_guard.withdraw(s.source, turn)
        turn.cancel()
    end_of_hold(s)


def end_of_hold(s: Session) -> None:
    if s.closing:
        s.leave_pool()  # gone, or shut down: the place is free now
    if s.has_turn:
        s.has_turn = False
        pass_turn(s.context.auth_guard, s.source)
