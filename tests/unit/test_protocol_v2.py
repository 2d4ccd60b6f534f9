"""Version 2's words, without a network: the greeting that asks for it, HASH,
RANGE and PART, and LIST with a folder, on both sides of the conversation."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

import pytest

from filedock import errors
from filedock import protocol as p
from filedock.protocol.client import BodyData, ClientConnection, ClientState, EndOfReply
from filedock.protocol.state import State
from tests.unit.test_client_connection import feed, greeted, normalised, splits
from tests.unit.test_server_connection import greeted as server_greeted
from tests.unit.test_server_connection import named

SHA = "ab" * 32
MTIME = datetime(2026, 11, 24, 15, 29, 28, tzinfo=UTC)

# -- asking for v2 -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("words", "protocol"),
    [
        ("Client01 proto=2", 2),
        ("proto=2 Client01 filedock-client/2.0 token=abc", 2),
        ("token=abc proto=2", 2),
        ("Client01 proto=3", 2),  # a later client is answered in the highest this side speaks
        ("", 1),
        ("Client01", 1),
        ("Client01 proto=1", 1),
        ("Client01 proto=", 1),
        ("Client01 proto=x2", 1),
        ("Client01 proto=²", 1),
        ("Client01 PROTO=2", 1),
        ("Client01 myproto=2", 1),
    ],
)
def test_the_greeting_says_which_version_it_wants(words: str, protocol: int) -> None:
    assert p.Hello(words).protocol == protocol
    assert p.parse_greeting(f"HELLO {words}".strip()) == p.Hello(words)


@pytest.mark.parametrize(
    ("reply", "line"),
    [
        (
            p.WelcomeReply("Client01", "filedock 2.0.0", 2),
            b"WELCOME Client01 filedock 2.0.0 proto=2\n",
        ),
        (p.WelcomeReply("Client01", "filedock 1.0.0"), b"WELCOME Client01 filedock 1.0.0\n"),
    ],
)
def test_welcome_carries_the_version_apart_from_the_text_for_people(
    reply: p.WelcomeReply, line: bytes
) -> None:
    assert p.encode_reply(reply) == line
    assert p.parse_reply(line.decode()[:-1]) == reply


@pytest.mark.parametrize(
    "server", ["filedock 1.0.0 proto=x", "proto=2", "filedock proto=2 and more", ""]
)
def test_a_welcome_without_a_last_proto_field_is_v1(server: str) -> None:
    assert p.parse_reply(f"WELCOME Client01 {server}") == p.WelcomeReply("Client01", server)


def test_the_server_welcomes_in_the_version_asked_for() -> None:
    for words, line in (
        ("Client01 proto=2", b"WELCOME Client01 filedock proto=2\n"),
        ("Client01", b"WELCOME Client01 filedock\n"),
    ):
        conn = named()
        conn.receive_data(f"HELLO {words}\n".encode())
        assert conn.next_event() == p.Hello(words)
        assert conn.protocol == (2 if "proto" in words else 1)
        assert conn.send(p.WelcomeReply("Client01", "filedock", conn.protocol)) == line


def test_a_hello_after_the_welcome_changes_no_version() -> None:
    conn = server_greeted()
    conn.receive_data(b"HELLO Client01 proto=2\n")
    assert conn.next_event() == p.Message("HELLO Client01 proto=2")
    assert conn.protocol == 1


# -- requests ------------------------------------------------------------------------


def test_range_round_trips_with_a_path_that_holds_spaces() -> None:
    request = p.parse_request(f"range 12 {SHA} docs/a b.txt")
    assert request == p.Range(12, SHA, "docs/a b.txt")
    assert p.encode_request(request) == f"RANGE 12 {SHA} docs/a b.txt\n".encode()
    # A digest in upper case names the same digest.
    assert p.parse_request(f"RANGE 0 {SHA.upper()} x") == p.Range(0, SHA, "x")


@pytest.mark.parametrize(
    ("line", "why"),
    [
        ("RANGE", "RANGE needs an offset, a SHA-256 and a path"),
        ("RANGE 0", "RANGE needs an offset, a SHA-256 and a path"),
        (f"RANGE 0 {SHA}", "RANGE needs an offset, a SHA-256 and a path"),
        (f"RANGE 0 {SHA} ", "RANGE needs an offset, a SHA-256 and a path"),
        (f"RANGE -1 {SHA} x", "RANGE needs an offset in bytes"),
        (f"RANGE +1 {SHA} x", "RANGE needs an offset in bytes"),
        (f"RANGE ١ {SHA} x", "RANGE needs an offset in bytes"),
        (f"RANGE {'9' * 21} {SHA} x", "RANGE needs an offset in bytes"),
        ("RANGE 0 abc x", "RANGE needs a SHA-256 of 64 hex digits"),
        (f"RANGE 0 {'g' * 64} x", "RANGE needs a SHA-256 of 64 hex digits"),
    ],
)
def test_a_malformed_range_is_a_bad_request(line: str, why: str) -> None:
    with pytest.raises(errors.BadRequest) as caught:
        p.parse_request_line(line.encode())
    assert caught.value.text.startswith(why)


def test_hash_and_list_with_a_folder_round_trip() -> None:
    assert p.parse_request("HASH docs/a b.txt") == p.Hash("docs/a b.txt")
    assert p.encode_request(p.Hash("docs/a b.txt")) == b"HASH docs/a b.txt\n"
    assert p.parse_request_line(b"LIST docs") == p.ListFiles("docs")
    assert p.parse_request_line(b"LIST") is p.messages._LINE_REQUESTS[b"LIST"]  # the fast path


# -- replies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "line"),
    [
        (
            p.HashReply(p.FileDigest("docs/a b.txt", 12, MTIME, SHA)),
            f"HASH 12 {SHA} 2026-11-24T15:29:28Z docs/a b.txt\n".encode(),
        ),
        (p.PartReply(4, 12, SHA, "docs/a b.txt"), f"PART 4 12 {SHA} docs/a b.txt\n".encode()),
        (p.PartReply(12, 12, SHA, "x"), f"PART 12 12 {SHA} x\n".encode()),
    ],
)
def test_hash_and_part_replies_round_trip(reply: p.Reply, line: bytes) -> None:
    assert p.encode_reply(reply) == line
    assert p.parse_reply(line.decode()[:-1]) == reply


@pytest.mark.parametrize(
    "line",
    [
        f"PART 13 12 {SHA} x",  # starts past its end
        f"PART 0 12 {SHA}",
        f"PART 0 12 {SHA} ",
        "PART 0 12 abc x",
        f"PART -1 12 {SHA} x",
        f"PART 0 1e3 {SHA} x",
        f"HASH 12 {SHA} 2026-11-24 x",
        f"HASH 12 {SHA} 2026-11-24T15:29:28Z",
        f"HASH 12 {SHA[:-1]} 2026-11-24T15:29:28Z x",
        f"HASH x {SHA} 2026-11-24T15:29:28Z x",
    ],
)
def test_a_malformed_hash_or_part_line_is_a_protocol_error(line: str) -> None:
    with pytest.raises(errors.ProtocolError):
        p.parse_reply(line)


def test_the_new_codes_are_their_own_errors() -> None:
    assert isinstance(errors.error_for_code("bad-range", "past the end"), errors.BadRange)
    assert isinstance(errors.error_for_code("changed", "not that file"), errors.Changed)
    assert not p.ErrorCode.BAD_RANGE.closes


# -- the server's side ---------------------------------------------------------------


def test_a_hash_reply_keeps_the_state() -> None:
    conn = server_greeted()
    conn.start()
    conn.send(p.HashReply(p.FileDigest("a.txt", 3, MTIME, SHA)))
    assert conn.state is State.BUSY


# -- the client's side ---------------------------------------------------------------

PART_STREAM = f"PART 1 7 {SHA} docs/a b.txt\n".encode() + b"\nPONG\n"


@pytest.mark.parametrize("chunks", list(splits(PART_STREAM + b"PONG\n")))
def test_a_part_body_is_read_however_it_is_split(chunks: list[bytes]) -> None:
    conn = greeted()
    conn.send(p.Range(1, SHA, "docs/a b.txt"))
    conn.send(p.Ping())
    found = normalised(feed(conn, chunks))
    assert found == [
        p.PartReply(1, 7, SHA, "docs/a b.txt"),
        BodyData(b"\nPONG\n"),  # six bytes of body that look like lines are body
        EndOfReply(),
        p.PongReply(),
    ]
    assert conn.state is ClientState.IDLE


def test_a_part_at_the_end_has_no_body() -> None:
    conn = greeted()
    conn.send(p.Range(7, SHA, "x"))
    assert feed(conn, [f"PART 7 7 {SHA} x\n".encode()]) == [
        p.PartReply(7, 7, SHA, "x"),
        EndOfReply(),
    ]
    assert conn.state is ClientState.IDLE


@pytest.mark.parametrize(
    "chunks", list(splits(f"HASH 12 {SHA} 2026-11-24T15:29:28Z a\nPONG\n".encode()))
)
def test_a_hash_reply_is_one_line(chunks: list[bytes]) -> None:
    conn = greeted()
    conn.send(p.Hash("a"))
    conn.send(p.Ping())
    assert feed(conn, chunks) == [p.HashReply(p.FileDigest("a", 12, MTIME, SHA)), p.PongReply()]
    assert conn.state is ClientState.IDLE


@pytest.mark.parametrize(
    ("request_", "line"),
    [
        (p.Range(0, SHA, "x"), f"FILE 3 {SHA} x\n"),
        (p.Hash("x"), f"PART 0 3 {SHA} x\n"),
        (p.Get("x"), f"PART 0 3 {SHA} x\n"),
        (p.Get("x"), f"HASH 3 {SHA} 2026-11-24T15:29:28Z x\n"),
    ],
)
def test_a_reply_of_another_shape_breaks_the_stream(request_: p.CommandRequest, line: str) -> None:
    conn = greeted()
    conn.send(request_)
    conn.receive_data(line.encode())
    with pytest.raises(errors.ProtocolError):
        conn.next_event()
    assert conn.state is ClientState.BROKEN


def test_the_end_of_the_stream_in_a_part_body_is_a_lost_connection() -> None:
    conn = greeted()
    conn.send(p.Range(0, SHA, "x"))
    found: Iterable[object] = feed(conn, [f"PART 0 9 {SHA} x\nabc".encode()])
    assert normalised(list(found)) == [p.PartReply(0, 9, SHA, "x"), BodyData(b"abc")]  # type: ignore[arg-type]
    conn.receive_data(b"")
    with pytest.raises(errors.ConnectionLost):
        conn.next_event()


def test_a_client_connection_greets_in_v2() -> None:
    conn = ClientConnection()
    conn.receive_data(b"NAME Client01\n")
    conn.next_event()
    assert conn.send(p.Hello("Client01 proto=2")) == b"HELLO Client01 proto=2\n"
    conn.receive_data(b"WELCOME Client01 filedock 2.0.0 proto=2\n")
    assert conn.next_event() == p.WelcomeReply("Client01", "filedock 2.0.0", 2)
    assert conn.state is ClientState.IDLE
