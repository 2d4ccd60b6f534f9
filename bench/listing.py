#!/usr/bin/env python3
"""Listings: the whole repository as ``list --json``, and one folder's ``LIST``.

Run from a clone::

    python3 bench/listing.py            # 100,000 files in 1,000 folders, 3 rounds
    python3 bench/listing.py --quick    # CI smoke: 2,000 files in 20 folders, 1 round
    python3 bench/listing.py --json results.json

Whole listing: ``filedock-client list --json`` (a new process each time, its
output to /dev/null) against ``rsync -r --list-only`` from an rsync daemon
over the same tree, both started by the bench on 127.0.0.1. Each figure is
the median over the rounds, the two run alternately (A B A B …): the client's
wall time, the server's CPU (user + system; for rsync, the forked child's,
read from the daemon's reaped children), and the filedock server's resident
memory before the listing and once it is sent. filedock's figures are given
cold (the first listing after the server started: a scan) and warm (the same
listing asked again: from its listing cache, see filedock/server/listing_cache.py);
the server is started anew each round so that every round has a cold listing.

One folder: ``LIST <folder>`` of a 100-entry folder against nginx's JSON
autoindex of it (``autoindex on; autoindex_format json;``), each asked the
same number of times, one request at a time over one kept-alive connection,
by the same Python client loop (a raw socket), so the two differ only by
the server. The figure is the wall time per request, with the server's CPU
per request beside it. Cold is a folder's first request (for filedock the
first after the start: one scan): the median over 15 folders, each asked
once, as one request alone swings too much; nginx's over 15 others, so that
neither server meets folders the other has just read (nginx keeps nothing,
but the kernel's entries for a folder just read are warmer). Warm is the
mean of the rest, asked of one folder (filedock's from its cache). Under
cold, the floor: the warm request plus the least a Python server must do for
a folder's first listing, timed in this process on 15 more folders (read
it, ``lstat`` each entry, format its files' records: no rules, no cache).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import stat
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for entry in (str(ROOT), str(BENCH)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import anchors  # noqa: E402 - bench/anchors.py beside this file
from anchors import HOST, RSYNC_MODULE  # noqa: E402
from files import _STARTING, Proc  # noqa: E402

Figures = dict[str, list[float]]
KiB = 1024

WALL_TARGET = 1.0  # list --json's wall time, times rsync's
CPU_TARGET = 2.0  # the server's CPU, times the rsync daemon's
RSS_TARGET_KIB = 5 * 1024  # the server's RSS once the listing is sent, over where it started
FOLDER_TARGET = 2.0  # LIST <folder>, times nginx's JSON autoindex
FOLDER = "folder0001"  # the one folder asked for
COLD_FOLDERS = 15  # folders each asked once for the cold figure (folder0001 …)

NGINX_SERVER = """\
server {
    listen 127.0.0.1:{port};
    keepalive_requests 1000000;
    root {tree};
    location / { autoindex on; autoindex_format json; }
}
"""


@dataclass(frozen=True)
class Sizes:
    folders: int
    files_per_folder: int
    rounds: int
    folder_requests: int


FULL = Sizes(folders=1000, files_per_folder=100, rounds=3, folder_requests=2000)
QUICK = Sizes(folders=20, files_per_folder=100, rounds=1, folder_requests=200)


def make_tree(repo: Path, sizes: Sizes) -> None:
    for folder in range(sizes.folders):
        here = repo / f"folder{folder:04d}"
        here.mkdir(parents=True)
        for index in range(sizes.files_per_folder):
            (here / f"file{index:03d}.dat").write_bytes(b"x" * (index + 1))


def children_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``'s reaped children (the rsync daemon forks one a client)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return (int(fields[13]) + int(fields[14])) / anchors.TICKS  # fields 16 and 17 of stat(5)


def settled_cpu(read: Callable[[int], float], pid: int) -> float:
    """CPU seconds once two readings 30 ms apart agree (a child just reaped, a loop idle)."""
    last = read(pid)
    for _ in range(100):  # bounded: a second or so
        time.sleep(0.03)
        now = read(pid)
        if now == last:
            return float(now)
        last = now
    return float(last)


def start_filedock(repo: Path, state: Path) -> tuple[Proc, int]:
    argv = [sys.executable, str(ROOT / "Server.py"), "--port", "0", "--repo", str(repo)]
    argv += ["--state-dir", str(state), "--log-level", "WARNING"]
    server = Proc(argv, stdout=subprocess.DEVNULL)
    return server, int(server.wait_stderr(_STARTING).group(2))


def client_argv(port: int, *command: str) -> list[str]:
    return [sys.executable, "-m", "filedock", "client", "--port", str(port), *command]


# -- the whole listing ------------------------------------------------------------------------


# The client runs as installed: its bytecode compiled once (pip does it at install;
# a PYTHONDONTWRITEBYTECODE in the environment would have it compiled at every run).
_CLIENT_ENV = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}


def timed_run(argv: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, cwd=ROOT, env=_CLIENT_ENV)
    return time.perf_counter() - started


def measure_filedock_list(
    figures: Figures, server: Proc, port: int, files: int, kind: str = "cold"
) -> None:
    pid = server.popen.pid
    cpu = settled_cpu(anchors.cpu_seconds, pid)
    rss = anchors.rss_kib(pid)
    wall = timed_run(client_argv(port, "list", "--json"))
    suffix = "" if kind == "cold" else f"_{kind}"
    figures.setdefault(f"filedock_wall{suffix}", []).append(wall)
    used = settled_cpu(anchors.cpu_seconds, pid) - cpu
    figures.setdefault(f"filedock_cpu{suffix}", []).append(used)
    figures.setdefault(f"filedock_rss_before{suffix}", []).append(rss)
    figures.setdefault(f"filedock_rss_after{suffix}", []).append(anchors.rss_kib(pid))
    figures["files"] = [files]


def measure_rsync_list(figures: Figures, rsync: str, daemon: int, port: int) -> None:
    cpu = settled_cpu(children_cpu_seconds, daemon)
    wall = timed_run([rsync, "-r", "--list-only", f"rsync://{HOST}:{port}/{RSYNC_MODULE}/"])
    figures.setdefault("rsync_wall", []).append(wall)
    figures.setdefault("rsync_cpu", []).append(settled_cpu(children_cpu_seconds, daemon) - cpu)


# -- one folder --------------------------------------------------------------------------------


def _read_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> int:
    while (at := buffer.find(marker)) < 0:
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError("the server closed the connection")
        buffer += chunk
    return at


def filedock_folder_requests(port: int, count: int, folder: str = FOLDER) -> float:
    """Seconds for ``count`` ``LIST <folder>`` one after another over one connection."""
    with socket.create_connection((HOST, port)) as sock:
        buffer = bytearray()
        at = _read_until(sock, buffer, b"\n")
        name = bytes(buffer[:at]).split()[1].decode()
        del buffer[: at + 1]
        sock.sendall(f"HELLO {name}\n".encode())
        at = _read_until(sock, buffer, b"\n")
        del buffer[: at + 1]
        request = f"LIST {folder}\n".encode()
        started = time.perf_counter()
        for _ in range(count):
            sock.sendall(request)
            at = _read_until(sock, buffer, b"\n")
            records = int(bytes(buffer[:at]).split()[1])
            del buffer[: at + 1]
            # The records' lines as a whole, as the nginx side reads its body whole.
            while buffer.count(b"\n") < records:
                chunk = sock.recv(65536)
                if not chunk:
                    raise RuntimeError("the server closed the connection")
                buffer += chunk
            end = 0
            for _ in range(records):
                end = buffer.index(b"\n", end) + 1
            del buffer[:end]
        return time.perf_counter() - started


def nginx_folder_requests(port: int, count: int, folder: str = FOLDER) -> float:
    """Seconds for ``count`` GETs of the folder's JSON autoindex over one kept-alive connection."""
    with socket.create_connection((HOST, port)) as sock:
        buffer = bytearray()
        request = f"GET /{folder}/ HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode()
        started = time.perf_counter()
        for _ in range(count):
            sock.sendall(request)
            at = _read_until(sock, buffer, b"\r\n\r\n")
            head = bytes(buffer[:at]).lower()
            del buffer[: at + 4]
            if b"transfer-encoding: chunked" in head:
                while True:  # chunk sizes, each chunk and its CRLF
                    at = _read_until(sock, buffer, b"\r\n")
                    size = int(bytes(buffer[:at]).split(b";")[0], 16)
                    del buffer[: at + 2]
                    while len(buffer) < size + 2:
                        buffer += sock.recv(65536)
                    del buffer[: size + 2]
                    if size == 0:
                        break
            else:
                length = int(head.split(b"content-length:")[1].split(b"\r\n")[0])
                while len(buffer) < length:
                    buffer += sock.recv(65536)
                del buffer[:length]
        return time.perf_counter() - started


def nginx_worker(master: int) -> int:
    return anchors.nginx_workers(master)[0]  # one worker: see anchors.start_nginx


def cold_seconds(run: Callable[[int, int, str], float], port: int, numbers: range) -> float:
    """The median of one first request of each folder ``numbers`` names (one request
    alone is too noisy to compare)."""
    return statistics.median(run(port, 1, f"folder{number:04d}") for number in numbers)


def measure_filedock_folder(
    figures: Figures, port: int, pid: int, count: int, folders: int
) -> None:
    """Cold: a folder's first request after the start (a scan), over the first
    ``folders`` folders, ``FOLDER`` among them; warm: ``count`` more of ``FOLDER``."""
    cold = cold_seconds(filedock_folder_requests, port, range(1, folders + 1))
    figures.setdefault("filedock_folder_seconds", []).append(cold)
    measure_folder(figures, "filedock", filedock_folder_requests, port, pid, count)


def measure_nginx_folder(figures: Figures, port: int, pid: int, count: int, sizes: Sizes) -> None:
    """As :func:`measure_filedock_folder`: cold over the next folders (none asked of
    filedock, so neither server finds them warmer for the other), then warm."""
    others = range(COLD_FOLDERS + 1, min(2 * COLD_FOLDERS, sizes.folders - 1) + 1)
    cold = cold_seconds(nginx_folder_requests, port, others)
    figures.setdefault("nginx_folder_seconds_cold", []).append(cold)
    measure_folder(figures, "nginx", nginx_folder_requests, port, pid, count)


def bare_scan_seconds(folder: Path) -> float:
    """Seconds to read ``folder``, ``lstat`` each entry and format its files' records."""
    started = time.perf_counter()
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        with os.scandir(fd) as entries:
            lines = []
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode):
                    lines.append(f"{folder.name}/{entry.name}\t{st.st_size}\t{st.st_mtime:.0f}\n")
        lines.sort()
        "".join(lines).encode()
    finally:
        os.close(fd)
    return time.perf_counter() - started


def measure_bare_scan(figures: Figures, repo: Path, sizes: Sizes) -> None:
    """The median over folders the filedock server has not been asked for, the last ones."""
    last = range(sizes.folders - 1, max(sizes.folders - 1 - COLD_FOLDERS, -1), -1)
    seconds = [bare_scan_seconds(repo / f"folder{number:04d}") for number in last]
    figures.setdefault("bare_scan_seconds", []).append(statistics.median(seconds))


def measure_folder(
    figures: Figures, name: str, run: Callable[[int, int], float], port: int, pid: int, count: int
) -> None:
    cpu = settled_cpu(anchors.cpu_seconds, pid)
    seconds = run(port, count)
    used = settled_cpu(anchors.cpu_seconds, pid) - cpu
    suffix = "_warm" if name == "filedock" else ""
    figures.setdefault(f"{name}_folder_seconds{suffix}", []).append(seconds / count)
    figures.setdefault(f"{name}_folder_cpu{suffix}", []).append(used / count)


# -- the run -----------------------------------------------------------------------------------


def run(sizes: Sizes) -> tuple[Figures, dict[str, str]]:
    figures: Figures = {}
    versions: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="filedock-bench-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        make_tree(repo, sizes)
        files = sizes.folders * sizes.files_per_folder
        _CLIENT_ENV["PYTHONPYCACHEPREFIX"] = str(work / "pycache")  # the bench's own copy
        rsync = anchors.find_or_install("rsync", "rsync")
        nginx = anchors.find_or_install("nginx", "nginx")
        daemons: list[subprocess.Popen[bytes]] = []
        server: Proc | None = None
        try:
            rsync_port = nginx_port = nginx_pid = 0
            if rsync:
                daemon, rsync_port = anchors.start_rsync_daemon(repo, work / "rsyncd")
                daemons.append(daemon)
                versions["rsync"] = _version([rsync, "--version"])
            else:
                print("note: no rsync, its rows are left out", file=sys.stderr)
            if nginx:
                block = NGINX_SERVER.replace("{tree}", str(repo))
                daemon, nginx_port = anchors.start_nginx(work / "nginx", block)
                daemons.append(daemon)
                nginx_pid = nginx_worker(daemon.pid)
                versions["nginx"] = _version([nginx, "-v"])
            else:
                print("note: no nginx, its rows are left out", file=sys.stderr)
            for number in range(sizes.rounds):
                print(f"round {number + 1}/{sizes.rounds}", file=sys.stderr, flush=True)
                # A new server each round, so that each has a cold listing.
                server, port = start_filedock(repo, work / "state")
                # Untimed: the page cache and the server's first request (threads,
                # imports), asking a folder that is not there (nothing else cached).
                timed_run(client_argv(port, "list", "no-such-folder"))
                measure_filedock_list(figures, server, port, files)
                measure_filedock_list(figures, server, port, files, "warm")
                if rsync:
                    measure_rsync_list(figures, rsync, daemons[0].pid, rsync_port)
                measure_filedock_folder(
                    figures, port, server.popen.pid, sizes.folder_requests, COLD_FOLDERS
                )
                measure_bare_scan(figures, repo, sizes)
                if nginx:
                    measure_nginx_folder(
                        figures, nginx_port, nginx_pid, sizes.folder_requests, sizes
                    )
                server.stop()
                server = None
        finally:
            if server is not None:
                server.stop()
            for daemon in daemons:
                anchors.stop(daemon)
    return figures, versions


def _version(argv: list[str]) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    text = (done.stdout or done.stderr).splitlines()
    return text[0].strip() if text else "?"


# -- the table --------------------------------------------------------------------------------


def median(figures: Figures, name: str) -> float | None:
    values = figures.get(name)
    return statistics.median(values) if values else None


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def _ratio_row(
    label: str, mine: float, theirs: float | None, target: float, shown: str
) -> tuple[str, ...]:
    if theirs is None:
        return (label, shown.format(mine), "not run", "", f"<= {target:g}x")
    ratio = mine / theirs if theirs > 0 else float("inf")
    text = "-" if theirs <= 0 else f"{ratio:.2f}x"
    return (
        label,
        shown.format(mine),
        shown.format(theirs),
        text,
        f"<= {target:g}x {verdict(theirs > 0 and ratio <= target)}",
    )


def report(sizes: Sizes, figures: Figures, versions: dict[str, str]) -> None:
    python = sys.version.split()[0]
    files = sizes.folders * sizes.files_per_folder
    print(
        f"filedock listing benchmark — {os.cpu_count()} cores, Python {python}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(" ; ".join(f"{name}: {text}" for name, text in versions.items()) or "no anchors")
    print(
        f"medians of {sizes.rounds} round(s), filedock and each anchor alternately; "
        f"{files:,} files in {sizes.folders:,} folders; one folder of "
        f"{sizes.files_per_folder} asked {sizes.folder_requests:,} times over one connection"
    )
    print()
    rows: list[tuple[str, ...]] = [("measurement", "filedock", "anchor", "ratio", "target")]
    rsync_wall, rsync_cpu = median(figures, "rsync_wall"), median(figures, "rsync_cpu")
    for kind, suffix in (("cold", ""), ("warm", "_warm")):
        wall, cpu = (
            median(figures, f"filedock_wall{suffix}"),
            median(figures, f"filedock_cpu{suffix}"),
        )
        assert wall is not None
        assert cpu is not None
        before = median(figures, f"filedock_rss_before{suffix}") or 0
        after = median(figures, f"filedock_rss_after{suffix}") or 0
        grown = max(after - before, 0)
        rows.append(
            _ratio_row(
                f"list --json vs rsync -r --list-only, {kind}: wall",
                wall,
                rsync_wall,
                WALL_TARGET,
                "{:.3f} s",
            )
        )
        rows.append(
            _ratio_row(
                "  server CPU (rsync: the daemon's child)",
                cpu,
                rsync_cpu,
                CPU_TARGET,
                "{:.3f} s",
            )
        )
        rows.append(
            (
                "  server RSS before / after the listing",
                f"{before / KiB:.1f} / {after / KiB:.1f} MiB",
                "",
                f"+{grown / KiB:.1f} MiB",
                f"<= +{RSS_TARGET_KIB // KiB} MiB {verdict(grown <= RSS_TARGET_KIB)}",
            )
        )
    for kind, suffix, theirs in (("cold", "", "_cold"), ("warm", "_warm", "")):
        folder = median(figures, f"filedock_folder_seconds{suffix}")
        nginx = median(figures, f"nginx_folder_seconds{theirs}")
        assert folder is not None
        rows.append(
            _ratio_row(
                f"LIST of a 100-file folder vs nginx JSON autoindex, {kind}: per request",
                folder * 1e6,
                None if nginx is None else nginx * 1e6,
                FOLDER_TARGET,
                "{:.0f} µs",
            )
        )
        bare = median(figures, "bare_scan_seconds")
        warm = median(figures, "filedock_folder_seconds_warm")
        if kind == "cold" and bare is not None and warm is not None:
            rows.append(
                _ratio_row(
                    "  floor: the warm request + a bare scan (read, lstat, records)",
                    (warm + bare) * 1e6,
                    None if nginx is None else nginx * 1e6,
                    FOLDER_TARGET,
                    "{:.0f} µs",
                )
            )
    mine_cpu = median(figures, "filedock_folder_cpu_warm") or 0.0
    their_cpu = median(figures, "nginx_folder_cpu")
    rows.append(
        (
            "  server CPU per request, warm",
            f"{mine_cpu * 1e6:.0f} µs",
            "not run" if their_cpu is None else f"{their_cpu * 1e6:.0f} µs",
            "",
            "",
        )
    )
    anchors.print_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (CI smoke)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, 1 with --quick)")
    parser.add_argument("--json", type=Path, help="also write every round's figures here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = Sizes(sizes.folders, sizes.files_per_folder, args.rounds, sizes.folder_requests)
    figures, versions = run(sizes)
    report(sizes, figures, versions)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
