"""filedock servers behind a real HAProxy (``mode tcp``, send-proxy and send-proxy-v2).

Clients connect from 127.0.0.2 while HAProxy reaches the server from
127.0.0.1, so what STATUS shows tells the PROXY header's address from the
balancer's. Skipped without haproxy (a failure under CI, see tests/support/haproxy.py).
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from tests.support import HOST, LineConn, ServerThread, wait_until
from tests.support.credentials import tls_options
from tests.support.haproxy import HAProxy, check_config, haproxy_config
from tests.support.process import ROOT, ServerProcess

CLIENT_HOST = "127.0.0.2"  # on lo, as every 127.x address, but not HAProxy's own


@pytest.fixture
def balancer(tmp_path: Path) -> Iterator[Callable[..., HAProxy]]:
    started: list[HAProxy] = []

    def start(backends: list[ServerThread | ServerProcess], **options: object) -> HAProxy:
        proxy = HAProxy(tmp_path, [(HOST, backend.port) for backend in backends], **options)
        started.append(proxy.start())
        return proxy

    yield start
    for proxy in started:
        proxy.stop()


@pytest.fixture
def conns() -> Iterator[Callable[..., LineConn]]:
    opened: list[LineConn] = []

    def open_conn(port: int, source: str = CLIENT_HOST, timeout: float = 5.0) -> LineConn:
        conn = LineConn(port, source=source, timeout=timeout)
        opened.append(conn)
        return conn

    yield open_conn
    for conn in opened:
        conn.close()


def status_rows(conn: LineConn) -> list[list[str]]:
    head = conn.request("STATUS")
    return [conn.read_line().split("\t") for _ in range(int(head.split()[1]))]


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_a_client_through_haproxy_sees_its_own_address_in_status(
    make_server: Callable[..., ServerThread],
    balancer: Callable[..., HAProxy],
    conns: Callable[..., LineConn],
    send_proxy: str,
) -> None:
    server = make_server(proxy_protocol=True)
    proxy = balancer([server], send_proxy=send_proxy)
    conn = conns(proxy.port)
    name = conn.greet()
    own = "{}:{}".format(*conn.sock.getsockname()[:2])
    assert own.startswith(f"{CLIENT_HOST}:")
    rows = status_rows(conn)
    assert [(row[0], row[3]) for row in rows] == [(name, own)]


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_under_tls_the_header_comes_first_and_tls_passes_through(
    make_server: Callable[..., ServerThread],
    balancer: Callable[..., HAProxy],
    ca: trustme.CA,
    tmp_path: Path,
    send_proxy: str,
) -> None:
    server = make_server(proxy_protocol=True, **tls_options(ca, tmp_path))
    proxy = balancer([server], send_proxy=send_proxy)
    context = ssl.create_default_context()
    ca.configure_trust(context)
    raw = socket.create_connection((HOST, proxy.port), timeout=5, source_address=(CLIENT_HOST, 0))
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        reader = sock.makefile("rb")
        name = reader.readline().decode().split()[1]
        sock.sendall(f"HELLO {name}\nSTATUS\n".encode())
        assert reader.readline().startswith(b"WELCOME ")
        assert reader.readline() == b"STATUS 1\n"
        address = reader.readline().rstrip(b"\n").split(b"\t")[3].decode()
        assert address == "{}:{}".format(*sock.getsockname()[:2])
        reader.close()


def test_the_per_address_cap_applies_to_the_headers_address(
    make_server: Callable[..., ServerThread],
    balancer: Callable[..., HAProxy],
    conns: Callable[..., LineConn],
) -> None:
    # Every 127.x address is one source, so here the clients name themselves to a
    # HAProxy that takes a PROXY header (a second balancer in front, as the
    # specification's chains do) and relays it with send-proxy-v2.
    server = make_server(proxy_protocol=True, max_clients=5, max_clients_per_ip=1)
    proxy = balancer([server], accept_proxy=True)

    def via(host: str, port: int) -> LineConn:
        conn = conns(proxy.port)
        conn.send(f"PROXY TCP4 {host} 127.0.0.1 {port} {proxy.port}\r\n")
        return conn

    first = via("192.0.2.20", 40001)
    first.greet()
    assert via("192.0.2.20", 40002).read_line().startswith("FULL ")
    via("192.0.2.21", 40003).greet()
    assert [row[3] for row in status_rows(first)] == ["192.0.2.20:40001", "192.0.2.21:40003"]


def test_a_balancer_not_allowed_to_relay_is_refused(
    make_server: Callable[..., ServerThread],
    balancer: Callable[..., HAProxy],
    conns: Callable[..., LineConn],
) -> None:
    server = make_server(proxy_protocol=True, proxy_from=("10.0.0.0/8",))
    proxy = balancer([server])
    conn = conns(proxy.port)
    assert conn.at_eof()
    assert conn._buffer == b""  # no NAME: closed before any word
    assert server.connected_count() == 0


def test_no_header_with_the_option_times_out_without_a_word(
    make_server: Callable[..., ServerThread],
    balancer: Callable[..., HAProxy],
    conns: Callable[..., LineConn],
) -> None:
    server = make_server(proxy_protocol=True, handshake_timeout=0.5)
    proxy = balancer([server], send_proxy="")
    conn = conns(proxy.port)
    assert conn.at_eof(timeout=5)
    assert conn._buffer == b""
    wait_until(lambda: server.session_count() == 0)


@pytest.mark.parametrize("send_proxy", ["send-proxy", "send-proxy-v2"])
def test_a_header_without_the_option_is_a_protocol_error(
    make_server: Callable[..., ServerThread],
    balancer: Callable[..., HAProxy],
    conns: Callable[..., LineConn],
    send_proxy: str,
) -> None:
    server = make_server()
    proxy = balancer([server], send_proxy=send_proxy)
    conn = conns(proxy.port)
    assert conn.read_line().startswith("NAME ")  # sent on accept, before the header is read
    assert conn.read_line() == "ERR handshake PROXY protocol header not expected"
    assert conn.at_eof()


def test_server_py_with_the_options_behind_haproxy(
    repo: Path, balancer: Callable[..., HAProxy], conns: Callable[..., LineConn]
) -> None:
    server = ServerProcess(repo, "--proxy-protocol", "--proxy-from", "127.0.0.1/32")
    try:
        proxy = balancer([server], send_proxy="send-proxy")
        conn = conns(proxy.port)
        name = conn.greet()
        host, port = conn.sock.getsockname()[:2]
        server.wait_for_log(rf"Connected: {name} from {host}:{port}")
        conn.close()
    finally:
        server.stop()


def test_two_nodes_take_turns_behind_one_address(
    make_server: Callable[..., ServerThread],
    balancer: Callable[..., HAProxy],
    conns: Callable[..., LineConn],
) -> None:
    nodes = [make_server(proxy_protocol=True), make_server(proxy_protocol=True)]
    proxy = balancer(nodes, balance="roundrobin")
    for _ in range(4):
        conns(proxy.port).greet()
    assert [node.connected_count() for node in nodes] == [2, 2]


def test_the_example_configuration_is_one_haproxy_takes() -> None:
    outcome = check_config(ROOT / "examples" / "haproxy.cfg")
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr


def test_the_generated_configuration_is_one_haproxy_takes(tmp_path: Path) -> None:
    path = tmp_path / "generated.cfg"
    path.write_text(haproxy_config(50000, [(HOST, 50001), (HOST, 50002)], accept_proxy=True))
    outcome = check_config(path)
    assert outcome.returncode == 0, outcome.stdout + outcome.stderr
