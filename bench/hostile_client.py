#!/usr/bin/env python3
"""The client against a hostile server: what it costs, in two checkouts side by side.

    python3 bench/hostile_client.py --before ../before --after . --rounds 3

Each scenario runs ``Client.py`` of each checkout as a subprocess against a
fake server in this process (127.0.0.1), and prints the median of the rounds:

- ``drip``: ``ping --timeout 3`` while the server answers one byte a second;
  seconds until the client gives up (capped: the client is killed then);
- ``records``: ``status`` answered ``STATUS 99999999999999999999`` and records
  as fast as the socket takes them; the client's peak resident memory (MiB)
  and seconds until it ends (capped);
- ``disk``: ``get x`` answered with a FILE header announcing 10**12 bytes, and
  zeros as fast as the socket takes them (at most 1 GiB); the most bytes the
  client had on disk (MB), and seconds until it ends (capped);
- ``kills``: ``get big.bin`` killed with SIGKILL mid-body 4 times; the hidden
  partial files left in the downloads folder.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

HOST = "127.0.0.1"
MiB = 1024 * 1024
CAP = 12.0  # seconds a client is given before it is killed and the cap recorded

Answer = Callable[[socket.socket, str], None]


class FakeServer:
    """Greets every connection, then hands the first request line to ``answer``."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.listener = socket.create_server((HOST, 0))
        self.listener.settimeout(0.05)
        self.port: int = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn, contextlib.suppress(OSError):
            conn.settimeout(CAP + 5)
            conn.sendall(b"NAME Client01\n")
            reader = conn.makefile("rb")
            reader.readline()
            conn.sendall(b"WELCOME Client01 fakedock 0.0\n")
            self.answer(conn, reader.readline().decode().strip())

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()


@contextlib.contextmanager
def serving(answer: Answer) -> Iterator[FakeServer]:
    server = FakeServer(answer)
    try:
        yield server
    finally:
        server.close()


def start_client(root: Path, port: int, work: Path, *args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    return subprocess.Popen(
        [sys.executable, str(root / "Client.py"), "--port", str(port), *args],
        cwd=work,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def watch(process: subprocess.Popen[bytes], sample: Callable[[], float]) -> tuple[float, float]:
    """Seconds until ``process`` ends (killed at CAP), and the highest ``sample()`` meanwhile."""
    started = time.monotonic()
    peak = 0.0
    while process.poll() is None:
        peak = max(peak, sample())
        if time.monotonic() - started > CAP:
            process.kill()
            process.wait()
            return CAP, peak
        time.sleep(0.02)  # sampling period of the measurement, not a wait for an event
    return time.monotonic() - started, peak


def drip(conn: socket.socket, line: str) -> None:
    for _ in range(int(CAP) + 5):
        conn.sendall(b"P")
        time.sleep(1.0)  # the hostile server's pace


def endless_records(conn: socket.socket, line: str) -> None:
    conn.sendall(b"STATUS 99999999999999999999\n")
    record = b"Client01\t2026-11-24 15:29:28\t-\t127.0.0.1:49559\n" * 1000
    deadline = time.monotonic() + CAP + 2
    while time.monotonic() < deadline:
        conn.sendall(record)


def huge_file(conn: socket.socket, line: str) -> None:
    path = line.partition(" ")[2]
    conn.sendall(f"FILE {10**12} {'0' * 64} {path}\n".encode())
    zeros = b"\0" * MiB
    for _ in range(1024):  # at most 1 GiB of this machine's disk
        conn.sendall(zeros)
    time.sleep(CAP + 2)  # then silence, as a stalled server


BODY = os.urandom(8 * MiB)


def stall_mid_body(conn: socket.socket, line: str) -> None:
    path = line.partition(" ")[2]
    conn.sendall(f"FILE {len(BODY)} {hashlib.sha256(BODY).hexdigest()} {path}\n".encode())
    conn.sendall(BODY[: 5 * MiB])
    while conn.recv(65536):
        pass


def largest_file(folder: Path) -> float:
    sizes = [entry.stat().st_size for entry in folder.rglob("*") if entry.is_file()]
    return max(sizes, default=0) / 1e6


def written_since(folder: Path, moment: int) -> bool:
    """Whether a hidden file in ``folder`` got bytes after ``moment`` (ns)."""
    if not folder.exists():
        return False
    for path in folder.glob(".*"):
        with contextlib.suppress(OSError):
            info = path.stat()
            if info.st_size and info.st_mtime_ns >= moment:
                return True
    return False


def run_drip(root: Path, work: Path) -> dict[str, float]:
    with serving(drip) as server:
        took, _ = watch(start_client(root, server.port, work, "--timeout", "3", "ping"), lambda: 0)
    return {"seconds": took}


def run_records(root: Path, work: Path) -> dict[str, float]:
    with serving(endless_records) as server:
        process = start_client(root, server.port, work, "--timeout", "30", "status")
        took, peak = watch(process, lambda: rss_mib(process.pid))
    return {"peak RSS MiB": peak, "seconds": took}


def run_disk(root: Path, work: Path) -> dict[str, float]:
    downloads = work / "downloads"
    with serving(huge_file) as server:
        process = start_client(root, server.port, work, "--timeout", "3", "get", "x")
        took, peak = watch(process, lambda: largest_file(downloads) if downloads.exists() else 0)
    return {"MB on disk": peak, "seconds": took}


def run_kills(root: Path, work: Path) -> dict[str, float]:
    downloads = work / "downloads"
    with serving(stall_mid_body) as server:
        for _ in range(4):
            launched = time.time_ns()
            process = start_client(root, server.port, work, "get", "big.bin")
            deadline = time.monotonic() + CAP
            while time.monotonic() < deadline and not written_since(downloads, launched):
                time.sleep(0.01)  # polling for this client's body to start arriving
            process.send_signal(signal.SIGKILL)
            process.wait()
    return {"partial files": float(len(list(downloads.glob(".*"))))}


SCENARIOS = {"drip": run_drip, "records": run_records, "disk": run_disk, "kills": run_kills}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="checkout to compare with")
    parser.add_argument("--after", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default=",".join(SCENARIOS))
    args = parser.parse_args()
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, cap {CAP:g} s")
    for name in args.only.split(","):
        figures: dict[str, dict[str, list[float]]] = {tree: {} for tree in trees}
        for _ in range(args.rounds):
            for tree, root in trees.items():
                with tempfile.TemporaryDirectory() as work:
                    for key, value in SCENARIOS[name](root, Path(work)).items():
                        figures[tree].setdefault(key, []).append(value)
        for key in figures["before"]:
            before = statistics.median(figures["before"][key])
            after = statistics.median(figures["after"][key])
            print(f"{name:8} {key:14} before {before:9.1f}   after {after:9.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
