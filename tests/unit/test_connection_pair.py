"""A ServerConnection and a ClientConnection paired over a fake link, with a
fake clock (h11's tests/helpers.py::ConnectionPair): what one side sends, the
other reads in step, whether the bytes travel all at once or one at a time."""

from __future__ import annotations

from datetime import datetime

from filedock import protocol as p
from filedock.protocol.client import NEED_DATA as CLIENT_NEED_DATA
from filedock.protocol.client import BodyData, ClientConnection, ClientState, EndOfReply
from filedock.protocol.client import Event as ClientEvent
from filedock.protocol.server import (
    END_OF_INPUT,
    NEED_DATA,
    PAUSED,
    Deadline,
    ServerConnection,
)
from filedock.protocol.state import State

BODY = b"twelve bytes"
DIGEST = "a" * 64


class ConnectionPair:
    """Both sides of one connection; the server side answers as a session would
    (a few commands, a FILE whose body the driver sends after its header)."""

    def __init__(self, *, trickle: bool = False, idle_timeout: float = 0.0) -> None:
        self.server = ServerConnection(
            now=0.0, max_line=4096, handshake_timeout=10.0, idle_timeout=idle_timeout
        )
        self.client = ClientConnection()
        self.trickle = trickle  # deliver one byte at a time

    def to_client(self, data: bytes) -> list[ClientEvent]:
        events: list[ClientEvent] = []
        pieces = [data[i : i + 1] for i in range(len(data))] if self.trickle else [data]
        for piece in pieces:
            self.client.receive_data(piece)
            for _ in range(10_000):
                if self.client.state is ClientState.CLOSED:
                    break  # (after BYE or a closing ERR there is nothing to read)
                event = self.client.next_event()
                if event is CLIENT_NEED_DATA:
                    break
                events.append(event)
        return events

    def to_server(self, data: bytes, now: float = 0.0) -> bytes:
        """Feed the server; what it answers (as a session would)."""
        answers = b""
        pieces = [data[i : i + 1] for i in range(len(data))] if self.trickle else [data]
        for piece in pieces:
            self.server.receive_data(piece)
            answers += self.serve(now)
        return answers

    def serve(self, now: float) -> bytes:
        out = b""
        server = self.server
        for _ in range(10_000):
            event = server.next_event()
            if event is NEED_DATA or event is PAUSED:
                return out
            server.heard_at = now
            if isinstance(event, p.Hello):
                out += server.send(p.WelcomeReply("Client01", "filedock test"))
            elif isinstance(event, p.Ping):
                out += p.PONG
            elif isinstance(event, p.Status):
                record = p.encode_client_record(self.record())
                out += server.send(p.StatusReply(1)) + record
            elif isinstance(event, p.Get):
                server.start()  # a command that waits: the lines after it wait too
                out += server.send(p.FileReply(len(BODY), DIGEST, event.path))
                out += BODY  # (the driver's sendfile)
                server.body_sent()
                server.done(now)
            elif isinstance(event, p.Exit):
                out += server.send(p.ByeReply())
            elif event is END_OF_INPUT:
                server.end()
                return out
            else:
                raise AssertionError(f"unexpected {event!r}")
        raise AssertionError("no end of events")

    @staticmethod
    def record() -> p.ClientRecord:
        return p.ClientRecord("Client01", datetime(2026, 1, 1, 12, 0, 0), None, "127.0.0.1:1")

    def greet(self) -> None:
        assert self.to_client(self.server.send(p.NameReply("Client01"))) == [
            p.NameReply("Client01")
        ]
        welcome = self.to_server(self.client.send(p.Hello("me")))
        assert self.to_client(welcome) == [p.WelcomeReply("Client01", "filedock test")]
        assert self.client.state is ClientState.IDLE
        assert self.server.state is State.IDLE


def run_conversation(trickle: bool) -> list[ClientEvent]:
    pair = ConnectionPair(trickle=trickle)
    pair.greet()
    requests = b"".join(
        pair.client.send(request)
        for request in (p.Ping(), p.Status(), p.Get("a.txt"), p.Ping(), p.Exit())
    )
    events = pair.to_client(pair.to_server(requests))
    assert pair.client.state is ClientState.CLOSED
    assert pair.server.state is State.CLOSING
    pair.server.connection_lost()
    return events


def joined_bodies(events: list[ClientEvent]) -> list[object]:
    """The events with the pieces of a body joined (one byte at a time, a body
    comes in many pieces)."""
    joined: list[object] = []
    for event in events:
        if isinstance(event, BodyData):
            if joined and isinstance(joined[-1], bytes):
                joined[-1] += bytes(event.data)
            else:
                joined.append(bytes(event.data))
        else:
            joined.append(event)
    return joined


def test_a_whole_conversation_stays_in_step_on_both_sides() -> None:
    events = joined_bodies(run_conversation(trickle=False))
    assert events == [
        p.PongReply(),
        p.StatusReply(1),
        ConnectionPair.record(),
        EndOfReply(),
        p.FileReply(len(BODY), DIGEST, "a.txt"),
        BODY,
        EndOfReply(),
        p.PongReply(),
        p.ByeReply(),
    ]


def test_one_byte_at_a_time_reads_as_all_at_once() -> None:
    assert joined_bodies(run_conversation(trickle=True)) == joined_bodies(
        run_conversation(trickle=False)
    )


def test_the_idle_deadline_reaches_the_client_as_a_closing_error() -> None:
    pair = ConnectionPair(idle_timeout=5.0)
    pair.greet()
    assert pair.to_client(pair.to_server(pair.client.send(p.Ping()), now=1.0)) == [p.PongReply()]
    assert pair.server.handle_timer(5.9) is None  # 5 s from the PING, not from the WELCOME
    due = pair.server.handle_timer(6.0)
    assert isinstance(due, Deadline)
    assert due.data is not None
    (error,) = pair.to_client(due.data)
    assert isinstance(error, p.ErrorReply)
    assert error.code == p.ErrorCode.TIMEOUT
    assert pair.client.state is ClientState.CLOSED  # timeout is a code that closes
    assert pair.server.state is State.CLOSING


def test_the_client_end_of_stream_ends_the_server_side() -> None:
    pair = ConnectionPair()
    pair.greet()
    assert pair.to_server(pair.client.send(p.Ping())) == p.PONG
    pair.server.receive_data(b"")
    assert pair.serve(now=1.0) == b""
    assert pair.server.state is State.CLOSING
