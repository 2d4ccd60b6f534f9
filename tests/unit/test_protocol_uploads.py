"""Uploads' words, without a network: PUT, READY and STORED, the new error
codes, and the body that follows READY on both sides of the conversation."""

from __future__ import annotations

import pytest

from filedock import errors
from filedock import protocol as p
from filedock.protocol.client import ClientConnection, ClientState
from filedock.protocol.server import (
    END_OF_BODY,
    END_OF_INPUT,
    NEED_DATA,
    PAUSED,
    BodyData,
    Event,
    ServerConnection,
)
from filedock.protocol.state import State, StateError
from tests.unit.test_client_connection import greeted, splits

SHA = "ab" * 32
PUT_LINE = f"PUT 10 {SHA} new docs/a b.txt"

# -- the words -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "put"),
    [
        (PUT_LINE, p.Put(10, SHA, p.PutMode.NEW, "docs/a b.txt")),
        (f"put 0 {SHA.upper()} REPLACE x", p.Put(0, SHA, p.PutMode.REPLACE, "x")),
    ],
)
def test_put_parses_and_encodes_back(line: str, put: p.Put) -> None:
    assert p.parse_request(line) == put
    assert p.parse_request(p.encode_request(put).decode()[:-1]) == put


@pytest.mark.parametrize(
    ("argument", "says"),
    [
        (f"10 {SHA} new", "PUT needs a size, a SHA-256, a mode and a path"),
        ("", "PUT needs a size"),
        (f"-1 {SHA} new x", "size in bytes"),
        (f"1e3 {SHA} new x", "size in bytes"),
        (f"{'9' * 21} {SHA} new x", "size in bytes"),
        ("10 abc new x", "SHA-256 of 64 hex digits"),
        (f"10 {'g' * 64} new x", "SHA-256 of 64 hex digits"),
        (f"10 {SHA} append x", "new or replace"),
    ],
)
def test_a_malformed_put_is_a_bad_request(argument: str, says: str) -> None:
    with pytest.raises(errors.BadRequest, match=says):
        p.parse_request(f"PUT {argument}".strip())


def test_put_is_v2_and_named_in_the_v2_help_only() -> None:
    command = p.COMMANDS_BY_REQUEST[p.Put]
    assert command.since == 2
    assert "put <size> <sha256> <mode> <path>" in p.HELP_TEXT
    assert "put" not in p.HELP_TEXT_V1


@pytest.mark.parametrize(
    ("reply", "line"),
    [
        (p.ReadyReply(0, "docs/a b.txt"), b"READY 0 docs/a b.txt\n"),
        (p.ReadyReply(4096, "x"), b"READY 4096 x\n"),
        (p.StoredReply(10, SHA, "docs/a b.txt"), f"STORED 10 {SHA} docs/a b.txt\n".encode()),
    ],
)
def test_ready_and_stored_encode_and_parse(reply: p.Reply, line: bytes) -> None:
    assert p.encode_reply(reply) == line
    assert p.parse_reply(line.decode()[:-1]) == reply


@pytest.mark.parametrize(
    "line", ["READY", "READY 5", "READY x path", "STORED 1 abc x", f"STORED 1 {SHA}", "STORED"]
)
def test_a_malformed_ready_or_stored_breaks_the_protocol(line: str) -> None:
    with pytest.raises(errors.ProtocolError):
        p.parse_reply(line)


@pytest.mark.parametrize(
    ("code", "cls"),
    [
        ("exists", errors.Exists),
        ("no-space", errors.NoSpace),
        ("too-large", errors.TooLarge),
        ("integrity", errors.IntegrityError),
    ],
)
def test_the_upload_codes_come_back_as_their_classes(code: str, cls: type[Exception]) -> None:
    error = errors.error_for_code(code, "why")
    assert isinstance(error, cls)
    assert isinstance(error, errors.RequestError)
    assert error.code == code
    assert error.text == "why"
    assert str(error) == f"{code}: why"
    assert not p.ErrorCode(code).closes


def test_the_local_too_large_and_integrity_errors_keep_their_constructors() -> None:
    too_large = errors.TooLarge("no room for a.txt")
    assert str(too_large) == "no room for a.txt"
    assert not isinstance(too_large, errors.RequestError)  # a download's, not the server's
    integrity = errors.IntegrityError("bad", expected="a", actual="b")
    assert (integrity.expected, integrity.actual) == ("a", "b")
    assert not isinstance(integrity, errors.RequestError)


# -- the server's side ------------------------------------------------------------------


def server_greeted() -> ServerConnection:
    conn = ServerConnection(now=0.0, max_line=p.DEFAULT_MAX_LINE, handshake_timeout=10.0)
    conn.send(p.NameReply("Client01"))
    conn.receive_data(b"HELLO proto=2\n")
    assert conn.next_event() == p.Hello("proto=2")
    conn.send(p.WelcomeReply("Client01", "filedock", 2))
    return conn


def put_received(data: bytes = b"") -> ServerConnection:
    """A greeted conversation whose PUT (of 10 bytes) was read, its command waiting."""
    conn = server_greeted()
    conn.receive_data(PUT_LINE.encode() + b"\n" + data)
    assert conn.next_event() == p.Put(10, SHA, p.PutMode.NEW, "docs/a b.txt")
    conn.start()
    return conn


def body_events(conn: ServerConnection) -> list[Event]:
    seen: list[Event] = []
    for _ in range(1000):
        event = conn.next_event()
        if isinstance(event, BodyData):
            event = BodyData(bytes(event.data))
        seen.append(event)
        if event in (NEED_DATA, PAUSED, END_OF_INPUT, END_OF_BODY):
            return seen
    raise AssertionError("no end of events")


def test_the_lines_after_a_put_wait_until_ready() -> None:
    conn = put_received(b"0123")
    assert conn.next_event() is PAUSED
    assert conn.state is State.BUSY


@pytest.mark.parametrize("chunks", list(splits(b"345PING\nWHO\n")))
def test_after_ready_exactly_the_rest_is_body_then_lines_again(chunks: list[bytes]) -> None:
    # READY at 4 of 10 bytes: 6 are owed; 012 came right behind the PUT line.
    conn = put_received(b"012")
    assert conn.ready(p.ReadyReply(4, "docs/a b.txt"), 10) == b"READY 4 docs/a b.txt\n"
    assert conn.state is State.RECEIVING
    body = b""
    ends = 0
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in body_events(conn):
            if isinstance(event, BodyData):
                body += event.data
            elif event is END_OF_BODY:
                ends += 1
    assert (body, ends) == (b"012345", 1)
    assert conn.state is State.BUSY  # the upload's answer is due: lines still wait
    assert conn.next_event() is PAUSED
    assert conn.send(p.StoredReply(10, SHA, "docs/a b.txt")).startswith(b"STORED 10 ")
    conn.done(0.0)
    assert conn.next_event() == p.Ping()
    assert conn.next_event() == p.Who()


def test_a_ready_for_a_whole_upload_ends_the_body_at_once() -> None:
    conn = put_received()
    conn.ready(p.ReadyReply(10, "x"), 10)
    assert conn.next_event() is END_OF_BODY
    assert conn.state is State.BUSY


def test_a_body_is_bytes_not_lines_however_it_looks() -> None:
    conn = put_received()
    conn.ready(p.ReadyReply(0, "x"), 10)
    conn.receive_data(b"EXIT\nBYE\r\n")
    assert body_events(conn) == [BodyData(b"EXIT\nBYE\r\n"), END_OF_BODY]


def test_body_bytes_given_twice_before_being_taken_are_kept_whole() -> None:
    conn = put_received()
    conn.ready(p.ReadyReply(0, "x"), 10)
    lent = bytearray(b"01234")
    conn.receive_data(memoryview(lent))
    conn.receive_data(b"56789")
    lent[:] = b"XXXXX"  # a lent buffer reused: the bytes in hand were copied
    assert body_events(conn) == [BodyData(b"0123456789"), END_OF_BODY]


def test_eof_in_the_middle_of_a_body_is_the_end_of_input() -> None:
    conn = put_received()
    conn.ready(p.ReadyReply(0, "x"), 10)
    conn.receive_data(b"0123")
    conn.receive_data(b"")
    assert body_events(conn) == [BodyData(b"0123"), END_OF_INPUT]
    assert conn.body_left == 6
    conn.end()
    assert conn.state is State.CLOSING


def test_no_reply_goes_out_while_the_body_comes_but_a_last_one() -> None:
    conn = put_received()
    conn.ready(p.ReadyReply(0, "x"), 10)
    with pytest.raises(StateError):
        conn.send(p.StoredReply(10, SHA, "x"))
    with pytest.raises(StateError):
        conn.send(p.ErrorReply(p.ErrorCode.INTEGRITY, "no"))
    conn.send(p.ErrorReply(p.ErrorCode.SHUTDOWN, "server shutting down"))
    assert conn.state is State.CLOSING


def test_ready_goes_out_only_from_a_command_that_waits_and_knows_the_size() -> None:
    conn = server_greeted()
    with pytest.raises(StateError):
        conn.ready(p.ReadyReply(0, "x"), 10)
    conn = put_received()
    with pytest.raises(ValueError, match="ready"):
        conn.send(p.ReadyReply(0, "x"))
    with pytest.raises(ValueError, match="past the end"):
        conn.ready(p.ReadyReply(11, "x"), 10)


# -- the client's side ------------------------------------------------------------------


def put_sent(size: int = 10) -> ClientConnection:
    conn = greeted()
    conn.send(p.Put(size, SHA, p.PutMode.NEW, "x"))
    return conn


def test_ready_hands_the_body_to_the_client_then_stored_settles_the_stream() -> None:
    conn = put_sent()
    conn.receive_data(b"READY 4 x\n")
    assert conn.next_event() == p.ReadyReply(4, "x")
    assert conn.state is ClientState.UPLOADING
    assert conn.upload_left == 6
    conn.send_body_done()
    assert conn.state is ClientState.AWAIT_REPLY
    conn.receive_data(f"STORED 10 {SHA} x\n".encode())
    assert conn.next_event() == p.StoredReply(10, SHA, "x")
    assert conn.state is ClientState.IDLE


@pytest.mark.parametrize("code", ["integrity", "no-space", "exists"])
def test_an_err_after_the_body_settles_the_stream_too(code: str) -> None:
    conn = put_sent()
    conn.receive_data(b"READY 0 x\n")
    conn.next_event()
    conn.send_body_done()
    conn.receive_data(f"ERR {code} why\n".encode())
    assert conn.next_event() == p.ErrorReply(code, "why")
    assert conn.state is ClientState.IDLE
    conn.send(p.Ping())  # the connection goes on


@pytest.mark.parametrize("code", ["forbidden", "exists", "too-large", "no-space", "bad-request"])
def test_an_err_instead_of_ready_means_no_body(code: str) -> None:
    conn = put_sent()
    with pytest.raises(ValueError, match="between a PUT"):
        conn.send(p.Ping())  # it would be taken for the body
    conn.receive_data(f"ERR {code} why\n".encode())
    assert conn.next_event() == p.ErrorReply(code, "why")
    assert conn.state is ClientState.IDLE
    with pytest.raises(ValueError, match="no upload"):
        conn.send_body_done()
    conn.send(p.Ping())


def test_replies_pipelined_before_a_put_come_first() -> None:
    conn = greeted()
    conn.send(p.Status())
    conn.send(p.Put(10, SHA, p.PutMode.REPLACE, "x"))
    conn.receive_data(b"STATUS 0\nREADY 0 x\n")
    assert conn.next_event() == p.StatusReply(0)
    conn.next_event()  # the end of its records
    with pytest.raises(ValueError, match="between a PUT"):
        conn.send(p.Ping())  # still before the READY
    assert conn.next_event() == p.ReadyReply(0, "x")
    assert conn.upload_left == 10


def test_nothing_is_sent_while_the_body_is_owed() -> None:
    conn = put_sent()
    conn.receive_data(b"READY 0 x\n")
    conn.next_event()
    with pytest.raises(ValueError, match="between a PUT"):
        conn.send(p.Ping())


def test_a_reply_in_the_middle_of_the_body_breaks_the_stream_but_a_last_err() -> None:
    conn = put_sent()
    conn.receive_data(b"READY 0 x\nERR shutdown server shutting down\n")
    conn.next_event()
    assert conn.next_event() == p.ErrorReply("shutdown", "server shutting down")
    assert conn.state is ClientState.CLOSED
    conn = put_sent()
    conn.receive_data(f"READY 0 x\nSTORED 10 {SHA} x\n".encode())
    conn.next_event()
    with pytest.raises(errors.ProtocolError, match="before the upload's body"):
        conn.next_event()
    assert conn.state is ClientState.BROKEN


def test_a_ready_past_the_end_breaks_the_stream() -> None:
    conn = put_sent(10)
    conn.receive_data(b"READY 11 x\n")
    with pytest.raises(errors.ProtocolError, match="past the end"):
        conn.next_event()
    assert conn.state is ClientState.BROKEN


def test_ready_answers_only_a_put() -> None:
    conn = greeted()
    conn.send(p.Ping())
    conn.receive_data(b"READY 0 x\n")
    with pytest.raises(errors.ProtocolError, match="expected PongReply"):
        conn.next_event()


def test_a_body_that_stops_coming_meets_the_idle_deadline() -> None:
    conn = ServerConnection(
        now=0.0, max_line=p.DEFAULT_MAX_LINE, handshake_timeout=10.0, idle_timeout=300.0
    )
    conn.send(p.NameReply("Client01"))
    conn.receive_data(f"HELLO\n{PUT_LINE}\n".encode())
    conn.next_event()
    conn.send(p.WelcomeReply("Client01", "filedock"))
    conn.next_event()
    conn.start()
    assert conn.get_timer() is None  # checking the destination: no deadline
    conn.ready(p.ReadyReply(0, "x"), 10)
    conn.heard_at = 50.0
    assert conn.get_timer() == 350.0
    assert conn.handle_timer(349.0) is None
    deadline = conn.handle_timer(350.0)
    assert deadline is not None
    assert deadline.data == b"ERR timeout disconnected for being idle: no upload bytes in 300 s\n"
    assert conn.state is State.CLOSING
