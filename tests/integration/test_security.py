"""TLS, access tokens and the per-address limit."""

from __future__ import annotations

import asyncio
import asyncio.sslproto
import hashlib
import logging
import select
import socket
import ssl
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trustme

from filedock.client.client import Client
from filedock.client.connection import client_context
from filedock.errors import ConnectionLost, ServerFull, Unauthorized
from filedock.server.auth import (
    AuthGuard,
    FailureDelay,
    TokenChecker,
    generate_token,
    read_token_file,
    token_from_greeting,
)
from filedock.server.session import Session
from filedock.server.tls_upgrade import TlsUpgrade
from tests.support import (
    HOST,
    BackgroundLoad,
    LineConn,
    ServerThread,
    ipv6_loopback,
    wait_until,
)
from tests.support.credentials import TOKENS, tls_options


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
    client = Client(HOST, tls_server.port, tls=client_context(ca_file), timeout=10)
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
    client = Client(HOST, tls_server.port, tls=client_context(insecure=True), timeout=5)
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
        Client(HOST, server.port, tls=client_context(ca_file), timeout=5)
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
    conns = [_connect_from("127.0.0.1", server.port) for _ in range(2)]
    try:
        assert [conn.greet() for conn in conns] == ["Client01", "Client02"]
        refused = _connect_from("127.0.0.1", server.port)
        conns.append(refused)
        assert refused.read_line() == (
            "FULL too many connections from your address (2/2 per address)"
        )
        conns[0].send_line("EXIT")
        assert conns[0].read_line() == "BYE"
        wait_until(lambda: server.connected_count() == 1)
        again = _connect_from("127.0.0.1", server.port)
        conns.append(again)
        assert again.greet() == "Client03"
    finally:
        for conn in conns:
            conn.close()


def test_per_address_refusal_reaches_the_library(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(max_clients=5, max_clients_per_ip=1)
    with Client(HOST, server.port, timeout=5), pytest.raises(ServerFull, match="per address"):
        Client(HOST, server.port, timeout=5)


# -- the guard on failed tokens ------------------------------------------------------


def test_guard_lets_a_few_wrong_answers_be_in_progress_and_queues_the_rest() -> None:
    guard: AuthGuard[str] = AuthGuard(at_once=2, per_minute=100, clock=lambda: 0.0)
    assert guard.try_start("a")
    assert guard.try_start("a")
    assert not guard.try_start("a")  # two in progress
    guard.queue("a", "third")
    guard.queue("a", "fourth")
    assert guard.try_start("b")  # another source is not affected
    assert guard.finish("a") == "third"  # in order; it is in progress now
    assert not guard.try_start("a")  # still two in progress, and one queued before
    guard.withdraw("a", "fourth")  # its connection went away before its turn
    assert guard.finish("a") is None
    assert guard.try_start("a")


def test_every_answer_waits_the_sources_delay_right_or_wrong() -> None:
    """The delay is the source's, decided before the token is compared: a right
    token after failures waits exactly what a wrong one would."""
    now = [0.0]
    guard: AuthGuard[str] = AuthGuard(at_once=2, per_minute=100, clock=lambda: now[0])
    assert guard.answer_delay("a") == 0.0  # never failed: answered at once
    guard.failed("a")
    assert guard.answer_delay("a") == 0.25  # for the next answer, whatever its token
    guard.failed("a")
    guard.failed("a")
    assert guard.answer_delay("a") == 1.0
    assert guard.answer_delay("b") == 0.0
    guard.succeeded("a")  # a right token, answered after its delay
    assert guard.answer_delay("a") == 0.0
    guard.failed("a")
    now[0] = 1000.0  # failures are forgotten after a while
    assert guard.answer_delay("a") == 0.0


def test_past_the_per_minute_limit_the_delay_is_the_longest() -> None:
    now = [0.0]
    guard: AuthGuard[str] = AuthGuard(at_once=100, per_minute=3, clock=lambda: now[0])
    for _ in range(3):
        guard.failed("a")
        now[0] += 10
    assert guard.answer_delay("a") == guard.delay.cap == 8.0  # 3 failures within 60 s
    guard.succeeded("a")  # a right token does not clear the count
    assert guard.answer_delay("a") == 8.0
    now[0] = 60.0  # the first failure is a minute old
    assert guard.answer_delay("a") == 0.0


def test_guard_remembers_a_bounded_number_of_sources() -> None:
    guard: AuthGuard[str] = AuthGuard(at_once=10, per_minute=1, max_sources=100, clock=lambda: 0.0)
    for i in range(1000):
        assert guard.try_start(f"s{i}")
        guard.failed(f"s{i}")
        assert guard.finish(f"s{i}") is None
    assert len(guard._recent) == 100
    assert not guard._in_progress
    assert not guard._queued


def test_generated_tokens_carry_256_bits() -> None:
    tokens = {generate_token() for _ in range(100)}
    assert len(tokens) == 100
    for token in tokens:
        assert len(token) == 43  # 32 bytes in URL-safe base64, no padding
        assert not any(c.isspace() for c in token)


def test_server_generate_token_option(capsys: pytest.CaptureFixture[str]) -> None:
    from filedock.cli.server import server_main

    assert server_main(["--generate-token"]) == 0
    token = capsys.readouterr().out.strip()
    assert len(token) == 43


# -- admission with tokens -------------------------------------------------------------


def test_connections_without_a_token_never_lock_out_the_token_holder(
    tmp_path: Path, make_server: Callable[..., ServerThread], clients: list[Client]
) -> None:
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    server = make_server(token_file=str(path), max_clients=1)
    squatters = [LineConn(server.port) for _ in range(3)]
    try:
        for conn in squatters:
            assert conn.read_line().startswith("NAME ")
        # No token: refused at once, and no failure that would slow the holder.
        squatters[0].send_line("HELLO")
        started = time.monotonic()
        client = Client(HOST, server.port, token="alpha-123", timeout=5)
        clients.append(client)
        assert time.monotonic() - started < 2.0
        assert client.who() == [client.name]
        assert squatters[0].read_line(timeout=10).startswith("ERR unauthorized ")
    finally:
        for conn in squatters:
            conn.close()


def _pending(server: ServerThread) -> int:
    return server.statistics().pending


def test_a_guess_holds_its_place_for_the_whole_delay(
    tmp_path: Path, make_server: Callable[..., ServerThread]
) -> None:
    """A guesser that hangs up at once still pays the delay: its place in the
    pending pool (and its source's share) stays taken until the answer is due."""
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    server = make_server(token_file=str(path), max_pending_per_ip=1)
    with LineConn(server.port) as first:  # the first failure: answered at once
        first.read_line()
        assert first.request("HELLO token=guess").startswith("ERR unauthorized ")
    wait_until(lambda: _pending(server) == 0)
    guesser = LineConn(server.port)
    guesser.read_line()
    guesser.send_line("HELLO token=guess")
    wait_until(lambda: _in_progress(server) == 1)
    guesser.close()  # gives up without waiting for the answer
    with LineConn(server.port) as next_guess:
        assert next_guess.read_line() == (
            "FULL too many connections greeting from your address (1/1 per address); "
            "try again shortly"
        )
    wait_until(lambda: _pending(server) == 0, timeout=5)  # the 0.25 s delay has passed
    with LineConn(server.port) as later:
        assert later.read_line().startswith("NAME ")


def _in_progress(server: ServerThread) -> int:
    assert server.server is not None
    guard = server.server.auth_guard
    return server.sync(lambda: sum(guard._in_progress.values()))


def _slow_down(server: ServerThread, cap: float) -> None:
    """Make the longest failure delay ``cap`` (8 s by default) for a quicker test."""
    assert server.server is not None
    guard = server.server.auth_guard
    server.sync(lambda: setattr(guard.delay, "cap", cap))


def _answer_time(port: int, greeting: str, timeout: float = 30) -> tuple[str, float]:
    with LineConn(port, timeout=timeout) as conn:
        conn.read_line()
        started = time.monotonic()
        answer = conn.request(greeting)
        return answer, time.monotonic() - started


def test_a_hello_without_a_token_is_answered_at_once_and_counts_no_failure(
    token_server: ServerThread,
) -> None:
    for _ in range(20):
        answer, took = _answer_time(token_server.port, "HELLO")
        assert answer.startswith("ERR unauthorized ")
        assert took < 1.0
    assert token_server.server is not None
    guard = token_server.server.auth_guard
    assert token_server.sync(lambda: guard.answer_delay("loopback")) == 0.0
    answer, took = _answer_time(token_server.port, "HELLO token=alpha-123")
    assert answer.startswith("WELCOME ")
    assert took < 1.0


def test_a_right_token_after_failures_waits_the_delay_a_wrong_one_does(
    token_server: ServerThread,
) -> None:
    answer, _ = _answer_time(token_server.port, "HELLO token=wrong")  # at once
    assert answer.startswith("ERR unauthorized ")
    assert token_server.server is not None
    guard = token_server.server.auth_guard
    delay = token_server.sync(lambda: guard.answer_delay("loopback"))
    assert delay == 0.25
    wrong, wrong_took = _answer_time(token_server.port, "HELLO token=wrong")
    assert wrong.startswith("ERR unauthorized ")
    assert wrong_took >= delay
    delay = token_server.sync(lambda: guard.answer_delay("loopback"))
    assert delay == 0.5  # two failures in a row
    right, right_took = _answer_time(token_server.port, "HELLO token=alpha-123")
    assert right.startswith("WELCOME ")
    assert right_took >= delay  # no WELCOME sooner than a wrong answer would come
    assert token_server.sync(lambda: guard.answer_delay("loopback")) == 0.0  # reset


def test_wrong_tokens_past_the_limit_at_once_wait_their_turn(
    tmp_path: Path, make_server: Callable[..., ServerThread]
) -> None:
    """One wrong answer in progress at a time (--max-auth-failures-at-once 1):
    later ones are answered in order, one delay apart; a right token does not
    wait behind them."""
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    server = make_server(token_file=str(path), max_auth_failures_at_once=1)
    answer, _ = _answer_time(server.port, "HELLO token=first")  # at once: no failure yet
    assert answer.startswith("ERR unauthorized ")
    conns = [LineConn(server.port, timeout=15) for _ in range(4)]
    try:
        for conn in conns:
            conn.read_line()
        started = time.monotonic()
        for conn in conns[:3]:
            conn.send_line("HELLO token=guess")
        wait_until(lambda: _in_progress(server) == 1)
        conns[3].send_line("HELLO token=alpha-123")
        answers = _first_lines_as_they_come(conns, started, timeout=15)
        assert [line.split()[0] for line, _ in answers] == ["ERR"] * 3 + ["WELCOME"]
        times = [took for _, took in answers]
        # Delays 0.25, 0.5, 1 s (failures in a row): the queued ones wait their
        # own after the one before them is answered.
        assert times[1] - times[0] >= 0.45
        assert times[2] - times[1] >= 0.95
        # 2 s (4 failures in a row), from its arrival, not after the queue (3.75 s).
        assert 2.0 <= times[3] < times[2] + 2.0 - 0.5
    finally:
        for conn in conns:
            conn.close()


def _first_lines_as_they_come(
    conns: list[LineConn], started: float, timeout: float
) -> list[tuple[str, float]]:
    """Each connection's next line and when it came (seconds after ``started``)."""
    answers: dict[int, tuple[str, float]] = {}
    deadline = time.monotonic() + timeout
    while len(answers) < len(conns) and time.monotonic() < deadline:
        waiting = [conn.sock for i, conn in enumerate(conns) if i not in answers]
        ready, _, _ = select.select(waiting, [], [], 0.05)
        for i, conn in enumerate(conns):
            if conn.sock in ready:
                line = conn.read_line()
                answers[i] = (line, time.monotonic() - started)
    assert len(answers) == len(conns), answers
    return [answers[i] for i in range(len(conns))]


class Guesser(BackgroundLoad):
    """Guesses wrong tokens from this machine, ``parallel`` at a time, until stopped."""

    def __init__(self, port: int, parallel: int) -> None:
        super().__init__(port, parallel)
        self.guesses = 0

    def _run(self) -> None:
        for attempt in range(10_000):  # bounded
            if self._stop.is_set():
                return
            try:
                with LineConn(self.port, timeout=20) as conn:
                    if conn.read_line().startswith("NAME "):
                        conn.request(f"HELLO token=guess-{attempt}")
                        self.guesses += 1
            except (OSError, AssertionError):
                pass


def test_a_guesser_never_locks_the_token_holder_of_the_same_source_out(
    tmp_path: Path, make_server: Callable[..., ServerThread]
) -> None:
    path = tmp_path / "tokens"
    path.write_text(TOKENS)
    server = make_server(token_file=str(path))
    assert server.server is not None
    _slow_down(server, 1.0)  # the longest delay: 8 s by default, the same rule sooner
    cap = server.server.auth_guard.delay.cap
    with Guesser(server.port, parallel=3) as guesser:
        wait_until(lambda: guesser.guesses >= 4, timeout=10)  # the delay has grown
        for _ in range(3):
            started = time.monotonic()
            with Client(HOST, server.port, token="alpha-123", timeout=cap + 5) as client:
                assert client.ping() >= 0
            assert time.monotonic() - started < cap + 2.0
        before = guesser.guesses
        wait_until(lambda: guesser.guesses > before, timeout=cap * 4)  # still guessing
    assert server.connected_count() == 0


# -- TLS after the pending pool -----------------------------------------------------


def test_no_tls_layer_exists_for_a_connection_past_the_pending_pool(
    ca: trustme.CA,
    tmp_path: Path,
    make_server: Callable[..., ServerThread],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    made: list[object] = []
    real_init = asyncio.sslproto.SSLProtocol.__init__

    def counted_init(self: asyncio.sslproto.SSLProtocol, *args: Any, **kwargs: Any) -> None:
        made.append(self)
        real_init(self, *args, **kwargs)

    monkeypatch.setattr(asyncio.sslproto.SSLProtocol, "__init__", counted_init)
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    server = make_server(
        tls_cert=str(cert_file),
        tls_key=str(key_file),
        max_pending=2,
        max_pending_per_ip=2,
        loop="asyncio",
    )
    silent = [LineConn(server.port) for _ in range(2)]
    try:
        wait_until(lambda: _pending(server) == 2)
        admitted = 0
        for attempt in range(20):
            with LineConn(server.port) as late:
                # Closed at once with nothing said, or (newcomers pressing, see
                # PendingPool.make_room) let in for a silent one, aborted first.
                closed = late.at_eof(timeout=0.3)
                assert closed or attempt > 0  # the first past the pool is refused
                admitted += not closed
                assert _pending(server) <= 2
        # Silent connections, admitted to the pool or not, never get a TLS layer:
        # it is set up at the first byte of a ClientHello.
        assert made == [], f"{len(made)} TLS layers for {2 + admitted} silent connections"
    finally:
        for conn in silent:
            conn.close()
    wait_until(lambda: _pending(server) == 0)
    # An honest TLS client still gets in.
    with Client(HOST, server.port, tls=client_context(insecure=True), timeout=5) as client:
        assert client.ping() >= 0


def test_tls_server_at_capacity_says_full_inside_tls(
    tls_server: ServerThread, ca_file: str, clients: list[Client]
) -> None:
    context = client_context(ca_file)
    for _ in range(3):
        clients.append(Client(HOST, tls_server.port, tls=context, timeout=5))
    with pytest.raises(ServerFull, match="at capacity"):
        Client(HOST, tls_server.port, tls=context, timeout=5)


# -- per-source grouping over loopback -------------------------------------------------


def _connect6(port: int) -> LineConn:
    conn = LineConn.__new__(LineConn)
    sock = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(("::1", port))
    conn.sock = sock
    conn.timeout = 5
    conn._buffer = bytearray()
    return conn


def test_every_loopback_address_shares_one_slot_cap(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(max_clients=10, max_clients_per_ip=1)
    assert server.server is not None
    first = _connect_from("127.0.0.1", server.port)
    conns = [first]
    try:
        assert first.greet() == "Client01"
        for source in ("127.0.0.2", "127.1.2.3"):
            other = _connect_from(source, server.port)
            conns.append(other)
            assert other.read_line() == (
                "FULL too many connections from your address (1/1 per address)"
            ), source
        if ipv6_loopback():
            # A second listening socket on ::1 for the same server: the same
            # registry decides, as behind a dual-stack listener.
            state = server.server

            async def listen6() -> int:
                loop = asyncio.get_running_loop()
                listener = await loop.create_server(lambda: Session(state.context), "::1", 0)
                extra.append(listener)
                return int(listener.sockets[0].getsockname()[1])

            extra: list[asyncio.base_events.Server] = []
            port6 = server.call(listen6())
            try:
                over6 = _connect6(port6)
                conns.append(over6)
                assert over6.read_line() == (
                    "FULL too many connections from your address (1/1 per address)"
                )
            finally:
                server.sync(extra[0].close)
    finally:
        for conn in conns:
            conn.close()
    if not ipv6_loopback():
        pytest.skip("no IPv6 loopback on this machine: ::1 not checked (IPv4 ones were)")


# -- listening beyond this machine ---------------------------------------------------


@pytest.mark.parametrize(
    ("host", "missing"),
    [
        ("0.0.0.0", "without TLS and with no --token-file"),
        ("::", "without TLS and with no --token-file"),
        ("192.0.2.1", "without TLS and with no --token-file"),
        ("", "without TLS and with no --token-file"),
    ],
)
def test_listening_beyond_localhost_in_clear_warns_once(
    host: str, missing: str, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from filedock.server.config import ServerConfig
    from filedock.server.server import Server

    caplog.set_level(logging.INFO, logger="filedock")
    Server(ServerConfig(host=host, repo=str(repo))).warn_if_exposed()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert missing in warnings[0]
    assert "README" in warnings[0]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "localhost"])
def test_listening_on_loopback_does_not_warn(
    host: str, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from filedock.server.config import ServerConfig
    from filedock.server.server import Server

    caplog.set_level(logging.INFO, logger="filedock")
    Server(ServerConfig(host=host, repo=str(repo))).warn_if_exposed()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_tls_and_tokens_beyond_localhost_do_not_warn(
    tls_server: ServerThread, tmp_path: Path, repo: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    from filedock.server.server import Server

    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    config = replace(tls_server.config, host="0.0.0.0", token_file=str(tokens))
    caplog.set_level(logging.INFO, logger="filedock")
    Server(config).warn_if_exposed()
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    config = replace(config, token_file=None)
    Server(config).warn_if_exposed()
    [warning] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "with no --token-file" in warning
    assert "without TLS" not in warning


def test_tls_client_that_greets_before_its_name_is_served_in_order(
    tls_server: ServerThread, ca_file: str
) -> None:
    context = client_context(ca_file)
    with (
        socket.create_connection((HOST, tls_server.port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as sock,
    ):
        sock.sendall(b"HELLO\nPING\n")  # at once, before NAME has come
        data = b""
        for _ in range(50):  # three short lines: a few reads at most
            data += sock.recv(4096)
            if data.count(b"\n") >= 3:
                break
        lines = data.decode().splitlines()
        assert lines[0] == "NAME Client01"
        assert lines[1].startswith("WELCOME Client01 ")
        assert lines[2] == "PONG"


def test_tls_bytes_read_before_the_tls_layer_are_handed_to_it(
    tls_server: ServerThread, ca_file: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uvloop may read a ClientHello before the session's TLS upgrade starts;
    here the upgrade waits until it has, on any loop."""
    kept = asyncio.Event()
    real_keep, real_start = TlsUpgrade.keep, TlsUpgrade.start

    def keep(self: TlsUpgrade, data: bytes | memoryview) -> None:
        real_keep(self, data)
        kept.set()

    async def late_start(self: TlsUpgrade, raw: asyncio.Transport, context: Any) -> None:
        async with asyncio.timeout(5):
            await kept.wait()
        await real_start(self, raw, context)

    monkeypatch.setattr(TlsUpgrade, "keep", keep)
    monkeypatch.setattr(TlsUpgrade, "start", late_start)
    with Client(HOST, tls_server.port, tls=client_context(ca_file), timeout=5) as client:
        assert kept.is_set()
        assert client.ping() >= 0


def test_a_failure_while_a_tokens_answer_is_held_ends_the_connection_and_frees_its_place(
    token_server: ServerThread, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A bug after the token is compared (here: counting the failure) cannot be
    answered (the answer is held); the connection ends, its place comes free."""

    def broken(self: AuthGuard[Any], source: str) -> None:
        raise RuntimeError("broken on purpose")

    monkeypatch.setattr(AuthGuard, "failed", broken)
    with caplog.at_level(logging.ERROR, logger="filedock"), LineConn(token_server.port) as conn:
        assert conn.read_line().startswith("NAME ")
        conn.send_line("HELLO token=wrong")
        assert conn.at_eof(timeout=5)
    wait_until(lambda: _pending(token_server) == 0, timeout=5)
    assert token_server.connected_count() == 0
    assert any("Internal error serving" in r.getMessage() for r in caplog.records)


# -- a plain client meeting a TLS server -------------------------------------------------


def test_a_plain_client_tells_a_tls_server_at_once(
    ca: trustme.CA, tmp_path: Path, make_server: Callable[..., ServerThread]
) -> None:
    """A TLS server says nothing first: the client's blank lines make it close at once,
    and the client says why, long before the server's handshake timeout (10 s here)."""
    server = make_server(**{**tls_options(ca, tmp_path), "handshake_timeout": 10.0})
    start = time.monotonic()
    with pytest.raises(ConnectionLost, match=r"a TLS server\? try --tls"):
        Client(HOST, server.port, timeout=30, connect_timeout=30)
    assert time.monotonic() - start < 5.0


def test_blank_lines_before_hello_are_ignored_by_a_plain_server(server: ServerThread) -> None:
    """What the client's TLS check sends a plain server that is slow to name it."""
    conn = LineConn(server.port)
    try:
        conn.send(b"\n" * 5)
        assert conn.read_line().startswith("NAME ")
        conn.send(b"\n" * 5)
        assert conn.request("HELLO").startswith("WELCOME ")
        assert conn.request("PING") == "PONG"
    finally:
        conn.close()
