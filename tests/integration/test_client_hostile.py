"""The client against hostile or broken servers, and a full disk.

A fake server (a plain socket in a thread on 127.0.0.1, port 0) runs a script
on the one connection it takes: garbage instead of NAME, an endless line,
silence, a body cut short, a wrong hash, a path that leaves the downloads
folder. The library must raise one clear FiledockError subclass, write nothing
outside its folder and leave no temporary file. Lies about FILE headers are
covered in depth by test_malicious_server.py; the shell facing these servers
(``Client.py`` in a subprocess) is tested in tests/e2e/test_client_hostile.py.
"""

from __future__ import annotations

import errno
import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import filedock.client.download
from filedock.client.client import Client
from filedock.errors import (
    ConnectionLost,
    ProtocolError,
    SaveError,
    ServerClosing,
    TimedOut,
)
from filedock.protocol import CLOSING_CODES, ErrorCode
from tests.support import HOST, ServerThread
from tests.support.fake_server import FakeServer, Peer, Script

MiB = 1024 * 1024
BODY = b"the payload\n"
BODY_SHA = hashlib.sha256(BODY).hexdigest()


def files_in(root: Path) -> list[Path]:
    """Every file (not folder) under ``root``, hidden ones included."""
    return sorted(Path(folder) / name for folder, _, names in os.walk(root) for name in names)


# -- scripts --------------------------------------------------------------------------


def garbage(data: bytes) -> Script:
    def script(peer: Peer) -> None:
        peer.send(data)
        peer.wait_closed()

    return script


def endless_name(peer: Peer) -> None:
    peer.send(b"NAME " + b"x" * MiB)  # no line feed, ever
    peer.wait_closed()


def endless_reply(peer: Peer) -> None:
    peer.greet()
    peer.line()
    peer.send(b"PONG" + b"x" * MiB)
    peer.wait_closed()


def silent(peer: Peer) -> None:
    peer.wait_closed()


def silent_after_name(peer: Peer) -> None:
    peer.send(b"NAME Client01\n")
    peer.wait_closed()


def silent_mid_body(peer: Peer) -> None:
    peer.greet()
    path = peer.requested()
    peer.send(f"FILE {len(BODY)} {BODY_SHA} {path}\n".encode() + BODY[:5])
    peer.wait_closed()


def hang_up(peer: Peer) -> None:
    pass


# -- the library -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"SSH-2.0-OpenSSH_9.6\r\n",
        b"HTTP/1.1 400 Bad Request\r\n\r\n",
        b"\xff\xfe\x00\x01 not text\n",
        b"NAME\n",
        b"NAME two words\n",
        b"WELCOME Client01 too early\n",
        b"FILE 5 " + BODY_SHA.encode() + b" x\nhello",
    ],
    ids=["ssh", "http", "binary", "bare NAME", "NAME with spaces", "WELCOME", "FILE"],
)
def test_garbage_instead_of_name_is_a_protocol_error(
    fake_server: Callable[..., FakeServer], data: bytes
) -> None:
    server = fake_server(garbage(data))
    with pytest.raises(ProtocolError):  # at once: not TimedOut, not ConnectionLost
        Client(HOST, server.port, timeout=0.5)


@pytest.mark.parametrize("script", [endless_name, endless_reply], ids=["as NAME", "as a reply"])
def test_an_endless_line_is_a_protocol_error_not_a_wait(
    fake_server: Callable[..., FakeServer], script: Script
) -> None:
    server = fake_server(script)
    started = time.monotonic()
    with pytest.raises(ProtocolError, match="line"):  # noqa: PT012 - the handshake may raise
        client = Client(HOST, server.port, timeout=0.5)
        try:
            client.ping()
        finally:
            client.close()
    assert time.monotonic() - started < 0.5 + 1.0


@pytest.mark.parametrize("script", [silent, silent_after_name], ids=["says nothing", "only NAME"])
def test_a_silent_server_times_out(fake_server: Callable[..., FakeServer], script: Script) -> None:
    server = fake_server(script)
    started = time.monotonic()
    with pytest.raises(TimedOut):
        Client(HOST, server.port, timeout=0.5)
    took = time.monotonic() - started
    assert 0.4 < took < 0.5 + 1.0, f"gave up after {took:.2f} s"


def test_a_server_silent_mid_body_times_out_and_saves_nothing(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    server = fake_server(silent_mid_body)
    with Client(HOST, server.port, timeout=0.5) as client:
        started = time.monotonic()
        with pytest.raises(TimedOut):
            client.get("x.txt", downloads)
        assert time.monotonic() - started < 0.5 + 1.0
        assert client.closed  # out of step with the server for good
        with pytest.raises(ConnectionLost):
            client.ping()
    assert files_in(tmp_path) == []


def serving_what_was_asked(peer: Peer) -> None:
    """A server that serves any name asked for, hidden ones too."""
    peer.greet()
    path = peer.requested()
    peer.send(f"FILE {len(BODY)} {BODY_SHA} {path}\n".encode() + BODY)
    peer.wait_closed()


@pytest.mark.parametrize("path", [".bashrc", "sub/.hidden/x.txt", ".x.txt.part"])
def test_a_hidden_name_from_the_server_is_never_saved(
    fake_server: Callable[[Script], FakeServer], tmp_path: Path, path: str
) -> None:
    downloads = tmp_path / "downloads"
    server = fake_server(serving_what_was_asked)
    with (
        Client(HOST, server.port, timeout=5) as client,
        pytest.raises(ProtocolError, match="hidden path"),
    ):
        client.get(path, downloads)  # a dotfile, or another download's partial
    assert files_in(tmp_path) == []


def test_a_server_that_hangs_up_at_once(fake_server: Callable[[Script], FakeServer]) -> None:
    server = fake_server(hang_up)
    with pytest.raises(ConnectionLost) as caught:
        Client(HOST, server.port, timeout=0.5)
    assert not isinstance(caught.value, TimedOut)


GOOD_RECORD = b"Client01\t2026-11-24 15:29:28\t-\t127.0.0.1:49559\n"


def bad_status(record: bytes) -> Script:
    """STATUS 3 whose first record is ``record``, two good ones after it."""

    def script(peer: Peer) -> None:
        peer.greet()
        assert peer.line() == "STATUS"
        peer.send(b"STATUS 3\n" + record + GOOD_RECORD * 2)
        peer.serve_rest()

    return script


@pytest.mark.parametrize(
    "record",
    [b"not a record\n", b"Client01\tyesterday\t-\t127.0.0.1:1\n", b"x" * MiB + b"\n"],
    ids=["no fields", "bad time", "endless"],
)
def test_a_broken_record_ends_the_session_instead_of_misreading_the_rest(
    fake_server: Callable[..., FakeServer], record: bytes
) -> None:
    """Records left unread would be taken for the replies to later commands."""
    server = fake_server(bad_status(record))
    with Client(HOST, server.port, timeout=2) as client:
        with pytest.raises(ProtocolError, match="server|STATUS"):
            client.status()
        assert client.closed
        with pytest.raises(ConnectionLost):
            client.ping()


# -- a full disk ------------------------------------------------------------------------


class DiskFull:
    """``os`` for download.py, except that writing a file fails with ENOSPC."""

    def __init__(self) -> None:
        self.writes = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(os, name)

    def write(self, fd: int, data: Any) -> int:
        self.writes += 1
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.mark.parametrize("size", [1000, 6 * MiB], ids=["small", "large"])
def test_a_full_disk_is_a_save_error_and_the_session_goes_on(
    repo: Path,
    make_server: Callable[..., ServerThread],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    size: int,
) -> None:
    (repo / "data.bin").write_bytes(os.urandom(size))
    server = make_server()
    downloads = tmp_path / "downloads"
    disk = DiskFull()
    monkeypatch.setattr(filedock.client.download, "os", disk)
    with Client(HOST, server.port, timeout=10) as client:
        with pytest.raises(SaveError, match="No space left on device"):
            client.get("data.bin", downloads)
        assert disk.writes >= 1
        assert not client.closed  # the body was read whole: still in step
        assert client.ping() < 1.0
        assert client.who() == [client.name]
        monkeypatch.undo()  # room on the disk again: the same download works
        assert client.get("data.bin", downloads).read_bytes() == (repo / "data.bin").read_bytes()
    assert files_in(downloads) == [downloads / "data.bin"]


# -- the shell ---------------------------------------------------------------------------


def closing_error(code: str) -> Script:
    """``ERR <code>`` to the first PING, then the close that follows such a code."""

    def script(peer: Peer) -> None:
        peer.greet()
        assert peer.line() == "PING"
        peer.send(f"ERR {code} the session is over\n".encode())

    return script


@pytest.mark.parametrize("code", sorted(CLOSING_CODES))
def test_after_a_closing_code_the_client_stops_reading(
    fake_server: Callable[[Script], FakeServer], code: ErrorCode
) -> None:
    """The client knows the same closing codes as the server: it does not wait for more."""
    server = fake_server(closing_error(code))
    with Client(HOST, server.port, timeout=2) as client:
        with pytest.raises(ServerClosing) as caught:
            client.ping()
        assert caught.value.code == code
        assert client.closed
        with pytest.raises(ConnectionLost):
            client.ping()
