"""The client's side of the conversation, sans-IO: :class:`ClientConnection`.

Bytes from the server go in with :meth:`~ClientConnection.receive_data`
(``b""`` is the end of the stream) and come out of
:meth:`~ClientConnection.next_event` as events: a reply (the classes of
:mod:`.messages`), then, for a reply that announced them, its records
(:class:`~.messages.ClientRecord`, :class:`~.messages.FileInfo`) or its body
(:class:`BodyData`) and an :class:`EndOfReply`; or :data:`NEED_DATA`.
Requests go out as bytes from :meth:`~ClientConnection.send`.

The connection owns what the replies mean for what follows them: the
handshake (``NAME``, then ``HELLO``, then ``WELCOME``; ``FULL`` instead),
``STATUS n``, ``STATS n`` and ``FILES n`` (n records follow), ``FILE size …`` (exactly
size bytes follow; after them a ``DIGEST`` line when the header had none),
``PART offset size …`` (size - offset bytes follow), ``READY offset``
after a ``PUT`` (the client writes size - offset bytes itself, says so with
:meth:`~ClientConnection.send_body_done`, and ``STORED`` or ``ERR`` follows),
which replies answer which request (:data:`ANSWERS`:
another is the server out of step), and which ``ERR`` codes end the
conversation (:data:`~.codes.CLOSING_CODES`). Its :attr:`~ClientConnection.state` says
whether the stream is still in step: a driver that leaves a command in any
state but :attr:`ClientState.IDLE` has to close the connection.

The states and what moves between them::

    AWAIT_NAME --NAME--> GREET --send(HELLO)--> AWAIT_WELCOME --WELCOME--> IDLE
    IDLE --send(request)--> AWAIT_REPLY --a one-line reply--> IDLE (or AWAIT_REPLY
                                                               while more are due)
    AWAIT_REPLY --STATUS/STATS/FILES n--> RECORDS --n records--> (reply done)
    AWAIT_REPLY --FILE size--> BODY --size bytes--> (reply done)
    AWAIT_REPLY --PART offset size--> BODY --size - offset bytes--> (reply done)
    AWAIT_REPLY --FILE size - (v2)--> BODY --size bytes--> TRAILER
    TRAILER --DIGEST sha256, or ERR changed--> (reply done)
    AWAIT_REPLY --READY offset (to a PUT)--> UPLOADING
    UPLOADING --send_body_done()--> AWAIT_REPLY --STORED, or ERR--> (reply done)
    FULL, BYE, a closing ERR, the end of the stream --> CLOSED
    a line that breaks the protocol, a reply that answers no request sent,
    another reply in the handshake --> BROKEN
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum, auto
from typing import Final, Literal

from .. import errors
from . import framing, messages
from .codes import CLOSING_CODES


class ClientState(Enum):
    """Where the conversation is, seen from the client."""

    AWAIT_NAME = auto()  # connected: the server speaks first, NAME or FULL
    GREET = auto()  # named: the client's HELLO is due
    AWAIT_WELCOME = auto()  # HELLO sent: WELCOME (or FULL) is due
    IDLE = auto()  # greeted, no reply due: the stream is in step
    AWAIT_REPLY = auto()  # requests sent: their replies are due, in order
    RECORDS = auto()  # inside a STATUS or FILES reply: records follow
    BODY = auto()  # inside a FILE or PART reply: body bytes follow
    TRAILER = auto()  # a body announced without its digest ended: DIGEST (or ERR) is due
    UPLOADING = auto()  # READY came: the client writes the upload's body, sends nothing else
    CLOSED = auto()  # the server ends the conversation, or ended the stream
    BROKEN = auto()  # the server broke the protocol: nothing after can be read in step


# States are compared with `is`, never looked up in a set: an Enum's __hash__
# is Python code, and these tests run a few times per reply.
_IDLE, _AWAIT_REPLY = ClientState.IDLE, ClientState.AWAIT_REPLY
_RECORDS, _BODY = ClientState.RECORDS, ClientState.BODY
_TRAILER, _UPLOADING = ClientState.TRAILER, ClientState.UPLOADING
_CLOSED, _BROKEN = ClientState.CLOSED, ClientState.BROKEN


class NeedData(Enum):
    """The type of :data:`NEED_DATA`."""

    NEED_DATA = auto()


# next_event()'s answer when the bytes received so far hold no complete event.
NEED_DATA: Final = NeedData.NEED_DATA


@dataclass(frozen=True, slots=True)
class BodyData:
    """Bytes of a ``FILE`` or ``PART`` reply's body, in order; ``data`` is what was given to
    :meth:`ClientConnection.receive_data` (not a copy) whenever it can be."""

    data: bytes | memoryview


@dataclass(frozen=True, slots=True)
class EndOfReply:
    """The last record of a ``STATUS``/``FILES`` reply, or the last byte of a body, came."""


# What next_event() returns, but NEED_DATA.
Record = messages.ClientRecord | messages.FileInfo | messages.StatRecord
ReceivedEvent = messages.Reply | Record | BodyData | EndOfReply
Event = ReceivedEvent | Literal[NeedData.NEED_DATA]

# The replies that answer each request; ERR answers any. A reply of another
# kind answers something the client did not ask: the server is out of step.
ANSWERS: Final[dict[type[messages.CommandRequest], tuple[type[messages.Reply], ...]]] = {
    messages.Ping: (messages.PongReply,),
    messages.Who: (messages.WhoReply,),
    messages.Uptime: (messages.UptimeReply,),
    messages.About: (messages.AboutReply,),
    messages.Help: (messages.HelpReply,),
    messages.Status: (messages.StatusReply,),
    messages.Stats: (messages.StatsReply,),
    messages.ListFiles: (messages.FilesReply,),
    messages.Get: (messages.FileReply,),
    messages.Hash: (messages.HashReply,),
    messages.Range: (messages.PartReply,),
    messages.Put: (messages.ReadyReply,),
    messages.Say: (messages.AckReply,),
    messages.Message: (messages.AckReply, messages.FileReply),
    messages.Exit: (messages.ByeReply,),
}

# Replies that are whole in one line and leave the conversation as it was.
_ONE_LINE_REPLIES: Final = frozenset(
    {
        messages.PongReply,
        messages.WhoReply,
        messages.UptimeReply,
        messages.AboutReply,
        messages.HelpReply,
        messages.AckReply,
        messages.HashReply,
    }
)

# What answers a PUT once its body is sent.
_PUT_ANSWER = ANSWERS[messages.Put]
_STORED_ANSWER: Final = (messages.StoredReply,)

_RecordParser = Callable[[str], Record]


class ClientConnection:
    """One client's conversation with a server, without I/O.

    ``max_line`` bounds the server's lines, CR and LF included, and
    ``max_record_bytes`` the record lines of one reply.
    """

    def __init__(
        self,
        max_line: int = framing.CLIENT_MAX_LINE,
        max_record_bytes: int = framing.MAX_RECORD_BYTES,
    ) -> None:
        self._reader = framing.LineReader(max_line)
        self._max_record_bytes = max_record_bytes
        self._state = ClientState.AWAIT_NAME
        # What answers each request sent and not yet answered whole, oldest first.
        self._due: deque[tuple[type[messages.Reply], ...]] = deque()
        self._records_left = 0
        self._record_bytes = 0  # bytes of the current reply's record lines
        self._parse_record: _RecordParser = messages.parse_client_record
        self._body_left = 0
        self._body = memoryview(b"")  # body bytes received, not handed out yet
        self._trailer_due = False  # the body in hand came with no digest: DIGEST follows it
        # A PUT is sent and its READY (or ERR) has not come: nothing may follow
        # it, as the server takes what comes after READY for the body.
        self._upload_due = False
        self._upload_size = 0
        self._upload_left = 0
        self._eof = False

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def body_left(self) -> int:
        """Bytes of the current body not received yet: a driver reading straight
        into its own buffer reads no more than this."""
        return self._body_left - len(self._body)

    @property
    def upload_left(self) -> int:
        """In :attr:`ClientState.UPLOADING`: the bytes of the body the client
        still owes, ``size - offset`` of the ``PUT`` and its ``READY``."""
        return self._upload_left

    # -- bytes in -----------------------------------------------------------------

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Take bytes the server sent; ``b""`` means the server closed the stream.

        In :attr:`ClientState.BODY`, the body's bytes are kept by reference
        until :meth:`next_event` hands them out; bytes past the body are copied.
        """
        if not data:
            self._eof = True
            return
        if self._state is not _BODY:
            self._reader.receive_data(data)
            return
        view = memoryview(data)
        room = self.body_left
        body = view[:room]
        # Rare: more bytes came before the last ones were taken.
        self._body = memoryview(bytes(self._body) + bytes(body)) if self._body else body
        if len(view) > room:  # replies pipelined behind the body: lines again
            self._reader.receive_data(view[room:])

    # -- events out ---------------------------------------------------------------

    def next_event(self) -> Event:
        """The next event, or :data:`NEED_DATA`.

        Raises :class:`ProtocolError` (and :class:`LineTooLong`) for what the
        protocol does not allow, after which the state is
        :attr:`ClientState.BROKEN`, and :class:`ConnectionLost` when the
        stream ended before the event, after which it is
        :attr:`ClientState.CLOSED`.
        """
        state = self._state
        if state is _BODY:
            return self._next_body_event()
        if state is _CLOSED or state is _BROKEN:
            raise errors.ConnectionLost("the connection is closed")
        if state is _RECORDS and self._records_left == 0:
            self._reply_done()
            return EndOfReply()
        line = self._next_line()
        if line is None:
            return NEED_DATA
        if state is _RECORDS:
            return self._record(line)
        return self._reply(line)

    def _next_line(self) -> str | None:
        try:
            line = self._reader.next_line()
        except errors.LineTooLong:
            self._state = ClientState.BROKEN  # the rest of that line would be taken for replies
            raise errors.LineTooLong(
                f"the server sent a line longer than {self._reader.max_line} bytes"
            ) from None
        if line is None:
            if self._eof:
                self._state = ClientState.CLOSED
                raise errors.ConnectionLost("the server closed the connection")
            return None
        if self._state is _RECORDS:
            self._record_bytes += len(line) + 1
        try:
            return line.decode("utf-8")
        except UnicodeDecodeError:
            self._state = ClientState.BROKEN
            raise errors.ProtocolError("the server sent a line that is not UTF-8") from None

    def _reply(self, line: str) -> messages.Reply:
        try:
            reply = messages.parse_reply(line)
        except errors.ProtocolError:
            self._state = ClientState.BROKEN
            raise
        state = self._state
        if state is ClientState.AWAIT_NAME or state is ClientState.AWAIT_WELCOME:
            self._handshake_reply(reply)
            return reply
        if state is _TRAILER:
            return self._trailer(reply)
        if state is _UPLOADING:
            return self._while_uploading(reply)
        kind = type(reply)
        if kind is not messages.ErrorReply and (not self._due or kind not in self._due[0]):
            self._state = _BROKEN
            wanted = " or ".join(k.__name__ for k in self._due[0]) if self._due else "no reply"
            raise errors.ProtocolError(f"expected {wanted}, the server sent {reply!r}")
        if kind in _ONE_LINE_REPLIES:
            self._reply_done()
            return reply
        match reply:
            case messages.ByeReply():
                self._state = ClientState.CLOSED  # the server closes right after
            case messages.ErrorReply(code) if code in CLOSING_CODES:
                self._state = ClientState.CLOSED
            case messages.StatusReply(count):
                self._begin_records(count, messages.parse_client_record)
            case messages.StatsReply(count):
                self._begin_records(count, messages.parse_stat_record)
            case messages.FilesReply(count):
                self._begin_records(count, messages.parse_file_info)
            case messages.FileReply(size, sha256):
                self._trailer_due = sha256 is None
                self._begin_body(size)
            case messages.PartReply():
                self._begin_body(reply.length)
            case messages.ReadyReply(offset):
                self._begin_upload(offset)
            case _:
                self._reply_done()
        return reply

    def _handshake_reply(self, reply: messages.Reply) -> None:
        match reply:
            case messages.NameReply() if self._state is ClientState.AWAIT_NAME:
                self._state = ClientState.GREET
            case messages.WelcomeReply() if self._state is ClientState.AWAIT_WELCOME:
                self._state = ClientState.IDLE
            case messages.FullReply():
                self._state = ClientState.CLOSED  # the server closes right after
            case messages.ErrorReply(code) if code in CLOSING_CODES:
                self._state = ClientState.CLOSED
            case _:  # no handshake goes on after another reply
                self._state = ClientState.BROKEN

    def _trailer(self, reply: messages.Reply) -> messages.Reply:
        """The line after a body announced without its digest: ``DIGEST``, or an
        ``ERR`` (``changed``: the file changed while it was sent)."""
        match reply:
            case messages.DigestReply():
                self._reply_done()
            case messages.ErrorReply(code) if code in CLOSING_CODES:
                self._state = ClientState.CLOSED
            case messages.ErrorReply():
                self._reply_done()
            case _:
                self._state = _BROKEN
                raise errors.ProtocolError(
                    f"expected DIGEST after the body, the server sent {reply!r}"
                )
        return reply

    def _begin_upload(self, offset: int) -> None:
        if offset > self._upload_size:
            self._state = _BROKEN
            raise errors.ProtocolError(
                f"READY at {offset}, past the end of the {self._upload_size} bytes sent for"
            )
        self._upload_due = False
        self._upload_left = self._upload_size - offset
        self._due[0] = _STORED_ANSWER
        self._state = _UPLOADING

    def _while_uploading(self, reply: messages.Reply) -> messages.Reply:
        """A line while the client still sends a body: only a last ``ERR``
        (the server stops) may come; any answer is due after the body."""
        if isinstance(reply, messages.ErrorReply) and reply.code in CLOSING_CODES:
            self._state = ClientState.CLOSED
            return reply
        self._state = _BROKEN
        raise errors.ProtocolError(f"the server answered before the upload's body: {reply!r}")

    def send_body_done(self) -> None:
        """The client wrote the whole body (``upload_left`` bytes) after
        ``READY``: ``STORED`` (or ``ERR``) is due next."""
        if self._state is not _UPLOADING:
            raise ValueError(f"no upload's body is being sent, in {self._state.name}")
        self._upload_left = 0
        self._state = _AWAIT_REPLY

    def take_records(self) -> list[Record]:
        """In :attr:`ClientState.RECORDS`: every record of the reply whose line is
        in hand, parsed at once (none otherwise, or if none is complete). Then
        :meth:`next_event` goes on: the next record, or the reply's end.

        A reply of many records is read in far fewer calls than one event a
        record; raises what :meth:`next_event` would for those lines.
        """
        if self._state is not _RECORDS or not self._records_left:
            return []
        try:
            lines = self._reader.take_lines(self._records_left)
        except errors.LineTooLong:
            self._state = ClientState.BROKEN
            raise errors.LineTooLong(
                f"the server sent a line longer than {self._reader.max_line} bytes"
            ) from None
        if not lines:
            return []
        self._record_bytes += sum(map(len, lines)) + len(lines)
        if self._record_bytes > self._max_record_bytes:
            self._state = ClientState.BROKEN
            raise errors.ProtocolError(
                f"the server sent more than {self._max_record_bytes} bytes of records"
            )
        parse = self._parse_record
        try:
            records = [parse(line.decode("utf-8")) for line in lines]
        except UnicodeDecodeError:
            self._state = ClientState.BROKEN
            raise errors.ProtocolError("the server sent a line that is not UTF-8") from None
        except errors.ProtocolError:
            self._state = ClientState.BROKEN  # the records after it would be taken for replies
            raise
        self._records_left -= len(records)
        return records

    def _begin_records(self, count: int, parse: _RecordParser) -> None:
        self._state = ClientState.RECORDS
        self._records_left = count
        self._record_bytes = 0
        self._parse_record = parse

    def _record(self, line: str) -> Record:
        try:
            record = self._parse_record(line)
        except errors.ProtocolError:
            self._state = ClientState.BROKEN  # the records after it would be taken for replies
            raise
        if self._record_bytes > self._max_record_bytes:
            self._state = ClientState.BROKEN
            raise errors.ProtocolError(
                f"the server sent more than {self._max_record_bytes} bytes of records"
            )
        self._records_left -= 1
        return record

    def _begin_body(self, size: int) -> None:
        self._state = ClientState.BODY
        self._body_left = size
        # The body's first bytes came with the header: they are the body's, not
        # lines. What follows the body goes back to be read as lines.
        rest = self._reader.take_rest()
        self._body = memoryview(rest)[:size]
        if len(rest) > size:
            self._reader.receive_data(memoryview(rest)[size:])

    def _next_body_event(self) -> BodyData | EndOfReply | Literal[NeedData.NEED_DATA]:
        if self._body:
            data = self._body
            self._body = memoryview(b"")
            self._body_left -= len(data)
            return BodyData(data)
        if self._body_left == 0:
            if self._trailer_due:
                self._trailer_due = False
                self._state = _TRAILER
            else:
                self._reply_done()
            return EndOfReply()
        if self._eof:
            self._state = ClientState.CLOSED
            raise errors.ConnectionLost("connection closed in the middle of a file")
        return NEED_DATA

    def _reply_done(self) -> None:
        due = self._due
        if due and due.popleft() is _PUT_ANSWER:  # ERR to a PUT: no body follows
            self._upload_due = False
        self._state = _AWAIT_REPLY if due else _IDLE

    # -- bytes out ----------------------------------------------------------------

    def send(self, request: messages.Request) -> bytes:
        """The bytes of ``request``; its reply becomes due.

        ``HELLO`` is sent once, when named; any other request once greeted.
        Raises :class:`ConnectionLost` once the conversation is over, and
        ValueError for a request the state does not allow, or one that cannot
        travel on one line.
        """
        state = self._state
        if (
            (state is _IDLE or state is _AWAIT_REPLY)
            and not self._upload_due
            and not isinstance(request, messages.Hello)
        ):
            data = messages.encode_request(request)  # the usual case, first
            self._due.append(ANSWERS[type(request)])
            self._state = _AWAIT_REPLY
            if isinstance(request, messages.Put):
                self._upload_due = True
                self._upload_size = request.size
            return data
        if state is _CLOSED or state is _BROKEN:
            raise errors.ConnectionLost("the connection is closed")
        if self._upload_due or state is _UPLOADING:
            raise ValueError("nothing may be sent between a PUT and the end of its body")
        if isinstance(request, messages.Hello):
            if state is not ClientState.GREET:
                raise ValueError(f"HELLO is sent once, when named, not in {state.name}")
            data = messages.encode_request(request)
            self._state = ClientState.AWAIT_WELCOME
            return data
        if state is not _RECORDS and state is not _BODY and state is not _TRAILER:
            raise ValueError(f"{type(request).__name__} before the handshake, in {state.name}")
        data = messages.encode_request(request)  # pipelined behind the reply being read
        self._due.append(ANSWERS[type(request)])
        if isinstance(request, messages.Put):
            self._upload_due = True
            self._upload_size = request.size
        return data
