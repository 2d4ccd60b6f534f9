"""--proxy-protocol over loopback: the PROXY header's client is the client, in STATUS,
WHO, the per-address cap and the log; who may send one; and a header where none is due.

The headers are written by hand here (exact bytes); tests/e2e/test_haproxy.py
puts a real HAProxy in front.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from filedock.server.stats import Statistics
from tests.support import HOST, LineConn, ServerThread, wait_until
from tests.support.credentials import tls_options

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v1(host: str, port: int, family: str = "TCP4") -> bytes:
    target = "192.0.2.100" if family == "TCP4" else "2001:db8::100"
    return f"PROXY {family} {host} {target} {port} 50000\r\n".encode()


def v2(host: str, port: int) -> bytes:
    """A send-proxy-v2 header of TCP over IPv4 or IPv6 (by ``host``'s form)."""
    packed = socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    target = bytes(len(packed))
    family = b"\x21" if len(packed) == 16 else b"\x11"
    block = packed + target + port.to_bytes(2, "big") + (50000).to_bytes(2, "big")
    return V2_SIGNATURE + b"\x21" + family + len(block).to_bytes(2, "big") + block


V2_LOCAL = V2_SIGNATURE + b"\x20\x00\x00\x00"


@pytest.fixture
def proxied(make_server: Callable[..., ServerThread]) -> Callable[..., ServerThread]:
    def make(**options: object) -> ServerThread:
        options.setdefault("proxy_protocol", True)
        return make_server(**options)

    return make


@pytest.fixture
def conns() -> Iterator[Callable[[int], LineConn]]:
    opened: list[LineConn] = []

    def open_conn(port: int) -> LineConn:
        conn = LineConn(port)
        opened.append(conn)
        return conn

    yield open_conn
    for conn in opened:
        conn.close()


def counter(server: ServerThread, read: Callable[[Statistics], int]) -> int:
    """One of the server's counters, read on its loop."""
    assert server.server is not None
    stats = server.server.stats
    return server.sync(lambda: read(stats))


def status_addresses(conn: LineConn) -> list[str]:
    """The address column of STATUS, oldest first."""
    head = conn.request("STATUS")
    count = int(head.split()[1])
    return [conn.read_line().split("\t")[3] for _ in range(count)]


@pytest.mark.parametrize(
    ("header", "shown"),
    [
        (v1("192.0.2.7", 40001), "192.0.2.7:40001"),
        (v1("2001:db8::7", 40002, "TCP6"), "[2001:db8::7]:40002"),
        (v2("192.0.2.8", 40003), "192.0.2.8:40003"),
        (v2("2001:db8::8", 40004), "[2001:db8::8]:40004"),
    ],
    ids=["v1-tcp4", "v1-tcp6", "v2-tcp4", "v2-tcp6"],
)
def test_the_headers_client_is_shown_in_status_and_who(
    proxied: Callable[..., ServerThread],
    conns: Callable[[int], LineConn],
    header: bytes,
    shown: str,
) -> None:
    server = proxied()
    conn = conns(server.port)
    conn.send(header)
    name = conn.greet()
    assert status_addresses(conn) == [shown]
    assert conn.request("WHO") == f"WHO {name}"


def test_the_clients_first_line_in_the_headers_packet_is_not_lost(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn]
) -> None:
    server = proxied()
    conn = conns(server.port)
    conn.send(v2("192.0.2.9", 40005) + b"HELLO\nPING\n")  # one write: one packet on loopback
    assert conn.read_line().startswith("NAME Client")
    assert conn.read_line().startswith("WELCOME Client")
    assert conn.read_line() == "PONG"


def test_a_second_header_is_refused_as_one_not_expected(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn]
) -> None:
    server = proxied()
    conn = conns(server.port)
    conn.send(v1("192.0.2.11", 40007) + v2("192.0.2.12", 40008))  # a relay of a relay's header
    assert conn.read_line().startswith("NAME ")
    assert conn.read_line() == "ERR handshake PROXY protocol header not expected"
    assert conn.at_eof()


def test_a_header_that_comes_byte_by_byte_is_read_whole(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn]
) -> None:
    server = proxied()
    conn = conns(server.port)
    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    header = v1("192.0.2.10", 40006)
    for i in range(len(header)):
        conn.send(header[i : i + 1])
    conn.greet()
    assert status_addresses(conn) == ["192.0.2.10:40006"]


@pytest.mark.parametrize("header", [V2_LOCAL, b"PROXY UNKNOWN\r\n"], ids=["v2-local", "v1-unknown"])
def test_local_and_unknown_keep_the_real_peer(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn], header: bytes
) -> None:
    server = proxied()
    conn = conns(server.port)
    conn.send(header)
    conn.greet()
    host, port = conn.sock.getsockname()[:2]
    own = f"{host}:{port}"
    assert status_addresses(conn) == [own]


def test_the_per_address_cap_counts_the_headers_address(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn]
) -> None:
    # Every connection comes from 127.0.0.1 (the balancer); the cap is per client.
    server = proxied(max_clients=5, max_clients_per_ip=1)
    first = conns(server.port)
    first.send(v1("192.0.2.20", 40010))
    first.greet()
    again = conns(server.port)
    again.send(v1("192.0.2.20", 40011))
    assert again.read_line().startswith("FULL ")
    other = conns(server.port)
    other.send(v1("192.0.2.21", 40012))
    other.greet()
    assert status_addresses(first) == ["192.0.2.20:40010", "192.0.2.21:40012"]


def test_the_log_names_the_headers_client(
    proxied: Callable[..., ServerThread],
    conns: Callable[[int], LineConn],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="filedock.server")
    server = proxied()
    conn = conns(server.port)
    conn.send(v2("192.0.2.30", 40020))
    name = conn.greet()
    wait_until(lambda: f"Connected: {name} from 192.0.2.30:40020" in caplog.text)


def test_the_starting_line_says_the_header_is_required(
    proxied: Callable[..., ServerThread], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="filedock.server")
    proxied()
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("Starting")]
    assert line.endswith(", proxy_protocol=on")


def test_a_peer_not_allowed_to_relay_is_closed_at_once(
    proxied: Callable[..., ServerThread],
    conns: Callable[[int], LineConn],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="filedock.server")
    server = proxied(proxy_from=("10.0.0.0/8", "2001:db8::/32"))
    for _ in range(25):
        conn = conns(server.port)
        conn.send(v1("192.0.2.40", 40030))
        assert conn.at_eof()
        assert conn._buffer == b""  # not a byte: no NAME, no ERR
    wait_until(lambda: server.statistics().sessions_open == 0)
    refusals = [r for r in caplog.records if "not allowed to send a PROXY header" in r.message]
    assert len(refusals) == 20  # one a connection, rate-limited per source as every refusal
    assert "127.0.0.1:" in refusals[0].message
    assert counter(server, lambda c: c.protocol_errors) == 25


def test_a_peer_in_a_listed_network_may_relay(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn]
) -> None:
    server = proxied(proxy_from=("10.0.0.0/8", "127.0.0.1"))
    conn = conns(server.port)
    conn.send(v1("192.0.2.41", 40031))
    conn.greet()


def test_no_header_within_the_handshake_timeout_is_closed_without_a_word(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn]
) -> None:
    server = proxied(handshake_timeout=0.3)
    conn = conns(server.port)
    assert conn.at_eof(timeout=5)
    assert conn._buffer == b""  # no NAME: the server speaks only once the header came
    assert counter(server, lambda c: c.timeouts["handshake"]) == 1
    wait_until(lambda: server.session_count() == 0)


def test_a_client_speaking_first_without_a_header_is_refused(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn]
) -> None:
    server = proxied()
    conn = conns(server.port)
    conn.send(b"HELLO Client01\n")
    assert conn.at_eof()
    assert conn._buffer == b""
    assert counter(server, lambda c: c.protocol_errors) == 1


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 192.0.2.1 192.0.2.2 99999 50000\r\n",
        b"PROXY TCP4 192.0.2.1 192.0.2.2 1 50000\n",
        V2_SIGNATURE + b"\x21\x11\xff\xff",
        b"PROXY UNKNOWN " + b"x" * 200,
    ],
    ids=["bad-port", "no-crlf", "oversize", "no-crlf-in-107"],
)
def test_an_invalid_header_is_closed(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn], header: bytes
) -> None:
    server = proxied()
    conn = conns(server.port)
    conn.send(header)
    assert conn.at_eof()
    assert conn._buffer == b""
    wait_until(lambda: server.session_count() == 0)


def test_a_health_check_that_only_connects_takes_no_name(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn]
) -> None:
    server = proxied()
    conns(server.port).close()
    wait_until(lambda: server.session_count() == 0)
    conn = conns(server.port)
    conn.send(v1("192.0.2.50", 40040))
    assert conn.greet() == "Client01"


def test_a_shutdown_ends_a_connection_still_before_its_header(
    proxied: Callable[..., ServerThread], conns: Callable[[int], LineConn]
) -> None:
    server = proxied(handshake_timeout=60.0)
    conn = conns(server.port)
    wait_until(lambda: server.session_count() == 1)
    server.stop()
    assert conn.at_eof(timeout=5)
    assert conn._buffer == b""


@pytest.mark.parametrize(
    "header", [v1("192.0.2.60", 40050), v2("192.0.2.60", 40050)], ids=["v1", "v2"]
)
def test_a_header_without_the_option_is_a_protocol_error_that_closes(
    make_server: Callable[..., ServerThread], conns: Callable[[int], LineConn], header: bytes
) -> None:
    server = make_server()
    conn = conns(server.port)
    assert conn.read_line().startswith("NAME ")
    conn.send(header + b"HELLO\n")
    assert conn.read_line() == "ERR handshake PROXY protocol header not expected"
    assert conn.at_eof()
    assert counter(server, lambda c: c.protocol_errors) == 1
    wait_until(lambda: server.session_count() == 0)


def tls_connection(port: int, ca: trustme.CA, before: bytes = b"") -> ssl.SSLSocket:
    raw = socket.create_connection((HOST, port), timeout=5)
    raw.sendall(before)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context.wrap_socket(raw, server_hostname="127.0.0.1")


def test_under_tls_the_header_comes_before_the_tls_handshake(
    proxied: Callable[..., ServerThread], ca: trustme.CA, tmp_path: Path
) -> None:
    server = proxied(**tls_options(ca, tmp_path))
    with tls_connection(server.port, ca, v2("192.0.2.70", 40060)) as sock:
        reader = sock.makefile("rb")
        name = reader.readline().decode().split()[1]
        sock.sendall(f"HELLO {name}\nSTATUS\n".encode())
        assert reader.readline().startswith(b"WELCOME ")
        assert reader.readline() == b"STATUS 1\n"
        assert reader.readline().rstrip(b"\n").split(b"\t")[3] == b"192.0.2.70:40060"
        reader.close()


def test_under_tls_a_header_without_the_option_is_closed(
    make_server: Callable[..., ServerThread], ca: trustme.CA, tmp_path: Path
) -> None:
    server = make_server(**tls_options(ca, tmp_path))
    with pytest.raises((ssl.SSLError, OSError)):
        tls_connection(server.port, ca, v1("192.0.2.80", 40070)).close()
    wait_until(lambda: counter(server, lambda c: c.protocol_errors) == 1)
