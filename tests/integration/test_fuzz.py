"""Property-based fuzzing of a live server: random lines, partial lines, random
bytes, and connections that end every which way.

One in-process server serves every example of a test. After each example the
server must still be whole: a fresh client is named and answered, the registry
agrees with the sessions alive, and once every connection of the example is
closed, no slot is left taken.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import HOST, LineConn, ServerThread, running_server, wait_until

# Lines a client may send: commands, their mistakes, paths good and bad.
LINES = [
    "PING",
    "  ping  ",
    "WHO",
    "UPTIME",
    "ABOUT",
    "HELP",
    "STATUS",
    "LIST",
    "GET sample.txt",
    "get SAMPLE.TXT",
    "sample.txt",
    "GET",
    "GET nope.txt",
    "GET ../secret",
    "GET /etc/passwd",
    "GET sub/../sample.txt",
    "GET .hidden",
    "SAY hello",
    "SAY",
    "HELLO",
    "HELLO Client01 extra words",
    "EXIT",
    "exit now",
    "hello there",
    "",
    "\t",
]

MAX_LINE = 4096

whole_lines = st.builds(
    lambda text, end: text.encode("utf-8", "surrogatepass") + end,
    st.one_of(st.sampled_from(LINES), st.text(max_size=60)),
    st.sampled_from([b"\n", b"\r\n"]),
)
partial_lines = st.sampled_from(LINES).map(lambda text: text.encode()[: len(text) // 2 + 1])
random_bytes = st.binary(max_size=300)
long_lines = st.integers(MAX_LINE - 8, MAX_LINE + 8).map(lambda n: b"x" * n + b"\n")
bad_encoding = st.sampled_from([b"\xff\xfe\n", b"caf\xc3\n", b"\xed\xa0\x80 PING\n", b"\x00\n"])
chunks = st.one_of(whole_lines, whole_lines, partial_lines, random_bytes, long_lines, bad_encoding)

ENDINGS = ["close", "reset", "exit", "half-close", "keep"]


@dataclass
class Peer:
    """One connection of an example, and what it received."""

    sock: socket.socket
    received: bytearray = field(default_factory=bytearray)
    alive: bool = True

    def send(self, data: bytes) -> None:
        if not self.alive:
            return
        try:
            self.sock.sendall(data)
        except OSError:  # the server closed it (line too long, EXIT, …): allowed
            self.alive = False

    def drain(self, timeout: float = 0.0, until: bytes | None = None) -> bool:
        """Read what has arrived, waiting up to ``timeout`` for more (or for ``until``
        to be among what was received); False at EOF or reset."""
        deadline = time.monotonic() + timeout
        for _ in range(10_000):
            if until is not None and until in self.received:
                return True
            left = deadline - time.monotonic()
            if left > 0:
                self.sock.settimeout(left)
            else:
                self.sock.setblocking(False)
            try:
                chunk = self.sock.recv(1 << 20)
            except (BlockingIOError, TimeoutError):
                return True
            except OSError:
                return False
            if not chunk:
                return False
            self.received += chunk
        return True

    def end(self, how: str) -> None:
        if how == "reset":
            self.sock.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.sock.close()
        elif how == "exit":
            self.send(b"\nEXIT\n")
            self.sock.close()
        elif how == "half-close":
            with contextlib.suppress(OSError):
                self.sock.shutdown(socket.SHUT_WR)
            # The server answers what it has in hand, then closes.
            assert not self.drain(timeout=5.0), "the server kept a half-closed connection open"
            self.sock.close()
        elif how == "close":
            self.sock.close()


def session_counts(server: ServerThread) -> tuple[int, int]:
    """(clients the registry holds as connected, sessions alive that hold a slot), at once."""
    statistics = server.statistics()
    return statistics.clients_connected, statistics.sessions_welcomed


def check_server_is_whole(server: ServerThread) -> None:
    connected, holding = session_counts(server)
    assert connected == holding, f"registry says {connected} connected, sessions hold {holding}"
    fresh = LineConn(server.port, timeout=5)
    try:
        assert fresh.read_line().startswith("NAME Client")
        assert fresh.request("HELLO").startswith("WELCOME ")
        assert fresh.request("PING") == "PONG"
        assert fresh.request("EXIT") == "BYE"
    finally:
        fresh.close()


@pytest.fixture
def live_server(
    repo: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[ServerThread]:
    """One server for all the examples of a test; its log must show no traceback."""
    (repo / "sub").mkdir()
    (repo / "sub" / "a.txt").write_bytes(b"a\n")
    (repo / ".hidden").write_bytes(b"hidden\n")
    monkeypatch.setattr(logging.getLogger("filedock"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="filedock"), running_server(repo) as server:
        yield server
    bad = [r for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [record.getMessage() for record in bad]


def test_random_traffic_leaves_the_server_whole(live_server: ServerThread) -> None:
    server = live_server

    @settings(
        max_examples=60,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(
        greet=st.lists(st.booleans(), min_size=1, max_size=2),
        actions=st.lists(st.tuples(st.integers(0, 1), chunks), max_size=12),
        endings=st.lists(st.sampled_from(ENDINGS), min_size=2, max_size=2),
    )
    def example(greet: list[bool], actions: list[tuple[int, bytes]], endings: list[str]) -> None:
        peers: list[Peer] = []
        try:
            for greets in greet:
                peer = Peer(socket.create_connection((HOST, server.port), timeout=5))
                peers.append(peer)
                if greets:
                    peer.send(b"HELLO\n")
            for index, chunk in actions:
                peer = peers[index % len(peers)]
                peer.send(chunk)
                peer.drain()
            for peer, how in zip(peers, endings, strict=False):
                peer.end(how)
            for peer in peers:  # admitted, whatever came after
                assert peer.received == b"" or peer.received.startswith(b"NAME Client")
            check_server_is_whole(server)
        finally:
            for peer in peers:
                peer.sock.close()
        wait_until(lambda: session_counts(server) == (0, 0), timeout=5)
        wait_until(lambda: server.session_count() == 0, timeout=5)

    example()


def test_random_bytes_on_many_connections_at_once(live_server: ServerThread) -> None:
    """Up to six connections at once against three slots, each sending an unended
    line, then leaving: none greets, so none takes a slot and every one is named
    (they wait in the pending pool); no slot and no place in the pool leaks."""
    server = live_server
    unended = st.one_of(random_bytes.map(lambda data: data.replace(b"\n", b"")), partial_lines)

    @settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        payloads=st.lists(unended, min_size=1, max_size=6),
        endings=st.lists(st.sampled_from(["close", "reset"]), min_size=6, max_size=6),
    )
    def example(payloads: list[bytes], endings: list[str]) -> None:
        peers: list[Peer] = []
        try:
            for payload in payloads:
                peer = Peer(socket.create_connection((HOST, server.port), timeout=5))
                peers.append(peer)
                peer.send(payload)
            for peer in peers:  # the first line comes at once
                peer.drain(timeout=5.0, until=b"\n")
            firsts = [bytes(peer.received).split(b"\n", 1)[0] for peer in peers]
            named = [line for line in firsts if line.startswith(b"NAME Client")]
            assert len(named) == len(peers), firsts
            for peer, how in zip(peers, endings, strict=False):
                peer.end(how)
        finally:
            for peer in peers:
                peer.sock.close()
        wait_until(lambda: session_counts(server) == (0, 0), timeout=5)
        check_server_is_whole(server)
        wait_until(lambda: server.session_count() == 0, timeout=5)
        wait_until(lambda: server.statistics().pending == 0, timeout=5)
        wait_until(lambda: server.statistics().lingering == 0, timeout=5)

    example()
