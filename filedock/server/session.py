"""One client connection: admission, handshake, commands, and its end.

A :class:`Session` is an ``asyncio.BufferedProtocol``: the transport reads
into one buffer the server lends every session in turn, and ``buffer_updated``
feeds those bytes to the sans-IO line reader and answers every complete line
of the batch with one write. Commands that need to wait (listing the folder,
sending a file) run as a task; meanwhile the session takes no more lines, so
replies stay in request order, and reads only up to one line's worth more, so
a client that pipelines costs bounded memory and one that resets is noticed.

Admission (see :mod:`filedock.registry`): a new connection waits in the
pending pool, upgraded to TLS there when the server has TLS (no SSL object
exists before), and is named; it takes a slot at its ``WELCOME``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, cast

from .. import protocol as p
from ..errors import FiledockError, LineTooLong, ProtocolError, RequestError
from .auth import token_from_greeting
from .registry import ClientEntry, Refusal
from .repository import INLINE_STEPS, OpenedFile, Repository, WalkTooLong
from .transfer import TransferError, WriteFlow, send_body, unread_bytes

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("filedock.server")

# Replies are written once per batch, or sooner when a batch's replies pass
# this size, so the transport's flow control sees them early.
_FLUSH_SIZE = 64 * 1024

# After a session ends with an error the client may still be sending; reading
# (and dropping) for a moment lets our last line reach it before the close.
_LINGER_SECONDS = 2.0

_Handler = Callable[["Session", Any], bytes | None]

# A silent connection dropped for a newer one (see PendingPool.make_room)
# leaves the pending pool at once but is told only this much later: silent
# connections that reconnect when dropped then come back at most this often,
# each, instead of as fast as the server can drop them, so an honest client
# of the same source is not dropped before its HELLO arrives.
DROP_NOTICE_DELAY = 1.0

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


def _listing_reply(repository: Repository, cancelled: Callable[[], bool]) -> bytes:
    """The whole ``FILES`` reply, built in a worker: encoding 20,000 records
    takes tens of milliseconds, which on the event loop every client would wait."""
    files = repository.listing(cancelled)
    lines = [p.encode_reply(p.FilesReply(len(files)))]
    lines.extend(map(p.encode_file_info, files))
    return b"".join(lines)


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
        "server",
        "config",
        "entry",
        "address",
        "source",
        "number",
        "name",
        "greeted",
        "_hello_received",
        "_spoke",
        "transport",
        "_pending",
        "_upgrading",
        "_before_tls",
        "_early",
        "_upgrade",
        "_auth_hold",
        "_reader",
        "_flow",
        "_task",
        "_body_in_flight",
        "_closing",
        "_answer_later",
        "_stopping",
        "_warned",
        "_peer_eof",
        "_last_line",
        "_timer",
        "_stall_timer",
        "_linger_timer",
    )

    def __init__(self, server: Server) -> None:
        self.server = server
        self.config = server.config
        self.entry: ClientEntry | None = None  # from WELCOME on
        self.address = "?"
        self.source = "?"  # the address's group, for the per-source rules
        self.number = 0
        self.name: str | None = None  # from NAME on
        self.greeted = False
        self._hello_received = False  # from then on it is answered, never dropped for room
        self._spoke = False  # it sent a ClientHello: a client, not a silent socket
        self.transport: asyncio.Transport | None = None
        self._pending = False  # holds a place in the pending pool
        self._upgrading = False  # in the TLS handshake
        self._before_tls = False  # TLS is due but its layer does not read for us yet
        self._early: bytearray | None = None  # TLS bytes read before its layer was there
        self._upgrade: asyncio.Task[None] | None = None  # held: the loop keeps only a weak one
        self._auth_hold = False  # a token's delayed answer: the place is held until it is sent
        self._reader = p.LineReader(self.config.max_line)
        self._flow = WriteFlow()
        self._task: asyncio.Task[None] | None = None
        self._body_in_flight = False
        self._closing = False
        self._answer_later = False  # closing, with a last answer still to send
        self._stopping = False  # the server is shutting down: serve nothing new
        self._warned = False  # protocol errors are logged once per connection
        self._peer_eof = False
        self._last_line = 0.0
        self._timer: asyncio.TimerHandle | None = None  # handshake (or token delay), then idle
        self._stall_timer: asyncio.TimerHandle | None = None
        self._linger_timer: asyncio.TimerHandle | None = None

    # -- asyncio.BufferedProtocol -------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A cast, not an isinstance check: uvloop's transports implement
        # asyncio.Transport without deriving from it.
        transport = self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = format_address(peer)
        source = self.source = self.server.source_of(
            str(peer[0]) if isinstance(peer, tuple) else ""
        )
        registry = self.server.registry
        context = self.server.tls
        # Under TLS, FULL for lack of a slot waits until it can be sent encrypted.
        refusal = (None if context else registry.refusal(source)) or self._room_in_pool()
        if refusal is not None:
            self._turn_away(refusal, tell=context is None)
            return
        registry.pending.enter(source, self)
        self._pending = True
        self.server.sessions.add(self)
        self._last_line = time.monotonic()
        loop = asyncio.get_running_loop()
        self._timer = loop.call_later(self.config.handshake_timeout, self._handshake_expired)
        if context is None:
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
        pool = self.server.registry.pending
        victim = pool.make_room(self.source)
        if victim is not None:
            victim.drop_for_newcomer()
        return pool.refusal(self.source)

    def may_be_dropped(self) -> bool:
        """Whether a newcomer may take this connection's place (see PendingPool.make_room)."""
        return not (self._hello_received or self._closing)

    def has_spoken(self) -> bool:
        """Whether it did more than connect (see PendingPool.make_room): sent a
        ClientHello or a line, whether the loop has read it yet or not."""
        return self._spoke or unread_bytes(self.transport) > 0

    def drop_for_newcomer(self) -> None:
        """Give this silent connection's place in the pending pool to a newer one now;
        tell it after ``DROP_NOTICE_DELAY`` (see there)."""
        self.server.warn(
            "timeout",
            "Timeout: %s dropped for a newer connection: no HELLO yet",
            self.label(),
            source=self.source,
        )
        transport = self.transport
        assert transport is not None
        self._closing = True
        self._leave_pool()
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if len(self.server.notices_held) >= self.server.registry.pending.size:
            self._say_dropped()  # past the bound, nothing more is held
            return
        self.server.notices_held.add(self)
        self._answer_later = True
        if not self._upgrading:  # (the TLS layer reads for itself; it is told nothing)
            transport.pause_reading()
        self._timer = asyncio.get_running_loop().call_later(DROP_NOTICE_DELAY, self._say_dropped)

    def _say_dropped(self) -> None:
        self._timer = None
        self._answer_later = False
        self.server.notices_held.discard(self)
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.name is None and self.server.tls is not None:
            transport.abort()  # before or in its TLS handshake: a line in clear would be garbage
            return
        reply = p.ErrorReply(
            p.ErrorCode.TIMEOUT, "dropped for a newer connection: no HELLO in time"
        )
        transport.write(p.encode_reply(reply))
        transport.resume_reading()
        self._close_gracefully()

    def _turn_away(self, refusal: Refusal, *, tell: bool) -> None:
        """Refuse a connection on accept: ``FULL``, or (before TLS) a plain close."""
        assert self.transport is not None
        self.server.warn(
            "rejected", "Rejected %s: %s", self.address, refusal.summary, source=self.source
        )
        self._closing = True
        if not tell:
            self.transport.abort()  # a line in clear would be garbage to a TLS client
            return
        self.transport.write(p.encode_reply(p.FullReply(refusal.reason)))
        self.server.lingering.add(self)
        self._close_gracefully()

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
            if self._closing and self in self.server.notices_held:
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
        if self._closing:  # the handshake timeout or a shutdown came first
            upgraded.abort()
            return
        self._offer_name()
        self._process()  # lines a hasty client sent before its NAME

    def _offer_name(self) -> None:
        """``NAME`` (the number taken for good), or ``FULL`` when every slot is taken."""
        refusal = self.server.registry.refusal(self.source)
        if refusal is not None:  # under TLS: the slots filled during the TLS handshake
            self.server.warn(
                "rejected", "Rejected %s: %s", self.address, refusal.summary, source=self.source
            )
            self._close_with_reply(p.FullReply(refusal.reason))
            return
        self.number, self.name = self.server.registry.take_name()
        self._write(p.encode_reply(p.NameReply(self.name)))

    def get_buffer(self, sizehint: int) -> memoryview:
        # Shared, not one per connection: buffer_updated copies the bytes out
        # before anything else runs on the loop. A plain Protocol would have
        # asyncio allocate 256 KiB per read, which glibc may serve with an
        # mmap/munmap pair per read (tens of µs per request).
        return self.server.read_buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self.server.read_buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        if self._closing:
            return  # lingering: drop what the client still sends
        if self.name is None:
            self._receive_before_name(data)
            return
        self._reader.receive_data(data)
        self._process()

    def _receive_before_name(self, data: bytes | memoryview) -> None:
        if self._before_tls:
            self._keep_early(data)
        else:
            self._reader.receive_data(data)  # a TLS client that greets before NAME

    def _keep_early(self, data: bytes | memoryview) -> None:
        """Hold TLS bytes that came before the TLS layer (a ClientHello fits in 16 KiB),
        and set the layer up at the first of them."""
        early = self._early = self._early or bytearray()
        early += data
        if len(early) > _EARLY_TLS_LIMIT and self.transport is not None:
            self.transport.abort()
            return
        context = self.server.tls
        if self._upgrade is None and context is not None and self.transport is not None:
            self._spoke = True
            loop = asyncio.get_running_loop()
            self._upgrade = loop.create_task(self._start_tls(self.transport, context))

    def eof_received(self) -> bool:
        self._peer_eof = True
        if self._closing:
            return False  # our last line is out; let the transport close
        self._process()
        # Keep the transport open until the replies in hand are written; TLS
        # cannot half-close, so there the transport closes after them itself.
        return self.server.tls is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._closing = True
        self._flow.abort()
        for timer in (self._timer, self._stall_timer, self._linger_timer):
            if timer is not None:
                timer.cancel()
        task = self._task
        # A peer gone mid-body (seen by a read, now that the session reads while
        # busy): the body's own next send fails at once and logs what was cut
        # short. A token's delayed answer goes on: its place is held until it
        # is due. Anything else, our own abort included, is cancelled here.
        keep = self._auth_hold or (self._body_in_flight and exc)
        if task is not None and not task.done() and not keep:
            task.cancel()
        self._finish()
        self.server.session_closed(self)
        self.server.lingering.discard(self)
        self.server.notices_held.discard(self)

    def pause_writing(self) -> None:
        self._flow.pause()
        self._update_reading()
        if self._stall_timer is None and not self._closing:
            loop = asyncio.get_running_loop()
            self._stall_timer = loop.call_later(self.config.send_timeout, self._send_stalled)

    def resume_writing(self) -> None:
        self._flow.resume()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._update_reading()
        if not self._closing and self._task is None:
            self._process()

    # -- the line loop ------------------------------------------------------

    def _process(self) -> None:
        """Answer the complete lines in hand, until one needs to wait."""
        transport = self.transport
        assert transport is not None
        next_line, handle_line = self._reader.next_line, self._handle_line
        replies: list[bytes] = []
        size = 0
        got_line = False
        while not (self._closing or self._stopping or self._task is not None or self._flow.paused):
            try:
                line = next_line()
            except LineTooLong as exc:
                replies.append(p.encode_reply(p.ErrorReply(p.ErrorCode.LINE_TOO_LONG, str(exc))))
                self._protocol_violation("line too long")
                break
            if line is None:
                break
            got_line = True
            reply = handle_line(line)
            if reply:
                replies.append(reply)
                size += len(reply)
                if size >= _FLUSH_SIZE:
                    transport.write(b"".join(replies))
                    replies.clear()
                    size = 0
        if got_line:
            self._last_line = time.monotonic()
        if replies:
            transport.write(b"".join(replies))
        if self._closing:
            if not self._answer_later:
                self._close_gracefully()
        elif self._peer_eof and self._task is None and not self._flow.paused:
            # The client has finished sending; an unended last line is dropped.
            self._end_session()
            self._close_gracefully()
        else:
            self._update_reading()

    def _handle_line(self, line: bytes) -> bytes | None:
        try:
            if self.greeted:
                request = p.parse_request_line(line)
                if request is None:
                    return None  # a person pressing Enter gets no answer
                return _HANDLERS[type(request)](self, request)
            text = p.decode_line(line)
            return self._handle_greeting(text) if text else None
        except ProtocolError as exc:
            self._warn_once("Protocol error from %s: %s", self.label(), exc)
            return p.encode_reply(p.ErrorReply(exc.code, str(exc)))
        except RequestError as exc:
            return p.encode_reply(p.ErrorReply(exc.code, exc.text))
        except Exception:  # a bug: answer, log it, keep the server up
            log.exception("Internal error serving %s", self.label())
            return p.encode_reply(p.ErrorReply(p.ErrorCode.INTERNAL, "internal server error"))

    def _handle_greeting(self, text: str) -> bytes | None:
        greeting = p.parse_greeting(text)
        if isinstance(greeting, p.Hello):
            return self._hello(greeting)
        if isinstance(greeting, p.Exit):
            return self._bye()
        self._warn_once("Handshake error from %s: a command before HELLO", self.label())
        return p.encode_reply(p.ErrorReply(p.ErrorCode.HANDSHAKE, "say HELLO first"))

    def _hello(self, hello: p.Hello) -> bytes | None:
        """The end of the handshake: the token, then a slot (``WELCOME``) or ``FULL``."""
        self._hello_received = True
        if self.server.tokens is None:
            return self._welcome()
        token = token_from_greeting(hello.words)
        if token is None:
            # No guess at all: it reveals nothing, so it is answered at once and
            # counts as no failure.
            self.server.warn(
                "auth", "Unauthorized: %s gave no token", self.label(), source=self.source
            )
            self._end_session()
            return _UNAUTHORIZED
        self._cancel_timer()  # from now on it is answered by its delay, not timed out
        guard, tokens = self.server.auth_guard, self.server.tokens
        delay = guard.answer_delay(self.source)  # decided before the comparison
        right = tokens.accepts(token)
        turn: asyncio.Future[None] | None = None
        if not right:
            guard.failed(self.source)
            self.server.warn(
                "auth",
                "Unauthorized: %s gave no valid token (answer delayed %g s or more)",
                self.label(),
                delay,
                source=self.source,
            )  # never the token itself
            if not guard.try_start(self.source):
                turn = asyncio.get_running_loop().create_future()
                guard.queue(self.source, turn)
        self._start(self._authenticate(right, delay, turn))
        return None

    def _welcome(self) -> bytes:
        """A slot and ``WELCOME``, or ``FULL`` (and the end) if none is free now."""
        registry = self.server.registry
        assert self.name is not None
        outcome = registry.welcome(self.number, self.name, self.address, self.source)
        if isinstance(outcome, Refusal):  # the slots filled since our NAME
            self.server.warn(
                "rejected", "Rejected %s: %s", self.label(), outcome.summary, source=self.source
            )
            self._end_session()
            return p.encode_reply(p.FullReply(outcome.reason))
        self._leave_pool()
        self.entry = outcome
        self.greeted = True
        log.info("Connected: %s from %s", outcome.name, self.address)
        self._arm_idle_timer()
        return p.encode_reply(p.WelcomeReply(outcome.name, self.server.banner))

    async def _authenticate(
        self, right: bool, delay: float, turn: asyncio.Future[None] | None
    ) -> None:
        """Answer a compared token after ``delay``, right or wrong alike; a wrong one
        first waits for its ``turn`` among its source's (see AuthGuard). The place
        in the pending pool is held until the answer, even if the client leaves:
        neither hanging up nor probing the pool tells a guesser anything sooner."""
        self._auth_hold = True
        has_turn = not right and turn is None
        try:
            if turn is not None:
                try:
                    await turn
                finally:
                    has_turn = turn.done() and not turn.cancelled()
                    if not has_turn:
                        self.server.auth_guard.withdraw(self.source, turn)
            if delay > 0:
                await asyncio.sleep(delay)
        finally:
            self._auth_hold = False
            if self._closing:
                self._leave_pool()  # gone, or shut down: the place is free now
            if has_turn:
                self._pass_turn()
        self._answer_token(right)

    def _answer_token(self, right: bool) -> None:
        transport = self.transport
        if self._closing or transport is None or transport.is_closing():
            return
        if not right:
            self._end_session()
            transport.write(_UNAUTHORIZED)
            self._close_gracefully()
            return
        self.server.auth_guard.succeeded(self.source)
        transport.write(self._welcome())
        if self._closing:  # FULL: the slots filled meanwhile
            self._close_gracefully()

    def _pass_turn(self) -> None:
        """This answer is done: start the next one queued from the same source."""
        guard = self.server.auth_guard
        turn = guard.finish(self.source)
        while turn is not None and turn.done():  # its connection went meanwhile
            turn = guard.finish(self.source)
        if turn is not None:
            turn.set_result(None)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    # -- commands -------------------------------------------------------------

    def _ping(self, _: p.Ping) -> bytes:
        return p.PONG

    def _who(self, _: p.Who) -> bytes:
        return p.encode_reply(p.WhoReply(tuple(self.server.registry.connected_names())))

    def _uptime(self, _: p.Uptime) -> bytes:
        return p.encode_reply(p.UptimeReply(self.server.uptime()))

    def _about(self, _: p.About) -> bytes:
        return p.encode_reply(p.AboutReply(self.server.about))

    def _help(self, _: p.Help) -> bytes:
        return p.encode_reply(p.HelpReply(p.HELP_TEXT))

    def _status(self, _: p.Status) -> bytes:
        return self.server.status_reply()

    def _say(self, request: p.Say) -> bytes:
        return p.encode_reply(p.AckReply(request.text))

    def _message(self, request: p.Message) -> bytes | None:
        # A line that is no file is echoed at once. The lookup is cheap checks
        # first, then a walk on the loop only as long as a plain GET's; a
        # longer one goes to a worker.
        text = request.text
        try:
            opened = self._open_here(text)
        except RequestError:
            return p.encode_reply(p.AckReply(text))
        self._serve(text, opened, or_echo=True)
        return None

    def _get(self, request: p.Get) -> bytes | None:
        self._serve(request.path, self._open_here(request.path))  # a refusal raises: ERR
        return None

    def _open_here(self, path: str) -> OpenedFile | None:
        """``path`` opened on the loop, or None when its walk is long enough for a worker."""
        try:
            return self.server.repository.open(path, max_steps=INLINE_STEPS)
        except WalkTooLong:
            return None

    def _serve(self, path: str, opened: OpenedFile | None, *, or_echo: bool = False) -> None:
        if opened is None:
            self._start(self._send_file(path, or_echo=or_echo))
            return
        self._start(self._send_opened(opened))
        assert self._task is not None
        # Closed however the task ends, even cancelled before it ever ran.
        self._task.add_done_callback(lambda _: opened.close())

    def _list(self, _: p.ListFiles) -> None:
        self._start(self._send_listing())

    def _exit(self, _: p.Exit) -> bytes:
        return self._bye()

    def _bye(self) -> bytes:
        self._end_session()
        return p.BYE

    # -- commands that wait ---------------------------------------------------

    def _start(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` as this session's one task; lines after it wait."""
        self._task = asyncio.get_running_loop().create_task(work)
        self._task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._task = None
        self._last_line = time.monotonic()  # idleness counts from the end of the work
        if task.cancelled() or self._closing or self._stopping:
            return
        exc = task.exception()
        if exc is not None:
            log.error("Internal error serving %s", self.label(), exc_info=exc)
            self._abort()
            return
        self._process()

    async def _send_listing(self) -> None:
        workers, repository = self.server.workers, self.server.repository
        try:
            reply = await workers.metadata.run(_listing_reply, repository, workers.cancel.is_set)
        except RequestError as exc:
            self._write(p.encode_reply(p.ErrorReply(exc.code, exc.text)))
            return
        except OSError as exc:
            log.warning("Cannot list the repository for %s: %s", self.label(), exc.strerror)
            self._write(
                p.encode_reply(p.ErrorReply(p.ErrorCode.INTERNAL, "the folder cannot be read"))
            )
            return
        self._write(reply)

    async def _send_file(self, path: str, *, or_echo: bool = False) -> None:
        """Open ``path`` in a worker and send it; with ``or_echo``, echo the line if
        there is no such file."""
        try:
            opened = await self.server.workers.metadata.run(
                self.server.repository.open, path, abandoned=OpenedFile.close
            )
        except RequestError as exc:  # any OS error on a path is one of these
            if or_echo:
                self._write(p.encode_reply(p.AckReply(path)))
            else:
                self._write(p.encode_reply(p.ErrorReply(exc.code, exc.text)))
            return
        with opened:
            await self._send_opened(opened)

    async def _send_opened(self, opened: OpenedFile) -> None:
        path = opened.path
        try:
            digest = await self.server.repository.hashes.sha256(opened, self.source)
        except RequestError as exc:  # changed before the header: the connection goes on
            self._write(p.encode_reply(p.ErrorReply(exc.code, exc.text)))
            return
        except OSError as exc:
            log.warning("Cannot read %r for %s: %s", path, self.label(), exc.strerror)
            self._write(p.encode_reply(p.ErrorReply(p.ErrorCode.INTERNAL, "file cannot be read")))
            return
        assert self.transport is not None
        self._write(p.encode_reply(p.FileReply(opened.size, digest, path)))
        self._body_in_flight = True
        try:
            # Exactly the announced size goes out, so the stream stays in step
            # even if the file grew or changed meanwhile: the client checks the
            # digest, and changed bytes are never saved as the announced file.
            await send_body(self.transport, self._flow, opened, self.config.send_timeout)
        except TransferError as exc:  # shrank, or the client went away: cut
            self.server.warn(
                "transfer", "Transfer of %r to %s cut short: %s", path, self.label(), exc
            )
            self._abort()
            return
        finally:
            self._body_in_flight = False
        log.info("Sent file %r size=%d sha256=%s…", path, opened.size, digest[:12])

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self._closing:
            self.transport.write(data)

    # -- timers ---------------------------------------------------------------

    def _handshake_expired(self) -> None:
        self._timer = None
        if self._hello_received or self._closing:
            return
        self.server.warn(
            "timeout",
            "Timeout: %s did not greet within %g s",
            self.label(),
            self.config.handshake_timeout,
            source=self.source,
        )
        if self._upgrading:
            assert self.transport is not None
            self._closing = True
            self.transport.abort()  # mid-TLS: a line in clear would be garbage
            return
        self._close_with(p.ErrorCode.TIMEOUT, "no HELLO within the handshake timeout")

    def _arm_idle_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.config.idle_timeout > 0:
            loop = asyncio.get_running_loop()
            self._timer = loop.call_later(self.config.idle_timeout, self._idle_check)

    def _idle_check(self) -> None:
        # One timer per session, re-armed for the time left, instead of a new
        # timer for every line.
        self._timer = None
        if self._closing:
            return
        left = self._last_line + self.config.idle_timeout - time.monotonic()
        if self._task is not None or left > 0:
            # A transfer in progress is not idleness: look again later.
            delay = self.config.idle_timeout if self._task is not None else left
            self._timer = asyncio.get_running_loop().call_later(delay, self._idle_check)
            return
        idle = self.config.idle_timeout
        self.server.warn(
            "timeout", "Timeout: %s idle for %g s", self.label(), idle, source=self.source
        )
        self._close_with(
            p.ErrorCode.TIMEOUT, f"disconnected for being idle: no request in {idle:g} s"
        )

    def _send_stalled(self) -> None:
        self._stall_timer = None
        self.server.warn(
            "timeout",
            "Dropping %s: no write progress for %g s",
            self.label(),
            self.config.send_timeout,
            source=self.source,
        )
        self._abort()

    # -- ending -----------------------------------------------------------------

    def label(self) -> str:
        """``Client01 (127.0.0.1:49559)``, or the address before a name is given."""
        return f"{self.name} ({self.address})" if self.name else self.address

    def _protocol_violation(self, what: str) -> None:
        self._warn_once("Protocol error from %s: %s", self.label(), what)
        self._end_session()

    def _warn_once(self, message: str, *args: object) -> None:
        if not self._warned:
            self._warned = True
            self.server.warn("protocol", message, *args, source=self.source)

    def _end_session(self) -> None:
        """Free the slot and stamp FINISHED now; the close follows."""
        self._closing = True
        self._finish()

    def _finish(self) -> None:
        if not self._auth_hold:
            self._leave_pool()
        if self.entry is not None and self.server.registry.finish(self.entry):
            log.info("Finished: %s", self.entry.name)

    def _leave_pool(self) -> None:
        if self._pending:
            self._pending = False
            self.server.registry.pending.leave(self.source, self)

    def _close_with(self, code: str, text: str) -> None:
        """Send ``ERR code text``, end the session and close."""
        self._close_with_reply(p.ErrorReply(code, text))

    def _close_with_reply(self, reply: p.Reply) -> None:
        self._write(p.encode_reply(reply))
        self._end_session()
        self._close_gracefully()

    def _close_gracefully(self) -> None:
        """Close after our last bytes are sent, reading (and dropping) meanwhile."""
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self._linger_timer is not None:
            return
        if self._peer_eof:
            transport.close()  # sends what is buffered, then closes
            # A client that reads no more would hold that buffer, and the
            # connection, for ever (its slot is already free): cut it off.
            loop = asyncio.get_running_loop()
            self._linger_timer = loop.call_later(self.config.send_timeout, transport.abort)
        elif transport.can_write_eof():
            try:
                transport.write_eof()
            except OSError:  # reset since we last read (ENOTCONN): nothing to wait for
                transport.abort()
                return
            transport.resume_reading()
            loop = asyncio.get_running_loop()
            self._linger_timer = loop.call_later(_LINGER_SECONDS, transport.abort)
        else:
            transport.close()

    def _abort(self) -> None:
        self._end_session()
        if self.transport is not None:
            self.transport.abort()

    def _update_reading(self) -> None:
        """Read while replies flow; while busy, only up to a line's worth more.

        A client that resets while its request waits (for a hash, say) is then
        noticed at once and its slot freed, and what it pipelines stays bounded.
        """
        transport = self.transport
        if transport is None or transport.is_closing() or self._closing:
            return
        want = not self._flow.paused and (
            self._task is None
            or (not self._body_in_flight and self._reader.buffered < self.config.max_line)
        )
        if want and not transport.is_reading():
            transport.resume_reading()
        elif not want and transport.is_reading():
            transport.pause_reading()

    # -- shutdown ---------------------------------------------------------------

    async def shut_down(self, grace: float) -> None:
        """Let a transfer in flight finish (up to ``grace`` s), then send ``ERR shutdown``."""
        self._stopping = True
        if self._upgrading:
            self._closing = True
            if self.transport is not None:
                self.transport.abort()  # mid-TLS handshake: nothing can be told
            return
        task = self._task
        if task is not None:
            if self._body_in_flight:
                try:
                    async with asyncio.timeout(grace):
                        await asyncio.shield(task)
                except (TimeoutError, FiledockError, OSError):
                    pass
            if not task.done():
                task.cancel()
                if self._body_in_flight:
                    self._abort()  # a body cut short cannot be followed by a line
                    return
        if not self._closing:
            self._close_with(p.ErrorCode.SHUTDOWN, "server is shutting down")
        elif self in self.server.notices_held:
            # Dropped for a newcomer, its notice held: say it now, since the
            # close that follows would leave nothing for the notice to write to.
            self._cancel_timer()
            self._say_dropped()
        elif self.transport is not None and not self.transport.is_closing():
            self._close_gracefully()


_UNAUTHORIZED = p.encode_reply(
    p.ErrorReply(p.ErrorCode.UNAUTHORIZED, "a valid access token is required")
)

# One handler per entry of protocol.COMMANDS (a test checks they match).
_HANDLERS: dict[type[p.CommandRequest], _Handler] = {
    p.Ping: Session._ping,
    p.Who: Session._who,
    p.Uptime: Session._uptime,
    p.About: Session._about,
    p.Help: Session._help,
    p.Status: Session._status,
    p.Say: Session._say,
    p.Message: Session._message,
    p.Get: Session._get,
    p.ListFiles: Session._list,
    p.Exit: Session._exit,
}
