"""One-shot commands: `filedock-client [options] COMMAND …`, their output and exit status.

Most tests call :func:`filedock.cli.client.client_main` in process against an
in-process server; a fake server (a socket in a thread) plays the parts a
real one will not: a wrong hash, a dropped connection, a strict pipeline.
That `python3 Client.py` takes exactly the same arguments is checked in
tests/e2e/test_oneshot.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from filedock.cli.client import client_main, client_parser
from filedock.cli.exitcodes import ExitCode, exit_code_for, worst
from filedock.client.client import Client, TransferProgress
from filedock.errors import BadRequest, Changed, NotFound
from tests.conftest import SAMPLE
from tests.support import HOST, ServerThread, write_file
from tests.support.fake_server import FakeServer, Peer, Script

ISO_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")
STATUS_TIME = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")
# The line after a get or put of several files; {} is what the test knows of it.
SUMMARY = r"\[CLIENT\] {} in 0:\d\d( \([\d.]+ [KMG]?i?B/s\))?"
LIST_TIME = re.compile(STATUS_TIME.pattern + r" \S+")  # with the zone's name
ISO_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d")  # --json: its offset
ADDRESS = re.compile(r"127\.0\.0\.1:\d+")

Run = Callable[..., tuple[int, str, str]]


@pytest.fixture
def run(capsys: pytest.CaptureFixture[str]) -> Run:
    """``run(*argv)``: client_main's exit status, stdout and stderr."""

    def run_client(*argv: str) -> tuple[int, str, str]:
        try:
            code = client_main(list(argv))
        except SystemExit as exc:  # argparse ends usage errors this way
            code = exc.code if isinstance(exc.code, int) else 1
        out, err = capsys.readouterr()
        return code, out, err

    return run_client


# -- the commands, against a real server ---------------------------------------


def test_ping(run: Run, port: str) -> None:
    assert run("--port", port, "ping") == (0, "[SERVER] PONG\n", "")


def test_verbose_ping_adds_its_round_trip_after_the_pong(run: Run, port: str) -> None:
    code, out, err = run("--port", port, "-v", "ping")
    assert (code, err) == (0, "")
    assert re.fullmatch(r"\[SERVER\] PONG\n\[CLIENT\] round trip \d+\.\d\d ms\n", out)


def test_ping_count_shows_each_round_trip_and_min_avg_max(run: Run, port: str) -> None:
    code, out, err = run("--port", port, "ping", "-c", "2")
    assert (code, err) == (0, "")
    assert re.fullmatch(
        r"(\[SERVER\] PONG \d+\.\d\d ms\n){2}"
        r"\[CLIENT\] 2 pings, round trip min/avg/max \d+\.\d\d/\d+\.\d\d/\d+\.\d\d ms\n",
        out,
    )
    for bad in ("0", "-1", "x", "100001"):
        code, out, err = run("--port", port, "ping", "-c", bad)
        assert code == 2
        assert f"argument -c/--count: '{bad}' is not a number of pings" in err


def test_uptime_about_help(run: Run, port: str) -> None:
    code, out, err = run("--port", port, "uptime")
    assert (code, err) == (0, "")
    assert re.fullmatch(r"\[SERVER\] UPTIME \d+s\n", out)
    code, out, _ = run("--port", port, "about")
    assert code == 0
    assert out.startswith("[SERVER] ABOUT filedock 1.0.0")
    code, out, _ = run("--port", port, "help")
    assert code == 0
    assert out.startswith("[SERVER] ")
    assert "list" in out


def test_say_sends_a_message_even_a_command_word(run: Run, port: str) -> None:
    assert run("--port", port, "say", "hello") == (0, "[SERVER] hello ACK\n", "")
    assert run("--port", port, "say", "ping") == (0, "[SERVER] ping ACK\n", "")
    assert run("--port", port, "say", "hello", "there") == (0, "[SERVER] hello there ACK\n", "")


def test_list_is_an_aligned_table(run: Run, port: str, repo: Path) -> None:
    write_file(repo / "docs" / "a longer name.bin", b"x" * 1536)
    code, out, err = run("--port", port, "list")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == "[SERVER] --- FILES ---"
    assert lines[-1] == "[SERVER] -----"
    rows = lines[1:-1]
    assert re.fullmatch(r"docs/a longer name\.bin  1\.5 KiB  " + LIST_TIME.pattern, rows[0])
    assert re.fullmatch(r"sample\.txt {18}6 B  " + LIST_TIME.pattern, rows[1])
    assert len(rows[0]) == len(rows[1])  # the columns line up


def test_list_json(run: Run, port: str, repo: Path) -> None:
    write_file(repo / "sub" / "a.txt", b"abc")
    code, out, err = run("--port", port, "list", "--json")
    assert (code, err) == (0, "")
    files = json.loads(out)  # one JSON document, nothing else
    assert isinstance(files, list)
    for entry in files:
        assert set(entry) == {"path", "size", "mtime"}
        assert isinstance(entry["path"], str)
        assert isinstance(entry["size"], int)
        assert ISO_UTC.fullmatch(entry["mtime"])
    assert [(entry["path"], entry["size"]) for entry in files] == [
        ("sample.txt", len(SAMPLE)),
        ("sub/a.txt", 3),
    ]
    mtime = datetime.fromtimestamp((repo / "sample.txt").stat().st_mtime, UTC)
    assert files[0]["mtime"] == mtime.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_status_json(run: Run, port: str) -> None:
    assert run("--port", port, "ping")[0] == 0  # Client01 comes and goes
    code, out, err = run("--port", port, "status", "--json")
    assert (code, err) == (0, "")
    records = json.loads(out)
    assert isinstance(records, list)
    for record in records:
        assert set(record) == {"name", "accepted", "finished", "address"}
        assert isinstance(record["name"], str)
        assert ISO_TIME.fullmatch(record["accepted"])
        assert record["finished"] is None or ISO_TIME.fullmatch(record["finished"])
    assert [record["name"] for record in records] == ["Client01", "Client02"]
    assert records[0]["finished"] is not None
    assert records[1]["finished"] is None  # this very client, still connected
    # --status-addresses all (the default): every address, as version 1 says.
    assert ADDRESS.fullmatch(records[0]["address"])
    assert ADDRESS.fullmatch(records[1]["address"])
    # ISO 8601 with the server's offset (here this machine's): the moment it names is now.
    accepted = datetime.fromisoformat(records[1]["accepted"])
    assert accepted.utcoffset() == datetime.now().astimezone().utcoffset()
    assert abs((datetime.now(UTC) - accepted).total_seconds()) < 60


def test_status_table_keeps_the_seed_layout(run: Run, port: str) -> None:
    code, out, _ = run("--port", port, "status")
    assert code == 0
    assert re.fullmatch(
        r"\[SERVER\] --- STATUS ---\n"
        r"CLIENT    ACCEPTED             FINISHED             ADDR\n"
        r"Client01  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  None                 127\.0\.0\.1:\d+\n"
        r"\[SERVER\] -----\n",
        out,
    )


def test_stats_prints_the_server_s_counters_as_an_aligned_table(
    run: Run, port: str, tmp_path: Path
) -> None:
    # Into the test's own folder: a relative one is left in the working tree, and the
    # next run's get skips the file there (bytes_sent 0).
    assert run("--port", port, "get", "sample.txt", "-o", str(tmp_path / "downloads"))[0] == 0
    code, out, err = run("--port", port, "stats")
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert (lines[0], lines[-1]) == ("[SERVER] --- STATS ---", "[SERVER] -----")
    rows = lines[1:-1]
    assert len({len(row) for row in rows}) == 1  # one width: values aligned on the right
    table = dict(row.split() for row in rows)
    assert table["bytes_sent"] == "6"
    assert table["transfers_completed_download"] == "1"
    assert table["requests_stats"] == "1"  # this one
    assert table["clients_connected"] == "1"
    assert re.fullmatch(r"\d+\.\d{3}", table["uptime_seconds"])


def test_stats_json_is_one_object_of_numbers_in_the_server_s_order(run: Run, port: str) -> None:
    code, out, err = run("--port", port, "stats", "--json")
    assert (code, err) == (0, "")
    figures = json.loads(out)
    assert list(figures)[:2] == ["uptime_seconds", "connections_received"]
    assert isinstance(figures["uptime_seconds"], float)
    assert all(type(value) is int for name, value in figures.items() if name != "uptime_seconds")
    assert figures["connections_received"] == 1
    assert figures["connections_rejected"] == sum(
        figures[f"connections_rejected_{reason}"]
        for reason in ("full", "per_address", "token", "registry")
    )


def test_who(run: Run, port: str, connect: Callable[..., Client]) -> None:
    connect()
    code, out, err = run("--port", port, "who", "--json")
    assert (code, err) == (0, "")
    names = json.loads(out)
    assert names == ["Client01", "Client02"]
    assert all(isinstance(name, str) for name in names)
    assert run("--port", port, "who") == (0, "[SERVER] WHO Client01 Client03\n", "")


def test_get_several_files_goes_on_past_a_missing_one(
    run: Run, port: str, repo: Path, tmp_path: Path
) -> None:
    write_file(repo / "sub" / "a.txt", b"in a folder\n")
    out_dir = tmp_path / "out"
    code, out, err = run(
        "--port", port, "get", "sample.txt", "nope.txt", "sub/a.txt", "-o", str(out_dir)
    )
    assert code == ExitCode.NOT_AVAILABLE
    assert (out_dir / "sample.txt").read_bytes() == SAMPLE
    assert (out_dir / "sub" / "a.txt").read_bytes() == b"in a folder\n"
    *files, summary = out.splitlines()
    assert files == [
        f"[CLIENT] Saved file to: {out_dir / 'sample.txt'}",
        "[CLIENT] SHA256 verify: PASS",
        f"[CLIENT] Saved file to: {out_dir / 'sub' / 'a.txt'}",
        "[CLIENT] SHA256 verify: PASS",
    ]
    assert re.fullmatch(SUMMARY.format(r"3 files: 2 fetched, 1 failed; 18 B"), summary)
    assert re.fullmatch(r"\[SERVER\] ERR not-found .*\(nope\.txt\)\n", err)


def test_get_uses_downloads_by_default(
    run: Run, port: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert run("--port", port, "get", "sample.txt")[0] == 0
    assert (tmp_path / "downloads" / "sample.txt").read_bytes() == SAMPLE
    assert run("--port", port, "--downloads", "elsewhere", "get", "sample.txt")[0] == 0
    assert (tmp_path / "elsewhere" / "sample.txt").read_bytes() == SAMPLE


@pytest.mark.parametrize(("path", "code"), [("nope.txt", "not-found"), ("../x", "forbidden")])
def test_not_found_and_forbidden_exit_5(
    run: Run, port: str, tmp_path: Path, path: str, code: str
) -> None:
    status, out, err = run("--port", port, "get", path, "-o", str(tmp_path / "out"))
    assert status == 5  # ExitCode.NOT_AVAILABLE
    assert out == ""
    assert err.startswith(f"[SERVER] ERR {code} ")


def test_server_full_exits_4(run: Run, make_server: Callable[..., ServerThread]) -> None:
    full = make_server(max_clients=1)
    with Client(HOST, full.port, timeout=10):
        code, out, err = run("--port", str(full.port), "ping")
    assert code == 4  # ExitCode.SERVER_FULL
    assert out == ""
    assert err.startswith("[SERVER] Server is at capacity")
    assert "(1/1 clients)" in err
    assert err.lower().count("at capacity") == 1, err  # the reason is not said twice


def test_connection_refused_exits_3(run: Run) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind((HOST, 0))
        closed_port = probe.getsockname()[1]
    code, out, err = run("--port", str(closed_port), "ping")
    assert code == 3  # ExitCode.CONNECTION
    assert out == ""
    assert err.startswith(f"[CLIENT] cannot connect to 127.0.0.1:{closed_port}")


@pytest.mark.parametrize(
    "argv",
    [
        ["bogus"],
        ["get"],
        ["say"],
        ["list", "--bogus"],
        ["ping", "--json"],
        ["--port", "x", "ping"],
    ],
)
def test_usage_errors_exit_2(run: Run, argv: list[str]) -> None:
    code, out, err = run(*argv)
    assert code == 2  # ExitCode.USAGE
    assert out == ""
    assert "usage: filedock-client" in err


def test_help_documents_commands_and_exit_codes() -> None:
    text = client_parser().format_help()
    for command in ("ping", "list", "status", "who", "get", "say", "uptime", "about", "help"):
        assert re.search(rf"^\s+{command}\s", text, re.M), command
    for line in ("0  success", "2  usage error", "4  the server is at capacity", "6  a download"):
        assert line in text


def test_worst_exit_code_wins() -> None:
    assert worst([]) == ExitCode.OK
    assert worst([ExitCode.NOT_AVAILABLE, ExitCode.INTEGRITY]) == ExitCode.INTEGRITY
    assert worst([ExitCode.NOT_AVAILABLE, ExitCode.CONNECTION]) == ExitCode.CONNECTION
    assert worst([ExitCode.NOT_AVAILABLE, ExitCode.ERROR]) == ExitCode.ERROR


# -- against a fake server -------------------------------------------------------


@pytest.fixture
def fake(fake_server: Callable[..., FakeServer]) -> Callable[[Script], FakeServer]:
    """A fake server that greets, then runs the test's script."""
    return lambda script: fake_server(script, greet=True)


def _file(path: str, body: bytes, sha256: str | None = None) -> bytes:
    digest = sha256 or hashlib.sha256(body).hexdigest()
    return f"FILE {len(body)} {digest} {path}\n".encode() + body


def test_get_is_pipelined(run: Run, fake: Any, tmp_path: Path) -> None:
    """The fake answers nothing until it holds all three GETs: a client that
    waited for each reply before the next request would never finish."""
    names = ["a.txt", "b.txt", "c.txt"]

    def script(conn: Peer) -> None:
        requests = [conn.line() for _ in names]
        assert requests == [f"GET {name}" for name in names]
        conn.send(b"".join(_file(name, name.encode() * 3) for name in names))
        conn.goodbye()

    server = fake(script)
    code, out, err = run(
        "--port", str(server.port), "--timeout", "5", "get", *names, "-o", str(tmp_path)
    )
    assert (code, err) == (0, "")
    for name in names:
        assert (tmp_path / name).read_bytes() == name.encode() * 3
    assert out.count("SHA256 verify: PASS") == 3


def test_wrong_hash_exits_6_and_keeps_nothing(run: Run, fake: Any, tmp_path: Path) -> None:
    wrong = hashlib.sha256(b"something else").hexdigest()

    def script(conn: Peer) -> None:
        assert conn.line() == "GET bad.txt"
        assert conn.line() == "GET good.txt"
        assert conn.line() == "GET nope.txt"
        conn.send(_file("bad.txt", b"tampered\n", wrong))
        conn.send(_file("good.txt", b"fine\n"))
        conn.send(b"ERR not-found no such file\n")
        conn.goodbye()

    server = fake(script)
    out_dir = tmp_path / "out"
    code, out, err = run(
        "--port", str(server.port), "get", "bad.txt", "good.txt", "nope.txt", "-o", str(out_dir)
    )
    assert code == 6  # ExitCode.INTEGRITY: the worst of 6 and 5
    assert "[CLIENT] SHA256 verify: FAIL" in err
    assert "(nope.txt)" in err
    *files, summary = out.splitlines()
    assert files == [
        f"[CLIENT] Saved file to: {out_dir / 'good.txt'}",
        "[CLIENT] SHA256 verify: PASS",
    ]
    assert re.fullmatch(SUMMARY.format(r"3 files: 1 fetched, 2 failed; \d+ B"), summary)
    assert sorted(os.listdir(out_dir)) == ["good.txt"]  # no bad.txt, no temporary file


def test_lost_connection_exits_3(run: Run, fake: Any) -> None:
    def script(conn: Peer) -> None:
        assert conn.line() == "PING"  # and hang up without answering

    server = fake(script)
    code, out, err = run("--port", str(server.port), "ping")
    assert code == ExitCode.CONNECTION
    assert out == ""
    assert err.startswith("[CLIENT] Connection to the server was lost")


def test_lost_connection_during_get_is_every_file_left(run: Run, fake: Any, tmp_path: Path) -> None:
    def script(conn: Peer) -> None:
        assert [conn.line(), conn.line()] == ["GET a.txt", "GET b.txt"]
        conn.send(_file("a.txt", b"a\n"))

    server = fake(script)
    code, out, err = run("--port", str(server.port), "get", "a.txt", "b.txt", "-o", str(tmp_path))
    assert code == ExitCode.CONNECTION
    assert "SHA256 verify: PASS" in out
    assert err.count("Connection to the server was lost") == 1


def test_server_shutdown_exits_3(run: Run, fake: Any) -> None:
    def script(conn: Peer) -> None:
        assert conn.line() == "WHO"
        conn.send(b"ERR shutdown server is shutting down\n")

    server = fake(script)
    code, out, err = run("--port", str(server.port), "who", "--json")
    assert code == ExitCode.CONNECTION
    assert out == ""
    assert err == "[SERVER] ERR shutdown server is shutting down\n"


# -- the library call under `get` --------------------------------------------------


def test_get_many_outcomes_in_order(connect: Callable[..., Client], tmp_path: Path) -> None:
    client = connect()
    progress: list[TransferProgress] = []
    outcomes = client.get_many(
        ["nope.txt", "sample.txt", "bad\nname", "sample.txt"], tmp_path, progress=progress.append
    )
    assert isinstance(outcomes[0], NotFound)
    assert isinstance(outcomes[2], BadRequest)  # never sent: it cannot travel on one line
    for outcome in (outcomes[1], outcomes[3]):
        assert not isinstance(outcome, Exception)
        assert outcome.path == tmp_path / "sample.txt"
        assert outcome.sha256 == hashlib.sha256(SAMPLE).hexdigest()
    seen = [(moving.path, moving.done, moving.total, moving.files_total) for moving in progress]
    assert ("sample.txt", len(SAMPLE), len(SAMPLE), 4) in seen
    assert client.ping() >= 0  # the connection is still in step


def test_get_many_keeps_few_requests_in_flight(
    connect: Callable[..., Client], tmp_path: Path
) -> None:
    client = connect()
    paths = ["sample.txt"] * 2000  # ~30 KiB of requests: more than one window
    outcomes = client.get_many(paths, tmp_path)
    assert len(outcomes) == 2000
    assert all(not isinstance(outcome, Exception) for outcome in outcomes)


def test_the_new_outcomes_have_their_own_exit_statuses() -> None:
    assert exit_code_for(Changed("it changed while it was sent")) == ExitCode.CHANGED == 8
    assert ExitCode.KEPT == 9
    # The numbers that were there before keep their meaning.
    assert [int(code) for code in ExitCode][:8] == list(range(8))
    assert worst([ExitCode.KEPT, ExitCode.NOT_AVAILABLE]) == ExitCode.NOT_AVAILABLE
    assert worst([ExitCode.CHANGED, ExitCode.ERROR]) == ExitCode.CHANGED
    assert worst([ExitCode.CHANGED, ExitCode.CONNECTION]) == ExitCode.CONNECTION
    assert worst([ExitCode.KEPT]) == ExitCode.KEPT
    text = client_parser().format_help()
    assert "8  a file changed on the server" in text
    assert "9  --no-clobber kept a local file" in text


def test_quiet_says_only_errors_and_verbose_sums_up_one_file_too(
    run: Run, port: str, tmp_path: Path
) -> None:
    out_dir = tmp_path / "out"
    code, out, err = run("--port", port, "-q", "get", "sample.txt", "nope.txt", "-o", str(out_dir))
    assert code == ExitCode.NOT_AVAILABLE
    assert out == ""  # no line per file, no summary
    assert re.fullmatch(r"\[SERVER\] ERR not-found .*\(nope\.txt\)\n", err)
    assert (out_dir / "sample.txt").read_bytes() == SAMPLE
    code, out, err = run("--port", port, "-q", "mirror", str(tmp_path / "copy"))
    assert (code, out, err) == (0, "", "")
    code, out, _ = run("--port", port, "--quiet", "list")  # what was asked for is still shown
    assert "sample.txt" in out
    code, out, err = run("--port", port, "-v", "get", "sample.txt", "-o", str(tmp_path / "v"))
    assert (code, err) == (0, "")
    *files, summary = out.splitlines()
    assert files[-1] == "[CLIENT] SHA256 verify: PASS"
    assert re.fullmatch(SUMMARY.format("1 file: 1 fetched; 6 B"), summary)
    code, out, _ = run("--port", port, "get", "sample.txt", "-o", str(tmp_path / "v"))
    assert out.count("\n") == 1  # one file, without -v: no summary
    code, _, err = run("--port", port, "-q", "-v", "ping")
    assert code == 2
    assert "not allowed with argument" in err
