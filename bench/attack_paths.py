#!/usr/bin/env python3
"""Attacks through paths and hashing: what one client's load costs the others.

    python3 bench/attack_paths.py                                   # this checkout
    python3 bench/attack_paths.py --filedock-root ../before --filedock-root .
    python3 bench/attack_paths.py --only flood,names --rounds 5

Measurements (each round starts a fresh server per checkout; the table shows
medians over the rounds, checkouts interleaved within each round):

- ``flood``: two clients (separate processes) pipeline 4 KiB ``a/a/a/…``
  lines as fast as they can; a third client's PING round trip, median of 200.
- ``names``: the same with lines that pass every check that needs no disk:
  ``x…/y…/…`` paths of 60 components that do not exist.
- ``dots``: the same with the bare line ``spin``, a symlink to itself whose
  target is 2,000 ``./`` long: steps that touch no disk but cost Python
  time, on the loop and in the metadata workers (the GIL is shared).
- ``lists``: two clients pipeline ``LIST`` on a repository of 20,000 files
  (a repository of its own); a third client's PING round trip, median of
  200 sent 10 ms apart, and the slowest of them.
- ``sources``: eight loopback addresses (127.0.0.2-9) each ask for one large
  file never hashed; a ninth address's ``GET`` of a 6-byte file never
  hashed, sent once the hashings are under way.
- ``get``: the plain GET of a cached 6-byte file, 5,000 pipelined by 100,
  wall time and server CPU per GET: what the defences must not slow.
- ``say``: the same with ``SAY`` lines, which are no path: the floor a flood
  of 4 KiB lines costs whatever they hold.
- ``starve``: one client with 8 connections asks for 8 large files never
  hashed (sparse, 512 MiB each: no disk used); another client's ``LIST``
  time, sent once the hashings are under way.

The idle PING round trip is shown beside the figures. Linux only (``/proc``
is not needed, sparse files are).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import ROOT, Running, cpu_seconds, start_filedock  # noqa: E402 - bench/run.py beside this file

HOST = "127.0.0.1"
LINE = 4096  # the default --max-line, LF included
PINGS = 200
BIG_FILES = 8
BIG_SIZE = 512 * 1024 * 1024
SPIN = "spin"  # a symlink looping through a long target of "./" (see attack_repo)


def greeted(port: int, timeout: float = 60.0, source: str = HOST) -> socket.socket:
    sock = socket.create_connection((HOST, port), timeout=timeout, source_address=(source, 0))
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"NAME ")
    sock.sendall(b"HELLO bench\n")
    assert reader.readline().startswith(b"WELCOME ")
    reader.close()
    return sock


def read_line(sock: socket.socket, buffer: bytearray) -> bytes:
    while b"\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


def ping_median_ms(port: int) -> float:
    return statistics.median(ping_times_ms(port))


def ping_times_ms(port: int, spacing: float = 0.0) -> list[float]:
    """Round trips of PINGS pings, ``spacing`` seconds apart (a paced client
    samples a load that comes in bursts, as listings do)."""
    sock = greeted(port)
    buffer = bytearray()
    times = []
    try:
        for _ in range(PINGS):
            time.sleep(spacing)  # pacing, not a wait for an event
            started = time.perf_counter()
            sock.sendall(b"PING\n")
            assert read_line(sock, buffer) == b"PONG"
            times.append((time.perf_counter() - started) * 1000)
    finally:
        sock.close()
    return times


# -- flooding with path-like lines ----------------------------------------------------------


def flood_lines(kind: str) -> bytes:
    if kind == "flood":
        line = ("a/" * (LINE // 2))[: LINE - 2].rstrip("/")
    elif kind == "lists":
        line = "LIST"
    elif kind == "dots":
        line = SPIN
    elif kind == "say":  # the floor: lines that are no path at all
        line = "SAY " + "s" * (LINE - 6)
    else:  # 60 components of 66 bytes: under every cap, nothing on disk
        line = "/".join(f"x{index:02d}" + "y" * 63 for index in range(60))[: LINE - 2]
    return (line + "\n").encode() * 16


def flooder(port: int, batch: bytes, stop: multiprocessing.synchronize.Event) -> None:
    """Send ``batch`` again and again, reading and dropping every reply."""
    sock = greeted(port)

    def drain() -> None:
        while not stop.is_set():
            try:
                if not sock.recv(1 << 20):
                    return
            except OSError:
                return

    threading.Thread(target=drain, daemon=True).start()
    try:
        while not stop.is_set():
            sock.sendall(batch)
    except OSError:
        pass
    finally:
        sock.close()


@contextmanager
def flooding(port: int, kind: str) -> Iterator[None]:
    stop = multiprocessing.Event()
    batch = flood_lines(kind)
    procs = [
        multiprocessing.Process(target=flooder, args=(port, batch, stop), daemon=True)
        for _ in range(2)
    ]
    for proc in procs:
        proc.start()
    try:
        time.sleep(1.0)  # the flood reaches its steady state (a load, not a wait for an event)
        yield
    finally:
        stop.set()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.kill()


def measure_flood(server: Running, kind: str, spacing: float = 0.0) -> dict[str, float]:
    idle = ping_median_ms(server.port)
    with flooding(server.port, kind):
        loaded = ping_times_ms(server.port, spacing)
    return {"idle_ms": idle, "ping_ms": statistics.median(loaded), "ping_max_ms": max(loaded)}


# -- hashing against listing --------------------------------------------------------------------


@contextmanager
def hashing_large_files(greedy: list[socket.socket]) -> Iterator[None]:
    """Each of ``greedy`` asks for a large never-hashed file; closed at the end."""
    try:
        for index, sock in enumerate(greedy):
            sock.sendall(f"GET big{index}.bin\n".encode())
        time.sleep(0.3)  # the hashings are under way (a load, not a wait for an event)
        yield
    finally:
        for sock in greedy:
            sock.close()


def measure_starve(server: Running) -> dict[str, float]:
    idle = ping_median_ms(server.port)
    greedy = [greeted(server.port) for _ in range(BIG_FILES)]
    lister = greeted(server.port)
    buffer = bytearray()
    with hashing_large_files(greedy), lister:
        started = time.perf_counter()
        lister.sendall(b"LIST\n")
        header = read_line(lister, buffer)
        assert header.startswith(b"FILES "), header
        for _ in range(int(header.split()[1])):
            read_line(lister, buffer)
        took = time.perf_counter() - started
    return {"idle_ms": idle, "list_ms": took * 1000}


def measure_sources(server: Running) -> dict[str, float]:
    idle = ping_median_ms(server.port)
    greedy = [greeted(server.port, source=f"127.0.0.{2 + index}") for index in range(BIG_FILES)]
    honest = greeted(server.port)
    buffer = bytearray()
    with hashing_large_files(greedy), honest:
        started = time.perf_counter()
        honest.sendall(b"GET sample.txt\n")
        header = read_line(honest, buffer)
        assert header.startswith(b"FILE 6 "), header
        took = time.perf_counter() - started
    return {"idle_ms": idle, "get_ms": took * 1000}


# -- the plain GET of a cached file (what the defences must not slow) -------------------------


def measure_get(server: Running) -> dict[str, float]:
    idle = ping_median_ms(server.port)
    sock = greeted(server.port)
    buffer = bytearray()
    batch, batches = 100, 50
    try:
        sock.sendall(b"GET sample.txt\n")  # hashed once, cached from then on
        read_line(sock, buffer)
        read_exactly(sock, buffer, 6)
        cpu_before = cpu_seconds(server.pid)
        started = time.perf_counter()
        for _ in range(batches):
            sock.sendall(b"GET sample.txt\n" * batch)
            for _ in range(batch):
                assert read_line(sock, buffer).startswith(b"FILE 6 ")
                read_exactly(sock, buffer, 6)
        took = time.perf_counter() - started
        cpu = cpu_seconds(server.pid) - cpu_before
    finally:
        sock.close()
    count = batch * batches
    return {"idle_ms": idle, "get_us": took / count * 1e6, "cpu_us": cpu / count * 1e6}


def read_exactly(sock: socket.socket, buffer: bytearray, size: int) -> bytes:
    while len(buffer) < size:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        buffer += chunk
    data = bytes(buffer[:size])
    del buffer[:size]
    return data


# -- running -----------------------------------------------------------------------------------


@contextmanager
def attack_repo() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="filedock-attack-") as tmp:
        repo = Path(tmp)
        (repo / "sample.txt").write_text("hello\n")
        os.symlink("./" * 2000 + SPIN, repo / SPIN)
        stamp = time.time() - 3600
        os.utime(repo / "sample.txt", (stamp, stamp))
        for index in range(BIG_FILES):
            with open(repo / f"big{index}.bin", "wb") as file:
                file.truncate(BIG_SIZE)  # sparse: hashed at memory speed
        yield repo


LISTED_FILES = 20_000


@contextmanager
def listing_repo() -> Iterator[Path]:
    """A repository of LISTED_FILES empty files in 20 folders."""
    with tempfile.TemporaryDirectory(prefix="filedock-listing-") as tmp:
        repo = Path(tmp)
        for folder in range(20):
            (repo / f"d{folder:02d}").mkdir()
            for index in range(LISTED_FILES // 20):
                (repo / f"d{folder:02d}" / f"f{index:04d}.txt").touch()
        yield repo


# Measures that need the large listing repository rather than attack_repo().
ON_LISTING_REPO = {"lists"}

MEASURES: dict[str, Callable[[Running], dict[str, float]]] = {
    "flood": lambda server: measure_flood(server, "flood"),
    "names": lambda server: measure_flood(server, "names"),
    "say": lambda server: measure_flood(server, "say"),
    "dots": lambda server: measure_flood(server, "dots"),
    "lists": lambda server: measure_flood(server, "lists", spacing=0.01),
    "starve": measure_starve,
    "sources": measure_sources,
    "get": measure_get,
}


FIGURES = {
    "flood": ("ping_ms", "PING ms"),
    "names": ("ping_ms", "PING ms"),
    "say": ("ping_ms", "PING ms"),
    "dots": ("ping_ms", "PING ms"),
    "lists": ("ping_ms", "PING ms"),
    "starve": ("list_ms", "LIST ms"),
    "sources": ("get_ms", "GET ms"),
    "get": ("get_us", "µs/GET"),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--filedock-root",
        type=Path,
        action="append",
        metavar="DIR",
        help="a checkout whose server to measure; repeat to compare (default: this one)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(MEASURES)}")
    args = parser.parse_args(argv)
    roots: list[Path] = [root.resolve() for root in (args.filedock_root or [ROOT])]
    wanted = args.only.split(",") if args.only else list(MEASURES)
    figures: dict[tuple[str, Path], list[dict[str, float]]] = {}
    with attack_repo() as small, listing_repo() as large:
        for round_index in range(args.rounds):
            for name in wanted:
                order = roots[round_index % len(roots) :] + roots[: round_index % len(roots)]
                repo = large if name in ON_LISTING_REPO else small
                for root in order:
                    server = start_filedock("asyncio", BIG_FILES + 4, repo, root)
                    try:
                        figures.setdefault((name, root), []).append(MEASURES[name](server))
                    finally:
                        server.stop()
            print(f"round {round_index + 1}/{args.rounds} done", file=sys.stderr)
    print(f"{os.cpu_count()} cores, Python {sys.version.split()[0]}, {args.rounds} rounds, medians")
    print(f"{'measure':8} {'checkout':40} {'idle PING ms':>13} {'figure':>14}")
    for name in wanted:
        for root in roots:
            rows = figures[(name, root)]
            idle = statistics.median(row["idle_ms"] for row in rows)
            key, label = FIGURES[name]
            value = statistics.median(row[key] for row in rows)
            extra = ""
            if name == "get":
                extra = f"  (server CPU {statistics.median(r['cpu_us'] for r in rows):.1f} µs/GET)"
            if name == "lists":
                slowest = statistics.median(r["ping_max_ms"] for r in rows)
                extra = f"  (slowest PING {slowest:.1f} ms)"
            print(f"{name:8} {str(root)[-40:]:40} {idle:13.3f} {value:10.2f} {label}{extra}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
