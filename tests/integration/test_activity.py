"""Session.activity: what each session is doing now, and the bytes counted as
the body moves (a reader sees a transfer's progress while it runs)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

from filedock.server.activity import Activity
from tests.support import LineConn, ServerThread, random_bytes, wait_until

BIG = 48 * 1024 * 1024  # more than the socket buffers on both sides hold


def _activities(server: ServerThread) -> list[Activity | None]:
    assert server.server is not None
    sessions = server.server.sessions
    return server.sync(lambda: [s.activity for s in sessions])


def _bytes(server: ServerThread) -> tuple[int, int]:
    assert server.server is not None
    stats = server.server.context.stats
    return server.sync(lambda: (stats.bytes_sent, stats.bytes_received))


def _greeted(server: ServerThread, proto: int = 2) -> LineConn:
    conn = LineConn(server.port, timeout=10.0)
    name = conn.read_line().removeprefix("NAME ")
    assert conn.request(f"HELLO {name} proto={proto}").startswith("WELCOME ")
    return conn


def test_a_send_shows_its_progress_while_it_runs(
    repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    (repo / "big.bin").write_bytes(b"\0" * BIG)
    server = make_server()
    with _greeted(server, proto=1) as conn:  # v1: the digest before the body
        assert _activities(server) == [None]
        assert conn.request("GET big.bin").startswith(f"FILE {BIG} ")
        conn.read_exactly(1024)  # then the client stops reading: the send stalls midway
        wait_until(lambda: _bytes(server)[0] > 0)
        assert server.server is not None
        stats, [session] = server.server.context.stats, server.server.sessions
        activity, done, sent = server.sync(
            lambda: (session.activity, session.activity and session.activity.done, stats.bytes_sent)
        )
        assert activity is not None
        assert (activity.verb, activity.path, activity.size) == ("get", "big.bin", BIG)
        assert done is not None
        assert 0 < done < BIG
        # The counter moved with the body, not at its end, and by what went out.
        assert sent == done
        conn.read_exactly(BIG - 1024, timeout=30)
        wait_until(lambda: _activities(server) == [None])
        assert _bytes(server) == (BIG, 0)
        assert activity.done == BIG


def test_a_range_counts_from_its_offset(
    repo: Path, make_server: Callable[..., ServerThread]
) -> None:
    body = random_bytes(100_000)
    (repo / "part.bin").write_bytes(body)
    server = make_server()
    seen: list[Activity | None] = []
    with _greeted(server) as conn:
        digest = hashlib.sha256(body).hexdigest()
        assert conn.request("HASH part.bin").startswith("HASH ")
        seen += _activities(server)
        assert conn.request(f"RANGE 60000 {digest} part.bin").startswith("PART ")
        assert conn.read_exactly(40_000) == body[60_000:]
        wait_until(lambda: _activities(server) == [None])
    assert seen == [None]  # the HASH's task was over when its answer came
    assert _bytes(server) == (40_000, 0)


def test_an_upload_shows_the_bytes_received_as_they_come(
    make_server: Callable[..., ServerThread],
) -> None:
    body = random_bytes(3 * 1024 * 1024)
    sha = hashlib.sha256(body).hexdigest()
    server = make_server(allow_upload=True)
    with _greeted(server) as conn:
        assert conn.request(f"PUT {len(body)} {sha} new up.bin") == "READY 0 up.bin"
        conn.send(body[:1000])
        wait_until(lambda: _bytes(server)[1] == 1000)
        [activity] = _activities(server)
        assert activity is not None
        assert (activity.verb, activity.path, activity.size) == ("put", "up.bin", len(body))
        wait_until(lambda: activity.done == 1000)
        conn.send(body[1000:])
        assert conn.read_line().startswith("STORED ")
        wait_until(lambda: _activities(server) == [None])
        assert _bytes(server) == (0, len(body))
        assert activity.done == len(body)
