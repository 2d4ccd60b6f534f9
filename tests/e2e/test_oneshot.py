"""The one-shot commands through the real program: python3 Client.py takes the same arguments."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from filedock.client.download import partial_path
from tests.conftest import SAMPLE
from tests.support import ServerThread, partial_size, random_bytes, wait_until, write_file
from tests.support.stalling_proxy import StallingProxy

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def _client_py(
    *argv: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    if env is None:
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


# SIGINT set back to its default first: a runner started in the background
# (`pytest &`) ignores it, and Python keeps an ignored SIGINT ignored.
# The script's folder goes first on the path, as `python3 Client.py` puts it.
_WITH_CTRL_C = (
    "import os, runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv = sys.argv[1:]; sys.path.insert(0, os.path.dirname(sys.argv[0])); "
    "runpy.run_path(sys.argv[0], run_name='__main__')"
)


@pytest.mark.parametrize("resume", [True, False], ids=["resume", "no-resume"])
def test_ctrl_c_stops_a_get_with_130_and_the_same_command_resumes(
    server: ServerThread, repo: Path, tmp_path: Path, resume: bool
) -> None:
    size = 24 * MiB
    body = random_bytes(size)
    write_file(repo / "big.bin", body)
    proxy = StallingProxy(server.port, size // 3)
    try:
        env = {key: value for key, value in os.environ.items() if not key.startswith("FILEDOCK_")}
        env["FILEDOCK_CACHE_DIR"] = str(tmp_path / "cache")
        argv = [str(ROOT / "Client.py"), "--port", str(proxy.port), "get", "big.bin", "-o", "out"]
        first = subprocess.Popen(
            [sys.executable, "-c", _WITH_CTRL_C, *argv],
            cwd=tmp_path,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            out_dir = tmp_path / "out"
            wait_until(lambda: _hidden_size(out_dir) >= 4 * MiB, timeout=20)
            first.send_signal(signal.SIGINT)
            out, err = first.communicate(timeout=20)
        finally:
            if first.poll() is None:
                first.kill()
                first.communicate()
        assert first.returncode == 130, err
        assert err == "[CLIENT] interrupted; the same command again resumes\n"
        assert out == ""
        kept = _hidden_size(out_dir)
        assert kept >= 4 * MiB  # the partial file stays for the next run
        assert not (out_dir / "big.bin").exists()

        again = _client_py(*argv[1:], *([] if resume else ["--no-resume"]), cwd=tmp_path, env=env)
        assert again.returncode == 0, again.stderr
        if resume:
            assert again.stdout.endswith(f"SHA256 verify: PASS (resumed from {kept} bytes)\n")
        else:  # from the first byte: the partial was thrown away
            assert again.stdout.endswith("SHA256 verify: PASS\n")
        assert not partial_path(out_dir / "big.bin").exists()  # no partial left either way
        assert (out_dir / "big.bin").read_bytes() == body
    finally:
        proxy.close()


def _hidden_size(folder: Path) -> int:
    """The size of the largest partial file (``.NAME.part``) in ``folder``; 0 if none."""
    return partial_size(folder)
