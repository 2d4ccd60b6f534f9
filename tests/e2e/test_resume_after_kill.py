"""A client process killed in the middle of a large download, then run again:
the second run moves the bytes from the offset, not from zero, and the file verifies.

The client runs in a subprocess (the library, or ``Client.py get``) through a
relay that counts the bytes the server sent, to an in-process server.
"""

from __future__ import annotations

import hashlib
import os
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from filedock.client.client import Client, Outcome
from filedock.client.download import partial_path
from filedock.client.resume import load_record
from tests.support import HOST, ServerThread, wait_until
from tests.support.proxy import counting_proxy

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
SIZE = 64 * MiB
LINES = 4096  # reply lines around the bodies, at most

_LIBRARY_CLIENT = """
import sys
from filedock.client.client import Client

port, dest, half = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
client = Client("127.0.0.1", port, timeout=60)

def progress(moving):
    if moving.done >= half:
        print("half", moving.done, flush=True)
        sys.stdin.read()  # hold the download here until killed

client.download("big.bin", dest, progress=progress)
"""


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def kill_at_half(port: int, dest: Path, signum: int) -> None:
    command = [sys.executable, "-c", _LIBRARY_CLIENT, str(port), str(dest), str(SIZE // 2)]
    with subprocess.Popen(
        command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=child_env(), cwd=ROOT
    ) as proc:
        assert proc.stdout is not None
        try:
            ready, _, _ = select.select([proc.stdout], [], [], 60)
            assert ready, "the client never got half way"
            assert proc.stdout.readline().startswith(b"half ")
            # The writer thread lags the receiver by a few buffers: let it reach half.
            partial = partial_path(dest / "big.bin")
            wait_until(lambda: partial.stat().st_size >= SIZE // 2, timeout=30)
            proc.send_signal(signum)
            assert proc.wait(20) == -signum
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)


@pytest.fixture
def big(repo: Path) -> bytes:
    data = os.urandom(SIZE)
    (repo / "big.bin").write_bytes(data)
    return data


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=["SIGKILL", "SIGTERM"])
def test_a_killed_download_resumes_from_its_offset(
    big: bytes, server: ServerThread, downloads: Path, signum: int
) -> None:
    with counting_proxy(server.port) as proxy:
        kill_at_half(proxy.port, downloads, signum)
        partial = partial_path(downloads / "big.bin")
        offset = partial.stat().st_size
        assert SIZE // 2 <= offset < SIZE
        assert load_record(downloads / "big.bin") is not None
        assert not (downloads / "big.bin").exists()
        # The killed client's session ended (a loaded machine may take seconds).
        wait_until(lambda: server.session_count() == 0, timeout=30)
        proxy.reset()
        with Client(HOST, proxy.port, timeout=30) as client:
            result = client.download("big.bin", downloads)
        moved = proxy.from_server
    assert (result.outcome, result.resumed_from) == (Outcome.RESUMED, offset)
    assert SIZE - offset <= moved <= SIZE - offset + LINES  # from the offset, not from zero
    assert hashlib.sha256((downloads / "big.bin").read_bytes()).hexdigest() == result.sha256
    assert (downloads / "big.bin").read_bytes() == big
    assert sorted(path.name for path in downloads.iterdir()) == ["big.bin"]


def test_the_command_line_get_keeps_its_partial_on_sigterm_and_resumes(
    big: bytes, server: ServerThread, downloads: Path, make_server: Callable[..., ServerThread]
) -> None:
    partial = partial_path(downloads / "big.bin")
    with counting_proxy(server.port) as proxy:
        command = [sys.executable, str(ROOT / "Client.py"), "--port", str(proxy.port)]
        command += ["get", "big.bin", "-o", str(downloads)]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=child_env()
        ) as proc:
            wait_until(lambda: partial.exists() and partial.stat().st_size > 8 * MiB, timeout=30)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        if proc.returncode == 0:
            pytest.skip("the download finished before the signal came")
        assert proc.returncode == 128 + signal.SIGTERM, err
        offset = partial.stat().st_size
        assert load_record(downloads / "big.bin") is not None
        wait_until(lambda: server.session_count() == 0, timeout=30)
        proxy.reset()
        again = subprocess.run(command, capture_output=True, env=child_env(), timeout=60)
        moved = proxy.from_server
    assert again.returncode == 0, again.stderr
    assert moved <= SIZE - offset + LINES
    assert (downloads / "big.bin").read_bytes() == big
