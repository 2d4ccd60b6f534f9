"""A client process killed in the middle of a large upload, then run again: nothing
is under the final name meanwhile, no listing shows it, the second run sends
only the rest, and the stored file verifies.

The client runs in a subprocess (the library, killed with SIGKILL; or
``Client.py put``, stopped with SIGTERM) through a relay that counts the bytes
the client sent, to an in-process server that takes uploads.
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

from filedock.client.client import Client
from filedock.client.results import UploadOutcome
from tests.e2e.test_resume_after_kill import LINES, ROOT, SIZE, child_env
from tests.support import HOST, ServerThread, wait_until
from tests.support.proxy import counting_proxy

_UPLOADING_CLIENT = """
import sys
from filedock.client.client import Client

port, local, half = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
client = Client("127.0.0.1", port, timeout=60)

def progress(moving):
    if moving.done >= half:
        print("half", moving.done, flush=True)
        sys.stdin.read()  # hold the upload here until killed

client.upload(local, "in/big.bin", progress=progress)
"""


@pytest.fixture
def big(tmp_path: Path) -> tuple[Path, bytes]:
    """A local file of SIZE random bytes, and its bytes."""
    data = os.urandom(SIZE)
    local = tmp_path / "big.bin"
    local.write_bytes(data)
    return local, data


def test_a_killed_upload_resumes_from_what_the_server_holds(
    make_server: Callable[..., ServerThread], repo: Path, tmp_path: Path, big: tuple[Path, bytes]
) -> None:
    server = make_server(allow_upload=True)
    local, data = big
    with counting_proxy(server.port) as proxy:
        command = [sys.executable, "-c", _UPLOADING_CLIENT, str(proxy.port), str(local)]
        command.append(str(SIZE // 2))
        with subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=child_env() | {"FILEDOCK_CACHE_DIR": str(tmp_path / "cache")},
            cwd=ROOT,
        ) as proc:
            assert proc.stdout is not None
            try:
                ready, _, _ = select.select([proc.stdout], [], [], 60)
                assert ready, "the client never got half way"
                assert proc.stdout.readline().startswith(b"half ")
                wait_until(lambda: proxy.from_client >= SIZE // 2, timeout=30)
                proc.send_signal(signal.SIGKILL)
                assert proc.wait(20) == -signal.SIGKILL
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(10)
        wait_until(lambda: server.session_count() == 0, timeout=15)
        assert not (repo / "in" / "big.bin").exists()
        proxy.reset()
        with Client(HOST, proxy.port, timeout=30, cache_dir=tmp_path / "cache") as client:
            assert "in/big.bin" not in [info.path for info in client.list()]
            result = client.upload(local, "in/big.bin")
        sent = proxy.from_client
    assert result.outcome is UploadOutcome.RESUMED
    assert SIZE // 4 <= result.resumed_from < SIZE
    assert SIZE - result.resumed_from <= sent <= SIZE - result.resumed_from + LINES
    stored = (repo / "in" / "big.bin").read_bytes()
    assert hashlib.sha256(stored).hexdigest() == result.sha256 == hashlib.sha256(data).hexdigest()


def test_the_command_line_put_stopped_by_sigterm_resumes(
    make_server: Callable[..., ServerThread], repo: Path, tmp_path: Path, big: tuple[Path, bytes]
) -> None:
    server = make_server(allow_upload=True)
    local, data = big
    env = child_env() | {"FILEDOCK_CACHE_DIR": str(tmp_path / "cache")}
    with counting_proxy(server.port) as proxy:
        command = [sys.executable, str(ROOT / "Client.py"), "--port", str(proxy.port)]
        command += ["put", str(local), "--to", "in"]
        with subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
        ) as proc:
            wait_until(lambda: proxy.from_client > 8 * 1024 * 1024, timeout=30)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=20)
        if proc.returncode == 0:
            pytest.skip("the upload finished before the signal came")
        assert proc.returncode == 128 + signal.SIGTERM, err
        wait_until(lambda: server.session_count() == 0, timeout=15)
        assert not (repo / "in" / "big.bin").exists()
        proxy.reset()
        again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=60)
        sent = proxy.from_client
    assert again.returncode == 0, again.stderr
    assert "resumed from " in again.stdout, again.stdout
    assert sent < SIZE  # only the rest
    assert (repo / "in" / "big.bin").read_bytes() == data
