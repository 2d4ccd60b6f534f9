#!/usr/bin/env python3
"""Many small and medium files into an empty folder: filedock beside rsync, wget and curl.

Run from a clone (Linux)::

    python3 bench/many_files.py            # 10,000 x 4 KiB and 1,000 x 100 KiB, 3 rounds
    python3 bench/many_files.py --quick    # CI smoke: 500 x 4 KiB and 50 x 100 KiB, 1 round
    python3 bench/many_files.py --rounds 5 --json results.json

Each tree is fetched whole into an empty folder by:

- filedock: ``Client.py get -r TREE -o DEST`` (the command-line client, one
  process, against a server started here): every file's SHA-256 checked by
  the client against the server's before it gets its final name;
- ``rsync -r rsync://HOST:PORT/repo/TREE/ DEST/`` from an rsync daemon:
  rsync checks each file's whole-file checksum after the transfer;
- ``wget -r -np`` from nginx with ``autoindex on`` (wget walks the folder
  pages): wget checks each body's length against ``Content-Length`` only;
- ``curl --parallel`` from the same nginx, given a list of every file's URL
  and output name: curl checks each body's length only.

The bench itself then checks every tool's copy outside the timed part (each
file's bytes against the tree's SHA-256s). Rounds alternate the tools (A B C
D, A B C D, …) and the table shows medians: files per second (wall time of
the whole command, the process started included), and the server's CPU per
file (user + system from /proc, of the server process and everything it
forked: rsync's daemon forks a process per connection, nginx's worker is
nginx's child). Before each timed fetch dirty pages are flushed and memory
primed alike, and every server has served the tree once already (the page
cache and filedock's digest cache warm). Each fetch writes into a folder of
its own, removed only at the end of the run (see ``fetch_once``).

Beside the tools, ``local copy`` is one Python process copying the tree on
this disk (each file read, written under a hidden name, renamed), with no
network: the pace of the disk for such a receiver in that round, printed
under the rate the target needs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for entry in (str(ROOT), str(BENCH)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import anchors  # noqa: E402 - bench/anchors.py beside this file
from downloads import start_filedock  # noqa: E402
from files import prime_memory  # noqa: E402

KiB = 1024
MiB = 1024 * KiB
PRIME = 64 * MiB

# Targets (from the performance work): files/s against the best anchor, and
# server CPU per small file against rsync's daemon.
SMALL_RATE_TARGET = 1.5
SMALL_CPU_TARGET = 5.0
MEDIUM_RATE_TARGET = 1.2

NGINX_SERVER = """\
    server {
        listen 127.0.0.1:{port};
        root {root};
        autoindex on;
        sendfile on;
        tcp_nopush on;
    }
"""


@dataclass(frozen=True)
class Tree:
    name: str
    files: int
    folders: int
    size: int

    @property
    def label(self) -> str:
        return f"{self.files:,} x {self.size // KiB} KiB"


@dataclass(frozen=True)
class Sizes:
    trees: tuple[Tree, ...]
    rounds: int


FULL = Sizes((Tree("small", 10_000, 100, 4 * KiB), Tree("medium", 1_000, 10, 100 * KiB)), 3)
QUICK = Sizes((Tree("small", 500, 10, 4 * KiB), Tree("medium", 50, 5, 100 * KiB)), 1)

# figures[(tree, tool)] = {"rate": [...], "cpu_per_file": [...]}
Figures = dict[tuple[str, str], dict[str, list[float]]]


# -- the trees ------------------------------------------------------------------------------


def make_tree(repo: Path, tree: Tree) -> dict[str, str]:
    """``tree.files`` random files under ``repo/tree.name``; their SHA-256 by relative path."""
    digests: dict[str, str] = {}
    per_folder = -(-tree.files // tree.folders)
    for index in range(tree.files):
        relative = f"d{index // per_folder:03d}/f{index:05d}.bin"
        path = repo / tree.name / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        body = os.urandom(tree.size)
        path.write_bytes(body)
        digests[relative] = hashlib.sha256(body).hexdigest()
    return digests


def check_copy(dest: Path, digests: dict[str, str], tool: str) -> None:
    """Every file of the tree in ``dest`` with the right bytes, and nothing else."""
    found = {str(path.relative_to(dest)) for path in dest.rglob("*") if path.is_file()}
    if found != set(digests):
        missing, extra = set(digests) - found, found - set(digests)
        raise RuntimeError(
            f"{tool}: {len(missing)} files missing, {len(extra)} extra"
            f" (e.g. {sorted(missing)[:2]} {sorted(extra)[:2]})"
        )
    for relative, digest in digests.items():
        if hashlib.sha256((dest / relative).read_bytes()).hexdigest() != digest:
            raise RuntimeError(f"{tool}: {relative} has the wrong bytes")


# -- the tools ------------------------------------------------------------------------------


@dataclass
class Server:
    """A server to fetch from: the process whose CPU counts, and how to fetch a tree."""

    name: str
    pid: int | None  # None: no server (the local copy), no CPU to count
    fetch: Callable[[Tree, Path], list[str]]
    checks: str
    nested: bool = False  # the copy lands in DEST/TREE, not DEST


def filedock_argv(port: int) -> Callable[[Tree, Path], list[str]]:
    def argv(tree: Tree, dest: Path) -> list[str]:
        client = [sys.executable, str(ROOT / "Client.py"), "--host", anchors.HOST]
        return [*client, "--port", str(port), "-q", "get", "-r", tree.name, "-o", str(dest)]

    return argv


# The disk's own pace for a receiver in one Python process: each file of the
# tree read from the page cache, written under a hidden name and renamed into
# place, as every tool here does, with no network, no protocol and no check.
LOCAL_COPY = "local copy"
_LOCAL_COPY = """\
import os, sys
source, dest = sys.argv[1], sys.argv[2]
for folder, _, names in os.walk(source):
    target = os.path.join(dest, os.path.relpath(folder, source))
    os.makedirs(target, exist_ok=True)
    for name in names:
        with open(os.path.join(folder, name), "rb") as file:
            body = file.read()
        hidden = os.path.join(target, "." + name + ".part")
        fd = os.open(hidden, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        os.write(fd, body)
        os.close(fd)
        os.rename(hidden, os.path.join(target, name))
"""


def local_copy_argv(repo: Path) -> Callable[[Tree, Path], list[str]]:
    def argv(tree: Tree, dest: Path) -> list[str]:
        return [sys.executable, "-c", _LOCAL_COPY, str(repo / tree.name), str(dest)]

    return argv


def rsync_argv(rsync: str, port: int) -> Callable[[Tree, Path], list[str]]:
    def argv(tree: Tree, dest: Path) -> list[str]:
        url = f"rsync://{anchors.HOST}:{port}/{anchors.RSYNC_MODULE}/{tree.name}/"
        return [rsync, "-r", url, f"{dest}/"]

    return argv


def wget_argv(wget: str, port: int) -> Callable[[Tree, Path], list[str]]:
    def argv(tree: Tree, dest: Path) -> list[str]:
        url = f"http://{anchors.HOST}:{port}/{tree.name}/"
        # -nH --cut-dirs=1: DEST/d000/f00000.bin, as the others; the folder pages
        # are fetched, followed and then deleted (-R).
        options = ["-q", "-r", "-l", "inf", "-np", "-nH", "--cut-dirs=1", "-R", "index.html*"]
        return [wget, *options, "-P", str(dest), url]

    return argv


def curl_argv(curl: str, port: int, work: Path) -> Callable[[Tree, Path], list[str]]:
    def argv(tree: Tree, dest: Path) -> list[str]:
        names = sorted(
            str(path.relative_to(work / "repo" / tree.name))
            for path in (work / "repo" / tree.name).rglob("*.bin")
        )
        listing = work / f"curl-{tree.name}.txt"
        with listing.open("w") as out:
            for name in names:
                out.write(f'url = "http://{anchors.HOST}:{port}/{tree.name}/{quote(name)}"\n')
                out.write(f'output = "{dest / name}"\n')
        return [curl, "-sS", "--fail", "--parallel", "--create-dirs", "-K", str(listing)]

    return argv


def fetch_once(
    server: Server, tree: Tree, work: Path, digests: dict[str, str]
) -> tuple[float, float]:
    """Seconds of one fetch of ``tree`` into an empty folder, and the server's CPU.

    Each fetch gets a folder of its own, and the copies are removed only with
    the run's scratch folder: ext4 skips the inodes freed in the last minutes
    when it makes a file (``recently_deleted``), so a fetch made just after
    the previous one's 10,000 files were removed measured that scan (0.13 to
    0.19 ms a file, against 0.02 ms on a file system with nothing deleted).
    """
    dest = Path(tempfile.mkdtemp(prefix=f"out-{server.name}-", dir=work))
    prime_memory(work, PRIME)
    pid = server.pid
    cpu = 0.0 if pid is None else anchors.settled_cpu(pid, anchors.tree_cpu_seconds)
    started = time.perf_counter()
    done = subprocess.run(server.fetch(tree, dest), capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if pid is not None:
        cpu = anchors.settled_cpu(pid, anchors.tree_cpu_seconds) - cpu
    if done.returncode != 0:
        raise RuntimeError(f"{server.name} failed ({done.returncode}): {done.stderr[-1500:]}")
    check_copy(dest / tree.name if server.nested else dest, digests, server.name)
    return seconds, cpu


# -- the run --------------------------------------------------------------------------------


def run(sizes: Sizes, *, with_anchors: bool = True) -> tuple[Figures, list[str], list[str]]:
    figures: Figures = {}
    notes: list[str] = []
    names: list[str] = []
    with tempfile.TemporaryDirectory(prefix="filedock-many-") as scratch:
        work = Path(scratch)
        repo = work / "repo"
        digests = {tree.name: make_tree(repo, tree) for tree in sizes.trees}
        time.sleep(2.1)  # a digest is cached only for a file unchanged for 2 s (git's racy rule)
        started: list[Callable[[], None]] = []
        servers: list[Server] = []
        try:
            filedock, port = start_filedock(repo, work / "state")
            started.append(filedock.stop)
            checks = "SHA-256 of every file (client, before its final name)"
            servers.append(
                Server("filedock", filedock.popen.pid, filedock_argv(port), checks, nested=True)
            )
            if with_anchors:
                servers += start_anchors(work, repo, started, notes)
                checks = "none: one Python process copying the tree on this disk"
                servers.append(Server(LOCAL_COPY, None, local_copy_argv(repo), checks))
            names = [server.name for server in servers]
            for tree in sizes.trees:
                for server in servers:  # untimed: page cache and digest cache warm
                    fetch_once(server, tree, work, digests[tree.name])
            for number in range(sizes.rounds):
                print(f"round {number + 1}/{sizes.rounds}", file=sys.stderr, flush=True)
                for tree in sizes.trees:
                    order = servers[number % len(servers) :] + servers[: number % len(servers)]
                    for server in order:
                        seconds, cpu = fetch_once(server, tree, work, digests[tree.name])
                        row = figures.setdefault((tree.name, server.name), {})
                        row.setdefault("rate", []).append(tree.files / seconds)
                        if server.pid is not None:
                            row.setdefault("cpu_per_file", []).append(cpu / tree.files)
        finally:
            for stop in reversed(started):
                stop()
        notes += [f"{server.name} checks: {server.checks}" for server in servers]
    return figures, names, notes


def start_anchors(
    work: Path, repo: Path, started: list[Callable[[], None]], notes: list[str]
) -> list[Server]:
    servers: list[Server] = []
    rsync = anchors.find_or_install("rsync", "rsync")
    if rsync is None:
        notes.append("rsync rows skipped: rsync is not installed")
    else:
        daemon, port = anchors.start_rsync_daemon(repo, work / "rsyncd")
        started.append(lambda: anchors.stop(daemon))
        checks = "whole-file checksum of every file (rsync's own)"
        servers.append(Server("rsync -r", daemon.pid, rsync_argv(rsync, port), checks))
    nginx = anchors.find_or_install("nginx", "nginx")
    if nginx is None:
        notes.append("nginx rows skipped: nginx is not installed")
        return servers
    prefix = work / "nginx"
    web, port = anchors.start_nginx(prefix, NGINX_SERVER.replace("{root}", str(repo)))
    started.append(lambda: anchors.stop(web))
    for program, argv in (
        ("wget", lambda path: wget_argv(path, port)),
        ("curl", lambda path: curl_argv(path, port, work)),
    ):
        found = anchors.find_or_install(program, program)
        if found is None:
            notes.append(f"{program} rows skipped: {program} is not installed")
            continue
        name = "nginx + wget -r" if program == "wget" else "nginx + curl --parallel"
        servers.append(Server(name, web.pid, argv(found), "the length of every body only"))
    return servers


# -- the table ------------------------------------------------------------------------------


def median(figures: Figures, key: tuple[str, str], what: str) -> float | None:
    values = figures.get(key, {}).get(what)
    return statistics.median(values) if values else None


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT met"


def report(sizes: Sizes, figures: Figures, names: list[str], notes: list[str]) -> None:
    rows: list[tuple[str, ...]] = [
        ("measurement", "filedock", "anchor", "anchor's", "ratio", "target", "")
    ]
    anchor_names = [name for name in names if name not in ("filedock", LOCAL_COPY)]
    for tree in sizes.trees:
        ours = median(figures, (tree.name, "filedock"), "rate")
        rates = {n: median(figures, (tree.name, n), "rate") for n in anchor_names}
        best = max((r for r in rates.values() if r), default=None)
        target = SMALL_RATE_TARGET if tree.name == "small" else MEDIUM_RATE_TARGET
        for index, name in enumerate(anchor_names):
            rate = rates[name]
            ratio = "" if not rate or ours is None else f"{ours / rate:.2f}"
            rows.append(
                (
                    f"{tree.label}: files/s" if index == 0 else "",
                    f"{ours:,.0f} /s" if index == 0 and ours else "",
                    name,
                    f"{rate:,.0f} /s" if rate else "-",
                    ratio,
                    "",
                    "",
                )
            )
        if best and ours:
            rows.append(
                (
                    "",
                    "",
                    "best of them",
                    f"{best:,.0f} /s",
                    f"{ours / best:.2f}",
                    f">= {target}",
                    verdict(ours / best >= target),
                )
            )
        local = median(figures, (tree.name, LOCAL_COPY), "rate")
        if best and local:
            # What the target asks of the whole fetch, beside the disk's own pace.
            rows.append(("", "", "needed for the target", f"{target * best:,.0f} /s", "", "", ""))
            rows.append(("", "", "local copy, no network", f"{local:,.0f} /s", "", "", ""))
        if tree.name != "small":
            continue
        cpu = median(figures, (tree.name, "filedock"), "cpu_per_file")
        for index, name in enumerate(anchor_names):
            theirs = median(figures, (tree.name, name), "cpu_per_file")
            is_rsync = name.startswith("rsync")
            ratio = f"{cpu / theirs:.1f}" if cpu is not None and theirs else "-"
            rows.append(
                (
                    f"{tree.label}: server CPU a file" if index == 0 else "",
                    f"{cpu * 1e3:.3f} ms" if index == 0 and cpu is not None else "",
                    name,
                    "-" if theirs is None else f"{theirs * 1e3:.3f} ms",
                    ratio,
                    f"<= {SMALL_CPU_TARGET}x" if is_rsync else "",
                    verdict(cpu / theirs <= SMALL_CPU_TARGET)
                    if is_rsync and cpu is not None and theirs
                    else "",
                )
            )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    print(f"filedock many-files benchmark — {machine_line()}")
    loads = " / ".join(f"{value:.1f}" for value in os.getloadavg())
    print(f"medians of {sizes.rounds} round(s), tools alternated; load average at the end: {loads}")
    print()
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    print()
    for line in notes:
        print(f"note: {line}")


def machine_line() -> str:
    parts = [f"{os.cpu_count()} cores", f"Python {platform.python_version()}"]
    for program, flag, pattern in (
        ("rsync", "--version", r"version (\S+)"),
        ("nginx", "-v", r"nginx/(\S+)"),
        ("wget", "--version", r"Wget (\S+)"),
        ("curl", "--version", r"curl (\S+)"),
    ):
        found = anchors.find_or_install(program, program)
        if found is None:
            continue
        done = subprocess.run([found, flag], capture_output=True, text=True, check=False)
        match = re.search(pattern, done.stdout + done.stderr)
        parts.append(f"{program} {match.group(1) if match else '?'}")
    return ", ".join(parts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small trees, one round (CI smoke)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, or 1 with --quick)")
    parser.add_argument("--no-anchors", action="store_true", help="filedock alone")
    parser.add_argument("--json", metavar="PATH", help="also write the figures as JSON here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = Sizes(sizes.trees, args.rounds)
    figures, names, notes = run(sizes, with_anchors=not args.no_anchors)
    report(sizes, figures, names, notes)
    if args.json:
        flat = {f"{tree}|{tool}": values for (tree, tool), values in figures.items()}
        Path(args.json).write_text(json.dumps(flat, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
