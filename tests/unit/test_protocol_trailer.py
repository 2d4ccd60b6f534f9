"""v2's GET of a file whose digest the server does not know: ``FILE <size> - <path>``,
the body, then ``DIGEST <sha256>`` (or ``ERR changed``), on both sides of the conversation."""

from __future__ import annotations

import pytest

from filedock import errors
from filedock import protocol as p
from filedock.protocol.client import BodyData, ClientState, EndOfReply
from filedock.protocol.server import ServerConnection
from filedock.protocol.state import TRANSITIONS, State, StateError, Step, next_state
from tests.unit.test_client_connection import feed, greeted, normalised, splits
from tests.unit.test_server_connection import greeted as server_greeted_v1
from tests.unit.test_server_connection import named

SHA = "ab" * 32
OTHER = "cd" * 32


def server_greeted_v2() -> ServerConnection:
    conn = named()
    conn.receive_data(b"HELLO Client01 proto=2\n")
    assert conn.next_event() == p.Hello("Client01 proto=2")
    conn.send(p.WelcomeReply("Client01", "filedock", 2))
    return conn


# -- the lines ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "line"),
    [
        (p.FileReply(5, None, "a b.txt"), b"FILE 5 - a b.txt\n"),
        (p.FileReply(5, SHA, "a.txt"), f"FILE 5 {SHA} a.txt\n".encode()),
        (p.DigestReply(SHA), f"DIGEST {SHA}\n".encode()),
    ],
)
def test_file_and_digest_lines_round_trip(reply: p.Reply, line: bytes) -> None:
    assert p.encode_reply(reply) == line
    assert p.parse_reply(line.decode().rstrip("\n")) == reply


@pytest.mark.parametrize(
    "line",
    ["DIGEST", "DIGEST -", f"DIGEST {SHA[:-1]}", f"DIGEST {SHA} x", "FILE 5 -", "FILE x - a"],
)
def test_a_malformed_digest_or_file_line_is_a_protocol_error(line: str) -> None:
    with pytest.raises(errors.ProtocolError):
        p.parse_reply(line)


# -- the server's side ---------------------------------------------------------------------


def test_the_table_has_a_trailer_only_after_a_body_announced_without_its_digest() -> None:
    assert next_state(State.SENDING, Step.UNHASHED_BODY_SENT) is State.TRAILING
    assert next_state(State.TRAILING, Step.TRAILER) is State.BUSY
    for state, steps in TRANSITIONS.items():
        if state is not State.TRAILING:
            assert Step.TRAILER not in steps, state
    for step in (Step.ANSWER, Step.BODY, Step.DONE, Step.BODY_SENT):
        with pytest.raises(StateError):
            next_state(State.TRAILING, step)


def sent_unhashed() -> ServerConnection:
    """A v2 conversation that has just sent a body announced without its digest."""
    conn = server_greeted_v2()
    conn.start()
    assert conn.send(p.FileReply(3, None, "a")) == b"FILE 3 - a\n"
    assert conn.state is State.SENDING
    conn.body_sent()
    return conn


def test_a_v2_body_without_its_digest_is_followed_by_the_digest() -> None:
    conn = sent_unhashed()
    assert conn.state is State.TRAILING
    with pytest.raises(StateError):  # no other reply may come between the body and its digest
        conn.send(p.PongReply())
    assert conn.send(p.DigestReply(SHA)) == f"DIGEST {SHA}\n".encode()
    assert conn.state is State.BUSY
    conn.done(0.0)
    assert conn.state is State.IDLE


@pytest.mark.parametrize(
    ("code", "after"),
    [(p.ErrorCode.CHANGED, State.BUSY), (p.ErrorCode.SHUTDOWN, State.CLOSING)],
)
def test_an_err_may_stand_in_for_the_digest(code: p.ErrorCode, after: State) -> None:
    conn = sent_unhashed()
    conn.send(p.ErrorReply(code, "the file changed while it was sent"))
    assert conn.state is after


def test_a_body_with_its_digest_has_no_trailer() -> None:
    conn = server_greeted_v2()
    conn.start()
    conn.send(p.FileReply(3, SHA, "a"))
    conn.body_sent()
    assert conn.state is State.BUSY
    with pytest.raises(StateError):
        conn.send(p.DigestReply(SHA))


def test_a_v1_client_is_never_sent_a_header_without_its_digest() -> None:
    conn = server_greeted_v1()
    conn.start()
    with pytest.raises(StateError):
        conn.send(p.FileReply(3, None, "a"))
    assert conn.state is State.BUSY


# -- the client's side ---------------------------------------------------------------------

COLD_STREAM = b"FILE 6 - a.txt\n" + b"DIGEST" + f"DIGEST {SHA}\n".encode() + b"PONG\n"


@pytest.mark.parametrize("chunks", list(splits(COLD_STREAM)))
def test_the_digest_after_the_body_is_a_reply_however_the_stream_is_split(
    chunks: list[bytes],
) -> None:
    conn = greeted()
    conn.send(p.Get("a.txt"))
    conn.send(p.Ping())
    assert normalised(feed(conn, chunks)) == [
        p.FileReply(6, None, "a.txt"),
        BodyData(b"DIGEST"),  # body bytes that look like the trailer are body
        EndOfReply(),
        p.DigestReply(SHA),
        p.PongReply(),
    ]
    assert conn.state is ClientState.IDLE


def test_the_client_waits_for_the_trailer_after_the_body() -> None:
    conn = greeted()
    conn.send(p.Get("a"))
    assert normalised(feed(conn, [b"FILE 2 - a\nhi"])) == [
        p.FileReply(2, None, "a"),
        BodyData(b"hi"),
        EndOfReply(),
    ]
    assert conn.state is ClientState.TRAILER
    conn.send(p.Ping())  # pipelined behind the trailer
    assert feed(conn, [f"DIGEST {SHA}\nPONG\n".encode()]) == [p.DigestReply(SHA), p.PongReply()]
    assert conn.state is ClientState.IDLE


def test_err_changed_after_the_body_ends_the_reply() -> None:
    conn = greeted()
    conn.send(p.Get("a"))
    found = feed(conn, [b"FILE 2 - a\nhiERR changed the file changed\n"])
    assert found[-1] == p.ErrorReply("changed", "the file changed")
    assert conn.state is ClientState.IDLE


def test_a_closing_err_after_the_body_closes() -> None:
    conn = greeted()
    conn.send(p.Get("a"))
    feed(conn, [b"FILE 2 - a\nhi"])
    conn.receive_data(b"ERR shutdown bye\n")
    assert conn.next_event() == p.ErrorReply("shutdown", "bye")
    assert conn.state is ClientState.CLOSED


@pytest.mark.parametrize("line", [b"PONG\n", f"FILE 2 {SHA} a\n".encode(), b"ACK a\n"])
def test_another_line_in_the_digests_place_breaks_the_stream(line: bytes) -> None:
    conn = greeted()
    conn.send(p.Get("a"))
    conn.send(p.Ping())
    feed(conn, [b"FILE 2 - a\nhi"])
    conn.receive_data(line)
    with pytest.raises(errors.ProtocolError):
        conn.next_event()
    assert conn.state is ClientState.BROKEN


def test_a_digest_after_a_body_announced_with_one_breaks_the_stream() -> None:
    conn = greeted()
    conn.send(p.Get("a"))
    feed(conn, [f"FILE 2 {SHA} a\nhi".encode()])
    assert conn.state is ClientState.IDLE
    conn.send(p.Ping())
    conn.receive_data(f"DIGEST {OTHER}\n".encode())
    with pytest.raises(errors.ProtocolError):
        conn.next_event()
    assert conn.state is ClientState.BROKEN


def test_the_end_of_the_stream_before_the_digest_is_a_lost_connection() -> None:
    conn = greeted()
    conn.send(p.Get("a"))
    feed(conn, [b"FILE 2 - a\nhi"])
    conn.receive_data(b"")
    with pytest.raises(errors.ConnectionLost):
        conn.next_event()
    assert conn.state is ClientState.CLOSED
