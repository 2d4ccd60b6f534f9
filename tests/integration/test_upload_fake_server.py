"""Client.upload against a fake server: what it sends, when, and what each answer raises.

The fake server plays the protocol's side of ``PUT``: refusals before the
body (the client must not send a byte of it), ``READY <offset>`` (only the
rest is sent), a local file written to while it is sent (the server is made
to refuse it, nothing is placed), and a version 1 server (nothing is asked).
"""

from __future__ import annotations

import hashlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from filedock.client.client import STORED_PATIENCE_BYTES, Client
from filedock.client.localdigests import RACY_NS, LocalDigests
from filedock.client.upload import UnreadableFile
from filedock.errors import (
    BadRequest,
    Changed,
    ConnectionLost,
    Exists,
    Forbidden,
    IntegrityError,
    NoSpace,
    ProtocolError,
    ServerClosing,
    TooLarge,
    UploadCorrupted,
    UploadTooLarge,
)
from tests.support import random_bytes
from tests.support.fake_server import FakeServer, Peer

WELCOME_V2 = b"WELCOME Client01 fakedock 0.0 proto=2\n"


def greet_v2(peer: Peer) -> None:
    peer.send(b"NAME Client01\n")
    hello = peer.line()
    assert hello is not None
    assert "proto=2" in hello
    peer.send(WELCOME_V2)


def read_body(peer: Peer, count: int) -> bytes:
    """Exactly ``count`` body bytes from the client (those already buffered first)."""
    data = bytearray(peer._buffer[:count])
    del peer._buffer[:count]
    while len(data) < count:
        chunk = peer.sock.recv(min(1 << 20, count - len(data)))
        if not chunk:
            break
        data += chunk
    return bytes(data)


def nothing_more_before_next_line(peer: Peer) -> str | None:
    """The client's next line: after a refusal it must be a line, never body bytes."""
    return peer.line()


@pytest.fixture
def fake() -> Iterator[Callable[..., FakeServer]]:
    made: list[FakeServer] = []

    def make(script: Callable[[Peer], None]) -> FakeServer:
        server = FakeServer(script)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


@pytest.fixture
def local(tmp_path: Path) -> Path:
    path = tmp_path / "local.bin"
    path.write_bytes(random_bytes(300_000))
    return path


def next_put(peer: Peer) -> tuple[int, str, str, str]:
    """The client's next line, a PUT: its size, SHA-256, mode and path."""
    line = peer.line()
    assert line is not None
    verb, size, sha256, mode, path = line.split(" ", 4)
    assert verb == "PUT", line
    return int(size), sha256, mode, path


def ready_and_take_body(peer: Peer, offset: int = 0) -> tuple[int, str, str, bytes]:
    """Answer the next PUT with READY ``offset``; its size, SHA-256, path and the body sent."""
    size, sha256, _, path = next_put(peer)
    peer.send(f"READY {offset} {path}\n".encode())
    return size, sha256, path, read_body(peer, size - offset)


@pytest.mark.parametrize(
    ("reply", "error"),
    [
        (b"ERR forbidden uploads are not allowed\n", Forbidden),
        (b"ERR exists inbox/a.bin is there already\n", Exists),
        (b"ERR too-large over the limit of 4 GiB\n", UploadTooLarge),
        (b"ERR no-space not enough room\n", NoSpace),
        (b"ERR bad-request no\n", BadRequest),
    ],
)
def test_a_refusal_raises_its_class_and_no_body_byte_is_sent(
    fake: Callable[..., FakeServer], local: Path, reply: bytes, error: type[Exception]
) -> None:
    seen: list[str | None] = []

    def script(peer: Peer) -> None:
        greet_v2(peer)
        seen.append(" ".join(map(str, next_put(peer))))
        peer.send(reply)
        line = nothing_more_before_next_line(peer)  # a line, not the body
        if line is not None and line.startswith("HASH "):  # exists: is it the same file?
            peer.send(b"ERR not-found no such file\n")
            line = peer.line()
        seen.append(line)
        peer.send(b"PONG\n")
        peer.goodbye()

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=5) as client:
        with pytest.raises(error):
            client.upload(local, "inbox/a.bin")
        client.ping()  # the connection is still in step
    server.close()
    size, sha256, mode, path = (seen[0] or "").split(" ")
    data = local.read_bytes()
    assert (int(size), sha256, mode, path) == (
        len(data),
        hashlib.sha256(data).hexdigest(),
        "new",
        "inbox/a.bin",
    )
    assert seen[1] == "PING"


def test_too_large_is_also_a_too_large_and_integrity_an_integrity_error() -> None:
    assert issubclass(UploadTooLarge, TooLarge)
    assert issubclass(UploadCorrupted, IntegrityError)


def test_ready_with_an_offset_sends_only_the_rest(
    fake: Callable[..., FakeServer], local: Path
) -> None:
    data = local.read_bytes()
    offset = 123_457
    got: list[bytes] = []

    def script(peer: Peer) -> None:
        greet_v2(peer)
        size, sha256, path, body = ready_and_take_body(peer, offset)
        got.append(body)
        peer.send(f"STORED {size} {sha256} {path}\n".encode())
        got.append((nothing_more_before_next_line(peer) or "").encode())
        peer.send(b"PONG\n")
        peer.goodbye()

    server = fake(script)
    reports = []
    with Client("127.0.0.1", server.port, timeout=5) as client:
        result = client.upload(local, "a.bin", replace=True, progress=reports.append)
        client.ping()
    server.close()
    assert got == [data[offset:], b"PING"]  # the rest, exactly, then the next line
    assert (result.outcome, result.resumed_from, result.size) == ("resumed", offset, len(data))
    assert reports[-1].done == reports[-1].total == len(data)
    assert reports[-1].bytes_done == len(data) - offset
    assert all(report.done >= offset for report in reports)


def test_a_file_written_to_while_it_is_sent_is_refused_and_reported(
    fake: Callable[..., FakeServer], tmp_path: Path
) -> None:
    # Larger than the sockets' buffers: the client is still sending when it changes.
    local = tmp_path / "big.bin"
    local.write_bytes(random_bytes(32 * 1024 * 1024))
    data = local.read_bytes()
    received: list[bytes] = []

    def script(peer: Peer) -> None:
        greet_v2(peer)
        size, sha256, _, path = next_put(peer)
        peer.send(f"READY 0 {path}\n".encode())
        first = read_body(peer, 1000)
        with local.open("r+b") as change:  # the file changes while it is sent
            change.write(b"X" * 10)
        rest = read_body(peer, size - 1000)
        received.append(first + rest)
        whole = first + rest
        if hashlib.sha256(whole).hexdigest() == sha256:
            peer.send(f"STORED {size} {sha256} {path}\n".encode())
        else:
            peer.send(b"ERR integrity the bytes do not match their SHA-256\n")
        peer.serve_rest()

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=5) as client:
        with pytest.raises(Changed, match="changed while it was sent"):
            client.upload(local, "a.bin")
        client.ping()
    server.close()
    [sent] = received
    assert len(sent) == len(data)
    assert sent[-1] != data[-1]  # the last byte held back, and made not to match


def test_an_honest_integrity_error_is_one(fake: Callable[..., FakeServer], local: Path) -> None:
    def script(peer: Peer) -> None:
        greet_v2(peer)
        ready_and_take_body(peer)
        peer.send(b"ERR integrity the bytes do not match their SHA-256\n")
        peer.serve_rest()

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=5) as client:
        with pytest.raises(UploadCorrupted):
            client.upload(local, "a.bin")
        client.ping()
    server.close()


def stored_for_another_file(peer: Peer) -> None:
    size, sha256, _, _ = ready_and_take_body(peer)
    peer.send(f"STORED {size} {sha256} other.bin\n".encode())


def ready_past_the_end(peer: Peer) -> None:
    size, _, _, path = next_put(peer)
    peer.send(f"READY {size + 1} {path}\n".encode())


@pytest.mark.parametrize("answer", [stored_for_another_file, ready_past_the_end])
def test_an_answer_for_another_upload_is_a_protocol_error_and_closes(
    fake: Callable[..., FakeServer], local: Path, answer: Callable[[Peer], None]
) -> None:
    def script(peer: Peer) -> None:
        greet_v2(peer)
        answer(peer)
        peer.wait_closed()

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=5) as client:
        with pytest.raises(ProtocolError):
            client.upload(local, "a.bin")
        assert client.closed
    server.close()


@pytest.mark.parametrize("remote", ["", "/abs.bin", "folder/", "two\nlines", "nul\x00"])
def test_a_bad_server_path_is_refused_before_anything_is_sent(
    fake: Callable[..., FakeServer], local: Path, remote: str
) -> None:
    server = fake(lambda peer: (greet_v2(peer), peer.serve_rest()))
    with Client("127.0.0.1", server.port, timeout=5) as client:
        with pytest.raises(BadRequest):
            client.upload(local, remote)
        client.ping()
    server.close()
    assert not any(line.startswith("PUT") for line in server.lines)


def test_a_missing_or_odd_local_file_is_refused_before_anything_is_sent(
    fake: Callable[..., FakeServer], tmp_path: Path
) -> None:
    server = fake(lambda peer: (greet_v2(peer), peer.serve_rest()))
    with Client("127.0.0.1", server.port, timeout=5) as client:
        with pytest.raises(UnreadableFile, match="cannot read"):
            client.upload(tmp_path / "missing.bin", "a.bin")
        with pytest.raises(UnreadableFile, match="not a regular file"):
            client.upload(tmp_path, "a.bin")
        client.ping()
    server.close()
    assert not any(line.startswith("PUT") for line in server.lines)


def test_a_version_1_server_gets_no_put(fake: Callable[..., FakeServer], local: Path) -> None:
    def script(peer: Peer) -> None:
        peer.greet()  # WELCOME without proto=2
        peer.serve_rest()

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=5) as client:
        assert client.protocol == 1
        with pytest.raises(Forbidden, match="protocol 1"):
            client.upload(local, "a.bin")
        client.ping()
    server.close()
    assert not any(line.startswith("PUT") for line in server.lines)


def test_an_empty_file_sends_no_body(fake: Callable[..., FakeServer], tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    lines: list[str | None] = []

    def script(peer: Peer) -> None:
        greet_v2(peer)
        _, sha256, _, path = next_put(peer)
        peer.send(f"READY 0 {path}\nSTORED 0 {sha256} {path}\n".encode())
        lines.append(peer.line())
        peer.send(b"PONG\n")
        peer.goodbye()

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=5) as client:
        result = client.upload(empty, "e")
        client.ping()
    server.close()
    assert result.sha256 == hashlib.sha256(b"").hexdigest()
    assert lines == ["PING"]


def test_the_local_digest_cache_spares_a_second_hashing(
    fake: Callable[..., FakeServer], local: Path
) -> None:
    def script(peer: Peer) -> None:
        greet_v2(peer)
        for _ in range(2):
            next_put(peer)
            peer.send(b"ERR exists there already\n")
            assert (peer.line() or "").startswith("HASH ")
            peer.send(f"HASH 1 {'0' * 64} 2026-01-01T00:00:00Z a.bin\n".encode())
        peer.serve_rest()

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=5, cache_dir=local.parent / "cache") as client:
        # A clock past git's racy window, so the digest of a file just written is kept.
        client.local_digests = LocalDigests(
            local.parent / "cache", clock=lambda: time.time_ns() + 10 * RACY_NS
        )
        for _ in range(2):
            with pytest.raises(Exists):
                client.upload(local, "a.bin")
        assert client.local_digests.misses == 1
    server.close()


def test_a_server_that_stops_in_the_middle_of_a_body_says_why(
    fake: Callable[..., FakeServer], tmp_path: Path
) -> None:
    local = tmp_path / "big.bin"
    local.write_bytes(random_bytes(32 * 1024 * 1024))

    def script(peer: Peer) -> None:
        greet_v2(peer)
        _, _, _, path = next_put(peer)
        peer.send(f"READY 0 {path}\n".encode())
        read_body(peer, 1000)
        peer.send(b"ERR shutdown the server is stopping\n")
        peer.sock.shutdown(socket.SHUT_WR)
        # Gone without reading the rest: the client's next sends fail.

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=5) as client:
        with pytest.raises(ServerClosing, match="stopping"):
            client.upload(local, "a.bin")
        assert client.closed
    server.close()


def test_stored_may_take_longer_than_the_timeout_as_the_server_syncs_a_large_file(
    fake: Callable[..., FakeServer], tmp_path: Path
) -> None:
    local = tmp_path / "big.bin"
    local.write_bytes(random_bytes(STORED_PATIENCE_BYTES))  # a second more than --timeout

    def script(peer: Peer) -> None:
        greet_v2(peer)
        size, sha256, path, _ = ready_and_take_body(peer)
        time.sleep(1.5)  # the server's fsync, on a slow disk: longer than the timeout
        peer.send(f"STORED {size} {sha256} {path}\n".encode())
        peer.serve_rest()

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=1.0) as client:
        assert client.upload(local, "a.bin").outcome == "stored"
        assert client._link.timeout == 1.0  # each silence is bounded as before again
        client.ping()
    server.close()


def test_a_folder_upload_sends_the_next_put_while_the_server_syncs_the_last_file(
    fake: Callable[..., FakeServer], tmp_path: Path
) -> None:
    root = tmp_path / "two"
    root.mkdir()
    (root / "a").write_bytes(b"a" * 5000)
    (root / "b").write_bytes(b"b" * 7000)
    order: list[str] = []

    def script(peer: Peer) -> None:
        greet_v2(peer)
        for _ in range(2):
            line = peer.line() or ""
            assert line.startswith("HASH "), line
            peer.send(b"ERR not-found no such file\n")
        size, sha256, path, _ = ready_and_take_body(peer)
        order.append(f"body {path}")
        # Not answered yet: a client that waits for STORED would never send this.
        second = next_put(peer)
        order.append(f"PUT {second[3]}")
        peer.send(f"STORED {size} {sha256} {path}\n".encode())
        peer.send(f"READY 0 {second[3]}\n".encode())
        read_body(peer, second[0])
        peer.send(f"STORED {second[0]} {second[1]} {second[3]}\n".encode())
        peer.serve_rest()

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=5) as client:
        summary = client.upload_tree(root, "up")
        client.ping()
    server.close()
    assert order == ["body up/a", "PUT up/b"]
    assert (summary.stored, summary.failed, summary.bytes) == (2, 0, 12000)


def test_a_folder_upload_whose_connection_breaks_gives_every_file_left_its_error(
    fake: Callable[..., FakeServer], tmp_path: Path
) -> None:
    root = tmp_path / "three"
    root.mkdir()
    for name in ("a", "b", "c"):
        (root / name).write_bytes(name.encode() * 100)

    def script(peer: Peer) -> None:
        greet_v2(peer)
        for _ in range(3):
            peer.line()
            peer.send(b"ERR not-found no such file\n")
        ready_and_take_body(peer)
        next_put(peer)  # b's PUT, sent behind a's body; then the server is gone

    server = fake(script)
    with Client("127.0.0.1", server.port, timeout=5) as client:
        summary = client.upload_tree(root, "")
        assert client.closed
    server.close()
    assert summary.failed == 3
    assert all(isinstance(outcome, ConnectionLost) for outcome in summary.results)
    assert [path for _, path in summary.files] == ["a", "b", "c"]
