"""Files that change while they are served: a live log is served as the prefix announced."""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import filedock.server.repository
from tests.support import LineConn, ServerThread

MiB = 1024 * 1024


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(logging.getLogger("filedock"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="filedock"):
        yield


def greeted(server: ServerThread) -> LineConn:
    conn = LineConn(server.port, timeout=30)
    conn.greet()
    return conn


def header_for(data: bytes, path: str) -> str:
    return f"FILE {len(data)} {hashlib.sha256(data).hexdigest()} {path}"


def hash_after(monkeypatch: pytest.MonkeyPatch, change: Callable[[], None]) -> None:
    """Make the server's hashing start only after ``change()`` has changed the file."""
    real_hash_fd = filedock.server.repository.hash_fd

    def changed_first(*args: Any) -> str:
        change()
        return real_hash_fd(*args)

    monkeypatch.setattr(filedock.server.repository, "hash_fd", changed_first)
    # Every hashing in a worker, where it can be held (none on the loop).
    monkeypatch.setattr(filedock.server.repository, "INLINE_HASH_BYTES", 0)


def test_a_log_appended_to_while_hashed_is_served_as_its_prefix(
    repo: Path, make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    log_file = repo / "app.log"
    first = b"line one\nline two\n"
    log_file.write_bytes(first)

    def append() -> None:
        with open(log_file, "ab") as file:
            file.write(b"line three\n")

    hash_after(monkeypatch, append)
    server = make_server()
    conn = greeted(server)
    try:
        conn.send("GET app.log\nPING\n")
        assert conn.read_line() == header_for(first, "app.log")
        assert conn.read_exactly(len(first)) == first
        assert conn.read_line() == "PONG"
    finally:
        conn.close()


def test_a_file_growing_during_the_body_keeps_the_connection(
    repo: Path, make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    data = os.urandom(32 * MiB)  # more than the socket buffers hold: still sending
    (repo / "big.log").write_bytes(data)
    server = make_server()
    conn = greeted(server)
    try:
        conn.send("GET big.log\nPING\n")  # pipelined behind the body
        assert conn.read_line() == header_for(data, "big.log")
        with open(repo / "big.log", "ab") as file:
            file.write(b"appended meanwhile\n" * 1000)
        assert conn.read_exactly(len(data)) == data
        assert conn.read_line() == "PONG"
        assert conn.request("PING") == "PONG"
    finally:
        conn.close()


def test_a_file_shrinking_during_the_body_cuts_the_connection(
    repo: Path,
    make_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
    logged: None,
) -> None:
    data = os.urandom(32 * MiB)
    (repo / "big.log").write_bytes(data)
    server = make_server()
    conn = greeted(server)
    try:
        conn.send("GET big.log\nPING\n")
        assert conn.read_line() == header_for(data, "big.log")
        os.truncate(repo / "big.log", 0)  # rotated: the announced bytes no longer exist
        with pytest.raises(AssertionError, match="closed before the body ended"):
            conn.read_exactly(len(data))
    finally:
        conn.close()
    assert re.search(r"Sent file 'big\.log' size=\d+ (sha256=\S+ )?to Client01 ", caplog.text)
    assert "cut short: file shrank during the send" in caplog.text
    assert "Finished: Client01 (error, " in caplog.text


def test_a_file_shrinking_before_the_header_is_err_changed_on_a_live_connection(
    repo: Path, make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    (repo / "app.log").write_bytes(b"x" * 1000)
    hash_after(monkeypatch, lambda: os.truncate(repo / "app.log", 10))
    server = make_server()
    conn = greeted(server)
    try:
        conn.send("GET app.log\nPING\n")
        assert conn.read_line().startswith("ERR changed ")
        assert conn.read_line() == "PONG"
    finally:
        conn.close()


def test_a_same_size_rewrite_while_hashed_is_err_changed(
    repo: Path, make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = repo / "app.log"
    path.write_bytes(b"x" * 1000)
    stamp = path.stat()

    def rewrite() -> None:
        path.write_bytes(b"y" * 1000)
        os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns + 1))

    hash_after(monkeypatch, rewrite)
    server = make_server()
    conn = greeted(server)
    try:
        assert conn.request("GET app.log").startswith("ERR changed ")
        assert conn.request("PING") == "PONG"
    finally:
        conn.close()
