"""Every command after the handshake, framing limits, idle timeout and vanishing clients."""

from __future__ import annotations

import hashlib
import logging
import re
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from filedock import protocol as p
from filedock.client.client import Client
from filedock.errors import BadRequest
from filedock.version import __version__
from tests.conftest import SAMPLE
from tests.support import HOST, LineConn, ServerThread, wait_until

TIME = r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}"


def greeted(raw: Callable[[], LineConn]) -> LineConn:
    conn = raw()
    conn.greet()
    return conn


def read_status(conn: LineConn) -> list[list[str]]:
    header = conn.request("STATUS")
    match = re.fullmatch(r"STATUS (\d+)", header)
    assert match, header
    return [conn.read_line().split("\t") for _ in range(int(match.group(1)))]


@pytest.fixture
def raw_to() -> Iterator[Callable[[ServerThread], LineConn]]:
    """Raw line connections to a server of the test's own making; closed at the end."""
    conns: list[LineConn] = []

    def open_conn(server: ServerThread) -> LineConn:
        conns.append(LineConn(server.port))
        return conns[-1]

    yield open_conn
    for conn in conns:
        conn.close()


def local_port(conn: LineConn) -> int:
    port: int = conn.sock.getsockname()[1]
    return port


def assert_clean_log(caplog: pytest.LogCaptureFixture, name: str, *reasons: str) -> None:
    """``name`` finished once, for one of ``reasons``, and nothing went wrong."""

    def finished_lines() -> list[str]:
        return [
            m
            for r in list(caplog.records)
            if (m := r.getMessage()).startswith(f"Finished: {name} ")
        ]

    # Logged on the server's thread just after the slot is freed, which the test may see first.
    wait_until(lambda: bool(finished_lines()))
    messages = [record.getMessage() for record in caplog.records]
    finished = finished_lines()
    assert len(finished) == 1, messages
    match = re.fullmatch(rf"Finished: {name} \(([a-z-]+), \d+\.\d s\)", finished[0])
    assert match is not None, finished
    assert match.group(1) in reasons, finished
    assert [record for record in caplog.records if record.exc_info] == []
    assert not any("Traceback" in record.getMessage() for record in caplog.records)


# -- simple commands ---------------------------------------------------------------


def test_ping(raw: Callable[[], LineConn], connect: Callable[..., Client]) -> None:
    assert greeted(raw).request("PING") == "PONG"
    assert connect().ping() >= 0


def test_who_lists_clients_in_the_order_they_connected(
    server: ServerThread, raw: Callable[[], LineConn], connect: Callable[..., Client]
) -> None:
    first = greeted(raw)
    library = connect()
    third = raw()
    assert third.read_line() == "NAME Client03"  # not greeted yet: not shown
    assert first.request("WHO") == "WHO Client01 Client02"
    assert third.request("HELLO").startswith("WELCOME Client03 ")
    assert library.who() == ["Client01", "Client02", "Client03"]
    assert library.exit()
    wait_until(lambda: server.connected_count() == 2)
    assert first.request("who") == "WHO Client01 Client03"


def test_uptime(raw: Callable[[], LineConn], connect: Callable[..., Client]) -> None:
    reply = greeted(raw).request("UPTIME")
    match = re.fullmatch(r"UPTIME (\d+)", reply)
    assert match, reply
    assert 0 <= int(match.group(1)) < 60
    seconds = connect().uptime()
    assert isinstance(seconds, int)
    assert 0 <= seconds < 60


def test_about(raw: Callable[[], LineConn], connect: Callable[..., Client]) -> None:
    reply = greeted(raw).request("ABOUT")
    assert reply.startswith("ABOUT filedock ")
    assert __version__ in reply
    assert re.search(r"protocol 1\b", reply), reply
    assert "ABOUT " + connect().about() == reply


def test_help_is_one_line(raw: Callable[[], LineConn], connect: Callable[..., Client]) -> None:
    conn = greeted(raw)
    reply = conn.request("HELP")
    assert reply.startswith("HELP ")
    for word in ("status", "list", "get", "ping", "who", "uptime", "about", "exit"):
        assert word in reply.lower(), word
    assert conn.request("PING") == "PONG"  # nothing more came after the HELP line
    # A v1 greeting hears v1's list, as before; the library asks for v2 and
    # hears the new verbs too.
    assert reply == "HELP " + p.HELP_TEXT_V1
    assert connect().help() == p.HELP_TEXT
    assert "hash <path>" in p.HELP_TEXT


def test_status_records(
    make_server: Callable[..., ServerThread], raw_to: Callable[[ServerThread], LineConn]
) -> None:
    server = make_server()  # every address, as version 1 promises

    def raw() -> LineConn:
        return raw_to(server)

    before = datetime.now().replace(microsecond=0) - timedelta(seconds=1)
    leaver = greeted(raw)
    leaver_port = local_port(leaver)
    assert leaver.request("EXIT") == "BYE"
    wait_until(lambda: server.connected_count() == 0)
    conn = greeted(raw)
    library = Client(HOST, server.port, timeout=10.0)
    after = datetime.now() + timedelta(seconds=1)

    records = read_status(conn)
    assert [record[0] for record in records] == ["Client01", "Client02", "Client03"]
    for record in records:
        assert len(record) == 4, record
        assert re.fullmatch(TIME, record[1]), record
        assert before <= datetime.strptime(record[1], "%Y-%m-%d %H:%M:%S") <= after
    finished = records[0][2]
    assert re.fullmatch(TIME, finished), records[0]
    assert records[0][1] <= finished
    assert records[0][3] == f"127.0.0.1:{leaver_port}"
    assert records[1][2] == "-"
    assert records[1][3] == f"127.0.0.1:{local_port(conn)}"
    assert records[2][2] == "-"
    assert re.fullmatch(r"127\.0\.0\.1:\d+", records[2][3]), records[2]

    assert conn.request("PING") == "PONG"  # exactly n records came

    with library:
        typed = library.status()
    assert [record.name for record in typed] == ["Client01", "Client02", "Client03"]
    assert typed[0].finished is not None
    assert typed[0].finished >= typed[0].accepted
    assert [record.connected for record in typed] == [False, True, True]


def test_status_addresses_own_shows_each_client_its_own_address(
    make_server: Callable[..., ServerThread], raw_to: Callable[[ServerThread], LineConn]
) -> None:
    server = make_server(status_addresses="own")

    def raw() -> LineConn:
        return raw_to(server)

    first, second = greeted(raw), greeted(raw)
    for conn, own in ((first, "Client01"), (second, "Client02")):
        addresses = {record[0]: record[3] for record in read_status(conn)}
        assert addresses[own] == f"127.0.0.1:{local_port(conn)}"
        assert [address for name, address in addresses.items() if name != own] == ["-"]


def test_status_addresses_hidden_shows_none(
    make_server: Callable[..., ServerThread], raw_to: Callable[[ServerThread], LineConn]
) -> None:
    server = make_server(status_addresses="hidden")
    conn = raw_to(server)
    conn.greet()
    assert [record[3] for record in read_status(conn)] == ["-"]
    assert server.connected_count() == 1


def test_refused_and_unauthorized_connections_are_not_in_status(
    make_server: Callable[..., ServerThread],
    raw_to: Callable[[ServerThread], LineConn],
    tmp_path: Path,
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("s3cret-token-for-status\n")
    server = make_server(max_clients=1, token_file=str(tokens))

    def raw() -> LineConn:
        return raw_to(server)

    no_token = raw()
    assert no_token.read_line().startswith("NAME ")
    assert no_token.request("HELLO Client01").startswith("ERR unauthorized")
    holder = raw()
    holder.read_line()
    assert holder.request("HELLO Client02 token=s3cret-token-for-status").startswith("WELCOME")
    turned_away = raw()
    assert turned_away.read_line().startswith("FULL ")
    assert [record[0] for record in read_status(holder)] == ["Client02"]


# -- messages ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "reply"),
    [
        ("SAY ping", "ACK ping"),
        ("SAY EXIT", "ACK EXIT"),
        ("say GET sample.txt", "ACK GET sample.txt"),
        ("SAY sample.txt", "ACK sample.txt"),
        ("Say Hello There", "ACK Hello There"),
        ("hello there", "ACK hello there"),
        ("Mixed Case Stays", "ACK Mixed Case Stays"),
        ("  padded message \t ", "ACK padded message"),
        ("pingpong", "ACK pingpong"),
        ("héllo wörld ✓", "ACK héllo wörld ✓"),
    ],
)
def test_messages_are_acknowledged(raw: Callable[[], LineConn], line: str, reply: str) -> None:
    conn = greeted(raw)
    assert conn.request(line) == reply
    assert conn.request("PING") == "PONG"  # still serving: SAY EXIT did not exit


def test_say_via_the_library(connect: Callable[..., Client]) -> None:
    client = connect()
    assert client.say("ping") == "ping"
    assert client.say("Hello There") == "Hello There"
    assert client.send_line("just a message") == "just a message"
    assert client.ping() >= 0


@pytest.mark.parametrize("line", ["PiNg", "ping", "  PING  ", "\tping\t", "PING\r"])
def test_command_words_are_case_and_space_insensitive(
    raw: Callable[[], LineConn], line: str
) -> None:
    conn = greeted(raw)
    assert conn.request(line) == "PONG"


@pytest.mark.parametrize("line", ["wHo", "  who "])
def test_who_word_forms(raw: Callable[[], LineConn], line: str) -> None:
    assert greeted(raw).request(line) == "WHO Client01"


@pytest.mark.parametrize("blank", [b"\n", b"\r\n", b"   \n", b" \t \r\n", b"\n\n\n"])
def test_empty_lines_get_no_reply(raw: Callable[[], LineConn], blank: bytes) -> None:
    conn = greeted(raw)
    conn.send(blank + b"PING\n")
    assert conn.read_line() == "PONG"
    assert conn.request("WHO") == "WHO Client01"


@pytest.mark.parametrize("line", ["GET", "get", "GET   ", "  get "])
def test_get_without_a_path_is_a_bad_request(raw: Callable[[], LineConn], line: str) -> None:
    conn = greeted(raw)
    assert conn.request(line).startswith("ERR bad-request ")
    assert conn.request("PING") == "PONG"


def test_get_without_a_path_via_the_library(connect: Callable[..., Client]) -> None:
    client = connect()
    with pytest.raises(BadRequest):
        client.get("", "unused")
    assert client.ping() >= 0


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xfe\n",
        b"caf\xe9\n",
        b"\xc3\x28 bad\r\n",
        b"PING\x80\n",
        b"\xed\xa0\x80\n",
        b"\xc0\xaf\n",
    ],
)
def test_invalid_utf8_gets_bad_encoding_and_stays_open(
    raw: Callable[[], LineConn], data: bytes
) -> None:
    conn = greeted(raw)
    conn.send(data)
    assert conn.read_line().startswith("ERR bad-encoding ")
    assert conn.request("PING") == "PONG"
    conn.send(data)  # and again: each such line gets its reply
    assert conn.read_line().startswith("ERR bad-encoding ")
    assert conn.request("PING") == "PONG"


# -- line limit ----------------------------------------------------------------------


@pytest.mark.parametrize("ending", [b"\r\n", b"\n"])
def test_a_4096_byte_line_is_served(raw: Callable[[], LineConn], ending: bytes) -> None:
    conn = greeted(raw)
    text = "x" * (4096 - len(ending))
    conn.send(text.encode() + ending)
    assert conn.read_line() == f"ACK {text}"
    assert conn.request("PING") == "PONG"


@pytest.mark.parametrize("ending", [b"\r\n", b"\n"])
def test_a_4097_byte_line_is_refused_and_closed(
    server: ServerThread, raw: Callable[[], LineConn], ending: bytes
) -> None:
    conn = greeted(raw)
    conn.send(b"x" * (4097 - len(ending)) + ending)
    assert conn.read_line().startswith("ERR line-too-long ")
    assert conn.at_eof()
    wait_until(lambda: server.connected_count() == 0)


def test_an_endless_line_is_refused_and_closed(
    server: ServerThread, raw: Callable[[], LineConn]
) -> None:
    conn = greeted(raw)
    conn.send(b"y" * 20000)  # never ends: refused once it passes the limit
    assert conn.read_line().startswith("ERR line-too-long ")
    assert conn.at_eof()
    wait_until(lambda: server.connected_count() == 0)


def test_a_long_line_before_hello_is_refused(
    server: ServerThread, raw: Callable[[], LineConn]
) -> None:
    conn = raw()
    assert conn.read_line() == "NAME Client01"
    conn.send(b"HELLO " + b"z" * 5000 + b"\n")
    assert conn.read_line().startswith("ERR line-too-long ")
    assert conn.at_eof()
    wait_until(lambda: server.connected_count() == 0)


def test_line_limit_holds_across_separate_sends(
    server: ServerThread, raw: Callable[[], LineConn]
) -> None:
    conn = greeted(raw)
    conn.send(b"x" * 4094 + b"\r")  # 4095 bytes: still room for the LF
    assert not conn.at_eof(timeout=0.2)
    conn.send(b"\n")
    assert conn.read_line() == "ACK " + "x" * 4094
    conn.send(b"y" * 4096)  # no LF yet, but with one it would be 4097 bytes
    assert conn.read_line().startswith("ERR line-too-long ")
    assert conn.at_eof()
    wait_until(lambda: server.connected_count() == 0)


# -- pipelining ------------------------------------------------------------------------


def test_pipelined_lines_are_answered_in_order(raw: Callable[[], LineConn]) -> None:
    conn = greeted(raw)
    lines = []
    expected = []
    for i in range(1000):
        if i % 5 == 0:
            lines.append("PING")
            expected.append("PONG")
        elif i % 7 == 0:
            lines.append("who")
            expected.append("WHO Client01")
        else:
            lines.append(f"message {i}")
            expected.append(f"ACK message {i}")
    conn.send("".join(line + "\n" for line in lines))
    assert [conn.read_line() for _ in range(1000)] == expected
    assert conn.request("PING") == "PONG"


def test_pipelined_lines_with_crlf_and_blanks(raw: Callable[[], LineConn]) -> None:
    conn = greeted(raw)
    conn.send(b"one\r\n\r\nPING\r\n  \n\xff\ntwo\n")
    assert conn.read_line() == "ACK one"
    assert conn.read_line() == "PONG"
    assert conn.read_line().startswith("ERR bad-encoding ")
    assert conn.read_line() == "ACK two"
    assert conn.request("PING") == "PONG"


def test_pipelined_waiting_commands_keep_the_order(raw: Callable[[], LineConn]) -> None:
    conn = greeted(raw)
    conn.send(b"GET sample.txt\nPING\nLIST\nsample.txt\nWHO\nget nothing.txt\nPING\n")
    digest = hashlib.sha256(SAMPLE).hexdigest()
    assert conn.read_line() == f"FILE {len(SAMPLE)} {digest} sample.txt"
    assert conn.read_exactly(len(SAMPLE)) == SAMPLE
    assert conn.read_line() == "PONG"
    assert conn.read_line() == "FILES 1"
    assert conn.read_line().startswith(f"sample.txt\t{len(SAMPLE)}\t")
    assert conn.read_line() == f"FILE {len(SAMPLE)} {digest} sample.txt"
    assert conn.read_exactly(len(SAMPLE)) == SAMPLE
    assert conn.read_line() == "WHO Client01"
    assert conn.read_line().startswith("ERR not-found ")
    assert conn.read_line() == "PONG"


def test_nothing_is_served_after_exit(server: ServerThread, raw: Callable[[], LineConn]) -> None:
    conn = greeted(raw)
    conn.send(b"PING\nexit\nPING\nWHO\n")
    assert conn.read_line() == "PONG"
    assert conn.read_line() == "BYE"
    assert conn.at_eof()
    with pytest.raises(AssertionError, match="connection closed; unread: b''"):
        conn.read_line(timeout=1)  # nothing came after BYE
    wait_until(lambda: server.connected_count() == 0)


# -- idle timeout ------------------------------------------------------------------------


def test_idle_timeout_drops_a_silent_client(
    make_server: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="filedock")
    server = make_server(idle_timeout=0.5)
    conn = LineConn(server.port)
    try:
        conn.greet()
        assert not conn.at_eof(timeout=0.3)
        assert conn.request("PING") == "PONG"  # a line pushes the deadline back
        heard = time.monotonic()
        line = conn.read_line(timeout=5)
        assert line.startswith("ERR timeout "), line
        assert time.monotonic() - heard >= 0.4, "the idle deadline did not count from the PING"
        assert conn.at_eof()
        wait_until(lambda: server.connected_count() == 0)
        assert_clean_log(caplog, "Client01", "idle-timeout")
    finally:
        conn.close()


def test_a_line_too_long_ends_the_session_as_a_protocol_error(
    raw: Callable[[], LineConn], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="filedock")
    conn = greeted(raw)
    conn.send(b"A" * 5000 + b"\n")  # over the default --max-line of 4096
    assert conn.read_line().startswith("ERR line-too-long ")
    assert conn.at_eof()
    assert_clean_log(caplog, "Client01", "protocol-error")


# -- clients that vanish -------------------------------------------------------------------


def _vanish_by_close(conn: LineConn) -> None:
    conn.close()


def _vanish_by_reset(conn: LineConn) -> None:
    conn.reset()


def _vanish_mid_line(conn: LineConn) -> None:
    conn.send(b"PIN")
    conn.close()


def _vanish_mid_line_reset(conn: LineConn) -> None:
    conn.send(b"hello the")
    conn.reset()


def _vanish_after_pipelining(conn: LineConn) -> None:
    conn.send(b"PING\n" * 50 + b"WHO")
    conn.close()


@pytest.mark.parametrize(
    ("vanish", "reasons"),
    [
        (_vanish_by_close, ("eof",)),
        (_vanish_by_reset, ("reset",)),
        (_vanish_mid_line, ("eof",)),
        (_vanish_mid_line_reset, ("reset",)),
        # The replies to the pipelined lines may meet the closed socket first.
        (_vanish_after_pipelining, ("eof", "reset")),
    ],
)
def test_vanished_clients_are_finished_at_once(
    server: ServerThread,
    raw: Callable[[], LineConn],
    caplog: pytest.LogCaptureFixture,
    vanish: Callable[[LineConn], None],
    reasons: tuple[str, ...],
) -> None:
    caplog.set_level(logging.INFO, logger="filedock")
    watcher = greeted(raw)
    leaver = greeted(raw)
    assert server.connected_count() == 2
    vanish(leaver)
    wait_until(lambda: server.connected_count() == 1)
    wait_until(lambda: server.session_count() == 1)
    records = read_status(watcher)
    assert [record[0] for record in records] == ["Client01", "Client02"]
    assert records[0][2] == "-"
    assert re.fullmatch(TIME, records[1][2]), records[1]
    assert watcher.request("WHO") == "WHO Client01"
    assert_clean_log(caplog, "Client02", *reasons)


def test_half_close_gets_the_replies_then_the_close(
    server: ServerThread, raw: Callable[[], LineConn], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="filedock")
    conn = greeted(raw)
    conn.send(b"PING\nWHO\nunfinished")
    conn.sock.shutdown(socket.SHUT_WR)
    assert conn.read_line() == "PONG"
    assert conn.read_line() == "WHO Client01"
    assert conn.at_eof()  # the unended last line got no reply
    wait_until(lambda: server.connected_count() == 0)
    assert_clean_log(caplog, "Client01", "eof")


@pytest.mark.parametrize("reset", [False, True])
def test_vanished_ungreeted_client_is_finished(
    server: ServerThread,
    raw: Callable[[], LineConn],
    caplog: pytest.LogCaptureFixture,
    reset: bool,
) -> None:
    caplog.set_level(logging.INFO, logger="filedock")
    conn = raw()
    assert conn.read_line() == "NAME Client01"
    assert server.statistics().pending == 1
    if reset:
        conn.reset()
    else:
        conn.close()
    wait_until(lambda: server.statistics().pending == 0)  # its place is free again
    assert server.session_count() == 0
    messages = [record.getMessage() for record in caplog.records]
    assert not any("Client01" in message for message in messages), messages  # never welcomed
    assert [record for record in caplog.records if record.exc_info] == []


def test_library_exit_frees_the_slot(
    server: ServerThread, connect: Callable[..., Client], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="filedock")
    client = connect()
    assert client.exit()
    assert client.closed
    wait_until(lambda: server.connected_count() == 0)
    assert_clean_log(caplog, "Client01", "exit")
