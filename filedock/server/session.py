"""One client connection: the asyncio driver of one ServerConnection.

The conversation's rules (the handshake, one command that waits at a time,
the body after a ``FILE`` header, the deadlines) live in
:class:`~filedock.protocol.server.ServerConnection`; a :class:`Session` feeds
it the transport's bytes, answers its events (the handlers are in
:mod:`.commands`, the greeting in :mod:`.greeting`), writes the replies of a
batch at once, and keeps one ``call_later`` armed for its next deadline. What
is a fact about the transport stays here: flow control and a stalled reader.
Admission to the pending pool is in :mod:`.admission`, the TLS layer set up at
the first byte in :mod:`.tls_upgrade`, what answers each event in
:mod:`.events`, and the end (a deadline passed, the linger before the close,
the server's shutdown) in :mod:`.ending`.

A :class:`Session` is an ``asyncio.BufferedProtocol``: the transport reads
into one buffer the server lends every session in turn. While a command waits
the session reads only up to one line's worth more, so a client that
pipelines costs bounded memory and one that resets is noticed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, cast

from .. import protocol as p
from ..protocol.server import NEED_DATA, PAUSED, AnswerDue, Deadline, ServerConnection
from ..protocol.state import State
from . import admission, client_log, ending, greeting, proxied
from .activity import Activity
from .context import ServerContext
from .events import EVENT_HANDLERS, answer_failure
from .registry import ClientEntry
from .tls_upgrade import TlsUpgrade
from .transfer import WriteFlow

if TYPE_CHECKING:
    from .uploads import Upload

log = logging.getLogger("filedock.server")

# Replies are written once per batch, or sooner when a batch's replies pass
# this size, so the transport's flow control sees them early.
_FLUSH_SIZE = 64 * 1024

# The conversation is over (or about to be told so): input is dropped.
_ENDED = frozenset({State.DROPPED, State.CLOSING, State.CLOSED})
# A command (or a token's answer) is pending: the lines after it wait.
_WAITING = frozenset({State.BUSY, State.SENDING, State.TRAILING, State.AUTHORIZING})

# Looking an Enum member up on its class costs a descriptor call: the paths
# taken for every batch compare with these instead.
_IDLE, _BUSY, _SENDING = State.IDLE, State.BUSY, State.SENDING
_RECEIVING = State.RECEIVING
_CLOSING, _CLOSED = State.CLOSING, State.CLOSED


class Session(asyncio.BufferedProtocol):
    """The server side of one connection."""

    # Ten thousand connections are ten thousand of these: no per-instance dict.
    __slots__ = (
        # The driver's own: the conversation, the transport, the task, the timers.
        *("context", "config", "conn", "transport", "flow", "task", "stopping", "peer_eof"),
        *("_timer", "_timer_at", "_stall_timer", "linger_timer", "warned", "stats"),
        # Who the client is, and its way through admission and the greeting.
        *("address", "source", "number", "name", "entry", "turn", "has_turn"),
        *("pending", "spoke", "upgrade", "naming"),
        # An upload's body being received, and whether the token may upload.
        *("upload", "may_write"),
        "activity",  # what the one task is doing now, for those who watch
        "end_reason",  # why the session ended, for its Finished line
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
        self.spoke = False  # it sent a ClientHello: a client, not a silent socket
        self.pending = False  # holds a place in the pending pool
        self.naming = False  # its NAME is awaited from the registry (a round trip)
        self.upgrade: TlsUpgrade | None = None  # until the TLS handshake ends
        self.upload: Upload | None = None  # from READY to the upload's end
        self.may_write = True  # a token without the write right makes it False
        self.task: asyncio.Task[None] | None = None
        self.activity: Activity | None = None  # while the task runs (see activity.py)
        self.stopping = False  # the server is shutting down: serve nothing new
        self.warned = False  # protocol errors are logged once per connection
        self.stats = context.stats  # the server's counters (see process)
        self.peer_eof = False
        self._timer: asyncio.TimerHandle | None = None  # the conversation's next deadline
        self._timer_at = 0.0
        self._stall_timer: asyncio.TimerHandle | None = None
        self.linger_timer: asyncio.TimerHandle | None = None
        self.end_reason: str | None = None  # the first cause wins (see finish)

    @property
    def closing(self) -> bool:
        """Whether the conversation is over, or its end is being told."""
        return self.conn.state in _ENDED

    # -- admission ----------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports implement
        # asyncio.Transport without deriving from it.
        self.transport = cast(asyncio.Transport, transport)
        if self.config.proxy_protocol:
            proxied.read_header(self)  # admitted once its PROXY header names the client
            return
        self.admit()

    def admit(self, peer: tuple[str, int] | None = None) -> None:
        """Enter the pending pool as ``peer`` (the transport's own when ``None``), then
        NAME, or TLS first; or be turned away."""
        if not admission.admit(self, peer):
            return
        self.arm()
        if self.context.tls is None:
            admission.offer_name(self)
        else:
            self.upgrade = TlsUpgrade(self)

    # The pending pool's questions, and leaving it (see admission.py).
    may_be_dropped = admission.may_be_dropped
    has_spoken = admission.has_spoken
    leave_pool = admission.leave_pool

    # -- asyncio.BufferedProtocol -------------------------------------------------

    def get_buffer(self, sizehint: int) -> memoryview:
        # Shared, not one per connection: buffer_updated copies the bytes out
        # before anything else runs on the loop. A plain Protocol would have
        # asyncio allocate 256 KiB per read, which glibc may serve with an
        # mmap/munmap pair per read (tens of µs per request).
        if self.conn.state is _RECEIVING:
            return self.context.body_buffer  # an upload's body: reads of 1 MiB, not 64 KiB
        return self.context.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        # (The same buffer get_buffer lent: nothing runs between the two calls.)
        if self.conn.state is _RECEIVING:
            self.data_received(self.context.body_buffer[:nbytes])
            return
        self.data_received(self.context.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self.upgrade is not None and self.upgrade.before_layer:
            if not self.closing:
                self.upgrade.keep(data)
            return
        if self.conn.receive_data(data):  # (lingering: what the client still sends is dropped)
            self.process()

    def eof_received(self) -> bool:
        self.peer_eof = True
        if self.closing:
            return False  # our last line is out; let the transport close
        self.conn.receive_data(b"")
        self.process()
        # Keep the transport open until the replies in hand are written; TLS
        # cannot half-close, so there the transport closes after them itself.
        return self.context.tls is None

    def connection_lost(self, exc: Exception | None) -> None:
        conn = self.conn
        sending = conn.state is _SENDING
        if conn.state is not _CLOSED:
            conn.connection_lost()
        self.flow.abort()
        for timer in (self._stall_timer, self.linger_timer):
            if timer is not None:
                timer.cancel()
        if not conn.answer_owed:  # a token's answer stays due: its place is held till then
            self._cancel_timer()
        task = self.task
        # A peer gone mid-body (seen by a read, now that the session reads while
        # busy): the body's own next send fails at once and logs what was cut
        # short. An upload's body cut short ends its task itself, keeping what
        # came. Anything else, our own abort included, is cancelled here.
        upload = self.upload
        if upload is not None and upload.ends_by_itself:
            upload.lost("the connection was lost")  # (if the client's EOF did not say so)
        elif task is not None and not task.done() and not (sending and exc):
            task.cancel()
        self.finish("reset" if exc is not None else "closed")
        context = self.context
        context.session_closed(self)
        context.lingering.discard(self)
        context.notices_held.discard(self)

    def pause_writing(self) -> None:
        self.flow.pause()
        self.update_reading()
        if self._stall_timer is None and not self.closing:
            loop = asyncio.get_running_loop()
            self._stall_timer = loop.call_later(self.config.send_timeout, self._send_stalled)

    def resume_writing(self) -> None:
        self.flow.resume()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self.update_reading()
        if not self.closing and self.task is None:
            self.process()

    # -- the line loop --------------------------------------------------------------

    def process(self) -> None:
        """Answer the events in hand, until one needs to wait."""
        transport = self.transport
        assert transport is not None
        conn, flow = self.conn, self.flow
        next_event, handlers = conn.next_event, EVENT_HANDLERS
        state = conn.state
        replies: list[bytes] = []
        size = 0
        heard = 0  # events answered: the statistics' lines (a PING costs this add, no more)
        # An upload's body is taken even while replies wait: its bytes may be
        # in the buffer every session reads into.
        while not flow.paused or conn.state is _RECEIVING:
            event = next_event()
            if event is NEED_DATA or event is PAUSED:  # (PAUSED: a command waits)
                break
            heard += 1
            try:
                reply = handlers[type(event)](self, event)
            except Exception as exc:  # a refused request, or a bug: answered, the server stays up
                reply = answer_failure(self, exc, event)
            if reply:
                replies.append(reply)
                size += len(reply)
                if size >= _FLUSH_SIZE:
                    transport.write(b"".join(replies))
                    replies.clear()
                    size = 0
        if heard:
            conn.heard_at = time.monotonic()
            self.stats.lines += heard
        if replies:
            transport.write(b"".join(replies))
        if conn.state is not state:  # (a timer that fires re-arms itself)
            self.arm()
        if conn.state is _CLOSING:
            self.close_gracefully()
        else:
            self.update_reading()

    # -- the one task -----------------------------------------------------------------

    def start(
        self, work: Coroutine[Any, Any, None], activity: Activity | None = None
    ) -> asyncio.Task[None]:
        """Run ``work`` as this session's one task, doing ``activity``; lines after it wait."""
        self.conn.start()
        self.activity = activity
        task = self.task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self.task = None
        self.activity = None
        if self.conn.state is _BUSY:
            self.conn.done(time.monotonic())  # idleness counts from the end of the work
            self.arm()
        if task.cancelled() or self.closing or self.stopping:
            return
        exc = task.exception()
        if exc is not None:
            log.error("Internal error serving %s", self.label(), exc_info=exc)
            self.abort("error")
            return
        self.process()

    def send(self, reply: p.Reply, follow: bytes = b"") -> None:
        """Write ``reply`` (and the records that ``follow`` it) unless the conversation is over."""
        if self.transport is not None and not self.closing:
            self.transport.write(self.conn.send(reply) + follow)

    # -- deadlines ----------------------------------------------------------------------

    def answer_after(self, delay: float) -> None:
        """The held answer to a token is due in ``delay`` seconds."""
        self.conn.answer_at(time.monotonic() + delay)
        self.arm()

    def arm(self) -> None:
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
        self.handle_timer(time.monotonic())

    def handle_timer(self, now: float) -> None:
        event = self.conn.handle_timer(now)
        if isinstance(event, Deadline):
            ending.deadline_passed(self, event)
        elif isinstance(event, AnswerDue):
            greeting.answer_due(self, event.right)
            if not self.closing and self.transport is not None:
                self.process()  # lines sent while the answer was held
        self.arm()

    def _send_stalled(self) -> None:
        self._stall_timer = None
        self.stats.timeouts["send"] += 1
        self.context.warn(
            "timeout",
            "Dropping %s: no write progress for %g s",
            self.label(),
            self.config.send_timeout,
            source=self.source,
        )
        self.abort("send-timeout")

    # -- ending -------------------------------------------------------------------------

    def label(self) -> str:
        """``Client01 (127.0.0.1:49559)``, or the address before a name is given."""
        return f"{self.name} ({self.address})" if self.name else self.address

    def finish(self, reason: str | None = None) -> None:
        """Free the slot and stamp FINISHED now (the close follows); a token's held
        answer keeps the place in the pending pool until it is due. ``reason``
        (``exit``, ``eof``, ``idle-timeout``, …) is why, unless one was given first."""
        if self.end_reason is None:
            self.end_reason = reason
        if not self.conn.answer_owed:
            self.leave_pool()
        if self.entry is not None and self.context.registry.finish(self.entry):
            client_log.finished(self.entry, self.end_reason or "closed")

    # Told and lingered over in ending.py; other modules end a session through these.
    close_with = ending.close_with
    close_gracefully = ending.close_gracefully
    shut_down = ending.shut_down

    def abort(self, reason: str = "error") -> None:
        """End the session and drop the connection now, telling nothing."""
        if self.conn.state is not _CLOSED:
            self.conn.end()
        self.finish(reason)
        if self.transport is not None:
            self.transport.abort()

    def update_reading(self) -> None:
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
        elif state is _RECEIVING:
            want = self.upload is None or not self.upload.behind  # the disk keeps up
        else:
            want = not self.flow.paused and (
                state not in _WAITING
                or (state is not _SENDING and self.conn.buffered < self.config.max_line)
            )
        if want and not transport.is_reading():
            transport.resume_reading()
        elif not want and transport.is_reading():
            transport.pause_reading()
