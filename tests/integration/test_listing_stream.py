"""A long listing goes out as the client takes it: others are answered meanwhile,
the reply is whole and exact, and a server stopping mid-listing drops the
connection rather than put a line among the records."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from filedock import protocol as p
from filedock.server.repository import Repository
from tests.support import HOST, LineConn, ServerThread, wait_until

FILES = 3000
NAME = "n" * 100  # long names: the listing is some 350 KB, more than the small buffers hold


@pytest.fixture
def long_repo(repo: Path) -> Path:
    for index in range(FILES):
        (repo / f"{NAME}{index:04d}").write_bytes(b"x")
    return repo


@contextlib.contextmanager
def slow_reader(server: ServerThread) -> Iterator[LineConn]:
    """A greeted connection with tiny socket buffers at both ends, so that a long
    reply fills them and the server must wait for it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect((HOST, server.port))
    conn = LineConn.__new__(LineConn)
    conn.sock, conn.timeout, conn._buffer = sock, 10.0, bytearray()
    conn.greet()
    assert server.server is not None
    sessions = server.server.sessions

    def shrink() -> None:
        for session in sessions:
            assert session.transport is not None
            peer = session.transport.get_extra_info("socket")
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

    server.sync(shrink)
    try:
        yield conn
    finally:
        conn.close()


def paused(server: ServerThread) -> bool:
    assert server.server is not None
    sessions = server.server.sessions
    return server.sync(lambda: any(session.flow.paused for session in sessions))


def expected_reply(root: Path) -> bytes:
    repo = Repository(root)
    try:
        infos = repo.listing()
    finally:
        repo.close()
    return p.encode_reply(p.FilesReply(len(infos))) + b"".join(map(p.encode_file_info, infos))


def test_a_client_slow_to_read_a_listing_holds_no_one_back(
    long_repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    server = make_server()
    with slow_reader(server) as reader:
        reader.send_line("LIST")
        wait_until(lambda: paused(server), timeout=10)  # its buffers are full: the server waits
        with LineConn(server.port) as other:
            other.greet()
            assert other.request("PING") == "PONG"
        reader.send_line("PING")  # after the listing, in its turn
        expected = expected_reply(long_repo)
        assert reader.read_exactly(len(expected), timeout=20) == expected
        assert reader.read_line() == "PONG"


def test_a_server_stopping_mid_listing_drops_the_connection_without_a_line(
    long_repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    server = make_server(shutdown_grace=0.0)
    with slow_reader(server) as reader:
        reader.send_line("LIST")
        wait_until(lambda: paused(server), timeout=10)
        assert server.server is not None
        closing = asyncio.run_coroutine_threadsafe(server.server.aclose(), server.loop)
        header = reader.read_line()
        assert header == f"FILES {FILES + 1}"
        received = bytearray()
        with contextlib.suppress(ConnectionResetError):  # read on, as a client would
            while chunk := reader.sock.recv(65536):
                received += chunk
        closing.result(10)
        lines = bytes(reader._buffer + received).split(b"\n")
        assert len(lines) < FILES + 1  # cut short
        assert not any(line.startswith(b"ERR") for line in lines)  # and nothing put among them
        assert all(line.startswith((NAME.encode(), b"sample.txt")) for line in lines[:-1])
