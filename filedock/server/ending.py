"""How a session ends on the server's side: a deadline passed, the linger
before the close, and the server's shutdown.

A closed connection must still let our last line reach the client: the close
waits until what is buffered is sent, reading (and dropping) meanwhile, and
gives up after a bound so a client that reads no more cannot hold it.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from .. import protocol as p
from ..errors import FiledockError
from ..protocol.server import Deadline
from ..protocol.state import State
from . import greeting

if TYPE_CHECKING:
    from .session import Session

# After a session ends with an error the client may still be sending; reading
# (and dropping) for a moment lets our last line reach it before the close.
_LINGER_SECONDS = 2.0

_DEADLINE_LOGS = {
    "handshake": "Timeout: %s did not greet within %g s",
    "idle": "Timeout: %s idle for %g s",
}

_SHUTTING_DOWN = p.ErrorReply(p.ErrorCode.SHUTDOWN, "server is shutting down")


def close_with(s: Session, reply: p.Reply) -> None:
    """Send the last ``reply``, end the session and close."""
    s.send(reply)
    s.finish()
    close_gracefully(s)


def close_gracefully(s: Session) -> None:
    """Close after our last bytes are sent, reading (and dropping) meanwhile."""
    transport = s.transport
    if transport is None or transport.is_closing():
        return
    if s.linger_timer is not None:
        return
    loop = asyncio.get_running_loop()
    if s.peer_eof:
        transport.close()  # sends what is buffered, then closes
        # A client that reads no more would hold that buffer, and the
        # connection, for ever (its slot is already free): cut it off.
        s.linger_timer = loop.call_later(s.config.send_timeout, transport.abort)
    elif transport.can_write_eof():
        try:
            transport.write_eof()
        except OSError:  # reset since we last read (ENOTCONN): nothing to wait for
            transport.abort()
            return
        transport.resume_reading()
        s.linger_timer = loop.call_later(_LINGER_SECONDS, transport.abort)
    else:
        transport.close()


def deadline_passed(s: Session, deadline: Deadline) -> None:
    """Log the deadline, free the slot, and tell the client (if it can be told) before the close."""
    message = _DEADLINE_LOGS.get(deadline.what)
    if message is not None:
        s.context.stats.timeouts[deadline.what] += 1
        if deadline.what == "idle":
            s.context.warn("timeout", message, s.label(), s.config.idle_timeout, source=s.source)
        else:  # a connection that never greeted: refused, worth a line at INFO
            limit = s.config.handshake_timeout
            s.context.note("handshake", message, s.label(), limit, source=s.source)
    s.context.notices_held.discard(s)
    s.finish(f"{deadline.what}-timeout")
    transport = s.transport
    if transport is None or transport.is_closing() or s.linger_timer is not None:
        return
    if deadline.data is None:
        transport.abort()  # before or in its TLS handshake: a line in clear would be garbage
        return
    transport.write(deadline.data)
    if deadline.what == "notice":
        transport.resume_reading()  # paused while the notice was held
    close_gracefully(s)


async def shut_down(s: Session, grace: float) -> None:
    """Let a transfer in flight finish (up to ``grace`` s), then send ``ERR shutdown``."""
    s.stopping = True
    s.end_reason = s.end_reason or "shutdown"  # (what ends it now is the shutdown)
    conn = s.conn
    if s.upgrade is not None or conn.state is State.ACCEPTED:
        conn.end()
        if s.transport is not None:
            s.transport.abort()  # mid-TLS handshake, or before a PROXY header: nothing can be told
        return
    if conn.answer_owed:
        greeting.forget_answer(s)
    if conn.state is State.DROPPED:  # its notice, due later, is told now
        s.handle_timer(float("inf"))
        return
    task = s.task
    if task is not None:
        # A body going out, or an upload whose body is in (being checked and
        # placed), may finish within the grace; an upload's body still coming
        # stops at once, its partial kept.
        if conn.state is State.SENDING or (s.upload is not None and conn.state is State.BUSY):
            try:
                async with asyncio.timeout(grace):
                    await asyncio.shield(task)
            except (TimeoutError, FiledockError, OSError):
                pass
        if not task.done():
            task.cancel()
            if conn.state is State.SENDING:
                s.abort()  # a body cut short cannot be followed by a line
                return
    if not s.closing:
        close_with(s, _SHUTTING_DOWN)
    elif s.transport is not None and not s.transport.is_closing():
        close_gracefully(s)
