"""TLS, access tokens and the per-address limit."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import trustme

from filedock import tls
from filedock.client import Client
from filedock.errors import ConnectionLost, ServerFull, Unauthorized
from filedock.tokens import FailureDelay, TokenChecker, read_token_file, token_from_greeting
from tests.support import HOST, LineConn, ServerThread, wait_until

ROOT = Path(__file__).resolve().parent.parent
TOKENS = "# access tokens\n\nalpha-123\n  beta-456  \n# old: gamma\n"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(
    ca: trustme.CA, tmp_path: Path, make_server: Callable[..., ServerThread]
) -> ServerThread:
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_file = tmp_path / "cert.pem"
    key_file = tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(cert_file), append=True)
    cert.private_key_pem.write_to_path(str(key_file))
    return make_server(tls_cert=str(cert_file), tls_key=str(key_file), handshake_timeout=1.0)


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def clients() -> Iterator[list[Client]]:
    opened: list[Client] = []
    yield opened
    for client in opened:
        client.close()


# -- TLS ----------------------------------------------------------------------


def test_tls_session_and_verified_download(
    tls_server: ServerThread, ca_file: str, repo: Path, downloads: Path, clients: list[Client]
) -> None:
    data = bytes(range(256)) * 4096 * 3  # 3 MiB: several chunks
    (repo / "big.bin").write_bytes(data)
    client = Client(HOST, tls_server.port, tls=tls.client_context(ca_file), timeout=10)
    clients.append(client)
    assert client.name == "Client01"
    assert client.ping() >= 0
    saved = client.get("big.bin", downloads)
    assert hashlib.sha256(saved.read_bytes()).digest() == hashlib.sha256(data).digest()
    assert client.say("over tls") == "over tls"


def test_tls_with_an_unknown_ca_is_refused(tls_server: ServerThread) -> None:
    other_ca = trustme.CA()
    context = ssl.create_default_context()
    other_ca.configure_trust(context)
    with pytest.raises(ConnectionLost, match="certificate"):
        Client(HOST, tls_server.port, tls=context, timeout=5)
    assert tls_server.connected_count() == 0


def test_insecure_context_accepts_a_self_signed_server(
    tls_server: ServerThread, clients: list[Client]
) -> None:
    client = Client(HOST, tls_server.port, tls=tls.client_context(insecure=True), timeout=5)
    clients.append(client)
    assert client.who() == [client.name]


def test_plain_client_against_tls_server_fails_clearly(tls_server: ServerThread) -> None:
    started = time.monotonic()
    with pytest.raises(ConnectionLost, match="TLS"):
        Client(HOST, tls_server.port, timeout=10)
    # The server's handshake timeout (1 s here) ends it, not the client's 10 s.
    assert time.monotonic() - started < 8
    assert tls_server.connected_count() == 0


def test_tls_client_against_plain_server_fails_clearly(server: ServerThread, ca_file: str) -> None:
    with pytest.raises(ConnectionLost, match="TLS handshake"):
        Client(HOST, server.port, tls=tls.client_context(ca_file), timeout=5)
    wait_until(lambda: server.connected_count() == 0)


def test_handshake_timeout_covers_a_client_that_never_starts_tls(
    tls_server: ServerThread,
) -> None:
    conn = LineConn(tls_server.port)
    try:
        assert conn.at_eof(timeout=6)  # closed by the server after about 1 s
    finally:
        conn.close()
    assert tls_server.connected_count() == 0


# -- tokens -------------------------------------------------------------------


def test_token_file_skips_blank_lines_and_comments(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    assert read_token_file(str(path)) == ["alpha-123", "beta-456"]
    path.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="no token"):
        read_token_file(str(path))


def test_token_checker() -> None:
    checker = TokenChecker(["alpha-123", "beta-456"])
    assert checker.accepts("beta-456")
    assert not checker.accepts("beta-45")
    assert not checker.accepts("")
    assert not checker.accepts(None)
    assert token_from_greeting("Client01 filedock-client/1.0 token=abc") == "abc"
    assert token_from_greeting("Client01") is None


def test_failure_delay_grows_per_address_and_is_forgotten() -> None:
    now = [0.0]
    delays = FailureDelay(base=0.5, cap=4.0, forget_after=60, clock=lambda: now[0])
    assert [delays.record_failure("a") for _ in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert delays.record_failure("b") == 0.5
    now[0] = 100.0
    assert delays.record_failure("a") == 0.5
    delays.record_success("a")
    assert delays.record_failure("a") == 0.5


@pytest.fixture
def token_server(tmp_path: Path, make_server: Callable[..., ServerThread]) -> ServerThread:
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    return make_server(token_file=str(path))


def test_valid_token_is_welcome(token_server: ServerThread, clients: list[Client]) -> None:
    client = Client(HOST, token_server.port, token="beta-456", timeout=5)
    clients.append(client)
    assert client.ping() >= 0


@pytest.mark.parametrize("token", [None, "wrong", "alpha-12"])
def test_missing_or_wrong_token_is_unauthorized(
    token_server: ServerThread, token: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="filedock")
    with pytest.raises(Unauthorized):
        Client(HOST, token_server.port, token=token, timeout=10)
    wait_until(lambda: token_server.connected_count() == 0)
    text = caplog.text
    assert "Unauthorized: Client01" in text
    for secret in ("alpha-123", "beta-456", "wrong", "alpha-12"):
        assert secret not in text


def test_raw_greeting_with_token_and_without(token_server: ServerThread) -> None:
    good = LineConn(token_server.port)
    bad = LineConn(token_server.port)
    try:
        name = good.read_line().split()[1]
        assert good.request(f"HELLO {name} token=alpha-123").startswith(f"WELCOME {name} ")
        assert good.request("PING") == "PONG"
        bad.read_line()
        assert bad.request("HELLO").startswith("ERR unauthorized ")
        assert bad.at_eof()
    finally:
        good.close()
        bad.close()


def test_repeated_failures_are_answered_later_and_later(token_server: ServerThread) -> None:
    # Failures 1, 2, 3 from one address wait 0.25, 0.5 and 1 s: the third
    # answer cannot come within half a second.
    for _ in range(2):
        with pytest.raises(Unauthorized):
            Client(HOST, token_server.port, token="nope", timeout=10)
    conn = LineConn(token_server.port)
    try:
        conn.read_line()
        conn.send_line("HELLO token=nope")
        with pytest.raises(TimeoutError):
            conn.read_line(timeout=0.5)
        assert conn.read_line(timeout=10).startswith("ERR unauthorized ")
    finally:
        conn.close()


# -- per-address limit --------------------------------------------------------


def _connect_from(source: str, port: int) -> LineConn:
    conn = LineConn.__new__(LineConn)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    sock.connect((HOST, port))
    conn.sock = sock
    conn.timeout = 5
    conn._buffer = bytearray()
    return conn


def test_per_address_limit(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(max_clients=5, max_clients_per_ip=2)
    conns = [_connect_from("127.0.0.1", server.port) for _ in range(3)]
    conns.append(_connect_from("127.0.0.2", server.port))
    try:
        assert conns[0].read_line() == "NAME Client01"
        assert conns[1].read_line() == "NAME Client02"
        assert conns[2].read_line() == (
            "FULL too many connections from your address (2/2 per address)"
        )
        assert conns[3].read_line() == "NAME Client03"  # another address still gets in
        conns[0].send_line("EXIT")
        assert conns[0].read_line() == "BYE"
        again = _connect_from("127.0.0.1", server.port)
        conns.append(again)
        assert again.read_line() == "NAME Client04"
    finally:
        for conn in conns:
            conn.close()


def test_per_address_refusal_reaches_the_library(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(max_clients=5, max_clients_per_ip=1)
    with Client(HOST, server.port, timeout=5), pytest.raises(ServerFull, match="per address"):
        Client(HOST, server.port, timeout=5)


# -- the client's command line ------------------------------------------------


def _client(
    port: int, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "Client.py"), "--port", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_client_cafile_option(tls_server: ServerThread, ca_file: str) -> None:
    result = _client(tls_server.port, "--cafile", ca_file, "ping")
    assert result.returncode == 0, result.stderr
    assert "[SERVER] PONG" in result.stdout


def test_client_insecure_option_warns(tls_server: ServerThread) -> None:
    result = _client(tls_server.port, "--insecure", "who", "--json")
    assert result.returncode == 0, result.stderr
    assert "WARNING: --insecure" in result.stderr
    assert json.loads(result.stdout) == ["Client01"]


def test_client_without_tls_against_tls_server(tls_server: ServerThread) -> None:
    result = _client(tls_server.port, "ping")
    assert result.returncode == 3
    assert "TLS" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_client_missing_cafile_is_a_usage_error(tls_server: ServerThread, tmp_path: Path) -> None:
    result = _client(tls_server.port, "--cafile", str(tmp_path / "nope.pem"), "ping")
    assert result.returncode == 2
    assert "--cafile" in result.stderr


def test_client_token_from_file_and_environment(token_server: ServerThread, tmp_path: Path) -> None:
    token_file = tmp_path / "mine"
    token_file.write_text("# mine\nbeta-456\n")
    by_file = _client(token_server.port, "--token-file", str(token_file), "ping")
    assert by_file.returncode == 0, by_file.stderr
    by_env = _client(token_server.port, "ping", env={"FILEDOCK_TOKEN": "alpha-123"})
    assert by_env.returncode == 0, by_env.stderr
    wrong = _client(token_server.port, "ping", env={"FILEDOCK_TOKEN": "guess"})
    assert wrong.returncode == 7
    assert "unauthorized" in wrong.stdout + wrong.stderr
