"""A GET of a small file whose digest is known is answered at once, without a task
(filedock.server.small_get), and says and counts exactly what the task's way does."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import filedock.server.repository
import filedock.server.session
from filedock.server.small_get import SMALL_BODY_BYTES
from tests.integration.test_files import server_log
from tests.support import LineConn, ServerThread

SMALL = b"small file\n"
EDGE = b"e" * SMALL_BODY_BYTES  # the largest answered at once
LARGER = b"L" * (SMALL_BODY_BYTES + 1)  # sent by the task


@pytest.fixture
def files(repo: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)  # cached at once
    found = {"a/small.txt": SMALL, "edge.bin": EDGE, "larger.bin": LARGER}
    for name, body in found.items():
        (repo / name).parent.mkdir(exist_ok=True)
        (repo / name).write_bytes(body)
    return found


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The session tasks started, by the activity's verb."""
    started: list[str] = []
    real_start = filedock.server.session.Session.start

    def counted(self: Any, work: Any, activity: Any = None) -> Any:
        started.append(activity.verb if activity is not None else "-")
        return real_start(self, work, activity)

    monkeypatch.setattr(filedock.server.session.Session, "start", counted)
    return started


def greeted(server: ServerThread, *hello: str) -> LineConn:
    conn = LineConn(server.port, timeout=10)
    name = conn.read_line().removeprefix("NAME ")
    assert conn.request(" ".join(["HELLO", name, *hello])).startswith("WELCOME ")
    return conn


def warm(conn: LineConn, names: list[str]) -> None:
    for name in names:
        assert conn.request(f"HASH {name}").startswith("HASH ")


@pytest.mark.parametrize("hello", [["proto=2"], []], ids=["v2", "v1"])
def test_pipelined_gets_of_small_files_come_back_whole_and_in_order_without_a_task(
    make_server: Callable[..., ServerThread],
    files: dict[str, bytes],
    tasks: list[str],
    hello: list[str],
) -> None:
    server = make_server()
    with greeted(server, *hello) as conn:
        warm(conn, list(files))
        tasks.clear()
        conn.send("GET a/small.txt\nPING\nGET larger.bin\nGET edge.bin\nGET a/small.txt\n")
        for name in ("a/small.txt", None, "larger.bin", "edge.bin", "a/small.txt"):
            if name is None:
                assert conn.read_line() == "PONG"
                continue
            body = files[name]
            digest = hashlib.sha256(body).hexdigest()
            assert conn.read_line() == f"FILE {len(body)} {digest} {name}"
            assert conn.read_exactly(len(body)) == body
        assert conn.request("PING") == "PONG"  # in step after them
    assert tasks == ["get"]  # the larger file's only
    assert server.server is not None
    stats = server.sync(lambda: server.server.context.stats)  # type: ignore[union-attr]
    assert stats.transfers_completed["download"] == 4
    assert stats.bytes_sent == 2 * len(SMALL) + len(EDGE) + len(LARGER)


def test_a_small_file_not_hashed_yet_takes_the_task_s_way_then_the_quick_one(
    make_server: Callable[..., ServerThread], files: dict[str, bytes], tasks: list[str]
) -> None:
    server = make_server()
    digest = hashlib.sha256(SMALL).hexdigest()
    with greeted(server, "proto=2") as conn:
        assert conn.request("GET a/small.txt") == f"FILE {len(SMALL)} - a/small.txt"
        assert conn.read_exactly(len(SMALL)) == SMALL
        assert conn.read_line() == f"DIGEST {digest}"
        assert conn.request("GET a/small.txt") == f"FILE {len(SMALL)} {digest} a/small.txt"
        assert conn.read_exactly(len(SMALL)) == SMALL
    assert tasks == ["get"]


def test_a_small_file_answered_at_once_has_its_log_line(
    make_server: Callable[..., ServerThread],
    files: dict[str, bytes],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with server_log(caplog, monkeypatch):
        server = make_server()
        with greeted(server, "proto=2") as conn:
            warm(conn, ["a/small.txt"])
            conn.send_line("GET a/small.txt")
            assert conn.read_line().startswith("FILE ")
            assert conn.read_exactly(len(SMALL)) == SMALL
            assert conn.request("PING") == "PONG"
        sent = [
            record
            for record in list(caplog.records)
            if record.getMessage().startswith("Sent file 'a/small.txt'")
        ]
    [record] = sent
    assert record.getMessage().endswith(", completed")
    assert (record.bytes, record.result) == (len(SMALL), "completed")  # type: ignore[attr-defined]
