"""The library's everyday calls: ``open`` (a verified stream), ``read``, ``stat``,
``exists``, the ``tls=`` shortcuts, ``repr``, the one progress signature, and
what each does against a version 1 server."""

from __future__ import annotations

import hashlib
import inspect
import io
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest

import filedock
import filedock.client.streaming as streaming
from filedock.client.client import Client
from filedock.errors import (
    Changed,
    ConnectionLost,
    Forbidden,
    IntegrityError,
    NotFound,
    TooLarge,
)
from tests.support import HOST, ServerThread
from tests.support.fake_server import GREETING, WELCOME, FakeServer, Peer, Script

BIG = bytes(range(256)) * 4096  # 1 MiB: several receives
WHEN = "2001-01-01T00:00:00Z"


@pytest.fixture
def files(repo: Path) -> Path:
    (repo / "big.bin").write_bytes(BIG)
    (repo / "docs").mkdir()
    (repo / "docs" / "a.txt").write_bytes(b"line one\nline two\n")
    return repo


# -- open ---------------------------------------------------------------------


def test_open_reads_the_verified_body_and_the_connection_goes_on(
    files: Path, connect: Callable[..., Client]
) -> None:
    client = connect()
    with client.open("big.bin") as remote:
        assert (remote.path, remote.size, remote.tell()) == ("big.bin", len(BIG), 0)
        head = remote.read(10)
        rest = remote.read()
        assert remote.verified
        assert remote.sha256 == hashlib.sha256(BIG).hexdigest()
        assert remote.read() == b""  # the end, again
    assert head + rest == BIG
    assert client.ping() < 5.0  # in step after a full read
    assert client.who() == [client.name]


def test_open_in_chunks_readinto_and_lines(files: Path, connect: Callable[..., Client]) -> None:
    client = connect()
    with client.open("big.bin") as remote:
        chunks = list(remote.iter_bytes(100_000))
    assert b"".join(chunks) == BIG
    assert [len(c) for c in chunks[:-1]] == [100_000] * (len(chunks) - 1)
    with client.open("big.bin") as remote:
        buffer = bytearray(300_000)
        assert remote.readinto(buffer) == 300_000  # filled whole, though it took receives
        assert bytes(buffer) == BIG[:300_000]
        assert b"".join(remote.iter_bytes()) == BIG[300_000:]  # as they come
    with client.open("docs/a.txt") as remote:
        assert list(remote) == [b"line one\n", b"line two\n"]  # a binary file's lines
    with client.open("docs/a.txt") as remote:
        text = io.TextIOWrapper(remote, encoding="utf-8")
        assert text.readline() == "line one\n"
    assert client.ping() < 5.0


def test_an_empty_file_opens_verified(repo: Path, connect: Callable[..., Client]) -> None:
    (repo / "empty").write_bytes(b"")
    client = connect()
    with client.open("empty") as remote:
        assert remote.read() == b""
        assert remote.verified


def test_closing_early_drops_the_rest_and_the_session_goes_on(
    files: Path, connect: Callable[..., Client], server: ServerThread
) -> None:
    client = connect()
    with client.open("big.bin") as remote:
        assert remote.read(5) == BIG[:5]
    assert remote.closed
    assert not remote.verified
    assert not client.closed
    assert client.read("sample.txt") == b"hello\n"  # the same session, in step
    assert server.connected_count() == 1
    with pytest.raises(ValueError, match="closed file"):
        remote.read(1)


def test_closing_early_with_a_large_rest_closes_the_connection(
    files: Path, connect: Callable[..., Client], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(streaming, "DRAIN_LIMIT", 1000)  # BIG's rest is "large"
    client = connect()
    with client.open("big.bin") as remote:
        remote.read(5)
    assert client.closed
    with pytest.raises(ConnectionLost, match="closed"):
        client.ping()


def test_no_other_command_while_a_file_is_open(files: Path, connect: Callable[..., Client]) -> None:
    client = connect()
    remote = client.open("big.bin")
    with pytest.raises(RuntimeError, match="big.bin is open for reading"):
        client.ping()
    with pytest.raises(RuntimeError, match="is open for reading"):
        client.open("sample.txt")
    remote.close()
    assert client.ping() < 5.0


def test_open_a_missing_file_raises_and_the_connection_goes_on(
    connect: Callable[..., Client],
) -> None:
    client = connect()
    with pytest.raises(NotFound):
        client.open("nope.txt")
    assert client.ping() < 5.0


def test_exit_while_a_file_is_open_closes_the_connection(
    files: Path, connect: Callable[..., Client]
) -> None:
    client = connect()
    remote = client.open("big.bin")
    assert client.exit() is False  # the body is in the way of EXIT
    assert client.closed
    with pytest.raises(ConnectionLost):
        remote.read()
    remote.close()


def test_open_reports_progress_as_the_other_transfers_do(
    files: Path, connect: Callable[..., Client]
) -> None:
    seen: list[filedock.TransferProgress] = []
    client = connect()
    with client.open("big.bin", progress=seen.append) as remote:
        remote.read()
    assert seen[-1].path == "big.bin"
    assert (seen[-1].done, seen[-1].total) == (len(BIG), len(BIG))


def _serving(header: bytes, body: bytes, trailer: bytes = b"", *, proto2: bool = False) -> Script:
    """A server answering the one GET with ``header``, ``body`` and ``trailer``, then PINGs."""

    def script(peer: Peer) -> None:
        peer.send(GREETING)
        assert (peer.line() or "").startswith("HELLO")
        peer.send(WELCOME.rstrip(b"\n") + (b" proto=2\n" if proto2 else b"\n"))
        assert peer.line() == "GET x.bin"
        peer.send(header + body + trailer)
        peer.serve_rest()

    return script


def test_a_body_that_does_not_verify_raises_at_the_end_and_the_connection_goes_on(
    fake_server: Callable[..., FakeServer],
) -> None:
    body = b"abcdef" * 30_000
    wrong = hashlib.sha256(b"other").hexdigest()
    server = fake_server(_serving(f"FILE {len(body)} {wrong} x.bin\n".encode(), body))
    with Client(HOST, server.port, timeout=5) as client:
        assert client.protocol == 1
        remote = client.open("x.bin")
        got = remote.read(1000)
        with pytest.raises(IntegrityError) as caught:
            remote.read()  # the read that reaches the end: its bytes are withheld
        assert caught.value.expected == wrong
        assert caught.value.actual == hashlib.sha256(body).hexdigest()
        with pytest.raises(IntegrityError):
            remote.read()
        remote.close()
        assert got == body[:1000]
        assert client.ping() < 5.0  # in step: the body was read whole


def test_a_trailer_digest_is_checked_and_err_changed_raises_changed(
    fake_server: Callable[..., FakeServer],
) -> None:
    body = b"12345"
    server = fake_server(
        _serving(
            f"FILE {len(body)} - x.bin\n".encode(),
            body,
            b"ERR changed the file changed while it was sent\n",
            proto2=True,
        )
    )
    with Client(HOST, server.port, timeout=5) as client:
        with client.open("x.bin") as remote, pytest.raises(Changed):
            remote.read()
        assert client.ping() < 5.0


def test_a_good_trailer_digest_verifies(fake_server: Callable[..., FakeServer]) -> None:
    body = b"12345"
    digest = hashlib.sha256(body).hexdigest()
    server = fake_server(
        _serving(
            f"FILE {len(body)} - x.bin\n".encode(), body, f"DIGEST {digest}\n".encode(), proto2=True
        )
    )
    with Client(HOST, server.port, timeout=5) as client:
        assert client.read("x.bin") == body
        assert client.ping() < 5.0


# -- read -----------------------------------------------------------------------


def test_read_refuses_a_file_over_its_limit_and_the_connection_goes_on(
    files: Path, connect: Callable[..., Client]
) -> None:
    client = connect()
    assert client.read("big.bin") == BIG
    with pytest.raises(TooLarge, match=r"big.bin is 1048576 bytes, over the read limit of 1000"):
        client.read("big.bin", limit=1000)
    assert client.read("big.bin", limit=None) == BIG
    assert client.ping() < 5.0
    with pytest.raises(ValueError, match="limit"):
        client.read("big.bin", limit=-1)


# -- stat, exists ----------------------------------------------------------------


def test_stat_and_exists(files: Path, connect: Callable[..., Client]) -> None:
    client = connect()
    info = client.stat("docs/a.txt")
    assert isinstance(info, filedock.FileStat)
    assert isinstance(info, filedock.FileInfo)
    assert (info.path, info.size, info.sha256) == ("docs/a.txt", 18, None)
    assert info.mtime.tzinfo is not None
    digested = client.stat("docs/a.txt", digest=True)
    assert digested.sha256 == hashlib.sha256(b"line one\nline two\n").hexdigest()
    assert (digested.size, digested.mtime) == (info.size, info.mtime)
    assert client.stat("sample.txt").size == 6
    with pytest.raises(NotFound, match="no such file"):
        client.stat("docs/nope.txt")
    with pytest.raises(NotFound, match="docs is a folder"):
        client.stat("docs")
    assert client.exists("sample.txt")
    assert client.exists("docs/a.txt")
    assert client.exists("docs")  # a folder holding files
    assert not client.exists("doc")
    assert not client.exists("docs/nope.txt")
    assert client.ping() < 5.0


def _v1_listing(peer: Peer) -> None:
    peer.greet()  # WELCOME without proto=2
    for _ in range(10):
        line = peer.line()
        if line is None:
            return
        if line == "LIST":
            peer.send(f"FILES 2\ndocs/a.txt\t3\t{WHEN}\nsample.txt\t6\t{WHEN}\n".encode())
        elif line == "EXIT":
            peer.send(b"BYE\n")
            return
        else:
            raise AssertionError(f"a version 1 server was sent {line!r}")


def test_stat_and_exists_on_a_version_1_server_read_its_whole_listing(
    fake_server: Callable[..., FakeServer],
) -> None:
    server = fake_server(_v1_listing)
    with Client(HOST, server.port, timeout=5) as client:
        assert client.protocol == 1
        assert client.stat("docs/a.txt").size == 3  # LIST, never LIST docs
        with pytest.raises(Forbidden, match="protocol 1, which has no HASH"):
            client.stat("docs/a.txt", digest=True)  # refused before anything is sent
        assert client.exists("docs")
        assert not client.exists("other.txt")


# -- tls=, repr, progress ---------------------------------------------------------


def test_tls_shortcuts(tls_server: ServerThread, ca_file: str, server: ServerThread) -> None:
    with Client(HOST, tls_server.port, tls=ca_file, timeout=5) as client:  # a CA file
        assert client.ping() < 5.0
    with Client(HOST, tls_server.port, tls=Path(ca_file), timeout=5) as client:
        assert client.ping() < 5.0
    # True: the system's store, which does not know the test CA.
    with pytest.raises(ConnectionLost, match="certificate .* was not accepted"):
        Client(HOST, tls_server.port, tls=True, timeout=5)
    with Client(HOST, server.port, tls=False, timeout=5) as client:  # plain TCP
        assert client.ping() < 5.0
    context = ssl.create_default_context(cafile=ca_file)
    with Client(HOST, tls_server.port, tls=context, timeout=5) as client:  # as before
        assert client.ping() < 5.0
    with pytest.raises(ValueError, match="cannot use 'no-such-ca.pem' as a CA file"):
        Client(HOST, tls_server.port, tls="no-such-ca.pem")
    with pytest.raises(TypeError, match="tls must be"):
        Client(HOST, tls_server.port, tls=1)  # type: ignore[arg-type]


def test_repr_names_the_server_and_the_client(connect: Callable[..., Client]) -> None:
    client = connect()
    assert repr(client) == f"<Client {HOST}:{client.port} {client.name}>"
    client.close()
    assert repr(client) == f"<Client {HOST}:{client.port} {client.name} closed>"


def test_every_method_that_moves_bytes_takes_the_one_progress_callback() -> None:
    takers = [
        name
        for name, method in inspect.getmembers(Client, inspect.isfunction)
        if "progress" in inspect.signature(method).parameters and not name.startswith("_")
    ]
    assert set(takers) >= {
        "download",
        "download_tree",
        "get",
        "get_many",
        "get_range",
        "mirror",
        "open",
        "read",
        "send_line",
        "upload",
        "upload_tree",
    }
    for name in takers:
        annotation = inspect.signature(getattr(Client, name)).parameters["progress"].annotation
        assert annotation == "ProgressCallback | None", name
