"""The HTTP side (--http) attacked from outside, as a hostile client would: heads
that bend HTTP/1.1, Host tricks, token guessing, connections held open on
purpose, and a shutdown with all of that going on."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import filedock.server.http_listener as http_listener
import filedock.server.watch as watch
from filedock import Client
from filedock.server.throughput import Throughput
from tests.support import HOST, LineConn, ServerThread, wait_until
from tests.support.process import ServerProcess
from tests.support.web import http_get, http_port

HTTP = f"{HOST}:0"
TOKEN = "alpha-123"
LOCAL = b"Host: 127.0.0.1\r\n"
MAX = http_listener.MAX_HEAD


def head_of(*lines: bytes, target: bytes = b"/healthz") -> bytes:
    """``GET target HTTP/1.1`` with a loopback Host, then ``lines``, then the blank line."""
    fields = b"".join(line + b"\r\n" for line in lines)
    return b"GET " + target + b" HTTP/1.1\r\n" + LOCAL + fields + b"\r\n"


@pytest.fixture
def watched(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(http=HTTP)


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    tokens = tmp_path / "http-tokens"
    tokens.write_text(f"{TOKEN}\ntök-ü-7 read\n", encoding="utf-8")
    return tokens


@pytest.fixture
def token_watched(token_file: Path, make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(http=HTTP, token_file=str(token_file))


def exchange(port: int, data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` on a new connection, then read until the server closes it."""
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        sock.sendall(data)
        return read_to_end(sock)


def read_to_end(sock: socket.socket) -> bytes:
    """What the server sends until it closes the connection."""
    answer = b""
    while chunk := sock.recv(65536):
        answer += chunk
    return answer


def status_of(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:80]
    return int(answer[9:12])


def _connections(server: ServerThread) -> int:
    assert server.server is not None
    assert server.server.watch is not None
    return server.server.watch.listener.connections


# -- heads that bend HTTP/1.1 -------------------------------------------------


@pytest.mark.parametrize(
    ("head", "status"),
    [
        # A line ended by LF alone: refused at once, not left to the head's timeout.
        (b"GET /healthz HTTP/1.1\nHost: 127.0.0.1\n\n", 400),
        (head_of(target=b"/healthz\x00"), 400),
        (head_of(target=b"/\xff\xfe"), 400),
        (head_of(b"X-A: a\x00b"), 400),
        (head_of(b"X-A: a\rb"), 400),
        (head_of(b"X-A: a", b" b"), 400),  # obs-fold
        (b"GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 400),  # HTTP/1.1 needs a Host
        (head_of(b"Host: localhost"), 400),
        (head_of(target=b"/" + b"a" * MAX), 414),
        (head_of(b"X-A: " + b"a" * MAX), 431),
        (head_of(*[b"X-A: y"] * 40), 431),
        (b"\r\n" * MAX, 414),
        # Smuggling: a body is never read, so any sign of one is refused.
        (head_of(b"Content-Length: 5", b"Transfer-Encoding: chunked") + b"0\r\n\r\n", 400),
        (head_of(b"Content-Length: 0", b"Content-Length: 0"), 400),
        (head_of(b"Transfer-Encoding: chunked") + b"0\r\n\r\n", 400),
        (b"GET /healthz\r\n\r\n", 400),  # HTTP/0.9
        (b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505),
        (head_of(target=b"http://127.0.0.1/metrics"), 400),
        (head_of(b"Content-Length: 0").replace(b"GET", b"POST", 1), 405),
    ],
)
def test_a_bent_head_is_refused_at_once_with_its_status(
    watched: ServerThread, head: bytes, status: int
) -> None:
    started = time.monotonic()
    answer = exchange(http_port(watched), head)
    assert status_of(answer) == status
    assert b"Connection: close\r\n" in answer
    assert time.monotonic() - started < http_listener.HEAD_TIMEOUT / 2


@pytest.mark.parametrize(
    "head",
    [
        b"GET /healthz HTTP/1.0\r\n\r\n",  # HTTP/1.0 may leave Host out
        b"\r\n" + head_of(b"Connection: close"),
        head_of(b"X-A: a\tb \xe9", b"Connection: close"),
        head_of(b"Connection: close", target=b"/healthz?x=1&y=%00"),
    ],
)
def test_an_odd_but_lawful_head_is_answered(watched: ServerThread, head: bytes) -> None:
    answer = exchange(http_port(watched), head)
    assert status_of(answer) == 200
    assert answer.endswith(b"\r\n\r\nok\n")


def test_no_target_reaches_a_file(repo: Path, watched: ServerThread) -> None:
    (repo / "secret.txt").write_text("not for the web\n")
    port = http_port(watched)
    for target in (
        "/secret.txt", "/%2e%2e/secret.txt", "/..%2fsecret.txt", "//etc/passwd",
        "/%73ecret.txt", "/metrics/../secret.txt", "/./metrics", "/METRICS", "/healthz#x",
        "/" + "a" * 7000,
    ):  # fmt: skip
        answer = http_get(port, target)
        assert answer.status == 404, target
        assert b"not for the web" not in answer.body
        assert b"root:" not in answer.body


def test_every_route_takes_a_query_and_head_answers_gets_length(watched: ServerThread) -> None:
    port = http_port(watched)
    for path in ("/", "/metrics", "/healthz", "/status.json"):
        got = http_get(port, f"{path}?token={TOKEN}&x=%ff")
        head = http_get(port, f"{path}?token={TOKEN}&x=%ff", method="HEAD")
        assert (got.status, head.status) == (200, 200), path
        assert head.body == b""
        assert int(got.headers["Content-Length"]) == len(got.body), path
        if path in ("/", "/healthz"):  # the others' figures move between the two requests
            assert head.headers["Content-Length"] == got.headers["Content-Length"], path
        else:
            assert int(head.headers["Content-Length"]) > 0, path
        assert got.headers["Cache-Control"] == "no-store"


def test_pipelined_requests_are_answered_in_order_and_a_half_close_is_served(
    watched: ServerThread,
) -> None:
    port = http_port(watched)
    with socket.create_connection((HOST, port), timeout=5) as sock:
        sock.sendall(
            b"GET /healthz HTTP/1.1\r\n" + LOCAL + b"\r\n"
            b"HEAD /metrics HTTP/1.1\r\n" + LOCAL + b"\r\n"
            b"GET /nowhere HTTP/1.1\r\n" + LOCAL + b"\r\n"
        )
        sock.shutdown(socket.SHUT_WR)  # the client has said all: its answers still come
        answer = read_to_end(sock)
    statuses = [int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)]
    assert statuses == [200, 200, 404]


# -- Host tricks (DNS rebinding) ----------------------------------------------


@pytest.mark.parametrize(
    "host",
    [
        "attacker.example",
        "127.0.0.1.attacker.example",
        "localhost:80@attacker.example",
        "localhost.attacker.example:80",
        "attacker.example 127.0.0.1",
        "localhost:8o",
        "[::1]x",
        "[attacker.example]",
    ],
)
def test_a_host_that_is_no_address_of_ours_is_refused_on_loopback(
    watched: ServerThread, host: str
) -> None:
    answer = http_get(http_port(watched), "/status.json", headers={"Host": host})
    assert answer.status == 403, host
    assert b"clients" not in answer.body


@pytest.mark.parametrize(
    "host", ["127.0.0.1", "127.0.0.1:9100", "localhost:9100", "LOCALHOST", "[::1]", "[::1]:80"]
)
def test_an_address_or_localhost_is_let_in(watched: ServerThread, host: str) -> None:
    assert http_get(http_port(watched), "/healthz", headers={"Host": host}).status == 200


# -- the token ----------------------------------------------------------------


def _delay(server: ServerThread) -> float:
    assert server.server is not None
    guard = server.server.auth_guard
    return server.sync(lambda: guard.answer_delay("loopback"))


def test_guessing_a_token_over_http_earns_the_delays_of_the_line_protocol(
    token_watched: ServerThread,
) -> None:
    port = http_port(token_watched)
    for guess in ("guess-1", "guess-2", "guess-3"):
        answer = http_get(port, "/metrics", headers={"Authorization": f"Bearer {guess}"})
        assert answer.status == 401
    # One guard for both sides: three wrong tokens over HTTP slow the source's
    # next answers, HTTP or line protocol, right token or wrong.
    assert _delay(token_watched) >= 0.5
    started = time.monotonic()
    right = http_get(port, "/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
    assert right.status == 200
    assert time.monotonic() - started >= 0.5
    assert _delay(token_watched) == 0.0  # a right token: the delay starts again from zero


def test_no_token_is_answered_at_once_and_is_no_guess(token_watched: ServerThread) -> None:
    port = http_port(token_watched)
    for headers in ({}, {"Authorization": "Bearer "}, {"Authorization": "Basic YTpi"}):
        answer = http_get(port, "/status.json", headers=headers)
        assert answer.status == 401
        assert answer.headers["WWW-Authenticate"] == 'Bearer realm="filedock"'
    assert _delay(token_watched) == 0.0
    # In the query string, a token is no token: it would end up in logs and histories.
    assert http_get(port, f"/healthz?access_token={TOKEN}").status == 401


@pytest.mark.parametrize(
    "authorization",
    [f"Bearer {TOKEN}", f"bearer {TOKEN}", f"BEARER  {TOKEN} ", "Bearer tök-ü-7"],
)
def test_the_scheme_is_case_blind_and_a_token_is_read_as_utf_8(
    token_watched: ServerThread, authorization: str
) -> None:
    head = (
        b"GET /healthz HTTP/1.1\r\n" + LOCAL
        + b"Authorization: " + authorization.encode("utf-8") + b"\r\nConnection: close\r\n\r\n"
    )  # fmt: skip
    assert status_of(exchange(http_port(token_watched), head)) == 200


def test_nothing_shown_holds_a_token_or_a_path_beyond_the_repository(
    repo: Path, token_file: Path, token_watched: ServerThread, downloads: Path
) -> None:
    port = http_port(token_watched)
    with Client(HOST, token_watched.port, timeout=10, token=TOKEN) as client:
        client.get("sample.txt", downloads)
        right = {"Authorization": f"Bearer {TOKEN}"}
        for path in ("/metrics", "/status.json", "/"):
            body = http_get(port, path, headers=right).text
            for secret in (TOKEN, "tök-ü-7", str(repo), str(token_file), "hello"):
                assert secret not in body, (path, secret)


# -- connections held open on purpose -----------------------------------------


@pytest.fixture
def two_places(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(http_listener, "MAX_CONNECTIONS", 2)


def _silent(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=5)


def _dribbling(port: int) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=5)
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 1")  # the rest, a byte a second: never
    return sock


def _never_reading(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(5)
    sock.connect((HOST, port))
    # Answers to take, many times what the sockets' buffers hold: never read.
    sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n" * 2000)
    return sock


@pytest.mark.usefixtures("two_places")
@pytest.mark.parametrize("hold", [_silent, _dribbling, _never_reading])
def test_connections_held_open_give_way_to_a_real_client(
    monkeypatch: pytest.MonkeyPatch,
    make_server: Callable[..., ServerThread],
    hold: Callable[[int], socket.socket],
) -> None:
    monkeypatch.setattr(http_listener, "EVICT_AFTER", 0.0)  # each has waited long enough
    server = make_server(http=HTTP)
    port = http_port(server)
    held = [hold(port) for _ in range(2)]
    try:
        wait_until(lambda: server.sync(lambda: _connections(server)) == 2)
        # Without a place given up, every scrape and health check would be 503
        # for as long as someone holds the listener's connections.
        for _ in range(3):
            assert http_get(port, "/healthz").status == 200
        assert server.sync(lambda: _connections(server)) <= 2
    finally:
        for sock in held:
            sock.close()


@pytest.mark.usefixtures("two_places")
def test_past_its_connections_a_newcomer_is_told_503_at_once_while_all_are_fresh(
    monkeypatch: pytest.MonkeyPatch, make_server: Callable[..., ServerThread]
) -> None:
    monkeypatch.setattr(http_listener, "EVICT_AFTER", 3600.0)
    server = make_server(http=HTTP)
    port = http_port(server)
    held = [_silent(port) for _ in range(2)]
    try:
        wait_until(lambda: server.sync(lambda: _connections(server)) == 2)
        answer = exchange(port, head_of())
        assert status_of(answer) == 503
        assert b"\r\nRetry-After: 1\r\n" in answer
    finally:
        for sock in held:
            sock.close()


def _from(address: str, port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=5, source_address=(address, 0))


@pytest.mark.usefixtures("two_places")
def test_one_source_holding_the_places_cannot_keep_another_out(
    monkeypatch: pytest.MonkeyPatch, make_server: Callable[..., ServerThread]
) -> None:
    monkeypatch.setattr(http_listener, "EVICT_AFTER", 3600.0)  # all are fresh
    server = make_server(http=HTTP)
    assert server.server is not None
    assert server.server.watch is not None
    listener = server.server.watch.listener
    # Each loopback address its own source here (the server counts them all as one).
    listener.source_of = str
    port = http_port(server)
    crowd = [_from("127.0.0.2", port) for _ in range(2)]
    try:
        wait_until(lambda: server.sync(lambda: _connections(server)) == 2)
        with _from("127.0.0.3", port) as other:
            other.sendall(head_of(b"Connection: close"))
            assert status_of(other.recv(100)) == 200
        wait_until(lambda: server.sync(lambda: _connections(server)) == 1)
        crowd.append(_from("127.0.0.2", port))  # its own source: no fresh place given up
        wait_until(lambda: server.sync(lambda: _connections(server)) == 2)
        with _from("127.0.0.2", port) as more:
            more.sendall(head_of())
            assert status_of(more.recv(100)) == 503
    finally:
        for sock in crowd:
            sock.close()


def test_a_hundred_slow_http_clients_leave_the_file_clients_prompt(
    repo: Path, downloads: Path, watched: ServerThread
) -> None:
    port = http_port(watched)
    held = [_dribbling(port) for _ in range(100)]
    try:
        wait_until(lambda: watched.sync(lambda: _connections(watched)) > 0)
        with LineConn(watched.port, timeout=2) as conn:
            conn.greet()
            started = time.monotonic()
            assert conn.request("PING") == "PONG"
            assert time.monotonic() - started < 1.0
        with Client(HOST, watched.port, timeout=10) as client:
            client.get("sample.txt", downloads)
        assert (downloads / "sample.txt").read_bytes() == (repo / "sample.txt").read_bytes()
        assert watched.sync(lambda: _connections(watched)) <= http_listener.MAX_CONNECTIONS
    finally:
        for sock in held:
            sock.close()


def test_wrong_tokens_held_in_their_delay_do_not_lock_out_the_token_holder(
    monkeypatch: pytest.MonkeyPatch, token_file: Path, make_server: Callable[..., ServerThread]
) -> None:
    monkeypatch.setattr(http_listener, "MAX_CONNECTIONS", 4)
    monkeypatch.setattr(http_listener, "EVICT_AFTER", 0.0)
    server = make_server(http=HTTP, token_file=str(token_file))
    port = http_port(server)
    wrong = head_of(b"Authorization: Bearer guess")
    guessers = []
    try:
        for _ in range(6):  # more than may be answered at once: some queue behind
            sock = _silent(port)
            sock.sendall(wrong)
            guessers.append(sock)
        wait_until(lambda: _delay(server) > 0)
        assert server.server is not None
        started = time.monotonic()
        right = http_get(port, "/healthz", headers={"Authorization": f"Bearer {TOKEN}"})
        assert right.status == 200
        assert time.monotonic() - started < 8.0 + 2.0  # one delay at most (AuthGuard)
    finally:
        for sock in guessers:
            sock.close()
    # The turns of the guesses dropped or gone are all given back.
    guard = server.server.auth_guard
    wait_until(lambda: server.sync(lambda: not guard._in_progress and not guard._queued))


# -- stopping with all of that held ---------------------------------------------


def test_a_server_stops_cleanly_and_promptly_with_http_connections_held(
    repo: Path, token_file: Path
) -> None:
    server = ServerProcess(
        repo, "--http", HTTP, "--token-file", str(token_file), "--shutdown-grace", "2"
    )
    sockets: list[socket.socket] = []
    try:
        port = int(server.wait_for_log(r"Status page on http://127\.0\.0\.1:(\d+)/").group(1))
        idle = _silent(port)  # answered, then kept alive
        sockets.append(idle)
        idle.sendall(head_of(f"Authorization: Bearer {TOKEN}".encode()))
        assert idle.recv(100).startswith(b"HTTP/1.1 200 ")
        sockets += [_dribbling(port) for _ in range(5)]
        for _ in range(5):  # wrong tokens, their answers held in their delay
            sockets.append(_silent(port))
            sockets[-1].sendall(head_of(b"Authorization: Bearer x", target=b"/"))
        server.wait_for_log("Unauthorized: HTTP")
        started = time.monotonic()
        server.proc.send_signal(signal.SIGTERM)
        assert server.wait(timeout=10) == 0
        assert time.monotonic() - started < 2 + 3.0  # within its grace
    finally:
        server.stop()
        for sock in sockets:
            sock.close()
    assert "Traceback" not in server.log
    assert "Exception in callback" not in server.log
    assert "ERROR" not in server.log


def test_http_on_the_line_protocols_own_port_stops_the_start(repo: Path) -> None:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    # The later --port is the one taken. The start fails before the Starting
    # line, which says the server is ready: with its HTTP side too.
    root = Path(__file__).resolve().parents[2]
    argv = [sys.executable, str(root / "Server.py"), "--repo", str(repo)]
    argv += ["--port", str(port), "--http", f"{HOST}:{port}"]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0
    assert "address already in use" in done.stderr
    assert "Starting server on" not in done.stderr
    assert "Traceback" not in done.stderr


def test_the_chart_goes_on_after_a_sample_fails(
    monkeypatch: pytest.MonkeyPatch, make_server: Callable[..., ServerThread]
) -> None:
    monkeypatch.setattr(watch, "SAMPLE_EVERY", 0.01)
    calls = []
    tick = Throughput.tick

    def failing_once(self: Throughput, total: int) -> None:
        calls.append(total)
        if len(calls) == 1:
            raise ArithmeticError("a bug in the first sample")
        tick(self, total)

    monkeypatch.setattr(Throughput, "tick", failing_once)
    server = make_server(http=HTTP)
    port = http_port(server)

    def series() -> list[int]:
        found: list[int] = json.loads(http_get(port, "/status.json").body)["rate"][
            "bytes_per_second"
        ]
        return found

    wait_until(lambda: len(series()) >= 2)


def test_requests_asked_as_fast_as_possible_are_answered_in_turn_at_the_listeners_pace(
    monkeypatch: pytest.MonkeyPatch, make_server: Callable[..., ServerThread]
) -> None:
    monkeypatch.setattr(http_listener, "REQUESTS_PER_SECOND", 100)
    server = make_server(http=HTTP)
    port = http_port(server)
    pipelined = head_of() * 9 + head_of(b"Connection: close")
    started = time.monotonic()
    with _silent(port) as first, _silent(port) as second:
        first.sendall(pipelined)
        second.sendall(pipelined)
        for sock in (first, second):
            assert read_to_end(sock).count(b"HTTP/1.1 200 OK\r\n") == 10
    # 20 requests begin 10 ms apart, whichever connection asks: the loop the
    # file clients are served on is never taken by a client asking nonstop.
    assert time.monotonic() - started >= 19 * 0.01
