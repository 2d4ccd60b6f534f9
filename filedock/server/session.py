"""One client connection: the asyncio driver of one ServerConnection.

The conversation's rules (the handshake, one command that waits at a time,
the body after a ``FILE`` header, the deadlines) live in
:class:`~filedock.protocol.server.ServerConnection`; a :class:`Session` feeds
it the transport's bytes, answers its events (the handlers are in
:mod:`.commands`, the greeting in :mod:`.greeting`), writes the replies of a
batch at once, and keeps one ``call_later`` armed for its next deadline. What
is a fact about the transport stays here: admission to the pending pool, the
TLS upgrade, flow control, a stalled reader, the linger before the close.

A :class:`Session` is an ``asyncio.BufferedProtocol``: the transport reads
into one buffer the server lends every session in turn. While a command waits
the session reads only up to one line's worth more, so a client that
pipelines costs bounded memory and one that resets is noticed.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import Any, cast

from .. import protocol as p
from ..errors import FiledockError, ProtocolError, RequestError
from ..protocol.server import (
    NEED_DATA,
    PAUSED,
    AnswerDue,
    BlankLine,
    Deadline,
    EndOfInput,
    ServerConnection,
    Violation,
)
from ..protocol.state import TRANSITIONS, State, Step
from . import greeting
from .commands import HANDLERS
from .context import REJECTED, ServerContext
from .registry import ClientEntry, Refusal
from .transfer import WriteFlow, unread_bytes

log = logging.getLogger("filedock.server")

# Replies are written once per batch, or sooner when a batch's replies pass
# this size, so the transport's flow control sees them early.
_FLUSH_SIZE = 64 * 1024

# After a session ends with an error the client may still be sending; reading
# (and dropping) for a moment lets our last line reach it before the close.
_LINGER_SECONDS = 2.0

# A silent connection dropped for a newer one (see PendingPool.make_room)
# leaves the pending pool at once but is told only this much later: silent
# connections that reconnect when dropped then come back at most this often,
# each, instead of as fast as the server can drop them, so an honest client
# of the same source is not dropped before its HELLO arrives.
DROP_NOTICE_DELAY = 1.0

# TLS bytes a connection may send before its TLS layer is set up: a TLS record
# (the ClientHello) is at most 16 KiB, and a client waits for the answer to it.
_EARLY_TLS_LIMIT = 16 * 1024 + 64

# The conversation is over (or about to be told so): input is dropped.
_ENDED = frozenset({State.DROPPED, State.CLOSING, State.CLOSED})
# A command (or a token's answer) is pending: the lines after it wait.
_WAITING = frozenset({State.BUSY, State.SENDING, State.AUTHORIZING})

# Looking an Enum member up on its class costs a descriptor call: the paths
# taken for every batch compare with these instead.
_IDLE, _BUSY, _SENDING = State.IDLE, State.BUSY, State.SENDING
_CLOSING, _CLOSED = State.CLOSING, State.CLOSED

_DEADLINE_LOGS = {
    "handshake": "Timeout: %s did not greet within %g s",
    "idle": "Timeout: %s idle for %g s",
}


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


def format_address(peer: Any) -> str:
    """``host:port``, or ``[v6]:port``, for a peer address tuple."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host, port = peer[0], peer[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(peer)


class Session(asyncio.BufferedProtocol):
    """The server side of one connection."""

    # Ten thousand connections are ten thousand of these: no per-instance dict.
    __slots__ = (
        "context",
        "config",
        "conn",
        "entry",
        "address",
        "source",
        "number",
        "name",
        "transport",
        "flow",
        "turn",
        "has_turn",
        "_spoke",
        "_pending",
        "_upgrading",
        "_before_tls",
        "_early",
        "_upgrade",
        "_task",
        "_stopping",
        "_warned",
        "_peer_eof",
        "_timer",
        "_timer_at",
        "_stall_timer",
        "_linger_timer",
    )

    def __init__(self, context: ServerContext) -> None:
        self.context = context
        self.config = context.config
        self.conn = ServerConnection(
            now=time.monotonic(),
            max_line=self.config.max_line,
            handshake_timeout=self.config.handshake_timeout,
            idle_timeout=self.config.idle_timeout,
        )
        self.entry: ClientEntry | None = None  # from WELCOME on
        self.address = "?"
        self.source = "?"  # the address's group, for the per-source rules
        self.number = 0
        self.name: str | None = None  # from NAME on
        self.transport: asyncio.Transport | None = None
        self.flow = WriteFlow()
        self.turn: asyncio.Future[None] | None = None  # a wrong token's place in line
        self.has_turn = False  # it is this connection's answer its source waits for
        self._spoke = False  # it sent a ClientHello: a client, not a silent socket
        self._pending = False  # holds a place in the pending pool
        self._upgrading = False  # in the TLS handshake
        self._before_tls = False  # TLS is due but its layer does not read for us yet
        self._early: bytearray | None = None  # TLS bytes read before its layer was there
        self._upgrade: asyncio.Task[None] | None = None  # held: the loop keeps only a weak one
        self._task: asyncio.Task[None] | None = None
        self._stopping = False  # the server is shutting down: serve nothing new
        self._warned = False  # protocol errors are logged once per connection
        self._peer_eof = False
        self._timer: asyncio.TimerHandle | None = None  # the conversation's next deadline
        self._timer_at = 0.0
        self._stall_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    @property
    def closing(self) -> bool:
        """Whether the conversation is over, or its end is being told."""
        return self.conn.state in _ENDED

    # -- admission ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports implement
        # asyncio.Transport without deriving from it.
        transport = self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = format_address(peer)
        context = self.context
        source = self.source = context.source_of(str(peer[0]) if isinstance(peer, tuple) else "")
        # Under TLS, FULL for lack of a slot waits until it can be sent encrypted.
        refusal = (
            None if context.tls else context.registry.refusal(source)
        ) or self._room_in_pool()
        if refusal is not None:
            self._turn_away(refusal, tell=context.tls is None)
            return
        context.registry.pending.enter(source, self)
        self._pending = True
        context.sessions.add(self)
        self._arm()
        if context.tls is None:
            self._offer_name()
            return
        # The TLS layer (256 KiB and more per connection) exists only for
        # connections admitted to the pending pool, and only once the client
        # has sent something (its ClientHello): until then the connection is a
        # silent socket, the first to go when a newcomer needs its place. The
        # bytes read before the layer is set up are handed to it.
        self._upgrading = self._before_tls = True

    def _room_in_pool(self) -> Refusal | None:
        """Make room in the pending pool if a silent connection may go; why not, if not."""
        pool = self.context.registry.pending
        victim = pool.make_room(self.source)
        if victim is not None:
            victim.drop_for_newcomer()
        return pool.refusal(self.source)

    def may_be_dropped(self) -> bool:
        """Whether a newcomer may take this connection's place (see PendingPool.make_room)."""
        return self.conn.may_be_dropped()

    def has_spoken(self) -> bool:
        """Whether it did more than connect (see PendingPool.make_room): sent a
        ClientHello or a line, whether the loop has read it yet or not."""
        return self._spoke or unread_bytes(self.transport) > 0

    def drop_for_newcomer(self) -> None:
        """Give this silent connection's place in the pending pool to a newer one now;
        tell it after ``DROP_NOTICE_DELAY`` (see there)."""
        context = self.context
        context.warn(
            "timeout",
            "Timeout: %s dropped for a newer connection: no HELLO yet",
            self.label(),
            source=self.source,
        )
        transport = self.transport
        assert transport is not None
        now = time.monotonic()
        self.leave_pool()
        if len(context.notices_held) >= context.registry.pending.size:
            self.conn.drop(notice_at=now)  # past the bound, nothing more is held
            self._handle_timer(now)
            return
        self.conn.drop(notice_at=now + DROP_NOTICE_DELAY)
        context.notices_held.add(self)
        if not self._upgrading:  # (the TLS layer reads for itself; it is told nothing)
            transport.pause_reading()
        self._arm()

    def _turn_away(self, refusal: Refusal, *, tell: bool) -> None:
        """Refuse a connection on accept: ``FULL``, or (before TLS) a plain close."""
        assert self.transport is not None
        self.context.warn(
            REJECTED, "Rejected %s: %s", self.address, refusal.summary, source=self.source
        )
        if not tell:
            self.conn.end()
            self.transport.abort()  # a line in clear would be garbage to a TLS client
            return
        self.transport.write(self.conn.send(p.FullReply(refusal.reason)))
        self.context.lingering.add(self)
        self.close_gracefully()

    async def _start_tls(self, raw: asyncio.Transport, context: ssl.SSLContext) -> None:
        """Upgrade the pending connection to TLS, then name it; within the handshake timeout."""
        upgraded: asyncio.Transport | None = None
        loop = asyncio.get_running_loop()
        self._before_tls = False  # start_tls() installs its layer before it awaits
        early, self._early = self._early, None
        if early:
            # After start_tls()'s own call_soon of the layer's connection_made.
            loop.call_soon(loop.call_soon, _replay_into_layer, raw, bytes(early))
        try:
            if self.closing and self in self.context.notices_held:
                return  # dropped for a newcomer before TLS began: its notice timer closes it
            if not raw.is_closing():
                upgraded = await loop.start_tls(
                    raw,
                    self,
                    context,
                    server_side=True,
                    # A backstop: our own handshake timer fires first, and logs it.
                    ssl_handshake_timeout=self.config.handshake_timeout + 1.0,
                )
        except OSError as exc:  # ssl.SSLError included: the client's failure, not ours
            log.debug("TLS handshake with %s failed: %s", self.address, exc)
        finally:
            self._upgrading = False
            self._upgrade = None
        if upgraded is None:
            # The TLS layer owned the raw connection: no connection_lost comes to us.
            raw.abort()
            self.connection_lost(None)
            return
        self.transport = upgraded
        if self.closing:  # the handshake timeout or a shutdown came first
            upgraded.abort()
            return
        self._offer_name()
        self._process()  # lines a hasty client sent before its NAME

    def _offer_name(self) -> None:
        """``NAME`` (the number taken for good), or ``FULL`` when every slot is taken."""
        registry = self.context.registry
        refusal = registry.refusal(self.source)
        if refusal is not None:  # under TLS: the slots filled during the TLS handshake
            self.context.warn(
                REJECTED, "Rejected %s: %s", self.address, refusal.summary, source=self.source
            )
            self._close_with(p.FullReply(refusal.reason))
            return
        self.number, self.name = registry.take_name()
        self.send(p.NameReply(self.name))

    # -- asyncio.BufferedProtocol -------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        # Shared, not one per connection: buffer_updated copies the bytes out
        # before anything else runs on the loop. A plain Protocol would have
        # asyncio allocate 256 KiB per read, which glibc may serve with an
        # mmap/munmap pair per read (tens of µs per request).
        return self.context.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.context.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self._before_tls:
            if not self.closing:
                self._keep_early(data)
            return
        if self.conn.receive_data(data):  # (lingering: what the client still sends is dropped)
            self._process()

    def _keep_early(self, data: bytes | memoryview) -> None:
        """Hold TLS bytes that came before the TLS layer (a ClientHello fits in 16 KiB),
        and set the layer up at the first of them."""
        early = self._early = self._early or bytearray()
        early += data
        if len(early) > _EARLY_TLS_LIMIT and self.transport is not None:
            self.transport.abort()
            return
        context = self.context.tls
        if self._upgrade is None and context is not None and self.transport is not None:
            self._spoke = True
            loop = asyncio.get_running_loop()
            self._upgrade = loop.create_task(self._start_tls(self.transport, context))

    def eof_received(self) -> bool:
        self._peer_eof = True
        if self.closing:
            return False  # our last line is out; let the transport close
        self.conn.receive_data(b"")
        self._process()
        # Keep the transport open until the replies in hand are written; TLS
        # cannot half-close, so there the transport closes after them itself.
        return self.context.tls is None

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        sending = conn.state is _SENDING
        if conn.state is not _CLOSED:
            conn.connection_lost()
        self.flow.abort()
        for timer in (self._stall_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        if not conn.answer_owed:  # a token's answer stays due: its place is held till then
            self._cancel_timer()
        task = self._task
        # A peer gone mid-body (seen by a read, now that the session reads while
        # busy): the body's own next send fails at once and logs what was cut
        # short. Anything else, our own abort included, is cancelled here.
        if task is not None and not task.done() and not (sending and exc):
            task.cancel()
        self.finish()
        context = self.context
        context.session_closed(self)
        context.lingering.discard(self)
        context.notices_held.discard(self)

    def pause_writing(self) -> None:
        self.flow.pause()
        self._update_reading()
        if self._stall_timer is None and not self.closing:
            loop = asyncio.get_running_loop()
            self._stall_timer = loop.call_later(self.config.send_timeout, self._send_stalled)

    def resume_writing(self) -> None:
        self.flow.resume()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._update_reading()
        if not self.closing and self._task is None:
            self._process()

    # -- the line loop --------------------------------------------------------------

    def _process(self) -> None:
        """Answer the events in hand, until one needs to wait."""
        transport = self.transport
        assert transport is not None
        conn, flow = self.conn, self.flow
        next_event, handlers = conn.next_event, _EVENT_HANDLERS
        state = conn.state
        replies: list[bytes] = []
        size = 0
        heard = False
        while not flow.paused:
            event = next_event()
            if event is NEED_DATA or event is PAUSED:  # (PAUSED: a command waits)
                break
            heard = True
            try:
                reply = handlers[type(event)](self, event)
            except ProtocolError as exc:
                self._warn_once("Protocol error from %s: %s", self.label(), exc)
                reply = self._answer(p.ErrorReply(exc.code, str(exc)))
            except RequestError as exc:
                reply = self._answer(p.ErrorReply(exc.code, exc.text))
            except Exception:  # a bug: answer, log it, keep the server up
                log.exception("Internal error serving %s", self.label())
                reply = self._answer(p.ErrorReply(p.ErrorCode.INTERNAL, "internal server error"))
            if reply:
                replies.append(reply)
                size += len(reply)
                if size >= _FLUSH_SIZE:
                    transport.write(b"".join(replies))
                    replies.clear()
                    size = 0
        if heard:
            conn.heard_at = time.monotonic()
        if replies:
            transport.write(b"".join(replies))
        if conn.state is not state:  # (a timer that fires re-arms itself)
            self._arm()
        if conn.state is _CLOSING:
            self.close_gracefully()
        else:
            self._update_reading()

    def _answer(self, reply: p.ErrorReply) -> bytes | None:
        """A handler's failure as a reply, or, where the conversation takes none
        (a token's answer held, a body under way), the end of the connection."""
        state = self.conn.state
        if Step.ANSWER in TRANSITIONS[state]:
            return self.conn.send(reply)
        if state not in _ENDED:
            if self.conn.answer_owed:
                greeting.forget_answer(self)  # no answer will come: the place is free
            self.abort()
        return None

    def _violation(self, violation: Violation) -> bytes:
        if violation.kind is not None:
            self._warn_once("%s from %s: %s", violation.kind, self.label(), violation.what)
        data = self.conn.send(violation.reply)
        if violation.closes:
            self.finish()
        return data

    def _end_of_input(self, _: object) -> None:
        # The client has finished sending; an unended last line is dropped.
        self.conn.end()
        self.finish()

    def _warn_once(self, message: str, *args: object) -> None:
        if not self._warned:
            self._warned = True
            self.context.warn("protocol", message, *args, source=self.source)

    # -- the one task -----------------------------------------------------------------

    def start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run ``work`` as this session's one task; lines after it wait."""
        self.conn.start()
        task = self._task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        if self.conn.state is _BUSY:
            self.conn.done(time.monotonic())  # idleness counts from the end of the work
            self._arm()
        if task.cancelled() or self.closing or self._stopping:
            return
        exc = task.exception()
        if exc is not None:
            log.error("Internal error serving %s", self.label(), exc_info=exc)
            self.abort()
            return
        self._process()

    def send(self, reply: p.Reply, follow: bytes = b"") -> None:
        """Write ``reply`` (and the records that ``follow`` it) unless the conversation is over."""
        if self.transport is not None and not self.closing:
            self.transport.write(self.conn.send(reply) + follow)

    # -- deadlines ----------------------------------------------------------------------

    def answer_after(self, delay: float) -> None:
        """The held answer to a token is due in ``delay`` seconds."""
        self.conn.answer_at(time.monotonic() + delay)
        self._arm()

    def _arm(self) -> None:
        """Keep one timer armed for the conversation's next deadline.

        A deadline that moved later (every line pushes the idle one back) keeps
        the timer armed: it fires, finds nothing due and is armed again, so
        no line re-arms a timer."""
        when = self.conn.get_timer()
        if when is None:
            return  # a timer still armed fires, finds nothing due, and ends
        if self._timer is not None:
            if self._timer_at <= when:
                return
            self._timer.cancel()
        self._timer_at = when
        delay = max(0.0, when - time.monotonic())
        self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _on_timer(self) -> None:
        self._timer = None
        self._handle_timer(time.monotonic())

    def _handle_timer(self, now: float) -> None:
        event = self.conn.handle_timer(now)
        if isinstance(event, Deadline):
            self._deadline_passed(event)
        elif isinstance(event, AnswerDue):
            greeting.answer_due(self, event.right)
            if not self.closing and self.transport is not None:
                self._process()  # lines sent while the answer was held
        self._arm()

    def _deadline_passed(self, deadline: Deadline) -> None:
        message = _DEADLINE_LOGS.get(deadline.what)
        if message is not None:
            limit = self.config.handshake_timeout
            if deadline.what == "idle":
                limit = self.config.idle_timeout
            self.context.warn("timeout", message, self.label(), limit, source=self.source)
        self.context.notices_held.discard(self)
        self.finish()
        transport = self.transport
        if transport is None or transport.is_closing() or self._linger_timer is not None:
            return
        if deadline.data is None:
            transport.abort()  # before or in its TLS handshake: a line in clear would be garbage
            return
        transport.write(deadline.data)
        if deadline.what == "notice":
            transport.resume_reading()  # paused while the notice was held
        self.close_gracefully()

    def _send_stalled(self) -> None:
        self._stall_timer = None
        self.context.warn(
            "timeout",
            "Dropping %s: no write progress for %g s",
            self.label(),
            self.config.send_timeout,
            source=self.source,
        )
        self.abort()

    # -- ending -------------------------------------------------------------------------

    def label(self) -> str:
        """``Client01 (127.0.0.1:49559)``, or the address before a name is given."""
        return f"{self.name} ({self.address})" if self.name else self.address

    def finish(self) -> None:
        """Free the slot and stamp FINISHED now (the close follows); a token's held
        answer keeps the place in the pending pool until it is due."""
        if not self.conn.answer_owed:
            self.leave_pool()
        if self.entry is not None and self.context.registry.finish(self.entry):
            log.info("Finished: %s", self.entry.name)

    def leave_pool(self) -> None:
        if self._pending:
            self._pending = False
            self.context.registry.pending.leave(self.source, self)

    def _close_with(self, reply: p.Reply) -> None:
        """Send the last ``reply``, end the session and close."""
        self.send(reply)
        self.finish()
        self.close_gracefully()

    def close_gracefully(self) -> None:
        """Close after our last bytes are sent, reading (and dropping) meanwhile."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._linger_timer is not None:
            return
        loop = asyncio.get_running_loop()
        if self._peer_eof:
            transport.close()  # sends what is buffered, then closes
            # A client that reads no more would hold that buffer, and the
            # connection, for ever (its slot is already free): cut it off.
            self._linger_timer = loop.call_later(self.config.send_timeout, transport.abort)
        elif transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # reset since we last read (ENOTCONN): nothing to wait for
                transport.abort()
                return
            transport.resume_reading()
            self._linger_timer = loop.call_later(_LINGER_SECONDS, transport.abort)
        else:
            transport.close()

    def abort(self) -> None:
        """End the session and drop the connection now, telling nothing."""
        if self.conn.state is not _CLOSED:
            self.conn.end()
        self.finish()
        if self.transport is not None:
            self.transport.abort()

    def _update_reading(self) -> None:
        """Read while replies flow; while busy, only up to a line's worth more.

        A client that resets while its request waits (for a hash, say) is then
        noticed at once and its slot freed, and what it pipelines stays bounded.
        """
        transport = self.transport
        state = self.conn.state
        if transport is None or transport.is_closing():
            return
        if state is _IDLE:
            want = not self.flow.paused
        elif state in _ENDED:
            return
        else:
            want = not self.flow.paused and (
                state not in _WAITING
                or (state is not _SENDING and self.conn.buffered < self.config.max_line)
            )
        if want and not transport.is_reading():
            transport.resume_reading()
        elif not want and transport.is_reading():
            transport.pause_reading()

    # -- shutdown -----------------------------------------------------------------------

    async def shut_down(self, grace: float) -> None:
        """Let a transfer in flight finish (up to ``grace`` s), then send ``ERR shutdown``."""
        self._stopping = True
        conn = self.conn
        if self._upgrading:
            conn.end()
            if self.transport is not None:
                self.transport.abort()  # mid-TLS handshake: nothing can be told
            return
        if conn.answer_owed:
            greeting.forget_answer(self)
        if conn.state is State.DROPPED:  # its notice, due later, is told now
            self._handle_timer(float("inf"))
            return
        task = self._task
        if task is not None:
            if conn.state is _SENDING:
                try:
                    async with asyncio.timeout(grace):
                        await asyncio.shield(task)
                except (TimeoutError, FiledockError, OSError):
                    pass
            if not task.done():
                task.cancel()
                if conn.state is _SENDING:
                    self.abort()  # a body cut short cannot be followed by a line
                    return
        if not self.closing:
            self._close_with(p.ErrorReply(p.ErrorCode.SHUTDOWN, "server is shutting down"))
        elif self.transport is not None and not self.transport.is_closing():
            self.close_gracefully()


_Handler = Callable[[Session, Any], bytes | None]

# What the loop does with each event of the conversation: the commands, the
# greeting, the lines it refuses, the end of input. NEED_DATA and PAUSED are
# not here: they end a batch.
_EVENT_HANDLERS: dict[type, _Handler] = {
    **HANDLERS,
    p.Hello: greeting.hello,
    Violation: Session._violation,
    EndOfInput: Session._end_of_input,
    BlankLine: lambda _, __: None,  # a person pressing Enter gets no answer
}
