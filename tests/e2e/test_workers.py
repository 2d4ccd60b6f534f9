"""Worker pools in the real program: a shutdown during a long hash keeps its grace."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.integration.test_workers import GiB, _read_bytes
from tests.support import LineConn, wait_until
from tests.support.process import ServerProcess


@pytest.mark.skipif(not os.path.exists(f"/proc/{os.getpid()}/io"), reason="needs /proc/<pid>/io")
def test_shutdown_during_the_hash_of_a_large_file_keeps_the_grace(repo: Path) -> None:
    huge = repo / "huge.bin"
    with open(huge, "wb") as file:
        file.truncate(64 * GiB)  # sparse: seconds to minutes of hashing, no disk
    process = ServerProcess(repo, "--shutdown-grace", "1")
    try:
        conn = LineConn(process.port, timeout=10)
        conn.greet()
        conn.send_line("GET huge.bin")
        base = _read_bytes(process.proc.pid)
        wait_until(lambda: _read_bytes(process.proc.pid) > base + 256 * 1024**2, timeout=20)
        stopped = time.monotonic()
        process.proc.send_signal(signal.SIGTERM)
        assert conn.read_line().startswith("ERR shutdown ")
        assert process.proc.wait(timeout=10) == 0
        took = time.monotonic() - stopped
        conn.close()
    finally:
        process.stop()
    assert took < 1 + 2.0, f"exit took {took:.1f} s with --shutdown-grace 1"
    assert "Traceback" not in process.log
