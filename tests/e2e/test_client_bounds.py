"""The client library in a fresh interpreter: importing it changes no process-wide state."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_client_changes_no_process_state() -> None:
    code = (
        "import os\n"
        "calls = []\n"
        "real = os.umask\n"
        "os.umask = lambda mask: calls.append(mask) or real(mask)\n"
        "import filedock, filedock.client.download, filedock.client.client, filedock.cli.client\n"
        "print(calls)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert done.stdout.strip() == "[]"
