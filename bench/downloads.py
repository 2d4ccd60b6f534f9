#!/usr/bin/env python3
"""Downloads that survive: resume after a kill, and the up-to-date check of a mirror.

Run from a clone::

    python3 bench/downloads.py            # 1 GiB resume, 10,000-file mirror, 3 rounds
    python3 bench/downloads.py --quick    # CI smoke: 64 MiB, 500 files, 1 round
    python3 bench/downloads.py --json results.json
    python3 bench/downloads.py --no-rsync  # without the rsync anchor (nothing installed)

Resume: a client downloading the file is killed with SIGKILL at half of it,
and a new client resumes it. The second run's body bytes are what the server
process wrote to its sockets (``wchar`` in ``/proc/PID/io``, which counts
``sendfile``), so the figure does not rest on the client's word; its time is
compared with a full download of the same file in the same round.

Mirror: a tree of small files is mirrored into an empty folder, then again
when everything is already there. Beside it, an rsync daemon started by the
bench serves the same tree to ``rsync -r`` and ``rsync -rt`` (the first
copies no times, so its re-run compares every file's content; the second is
rsync's own up-to-date check by size and time). rsync is installed with
apt-get when it is missing and the bench runs as root; without it those rows
say so.

Every figure is a median over the rounds; the server and the daemon are
started on free ports on 127.0.0.1 and stopped at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = Path(__file__).resolve().parent
for entry in (str(ROOT), str(BENCH)):
    if entry not in sys.path:
        sys.path.insert(0, entry)

import anchors  # noqa: E402 - bench/anchors.py beside this file
from anchors import RSYNC_MODULE  # noqa: E402
from files import _STARTING, HOST, MiB, Proc, make_file, prime_memory  # noqa: E402

BIG = "big.bin"
TREE = "tree"
# Bytes written and deleted before each timed run, so memory is warm alike for all.
PRIME = 256 * MiB


def primed_for(size: int) -> int:
    """What to prime before a timed download of ``size`` bytes: PRIME and ``size`` more.

    A virtual machine with free page reporting (virtio_balloon: "Free page
    reporting enabled") hands freed memory back to its host, and the page
    cache's first write into such a page costs a fault in the host: a
    resume's 512 MiB of write() took 0.73-0.81 s of CPU, the same writes
    into pages just freed 0.115 s. Freed pages are reported only after 2 s,
    so a download that follows the priming at once writes into memory the
    guest still has, as on a machine of its own.
    """
    return PRIME + size


# Targets, from the downloads work: the resumed run moves at most this share
# of the file and takes at most this share of a full download's time; the
# up-to-date mirror takes at most this long and moves no body byte.
RESUME_BYTES_TARGET = 0.55
RESUME_TIME_TARGET = 0.65
MIRROR_SECONDS_TARGET = 2.0


@dataclass(frozen=True)
class Sizes:
    big: int
    files: int
    folders: int
    file_size: int
    rounds: int


FULL = Sizes(big=1024 * MiB, files=10_000, folders=100, file_size=4096, rounds=3)
QUICK = Sizes(big=64 * MiB, files=500, folders=10, file_size=4096, rounds=1)


# -- roles run in client processes -------------------------------------------------------


def role_fetch(port: int, path: str, dest: Path, kill_at: float | None) -> None:
    """Download ``path`` into ``dest``; with ``kill_at``, SIGKILL this process at that share."""
    from filedock import Client

    def progress(report: Any) -> None:
        if kill_at is not None and report.done >= kill_at * report.total:
            os.kill(os.getpid(), 9)

    started, cpu = time.perf_counter(), _cpu_seconds()
    with Client(HOST, port, timeout=120) as client:
        result = client.download(path, dest, progress=progress)
    seconds = time.perf_counter() - started
    outcome = {"seconds": seconds, "cpu": _cpu_seconds() - cpu, "outcome": str(result.outcome)}
    print(json.dumps(outcome | {"resumed_from": result.resumed_from}), flush=True)


def _cpu_seconds() -> float:
    """This process's CPU time so far, user + system, all its threads."""
    times = os.times()
    return times.user + times.system


def role_mirror(port: int, dest: Path) -> None:
    from filedock import Client

    started = time.perf_counter()
    with Client(HOST, port, timeout=120) as client:
        summary = client.mirror(TREE, dest)
    seconds = time.perf_counter() - started
    counts = {
        name: getattr(summary, name)
        for name in ("fetched", "skipped", "replaced", "deleted", "failed", "bytes")
    }
    print(json.dumps({"seconds": seconds} | counts), flush=True)


# -- measuring from outside -------------------------------------------------------------


def written_bytes(pid: int) -> int:
    """Bytes the process wrote so far, sockets and ``sendfile`` included."""
    for line in Path(f"/proc/{pid}/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    raise RuntimeError("no wchar in /proc/PID/io")


def client(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, str(Path(__file__).resolve()), *argv]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)


def client_json(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = client(argv, env)
    if done.returncode != 0:
        raise RuntimeError(f"client {argv[:2]} failed ({done.returncode}): {done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def start_filedock(repo: Path, state: Path) -> tuple[Proc, int]:
    argv = [sys.executable, str(ROOT / "Server.py"), "--port", "0", "--repo", str(repo)]
    argv += ["--state-dir", str(state), "--max-clients", "8"]
    server = Proc(argv, stdout=subprocess.DEVNULL)
    return server, int(server.wait_stderr(_STARTING).group(2))


# -- rsync ----------------------------------------------------------------------------------


def rsync_copy(rsync: str, port: int, options: str, dest: Path) -> float:
    url = f"rsync://{HOST}:{port}/{RSYNC_MODULE}/{TREE}/"
    started = time.perf_counter()
    subprocess.run([rsync, options, url, f"{dest}/"], check=True, capture_output=True)
    return time.perf_counter() - started


# -- the run ----------------------------------------------------------------------------------


def make_tree(repo: Path, sizes: Sizes) -> None:
    payload = os.urandom(sizes.file_size - 8)
    for index in range(sizes.files):
        folder = repo / TREE / f"d{index % sizes.folders:03d}"
        if index < sizes.folders:
            folder.mkdir(parents=True)
        (folder / f"f{index:05d}.dat").write_bytes(payload + index.to_bytes(8))


Figures = dict[str, list[float]]


def note(figures: Figures, name: str, value: float) -> None:
    figures.setdefault(name, []).append(value)


def measure_resume(
    figures: Figures, server: Proc, port: int, work: Path, env: dict[str, str]
) -> None:
    """A full download, one killed at half and resumed, and a full one again; the
    server knows the digest."""
    pid, base = server.popen.pid, ["--role", "fetch", "--port", str(port)]
    full_dest, cut_dest = work / "full", work / "cut"
    prime = primed_for((work / "repo" / BIG).stat().st_size)
    # Each timed run starts with no dirty pages and warm memory (see files.fresh_outputs).
    prime_memory(work, prime)
    before = written_bytes(pid)
    full = client_json([*base, "--dest", str(full_dest)], env)
    note(figures, "full_seconds", full["seconds"])
    note(figures, "full_cpu", full["cpu"])
    note(figures, "full_bytes", written_bytes(pid) - before)
    killed = client([*base, "--dest", str(cut_dest), "--kill-at", "0.5"], env)
    if killed.returncode != -9:
        raise RuntimeError(f"the client was not killed ({killed.returncode}): {killed.stderr}")
    prime_memory(work, prime)
    before = written_bytes(pid)
    resumed = client_json([*base, "--dest", str(cut_dest)], env)
    if resumed["outcome"] != "resumed":
        raise RuntimeError(f"the second run did not resume: {resumed}")
    note(figures, "resume_seconds", resumed["seconds"])
    note(figures, "resume_cpu", resumed["cpu"])
    note(figures, "resume_bytes", written_bytes(pid) - before)
    if (cut_dest / BIG).read_bytes() != (full_dest / BIG).read_bytes():
        raise RuntimeError("the resumed file differs from the full download")
    shutil.rmtree(full_dest)
    shutil.rmtree(cut_dest)
    # A second full download after the resume: both sides of it, so drift in the
    # round (page cache, write-back) weighs on the full figure as on the resumed one.
    prime_memory(work, prime)
    again = client_json([*base, "--dest", str(full_dest)], env)
    note(figures, "full_seconds", again["seconds"])
    note(figures, "full_cpu", again["cpu"])
    shutil.rmtree(full_dest)


def measure_mirror(
    figures: Figures, server: Proc, port: int, work: Path, env: dict[str, str], files: int
) -> None:
    """A mirror into an empty folder, then again with everything already there."""
    pid, base = server.popen.pid, ["--role", "mirror", "--port", str(port)]
    dest = work / "mirror"
    prime_memory(work, PRIME)
    first = client_json([*base, "--dest", str(dest)], env)
    note(figures, "mirror_first_seconds", first["seconds"])
    before = written_bytes(pid)
    again = client_json([*base, "--dest", str(dest)], env)
    note(figures, "mirror_again_seconds", again["seconds"])
    note(figures, "mirror_again_body_bytes", again["bytes"])
    note(figures, "mirror_again_server_bytes", written_bytes(pid) - before)
    if again["skipped"] != files or again["fetched"] or again["failed"]:
        raise RuntimeError(f"the re-run was not up to date: {again}")
    shutil.rmtree(dest)


def measure_rsync(figures: Figures, rsync: str, port: int, work: Path) -> None:
    for options in ("-r", "-rt"):
        dest = work / f"rsync{options}"
        dest.mkdir()
        prime_memory(work, PRIME)
        note(figures, f"rsync{options}_first_seconds", rsync_copy(rsync, port, options, dest))
        note(figures, f"rsync{options}_again_seconds", rsync_copy(rsync, port, options, dest))
        shutil.rmtree(dest)


def run(sizes: Sizes, *, with_rsync: bool = True) -> Figures:
    figures: Figures = {}
    with tempfile.TemporaryDirectory(prefix="filedock-bench-") as tmp:
        work = Path(tmp)
        repo = work / "repo"
        repo.mkdir()
        make_file(repo / BIG, sizes.big)
        make_tree(repo, sizes)
        time.sleep(2.1)  # a digest is cached only for a file unchanged for 2 s (git's racy rule)
        server, port = start_filedock(repo, work / "state")
        rsync = anchors.find_or_install("rsync", "rsync") if with_rsync else None
        daemon = None
        try:
            if rsync:
                daemon, rsync_port = anchors.start_rsync_daemon(repo, work / "rsyncd")
            # One untimed download first warms the page cache and the server's digest.
            warm = work / "warm-up"
            client_json(
                ["--role", "fetch", "--port", str(port), "--dest", str(warm)], dict(os.environ)
            )
            shutil.rmtree(warm)
            for number in range(sizes.rounds):
                print(f"round {number + 1}/{sizes.rounds}", file=sys.stderr, flush=True)
                cache = work / f"client-cache{number}"  # each round starts with no local digests
                env = dict(os.environ, FILEDOCK_CACHE_DIR=str(cache))
                measure_resume(figures, server, port, work, env)
                measure_mirror(figures, server, port, work, env, sizes.files)
                if rsync and daemon:
                    measure_rsync(figures, rsync, rsync_port, work)
        finally:
            server.stop()
            if daemon is not None:
                anchors.stop(daemon)
    return figures


def median(figures: Figures, name: str) -> float:
    return statistics.median(figures[name])


def verdict(ok: bool) -> str:
    return "met" if ok else "NOT MET"


def report(sizes: Sizes, figures: Figures) -> None:
    full, resume = median(figures, "full_seconds"), median(figures, "resume_seconds")
    byte_share = median(figures, "resume_bytes") / sizes.big
    time_share = resume / full
    again, body = (
        median(figures, "mirror_again_seconds"),
        median(figures, "mirror_again_body_bytes"),
    )
    mirror_ok = again <= MIRROR_SECONDS_TARGET and body == 0
    python = sys.version.split()[0]
    print(f"filedock downloads benchmark — {os.cpu_count()} cores, Python {python}")
    print(f"medians of {sizes.rounds} round(s); {sizes.big // MiB} MiB file, {sizes.files} files")
    print()
    rows = [
        ("measurement", "figure", "ratio", "target"),
        ("full download (digest known)", f"{full:.3f} s", "", ""),
        (
            "resumed after SIGKILL at 50%: time",
            f"{resume:.3f} s",
            f"{time_share:.2f} of full",
            f"<= {RESUME_TIME_TARGET} {verdict(time_share <= RESUME_TIME_TARGET)}",
        ),
        (
            "client CPU (user + sys): full / resumed",
            f"{median(figures, 'full_cpu'):.3f} s / {median(figures, 'resume_cpu'):.3f} s",
            f"{median(figures, 'resume_cpu') / median(figures, 'full_cpu'):.2f}",
            "",
        ),
        (
            "resumed after SIGKILL at 50%: server sent",
            f"{median(figures, 'resume_bytes') / MiB:.1f} MiB",
            f"{byte_share:.2f} of the file",
            f"<= {RESUME_BYTES_TARGET} {verdict(byte_share <= RESUME_BYTES_TARGET)}",
        ),
        ("mirror, first fetch", f"{median(figures, 'mirror_first_seconds'):.3f} s", "", ""),
        (
            "mirror, all up to date",
            f"{again:.3f} s",
            f"body bytes {body:.0f}",
            f"<= {MIRROR_SECONDS_TARGET:g} s, 0 bytes {verdict(mirror_ok)}",
        ),
    ]
    for options in ("-r", "-rt"):
        if f"rsync{options}_first_seconds" not in figures:
            rows.append((f"rsync {options} (daemon)", "not run (no rsync, or --no-rsync)", "", ""))
            continue
        rerun = median(figures, f"rsync{options}_again_seconds")
        first = median(figures, f"rsync{options}_first_seconds")
        rows.append((f"rsync {options} (daemon), first fetch", f"{first:.3f} s", "", ""))
        ratio = f"filedock {again / rerun:.2f}x its time"
        rows.append((f"rsync {options} (daemon), re-run", f"{rerun:.3f} s", ratio, ""))
    anchors.print_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (CI smoke)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, 1 with --quick)")
    parser.add_argument("--json", type=Path, help="also write every round's figures here")
    parser.add_argument("--no-rsync", action="store_true", help="leave out the rsync rows")
    parser.add_argument("--role", choices=["fetch", "mirror"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--kill-at", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "fetch":
        role_fetch(args.port, BIG, args.dest, args.kill_at)
        return 0
    if args.role == "mirror":
        role_mirror(args.port, args.dest)
        return 0
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = Sizes(sizes.big, sizes.files, sizes.folders, sizes.file_size, args.rounds)
    figures = run(sizes, with_rsync=not args.no_rsync)
    report(sizes, figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
