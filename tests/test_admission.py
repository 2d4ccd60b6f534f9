"""Admission and handshake over loopback: NAME/FULL, HELLO/WELCOME, timeouts, capacity."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from filedock.client import Client
from filedock.errors import ConnectionLost, ServerFull
from filedock.version import __version__
from tests.support import HOST, LineConn, ServerThread, wait_until

FULL_LINE = "FULL server is at capacity (3/3 clients)"


def burst(port: int, count: int, opened: list[LineConn]) -> list[str]:
    """Open ``count`` connections at once; the first line each one gets.

    Every connection made is appended to ``opened`` (the caller closes them),
    in the same order as the lines returned.
    """
    barrier = threading.Barrier(count, timeout=10)
    lock = threading.Lock()

    def attempt(_: int) -> tuple[LineConn, str]:
        barrier.wait()
        conn = LineConn(port, timeout=10)
        with lock:
            opened.append(conn)
        return conn, conn.read_line()

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


def test_handshake_timeout_closes_and_frees_the_slot(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(handshake_timeout=0.3, max_clients=1)
    conns: list[LineConn] = []
    try:
        silent = LineConn(server.port)
        conns.append(silent)
        assert silent.read_line() == "NAME Client01"
        waiting = LineConn(server.port)
        conns.append(waiting)
        assert waiting.read_line() == "FULL server is at capacity (1/1 clients)"

        line = silent.read_line(timeout=5)
        assert line.startswith("ERR timeout "), line
        assert silent.at_eof()
        wait_until(lambda: server.connected_count() == 0)

        late = LineConn(server.port)
        conns.append(late)
        assert late.greet() == "Client02"
        assert late.request("STATUS") == "STATUS 2"
        first = late.read_line().split("\t")
        second = late.read_line().split("\t")
        assert first[0] == "Client01"
        assert first[2] != "-"  # FINISHED is set
        assert second[0] == "Client02"
        assert second[2] == "-"
    finally:
        close_all(conns)


def test_greeted_client_is_not_hit_by_the_handshake_timeout(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(handshake_timeout=0.3)
    conn = LineConn(server.port)
    try:
        conn.greet()
        assert not conn.at_eof(timeout=0.8)  # well past the handshake timeout
        assert conn.request("PING") == "PONG"
        assert server.connected_count() == 1
    finally:
        conn.close()


def test_lines_before_hello_do_not_extend_the_handshake_timeout(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(handshake_timeout=0.4)
    conn = LineConn(server.port)
    try:
        assert conn.read_line() == "NAME Client01"
        named = time.monotonic()
        timed_out = False
        for _ in range(100):  # one line every 50 ms or so, for at most 5 s
            if time.monotonic() - named > 5:
                break
            line = conn.request("PING")
            if line.startswith("ERR timeout "):
                timed_out = True
                break
            assert line.startswith("ERR handshake "), line
            if conn.at_eof(timeout=0.05):
                assert conn.read_line().startswith("ERR timeout ")
                timed_out = True
                break
        elapsed = time.monotonic() - named
        assert timed_out, "lines before HELLO kept the connection alive"
        assert 0.35 <= elapsed < 3
        assert conn.at_eof()
        wait_until(lambda: server.connected_count() == 0)
    finally:
        conn.close()


# -- capacity --------------------------------------------------------------------------


def test_full_then_close(server: ServerThread, raw: Callable[[], LineConn]) -> None:
    held = [raw() for _ in range(3)]
    assert [conn.read_line() for conn in held] == [
        "NAME Client01",
        "NAME Client02",
        "NAME Client03",
    ]
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


def test_capacity_is_exact_under_a_burst(server: ServerThread) -> None:
    first: list[LineConn] = []
    second: list[LineConn] = []
    try:
        lines = burst(server.port, 50, first)
        names = sorted(line for line in lines if line.startswith("NAME "))
        assert names == ["NAME Client01", "NAME Client02", "NAME Client03"]
        assert lines.count(FULL_LINE) == 47
        assert server.connected_count() == 3
        for conn, line in zip(first, lines, strict=True):
            if line == FULL_LINE:
                assert conn.at_eof()

        # free one slot: exactly one of a new burst gets in, with the next number
        leaving = next(conn for conn, line in zip(first, lines, strict=True) if line == names[0])
        assert leaving.request("EXIT") == "BYE"
        wait_until(lambda: server.connected_count() == 2)
        lines = burst(server.port, 20, second)
        assert [line for line in lines if line.startswith("NAME ")] == ["NAME Client04"]
        assert lines.count(FULL_LINE) == 19
        assert server.connected_count() == 3
    finally:
        close_all(first)
        close_all(second)


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
