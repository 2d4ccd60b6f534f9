"""The README's TLS recipe, run as written: openssl's certificate, a token, a checked client."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.process import ServerProcess

ROOT = Path(__file__).resolve().parents[2]


def _recipe() -> str:
    blocks = re.findall(r"^```sh\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S)
    [recipe] = [block for block in blocks if "openssl req" in block]
    first, rest = recipe.split("\n", 1)
    assert first.startswith("host="), first  # the one line a reader edits
    # This machine's name and address, and the clone's Server.py wherever the test runs.
    rest = rest.replace("python3 Server.py", f"{sys.executable} {ROOT / 'Server.py'}")
    return "host=localhost addr=127.0.0.1\n" + rest


def _client(port: int, *options: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    return subprocess.run(
        [
            sys.executable,
            str(ROOT / "Client.py"),
            "--host",
            "localhost",
            "--port",
            str(port),
            *options,
            "ping",
        ],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.skipif(shutil.which("openssl") is None, reason="no openssl command here")
def test_the_readme_recipe_gives_a_server_a_checked_client_reaches(
    repo: Path, tmp_path: Path
) -> None:
    made = subprocess.run(
        ["bash", "-e", "-c", _recipe()], cwd=tmp_path, capture_output=True, text=True, timeout=60
    )
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "key.pem").stat().st_mode & 0o077 == 0
    assert (tmp_path / "tokens.txt").stat().st_mode & 0o077 == 0
    server = ServerProcess(
        repo,
        "--tls-cert",
        str(tmp_path / "cert.pem"),
        "--tls-key",
        str(tmp_path / "key.pem"),
        "--token-file",
        str(tmp_path / "tokens.txt"),
    )
    try:
        checked = _client(
            server.port, "--cafile", "cert.pem", "--token-file", "token.txt", cwd=tmp_path
        )
        assert checked.returncode == 0, checked.stderr
        assert "PONG" in checked.stdout
        # Without the certificate to trust, --tls pins it on first use, as ssh
        # does, and takes only that one later: --insecure is never needed.
        first = _client(server.port, "--tls", "--token-file", "token.txt", cwd=tmp_path)
        assert first.returncode == 0, first.stderr
        assert "pinned" in first.stderr
        again = _client(server.port, "--tls", "--token-file", "token.txt", cwd=tmp_path)
        assert again.returncode == 0, again.stderr
        assert "pinned" not in again.stderr
    finally:
        assert server.stop() == 0, server.log
