"""Starting the server: a --repo that is not there is refused, never made on the spot."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trustme

from tests.support import wait_until
from tests.support.credentials import tls_options

ROOT = Path(__file__).resolve().parents[2]


def start(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(ROOT / "Server.py"), "--port", "0", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=30)


@pytest.mark.parametrize(
    ("make", "why"),
    [(None, "no such folder (create it first)"), ("file", "not a folder")],
)
def test_a_repo_that_is_not_a_folder_is_refused_by_name(
    tmp_path: Path, make: str | None, why: str
) -> None:
    if make == "file":
        (tmp_path / "typo").write_text("a file")
        repo = "typo"
    else:
        repo = "typo/deep/er"
    done = start(tmp_path, "--repo", repo)
    assert done.returncode == 1
    assert f"Cannot start the server: --repo {repo}: {why}" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "typo" / "deep").exists()  # nothing made on the spot


def test_the_default_repo_is_made_on_first_start(tmp_path: Path) -> None:
    command = [sys.executable, str(ROOT / "Server.py"), "--port", "0"]
    with subprocess.Popen(command, cwd=tmp_path, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stderr is not None
        # Read by a thread, not select() and readline(): lines that come in one
        # write (the log writes a batch at once) wait in the reader's buffer,
        # where select() does not see them.
        lines: list[str] = []
        stderr = proc.stderr

        def read() -> None:
            for line in stderr:
                lines.append(line)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            wait_until(lambda: any("Starting server on" in line for line in lines), timeout=30)
            assert any("Created repository folder" in line for line in lines), lines
            assert (tmp_path / "server_repo").is_dir()
        finally:
            proc.terminate()
            proc.wait(15)
            reader.join(15)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["--max-clients", "0"], "--max-clients must be at least 1, not 0"),
        (["--shutdown-grace", "nan"], "--shutdown-grace must be a number of seconds, 0 or more"),
        (["--send-timeout", "inf"], "--send-timeout must be a number of seconds over 0"),
        (["--tls-cert", "cert.pem"], "--tls-cert and --tls-key go together"),
    ],
)
def test_an_option_out_of_its_rule_is_named_as_help_names_it(
    tmp_path: Path, args: list[str], said: str
) -> None:
    done = start(tmp_path, *args)
    assert done.returncode == 2
    assert said in done.stderr
    assert "_" not in done.stderr.splitlines()[-1]  # no internal field names


def test_a_missing_token_file_is_named(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-tokens"
    done = start(tmp_path, "--token-file", str(missing))
    assert done.returncode == 1
    assert f"Cannot start the server: {missing}: No such file or directory" in done.stderr


def test_a_swapped_certificate_and_key_are_named(tmp_path: Path, ca: trustme.CA) -> None:
    files = tls_options(ca, tmp_path)
    cert, key = str(files["tls_cert"]), str(files["tls_key"])
    done = start(tmp_path, "--tls-cert", key, "--tls-key", cert)  # swapped
    assert done.returncode == 1
    said = done.stderr.splitlines()[-1]
    assert (
        f"--tls-cert {key} and --tls-key {cert} are not a certificate and its private key" in said
    )
    assert "Traceback" not in done.stderr
    assert (
        start(tmp_path, "--tls-cert", cert, "--tls-key", key, "--max-clients", "0").returncode == 2
    )
