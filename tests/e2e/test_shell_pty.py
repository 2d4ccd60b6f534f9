"""The interactive shell on a real (pseudo-)terminal: completion, history, colours, Ctrl-C, leaving.

Each test runs `python3 Client.py` with a pseudo-terminal as its stdin,
stdout and stderr (and controlling terminal, so Ctrl-C is a signal), types
into the master side and reads what the terminal shows, with deadlines. The
pieces behind it are tested without a terminal in tests/unit/test_shell.py
(completion, the history's place, tables) and tests/integration/test_shell.py.
"""

from __future__ import annotations

import fcntl
import hashlib
import importlib.util
import os
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import SGR, ServerThread, partial_size, random_bytes, wait_until, write_file
from tests.support.stalling_proxy import StallingProxy

ROOT = Path(__file__).resolve().parents[2]
needs_readline = pytest.mark.skipif(
    importlib.util.find_spec("readline") is None, reason="this Python has no readline module"
)

# Run as a new session's leader, open the terminal to make it the controlling
# one (so Ctrl-C sends SIGINT), then become Client.py. SIGINT is set back to
# its default first, as a person's shell starts a command: an ignored signal
# stays ignored across exec, and Python then leaves it ignored, so a test run
# started in the background (`pytest &` in a script ignores SIGINT) would
# type a Ctrl-C that nothing hears.
_BOOT = (
    "import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
    "os.close(os.open(os.ttyname(0), os.O_RDWR)); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


class PtyClient:
    """`python3 Client.py` on a pseudo-terminal."""

    def __init__(self, port: int, cwd: Path, env: dict[str, str]) -> None:
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 200, 0, 0))
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(ROOT / "Client.py"), "--port", str(port)],
                stdin=slave,
                stdout=slave,
                stderr=slave,
                cwd=cwd,
                env=env,
                start_new_session=True,
            )
        except BaseException:
            os.close(master)
            raise
        finally:
            os.close(slave)
        self.master = master
        self.output = bytearray()
        self._seen = 0  # where the next expect() starts looking
        self._eof = False

    def _read(self, deadline: float) -> bool:
        """Read what the terminal shows until ``deadline``; False at end of output."""
        if self._eof:
            return False
        ready, _, _ = select.select([self.master], [], [], max(deadline - time.monotonic(), 0))
        if not ready:
            return True
        try:
            data = os.read(self.master, 65536)
        except OSError:  # EIO: every process holding the terminal is gone
            data = b""
        if not data:
            self._eof = True
            return False
        self.output += data
        return True

    def expect(self, pattern: bytes, timeout: float = 10.0) -> None:
        """Wait until the output after the last match holds ``pattern`` (a regular expression)."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while not (match := regex.search(self.output, self._seen)):
            if time.monotonic() > deadline or not self._read(deadline):
                raise AssertionError(f"no {pattern!r} on the terminal; it shows {self.text!r}")
        self._seen = match.end()

    def prompt(self) -> None:
        """Wait for the next prompt. Keys are typed only at a prompt: readline is
        reading then (a key typed before it might be read in the terminal's line
        mode, and a Ctrl-C that comes before readline waits is seen only after
        the next key: see wait_until_reading)."""
        self.expect(rb"Client\d+ > ")

    def type(self, data: bytes) -> None:
        os.write(self.master, data)

    def wait(self, timeout: float = 10.0) -> int:
        """Read the output to its end and return the exit status."""
        deadline = time.monotonic() + timeout
        while self._read(deadline):
            if time.monotonic() > deadline:
                break
        try:
            return self.proc.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            raise AssertionError(f"the client did not end; it shows {self.text!r}") from None

    def wait_until_reading(self, timeout: float = 10.0) -> None:
        """Wait until the client sleeps in readline's wait for a key (Linux: /proc).

        A Ctrl-C that comes while readline is still busy with the last key is
        only seen after the next key (a limit of Python's readline module);
        a person never types that fast, a test does.
        """
        wchan = Path(f"/proc/{self.proc.pid}/wchan")
        if not wchan.exists():
            return  # not Linux: best effort
        deadline = time.monotonic() + timeout
        while "poll" not in wchan.read_text() and "select" not in wchan.read_text():
            if time.monotonic() > deadline:
                raise AssertionError(f"the client is not waiting for a key: {wchan.read_text()}")
            time.sleep(0.005)

    @property
    def text(self) -> str:
        return self.output.decode("utf-8", "replace").replace("\r\n", "\n")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        os.close(self.master)


@pytest.fixture
def terminal(server: ServerThread, tmp_path: Path) -> Iterator[Callable[..., PtyClient]]:
    """Start clients on pseudo-terminals; ``colour=False`` sets NO_COLOR, ``port``
    names another server (default: ``server``'s)."""
    started: list[PtyClient] = []
    history = tmp_path / "state" / "history"

    def start(*, colour: bool = False, port: int | None = None) -> PtyClient:
        env = {
            key: value
            for key, value in os.environ.items()
            if key not in ("NO_COLOR", "FILEDOCK_HOST", "FILEDOCK_PORT")
        }
        env.update(
            TERM="xterm",
            INPUTRC=os.devnull,
            HOME=str(tmp_path),
            FILEDOCK_HISTORY_FILE=str(history),
            FILEDOCK_CACHE_DIR=str(tmp_path / "cache"),
            PYTHONPATH=str(ROOT),
        )
        if not colour:
            env["NO_COLOR"] = "1"
        client = PtyClient(server.port if port is None else port, tmp_path, env)
        started.append(client)
        return client

    yield start
    for client in started:
        client.close()


# The assignment's walk-through (design/cli.md), as a terminal shows it: the
# typed lines echoed after each prompt. Times, the port and the folder vary.
WALKTHROUGH = r"""[CLIENT] Assigned name: Client01
[SERVER] WELCOME Client01 | filedock 1.0.0
Commands: help | list | status | who | ping | uptime | get <file> | <filename> | about | exit
Client01 > ping
[SERVER] PONG
Client01 > hello there
[SERVER] hello there ACK
Client01 > list
[SERVER] --- FILES ---
sample.txt  6 B  DATE ZONE
[SERVER] -----
Client01 > get sample.txt
[CLIENT] Saved file to: DOWNLOADS/sample.txt
[CLIENT] SHA256 verify: PASS
Client01 > status
[SERVER] --- STATUS ---
CLIENT    ACCEPTED             FINISHED             ADDR
Client01  DATE  None                 127.0.0.1:PORT
[SERVER] -----
Client01 > exit
[SERVER] BYE
"""


def test_the_walkthrough_on_a_terminal_is_the_assignments(
    terminal: Callable[..., PtyClient], tmp_path: Path
) -> None:
    client = terminal()
    for line in (b"ping", b"hello there", b"list", b"get sample.txt", b"status", b"exit"):
        client.prompt()
        client.wait_until_reading()
        client.type(line + b"\r")
    assert client.wait() == 0
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", client.text)  # readline's own modes
    shown = re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "DATE", shown)
    shown = re.sub(r"DATE \S+\n", "DATE ZONE\n", shown)  # list says its zone
    shown = re.sub(r"127\.0\.0\.1:\d+", "127.0.0.1:PORT", shown)
    shown = shown.replace(str(tmp_path / "downloads"), "DOWNLOADS")
    assert shown == WALKTHROUGH


@needs_readline
def test_tab_completes_a_file_name(terminal: Callable[..., PtyClient], tmp_path: Path) -> None:
    client = terminal()
    client.prompt()
    client.type(b"get sam\t")
    client.expect(rb"ple\.txt")
    client.type(b"\r")
    client.expect(rb"SHA256 verify: PASS")
    assert "[CLIENT] Saved file to: " + str(tmp_path / "downloads" / "sample.txt") in client.text
    assert (tmp_path / "downloads" / "sample.txt").read_bytes() == b"hello\n"
    client.prompt()
    client.type(b"exit\r")
    assert client.wait() == 0
    assert "[SERVER] BYE" in client.text


@needs_readline
def test_tab_completes_a_command_word(terminal: Callable[..., PtyClient]) -> None:
    client = terminal()
    client.prompt()
    client.type(b"upt\t\r")
    client.expect(rb"\[SERVER\] UPTIME \d+s")
    client.prompt()
    client.type(b"\x04")
    assert client.wait() == 0


def test_stats_shows_the_counters_aligned_on_the_terminal(
    terminal: Callable[..., PtyClient],
) -> None:
    client = terminal()
    client.prompt()
    client.type(b"stats\r")
    client.expect(rb"\[SERVER\] --- STATS ---")
    client.expect(rb"\[SERVER\] -----")
    table = client.text.split("--- STATS ---\n", 1)[1].split("\n[SERVER] -----", 1)[0]
    rows = table.splitlines()
    assert len({len(row) for row in rows}) == 1  # the values end in one column
    assert re.search(r"^requests_stats +1$", table, re.MULTILINE)
    client.prompt()
    client.type(b"exit\r")
    assert client.wait() == 0


@needs_readline
def test_history_is_kept_across_sessions(
    terminal: Callable[..., PtyClient], tmp_path: Path
) -> None:
    first = terminal()
    first.prompt()
    first.type(b"hello history\r")
    first.expect(rb"\[SERVER\] hello history ACK")
    first.prompt()
    first.type(b"\x04")  # Ctrl-D: the last line in the history stays "hello history"
    assert first.wait() == 0
    assert "hello history" in (tmp_path / "state" / "history").read_text()

    second = terminal()
    second.prompt()
    second.type(b"\x1b[A")  # up arrow
    second.expect(rb"hello history")
    second.type(b"\r")
    second.expect(rb"\[SERVER\] hello history ACK")
    second.prompt()
    second.type(b"exit\r")
    assert second.wait() == 0


@pytest.mark.parametrize("colour", [True, False], ids=["colour", "NO_COLOR"])
def test_colours_only_without_no_color(terminal: Callable[..., PtyClient], colour: bool) -> None:
    client = terminal(colour=colour)
    client.prompt()
    client.type(b"ping\r")
    client.expect(rb"PONG")
    client.prompt()
    client.type(b"get nope.txt\r")
    client.expect(rb"not-found")
    client.prompt()
    client.type(b"exit\r")
    assert client.wait() == 0
    if colour:
        assert re.search(rb"\x1b\[[0-9;]*m\[SERVER\]\x1b\[0m PONG", client.output)
        assert re.search(
            rb"\x1b\[[0-9;]*m\[CLIENT\]\x1b\[0m Assigned name: Client01", client.output
        )
        assert re.search(rb"\x1b\[31mERR not-found", client.output)  # errors in red
    else:
        assert not SGR.search(client.output), client.output
        assert "[SERVER] PONG\n" in client.text
        assert "[CLIENT] Assigned name: Client01\n" in client.text


@pytest.fixture
def runner_ignores_sigint() -> Iterator[None]:
    """This test process ignores SIGINT, as one started by `pytest &` from a script does."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.mark.usefixtures("runner_ignores_sigint")
def test_ctrl_c_is_heard_when_the_test_runner_ignores_sigint(
    terminal: Callable[..., PtyClient],
) -> None:
    """The client on the terminal gets SIGINT at its default, whatever the runner's."""
    test_ctrl_c_at_the_prompt_cancels_the_line(terminal)


def test_ctrl_c_at_the_prompt_cancels_the_line(terminal: Callable[..., PtyClient]) -> None:
    client = terminal()
    client.prompt()
    client.type(b"hello half")  # a half-typed line, thrown away
    client.expect(rb"hello half")
    client.wait_until_reading()
    client.type(b"\x03")
    client.prompt()  # a new prompt, on the same connection
    client.wait_until_reading()
    client.type(b"ping\r")
    client.expect(rb"\[SERVER\] PONG")
    assert "hello half ACK" not in client.text  # the cancelled line was never sent
    assert "pingpong" not in client.text
    client.prompt()
    client.type(b"exit\r")
    assert client.wait() == 0
    assert "[SERVER] BYE" in client.text
    assert "Traceback" not in client.text


@pytest.mark.parametrize("leave", [b"exit\r", b"\x04"], ids=["exit", "ctrl-d"])
def test_exit_and_ctrl_d_leave_cleanly(terminal: Callable[..., PtyClient], leave: bytes) -> None:
    client = terminal()
    client.prompt()
    client.type(b"pi")  # a half-typed line does not matter
    client.expect(rb"pi")
    client.wait_until_reading()
    client.type(b"\x15")  # Ctrl-U empties the line: Ctrl-D ends input only on an empty one
    client.type(leave)
    assert client.wait() == 0
    assert "[SERVER] BYE" in client.text
    assert "Traceback" not in client.text


# -- Ctrl-C during a download ----------------------------------------------------------

MiB = 1024 * 1024
BIG = 24 * MiB


@pytest.fixture
def stalling(server: ServerThread, repo: Path) -> Iterator[StallingProxy]:
    """A proxy to ``server`` whose first connection stalls a third of the way into big.bin."""
    write_file(repo / "big.bin", random_bytes(BIG))
    proxy = StallingProxy(server.port, BIG // 3)
    yield proxy
    proxy.close()


def _partial_size(downloads: Path) -> int:
    """The size of the largest partial file (``.NAME.part``) in ``downloads``; 0 if none."""
    return partial_size(downloads)


@needs_readline
def test_ctrl_c_during_a_download_keeps_the_partial_and_get_again_resumes(
    terminal: Callable[..., PtyClient],
    stalling: StallingProxy,
    repo: Path,
    tmp_path: Path,
) -> None:
    downloads = tmp_path / "downloads"
    client = terminal(port=stalling.port)
    client.prompt()
    client.type(b"get big.bin\r")
    wait_until(lambda: _partial_size(downloads) >= 4 * MiB, timeout=20)  # one buffer written
    kept = _partial_size(downloads)
    client.type(b"\x03")
    client.expect(rb"interrupted; `get big\.bin` again resumes")
    client.expect(rb"\[CLIENT\] Reconnected as Client02")
    client.prompt()
    assert _partial_size(downloads) >= kept  # the partial is kept
    assert not (downloads / "big.bin").exists()
    assert client.text.count("interrupted") == 1
    assert "\n[CLIENT] interrupted" in client.text  # the progress line was ended first
    assert "Traceback" not in client.text

    client.wait_until_reading()
    client.type(b"get big.bin\r")
    client.expect(rb"SHA256 verify: PASS \(resumed from (\d+) bytes\)", timeout=30)
    resumed_from = int(re.findall(r"resumed from (\d+) bytes", client.text)[-1])
    assert kept <= resumed_from < BIG
    big = (repo / "big.bin").read_bytes()
    assert (
        hashlib.sha256((downloads / "big.bin").read_bytes()).digest()
        == hashlib.sha256(big).digest()
    )
    client.prompt()
    client.type(b"exit\r")
    assert client.wait() == 0
    assert stalling.connections == 2
