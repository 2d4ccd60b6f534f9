"""The server against hostile and broken clients, while it keeps serving a good one.

Each test attacks the server one way (silence, trickling, not reading, huge or
odd lines, connection storms, abrupt ends, running out of descriptors, a long
history, shutdown mid-transfer, log floods) and checks both that the attacker
gets the documented answer and that a well-behaved client is served meanwhile.
What needs the server in a subprocess (memory, the descriptor limit, a long
history, shutdown mid-transfer) is in tests/e2e/test_hardening.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import re
import resource
import selectors
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import filedock.server.repository
from filedock.client.client import Client
from filedock.errors import ServerFull
from tests.integration.test_files import messages, server_log
from tests.support import HOST, LineConn, ServerThread, wait_until

MiB = 1024 * 1024
# Growth of the server's resident memory tolerated under an attack.
MEMORY_BOUND = 50 * MiB


# -- helpers --------------------------------------------------------------------------


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that takes no disk space."""
    with path.open("wb") as file:
        file.truncate(size)
    return path


def assert_no_tracebacks(caplog: pytest.LogCaptureFixture) -> None:
    records = list(caplog.records)
    bad = [r for r in records if r.exc_info or r.levelno >= logging.ERROR]
    assert not bad, [record.getMessage() for record in bad]
    assert "Traceback" not in caplog.text


def greeted(port: int, timeout: float = 5.0) -> LineConn:
    conn = LineConn(port, timeout=timeout)
    try:
        conn.greet()
    except BaseException:
        conn.close()
        raise
    return conn


def read_status(conn: LineConn) -> list[list[str]]:
    header = conn.request("STATUS")
    match = re.fullmatch(r"STATUS (\d+)", header)
    assert match, header
    return [conn.read_line().split("\t") for _ in range(int(match.group(1)))]


def admitted(port: int, timeout: float) -> Client:
    """A library client, retrying while the server answers FULL."""
    clients: list[Client] = []

    def try_once() -> bool:
        try:
            clients.append(Client(HOST, port, timeout=5))
        except ServerFull:
            return False
        return True

    wait_until(try_once, timeout=timeout, interval=0.02)
    return clients[0]


def quick_visits(port: int, count: int) -> None:
    """``count`` clients in turn: read NAME, greet, say EXIT, read BYE, close."""
    for _ in range(count):
        with socket.create_connection((HOST, port), timeout=5) as sock:
            _expect(sock, b"NAME ")
            sock.sendall(b"HELLO\n")
            _expect(sock, b"WELCOME ")
            sock.sendall(b"EXIT\n")
            _expect(sock, b"BYE")


def overlapping_visits(port: int, count: int) -> None:
    """``count`` brief clients, each welcomed before the one before it says EXIT.

    Brief sessions one after another from one address are one row of STATUS
    (a script's run); these overlap, so every one of them is kept.
    """
    previous: socket.socket | None = None
    try:
        for _ in range(count):
            sock = socket.create_connection((HOST, port), timeout=5)
            _expect(sock, b"NAME ")
            sock.sendall(b"HELLO\n")
            _expect(sock, b"WELCOME ")
            if previous is not None:
                _leave(previous)
            previous = sock
    finally:
        if previous is not None:
            _leave(previous)


def _leave(sock: socket.socket) -> None:
    with sock:
        sock.sendall(b"EXIT\n")
        _expect(sock, b"BYE")


def _expect(sock: socket.socket, start: bytes) -> str:
    """Read one short line from ``sock``; it must start with ``start``. The line's text."""
    data = b""
    for _ in range(100):  # a line of a few bytes: a handful of reads at most
        chunk = sock.recv(4096)
        data += chunk
        if not chunk or b"\n" in data:
            break
    assert data.startswith(start), data
    return data.decode().rstrip("\r\n")


class Watcher:
    """A well-behaved client that keeps asking PING from a thread during an attack."""

    def __init__(self, port: int, interval: float = 0.02) -> None:
        self.conn = LineConn(port)
        try:
            self.name = self.conn.greet()
        except BaseException:
            self.conn.close()
            raise
        self.interval = interval
        self.pings = 0
        self.slowest = 0.0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="watcher", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set() and self.pings < 100_000:
            started = time.monotonic()
            try:
                reply = self.conn.request("PING")
            except (AssertionError, OSError) as exc:
                self.errors.append(repr(exc))
                return
            self.slowest = max(self.slowest, time.monotonic() - started)
            if reply != "PONG":
                self.errors.append(reply)
                return
            self.pings += 1
            self._stop.wait(self.interval)  # pacing: a person, not a flood

    def stop(self) -> None:
        """Stop pinging; fail unless every PING was answered, promptly."""
        self._stop.set()
        self._thread.join(10)
        assert not self._thread.is_alive()
        assert not self.errors, f"the well-behaved client was not served: {self.errors}"
        assert self.pings > 0
        assert self.slowest < 3.0, f"a PING took {self.slowest:.2f} s"

    def close(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.conn.close()


@contextlib.contextmanager
def watching(port: int) -> Iterator[Watcher]:
    watcher = Watcher(port)
    try:
        yield watcher
        watcher.stop()
    finally:
        watcher.close()


def raise_descriptor_limit() -> int:
    """Raise this process's open-file soft limit to the hard one; the soft limit now."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def test_a_server_in_a_process_leaves_its_descriptor_limit_alone(
    make_server: Callable[..., ServerThread],
) -> None:
    """The limit is the process's: the command line raises it, a program that
    runs a Server among other things decides for itself."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowered = min(soft, hard - 1) if hard != resource.RLIM_INFINITY else soft - 1
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowered, hard))
    try:
        make_server()
        assert resource.getrlimit(resource.RLIMIT_NOFILE) == (lowered, hard)
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def storm(port: int, total: int, batch: int, timeout: float = 30.0) -> Counter[str]:
    """``total`` connection attempts, ``batch`` at once; how each first answer looked.

    Outcomes: ``FULL``, ``NAME``, ``refused``, ``reset``, ``eof`` (closed with no
    line), ``silent`` (nothing within the time), or another first line.
    """
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + timeout
    for start in range(0, total, batch):
        selector = selectors.DefaultSelector()
        socks: list[socket.socket] = []
        try:
            for _ in range(min(batch, total - start)):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.setblocking(False)
                code = sock.connect_ex((HOST, port))
                if code in (0, errno.EINPROGRESS):
                    selector.register(sock, selectors.EVENT_READ, bytearray())
                else:
                    refused = code == errno.ECONNREFUSED
                    outcomes["refused" if refused else errno.errorcode[code]] += 1
            while selector.get_map() and time.monotonic() < deadline:
                for key, _ in selector.select(timeout=0.5):
                    sock, buffer = key.fileobj, key.data
                    assert isinstance(sock, socket.socket)
                    outcome = _first_answer(sock, buffer)
                    if outcome is not None:
                        outcomes[outcome] += 1
                        selector.unregister(sock)
            if selector.get_map():
                outcomes["silent"] += len(selector.get_map())
        finally:
            selector.close()
            for sock in socks:
                sock.close()
    return outcomes


def _first_answer(sock: socket.socket, buffer: bytearray) -> str | None:
    try:
        chunk = sock.recv(4096)
    except ConnectionRefusedError:
        return "refused"
    except ConnectionResetError:
        return "reset"
    except BlockingIOError:
        return None
    if not chunk:
        return "eof"
    buffer += chunk
    if b"\n" not in buffer:
        return None
    line = bytes(buffer).split(b"\n", 1)[0].decode("utf-8", "replace")
    return line.split(" ", 1)[0] if line.startswith(("FULL ", "NAME ")) else line


# -- slots held by silence -----------------------------------------------------------------


def test_ungreeted_silent_connections_hold_no_slot_from_a_real_client(
    make_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with server_log(caplog, monkeypatch):
        server = make_server(handshake_timeout=0.5)
        silent = [LineConn(server.port) for _ in range(3)]
        try:
            for conn in silent:
                assert conn.read_line().startswith("NAME ")
            taken = time.monotonic()
            client = Client(HOST, server.port, timeout=5)  # at once: no slot was taken
            waited = time.monotonic() - taken
            with client:
                assert waited < 0.5, f"a real client waited {waited:.2f} s for a slot"
                assert client.name == "Client04"
                client.ping()
                for conn in silent:
                    line = conn.read_line()
                    assert line.startswith("ERR timeout "), line
                    assert conn.at_eof()
                assert client.who() == ["Client04"]
        finally:
            for conn in silent:
                conn.close()
        wait_until(lambda: server.connected_count() == 0)
    assert sum("did not greet" in message for message in messages(caplog)) == 3
    assert_no_tracebacks(caplog)


def test_greeted_silent_clients_lose_their_slots_after_the_idle_timeout(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(max_clients=4, idle_timeout=0.5)
    with watching(server.port) as watcher:  # talks every 20 ms: never idle
        silent = [greeted(server.port) for _ in range(3)]
        try:
            taken = time.monotonic()
            with pytest.raises(ServerFull):
                Client(HOST, server.port, timeout=5)
            with admitted(server.port, timeout=5) as client:
                waited = time.monotonic() - taken
                assert waited < 0.5 + 1.0, f"a real client waited {waited:.2f} s for a slot"
                for conn in silent:
                    line = conn.read_line()
                    assert line == "ERR timeout disconnected for being idle: no request in 0.5 s"
                    assert conn.at_eof()
                assert client.who() == [watcher.name, client.name]
        finally:
            for conn in silent:
                conn.close()
    wait_until(lambda: server.connected_count() == 0)


# -- slow senders and readers ------------------------------------------------------------------


def _request_big_file(conn: LineConn) -> threading.Thread | None:
    conn.send_line("GET big.bin")
    return None


def _pipeline_status(conn: LineConn, blocks: int = 1) -> threading.Thread | None:
    """Send ``blocks`` times 200,000 STATUS lines (1.4 MB) from a thread, reading nothing."""

    def pour() -> None:
        block = memoryview(b"STATUS\n" * 200_000)
        # sendall blocks once the server stops reading; the drop ends it.
        with contextlib.suppress(OSError):
            for _ in range(blocks):
                conn.sock.sendall(block)

    thread = threading.Thread(target=pour, name="pipeliner", daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("attack", [_request_big_file, _pipeline_status], ids=["get", "pipeline"])
def test_client_that_never_reads_is_dropped_after_the_send_timeout(
    repo: Path,
    make_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    attack: Callable[[LineConn], threading.Thread | None],
) -> None:
    sparse_file(repo / "big.bin", 64 * MiB)
    with server_log(caplog, monkeypatch):
        server = make_server(send_timeout=1)
        with watching(server.port):
            reader = greeted(server.port, timeout=10)
            try:
                reader.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
                started = time.monotonic()
                sender = attack(reader)  # and never read a byte
                wait_until(lambda: server.connected_count() == 1, timeout=10)
                dropped = time.monotonic() - started
                if sender is not None:
                    sender.join(10)
                    assert not sender.is_alive()
            finally:
                reader.close()
        wait_until(lambda: server.session_count() == 0)
    assert 1.0 <= dropped < 1.0 + 4.0, f"dropped after {dropped:.2f} s"
    assert any("progress for 1 s" in m for m in messages(caplog)), messages(caplog)
    # Its end says why: the send's own stall, or the session's, whichever saw it first.
    assert any(re.match(r"Finished: Client\d+ \(send-timeout, ", m) for m in messages(caplog))
    assert_no_tracebacks(caplog)


def _buffered(server: ServerThread, name: str) -> int:
    """Bytes the server holds for ``name``, not yet taken by the kernel (-1: no session)."""
    assert server.server is not None
    sessions = server.server.sessions

    def size() -> int:
        for session in sessions:
            if session.entry is not None and session.entry.name == name:
                assert session.transport is not None
                return session.transport.get_write_buffer_size()
        return -1

    return server.sync(size)


def test_half_closed_client_that_stops_reading_is_let_go(
    make_server: Callable[..., ServerThread],
) -> None:
    """Requests, end of input, and no reading: the server must not wait for ever.

    The client sends requests until their replies fill the kernel's buffers
    (the server holds the rest), then ends its input. The server answers
    everything and frees the slot, but the replies cannot leave: it must
    still close the connection, within about the send timeout.
    """
    server = make_server(send_timeout=1)
    overlapping_visits(server.port, 100)  # STATUS replies of about 6 KB
    with watching(server.port):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # small: before connect
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # each line goes at once
            sock.settimeout(5)
            sock.connect((HOST, server.port))
            name = _expect(sock, b"NAME ").split()[1]
            sock.sendall(b"HELLO\n")
            _expect(sock, b"WELCOME ")
            for _ in range(1000):  # bounded: a few dozen replies fill the buffers
                sock.sendall(b"STATUS\n")
                # The loop has read the line once it runs the check (same thread).
                if _buffered(server, name) > 0:
                    break
            # Bounded: the 64 KiB high-water mark plus one batch of replies
            # (flushed every 64 KiB) may be in the transport's buffer.
            assert 0 < _buffered(server, name) < 3 * 64 * 1024
            sock.shutdown(socket.SHUT_WR)  # and read nothing, ever
            wait_until(lambda: server.connected_count() == 1)  # answered: slot free
            wait_until(lambda: server.session_count() == 1, timeout=1.0 + 4.0)
        finally:
            sock.close()


# -- size -----------------------------------------------------------------------------------


ODD_LINES = {
    "NUL byte": (b"PI\x00NG\n", "ACK PI\x00NG"),
    "NUL byte in a path": (b"GET sample\x00.txt\n", "ERR forbidden "),
    "invalid UTF-8": (b"\xff\xfePING\n", "ERR bad-encoding "),
    "overlong UTF-8": (b"\xc0\xafetc\n", "ERR bad-encoding "),
    "UTF-8 surrogate": (b"\xed\xa0\x80\n", "ERR bad-encoding "),
    "truncated UTF-8": (b"caf\xc3\n", "ERR bad-encoding "),
    "lone CR inside": (b"one\rtwo\n", "ACK one\rtwo"),
    "lone CR first": (b"\rPING\n", "PONG"),
    "two CRs": (b"PING\r\r\n", "PONG"),
    "only white space": (b" \t \r\n", None),
    # Only space, TAB and CR are padding: other white space may end a name.
    "other white space": (b" \x0b\x0c\xc2\xa0 \r\n", "ACK \x0b\x0c\xa0"),
    "empty line": (b"\n", None),
}


@pytest.mark.parametrize("case", list(ODD_LINES))
def test_odd_lines_get_their_documented_answer(server: ServerThread, case: str) -> None:
    data, answer = ODD_LINES[case]
    watcher = greeted(server.port)
    conn = greeted(server.port)
    try:
        conn.send(data)
        assert watcher.request("PING") == "PONG"
        if answer is None:
            assert conn.request("PING") == "PONG"  # nothing came before it
        else:
            line = conn.read_line()
            assert line.startswith(answer), line
            assert conn.request("PING") == "PONG"  # still open
        assert server.connected_count() == 2
    finally:
        conn.close()
        watcher.close()


# -- connection storm ----------------------------------------------------------------------------


def test_connection_storm_against_a_full_server(make_server: Callable[..., ServerThread]) -> None:
    limit = raise_descriptor_limit()
    # Each attempt costs a descriptor here and one in the server (same process).
    batch = max(50, min(500, (limit - 200) // 3))
    server = make_server()
    conns = [greeted(server.port) for _ in range(2)]
    try:
        with watching(server.port):  # Client03, pinging all along
            started = time.monotonic()
            outcomes = storm(server.port, 2000, batch)
            took = time.monotonic() - started
            assert sum(outcomes.values()) == 2000
            assert set(outcomes) <= {"FULL", "refused", "reset"}, outcomes
            assert took < 60, f"the storm took {took:.1f} s"
            assert server.connected_count() == 3
            assert server.session_count() == 3
            wait_until(lambda: server.statistics().lingering == 0, timeout=10)
            assert conns[0].request("WHO") == "WHO Client01 Client02 Client03"
        wait_until(lambda: server.connected_count() == 2)
        with Client(HOST, server.port, timeout=5) as client:
            assert client.name == "Client04"  # the turned-away took no number
            assert server.connected_count() == 3
    finally:
        for conn in conns:
            conn.close()


# -- abrupt ends ------------------------------------------------------------------------------


def _before_name(port: int) -> LineConn:
    return LineConn(port)


def _mid_handshake(port: int) -> LineConn:
    conn = LineConn(port)
    assert conn.read_line() == "NAME Client02"
    conn.send(b"HELLO Cli")
    return conn


def _mid_line(port: int) -> LineConn:
    conn = greeted(port)
    conn.send(b"GET sampl")
    return conn


def _mid_download(port: int) -> LineConn:
    conn = greeted(port, timeout=15)
    assert conn.request("GET big.bin").startswith(f"FILE {64 * MiB} ")
    conn.read_exactly(MiB)
    return conn


@pytest.mark.parametrize("how", ["close", "reset"])
@pytest.mark.parametrize(
    ("stage", "welcomed"),
    [(_before_name, False), (_mid_handshake, False), (_mid_line, True), (_mid_download, True)],
    ids=["before-name", "mid-handshake", "mid-line", "mid-download"],
)
def test_abrupt_end_at_every_stage(
    repo: Path,
    make_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    stage: Callable[[int], LineConn],
    welcomed: bool,
    how: str,
) -> None:
    sparse_file(repo / "big.bin", 64 * MiB)
    with server_log(caplog, monkeypatch):
        server = make_server()
        watcher = greeted(server.port)
        try:
            leaver = stage(server.port)
            if how == "reset":
                leaver.reset()
            else:
                leaver.close()
            assert server.server is not None
            registry = server.server.registry
            # A welcomed client is finished; one gone before its WELCOME held no
            # slot and leaves no record, only its place in the pool to free.
            wait_until(lambda: len(server.sync(registry.snapshot)) == 1 + welcomed, timeout=10)
            wait_until(lambda: server.connected_count() == 1, timeout=10)
            wait_until(lambda: server.session_count() == 1, timeout=10)
            wait_until(lambda: server.statistics().pending == 0, timeout=10)
            records = read_status(watcher)
            assert [record[0] for record in records] == ["Client01", "Client02"][: 1 + welcomed]
            assert records[0][2] == "-"
            if welcomed:
                assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", records[1][2]), records
            assert watcher.request("PING") == "PONG"
            with Client(HOST, server.port, timeout=5) as client:
                assert client.get("sample.txt", repo.parent / "downloads").exists()
        finally:
            watcher.close()
    finished = [m for m in messages(caplog) if m.startswith("Finished: Client02 (")]
    assert len(finished) == welcomed, messages(caplog)
    # A reset is told as one; a close is an EOF, or a reset if our bytes met it first.
    reasons = ["reset"] if how == "reset" else ["eof", "reset"]
    assert all(re.match(rf"Finished: Client02 \(({'|'.join(reasons)}), ", m) for m in finished)
    assert_no_tracebacks(caplog)


def hold_hashing(monkeypatch: pytest.MonkeyPatch) -> tuple[threading.Event, threading.Event]:
    """Make every hash wait for ``gate``; ``hashing`` is set when one starts."""
    hashing = threading.Event()
    gate = threading.Event()
    real_hash_fd = filedock.server.repository.hash_fd

    def gated_hash_fd(
        fd: int, key: filedock.server.repository.FileKey, cancelled: Callable[[], bool]
    ) -> str:
        hashing.set()
        gate.wait(30)
        return real_hash_fd(fd, key, cancelled)

    monkeypatch.setattr(filedock.server.repository, "hash_fd", gated_hash_fd)
    # Every hashing in a worker, where it can be held (none on the loop).
    monkeypatch.setattr(filedock.server.repository, "INLINE_HASH_BYTES", 0)
    return hashing, gate


def test_shutdown_after_a_client_left_while_its_request_waited(
    repo: Path,
    make_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The client closes while its GET waits for the hash (the server reads nothing
    meanwhile), then the server shuts down: its last line meets a connection that
    the client's kernel resets. The shutdown must still be clean."""
    (repo / "slow.bin").write_bytes(b"x" * 1000)
    hashing, gate = hold_hashing(monkeypatch)
    with server_log(caplog, monkeypatch):
        server = make_server()
        assert server.server is not None
        watcher = greeted(server.port)
        leaver = greeted(server.port)
        try:
            leaver.send_line("GET slow.bin")
            assert hashing.wait(10)
            leaver.close()  # unread by the server: it is busy with the GET
            closing = asyncio.run_coroutine_threadsafe(server.server.aclose(), server.loop)
            assert watcher.read_line().startswith("ERR shutdown ")
            watcher.close()
            closing.result(timeout=15)  # raises what aclose() raised
        finally:
            gate.set()
            watcher.close()
            leaver.close()
        assert server.connected_count() == 0
    assert_no_tracebacks(caplog)


def test_a_client_that_resets_while_its_request_waits_frees_its_slot_at_once(
    repo: Path,
    make_server: Callable[..., ServerThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The session keeps reading (a little) while a request waits for a hash, so
    a reset is seen at once, not when the hash is done."""
    (repo / "slow.bin").write_bytes(b"x" * 1000)
    hashing, gate = hold_hashing(monkeypatch)
    server = make_server()
    watcher = greeted(server.port)
    leaver = greeted(server.port)
    try:
        leaver.send_line("GET slow.bin")
        assert hashing.wait(10)
        leaver.reset()
        wait_until(lambda: server.connected_count() == 1, timeout=2)
        assert not gate.is_set()  # still hashing: the slot was freed before that
        assert watcher.request("WHO") == "WHO Client01"
    finally:
        gate.set()
        watcher.close()
        leaver.close()


def test_input_while_a_request_waits_stays_bounded(
    repo: Path,
    make_server: Callable[..., ServerThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (repo / "slow.bin").write_bytes(b"x" * 1000)
    hashing, gate = hold_hashing(monkeypatch)
    server = make_server()
    assert server.server is not None
    sessions = server.server.sessions
    conn = greeted(server.port)
    try:
        conn.send_line("GET slow.bin")
        assert hashing.wait(10)
        conn.sock.setblocking(False)
        sent = 0
        with contextlib.suppress(BlockingIOError):
            for _ in range(2000):  # 16 MiB at most: the kernel's buffers fill first
                sent += conn.sock.send(b"PING\n" * 1638)
        conn.sock.setblocking(True)
        held = server.sync(lambda: max(s.conn.buffered for s in sessions))
        assert 0 < held < 4096 + 64 * 1024, held  # one line's worth plus one read
        gate.set()
        assert conn.read_line(timeout=10).startswith("FILE 1000 ")
        conn.read_exactly(1000)
        assert conn.read_line() == "PONG"  # the pipelined lines are answered after
    finally:
        gate.set()
        conn.close()


# -- log flooding ---------------------------------------------------------------------------------


def test_a_burst_of_rejections_does_not_flood_the_log(
    make_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with server_log(caplog, monkeypatch):
        server = make_server()
        conns = [greeted(server.port) for _ in range(2)]
        try:
            with watching(server.port):
                outcomes = storm(server.port, 500, 250)
            assert outcomes == Counter({"FULL": 500}), outcomes
            server.stop()  # the summary of what was suppressed is logged now at the latest
        finally:
            for conn in conns:
                conn.close()
    rejected = [m for m in messages(caplog) if m.startswith("Rejected ")]
    summaries = [m for m in messages(caplog) if "'rejected' messages from loopback suppressed" in m]
    assert len(rejected) <= 20, len(rejected)
    assert len(summaries) == 1, summaries
    suppressed = int(summaries[0].split()[0])
    assert len(rejected) + suppressed == 500, (len(rejected), summaries)
