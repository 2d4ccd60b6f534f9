"""The client's TLS socket: one receive takes every record already there, and only those."""

from __future__ import annotations

import fcntl
import socket
import ssl
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from filedock.client import connection
from filedock.client.connection import SocketLink, client_context
from filedock.errors import TimedOut
from tests.support import HOST, wait_until

RECORD = 16 * 1024  # the most plaintext one TLS record holds
OVERHEAD = 22  # what TLS 1.3 adds to a record: header, content type, AES-GCM tag


class TlsSender:
    """A TLS server for one connection that sends what it is told, when told."""

    def __init__(self, ca: trustme.CA) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(HOST).configure_cert(context)
        context.num_tickets = 0  # the socket then holds only the records sent
        self._listener = socket.create_server((HOST, 0))
        self.port = self._listener.getsockname()[1]
        self._context = context
        self._to_send: list[bytes | None] = []
        self._ready = threading.Condition()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        raw, _ = self._listener.accept()
        with self._context.wrap_socket(raw, server_side=True) as conn:
            while True:
                with self._ready:
                    self._ready.wait_for(lambda: bool(self._to_send))
                    data = self._to_send.pop(0)
                if data is None:
                    return
                conn.sendall(data)

    def send(self, data: bytes | None) -> None:
        with self._ready:
            self._to_send.append(data)
            self._ready.notify()

    def close(self) -> None:
        self.send(None)
        self._thread.join(timeout=10)
        self._listener.close()


@pytest.fixture
def sender(ca: trustme.CA) -> Iterator[TlsSender]:
    server = TlsSender(ca)
    yield server
    server.close()


def waiting_bytes(link: SocketLink) -> int:
    """Bytes in the link's kernel receive buffer (TLS records not read yet)."""
    count = fcntl.ioctl(link._sock.fileno(), termios.FIONREAD, b"\0\0\0\0")
    return int.from_bytes(count, sys.byteorder)


def all_there(link: SocketLink, size: int) -> bool:
    """Whether every record of ``size`` plaintext bytes has reached the link's socket."""
    records = -(-size // RECORD)
    return waiting_bytes(link) >= size + records * OVERHEAD


def link_to(sender: TlsSender, ca_file: str, timeout: float = 30.0) -> SocketLink:
    context = client_context(ca_file)
    context.minimum_version = ssl.TLSVersion.TLSv1_3  # the record overhead counted above
    return SocketLink(HOST, sender.port, timeout=timeout, connect_timeout=10, tls=context)


@pytest.fixture
def ca_path(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


def test_one_receive_takes_every_record_already_there(sender: TlsSender, ca_path: str) -> None:
    link = link_to(sender, ca_path)
    try:
        data = bytes(range(256)) * (3 * RECORD // 256)  # within the first receive window
        sender.send(data)
        wait_until(lambda: all_there(link, len(data)), timeout=10)
        view = memoryview(bytearray(1024 * 1024))
        count = link.recv_into(view)
        assert count == len(data)
        assert view[:count] == data
    finally:
        link.close()


def test_a_receive_returns_what_came_without_waiting_for_more(
    sender: TlsSender, ca_path: str
) -> None:
    link = link_to(sender, ca_path, timeout=0.5)
    try:
        sender.send(b"x" * (3 * RECORD + 5))
        wait_until(lambda: all_there(link, 3 * RECORD + 5), timeout=10)
        view = memoryview(bytearray(1024 * 1024))
        assert link.recv_into(view) == 3 * RECORD + 5  # not the view's size: nothing more came
        # The socket's timeout is back: a silent server is a timeout, not "would block".
        with pytest.raises(TimedOut):
            link.recv_into(view)
        sender.send(b"late")
        assert link.recv_into(view) == 4
        assert view[:4] == b"late"
    finally:
        link.close()


def test_one_receive_takes_no_more_than_the_limit(
    sender: TlsSender, ca_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connection, "TLS_RECEIVE_LIMIT", 2 * RECORD)
    link = link_to(sender, ca_path)
    try:
        sender.send(b"y" * 3 * RECORD)
        wait_until(lambda: all_there(link, 3 * RECORD), timeout=10)
        view = memoryview(bytearray(1024 * 1024))
        assert link.recv_into(view) == 2 * RECORD  # still in the cache when it is hashed
        assert link.recv_into(view) == RECORD
    finally:
        link.close()
