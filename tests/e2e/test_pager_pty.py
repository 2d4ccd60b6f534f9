"""A long ``list`` or ``status`` on a terminal goes through the pager; a short one,
piped output, ``PAGER=''``, ``PAGER=cat`` and ``--no-pager`` never do.

The one-shot client runs with a pseudo-terminal as its stdout (of a size the
test sets) and ``PAGER`` set to a script that records what it was given and
in which environment, and says on the terminal that it ran.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from filedock.client.client import Client
from tests.support import HOST, ServerThread, running_server

ROOT = Path(__file__).resolve().parents[2]

RECORDER = """\
import json, os, sys
text = sys.stdin.read()
with open(sys.argv[1], "w") as record:
    json.dump({"text": text, "LESS": os.environ.get("LESS"), "tty": os.isatty(1)}, record)
print("PAGER RAN")
"""


@pytest.fixture
def recorder(tmp_path: Path) -> tuple[str, Path]:
    """A PAGER command, and the file where it writes what it got."""
    script = tmp_path / "recorder.py"
    script.write_text(RECORDER)
    record = tmp_path / "paged.json"
    return f"{sys.executable} {script} {record}", record


def environment(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FILEDOCK_") and k not in ("PAGER", "LESS")
    }
    env.update(NO_COLOR="1", TERM="xterm", HOME=str(tmp_path), PYTHONPATH=str(ROOT), **extra)
    return env


def on_terminal(argv: list[str], env: dict[str, str], rows: int = 40) -> tuple[int, str]:
    """Run ``Client.py ARGV`` with a terminal of ``rows`` rows as stdout; its status, output."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, 120, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "Client.py", *argv],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=slave,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(slave)
    try:
        return shown_until_exit(master, proc)
    finally:
        assert proc.stderr is not None
        proc.stderr.close()


def shown_until_exit(master: int, proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    """What the terminal ``master`` shows until ``proc`` exits (30 s at most); its status too."""
    output = bytearray()
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            output += data
        code = proc.wait(max(deadline - time.monotonic(), 1))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        os.close(master)
    return code, output.decode("utf-8", "replace").replace("\r\n", "\n")


@pytest.fixture
def big_server(tmp_path: Path) -> Iterator[ServerThread]:
    root = tmp_path / "big"
    root.mkdir()
    for index in range(5000):
        (root / f"file-{index:04d}.txt").write_bytes(b"x")
    with running_server(root) as server:
        yield server


def test_a_long_list_goes_through_the_pager(
    big_server: ServerThread, recorder: tuple[str, Path], tmp_path: Path
) -> None:
    command, record = recorder
    code, shown = on_terminal(
        ["--port", str(big_server.port), "list"], environment(tmp_path, PAGER=command)
    )
    assert code == 0
    assert "PAGER RAN" in shown
    assert "file-0000.txt" not in shown  # the pager had it, not the terminal
    paged = json.loads(record.read_text())
    lines = paged["text"].splitlines()
    assert lines[0] == "[SERVER] --- FILES ---"
    assert lines[-1] == "[SERVER] -----"
    assert len(lines) == 5002
    assert lines[1].startswith("file-0000.txt  1 B  ")
    assert paged["LESS"] == "FRX"  # as git runs less
    assert paged["tty"] is True  # the pager writes to the terminal itself


def test_the_users_less_options_win(
    big_server: ServerThread, recorder: tuple[str, Path], tmp_path: Path
) -> None:
    command, record = recorder
    env = environment(tmp_path, FILEDOCK_PAGER=command, PAGER="false", LESS="-S")
    assert on_terminal(["--port", str(big_server.port), "list"], env)[0] == 0
    assert json.loads(record.read_text())["LESS"] == "-S"


@pytest.mark.parametrize(
    ("pager", "argv"),
    [("", []), ("cat", []), (None, ["--no-pager"])],
    ids=["empty", "cat", "no-pager"],
)
def test_no_pager_when_asked(
    big_server: ServerThread,
    recorder: tuple[str, Path],
    tmp_path: Path,
    pager: str | None,
    argv: list[str],
) -> None:
    command, record = recorder
    env = environment(tmp_path, PAGER=command if pager is None else pager)
    code, shown = on_terminal(["--port", str(big_server.port), *argv, "list"], env)
    assert code == 0
    assert "file-4999.txt" in shown
    assert not record.exists()


def test_piped_output_is_never_paged(
    big_server: ServerThread, recorder: tuple[str, Path], tmp_path: Path
) -> None:
    command, record = recorder
    result = subprocess.run(
        [sys.executable, "Client.py", "--port", str(big_server.port), "list"],
        cwd=ROOT,
        env=environment(tmp_path, PAGER=command),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0
    assert len(result.stdout.splitlines()) == 5002
    assert not record.exists()


def test_what_fits_is_printed_as_it_is(
    make_server: Callable[..., ServerThread], recorder: tuple[str, Path], tmp_path: Path
) -> None:
    command, record = recorder
    server = make_server()
    code, shown = on_terminal(
        ["--port", str(server.port), "list"], environment(tmp_path, PAGER=command)
    )
    assert code == 0
    assert "[SERVER] --- FILES ---\nsample.txt  6 B  " in shown
    assert not record.exists()


def test_a_status_that_does_not_fit_is_paged(
    repo: Path, recorder: tuple[str, Path], tmp_path: Path
) -> None:
    command, record = recorder
    with running_server(repo) as server, Client(HOST, server.port, timeout=10):
        env = environment(tmp_path, PAGER=command)
        # Five lines (two clients) on a terminal of five rows: no row left for the prompt.
        code, shown = on_terminal(["--port", str(server.port), "status"], env, rows=5)
        assert code == 0
        assert "PAGER RAN" in shown
        lines = json.loads(record.read_text())["text"].splitlines()
        assert lines[0] == "[SERVER] --- STATUS ---"
        assert len(lines) == 5
        record.unlink()
        code, shown = on_terminal(["--port", str(server.port), "status"], env, rows=10)
        assert "[SERVER] --- STATUS ---" in shown
        assert not record.exists()


def at_the_prompt(argv: list[str], env: dict[str, str], typed: str) -> tuple[int, str]:
    """Run ``Client.py ARGV`` at its prompt, a terminal as stdin and stdout, typing ``typed``."""
    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    try:
        proc = subprocess.Popen(
            [sys.executable, "Client.py", *argv],
            cwd=ROOT,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
    finally:
        os.close(slave)
    os.write(master, typed.encode())
    return shown_until_exit(master, proc)


def test_a_long_list_at_the_prompt_goes_through_the_pager(
    big_server: ServerThread, recorder: tuple[str, Path], tmp_path: Path
) -> None:
    command, record = recorder
    env = environment(tmp_path, PAGER=command)
    code, shown = at_the_prompt(["--port", str(big_server.port)], env, "list\nexit\n")
    assert code == 0
    assert "PAGER RAN" in shown
    assert "file-0000.txt" not in shown  # the pager had it, not the terminal
    assert "[SERVER] BYE" in shown  # and the prompt went on after it
    lines = json.loads(record.read_text())["text"].splitlines()
    assert (lines[0], len(lines)) == ("[SERVER] --- FILES ---", 5002)


def test_no_pager_at_the_prompt_prints_it_all(
    big_server: ServerThread, recorder: tuple[str, Path], tmp_path: Path
) -> None:
    command, record = recorder
    env = environment(tmp_path, PAGER=command)
    argv = ["--port", str(big_server.port), "--no-pager"]
    code, shown = at_the_prompt(argv, env, "list\nexit\n")
    assert code == 0
    assert "file-4999.txt" in shown
    assert not record.exists()
