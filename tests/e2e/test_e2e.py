"""End to end: `python3 Server.py` and `python3 Client.py` as a person runs them."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = b"hello\n"


def run_client(
    port: int, commands: str, cwd: Path, *extra: str
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "Client.py"), "--port", str(port), *extra],
        input=commands,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=30,
    )


def start_client(port: int, cwd: Path) -> subprocess.Popen[str]:
    """An interactive `python3 Client.py` whose input the test writes."""
    return subprocess.Popen(
        [sys.executable, str(ROOT / "Client.py"), "--port", str(port)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=cwd,
        text=True,
    )


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "server_repo"
    root.mkdir()
    (root / "sample.txt").write_bytes(SAMPLE)
    return root


@pytest.fixture
def server(repo: Path) -> Iterator[ServerProcess]:
    process = ServerProcess(repo)
    yield process
    process.stop()


def test_walkthrough_piped(server: ServerProcess, tmp_path: Path) -> None:
    """The walk-through's commands piped in: their answers, and nothing of a person's screen
    (no banner, no prompts; the terminal's screen is tests/e2e/test_shell_pty.py's)."""
    commands = "help\nabout\nwho\nping\nuptime\nhello there\nlist\nget sample.txt\nstatus\nexit\n"
    result = run_client(server.port, commands, tmp_path)
    out = result.stdout
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = out.splitlines()
    assert lines[0].startswith("[SERVER] CMDs: ")  # help's answer comes first
    assert "Assigned name" not in out
    assert "WELCOME" not in out
    assert "Commands:" not in out
    assert " > " not in out  # no prompt
    assert "[SERVER] PONG" in lines
    assert "[SERVER] WHO Client01" in lines
    assert "[SERVER] hello there ACK" in lines
    assert re.search(r"^\[SERVER\] UPTIME \d+s$", out, re.M)
    assert re.search(r"^\[SERVER\] ABOUT filedock 1\.0\.0", out, re.M)
    assert re.search(
        r"^\[SERVER\] --- FILES ---\n"
        r"sample\.txt  6 B  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+\n"
        r"\[SERVER\] -----$",
        out,
        re.M,
    )
    saved = tmp_path / "downloads" / "sample.txt"
    assert f"\n[CLIENT] Saved file to: {saved}\n[CLIENT] SHA256 verify: PASS\n" in out
    assert saved.read_bytes() == SAMPLE
    assert re.search(
        r"^\[SERVER\] --- STATUS ---\n"
        r"CLIENT    ACCEPTED             FINISHED             ADDR\n"
        r"Client01  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  None                 127\.0\.0\.1:\d+\n"
        r"\[SERVER\] -----$",
        out,
        re.M,
    )
    assert lines[-1] == "[SERVER] BYE"  # the answer to the script's `exit`
    digest = hashlib.sha256(SAMPLE).hexdigest()[:12]
    server.wait_for_log(r"Connected: Client01 from 127\.0\.0\.1:\d+")
    # The assignment's "Sent file 'sample.txt'" first, then to whom, the size and
    # digest, the seconds, the bytes, the rate and how it ended.
    sent = re.escape(f"Sent file 'sample.txt' size=6 sha256={digest}… to Client01")
    server.wait_for_log(sent + r" \d+\.\d{3}s: 6 bytes at \d+(\.\d)? [KMG]?i?B/s, completed$")
    server.wait_for_log(r"Finished: Client01 \(exit, \d+\.\d s\)$")
    line_format = r"^\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] (INFO|WARNING|ERROR): "
    assert all(re.match(line_format, line) for line in server.lines), server.log


def test_status_shows_finished_clients_as_times(server: ServerProcess, tmp_path: Path) -> None:
    run_client(server.port, "exit\n", tmp_path)
    out = run_client(server.port, "status\nexit\n", tmp_path).stdout
    # Every client's address (--status-addresses all, the default).
    finished = r"^Client01  \S+ \S+  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d  127\.0\.0\.1:\d+$"
    assert re.search(finished, out, re.M)
    assert re.search(r"^Client02  \S+ \S+  None +127\.0\.0\.1:\d+$", out, re.M)


def test_end_of_input_leaves_cleanly(server: ServerProcess, tmp_path: Path) -> None:
    result = run_client(server.port, "ping\n", tmp_path)
    assert result.returncode == 0
    assert result.stdout == "[SERVER] PONG\n"  # a script's end says nothing more
    assert result.stderr == ""
    server.wait_for_log(r"Finished: Client01 \(exit, \d+\.\d s\)$")  # but it left: EXIT was said


def test_piped_commands_stop_at_the_first_failure(server: ServerProcess, tmp_path: Path) -> None:
    """As sftp -b: the error on stderr, the run stops there, with the failure's status."""
    result = run_client(server.port, "ping\nget nope.txt\nping\nexit\n", tmp_path)
    assert result.returncode == 5
    assert result.stdout == "[SERVER] PONG\n"  # the second ping never ran
    assert result.stderr == "[SERVER] ERR not-found no such file in the repository (nope.txt)\n"
    server.wait_for_log(r"Finished: Client01 \(exit, \d+\.\d s\)$")


def test_keep_going_runs_every_line_and_exits_with_the_first_failure(
    server: ServerProcess, tmp_path: Path
) -> None:
    typed = "get nope.txt\nping\nbogus-verb-free line\nget -Z x\nping\n"
    result = run_client(server.port, typed, tmp_path, "--keep-going")
    assert result.returncode == 5  # the first failure's, not the usage error's (2)
    assert result.stdout.count("[SERVER] PONG\n") == 2
    assert "ERR not-found" in result.stderr
    assert "unrecognized arguments: -Z" in result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_a_typed_name_keeps_its_unicode_white_space(
    server: ServerProcess, repo: Path, tmp_path: Path
) -> None:
    # The server strips only ASCII padding; the prompt must not strip more.
    (repo / "note\u00a0").write_bytes(b"nbsp")
    result = run_client(server.port, "get note\u00a0\nexit\n", tmp_path)
    assert "SHA256 verify: PASS" in result.stdout, result.stdout + result.stderr
    assert (tmp_path / "downloads" / "note\u00a0").read_bytes() == b"nbsp"


def test_full_server_turns_the_client_away(repo: Path, tmp_path: Path) -> None:
    server = ServerProcess(repo, "--max-clients", "1")
    try:
        holder = subprocess.Popen(
            [sys.executable, str(ROOT / "Client.py"), "--port", str(server.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=tmp_path,
            text=True,
        )
        try:
            server.wait_for_log(r"Connected: Client01")
            result = run_client(server.port, "ping\n", tmp_path)
            assert result.returncode == 4
            assert result.stderr.startswith("[SERVER] Server is at capacity")  # piped: stderr
            assert "(1/1 clients)" in result.stderr
            assert result.stdout == ""  # no prompt
        finally:
            assert holder.stdin is not None
            holder.communicate("exit\n", timeout=10)
        server.wait_for_log(r"Rejected 127\.0\.0\.1:\d+: at capacity \(1/1\)")
    finally:
        assert server.stop() == 0


def test_lost_server_is_one_clear_line(repo: Path, tmp_path: Path) -> None:
    server = ServerProcess(repo)
    client = start_client(server.port, tmp_path)
    server.wait_for_log(r"Connected: Client01")
    server.proc.kill()
    server.stop()
    out, err = client.communicate("ping\n", timeout=20)
    assert client.returncode == 3
    assert "[CLIENT] Connection to the server was lost" in err  # piped: errors on stderr
    assert "Traceback" not in out + err


def test_server_shutdown_is_shown_to_the_client(repo: Path, tmp_path: Path) -> None:
    server = ServerProcess(repo)
    client = start_client(server.port, tmp_path)
    server.wait_for_log(r"Connected: Client01")
    assert server.stop() == 0
    out, err = client.communicate("ping\n", timeout=20)
    assert client.returncode != 0
    assert "[SERVER] ERR shutdown" in err
    assert "Traceback" not in out + err


def test_unreachable_server(tmp_path: Path) -> None:
    result = run_client(1, "", tmp_path)
    assert result.returncode == 3
    assert "cannot connect to 127.0.0.1:1" in result.stderr  # piped: errors on stderr


@pytest.mark.parametrize("program", ["server", "client"])
def test_module_entry_points_show_help(program: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "filedock", program, "--help"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert "--port" in result.stdout
    if program == "server":
        for option in (
            "--host",
            "--max-clients",
            "--repo",
            "--handshake-timeout",
            "--idle-timeout",
            "--max-line",
            "--history",
            "--shutdown-grace",
            "--send-timeout",
            "--log-level",
        ):
            assert option in result.stdout
        assert "FILEDOCK_MAX_CLIENTS" in result.stdout
        assert "default: 50000" in result.stdout


def test_environment_variable_sets_an_option(repo: Path) -> None:
    env = {**os.environ, "FILEDOCK_MAX_CLIENTS": "7"}
    proc = subprocess.run(
        [sys.executable, "Server.py", "--help"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "default: 7" in proc.stdout
    bad = subprocess.run(
        [sys.executable, "Server.py"],
        cwd=ROOT,
        env={**os.environ, "FILEDOCK_PORT": "x"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2
    assert "FILEDOCK_PORT" in bad.stderr
    assert "Traceback" not in bad.stderr


def test_port_in_use_is_a_clear_error(server: ServerProcess, repo: Path) -> None:
    result = subprocess.run(
        [sys.executable, "Server.py", "--port", str(server.port), "--repo", str(repo)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 1
    assert "Cannot start the server" in result.stderr
    assert "Traceback" not in result.stderr
