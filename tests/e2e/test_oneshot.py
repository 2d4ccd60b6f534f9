"""The one-shot commands through the real program: python3 Client.py takes the same arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import SAMPLE

ROOT = Path(__file__).resolve().parents[2]


def _client_py(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("FILEDOCK_")}
    return subprocess.run(
        [sys.executable, str(ROOT / "Client.py"), *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )


def test_client_py_takes_the_same_arguments(port: str, tmp_path: Path) -> None:
    listing = _client_py("--port", port, "list", "--json", cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert [entry["path"] for entry in json.loads(listing.stdout)] == ["sample.txt"]
    fetched = _client_py("--port", port, "get", "sample.txt", "-o", "out", cwd=tmp_path)
    assert fetched.returncode == 0
    assert (tmp_path / "out" / "sample.txt").read_bytes() == SAMPLE
    missing = _client_py("--port", port, "get", "nope.txt", cwd=tmp_path)
    assert missing.returncode == 5
    bad = _client_py("bogus", cwd=tmp_path)
    assert bad.returncode == 2
    assert "invalid choice" in bad.stderr
    assert "Traceback" not in bad.stderr + missing.stderr
