"""The interactive client program (python3 Client.py) against a hostile server: one clear line.

Whatever a scripted fake server does (garbage, silence, a hang-up, a body
cut short, a wrong hash, a file larger than the disk, an escaping path),
the shell prints one clear line and no traceback."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_client_hostile import (
    BODY,
    BODY_SHA,
    endless_name,
    files_in,
    garbage,
    hang_up,
    silent,
)
from tests.support.fake_server import FakeServer, Peer, Script

ROOT = Path(__file__).resolve().parents[2]


WRONG_SHA = hashlib.sha256(b"something else").hexdigest()


def short_body_then_close(peer: Peer) -> None:
    peer.greet()
    path = peer.requested()
    peer.send(f"FILE {len(BODY) + 100} {BODY_SHA} {path}\n".encode() + BODY)


def wrong_hash(peer: Peer) -> None:
    peer.greet()
    path = peer.requested()
    peer.send(f"FILE {len(BODY)} {WRONG_SHA} {path}\n".encode() + BODY)
    peer.serve_rest()


def escaping_path(peer: Peer) -> None:
    peer.greet()
    peer.requested()
    peer.send(f"FILE {len(BODY)} {BODY_SHA} ../../evil.txt\n".encode() + BODY)
    peer.wait_closed()


def larger_than_the_disk(peer: Peer) -> None:
    peer.greet()
    path = peer.requested()
    peer.send(f"FILE {10**18} {BODY_SHA} {path}\n".encode() + BODY)
    peer.wait_closed()


SHELL_CASES: dict[str, tuple[Script, str, str, bool]] = {
    # script, commands typed, the one line expected (regex), whether the session ends
    "garbage": (garbage(b"SSH-2.0-OpenSSH_9.6\r\n"), "ping\n", r"\[CLIENT\] .*SSH-2\.0", True),
    "endless line": (endless_name, "ping\n", r"\[CLIENT\] .*line", True),
    "silence": (silent, "ping\n", r"\[CLIENT\] .*no answer .*1 s", True),
    "hang-up": (hang_up, "ping\n", r"\[CLIENT\] .*(closed|lost|reset)", True),
    "body cut short": (
        short_body_then_close,
        "get x.txt\n",
        r"\[CLIENT\] Connection to the server was lost",
        True,
    ),
    "wrong hash": (wrong_hash, "get x.txt\nping\nexit\n", r"\[CLIENT\] SHA256 verify: FAIL", False),
    "larger than the disk": (
        larger_than_the_disk,
        "get x.txt\nping\n",
        r"\[CLIENT\] Could not save the file: no room for x\.txt",
        True,
    ),
    "escaping path": (
        escaping_path,
        "../../evil.txt\n",
        r"\[CLIENT\] .*protocol.*unsafe path",
        True,
    ),
}


@pytest.mark.parametrize("case", list(SHELL_CASES))
def test_the_shell_prints_one_clear_line(
    fake_server: Callable[..., FakeServer], tmp_path: Path, case: str
) -> None:
    script, commands, expected, ends = SHELL_CASES[case]
    work = tmp_path / "home" / "work"
    work.mkdir(parents=True)
    server = fake_server(script)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FILEDOCK_", "NO_COLOR"))}
    env["NO_COLOR"] = "1"
    env["HOME"] = str(tmp_path / "home")  # any history file goes there
    done = subprocess.run(
        # --keep-going: the session goes on after a failure it survives, as at a terminal.
        [sys.executable, str(ROOT / "Client.py"), "--port", str(server.port), "--timeout", "1"]
        + ["--keep-going"],
        input=commands,
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    output = done.stdout + done.stderr
    assert "Traceback" not in output, output
    matching = [line for line in output.splitlines() if re.search(expected, line)]
    assert len(matching) == 1, output
    if ends:
        assert done.returncode != 0, output
    else:
        assert "[SERVER] PONG" in output, output
        assert done.returncode == 6, output  # the first failure's: the SHA-256 check
    # Nothing saved, nothing left half-written, nothing outside the folder.
    assert [p for p in files_in(tmp_path) if not p.name.startswith(".filedock")] == [], output
