"""TLS and access tokens through the real client program (python3 Client.py): options, messages."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.support import ServerThread
from tests.support.process import ROOT


def _client(
    port: int, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(ROOT / "Client.py"), "--port", str(port), *args],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
    )


def test_client_cafile_option(tls_server: ServerThread, ca_file: str) -> None:
    result = _client(tls_server.port, "--cafile", ca_file, "ping")
    assert result.returncode == 0, result.stderr
    assert "[SERVER] PONG" in result.stdout


def test_client_insecure_option_warns(tls_server: ServerThread) -> None:
    result = _client(tls_server.port, "--insecure", "who", "--json")
    assert result.returncode == 0, result.stderr
    assert "WARNING: --insecure" in result.stderr
    assert json.loads(result.stdout) == ["Client01"]


def test_client_without_tls_against_tls_server(tls_server: ServerThread) -> None:
    result = _client(tls_server.port, "ping")
    assert result.returncode == 3
    assert "TLS" in result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr


def test_client_missing_cafile_is_a_usage_error(tls_server: ServerThread, tmp_path: Path) -> None:
    result = _client(tls_server.port, "--cafile", str(tmp_path / "nope.pem"), "ping")
    assert result.returncode == 2
    assert "--cafile" in result.stderr


def test_client_token_from_file_and_environment(token_server: ServerThread, tmp_path: Path) -> None:
    token_file = tmp_path / "mine"
    token_file.write_text("# mine\nbeta-456\n")
    by_file = _client(token_server.port, "--token-file", str(token_file), "ping")
    assert by_file.returncode == 0, by_file.stderr
    by_env = _client(token_server.port, "ping", env={"FILEDOCK_TOKEN": "alpha-123"})
    assert by_env.returncode == 0, by_env.stderr
    wrong = _client(token_server.port, "ping", env={"FILEDOCK_TOKEN": "guess"})
    assert wrong.returncode == 7
    assert "unauthorized" in wrong.stdout + wrong.stderr
