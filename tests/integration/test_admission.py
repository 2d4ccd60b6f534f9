"""Admission and handshake over loopback: NAME/FULL, HELLO/WELCOME, timeouts, capacity.

A slot is taken at WELCOME; until then a connection waits in the pending pool
(see PROTOCOL.md, "Admission and handshake").
"""

from __future__ import annotations

import io
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import cast

import pytest

from filedock.cli.client import client_main
from filedock.cli.exitcodes import ExitCode
from filedock.client.client import Client
from filedock.errors import ConnectionLost, ServerFull
from filedock.server.config import ServerConfig
from filedock.version import __version__
from tests.support import HOST, LineConn, ServerThread, TypedAtATerminal, wait_until

FULL_LINE = "FULL server is at capacity (3/3 clients)"


def burst(port: int, count: int, opened: list[LineConn]) -> list[str]:
    """Open ``count`` connections at once, each greeting when named; how each ended.

    An outcome is the first line for a connection turned away on accept, or
    ``NAME <name>`` and the answer to its HELLO joined by `` | ``. Every
    connection made is appended to ``opened`` (the caller closes them), in
    the same order as the outcomes returned.
    """
    barrier = threading.Barrier(count, timeout=10)
    lock = threading.Lock()

    def attempt(_: int) -> tuple[LineConn, str]:
        barrier.wait()
        conn = LineConn(port, timeout=10)
        with lock:
            opened.append(conn)
        first = conn.read_line()
        if not first.startswith("NAME "):
            return conn, first
        return conn, f"{first} | {conn.request('HELLO')}"

    with ThreadPoolExecutor(max_workers=count) as pool:
        results = list(pool.map(attempt, range(count), timeout=30))
    opened[:] = [conn for conn, _ in results]
    return [line for _, line in results]


def close_all(conns: list[LineConn]) -> None:
    for conn in conns:
        conn.close()


# -- NAME and the handshake ----------------------------------------------------


def test_name_is_sent_on_accept(raw: Callable[[], LineConn]) -> None:
    conn = raw()
    assert conn.read_line() == "NAME Client01"


@pytest.mark.parametrize(
    "greeting",
    ["HELLO", "HELLO Client01", "hello Client01 extra words", "HeLLo Client01 v/2.0"],
)
def test_hello_forms_are_welcomed(raw: Callable[[], LineConn], greeting: str) -> None:
    conn = raw()
    assert conn.read_line() == "NAME Client01"
    assert conn.request(greeting) == f"WELCOME Client01 filedock {__version__}"
    assert conn.request("PING") == "PONG"


def test_hello_with_a_wrong_name_keeps_the_assigned_one(
    raw: Callable[[], LineConn],
) -> None:
    conn = raw()
    assert conn.read_line() == "NAME Client01"
    assert conn.request("HELLO Mallory") == f"WELCOME Client01 filedock {__version__}"
    assert conn.request("WHO") == "WHO Client01"


@pytest.mark.parametrize("line", ["PING", "WHO", "GET sample.txt", "sample.txt", "hi", "EXIT now"])
def test_lines_before_hello_get_err_handshake(raw: Callable[[], LineConn], line: str) -> None:
    conn = raw()
    conn.read_line()
    assert conn.request(line).startswith("ERR handshake ")
    # the connection stays open and the handshake can still be made
    assert conn.request("HELLO").startswith("WELCOME Client01 ")
    assert conn.request("PING") == "PONG"


def test_empty_line_before_hello_gets_no_reply(raw: Callable[[], LineConn]) -> None:
    conn = raw()
    conn.read_line()
    conn.send(b"\n   \r\n")
    assert conn.request("HELLO").startswith("WELCOME Client01 ")


@pytest.mark.parametrize("line", ["EXIT", "exit", "  Exit  "])
def test_exit_before_hello_says_bye(
    server: ServerThread, raw: Callable[[], LineConn], line: str
) -> None:
    conn = raw()
    conn.read_line()
    assert conn.request(line) == "BYE"
    assert conn.at_eof()
    wait_until(lambda: server.connected_count() == 0)


def test_bad_encoding_before_hello(raw: Callable[[], LineConn]) -> None:
    conn = raw()
    conn.read_line()
    conn.send(b"HELLO \xff\n")
    assert conn.read_line().startswith("ERR bad-encoding ")
    assert conn.request("HELLO").startswith("WELCOME Client01 ")


def test_half_close_before_hello_ends_the_session(
    server: ServerThread, raw: Callable[[], LineConn]
) -> None:
    conn = raw()
    conn.read_line()
    conn.send(b"PING\n")
    conn.sock.shutdown(socket.SHUT_WR)
    assert conn.read_line().startswith("ERR handshake ")
    assert conn.at_eof()
    wait_until(lambda: server.connected_count() == 0)


# -- handshake timeout ------------------------------------------------------------


def test_a_silent_connection_takes_no_slot_and_times_out(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(handshake_timeout=0.3, max_clients=1)
    conns: list[LineConn] = []
    try:
        silent = LineConn(server.port)
        conns.append(silent)
        assert silent.read_line() == "NAME Client01"
        # The one slot is still free: the silent connection only waits in the pool.
        other = LineConn(server.port)
        conns.append(other)
        assert other.greet() == "Client02"
        assert server.connected_count() == 1

        line = silent.read_line(timeout=5)
        assert line.startswith("ERR timeout "), line
        assert silent.at_eof()
        # It never held a slot, so it never shows in STATUS.
        assert other.request("STATUS") == "STATUS 1"
        assert other.read_line().split("\t")[0] == "Client02"
        assert server.connected_count() == 1
    finally:
        close_all(conns)


# -- capacity --------------------------------------------------------------------------


def test_full_then_close(server: ServerThread, raw: Callable[[], LineConn]) -> None:
    held = [raw() for _ in range(3)]
    assert [conn.greet() for conn in held] == ["Client01", "Client02", "Client03"]
    rejected = raw()
    assert rejected.read_line() == FULL_LINE
    assert rejected.at_eof()
    assert server.connected_count() == 3


def test_rejected_connection_takes_no_number(
    server: ServerThread, raw: Callable[[], LineConn]
) -> None:
    held = [raw() for _ in range(3)]
    for conn in held:
        conn.greet()
    for _ in range(2):
        rejected = raw()
        assert rejected.read_line() == FULL_LINE
        assert rejected.at_eof()
    assert held[1].request("EXIT") == "BYE"
    wait_until(lambda: server.connected_count() == 2)
    newcomer = raw()
    assert newcomer.read_line() == "NAME Client04"
    assert newcomer.request("HELLO").startswith("WELCOME Client04 ")
    assert held[0].request("WHO") == "WHO Client01 Client03 Client04"


def test_names_are_never_reused(server: ServerThread, raw: Callable[[], LineConn]) -> None:
    names = []
    for _ in range(5):
        conn = raw()
        names.append(conn.greet())
        assert conn.request("EXIT") == "BYE"
        assert conn.at_eof()
        wait_until(lambda: server.connected_count() == 0)
    assert names == [f"Client{n:02d}" for n in range(1, 6)]


def test_names_go_past_client99(server: ServerThread) -> None:
    names = []
    for _ in range(101):
        conn = LineConn(server.port)
        try:
            names.append(conn.read_line())
        finally:
            conn.close()
        wait_until(lambda: server.connected_count() == 0)
    assert names[0] == "NAME Client01"
    assert names[98:] == ["NAME Client99", "NAME Client100", "NAME Client101"]
    assert len(set(names)) == 101


def test_capacity_is_exact_under_a_burst(make_server: Callable[..., ServerThread]) -> None:
    # A pool and share that hold the whole burst: capacity alone decides.
    server = make_server(max_pending=100, max_pending_per_ip=100)
    first: list[LineConn] = []
    second: list[LineConn] = []
    try:
        outcomes = burst(server.port, 50, first)
        welcomed = [line for line in outcomes if " | WELCOME " in line]
        assert len(welcomed) == 3, outcomes
        # Everyone else is told the server is at capacity: on accept, or at HELLO.
        refused = [line for line in outcomes if line not in welcomed]
        assert all(line.endswith(FULL_LINE) for line in refused), refused
        assert server.connected_count() == 3
        for conn, line in zip(first, outcomes, strict=True):
            if line not in welcomed:
                assert conn.at_eof()
        named = [line.split(" | ")[0] for line in outcomes if line.startswith("NAME ")]
        assert len(set(named)) == len(named)  # a number is never given twice

        # free one slot: exactly one of a new burst gets in, with a new number
        leaving = first[outcomes.index(welcomed[0])]
        assert leaving.request("EXIT") == "BYE"
        wait_until(lambda: server.connected_count() == 2)
        outcomes = burst(server.port, 20, second)
        now_welcomed = [line for line in outcomes if " | WELCOME " in line]
        assert len(now_welcomed) == 1, outcomes
        number = int(now_welcomed[0].split()[1].removeprefix("Client"))
        assert number > max(int(name.split()[1].removeprefix("Client")) for name in named)
        assert server.connected_count() == 3
    finally:
        close_all(first)
        close_all(second)


def test_greeting_after_the_slots_filled_is_answered_full(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="filedock")
    server = make_server(max_clients=1)
    early, quick = LineConn(server.port), LineConn(server.port)
    try:
        assert early.read_line() == "NAME Client01"
        assert quick.read_line() == "NAME Client02"
        assert "Connected: Client01" not in caplog.text  # logged at WELCOME, not at NAME
        assert quick.request("HELLO").startswith("WELCOME Client02 ")
        assert early.request("HELLO") == "FULL server is at capacity (1/1 clients)"
        assert early.at_eof()
        assert quick.request("WHO") == "WHO Client02"
        assert server.connected_count() == 1
        assert "Connected: Client02 from 127.0.0.1:" in caplog.text
        assert "Connected: Client01" not in caplog.text
        # The number given at NAME stays used.
        assert quick.request("EXIT") == "BYE"
        wait_until(lambda: server.connected_count() == 0)
        with LineConn(server.port) as late:
            assert late.greet() == "Client03"
    finally:
        early.close()
        quick.close()


def test_who_and_status_show_a_client_from_its_welcome(raw: Callable[[], LineConn]) -> None:
    waiting, talking = raw(), raw()
    assert waiting.read_line() == "NAME Client01"
    talking.greet()
    assert talking.request("WHO") == "WHO Client02"
    assert talking.request("STATUS") == "STATUS 1"
    assert talking.read_line().split("\t")[0] == "Client02"
    assert waiting.request("HELLO").startswith("WELCOME Client01 ")
    assert talking.request("WHO") == "WHO Client02 Client01"  # in the order of their WELCOME


# -- the pending pool ----------------------------------------------------------------


def test_pending_share_of_one_source_is_bounded(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(max_pending=10, max_pending_per_ip=2)
    conns = [LineConn(server.port) for _ in range(3)]
    try:
        assert [conn.read_line() for conn in conns[:2]] == ["NAME Client01", "NAME Client02"]
        assert conns[2].read_line() == (
            "FULL too many connections greeting from your address (2/2 per address); "
            "try again shortly"
        )
        assert conns[2].at_eof()
        # A greeting frees its place in the pool: the next connection is named.
        assert conns[0].request("HELLO").startswith("WELCOME Client01 ")
        with LineConn(server.port) as another:
            assert another.read_line() == "NAME Client03"
    finally:
        close_all(conns)


def test_pending_pool_is_bounded(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(max_pending=2, max_pending_per_ip=5)
    conns = [LineConn(server.port) for _ in range(3)]
    try:
        assert [conn.read_line() for conn in conns[:2]] == ["NAME Client01", "NAME Client02"]
        assert conns[2].read_line() == (
            "FULL server is busy: too many connections still greeting (2/2); try again shortly"
        )
        # A connection that leaves before greeting frees its place too.
        conns[1].close()
        wait_until(lambda: pending_count(server) == 1)
        with LineConn(server.port) as another:
            assert another.read_line() == "NAME Client03"
    finally:
        close_all(conns)


def pending_count(server: ServerThread) -> int:
    return server.statistics().pending


def test_silent_connections_never_lock_out_a_real_client(server: ServerThread) -> None:
    """The defaults: three connections that never greet leave every slot free."""
    silent = [LineConn(server.port) for _ in range(3)]
    try:
        for conn in silent:
            assert conn.read_line().startswith("NAME ")
        started = time.monotonic()
        with Client(HOST, server.port, timeout=5) as client:
            assert client.name == "Client04"
            assert time.monotonic() - started < 2.0  # no wait for a handshake timeout
            assert client.who() == ["Client04"]
    finally:
        close_all(silent)


def test_defaults_free_forgotten_terminals() -> None:
    config = ServerConfig()
    assert config.idle_timeout == 300
    assert config.handshake_timeout == 10
    assert (config.max_pending, config.max_pending_per_ip) == (128, 16)


# -- the library --------------------------------------------------------------------


def test_library_raises_server_full_with_the_reason(
    server: ServerThread, connect: Callable[..., Client]
) -> None:
    clients = [connect() for _ in range(3)]
    assert [client.name for client in clients] == ["Client01", "Client02", "Client03"]
    with pytest.raises(ServerFull) as info:
        Client(HOST, server.port, timeout=5)
    assert info.value.reason == "server is at capacity (3/3 clients)"
    assert server.connected_count() == 3


def test_library_handshake(connect: Callable[..., Client]) -> None:
    client = connect()
    assert client.name == "Client01"
    assert client.server == f"filedock {__version__}"
    assert connect().name == "Client02"


def test_library_raises_connection_lost_when_nothing_listens() -> None:
    # A bound socket that does not listen: its port is ours, and refuses.
    with socket.socket() as placeholder:
        placeholder.bind((HOST, 0))
        port = placeholder.getsockname()[1]
        with pytest.raises(ConnectionLost):
            Client(HOST, port, timeout=2, connect_timeout=2)


def _fake_server_full_at_hello(listener: socket.socket) -> None:
    """One connection: NAME, then FULL in answer to HELLO (the slots filled meanwhile)."""
    conn, _ = listener.accept()
    with conn:
        conn.sendall(b"NAME Client07\n")
        conn.settimeout(5)
        data = b""
        while b"\n" not in data and len(data) < 4096:  # one short HELLO line
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        conn.sendall(b"FULL server is at capacity (3/3 clients)\n")


@pytest.fixture
def full_at_hello() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(1)
        thread = threading.Thread(target=_fake_server_full_at_hello, args=(listener,), daemon=True)
        thread.start()
        yield listener.getsockname()[1]
        thread.join(10)


def test_library_raises_server_full_in_answer_to_hello(full_at_hello: int) -> None:
    with pytest.raises(ServerFull) as info:
        Client(HOST, full_at_hello, timeout=5)
    assert info.value.reason == "server is at capacity (3/3 clients)"


def test_interactive_client_says_at_capacity_in_answer_to_hello(
    full_at_hello: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", TypedAtATerminal(""))
    code = client_main(["--port", str(full_at_hello), "--timeout", "5"])
    assert code == ExitCode.SERVER_FULL
    assert capsys.readouterr().out.startswith("[SERVER] Server is at capacity")


def test_piped_client_says_at_capacity_on_stderr(
    full_at_hello: int, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("ping\n"))
    code = client_main(["--port", str(full_at_hello), "--timeout", "5"])
    assert code == ExitCode.SERVER_FULL
    shown = capsys.readouterr()
    assert shown.out == ""
    assert shown.err.startswith("[SERVER] Server is at capacity")


# -- silent connections that reconnect when dropped --------------------------------


class SilentAttacker:
    """Keeps ``count`` silent connections open, opening another whenever one is dropped."""

    def __init__(self, port: int, count: int) -> None:
        self.port = port
        self.count = count
        self.opened = 0
        self.dropped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="silent-attacker", daemon=True)

    def __enter__(self) -> SilentAttacker:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _connect(self, selector: selectors.BaseSelector) -> None:
        sock = socket.create_connection((HOST, self.port), timeout=5)
        sock.setblocking(False)
        selector.register(sock, selectors.EVENT_READ)
        self.opened += 1

    def _run(self) -> None:
        with selectors.DefaultSelector() as selector:
            for _ in range(self.count):
                self._connect(selector)
            rounds = 0
            while not self._stop.is_set() and rounds < 1_000_000:  # bounded
                rounds += 1
                for key, _ in selector.select(timeout=0.05):
                    sock = cast(socket.socket, key.fileobj)
                    try:
                        data = sock.recv(4096)
                    except OSError:
                        data = b""
                    if data.startswith(b"NAME ") and b"\n" in data and data.count(b"\n") == 1:
                        continue  # named: stay silent
                    selector.unregister(sock)  # FULL, ERR timeout or a close: dropped
                    sock.close()
                    self.dropped += 1
                    self._connect(selector)
            for key in list(selector.get_map().values()):
                cast(socket.socket, key.fileobj).close()


def test_bytes_the_loop_has_not_read_yet_count_as_speaking(
    make_server: Callable[..., ServerThread],
) -> None:
    """A loop busy with a burst of accepts may not have read what a client sent
    first (a ClientHello, a HELLO): that client spoke all the same, and a
    newcomer takes the place of a silent connection, not its place."""
    server = make_server(max_pending_per_ip=2)
    assert server.server is not None
    live = server.server
    pool = live.pending
    talker = LineConn(server.port)
    assert talker.read_line().startswith("NAME ")
    wait_until(lambda: pending_count(server) == 1)
    (session,) = server.sync(lambda: list(live.sessions))
    server.sync(lambda: session.transport.pause_reading())  # type: ignore[union-attr]
    talker.send(b"HELLO")  # sent, and waiting in the socket unread
    wait_until(lambda: server.sync(session.has_spoken))
    silent = LineConn(server.port)
    assert silent.read_line().startswith("NAME ")
    wait_until(lambda: pending_count(server) == 2)
    server.sync(lambda: setattr(pool, "grace", 0.0))  # both may go now
    newcomer = LineConn(server.port)
    try:
        assert newcomer.read_line().startswith("NAME ")
        assert silent.read_line().startswith("ERR timeout")
        assert server.sync(lambda: session in live.sessions and session.may_be_dropped())
        server.sync(lambda: session.transport.resume_reading())  # type: ignore[union-attr]
        talker.send_line(" name=talker")
        assert talker.read_line().startswith("WELCOME ")
    finally:
        close_all([talker, silent, newcomer])


def test_silent_reconnecting_connections_never_lock_out_a_client_of_the_same_source(
    server: ServerThread,
) -> None:
    """40 silent connections from this machine fill its share of the pending pool
    (16) and reconnect when dropped; a real client from this machine still gets
    in each time: a newcomer takes the place of the oldest silent one."""
    welcomed = 0
    with SilentAttacker(server.port, 40) as attacker:
        wait_until(lambda: pending_count(server) == 16)
        for _ in range(9):
            with Client(HOST, server.port, timeout=5) as client:
                assert client.ping() >= 0
                welcomed += 1
            time.sleep(0.3)  # nine tries over a few seconds, as a person would
        assert attacker.dropped > 0  # the attack did go on meanwhile
    assert welcomed == 9


def test_a_burst_past_the_share_is_still_answered_full(
    make_server: Callable[..., ServerThread],
) -> None:
    """Nobody has waited the grace: the connection past the share is refused,
    and none of the burst is dropped for it."""
    server = make_server(max_pending_per_ip=4, max_clients=5)
    conns = [LineConn(server.port) for _ in range(5)]
    try:
        assert [conn.read_line()[:5] for conn in conns[:4]] == ["NAME "] * 4
        assert conns[4].read_line().startswith("FULL too many connections greeting ")
        for conn in conns[:4]:
            assert conn.request("HELLO").startswith("WELCOME ")
    finally:
        close_all(conns)


def test_a_connection_that_sent_hello_is_never_dropped_for_a_newcomer(
    tmp_path: Path, make_server: Callable[..., ServerThread]
) -> None:
    """A greeting waiting for its (delayed) answer keeps its place past the grace."""
    tokens = tmp_path / "tokens"
    tokens.write_text("the-token\n")
    server = make_server(token_file=str(tokens), max_pending_per_ip=1)
    assert server.server is not None
    guard = server.server.auth_guard
    server.sync(lambda: guard.failed("loopback"))  # a failure before: answers wait 0.25 s
    server.sync(lambda: guard.failed("loopback"))  # two: 0.5 s, longer than the grace below
    server.server.pending.grace = 0.1
    guess = LineConn(server.port)
    try:
        guess.read_line()
        guess.send_line("HELLO token=wrong")
        wait_until(lambda: auth_in_progress(server) == 1)
        time.sleep(0.2)  # past the grace (real time)
        with LineConn(server.port) as newcomer:
            assert newcomer.read_line().startswith("FULL too many connections greeting ")
        assert guess.read_line(timeout=5).startswith("ERR unauthorized ")
    finally:
        guess.close()


def auth_in_progress(server: ServerThread) -> int:
    assert server.server is not None
    guard = server.server.auth_guard
    return server.sync(lambda: sum(guard._in_progress.values()))


def test_a_silent_connection_past_the_grace_is_told_why_it_goes(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(max_pending_per_ip=1)
    silent = LineConn(server.port)
    try:
        assert silent.read_line() == "NAME Client01"
        assert server.server is not None
        grace = server.server.pending.grace
        time.sleep(grace + 0.1)  # the grace is real time: let it pass
        with LineConn(server.port) as newcomer:
            assert newcomer.read_line() == "NAME Client02"
            assert newcomer.request("HELLO").startswith("WELCOME Client02 ")
        assert silent.read_line() == (
            "ERR timeout dropped for a newer connection: no HELLO in time"
        )
        assert silent.at_eof()
    finally:
        silent.close()
