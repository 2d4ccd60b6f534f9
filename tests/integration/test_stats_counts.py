"""The statistics on real traffic: each counter moves by exactly what happened,
and every other counter stays where it was; each refusal is logged at INFO."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import filedock.server.repository
from filedock.server.stats import Kind, stats_records
from tests.conftest import SAMPLE
from tests.integration.test_files import server_log
from tests.support import LineConn, ServerThread, random_bytes, wait_until
from tests.support.credentials import TOKENS

Figures = dict[str, int | float]

BIG = 48 * 1024 * 1024  # more than the socket buffers on both sides hold


def figures(server: ServerThread) -> Figures:
    """The STATS records now, read on the server's loop."""
    assert server.server is not None
    samples = server.server.samples
    return dict(server.sync(lambda: stats_records(samples())))


def moved(server: ServerThread, before: Figures) -> Figures:
    """The counters that moved since ``before``, by how much (gauges left out)."""
    assert server.server is not None
    samples = server.server.samples
    gauges = {s.name for s in server.sync(samples) if s.kind is Kind.GAUGE}
    now = figures(server)
    return {
        name: now[name] - before[name]
        for name in now
        if name not in gauges and now[name] != before[name]
    }


def greeted(server: ServerThread, proto: int = 2, timeout: float = 10.0) -> LineConn:
    conn = LineConn(server.port, timeout=timeout)
    name = conn.read_line().removeprefix("NAME ")
    assert conn.request(f"HELLO {name} proto={proto}").startswith("WELCOME ")
    return conn


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[Logged]:
    with server_log(caplog, monkeypatch):
        yield Logged(caplog)


class Logged:
    """The server's log lines at one level."""

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self._caplog = caplog

    def at(self, level: int, start: str) -> list[str]:
        return [
            message
            for record in list(self._caplog.records)
            if record.levelno == level and (message := record.getMessage()).startswith(start)
        ]


# -- requests ----------------------------------------------------------------------------


def test_a_refused_path_counts_one_get_and_is_logged_why(server: ServerThread, log: Logged) -> None:
    with greeted(server) as conn:
        before = figures(server)
        assert conn.request("GET ../x").startswith("ERR forbidden ")
        assert moved(server, before) == {"requests": 1, "requests_get": 1}
    [line] = log.at(logging.INFO, "Refused 'GET ../x' from Client01 (127.0.0.1:")
    assert line.endswith(": forbidden: path leaves the repository")


def test_a_missing_file_is_answered_not_logged_as_a_refusal(
    server: ServerThread, log: Logged
) -> None:
    with greeted(server) as conn:
        assert conn.request("GET missing.txt").startswith("ERR not-found ")
    assert log.at(logging.INFO, "Refused") == []


def test_pipelined_requests_are_counted_by_verb_and_stats_sees_its_own_batch(
    server: ServerThread,
) -> None:
    with greeted(server) as conn:
        conn.send("PING\nPING\nWHO\nPING\nSTATS\n")
        assert [conn.read_line() for _ in range(4)] == ["PONG", "PONG", "WHO Client01", "PONG"]
        header = conn.read_line()
        assert header.startswith("STATS ")
        records = [conn.read_line().split("\t") for _ in range(int(header.split()[1]))]
    got = {name: value for name, value in records}
    # The PINGs before it in the same batch are counted: the STATS is read after it.
    assert (got["requests_ping"], got["requests_who"], got["requests_stats"]) == ("3", "1", "1")
    assert got["requests"] == "5"
    assert got["clients_connected"] == "1"
    assert float(got["uptime_seconds"]) >= 0


def test_a_v1_greeting_is_answered_stats_but_hears_v1_s_help(server: ServerThread) -> None:
    with greeted(server, proto=1) as conn:
        assert "stats" not in conn.request("HELP")
        assert conn.request("STATS").startswith("STATS ")


def test_protocol_errors_are_counted_and_logged_once_at_info(
    server: ServerThread, log: Logged
) -> None:
    with greeted(server) as conn:
        before = figures(server)
        assert conn.request("GET").startswith("ERR bad-request ")  # no path
        assert conn.request("x" * 5000).startswith("ERR line-too-long ")
        assert conn.at_eof()
    wait_until(lambda: server.session_count() == 0)
    assert moved(server, before) == {"protocol_errors": 2}
    assert len(log.at(logging.INFO, "Refused a request from Client01")) == 1
    [line] = log.at(logging.INFO, "Protocol error from Client01")
    assert line.endswith("line too long")


def test_a_storm_of_refusals_costs_a_bounded_number_of_lines(
    make_server: Callable[..., ServerThread], log: Logged
) -> None:
    server = make_server()
    with greeted(server) as conn:
        conn.send("GET ../x\n" * 60)
        for _ in range(60):
            assert conn.read_line().startswith("ERR forbidden ")
    assert figures(server)["requests_get"] == 60
    server.stop()  # what was suppressed is told now at the latest
    refused = log.at(logging.INFO, "Refused 'GET ../x'")
    [summary] = [m for m in log.at(logging.INFO, "") if "'refused' messages from " in m]
    assert len(refused) == 20  # the limiter's burst
    assert int(summary.split()[0]) + len(refused) == 60


# -- connections ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "reason", "why"),
    [
        ({"max_clients": 1}, "full", "at capacity (1/1)"),
        ({"max_clients": 5, "max_clients_per_ip": 1}, "per_address", "per-address limit (1/1)"),
    ],
)
def test_a_connection_turned_away_is_counted_by_its_reason(
    options: dict[str, int],
    reason: str,
    why: str,
    make_server: Callable[..., ServerThread],
    log: Logged,
) -> None:
    server = make_server(**options)
    before = figures(server)
    with greeted(server), LineConn(server.port) as second:
        assert second.read_line().startswith("FULL ")
        assert moved(server, before) == {
            "connections_received": 2,
            "connections_rejected": 1,
            f"connections_rejected_{reason}": 1,
        }
        assert figures(server)["clients_connected"] == 1
    assert server.statistics().connections_refused == 1  # the same number, read there
    [line] = log.at(logging.INFO, "Rejected 127.0.0.1:")
    assert line.endswith(f": {why}")


@pytest.mark.parametrize("words", ["", " token=wrong"])
def test_a_missing_or_wrong_token_counts_as_rejected_by_token(
    words: str, tmp_path: Path, make_server: Callable[..., ServerThread], log: Logged
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS)
    server = make_server(token_file=str(tokens))
    before = figures(server)
    with LineConn(server.port, timeout=10) as conn:
        assert conn.read_line() == "NAME Client01"
        assert conn.request(f"HELLO Client01{words}").startswith("ERR unauthorized ")
    assert moved(server, before) == {
        "connections_received": 1,
        "connections_rejected": 1,
        "connections_rejected_token": 1,
    }
    assert server.statistics().connections_refused == 0  # no want of room
    assert len(log.at(logging.INFO, "Unauthorized: Client01")) == 1


def test_a_handshake_timeout_is_counted_and_logged_at_info(
    make_server: Callable[..., ServerThread], log: Logged
) -> None:
    server = make_server(handshake_timeout=0.2)
    before = figures(server)
    with LineConn(server.port) as conn:
        assert conn.read_line() == "NAME Client01"
        assert conn.at_eof()  # never greeted
    wait_until(lambda: figures(server)["timeouts"] == 1)
    assert moved(server, before) == {
        "connections_received": 1,
        "timeouts": 1,
        "timeouts_handshake": 1,
    }
    [line] = log.at(logging.INFO, "Timeout: ")
    assert line.endswith("did not greet within 0.2 s")


def test_an_idle_timeout_is_counted(make_server: Callable[..., ServerThread]) -> None:
    server = make_server(idle_timeout=0.2)
    with greeted(server) as conn:
        before = figures(server)
        assert conn.read_line().startswith("ERR timeout ")
    wait_until(lambda: figures(server)["timeouts"] == 1)
    assert moved(server, before) == {"timeouts": 1, "timeouts_idle": 1}


# -- transfers ----------------------------------------------------------------------------


@pytest.fixture
def cacheable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)  # a new file may be cached


@pytest.mark.usefixtures("cacheable")
def test_a_download_then_its_resume_count_what_was_sent_and_hashed(
    repo: Path, server: ServerThread
) -> None:
    body = random_bytes(100_000)
    (repo / "part.bin").write_bytes(body)
    sha = hashlib.sha256(body).hexdigest()
    with greeted(server, proto=1) as conn:  # v1: the digest before the body
        before = figures(server)
        assert conn.request("GET part.bin") == f"FILE 100000 {sha} part.bin"
        assert conn.read_exactly(100_000) == body
        wait_until(lambda: figures(server)["transfers_completed"] == 1)
        assert moved(server, before) == {
            "requests": 1,
            "requests_get": 1,
            "digest_cache_misses": 1,
            "bytes_hashed": 100_000,
            "bytes_sent": 100_000,
            "transfers_completed": 1,
            "transfers_completed_download": 1,
        }
        before = figures(server)
        assert conn.request(f"RANGE 60000 {sha} part.bin").startswith("PART 60000 100000 ")
        assert conn.read_exactly(40_000) == body[60_000:]
        wait_until(lambda: figures(server)["transfers_completed"] == 2)
        assert moved(server, before) == {
            "requests": 1,
            "requests_range": 1,
            "digest_cache_hits": 1,
            "bytes_sent": 40_000,
            "transfers_completed": 1,
            "transfers_completed_download": 1,
            "transfers_resumed": 1,
            "transfers_resumed_download": 1,
        }
    counts = server.statistics()  # the same numbers, read there
    assert (counts.hashings, counts.hash_cache_hits) == (1, 1)


def test_a_cut_transfer_counts_as_failed_with_the_bytes_that_went(
    repo: Path, server: ServerThread
) -> None:
    (repo / "big.bin").write_bytes(b"\0" * BIG)
    conn = greeted(server)
    before = figures(server)
    assert conn.request("GET big.bin") == f"FILE {BIG} - big.bin"  # v2: the digest after
    conn.read_exactly(1024)
    wait_until(lambda: figures(server)["transfers_active"] == 1)
    conn.reset()
    wait_until(lambda: figures(server)["transfers_failed"] == 1)
    wait_until(lambda: figures(server)["digest_cache_misses"] == 1)  # the hashing went on
    changes = moved(server, before)
    sent = changes.pop("bytes_sent")
    assert 1024 <= sent < BIG
    assert changes == {
        "requests": 1,
        "requests_get": 1,
        "transfers_failed": 1,
        "transfers_failed_download": 1,
        "digest_cache_misses": 1,
        "bytes_hashed": BIG,
    }
    assert figures(server)["transfers_active"] == 0


def test_a_client_that_stops_reading_is_a_send_timeout(
    repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    (repo / "big.bin").write_bytes(b"\0" * BIG)
    server = make_server(send_timeout=0.3)
    with greeted(server, proto=1) as conn:
        before = figures(server)
        assert conn.request("GET big.bin").startswith(f"FILE {BIG} ")
        wait_until(lambda: figures(server)["transfers_failed"] == 1, timeout=20)
    changes = moved(server, before)
    changes.pop("bytes_sent")
    assert changes == {
        "requests": 1,
        "requests_get": 1,
        "digest_cache_misses": 1,
        "bytes_hashed": BIG,
        "transfers_failed": 1,
        "transfers_failed_download": 1,
        "timeouts": 1,
        "timeouts_send": 1,
    }


# -- uploads ------------------------------------------------------------------------------


def _put_line(body: bytes, path: str, mode: str = "new") -> str:
    return f"PUT {len(body)} {hashlib.sha256(body).hexdigest()} {mode} {path}"


def test_an_upload_to_a_server_without_uploads_is_refused_as_disabled(
    server: ServerThread, log: Logged
) -> None:
    with greeted(server) as conn:
        before = figures(server)
        assert conn.request(_put_line(SAMPLE, "a.txt")).startswith("ERR forbidden ")
        assert conn.request("PING") == "PONG"  # in order, the connection goes on
        assert moved(server, before) == {
            "requests": 2,
            "requests_put": 1,
            "requests_ping": 1,
            "uploads_refused": 1,
            "uploads_refused_disabled": 1,
        }
    assert len(log.at(logging.INFO, "Refused upload of 'a.txt' size=6")) == 1


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (_put_line(b"x" * 101, "big.txt"), "too_large"),
        (_put_line(SAMPLE, "sample.txt"), "exists"),
        (_put_line(SAMPLE, ".hidden"), "forbidden"),
    ],
)
def test_an_upload_refused_is_counted_by_its_reason(
    line: str, reason: str, make_server: Callable[..., ServerThread]
) -> None:
    server = make_server(allow_upload=True, max_upload_size=100)
    with greeted(server) as conn:
        before = figures(server)
        assert conn.request(line).startswith("ERR ")
        assert moved(server, before) == {
            "requests": 1,
            "requests_put": 1,
            "uploads_refused": 1,
            f"uploads_refused_{reason}": 1,
        }


def test_an_upload_cut_short_then_resumed_counts_each_try(
    repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    body = random_bytes(3 * 1024 * 1024)
    server = make_server(allow_upload=True)
    before = figures(server)
    with greeted(server) as conn:
        assert conn.request(_put_line(body, "up.bin")) == "READY 0 up.bin"
        conn.send(body[:1_000_000])
        wait_until(lambda: figures(server)["bytes_received"] == 1_000_000)
    wait_until(lambda: figures(server)["transfers_failed"] == 1)
    with greeted(server) as conn:
        ready = conn.request(_put_line(body, "up.bin"))
        offset = int(ready.split()[1])
        conn.send(body[offset:])
        assert conn.read_line().startswith("STORED ")
    assert (repo / "up.bin").read_bytes() == body
    assert moved(server, before) == {
        "connections_received": 2,
        "requests": 2,
        "requests_put": 2,
        "bytes_received": 1_000_000 + len(body) - offset,
        "transfers_failed": 1,
        "transfers_failed_upload": 1,
        "transfers_resumed": 1,
        "transfers_resumed_upload": 1,
        "transfers_completed": 1,
        "transfers_completed_upload": 1,
    }


def test_an_upload_whose_body_does_not_match_is_failed_and_refused(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(allow_upload=True)
    with greeted(server) as conn:
        before = figures(server)
        line = f"PUT 6 {hashlib.sha256(b'other!').hexdigest()} new a.txt"
        assert conn.request(line) == "READY 0 a.txt"
        conn.send(SAMPLE)
        assert conn.read_line().startswith("ERR integrity ")
        assert moved(server, before) == {
            "requests": 1,
            "requests_put": 1,
            "bytes_received": 6,
            "transfers_failed": 1,
            "transfers_failed_upload": 1,
            "uploads_refused": 1,
            "uploads_refused_integrity": 1,
        }


# -- the documentation ----------------------------------------------------------------------


def test_protocol_md_documents_every_record_name(server: ServerThread) -> None:
    text = (Path(__file__).resolve().parents[2] / "PROTOCOL.md").read_text(encoding="utf-8")
    section = text.split("### Statistics records (`STATS`)", 1)[1].split("\n### ", 1)[0]
    rows = {line.split("|")[1].strip(" `"): line for line in section.splitlines() if "|" in line}
    for name in figures(server):
        for family in ("requests", "uploads_refused"):
            if name.startswith(f"{family}_"):  # one row names every value of the family
                value = name.removeprefix(f"{family}_")
                assert f"`{value}`" in next(
                    r for n, r in rows.items() if n.startswith(family + "_")
                )
                break
        else:
            assert name in rows, name
