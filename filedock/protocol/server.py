"""The server's side of one conversation, with no I/O: :class:`ServerConnection`.

It owns what the conversation allows (see :mod:`.state`): the handshake, one
command that waits at a time, the file body that follows a ``FILE`` header,
the end. Bytes go in with :meth:`~ServerConnection.receive_data` (``b""`` is
the client's EOF); :meth:`~ServerConnection.next_event` returns a request, the
greeting (:class:`Hello` or :class:`Exit`), a :class:`Violation`,
:data:`BLANK_LINE`, :data:`END_OF_INPUT`, or the sentinels :data:`NEED_DATA` (no complete line
yet) and :data:`PAUSED` (a command that waits is running, or the conversation
is not reading lines now: as h11 pauses on a pipelined request). Replies go out
through :meth:`~ServerConnection.send`, which checks the table.

An upload's body: once :meth:`~ServerConnection.ready` sent ``READY``, the
next ``size - offset`` bytes are no lines but :class:`BodyData` events, then
:data:`END_OF_BODY` (the command that waits goes on: its ``STORED`` or
``ERR`` is due); lines pipelined behind the body are read after it.

Its deadlines (the handshake, idleness, the delayed answer to a token, the
delayed notice to a connection dropped for a newcomer) are read with
:meth:`~ServerConnection.get_timer` and fired with
:meth:`~ServerConnection.handle_timer`, as aioquic does: time is an argument,
so every rule about time is tested with a fake clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from ..errors import LineTooLong, ProtocolError, RequestError
from .codes import CLOSING_CODES, ErrorCode
from .framing import LineReader, decode_line
from .messages import (
    _LINE_REQUESTS,
    ByeReply,
    CommandRequest,
    DigestReply,
    ErrorReply,
    Exit,
    FileReply,
    FullReply,
    Hello,
    NameReply,
    PartReply,
    ReadyReply,
    Reply,
    WelcomeReply,
    encode_reply,
    parse_greeting,
    parse_request,
)
from .proxy_header import V2_SIGNATURE, sniff_proxy_header
from .state import READING_STATES, TRANSITIONS, State, StateError, Step


class _Sentinel:
    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA: Final = _Sentinel("NEED_DATA")
PAUSED: Final = _Sentinel("PAUSED")


@dataclass(frozen=True, slots=True)
class EndOfInput:
    """The client sent EOF and every complete line before it has been taken."""


END_OF_INPUT: Final = EndOfInput()


@dataclass(frozen=True, slots=True)
class BlankLine:
    """A greeted client's empty line: it gets no answer, but it is a line (not idleness)."""


BLANK_LINE: Final = BlankLine()


@dataclass(frozen=True, slots=True)
class Violation:
    """A line the conversation refuses: answer ``reply``; ``kind`` names it for
    the log (``None``: a plain bad request, nothing worth a warning)."""

    reply: ErrorReply
    kind: str | None
    what: str
    last: bool = False  # the connection closes after it, whatever its code

    @property
    def closes(self) -> bool:
        return self.last or self.reply.code in CLOSING_CODES


@dataclass(frozen=True, slots=True)
class Deadline:
    """A deadline passed: write ``data`` (the last reply) and close, or, when
    it is ``None`` (no line can be sent yet: mid-TLS), abort."""

    what: str  # "handshake", "idle" or "notice"
    data: bytes | None


@dataclass(frozen=True, slots=True)
class AnswerDue:
    """The delayed answer to a token is due: ``WELCOME`` (or ``FULL``) if it was
    right, ``ERR unauthorized`` if not. Also due after the connection is gone:
    its place in the pending pool is held until then."""

    right: bool


@dataclass(frozen=True, slots=True)
class BodyData:
    """Bytes of an upload's body, in order. ``data`` may be a view of what was
    given to :meth:`ServerConnection.receive_data`: a driver that lends one
    buffer to every connection takes (copies) it before its next read."""

    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class BodyEnd:
    """The upload's last body byte was taken: its answer is due."""


END_OF_BODY: Final = BodyEnd()


Event = (
    CommandRequest
    | Hello
    | Exit
    | Violation
    | EndOfInput
    | BlankLine
    | BodyData
    | BodyEnd
    | _Sentinel
)

_HANDSHAKE_TIMEOUT_TEXT = "no HELLO within the handshake timeout"
# A load balancer's PROXY header sent to a server not told to expect one: the
# balancer is misconfigured, or someone tries to pass for another address.
# Not a line to answer and go on after (a v2 header is binary), so it closes.
_UNEXPECTED_PROXY_HEADER = Violation(
    ErrorReply(ErrorCode.HANDSHAKE, "PROXY protocol header not expected"),
    "Protocol error",
    "a PROXY protocol header where none is expected (see --proxy-protocol)",
    last=True,
)
_DROPPED_TEXT = "dropped for a newer connection: no HELLO in time"

# Looking an Enum member up on its class costs a descriptor call; the paths
# taken for every batch compare with these instead.
_ACCEPTED, _NAMED, _IDLE, _DROPPED = State.ACCEPTED, State.NAMED, State.IDLE, State.DROPPED
_NAME, _ANSWER, _CLOSE = Step.NAME, Step.ANSWER, Step.CLOSE
_TRAILING, _TRAILER, _BODY = State.TRAILING, Step.TRAILER, Step.BODY
_RECEIVING, _READY = State.RECEIVING, Step.READY
# The fast path's one lookup, bound here: a method of an imported name is
# looked up as an attribute (a new bound method) at every call.
_line_request = _LINE_REQUESTS.get
_INPUT_DROPPED = frozenset({State.CLOSING, State.CLOSED, State.DROPPED})

# The replies that move the conversation (see state.TRANSITIONS); any other
# reply keeps the state it is sent in (Step.ANSWER).
_REPLY_STEPS: dict[type[Reply], Step] = {
    NameReply: Step.NAME,
    WelcomeReply: Step.WELCOME,
    FullReply: Step.CLOSE,
    ByeReply: Step.CLOSE,
    FileReply: Step.BODY,
    PartReply: Step.BODY,
    DigestReply: Step.TRAILER,
    ReadyReply: Step.READY,  # only through ready(), which knows the body's length
}


def _too_long(exc: LineTooLong) -> Violation:
    return Violation(ErrorReply(exc.code, str(exc)), "Protocol error", "line too long")


def _malformed(exc: ProtocolError) -> Violation:
    return Violation(ErrorReply(exc.code, str(exc)), "Protocol error", str(exc))


class ServerConnection:
    """The server's side of one connection's conversation.

    ``now`` is the time it was accepted (any clock, the same for every call);
    ``idle_timeout`` 0 means no idle deadline.
    """

    # Ten thousand connections are ten thousand of these.
    __slots__ = (
        "state",
        "handshake_timeout",
        "idle_timeout",
        "_reader",
        "_eof",
        "_handshake_deadline",
        "heard_at",
        "_right",
        "answer_owed",
        "_answer_at",
        "_notice_at",
        "_named",
        "_opened",
        "protocol",
        "_trailer_due",
        "_body",
        "_body_left",
    )

    def __init__(
        self, *, now: float, max_line: int, handshake_timeout: float, idle_timeout: float = 0.0
    ) -> None:
        self.state = _ACCEPTED
        self.handshake_timeout = handshake_timeout
        self.idle_timeout = idle_timeout
        self._reader = LineReader(max_line)
        self._eof = False
        # Fixed at accept: lines before HELLO do not push it back.
        self._handshake_deadline = now + handshake_timeout
        # When the client last sent a line: the driver sets it once per batch
        # that brought one (an attribute, not a call, on the path of every batch).
        self.heard_at = now
        self._right = False
        # A token's answer is held, even for a connection already gone (read
        # at every end of a connection: an attribute, not a property).
        self.answer_owed = False
        self._answer_at: float | None = None
        self._notice_at: float | None = None
        self._named = False
        # The first bytes were looked at (a PROXY header where none is expected?).
        self._opened = False
        # The version the greeting asked for (1 until it comes): the WELCOME and
        # the replies after it speak it.
        self.protocol = 1
        # The FILE header in hand had no digest: its body ends with a trailer.
        self._trailer_due = False
        # An upload's body (RECEIVING): received and not handed out yet, and
        # the bytes of it still to come.
        self._body: bytes | memoryview = b""
        self._body_left = 0

    # -- input ----------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> bool:
        """Take bytes from the client; ``b""`` is its EOF. Once the conversation
        is over they are dropped, and this says False."""
        state = self.state
        if state is not _IDLE:
            if state in _INPUT_DROPPED:
                return False
            if state is _RECEIVING and data:
                self._receive_body(data)
                return True
        if data:
            self._reader.receive_data(data)
        else:
            self._eof = True
        return True

    def _receive_body(self, data: bytes | bytearray | memoryview) -> None:
        view = memoryview(data)
        body = view[: self._body_left]
        self._body_left -= len(body)
        # Rare: more bytes came before the last ones were taken (copied then,
        # as the view's buffer may be lent again).
        self._body = bytes(self._body) + bytes(body) if self._body else body
        if len(view) > len(body):  # lines pipelined behind the body
            self._reader.receive_data(view[len(body) :])

    def next_event(self) -> Event:
        """The next thing the client said, or ``NEED_DATA`` / ``PAUSED``."""
        if self.state is not _IDLE:
            return self._next_event_not_idle()
        try:
            line = self._reader.next_line()
        except LineTooLong as exc:
            return _too_long(exc)
        if line is None:
            return END_OF_INPUT if self._eof else NEED_DATA
        # The fast path: one dictionary lookup answers a PING.
        request = _line_request(line)
        if request is not None:
            return request
        try:
            text = decode_line(line)
            return parse_request(text) if text else BLANK_LINE
        except ProtocolError as exc:
            return _malformed(exc)
        except RequestError as exc:
            return Violation(ErrorReply(exc.code, exc.text), None, exc.text)

    def _next_event_not_idle(self) -> Event:
        if self.state is _RECEIVING:
            return self._next_body_event()
        if self.state not in READING_STATES:
            return PAUSED
        # NAMED: only HELLO and EXIT count before the greeting.
        if not self._opened:
            opening = sniff_proxy_header(self._reader.peek(len(V2_SIGNATURE)))
            if opening is None and not self._eof:
                return NEED_DATA  # a signature's first bytes: wait for the rest
            self._opened = True
            if opening:
                return _UNEXPECTED_PROXY_HEADER
        text = ""
        while not text:
            try:
                line = self._reader.next_line()
                if line is None:
                    return END_OF_INPUT if self._eof else NEED_DATA
                text = decode_line(line)
            except LineTooLong as exc:
                return _too_long(exc)
            except ProtocolError as exc:
                return _malformed(exc)
        greeting = parse_greeting(text)
        if isinstance(greeting, Hello):
            self.protocol = greeting.protocol
        if greeting is not None:
            return greeting
        return Violation(
            ErrorReply(ErrorCode.HANDSHAKE, "say HELLO first"),
            "Handshake error",
            "a command before HELLO",
        )

    def _next_body_event(self) -> Event:
        if self._body:
            data, self._body = self._body, b""
            return BodyData(data)
        if self._body_left == 0:
            self._move(Step.BODY_RECEIVED)
            return END_OF_BODY
        return END_OF_INPUT if self._eof else NEED_DATA

    @property
    def body_left(self) -> int:
        """Bytes of the upload's body not received yet (0 outside one)."""
        return self._body_left

    @property
    def buffered(self) -> int:
        """Bytes received and not yet taken as lines."""
        return self._reader.buffered

    # -- output and the steps the server takes ----------------------------------

    def send(self, reply: Reply) -> bytes:
        """The bytes of ``reply``, after checking the state allows it (StateError if not)."""
        step = _REPLY_STEPS.get(type(reply))
        if step is None:
            closes = isinstance(reply, ErrorReply) and reply.code in CLOSING_CODES
            step = _CLOSE if closes else _ANSWER
            if step is _ANSWER and self.state is _TRAILING and isinstance(reply, ErrorReply):
                step = _TRAILER  # ERR changed (or internal) in the DIGEST's place
        elif step is _BODY and isinstance(reply, FileReply) and reply.sha256 is None:
            self._check_unhashed()
            self._trailer_due = True
        elif step is _READY:
            raise ValueError("READY goes out through ready(), which knows the body's length")
        self._move(step)
        if step is _NAME:
            self._named = True
        return encode_reply(reply)

    def send_last(self, reply: ErrorReply) -> bytes:
        """The bytes of ``reply``, the conversation's last whatever its code (a
        :class:`Violation` that closes)."""
        self._move(_CLOSE)
        return encode_reply(reply)

    def _check_unhashed(self) -> None:
        # A v1 client never sees a FILE header without its digest.
        if self.protocol < 2:
            raise StateError(self.state, Step.BODY)

    def ready(self, reply: ReadyReply, size: int) -> bytes:
        """The bytes of ``READY``: the next ``size - reply.offset`` bytes the
        client sends are the upload's body (those already received after the
        ``PUT`` line among them)."""
        length = size - reply.offset
        if length < 0:
            raise ValueError(f"READY at {reply.offset} is past the end of {size} bytes")
        self._move(_READY)
        self._body = b""
        self._body_left = length
        pipelined = self._reader.take_rest()
        if pipelined:
            self._receive_body(pipelined)
        return encode_reply(reply)

    def answer(self, data: bytes) -> bytes:
        """``data``, a reply already encoded that keeps the state (STATUS from its
        cache), after checking the state allows a reply (StateError if not)."""
        self._move(_ANSWER)
        return data

    def start(self) -> None:
        """A command that waits begins: the lines after it wait (PAUSED)."""
        self._move(Step.START)

    def body_sent(self) -> None:
        """The file body announced by the last ``FILE`` header is out (its
        ``DIGEST`` is due next if that header had none)."""
        if self._trailer_due:
            self._trailer_due = False
            self._move(Step.UNHASHED_BODY_SENT)
        else:
            self._move(Step.BODY_SENT)

    def done(self, now: float) -> None:
        """The command that waited has answered; idleness counts from ``now``."""
        self._move(Step.DONE)
        self.heard_at = now

    def authorize(self, right: bool) -> None:
        """Hold the answer to a token (``right`` or not) until :meth:`answer_at`."""
        self._move(Step.AUTHORIZE)
        self._right = right
        self.answer_owed = True

    def hold(self) -> None:
        """Hold the answer to HELLO until the registry says whether a slot is
        granted (a round trip away): the lines after it wait, as after a token."""
        self._move(Step.HOLD)

    def answer_at(self, when: float) -> None:
        """The held answer is due at ``when`` (once its turn among its source's came)."""
        self._answer_at = when

    def drop_answer(self) -> None:
        """Forget the held answer (the server shuts down)."""
        self.answer_owed = False
        self._answer_at = None

    def may_be_dropped(self) -> bool:
        """Whether a newcomer may take its place: no HELLO answered or held, no end."""
        return self.state is _ACCEPTED or self.state is _NAMED

    def drop(self, notice_at: float) -> None:
        """Its place went to a newcomer: it is told so at ``notice_at``."""
        self._move(Step.DROP)
        self._notice_at = notice_at

    def end(self) -> None:
        """End without a (further) reply: an abort, an EOF, a body cut short."""
        self._move(Step.END)

    def connection_lost(self) -> None:
        self._move(Step.LOST)

    def _move(self, step: Step) -> None:
        try:  # state.next_state, inlined: several steps a connection
            self.state = TRANSITIONS[self.state][step]
        except KeyError:
            raise StateError(self.state, step) from None

    # -- deadlines ---------------------------------------------------------------

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` has something to do next, or ``None``."""
        state = self.state
        if state is _IDLE or state is _RECEIVING:  # (an upload's body: bytes, not lines)
            return self.heard_at + self.idle_timeout if self.idle_timeout > 0 else None
        if state is _ACCEPTED or state is _NAMED:
            return self._handshake_deadline
        if self.answer_owed:
            return self._answer_at  # None while it waits for its turn
        if state is _DROPPED:
            return self._notice_at
        return None

    def handle_timer(self, now: float) -> Deadline | AnswerDue | None:
        """What the deadline due at ``now`` requires, if one is (else ``None``)."""
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return None
        state = self.state
        if state is _IDLE:
            idle = self.idle_timeout
            reply = ErrorReply(
                ErrorCode.TIMEOUT, f"disconnected for being idle: no request in {idle:g} s"
            )
            return Deadline("idle", self.send(reply))
        if state is _RECEIVING:
            idle = self.idle_timeout
            reply = ErrorReply(
                ErrorCode.TIMEOUT, f"disconnected for being idle: no upload bytes in {idle:g} s"
            )
            return Deadline("idle", self.send(reply))
        if state is _NAMED:
            return Deadline(
                "handshake", self.send(ErrorReply(ErrorCode.TIMEOUT, _HANDSHAKE_TIMEOUT_TEXT))
            )
        if state is _ACCEPTED:  # in its TLS handshake: a line in clear would be garbage
            self.end()
            return Deadline("handshake", None)
        if self.answer_owed:
            self.answer_owed = False
            self._answer_at = None
            self.heard_at = now  # a WELCOME now: idleness counts from it
            return AnswerDue(self._right)
        # DROPPED: its notice is due; one that was never named (TLS) is told nothing.
        self._notice_at = None
        if not self._named:
            self.end()
            return Deadline("notice", None)
        return Deadline("notice", self.send(ErrorReply(ErrorCode.TIMEOUT, _DROPPED_TEXT)))
