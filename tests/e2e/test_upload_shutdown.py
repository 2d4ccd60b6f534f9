"""An upload when the real program (python3 Server.py --allow-upload) is stopped
by SIGTERM in the middle of its body: told ERR shutdown, the partial kept, and
the next server resumes it."""

from __future__ import annotations

import hashlib
import signal
from pathlib import Path

from tests.support import LineConn, random_bytes
from tests.support.process import ServerProcess

BODY = random_bytes(2 * 1024 * 1024 + 3)
SHA = hashlib.sha256(BODY).hexdigest()
HALF = len(BODY) // 2


def _put(process: ServerProcess) -> tuple[LineConn, str]:
    conn = LineConn(process.port, timeout=10.0)
    name = conn.read_line().removeprefix("NAME ")
    assert conn.request(f"HELLO {name} proto=2").startswith("WELCOME ")
    return conn, conn.request(f"PUT {len(BODY)} {SHA} new big.bin")


def test_sigterm_mid_upload_keeps_the_partial_for_the_next_server(repo: Path) -> None:
    first = ServerProcess(repo, "--allow-upload")
    try:
        conn, ready = _put(first)
        with conn:
            assert ready == "READY 0 big.bin"
            conn.send(BODY[:HALF])
            conn.sock.shutdown(1)  # (SHUT_WR) all of the half is sent: the server has it
            first.wait_for_log(r"interrupted \(the client closed the connection\)")
    finally:
        first.stop()
    # The client closed there; now one stopped by the server itself.
    second = ServerProcess(repo, "--allow-upload")
    try:
        conn, ready = _put(second)
        with conn:
            assert ready == f"READY {HALF} big.bin"
            conn.send(BODY[HALF : HALF + 1000])
            second.proc.send_signal(signal.SIGTERM)
            assert conn.read_line() == "ERR shutdown server is shutting down"
        assert second.wait(timeout=10) == 0
        assert "stopped by the server's shutdown, its partial kept" in second.log
        assert "Traceback" not in second.log
    finally:
        second.stop()
    assert not (repo / "big.bin").exists()
    third = ServerProcess(repo, "--allow-upload")
    try:
        conn, ready = _put(third)
        with conn:
            offset = int(ready.split(" ")[1])
            assert HALF <= offset <= HALF + 1000  # what came before the stop is kept
            conn.send(BODY[offset:])
            assert conn.read_line() == f"STORED {len(BODY)} {SHA} big.bin"
    finally:
        third.stop()
    assert (repo / "big.bin").read_bytes() == BODY
