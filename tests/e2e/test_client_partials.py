"""Partial files of downloads that were cut off: at most one per file, never piling up.

A client process (``Client.py get``) is stopped mid-download by a signal,
several times in a row, by a fake server that sends the start of a body and
then waits. The fake speaks version 1, which has no RANGE: nothing can be
resumed, so SIGTERM and SIGHUP unwind the download (its partial file is
removed, and no resume record is written); SIGKILL cannot be caught, so the
partial stays, but under the one name that the next download of the same
file takes over. Nothing ever has the final name before its SHA-256 is
checked. (Against a version 2 server a partial is kept to be resumed:
tests/e2e/test_resume_after_kill.py.)
"""

from __future__ import annotations

import hashlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from filedock.client.download import partial_path
from tests.support import HOST, wait_until

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024
BODY = os.urandom(8 * MiB)
BODY_SHA = hashlib.sha256(BODY).hexdigest()


class StallingServer:
    """Serves every connection: the first 5 MiB of ``big.bin``, then waits (or all of it)."""

    def __init__(self) -> None:
        self.whole = threading.Event()  # set: send the whole body from now on
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._accepting = threading.Thread(target=self._accept, daemon=True)
        self._accepting.start()

    def _accept(self) -> None:
        deadline = time.monotonic() + 120
        while not self._stop.is_set() and time.monotonic() < deadline:
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            try:
                conn.sendall(b"NAME Client01\n")
                reader = conn.makefile("rb")
                reader.readline()  # HELLO
                conn.sendall(b"WELCOME Client01 fakedock 0.0\n")
                line = reader.readline().decode().strip()  # GET big.bin
                path = line.partition(" ")[2]
                conn.sendall(f"FILE {len(BODY)} {BODY_SHA} {path}\n".encode())
                if self.whole.is_set():
                    conn.sendall(BODY)
                    reader.readline()  # EXIT
                    conn.sendall(b"BYE\n")
                    return
                conn.sendall(BODY[: 5 * MiB])  # one buffer of the client's is written
                while conn.recv(65536):  # until the client is gone
                    pass
            except OSError:
                pass  # the client was killed: what this server is for

    def close(self) -> None:
        self._stop.set()
        self._accepting.join(10)
        self.listener.close()
        for thread in self._threads:
            thread.join(35)


@pytest.fixture
def stalling_server() -> Iterator[StallingServer]:
    server = StallingServer()
    yield server
    server.close()


def start_get(port: int, downloads: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    return subprocess.Popen(
        [sys.executable, str(ROOT / "Client.py"), "--port", str(port), "--timeout", "30"]
        + ["get", "big.bin", "-o", str(downloads)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )


def hidden_files(folder: Path) -> list[Path]:
    return sorted(path for path in folder.iterdir() if path.name.startswith("."))


def stop_mid_download(
    process: subprocess.Popen[bytes], partial: Path, signum: int
) -> tuple[int, bytes]:
    """Wait until the body has begun arriving, send ``signum``; the exit status and stderr."""
    wait_until(lambda: partial.exists() and partial.stat().st_size > 0, timeout=20)
    process.send_signal(signum)
    _, err = process.communicate(timeout=20)
    return process.returncode, err


def test_sigkill_leaves_one_partial_that_the_next_download_takes_over(
    stalling_server: StallingServer, tmp_path: Path
) -> None:
    downloads = tmp_path / "downloads"
    partial = partial_path(downloads / "big.bin")
    for _ in range(4):
        process = start_get(stalling_server.port, downloads)
        code, _ = stop_mid_download(process, partial, signal.SIGKILL)
        assert code == -signal.SIGKILL
        assert hidden_files(downloads) == [partial]  # one, however many kills
        assert not (downloads / "big.bin").exists()  # never half-written under its name
    stalling_server.whole.set()
    process = start_get(stalling_server.port, downloads)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert (downloads / "big.bin").read_bytes() == BODY
    assert list(downloads.iterdir()) == [downloads / "big.bin"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_remove_the_partial(
    stalling_server: StallingServer, tmp_path: Path, signum: int
) -> None:
    downloads = tmp_path / "downloads"
    partial = partial_path(downloads / "big.bin")
    for _ in range(2):
        process = start_get(stalling_server.port, downloads)
        code, err = stop_mid_download(process, partial, signum)
        assert code == 128 + signum, err
        assert b"Traceback" not in err
        assert list(downloads.iterdir()) == []
