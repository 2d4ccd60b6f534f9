"""IPv6: addresses in brackets where a port follows, and ``--host ::`` for both families."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

from filedock.client.client import Client
from filedock.errors import ConnectionLost
from filedock.hostport import host_port
from filedock.server.config import ServerConfig
from filedock.server.server import dual_stack_socket
from tests.support import LineConn, ServerThread, ipv6_loopback

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback(), reason="no IPv6 loopback (::1) here")


@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("127.0.0.1", "127.0.0.1:50000"),
        ("::1", "[::1]:50000"),
        ("fe80::1%eth0", "[fe80::1%eth0]:50000"),
        ("[::1]", "[::1]:50000"),
        ("files.example", "files.example:50000"),
    ],
)
def test_host_port_puts_an_ipv6_address_in_brackets(host: str, shown: str) -> None:
    assert host_port(host, 50000) == shown


@pytest.mark.parametrize("host", ["127.0.0.1", "0.0.0.0", "::1", "localhost", ""])
def test_only_the_unspecified_ipv6_address_gets_a_dual_stack_socket(host: str) -> None:
    assert dual_stack_socket(host, 0) is None


def _server_on(repo: Path, host: str) -> Iterator[ServerThread]:
    config = replace(ServerConfig(), host=host, port=0, repo=str(repo), loop="asyncio")
    thread = ServerThread(config).start()
    try:
        yield thread
    finally:
        thread.stop()


@pytest.fixture
def dual_server(repo: Path) -> Iterator[ServerThread]:
    if not socket.has_dualstack_ipv6():
        pytest.skip("this system cannot listen on IPv6 and IPv4 with one socket")
    yield from _server_on(repo, "::")


@pytest.fixture
def v6_server(repo: Path) -> Iterator[ServerThread]:
    yield from _server_on(repo, "::1")


@needs_ipv6
def test_host_unspecified_v6_takes_ipv4_clients_too(dual_server: ServerThread) -> None:
    v4, v6 = LineConn(dual_server.port, "127.0.0.1"), LineConn(dual_server.port, "::1")
    try:
        assert v4.greet() == "Client01"
        assert v6.greet() == "Client02"
        # Every address; an IPv6 one in brackets.
        v6.send_line("STATUS")
        assert v6.read_line() == "STATUS 2"
        records = [v6.read_line().split("\t") for _ in range(2)]
        assert records[1][3] == f"[::1]:{v6.sock.getsockname()[1]}"
        assert records[0][3] == f"127.0.0.1:{v4.sock.getsockname()[1]}"
    finally:
        v4.close()
        v6.close()


@needs_ipv6
def test_the_library_reaches_an_ipv6_server(v6_server: ServerThread) -> None:
    with Client("::1", v6_server.port, timeout=10) as client:
        assert client.name == "Client01"
        [record] = client.status()
        assert record.address.startswith("[::1]:")


@needs_ipv6
def test_cannot_connect_names_an_ipv6_address_in_brackets() -> None:
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as closed:
        closed.bind(("::1", 0))
        port = closed.getsockname()[1]  # bound, not listening: refused
        with pytest.raises(ConnectionLost, match=rf"cannot connect to \[::1\]:{port}: "):
            Client("::1", port, timeout=5)
