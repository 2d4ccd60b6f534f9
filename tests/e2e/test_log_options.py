"""The log's options as a person uses them: ``--log-level`` (the Starting line
stays), ``--log-file`` (appended to, reopened on SIGHUP for logrotate) and
``--log-format json``, each with ``python3 Server.py`` in a subprocess."""

from __future__ import annotations

import json
import os
import re
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import LineConn
from tests.support.process import STARTED, ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def test_the_starting_line_names_the_port_at_any_log_level(repo: Path) -> None:
    server = ServerProcess(repo, "--log-level", "WARNING")  # waits for the Starting line
    try:
        assert server.port > 0
        with LineConn(server.port) as conn:
            assert conn.greet() == "Client01"
            assert conn.request("EXIT") == "BYE"
    finally:
        assert server.stop() == 0
    # Only that line: the level still holds back every other INFO line.
    assert [line for line in server.lines if "INFO:" in line] == server.matching(STARTED)
    assert not server.matching("Connected: ")


@pytest.fixture
def file_logged(repo: Path, tmp_path: Path) -> Iterator[ServerProcess]:
    server = ServerProcess(repo, log_file=tmp_path / "filedock.log", preexec_fn=_umask_022)
    try:
        yield server
    finally:
        server.stop()


def _umask_022() -> None:
    os.umask(0o022)


def visit(port: int) -> str:
    with LineConn(port) as conn:
        name = conn.greet()
        assert conn.request("EXIT") == "BYE"
    return name


def test_a_log_file_is_appended_to_and_reopened_on_sighup(
    file_logged: ServerProcess, tmp_path: Path
) -> None:
    log = tmp_path / "filedock.log"
    assert stat.S_IMODE(log.stat().st_mode) == 0o640  # not for everyone: it names clients
    assert visit(file_logged.port) == "Client01"
    file_logged.wait_in_file(r"Finished: Client01 \(exit, ")
    rotated = tmp_path / "filedock.log.1"
    log.rename(rotated)  # as logrotate does, then it sends SIGHUP
    file_logged.proc.send_signal(signal.SIGHUP)
    file_logged.wait_in_file(r"INFO: Reopened the log file ")
    assert visit(file_logged.port) == "Client02"  # still serving: SIGHUP did not stop it
    file_logged.wait_in_file(r"Finished: Client02 \(exit, ")
    assert "Client02" not in rotated.read_text()
    assert "Client01" not in log.read_text()
    assert file_logged.stop() == 0
    assert file_logged.lines == []  # every line went to the file
    assert "Shutting down" in log.read_text()


def test_a_log_file_is_appended_to_across_restarts(repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "filedock.log"
    log.write_text("an older line\n")
    log.chmod(0o600)  # a file that is there keeps its mode
    assert ServerProcess(repo, log_file=log).stop() == 0
    text = log.read_text()
    assert text.startswith("an older line\n")
    assert re.search(r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] INFO: Starting server", text, re.M)
    assert stat.S_IMODE(log.stat().st_mode) == 0o600


def test_with_a_log_file_a_failed_start_is_told_on_stderr_too(repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "filedock.log"
    command = [sys.executable, str(ROOT / "Server.py"), "--port", "0", "--log-file", str(log)]
    done = subprocess.run(
        [*command, "--repo", str(tmp_path / "typo")],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert done.returncode == 1
    said = "Cannot start the server: --repo"
    assert said in done.stderr
    assert said in log.read_text()


def test_a_log_file_that_cannot_be_opened_is_refused_by_name(repo: Path, tmp_path: Path) -> None:
    log = tmp_path / "no" / "such" / "filedock.log"
    command = [sys.executable, str(ROOT / "Server.py"), "--port", "0", "--repo", str(repo)]
    done = subprocess.run(
        [*command, "--log-file", str(log)], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert f"--log-file {log}: No such file or directory" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_json_log_is_one_object_a_line_with_the_lines_fields(repo: Path) -> None:
    server = ServerProcess(repo, "--log-format", "json")
    try:
        with LineConn(server.port) as conn:
            assert conn.greet() == "Client01"
            assert conn.request("GET sample.txt").startswith("FILE 6 ")
            conn.read_exactly(6)
            assert conn.request("EXIT") == "BYE"
        server.wait_for_log(r'"event": "finished"')
    finally:
        assert server.stop() == 0
    lines = [json.loads(line) for line in server.lines]  # every line is one object
    time_format = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d"
    assert all(re.fullmatch(time_format, line["time"]) for line in lines), lines
    by_event = {line.get("event"): line for line in lines}
    started = by_event["started"]
    assert started["level"] == "INFO"
    assert started["message"].startswith(f"Starting server on 127.0.0.1:{server.port}, ")
    assert by_event["connected"]["client"] == "Client01"
    sent = by_event["sent"]
    assert sent["message"].startswith("Sent file 'sample.txt' size=6 sha256=")
    assert " to Client01 " in sent["message"]
    expected = {"client": "Client01", "path": "sample.txt", "bytes": 6, "result": "completed"}
    assert {key: sent[key] for key in expected} == expected
    assert sent["size"] == 6
    assert isinstance(sent["seconds"], float)
    assert isinstance(sent["rate"], int)
    finished = by_event["finished"]
    assert (finished["client"], finished["reason"]) == ("Client01", "exit")
    assert finished["message"].startswith("Finished: Client01 (exit, ")
    [shutting_down] = [line for line in lines if line["message"] == "Shutting down"]
    assert set(shutting_down) == {"time", "level", "message"}  # a line without fields
