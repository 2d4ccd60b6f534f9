"""The client where Unix-only pieces are missing (Windows): ``resource``,
``fcntl``, ``termios``, ``mmap.MAP_PRIVATE``, ``signal.SIGHUP``, and a loop
without ``add_signal_handler``. Each is hidden, then the client runs."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from filedock.cli import server as server_cli
from tests.conftest import SAMPLE
from tests.support import ServerThread

# Hidden before anything of filedock is imported: an import of a missing module
# then fails as it would on Windows (sys.modules[name] = None makes it raise).
_HIDE = """
import mmap, signal, sys
for name in ("resource", "fcntl", "termios"):
    sys.modules[name] = None
del mmap.MAP_PRIVATE
del signal.SIGHUP
"""


def _run_hidden(code: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", _HIDE + code],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_hiding_itself_works(tmp_path: Path) -> None:
    result = _run_hidden("import fcntl", tmp_path)
    assert result.returncode != 0
    assert "ImportError" in result.stderr or "ModuleNotFoundError" in result.stderr


def test_the_library_and_the_command_import_without_unix_modules(tmp_path: Path) -> None:
    code = "import filedock, filedock.cli, filedock.cli.client; print('ok')"
    result = _run_hidden(code, tmp_path)
    assert (result.returncode, result.stdout.strip()) == (0, "ok"), result.stderr


def test_the_server_says_where_it_runs_instead_of_a_traceback(tmp_path: Path) -> None:
    code = "from filedock.cli import main; raise SystemExit(main(['server', '--help']))"
    result = _run_hidden(code, tmp_path)
    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        "filedock server: runs on Linux and macOS only (no module 'fcntl' here); "
        "the client runs here\n"
    )


def test_the_client_downloads_without_unix_modules(server: ServerThread, tmp_path: Path) -> None:
    downloads = tmp_path / "downloads"
    code = (
        "import filedock\n"
        f"with filedock.Client('127.0.0.1', {server.port}, timeout=10) as c:\n"
        f"    c.get('sample.txt', {str(downloads)!r})\n"
        "from filedock.cli import client_main\n"
        f"raise SystemExit(client_main(['--port', '{server.port}', '--downloads',"
        f" {str(tmp_path / 'cli')!r}, 'get', 'sample.txt']))\n"
    )
    result = _run_hidden(code, tmp_path)
    assert result.returncode == 0, result.stderr
    assert (downloads / "sample.txt").read_bytes() == SAMPLE
    assert (tmp_path / "cli" / "sample.txt").read_bytes() == SAMPLE


class _LoopWithoutSignals:
    """What Windows' event loop does with signal handlers."""

    def __init__(self) -> None:
        self.calls: list[object] = []

    def add_signal_handler(self, signum: int, callback: object) -> None:
        raise NotImplementedError

    def call_soon_threadsafe(self, callback: object) -> None:
        self.calls.append(callback)


def test_a_loop_without_signal_handlers_gets_plain_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    loop = _LoopWithoutSignals()
    installed: dict[int, object] = {}
    monkeypatch.setattr(
        signal, "signal", lambda signum, handler: installed.update({signum: handler})
    )

    def stop() -> None:
        pass

    server_cli.on_signal(loop, signal.SIGTERM, stop)  # type: ignore[arg-type]
    handler = installed[signal.SIGTERM]
    assert callable(handler)
    handler(signal.SIGTERM, None)  # the signal arrives: the call is handed to the loop
    assert loop.calls == [stop]


def test_the_descriptor_limit_is_skipped_without_resource(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(server_cli, "resource", None)
    server_cli.raise_descriptor_limit(3)  # no AttributeError on None


def test_a_real_loop_still_uses_add_signal_handler() -> None:
    async def check() -> bool:
        loop = asyncio.get_running_loop()
        server_cli.on_signal(loop, signal.SIGUSR1, lambda: None)
        try:
            return signal.SIGUSR1 in getattr(loop, "_signal_handlers", {})
        finally:
            loop.remove_signal_handler(signal.SIGUSR1)

    assert asyncio.run(check())
