"""The HTTP side (--http): its routes, its token, and its limits against slow or
hostile HTTP clients, on a real server."""

from __future__ import annotations

import asyncio
import http.client
import json
import socket
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

import filedock.server.http_listener as http_listener
import filedock.server.server as server_module
from filedock import Client
from filedock.server.config import ServerConfig
from filedock.server.server import Server
from filedock.server.watch import Watch
from tests.support import HOST, LineConn, ServerThread, wait_until
from tests.support.web import SlowReader, http_get, http_port

HTTP = f"{HOST}:0"


@pytest.fixture
def watched(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(http=HTTP)


def test_off_by_default(server: ServerThread) -> None:
    assert server.server is not None
    assert server.server.watch is None


def test_healthz_is_ok_while_serving_and_503_once_stopping(watched: ServerThread) -> None:
    port = http_port(watched)
    answer = http_get(port, "/healthz")
    assert (answer.status, answer.text) == (200, "ok\n")
    assert answer.headers["Content-Type"] == "text/plain; charset=utf-8"
    assert watched.server is not None
    watched.sync(watched.server.request_stop)
    answer = http_get(port, "/healthz")
    assert (answer.status, answer.text) == (503, "stopping\n")


def test_the_page_is_one_html_document_with_its_policy(watched: ServerThread) -> None:
    answer = http_get(http_port(watched), "/")
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "text/html; charset=utf-8"
    page = answer.text
    assert '<meta name="viewport"' in page
    assert "<canvas" in page
    assert "/*script*/" not in page
    assert "/*style*/" not in page
    assert "src=" not in page
    assert 'href="http' not in page
    policy = answer.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy
    assert "script-src 'sha256-" in policy


def test_status_json_has_every_part(watched: ServerThread) -> None:
    with LineConn(watched.port) as conn:
        name = conn.greet()
        answer = http_get(http_port(watched), "/status.json")
        assert answer.headers["Content-Type"] == "application/json; charset=utf-8"
        document = json.loads(answer.body)
    assert set(document) == {"server", "clients", "transfers", "history", "counters", "rate"}
    assert document["server"]["max_clients"] == 3
    assert document["server"]["stopping"] is False
    (client,) = document["clients"]
    assert client["name"] == name
    assert client["address"].startswith("127.0.0.1:")
    assert client["since"] <= document["server"]["time"]
    assert [record["name"] for record in document["history"]] == [name]
    assert document["history"][0]["finished"] is None
    counters = {(c["name"], tuple(c["labels"].items())) for c in document["counters"]}
    assert ("bytes_sent", ()) in counters
    assert ("timeouts", (("kind", "idle"),)) in counters
    assert document["rate"]["interval"] == 1


def test_other_paths_are_404_and_no_file_of_the_repository_is_served(
    repo: Path, watched: ServerThread
) -> None:
    (repo / "secret.txt").write_text("not for the web\n")
    port = http_port(watched)
    for path in ("/secret.txt", "/../secret.txt", "/metrics/", "/status.json/x", "//metrics"):
        answer = http_get(port, path)
        assert answer.status == 404, path
        assert b"not for the web" not in answer.body


def test_only_get_and_head_are_served(watched: ServerThread) -> None:
    port = http_port(watched)
    for method in ("POST", "PUT", "DELETE", "OPTIONS"):
        answer = http_get(port, "/healthz", method=method)
        assert answer.status == 405, method
        assert answer.headers["Allow"] == "GET, HEAD"
    head = http_get(port, "/metrics", method="HEAD")
    assert head.status == 200
    assert head.body == b""
    assert int(head.headers["Content-Length"]) > 0


def test_one_connection_serves_request_after_request(watched: ServerThread) -> None:
    connection = http.client.HTTPConnection(HOST, http_port(watched), timeout=5)
    try:
        for _ in range(3):
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            assert (response.status, response.read()) == (200, b"ok\n")
            assert response.headers["Connection"] == "keep-alive"
        connection.request("GET", "/healthz", headers={"Connection": "close"})
        response = connection.getresponse()
        assert response.headers["Connection"] == "close"
        response.read()
        assert watched.sync(lambda: _connections(watched)) <= 1
    finally:
        connection.close()


def test_a_name_that_is_not_an_address_is_refused_on_loopback(watched: ServerThread) -> None:
    port = http_port(watched)
    # A web page elsewhere, pointing its own name at 127.0.0.1 (DNS rebinding).
    answer = http_get(port, "/status.json", headers={"Host": f"attacker.example:{port}"})
    assert answer.status == 403
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]"):
        assert http_get(port, "/healthz", headers={"Host": host}).status == 200, host


@pytest.fixture
def token_watched(tmp_path: Path, make_server: Callable[..., ServerThread]) -> ServerThread:
    tokens = tmp_path / "http-tokens"
    tokens.write_text("alpha-123\n")
    return make_server(http=HTTP, token_file=str(tokens))


def test_with_a_token_file_every_request_needs_a_token(token_watched: ServerThread) -> None:
    port = http_port(token_watched)
    for path in ("/metrics", "/healthz", "/status.json", "/nowhere"):
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": "alpha-123"}):
            answer = http_get(port, path, headers=headers)
            assert answer.status == 401, (path, headers)
            assert answer.headers["WWW-Authenticate"] == 'Bearer realm="filedock"'
            assert b"filedock_" not in answer.body
    right = {"Authorization": "Bearer alpha-123"}
    assert http_get(port, "/healthz", headers=right).text == "ok\n"
    assert http_get(port, "/status.json", headers=right).status == 200
    assert http_get(port, "/nowhere", headers=right).status == 404


def test_without_a_token_the_page_is_its_login_form(token_watched: ServerThread) -> None:
    answer = http_get(http_port(token_watched), "/")
    assert answer.status == 401
    assert 'data-token="required"' in answer.text
    assert 'id="login"' in answer.text


@pytest.fixture
def tight(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_listener, "MAX_CONNECTIONS", 2)
    monkeypatch.setattr(http_listener, "HEAD_TIMEOUT", 0.3)
    # No held connection is old enough to give its place to a newcomer: it gets 503.
    monkeypatch.setattr(http_listener, "EVICT_AFTER", 3600.0)


def _connections(server: ServerThread) -> int:
    assert server.server is not None
    assert server.server.watch is not None
    return server.server.watch.listener.connections


@pytest.mark.usefixtures("tight")
def test_a_silent_connection_is_closed_after_the_head_timeout(watched: ServerThread) -> None:
    with socket.create_connection((HOST, http_port(watched)), timeout=5) as silent:
        silent.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # never ends its head
        assert silent.recv(100) == b""  # closed, with no answer owed
    wait_until(lambda: watched.sync(lambda: _connections(watched)) == 0)


def test_a_head_too_large_is_answered_431(watched: ServerThread) -> None:
    with socket.create_connection((HOST, http_port(watched)), timeout=5) as greedy:
        greedy.sendall(b"GET /healthz HTTP/1.1\r\nX-Big: " + b"x" * (http_listener.MAX_HEAD * 2))
        answer = greedy.recv(100)
    assert answer.startswith(b"HTTP/1.1 431 ")


@pytest.mark.usefixtures("tight")
def test_held_http_connections_cost_the_file_server_nothing(
    repo: Path, downloads: Path, watched: ServerThread
) -> None:
    port = http_port(watched)
    held = [socket.create_connection((HOST, port), timeout=5) for _ in range(2)]
    try:
        wait_until(lambda: watched.sync(lambda: _connections(watched)) == 2)
        with socket.create_connection((HOST, port), timeout=5) as third:
            third.sendall(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert third.recv(100).startswith(b"HTTP/1.1 503 ")
        with Client(HOST, watched.port, timeout=10) as client:  # the line protocol: untouched
            client.get("sample.txt", downloads)
        assert (downloads / "sample.txt").read_bytes() == (repo / "sample.txt").read_bytes()
    finally:
        for sock in held:
            sock.close()
    wait_until(lambda: watched.sync(lambda: _connections(watched)) == 0)
    assert http_get(port, "/healthz").status == 200


def test_a_taken_http_port_stops_the_start_and_leaves_nothing_open(repo: Path) -> None:
    with socket.socket() as taken:
        taken.bind((HOST, 0))
        taken.listen()
        busy = taken.getsockname()[1]
        config = replace(ServerConfig(), host=HOST, port=0, repo=str(repo), http=f"{HOST}:{busy}")

        async def start() -> None:
            server = Server(config)
            with pytest.raises(OSError, match="address already in use"):
                await server.start()
            assert server.watch is None

        asyncio.run(start())


BIG = 64 * 1024 * 1024


def test_metrics_parse_as_prometheus_and_move_with_traffic(
    repo: Path, downloads: Path, watched: ServerThread
) -> None:
    port = http_port(watched)

    def scrape() -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
        answer = http_get(port, "/metrics")
        assert answer.status == 200
        assert answer.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
        return {
            (sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(answer.text)
            for sample in family.samples
        }

    before = scrape()
    assert before[("filedock_bytes_sent_total", ())] == 0
    size = (repo / "sample.txt").stat().st_size
    with Client(HOST, watched.port, timeout=10) as client:
        client.get("sample.txt", downloads)
    after = scrape()
    assert after[("filedock_bytes_sent_total", ())] == size
    assert after[("filedock_uptime_seconds", ())] >= before[("filedock_uptime_seconds", ())]
    assert ("filedock_timeouts_total", (("kind", "idle"),)) in after
    assert all(name.startswith("filedock_") for name, _ in after)


def test_status_json_shows_a_transfer_in_progress(repo: Path, watched: ServerThread) -> None:
    with open(repo / "big.bin", "wb") as big:
        big.truncate(BIG)
    port = http_port(watched)

    def transfers() -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = json.loads(http_get(port, "/status.json").body)["transfers"]
        return found

    with SlowReader(watched.port, "big.bin") as reader:
        wait_until(lambda: any(t["done"] for t in transfers()), timeout=10)
        (first,) = transfers()
        assert (first["client"], first["path"], first["size"]) == (reader.name, "big.bin", BIG)
        wait_until(lambda: transfers()[0]["done"] > first["done"], timeout=10)
        wait_until(lambda: transfers()[0]["rate"] > 0, timeout=10)
        document = json.loads(http_get(port, "/status.json").body)
        (client,) = document["clients"]
        assert client["activity"]["verb"] == "get"
        assert client["activity"]["path"] == "big.bin"


def test_healthz_is_503_while_a_shutdown_waits_for_a_transfer(
    repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    with open(repo / "big.bin", "wb") as big:
        big.truncate(BIG)
    server = make_server(http=HTTP, shutdown_grace=30.0)
    port = http_port(server)
    assert server.server is not None
    with SlowReader(server.port, "big.bin") as reader:
        wait_until(lambda: reader.received > 0)
        closing = asyncio.run_coroutine_threadsafe(server.server.aclose(), server.loop)
        wait_until(lambda: http_get(port, "/healthz").status == 503)
        assert not closing.done()  # the transfer is still given its grace
        document = json.loads(http_get(port, "/status.json").body)
        assert document["server"]["stopping"] is True
    closing.result(timeout=10)  # the reader left: the shutdown ends, and the listener with it
    with pytest.raises(ConnectionRefusedError):
        http_get(port, "/healthz")


def test_the_http_side_listens_before_the_starting_line_says_ready(
    monkeypatch: pytest.MonkeyPatch, make_server: Callable[..., ServerThread]
) -> None:
    """Scripts take the Starting line to mean ready: a scrape right after it must
    find the HTTP side listening already."""
    happened: list[str] = []
    announce, start = server_module.announce, Watch.start

    def announcing(logger: Any, message: str, *args: Any, **fields: Any) -> None:
        happened.append(message.split(" on ")[0])
        announce(logger, message, *args, **fields)

    async def listening(self: Watch, host: str, port: int) -> None:
        await start(self, host, port)
        happened.append("HTTP listening")

    monkeypatch.setattr(server_module, "announce", announcing)
    monkeypatch.setattr(Watch, "start", listening)
    server = make_server(http=HTTP)
    assert happened == ["HTTP listening", "Starting server"]
    assert http_get(http_port(server), "/healthz").status == 200
