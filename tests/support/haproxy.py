"""A real HAProxy in front of filedock servers: ``haproxy -f <generated cfg>``.

:class:`HAProxy` writes a ``mode tcp`` configuration that listens on a free
port of 127.0.0.1 and balances over the backends given, each ``server`` line
with ``send-proxy`` or ``send-proxy-v2`` (or neither), starts ``haproxy -db``
on it, waits until it listens, and stops it. Without haproxy installed the
test is skipped with the reason, unless the environment variable CI is set:
there a missing tool is a failure, not a silent skip.
"""

from __future__ import annotations

import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from tests.support import HOST, wait_until
from tests.support.tools import free_port, require_program

SEND_PROXY_CHOICES = ("send-proxy", "send-proxy-v2", "")


def haproxy_binary() -> str:
    """The path of ``haproxy``; skips the test without it (fails it under CI)."""
    return require_program("haproxy", "haproxy")


def is_listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``, read from /proc/net/tcp:
    connecting to find out would reach a backend through HAProxy (and take a name)."""
    wanted = f"0100007F:{port:04X}"
    with open("/proc/net/tcp", encoding="ascii") as table:
        next(table)
        return any(
            fields[1] == wanted and fields[3] == "0A"  # 0A: LISTEN
            for fields in (line.split() for line in table)
        )


def haproxy_config(
    port: int,
    backends: Sequence[tuple[str, int]],
    *,
    send_proxy: str = "send-proxy-v2",
    accept_proxy: bool = False,
    balance: str = "roundrobin",
) -> str:
    """A ``mode tcp`` configuration: 127.0.0.1:``port`` in front of ``backends``.

    ``accept_proxy``: the listener itself takes a PROXY header from its
    client (a second balancer in front), which it then relays.
    """
    if send_proxy not in SEND_PROXY_CHOICES:
        raise ValueError(f"send_proxy must be one of {SEND_PROXY_CHOICES}")
    servers = "\n".join(
        f"    server node{index} {host}:{backend_port} {send_proxy}".rstrip()
        for index, (host, backend_port) in enumerate(backends, 1)
    )
    return f"""\
global
    maxconn 2048
    nbthread 1

defaults
    mode tcp
    timeout connect 5s
    timeout client 60s
    timeout server 60s

frontend filedock
    bind {HOST}:{port}{" accept-proxy" if accept_proxy else ""}
    default_backend nodes

backend nodes
    balance {balance}
{servers}
"""


class HAProxy:
    """``haproxy -db -f <cfg>`` on a free port of 127.0.0.1, in front of ``backends``."""

    def __init__(
        self,
        folder: Path,
        backends: Sequence[tuple[str, int]],
        *,
        send_proxy: str = "send-proxy-v2",
        accept_proxy: bool = False,
        balance: str = "roundrobin",
    ) -> None:
        self.binary = haproxy_binary()
        self.folder = folder
        self.backends = list(backends)
        self.send_proxy = send_proxy
        self.accept_proxy = accept_proxy
        self.balance = balance
        self.port = 0
        self.proc: subprocess.Popen[str] | None = None
        self.lines: list[str] = []
        self._reader: threading.Thread | None = None

    def start(self) -> HAProxy:
        """Start it and wait until it listens; a port taken meanwhile is tried again."""
        for _ in range(5):
            if self._try_port(free_port()):
                return self
        raise RuntimeError(f"haproxy did not start:\n{self.log}")

    def _try_port(self, port: int) -> bool:
        """Run it on ``port``; False if it exited instead (the port was taken, most likely)."""
        self.port = port
        config = self.folder / f"haproxy-{port}.cfg"
        config.write_text(
            haproxy_config(
                port,
                self.backends,
                send_proxy=self.send_proxy,
                accept_proxy=self.accept_proxy,
                balance=self.balance,
            )
        )
        proc = self.proc = subprocess.Popen(
            [self.binary, "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(
            target=self._read, args=(proc,), name="haproxy-log", daemon=True
        )
        self._reader.start()
        try:
            wait_until(lambda: is_listening(port) or proc.poll() is not None, 10.0)
        except BaseException:
            self.stop()
            raise
        if proc.poll() is None:
            return True
        self._collect()
        return False

    def _read(self, proc: subprocess.Popen[str]) -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            self.lines.append(line.rstrip("\n"))

    @property
    def log(self) -> str:
        return "\n".join(self.lines)

    def _collect(self) -> None:
        if self.proc is not None:
            if self.proc.stderr is not None and self._reader is not None:
                self._reader.join(5)
                self.proc.stderr.close()
            self.proc = None

    def stop(self) -> None:
        """Stop it (SIGTERM: it closes every connection at once), and wait."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        self._collect()

    def __enter__(self) -> HAProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    """``haproxy -c -f path``: whether HAProxy takes the configuration (0) and what it said."""
    return subprocess.run(
        [haproxy_binary(), "-c", "-f", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
