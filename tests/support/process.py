"""``python3 Server.py`` in a subprocess, its log collected line by line as it comes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[2]
# Any host: 127.0.0.1, 0.0.0.0, [::1].
STARTED = r"Starting server on (?:\[[0-9a-f:.]+\]|[^ :]+):(\d+),"


class ServerProcess:
    """``python3 Server.py --port 0 --repo DIR …``, started and listening once made.

    The environment's ``FILEDOCK_*`` settings are left out, so only ``options``
    configure it; the event loop is the standard one unless FILEDOCK_TEST_LOOP
    asks for another, as for the in-process servers. With ``log_file`` the log
    goes there (``--log-file``), and the Starting line is waited for in it.
    """

    def __init__(
        self,
        repo: Path,
        *options: str,
        preexec_fn: Callable[[], None] | None = None,
        log_file: Path | None = None,
        start_timeout: float = 10.0,
    ) -> None:
        self.log_file = log_file
        if log_file is not None:
            options = (*options, "--log-file", str(log_file))
        env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
        env["PYTHONUNBUFFERED"] = "1"
        loop = os.environ.get("FILEDOCK_TEST_LOOP", "asyncio")
        command = ["Server.py", "--port", "0", "--repo", str(repo), "--loop", loop, *options]
        self.proc = subprocess.Popen(
            [sys.executable, *command],
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            preexec_fn=preexec_fn,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, name="server-log", daemon=True)
        self._reader.start()
        try:
            if log_file is None:
                match = self.wait_for_log(STARTED, timeout=start_timeout)
            else:
                match = self.wait_in_file(STARTED, timeout=start_timeout)
        except BaseException:
            self.stop()
            raise
        self.port = int(match.group(1))

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        """The log so far (all of it once the process has been stopped)."""
        return "\n".join(self.lines)

    def matching(self, pattern: str) -> list[str]:
        regex = re.compile(pattern)
        return [line for line in list(self.lines) if regex.search(line)]

    def wait_for_log(self, pattern: str, timeout: float = 10.0, since: int = 0) -> re.Match[str]:
        """The first log line matching ``pattern`` (from line ``since`` on), once it comes."""
        regex = re.compile(pattern)
        found: list[re.Match[str]] = []
        checked = since

        def seen() -> bool:
            nonlocal checked
            lines = self.lines[checked:]
            checked += len(lines)
            found.extend(m for m in map(regex.search, lines) if m)
            if not found and self.proc.poll() is not None and not self._reader.is_alive():
                raise AssertionError(f"the server exited; log:\n{self.log}")
            return bool(found)

        try:
            wait_until(seen, timeout=timeout, interval=0.01)
        except AssertionError as exc:
            if "the server exited" in str(exc):
                raise
            raise AssertionError(f"no log line matching {pattern!r}; log:\n{self.log}") from None
        return found[0]

    def wait_in_file(self, pattern: str, timeout: float = 10.0) -> re.Match[str]:
        """The first line of the ``log_file`` matching ``pattern``, once it is there."""
        assert self.log_file is not None
        path, regex = self.log_file, re.compile(pattern)
        found: list[re.Match[str]] = []

        def seen() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"the server exited; stderr:\n{self.log}")
            text = path.read_text() if path.exists() else ""
            found.extend(m for m in map(regex.search, text.splitlines()) if m)
            return bool(found)

        wait_until(seen, timeout=timeout, interval=0.01)
        return found[0]

    def memory_kib(self, field: str) -> int:
        """``VmRSS``, ``VmHWM`` (peak), … of the server, in KiB."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
        raise AssertionError(f"no {field} in /proc/{self.proc.pid}/status")

    def cpu_seconds(self) -> float:
        """User plus system CPU time the server has used."""
        with open(f"/proc/{self.proc.pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self, timeout: float = 15.0) -> int:
        """SIGINT (unless it has exited), then :meth:`wait`."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float = 15.0) -> int:
        """The exit status, once the process has exited and its log is complete;
        killed, and an AssertionError, if it does not exit in time."""
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
            raise AssertionError(f"the server did not exit in time; log:\n{self.log}") from None
        finally:
            self._reader.join(10)
            assert self.proc.stderr is not None
            self.proc.stderr.close()
        return code
