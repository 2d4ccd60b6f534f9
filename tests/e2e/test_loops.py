"""The event loop option of the real program: python3 Server.py --loop, without uvloop and on it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from filedock.client.client import Client
from tests.integration.test_loops import needs_uvloop
from tests.support import HOST
from tests.support.process import ROOT, ServerProcess


def test_server_without_uvloop_says_so_and_exits_1(repo: Path) -> None:
    code = (
        "import sys; sys.modules['uvloop'] = None\n"
        "from filedock.cli.server import server_main\n"
        f"sys.exit(server_main(['--loop', 'uvloop', '--port', '0', '--repo', {str(repo)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 1
    assert "Cannot start the server: uvloop is not installed" in done.stderr


@needs_uvloop
def test_uvloop_server_process_says_its_loop(repo: Path) -> None:
    process = ServerProcess(repo, "--loop", "uvloop")  # the last --loop is the one taken
    try:
        process.wait_for_log(r"Starting server on 127\.0\.0\.1:\d+.*, loop=uvloop$")
        with Client(HOST, process.port, timeout=10) as client:
            assert client.ping() < 1.0
    finally:
        code = process.stop()
    assert code == 0, process.log
