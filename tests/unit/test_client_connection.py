"""ClientConnection, the client's side of the conversation, without a network.

Every reply shape, every stream split at every byte boundary, bytes pipelined
behind a body, the end of the stream in each state, and which ``ERR`` codes
end the conversation.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from filedock import errors
from filedock import protocol as p
from filedock.protocol.client import (
    ANSWERS,
    NEED_DATA,
    BodyData,
    ClientConnection,
    ClientState,
    EndOfReply,
    ReceivedEvent,
)

SHA = "ab" * 32
STATUS_RECORD = "Client01\t2026-11-24 15:29:28\t-\t127.0.0.1:40000"
FILES_RECORD = "docs/a b.txt\t12\t2026-11-24T15:29:28Z"


def events_of(conn: ClientConnection) -> list[ReceivedEvent]:
    """Every event the bytes received so far hold, body bytes joined."""
    found: list[ReceivedEvent] = []
    for _ in range(10_000):
        event = conn.next_event()
        if event is NEED_DATA:
            return found
        if isinstance(event, BodyData) and found and isinstance(found[-1], BodyData):
            found[-1] = BodyData(bytes(found[-1].data) + bytes(event.data))
        else:
            found.append(event)
    raise AssertionError("no end of events")


def feed(conn: ClientConnection, chunks: Iterable[bytes]) -> list[ReceivedEvent]:
    """Give ``chunks`` one after the other, taking the events after each."""
    found: list[ReceivedEvent] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in events_of(conn):
            if isinstance(event, BodyData) and found and isinstance(found[-1], BodyData):
                found[-1] = BodyData(bytes(found[-1].data) + bytes(event.data))
            else:
                found.append(event)
    return found


def normalised(events: list[ReceivedEvent]) -> list[object]:
    """Events with body bytes as bytes (a memoryview compares by content, not type)."""
    return [BodyData(bytes(e.data)) if isinstance(e, BodyData) else e for e in events]


def splits(data: bytes) -> Iterable[list[bytes]]:
    """``data`` whole, one byte at a time, and cut in two at every boundary."""
    yield [data]
    yield [data[i : i + 1] for i in range(len(data))]
    for cut in range(1, len(data)):
        yield [data[:cut], data[cut:]]


def greeted() -> ClientConnection:
    conn = ClientConnection()
    conn.receive_data(b"NAME Client01\n")
    assert conn.next_event() == p.NameReply("Client01")
    conn.send(p.Hello("Client01"))
    conn.receive_data(b"WELCOME Client01 filedock 1.0.0\n")
    assert conn.next_event() == p.WelcomeReply("Client01", "filedock 1.0.0")
    assert conn.state is ClientState.IDLE
    return conn


# -- the handshake ----------------------------------------------------------------------------


def test_the_handshake_goes_name_hello_welcome() -> None:
    conn = ClientConnection()
    assert conn.state is ClientState.AWAIT_NAME
    assert conn.next_event() is NEED_DATA
    conn.receive_data(b"NAME Client07\r\n")
    assert conn.next_event() == p.NameReply("Client07")
    assert conn.state is ClientState.GREET
    assert conn.send(p.Hello("Client07 token=abc")) == b"HELLO Client07 token=abc\n"
    assert conn.state is ClientState.AWAIT_WELCOME
    conn.receive_data(b"WELCOME Client07 filedock 1.0.0\n")
    assert conn.next_event() == p.WelcomeReply("Client07", "filedock 1.0.0")
    assert conn.state is ClientState.IDLE


@pytest.mark.parametrize("chunks", list(splits(b"NAME Client01\n")))
def test_the_name_is_read_however_it_is_split(chunks: list[bytes]) -> None:
    conn = ClientConnection()
    assert feed(conn, chunks) == [p.NameReply("Client01")]
    assert conn.state is ClientState.GREET


@pytest.mark.parametrize("greet", [False, True], ids=["on-accept", "after-hello"])
def test_full_ends_the_conversation(greet: bool) -> None:
    conn = ClientConnection()
    if greet:
        conn.receive_data(b"NAME Client01\n")
        conn.next_event()
        conn.send(p.Hello())
    conn.receive_data(b"FULL server is at capacity (3/3 clients)\n")
    assert conn.next_event() == p.FullReply("server is at capacity (3/3 clients)")
    assert conn.state is ClientState.CLOSED
    with pytest.raises(errors.ConnectionLost):
        conn.send(p.Ping())


@pytest.mark.parametrize(
    "line", [b"PONG\n", b"WELCOME Client01 filedock\n", b"ERR handshake say HELLO first\n"]
)
def test_another_reply_instead_of_name_breaks_the_handshake(line: bytes) -> None:
    conn = ClientConnection()
    conn.receive_data(line)
    assert isinstance(conn.next_event(), p.Reply)
    assert conn.state is ClientState.BROKEN


def test_hello_is_sent_once_and_only_when_named() -> None:
    conn = ClientConnection()
    with pytest.raises(ValueError, match="HELLO"):
        conn.send(p.Hello())
    with pytest.raises(ValueError, match="before the handshake"):
        conn.send(p.Ping())
    conn.receive_data(b"NAME Client01\n")
    conn.next_event()
    with pytest.raises(ValueError, match="before the handshake"):
        conn.send(p.Ping())
    conn.send(p.Hello())
    with pytest.raises(ValueError, match="HELLO"):
        conn.send(p.Hello())
    with pytest.raises(ValueError, match="before the handshake"):
        conn.send(p.Ping())


# -- one-line replies -------------------------------------------------------------------------

ONE_LINE_REPLIES: list[tuple[p.CommandRequest, bytes, p.Reply]] = [
    (p.Ping(), b"PONG\n", p.PongReply()),
    (p.Who(), b"WHO Client01 Client02\n", p.WhoReply(("Client01", "Client02"))),
    (p.Uptime(), b"UPTIME 42\n", p.UptimeReply(42)),
    (p.About(), b"ABOUT filedock 1.0.0\n", p.AboutReply("filedock 1.0.0")),
    (p.Help(), b"HELP CMDs: help | status\n", p.HelpReply("CMDs: help | status")),
    (p.Say("hi there"), b"ACK hi there\n", p.AckReply("hi there")),
    (p.Message("hello"), b"ACK hello\n", p.AckReply("hello")),
    (p.Get("nope"), b"ERR not-found no such file\n", p.ErrorReply("not-found", "no such file")),
    (p.Say(""), b"ERR bad-request say what\n", p.ErrorReply("bad-request", "say what")),
]


@pytest.mark.parametrize(("request_", "line", "reply"), ONE_LINE_REPLIES)
def test_a_one_line_reply_leaves_the_stream_in_step(
    request_: p.CommandRequest, line: bytes, reply: p.Reply
) -> None:
    for chunks in splits(line):
        conn = greeted()
        conn.send(request_)
        assert conn.state is ClientState.AWAIT_REPLY
        assert feed(conn, chunks) == [reply]
        assert conn.state is ClientState.IDLE


def test_bye_ends_the_conversation() -> None:
    conn = greeted()
    assert conn.send(p.Exit()) == b"EXIT\n"
    conn.receive_data(b"BYE\n")
    assert conn.next_event() == p.ByeReply()
    assert conn.state is ClientState.CLOSED
    with pytest.raises(errors.ConnectionLost):
        conn.next_event()


def test_pipelined_replies_come_in_order_and_the_last_one_settles_the_stream() -> None:
    conn = greeted()
    for _ in range(3):
        conn.send(p.Ping())
    conn.receive_data(b"PONG\nPONG\n")
    assert events_of(conn) == [p.PongReply(), p.PongReply()]
    assert conn.state is ClientState.AWAIT_REPLY
    conn.receive_data(b"PONG\n")
    assert events_of(conn) == [p.PongReply()]
    assert conn.state is ClientState.IDLE


def test_every_request_of_the_command_table_has_its_answers() -> None:
    assert set(ANSWERS) == {command.request for command in p.COMMANDS}


@pytest.mark.parametrize(
    ("request_", "line"),
    [
        (p.Ping(), b"ACK hi\n"),
        (p.Get("x"), b"STATUS 0\n"),
        (p.Say("hi"), b"PONG\n"),
        (p.Status(), b"FILES 0\n"),
        (p.Ping(), b"NAME Client02\n"),
        (p.Ping(), b"FULL server is at capacity\n"),
    ],
)
def test_a_reply_to_another_request_breaks_the_stream(
    request_: p.CommandRequest, line: bytes
) -> None:
    conn = greeted()
    conn.send(request_)
    conn.receive_data(line)
    with pytest.raises(errors.ProtocolError, match="expected"):
        conn.next_event()
    assert conn.state is ClientState.BROKEN


def test_a_reply_nothing_asked_for_breaks_the_stream() -> None:
    conn = greeted()
    conn.receive_data(b"PONG\n")
    with pytest.raises(errors.ProtocolError, match="expected no reply"):
        conn.next_event()
    assert conn.state is ClientState.BROKEN


def test_a_message_is_answered_by_an_echo_or_a_file() -> None:
    conn = greeted()
    conn.send(p.Message("hello"))
    conn.send(p.Message("docs/a.txt"))
    conn.receive_data(b"ACK hello\n" + FILE_STREAM)
    assert normalised(events_of(conn)) == [
        p.AckReply("hello"),
        p.FileReply(len(BODY), SHA, "docs/a.txt"),
        BodyData(BODY),
        EndOfReply(),
    ]
    assert conn.state is ClientState.IDLE


# -- the codes that close ---------------------------------------------------------------------


@pytest.mark.parametrize("code", list(p.ErrorCode))
def test_the_codes_that_close_are_the_servers(code: p.ErrorCode) -> None:
    conn = greeted()
    conn.send(p.Ping())
    conn.receive_data(f"ERR {code} why\n".encode())
    assert conn.next_event() == p.ErrorReply(code, "why")
    closes = code in p.CLOSING_CODES
    assert conn.state is (ClientState.CLOSED if closes else ClientState.IDLE)
    # The library raises ServerClosing for exactly those codes.
    assert isinstance(errors.error_for_code(code, "why"), errors.ServerClosing) == closes


def test_unauthorized_closes_during_the_handshake() -> None:
    assert p.ErrorCode.UNAUTHORIZED in p.CLOSING_CODES
    conn = ClientConnection()
    conn.receive_data(b"NAME Client01\n")
    conn.next_event()
    conn.send(p.Hello("Client01 token=wrong"))
    conn.receive_data(b"ERR unauthorized a valid access token is required\n")
    assert conn.next_event() == p.ErrorReply("unauthorized", "a valid access token is required")
    assert conn.state is ClientState.CLOSED


# -- records ----------------------------------------------------------------------------------

STATUS_STREAM = f"STATUS 2\n{STATUS_RECORD}\n{STATUS_RECORD}\n".encode()
ACCEPTED = datetime(2026, 11, 24, 15, 29, 28)
CLIENT = p.ClientRecord("Client01", ACCEPTED, None, "127.0.0.1:40000")
FILE_INFO = p.FileInfo("docs/a b.txt", 12, datetime(2026, 11, 24, 15, 29, 28, tzinfo=UTC))


@pytest.mark.parametrize("chunks", list(splits(STATUS_STREAM + b"PONG\n")))
def test_status_records_are_read_however_they_are_split(chunks: list[bytes]) -> None:
    conn = greeted()
    conn.send(p.Status())
    conn.send(p.Ping())
    events = feed(conn, chunks)
    assert events == [p.StatusReply(2), CLIENT, CLIENT, EndOfReply(), p.PongReply()]
    assert conn.state is ClientState.IDLE


@pytest.mark.parametrize("chunks", list(splits(f"FILES 1\n{FILES_RECORD}\n".encode())))
def test_files_records_are_read_however_they_are_split(chunks: list[bytes]) -> None:
    conn = greeted()
    conn.send(p.ListFiles())
    assert feed(conn, chunks) == [p.FilesReply(1), FILE_INFO, EndOfReply()]
    assert conn.state is ClientState.IDLE


@pytest.mark.parametrize("chunks", list(splits(b"STATS 2\nbytes_sent\t6\nuptime_seconds\t1.500\n")))
def test_stats_records_are_read_however_they_are_split(chunks: list[bytes]) -> None:
    conn = greeted()
    conn.send(p.Stats())
    assert feed(conn, chunks) == [
        p.StatsReply(2),
        p.StatRecord("bytes_sent", 6),
        p.StatRecord("uptime_seconds", 1.5),
        EndOfReply(),
    ]
    assert conn.state is ClientState.IDLE


def test_a_bad_stats_record_breaks_the_connection() -> None:
    conn = greeted()
    conn.send(p.Stats())
    conn.receive_data(b"STATS 1\nbytes_sent\tmany\n")
    assert conn.next_event() == p.StatsReply(1)
    with pytest.raises(errors.ProtocolError, match="bad value in STATS record"):
        conn.next_event()
    assert conn.state is ClientState.BROKEN


def test_records_in_progress_hold_the_stream() -> None:
    conn = greeted()
    conn.send(p.Status())
    conn.receive_data(f"STATUS 2\n{STATUS_RECORD}\n".encode())
    assert events_of(conn) == [p.StatusReply(2), CLIENT]
    assert conn.state is ClientState.RECORDS


@pytest.mark.parametrize(
    ("request_", "line"), [(p.Status(), b"STATUS 0\n"), (p.ListFiles(), b"FILES 0\n")]
)
def test_no_records_end_at_once(request_: p.CommandRequest, line: bytes) -> None:
    conn = greeted()
    conn.send(request_)
    conn.send(p.Ping())
    conn.receive_data(line + b"PONG\n")
    assert events_of(conn)[1:] == [EndOfReply(), p.PongReply()]
    assert conn.state is ClientState.IDLE


@pytest.mark.parametrize(
    "record", [b"Client01\tnot a time\t-\t127.0.0.1:1", b"too\tfew", b"\xff\xfe"]
)
def test_a_bad_record_breaks_the_stream(record: bytes) -> None:
    conn = greeted()
    conn.send(p.Status())
    conn.receive_data(b"STATUS 2\n" + record + b"\n")
    assert conn.next_event() == p.StatusReply(2)
    with pytest.raises(errors.ProtocolError):
        conn.next_event()
    assert conn.state is ClientState.BROKEN
    with pytest.raises(errors.ConnectionLost):
        conn.next_event()


def test_records_stop_at_the_byte_cap() -> None:
    line = f"{STATUS_RECORD}\n".encode()
    conn = ClientConnection(max_record_bytes=3 * len(line))
    conn.receive_data(b"NAME Client01\n")
    conn.next_event()
    conn.send(p.Hello())
    conn.receive_data(b"WELCOME Client01 x\n")
    conn.next_event()
    conn.send(p.Status())
    conn.receive_data(b"STATUS 5\n" + line * 5)
    assert [conn.next_event() for _ in range(4)] == [p.StatusReply(5), CLIENT, CLIENT, CLIENT]
    with pytest.raises(errors.ProtocolError, match="bytes of records"):
        conn.next_event()
    assert conn.state is ClientState.BROKEN


# -- bodies -----------------------------------------------------------------------------------

BODY = b"hello\nworld\n"  # line feeds in a body are body bytes, not lines
FILE_STREAM = f"FILE {len(BODY)} {SHA} docs/a.txt\n".encode() + BODY


@pytest.mark.parametrize("chunks", list(splits(FILE_STREAM + b"PONG\nACK x\n")))
def test_a_body_is_read_however_it_is_split_and_what_follows_is_replies(
    chunks: list[bytes],
) -> None:
    conn = greeted()
    conn.send(p.Get("docs/a.txt"))
    conn.send(p.Ping())
    conn.send(p.Say("x"))
    events = normalised(feed(conn, chunks))
    assert events == [
        p.FileReply(len(BODY), SHA, "docs/a.txt"),
        BodyData(BODY),
        EndOfReply(),
        p.PongReply(),
        p.AckReply("x"),
    ]
    assert conn.state is ClientState.IDLE


def test_bodies_back_to_back_in_one_chunk() -> None:
    conn = greeted()
    conn.send(p.Get("docs/a.txt"))
    conn.send(p.Get("docs/a.txt"))
    events = normalised(feed(conn, [FILE_STREAM * 2]))
    header = p.FileReply(len(BODY), SHA, "docs/a.txt")
    assert events == [header, BodyData(BODY), EndOfReply()] * 2
    assert conn.state is ClientState.IDLE


def test_an_empty_body_ends_at_once() -> None:
    conn = greeted()
    conn.send(p.Get("e"))
    conn.send(p.Ping())
    conn.receive_data(f"FILE 0 {SHA} e\nPONG\n".encode())
    assert events_of(conn) == [p.FileReply(0, SHA, "e"), EndOfReply(), p.PongReply()]


def test_body_bytes_received_into_a_buffer_come_back_without_a_copy() -> None:
    conn = greeted()
    conn.send(p.Get("docs/a.txt"))
    conn.receive_data(FILE_STREAM[: -len(BODY)])
    assert isinstance(conn.next_event(), p.FileReply)
    assert conn.next_event() is NEED_DATA
    assert conn.body_left == len(BODY)
    buffer = bytearray(64)
    view = memoryview(buffer)[: conn.body_left]
    view[:] = BODY
    conn.receive_data(view)
    event = conn.next_event()
    assert isinstance(event, BodyData)
    assert isinstance(event.data, memoryview)
    assert event.data.obj is buffer
    assert conn.body_left == 0
    assert conn.next_event() == EndOfReply()


def test_surplus_after_a_body_is_copied_not_kept_by_reference() -> None:
    conn = greeted()
    conn.send(p.Get("docs/a.txt"))
    conn.send(p.Ping())
    conn.receive_data(FILE_STREAM[: -len(BODY)])
    conn.next_event()
    buffer = bytearray(BODY + b"PONG\n")
    conn.receive_data(memoryview(buffer))
    event = conn.next_event()
    assert isinstance(event, BodyData)
    assert bytes(event.data) == BODY
    buffer[len(BODY) :] = b"XXXX\n"  # the driver reuses its buffer: the reply was copied
    assert events_of(conn) == [EndOfReply(), p.PongReply()]


def test_a_body_in_progress_holds_the_stream() -> None:
    conn = greeted()
    conn.send(p.Get("docs/a.txt"))
    conn.receive_data(FILE_STREAM[:-3])
    assert normalised(events_of(conn)) == [
        p.FileReply(len(BODY), SHA, "docs/a.txt"),
        BodyData(BODY[:-3]),
    ]
    assert conn.state is ClientState.BODY
    assert conn.body_left == 3


# -- the end of the stream --------------------------------------------------------------------


def _in_state(state: ClientState) -> ClientConnection:
    conn = ClientConnection()
    if state is ClientState.AWAIT_NAME:
        return conn
    conn.receive_data(b"NAME Client01\n")
    conn.next_event()
    conn.send(p.Hello())
    if state is ClientState.AWAIT_WELCOME:
        return conn
    conn.receive_data(b"WELCOME Client01 x\n")
    conn.next_event()
    if state is ClientState.IDLE:
        return conn
    if state is ClientState.AWAIT_REPLY:
        conn.send(p.Ping())
        conn.receive_data(b"PO")  # half a line
        return conn
    if state is ClientState.RECORDS:
        conn.send(p.Status())
        conn.receive_data(b"STATUS 3\n" + f"{STATUS_RECORD}\n".encode())
        events_of(conn)
        return conn
    conn.send(p.Get("docs/a.txt"))
    conn.receive_data(FILE_STREAM[:-4])
    events_of(conn)
    return conn


EOF_STATES = [
    ClientState.AWAIT_NAME,
    ClientState.AWAIT_WELCOME,
    ClientState.IDLE,
    ClientState.AWAIT_REPLY,
    ClientState.RECORDS,
    ClientState.BODY,
]


@pytest.mark.parametrize("state", EOF_STATES, ids=[state.name for state in EOF_STATES])
def test_the_end_of_the_stream_closes_in_every_state(state: ClientState) -> None:
    conn = _in_state(state)
    assert conn.state is state
    conn.receive_data(b"")
    expected = "middle of a file" if state is ClientState.BODY else "server closed the connection"
    with pytest.raises(errors.ConnectionLost, match=expected):
        conn.next_event()
    assert conn.state is ClientState.CLOSED
    with pytest.raises(errors.ConnectionLost, match="closed"):
        conn.send(p.Ping())


def test_lines_before_the_end_of_the_stream_are_still_read() -> None:
    conn = greeted()
    conn.send(p.Exit())
    conn.receive_data(b"BYE\n")
    conn.receive_data(b"")
    assert conn.next_event() == p.ByeReply()


# -- what breaks the protocol -----------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    [b"HELLO?\n", b"FILE 12 nothex a\n", b"STATUS -1\n", b"ERR\n", b"ERR Bad_Code x\n", b"\xc3\n"],
)
def test_a_line_that_is_no_reply_breaks_the_stream(line: bytes) -> None:
    conn = greeted()
    conn.send(p.Ping())
    conn.receive_data(line)
    with pytest.raises(errors.ProtocolError):
        conn.next_event()
    assert conn.state is ClientState.BROKEN
    with pytest.raises(errors.ConnectionLost):
        conn.send(p.Ping())


def test_a_line_over_the_limit_breaks_the_stream() -> None:
    conn = ClientConnection(max_line=64)
    conn.receive_data(b"NAME " + b"x" * 100)
    with pytest.raises(errors.LineTooLong, match="longer than 64 bytes"):
        conn.next_event()
    assert conn.state is ClientState.BROKEN


def test_a_request_that_cannot_travel_changes_nothing() -> None:
    conn = greeted()
    with pytest.raises(ValueError, match="line feed"):
        conn.send(p.Say("two\nlines"))
    assert conn.state is ClientState.IDLE
