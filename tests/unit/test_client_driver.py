"""The Client library over a scripted link instead of a socket: the one rule that
closes a conversation left out of step, and bytes that follow a body.

The link hands out the server's bytes in chunks of a chosen size; no network.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from filedock import errors
from filedock import protocol as p
from filedock.client.client import Client, DownloadResult

GREETING = b"NAME Client01\nWELCOME Client01 fake 0.0\n"
BODY = b"hello\nworld\n"
SHA = hashlib.sha256(BODY).hexdigest()


class ScriptedLink:
    """What Client needs of a SocketLink, reading from a fixed byte stream."""

    stream = b""
    chunk = 64 * 1024
    made: list[ScriptedLink] = []
    fingerprint = None  # plain TCP: no certificate
    pinned = False

    def __init__(self, host: str, port: int, **options: Any) -> None:
        self.timeout = options["timeout"]
        self.data = memoryview(self.stream)
        self.sent: list[bytes] = []
        self.closed = False
        ScriptedLink.made.append(self)

    def set_deadline(self, deadline: float | None, message: str, silent: str = "") -> None:
        pass

    def readable_within(self, seconds: float) -> bool:
        return bool(self.data)  # the scripted server's NAME is there at once

    def send(self, data: bytes) -> None:
        assert not self.closed
        self.sent.append(data)

    def recv_into(self, view: memoryview) -> int:
        assert not self.closed
        if not self.data:
            raise errors.TimedOut("no answer from the server within 1 s")
        count = min(len(view), len(self.data), self.chunk)
        view[:count] = self.data[:count]
        self.data = self.data[count:]
        return count

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def scripted(monkeypatch: pytest.MonkeyPatch) -> type[ScriptedLink]:
    monkeypatch.setattr("filedock.client.client.SocketLink", ScriptedLink)
    ScriptedLink.made = []
    return ScriptedLink


def client_reading(link: type[ScriptedLink], replies: bytes, chunk: int = 64 * 1024) -> Client:
    link.stream = GREETING + replies
    link.chunk = chunk
    return Client("127.0.0.1", 1, timeout=1)


def test_a_refusal_leaves_the_conversation_open(scripted: type[ScriptedLink]) -> None:
    client = client_reading(scripted, b"ERR not-found no such file\nPONG\n")
    with pytest.raises(errors.NotFound):
        client.download("x")
    assert not client.closed
    client.ping()


@pytest.mark.parametrize("code", sorted(p.CLOSING_CODES))
def test_a_closing_code_closes(scripted: type[ScriptedLink], code: str) -> None:
    client = client_reading(scripted, f"ERR {code} bye now\n".encode())
    with pytest.raises(errors.ServerClosing):
        client.ping()
    assert client.closed


def test_a_reply_to_another_request_closes(scripted: type[ScriptedLink]) -> None:
    client = client_reading(scripted, b"ACK ping\nPONG\n")
    with pytest.raises(errors.ProtocolError, match="expected PongReply"):
        client.ping()
    assert client.closed


def test_a_silence_mid_records_closes(scripted: type[ScriptedLink]) -> None:
    client = client_reading(scripted, b"STATUS 2\nClient01\t2026-11-24 15:29:28\t-\t127.0.0.1:1\n")
    with pytest.raises(errors.TimedOut):
        client.status()
    assert client.closed


@pytest.mark.parametrize("chunk", [1, 5, len(BODY), 64 * 1024])
def test_replies_right_behind_a_body_are_read_as_replies(
    scripted: type[ScriptedLink], tmp_path: Path, chunk: int
) -> None:
    header = f"FILE {len(BODY)} {SHA} a.txt\n".encode()
    client = client_reading(scripted, header + BODY + b"PONG\n" + header + BODY, chunk)
    assert client.get("a.txt", tmp_path).read_bytes() == BODY
    client.ping()
    assert client.get("a.txt", tmp_path).read_bytes() == BODY
    assert not client.closed


def test_a_body_for_another_path_is_left_unread_and_closes(
    scripted: type[ScriptedLink], tmp_path: Path
) -> None:
    client = client_reading(scripted, f"FILE {len(BODY)} {SHA} b.txt\n".encode() + BODY)
    with pytest.raises(errors.ProtocolError, match="asked for 'a.txt'"):
        client.get("a.txt", tmp_path)
    assert client.closed
    assert list(tmp_path.iterdir()) == []


def test_get_many_stops_at_a_reply_that_is_no_file(
    scripted: type[ScriptedLink], tmp_path: Path
) -> None:
    header = f"FILE {len(BODY)} {SHA} a.txt\n".encode()
    client = client_reading(scripted, header + BODY + b"ACK b.txt\n")
    outcomes = client.get_many(["a.txt", "b.txt", "c.txt"], tmp_path)
    assert isinstance(outcomes[0], DownloadResult)
    assert isinstance(outcomes[1], errors.ProtocolError)
    assert outcomes[2] is outcomes[1]
    assert client.closed
