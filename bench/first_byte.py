#!/usr/bin/env python3
"""First-byte benchmark: a never-hashed file's body starts at once, whatever its size.

Run from a clone, nothing installed (standard library only)::

    python3 bench/first_byte.py           # 256 MiB, 1 GiB and 4 GiB; 3 rounds (a few minutes)
    python3 bench/first_byte.py --quick   # 1, 4 and 16 MiB; 1 round: a smoke test

It starts its own server (``python3 Server.py --port 0 --repo TMP --state-dir
TMP2``, on 127.0.0.1) and measures, in the same run:

- the time from sending ``GET`` (v2) to the first body byte of a file the
  server never hashed, for each size, next to the time of 20 ``PING`` round
  trips on the same connection just before. Target: under the 20 PINGs, and
  flat in the size (the largest size's median at most twice the smallest's).
  Each round writes fresh files, so none was ever hashed;
- the first (cold) download of a never-hashed file against a warm one (its
  digest cached), both with the library, to disk, verified. Target: the cold
  rate at least 0.8 of the warm one.

The figures are medians over the rounds.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from filedock.client.client import Client  # noqa: E402

MiB = 1024 * 1024
GiB = 1024 * MiB
MB = 1_000_000
PINGS = 20
# A digest is cached only for a file unchanged this long (git's racy rule, 2 s).
RACY_SECONDS = 2.5
_STARTING = re.compile(r"Starting server on \[?([^\]\s]+?)\]?:(\d+)")
_BLOCK = 4 * MiB


def write_fresh(path: Path, size: int, block: bytes, stamp: int) -> None:
    """``size`` bytes at ``path``: ``block`` over and over, each copy stamped with
    ``stamp`` and its place, so no two files (or blocks) are alike."""
    with path.open("wb") as out:
        for index in range(0, size, len(block)):
            piece = f"{stamp}:{index}:".encode() + block
            out.write(piece[: min(len(block), size - index)])


def start_server(repo: Path, state: Path) -> tuple[subprocess.Popen[str], int]:
    argv = [sys.executable, str(ROOT / "Server.py"), "--port", "0"]
    argv += ["--repo", str(repo), "--state-dir", str(state)]
    server = subprocess.Popen(
        argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    assert server.stderr is not None
    for _ in range(100):  # a handful of lines come before the port
        line = server.stderr.readline()
        found = _STARTING.search(line)
        if found:
            # Its later lines are read and dropped: a full pipe would stop the server.
            threading.Thread(target=server.stderr.read, daemon=True).start()
            return server, int(found.group(2))
        if not line:
            break
    server.kill()
    raise SystemExit("the server did not start")


class Wire:
    """A raw v2 connection: lines and bytes, with a deadline on each read."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""
        name = self.line().removeprefix("NAME ")
        self.sock.sendall(f"HELLO {name} proto=2\n".encode())
        assert self.line().endswith(" proto=2")

    def line(self) -> str:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise SystemExit("the server closed the connection")
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode()

    def pings(self, count: int) -> float:
        started = time.perf_counter()
        for _ in range(count):
            self.sock.sendall(b"PING\n")
            assert self.line() == "PONG"
        return time.perf_counter() - started

    def first_byte(self, name: str) -> tuple[float, str]:
        """Seconds from sending GET to holding the first body byte; the header."""
        started = time.perf_counter()
        self.sock.sendall(f"GET {name}\n".encode())
        header = self.line()
        while not self.buffer:
            self.buffer = self.sock.recv(65536)
        return time.perf_counter() - started, header

    def close(self) -> None:
        self.sock.close()


def wait_hashed(port: int, name: str) -> None:
    """Wait until the server's hashing of ``name`` (left going by a send cut short) ends."""
    wire = Wire(port)
    try:
        wire.sock.sendall(f"HASH {name}\n".encode())
        assert wire.line().startswith("HASH "), "HASH failed"
    finally:
        wire.close()


def timed_download(port: int, name: str, out: Path, size: int) -> float:
    """Bytes per second of one verified download to disk, with the library."""
    shutil.rmtree(out, ignore_errors=True)
    with Client("127.0.0.1", port, timeout=120) as client:
        started = time.perf_counter()
        result = client.download(name, out)
        seconds = time.perf_counter() - started
    assert result.size == size
    return size / seconds


def fmt_size(size: int) -> str:
    return f"{size // GiB} GiB" if size >= GiB else f"{size // MiB} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 round")
    parser.add_argument("--rounds", type=int, default=None, help="rounds (default 3)")
    args = parser.parse_args(argv)
    sizes = [MiB, 4 * MiB, 16 * MiB] if args.quick else [256 * MiB, GiB, 4 * GiB]
    download_size = 16 * MiB if args.quick else GiB
    rounds = args.rounds or (1 if args.quick else 3)

    work = Path(tempfile.mkdtemp(prefix="filedock-first-byte-"))
    repo, state, out = work / "repo", work / "state", work / "out"
    repo.mkdir()
    block = os.urandom(_BLOCK)
    server, port = start_server(repo, state)
    first: dict[int, list[float]] = {size: [] for size in sizes}
    pings: list[float] = []
    cold: list[float] = []
    warm: list[float] = []
    cached_first: list[float] = []
    try:
        for round_ in range(rounds):
            for size in sizes:
                name = f"r{round_}-{size}.bin"
                write_fresh(repo / name, size, block, round_)
                wire = Wire(port)
                pings.append(wire.pings(PINGS))
                seconds, header = wire.first_byte(name)
                wire.close()  # cut short: the server goes on hashing it
                assert header == f"FILE {size} - {name}", header
                first[size].append(seconds)
                wait_hashed(port, name)
                os.unlink(repo / name)
            name = f"d{round_}.bin"
            write_fresh(repo / name, download_size, block, round_)
            time.sleep(RACY_SECONDS)  # old enough for its digest to be cached
            cold.append(timed_download(port, name, out, download_size))
            wire = Wire(port)  # for reference: a file whose digest is cached
            seconds, header = wire.first_byte(name)
            wire.close()
            assert not header.startswith(f"FILE {download_size} - "), header
            cached_first.append(seconds)
            warm.append(timed_download(port, name, out, download_size))
            os.unlink(repo / name)
    finally:
        server.terminate()
        server.wait(30)
        shutil.rmtree(work, ignore_errors=True)

    ping_time = statistics.median(pings)
    print(f"filedock first-byte benchmark — {os.cpu_count()} cores, Python "
          f"{platform.python_version()}, medians of {rounds} round(s)")  # fmt: skip
    print()
    print("time to the first body byte of a never-hashed file (v2 GET)")
    print(f"{'size':<9} {'first byte':>11} {f'{PINGS} PINGs':>10} {'ratio':>6}  target: under "
          f"{PINGS} PINGs")  # fmt: skip
    medians = {size: statistics.median(times) for size, times in first.items()}
    for size, median in medians.items():
        met = "met" if median < ping_time else "NOT met"
        print(f"{fmt_size(size):<9} {median * 1000:>8.2f} ms {ping_time * 1000:>7.2f} ms "
              f"{median / ping_time:>6.2f}  {met}")  # fmt: skip
    reference = statistics.median(cached_first)
    print(f"{'(cached)':<9} {reference * 1000:>8.2f} ms {ping_time * 1000:>7.2f} ms "
          f"{reference / ping_time:>6.2f}  for reference: a {fmt_size(download_size)} "
          "file whose digest is cached (v1 header)")  # fmt: skip
    growth = medians[sizes[-1]] / medians[sizes[0]]
    flat = "met" if growth <= 2.0 else "NOT met"
    print(f"flat in the size: {fmt_size(sizes[-1])} / {fmt_size(sizes[0])} = {growth:.2f} "
          f"(target at most 2): {flat}")  # fmt: skip
    print()
    ratio = statistics.median(cold) / statistics.median(warm)
    met = "met" if ratio >= 0.8 else "NOT met"
    print(f"download of a {fmt_size(download_size)} file, library, verified to disk")
    print(f"never hashed (cold) {statistics.median(cold) / MB:>8.0f} MB/s")
    print(f"digest cached (warm) {statistics.median(warm) / MB:>7.0f} MB/s")
    print(f"cold / warm {ratio:.2f} (target at least 0.8): {met}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
