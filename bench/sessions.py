#!/usr/bin/env python3
"""Sessions: filedock's server CPU per short session and memory per idle client, beside redis.

    python3 bench/sessions.py            # 5 rounds (about 2–4 minutes)
    python3 bench/sessions.py --quick    # smoke test: small counts, one round

A session is what a script's one-shot command costs the server: connect,
``NAME``, ``HELLO`` → ``WELCOME``, one ``PING``, ``EXIT`` → ``BYE``, close (and
the two log lines it writes, to a temporary file). redis-server does the
same in its protocol: connect, ``PING``, ``QUIT``, close. Sessions run one
after another from bench/load.py; the figure is the server process's CPU
time (user + system, every thread, from /proc) over the count. Beside them,
the asyncio floors of bench/floor_server.py (streams, batch): what any asyncio
server pays for the same conversation.

Idle memory: a fresh server, then ``--idle`` clients connected and welcomed
that stay silent; the figure is the growth of the server's RSS over the count.

Every server runs on the standard asyncio loop and on uvloop. uvloop is
filedock's ``[fast]`` extra: when the Python running this has none, the bench
makes a temporary virtual environment, installs uvloop into it with pip and
runs itself there (with no network, the uvloop rows are skipped with a note).
redis-server comes from Debian's package (bench/anchors.py installs it when
running as root, or the redis rows are skipped). Rounds alternate the servers;
the table shows medians.
"""

from __future__ import annotations

import argparse
import atexit
import importlib.util
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import venv
from pathlib import Path

import anchors  # noqa: E402 - bench/anchors.py beside this file
import run  # noqa: E402 - bench/run.py: its servers and its load driver

# Targets (from the performance issue): × redis-server's CPU per session, and memory.
TARGET_VS_REDIS = {"asyncio": 3.0, "uvloop": 2.0}
TARGET_IDLE_KIB = 3.0

FILEDOCK_SESSION = [
    ["", 1, "NAME"],
    ["HELLO bench\n", 1, "WELCOME"],
    ["PING\n", 1, "PONG"],
    ["EXIT\n", 1, "BYE"],
]
REDIS_SESSION = [["PING\r\n", 1, "+PONG"], ["QUIT\r\n", 1, "+OK"]]
FLOORS = ("streams", "batch")
LOOPS = ("asyncio", "uvloop")
_REEXEC = "FILEDOCK_BENCH_VENV"  # set in the temporary environment's run


def with_uvloop() -> None:
    """Run this bench again under a Python that has uvloop, if this one has none."""
    made = os.environ.get(_REEXEC)
    if made:  # (this is that run: the environment goes when it ends)
        atexit.register(shutil.rmtree, made, ignore_errors=True)
        return
    if importlib.util.find_spec("uvloop") is not None:
        return
    folder = Path(tempfile.mkdtemp(prefix="filedock-bench-venv-"))
    print(f"uvloop is not installed: installing it into {folder}", file=sys.stderr, flush=True)
    venv.create(folder, with_pip=True)
    python = folder / "bin" / "python"
    pip = [str(python), "-m", "pip", "install", "-q", "uvloop>=0.19"]
    if subprocess.run(pip, check=False).returncode != 0:
        print("could not install uvloop: its rows are skipped", file=sys.stderr)
        shutil.rmtree(folder, ignore_errors=True)
        return
    os.environ[_REEXEC] = str(folder)
    os.execv(str(python), [str(python), *sys.argv])


def session_cpu(server: run.Running, steps: list[list[object]], count: int) -> dict[str, float]:
    """Server CPU (µs) per session over ``count`` sessions one after another, and their rate."""
    spec = {"mode": "sessions", "total": count, "wave": 1, "session": steps}
    ready, done = run.drive(server, spec)
    cpu = done["cpu"] - ready["cpu"]
    return {"cpu_us": cpu / count * 1e6, "rate": count / done["seconds"]}


def idle_kib(server: run.Running, greeting: list[list[object]], count: int) -> float:
    """RSS growth (KiB) per client once ``count`` clients are connected, greeted and silent."""
    spec = {"mode": "scale", "conns": count, "greeting": greeting, "request": "PING\n"}
    spec |= {"queries": [], "repeat": 1}
    ready, greeted, _, _ = run.drive(server, spec)
    return (greeted["rss_kib"] - ready["rss_kib"]) / count


def measure(args: argparse.Namespace, loops: list[str], redis: bool) -> dict[tuple, list]:
    """Every (measurement, server, loop) → its figure per round."""
    results: dict[tuple, list] = {}
    kinds = [("filedock", loop) for loop in loops] + [(f, loop) for loop in loops for f in FLOORS]
    if redis:
        kinds.append(("redis", "-"))
    with run.scratch_repo() as repo, tempfile.TemporaryDirectory(prefix="filedock-bench-") as tmp:
        work = Path(tmp)

        def start(kind: str, loop: str, clients: int) -> run.Running:
            if kind == "filedock":
                return run.start_filedock(loop, clients, repo, args.filedock_root)
            if kind == "redis":
                return run.start_redis(clients, work / "redis")
            return run.start_floor(kind, loop)

        for index in range(args.rounds):
            shift = index % len(kinds)
            for kind, loop in kinds[shift:] + kinds[:shift]:
                print(f"round {index + 1}/{args.rounds}: {kind}/{loop}", file=sys.stderr)
                steps = REDIS_SESSION if kind == "redis" else FILEDOCK_SESSION
                server = start(kind, loop, 100)
                try:
                    results.setdefault(("session", kind, loop), []).append(
                        session_cpu(server, steps, args.sessions)
                    )
                finally:
                    server.stop()
                if kind in ("filedock", "redis"):
                    server = start(kind, loop, args.idle + 16)  # fresh: its growth is the clients'
                    greeting = [] if kind == "redis" else run.FILEDOCK_GREETING
                    try:
                        results.setdefault(("idle", kind, loop), []).append(
                            {"kib": idle_kib(server, greeting, args.idle)}
                        )
                    finally:
                        server.stop()
    return results


def median(results: dict[tuple, list], key: tuple, metric: str) -> float | None:
    rounds = results.get(key)
    return None if not rounds else statistics.median(r[metric] for r in rounds)


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 or unit == "/s" else f"{value:.1f}"
    return f"{text} {unit}".rstrip()


def table(results: dict[tuple, list], loops: list[str]) -> list[tuple[str, ...]]:
    rows = []
    redis = median(results, ("session", "redis", "-"), "cpu_us")
    for loop in loops:
        ours = median(results, ("session", "filedock", loop), "cpu_us")
        floors = [median(results, ("session", f, loop), "cpu_us") for f in FLOORS]
        ratio = None if ours is None or not redis else ours / redis
        target = TARGET_VS_REDIS[loop]
        verdict = "—" if ratio is None else "met" if ratio <= target else "NOT met"
        rows.append(
            ("server CPU per session", loop, fmt(ours, "µs"), fmt(redis, "µs"))
            + tuple(fmt(f, "µs") for f in floors)
            + ("—" if ratio is None else f"{ratio:.2f}", f"<= {target:g}x redis", verdict)
        )
        rate = median(results, ("session", "filedock", loop), "rate")
        redis_rate = median(results, ("session", "redis", "-"), "rate")
        floor_rates = [median(results, ("session", f, loop), "rate") for f in FLOORS]
        rows.append(
            ("  sessions/s (wall clock)", loop, fmt(rate, "/s"), fmt(redis_rate, "/s"))
            + tuple(fmt(f, "/s") for f in floor_rates)
            + ("", "", "")
        )
    for loop in loops:
        ours = median(results, ("idle", "filedock", loop), "kib")
        redis_kib = median(results, ("idle", "redis", "-"), "kib")
        verdict = "—" if ours is None else "met" if ours < TARGET_IDLE_KIB else "NOT met"
        rows.append(
            ("server RSS per idle client", loop, fmt(ours, "KiB"), fmt(redis_kib, "KiB"), "", "")
            + ("", f"< {TARGET_IDLE_KIB:g} KiB", verdict)
        )
    return rows


HEAD = ("measurement", "loop", "filedock", "redis", "streams", "batch", "fd/redis")
HEAD += ("target", "verdict")


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in [HEAD, *rows]) for i in range(len(HEAD))]
    aligns = "<<>>>>><<"
    for row in [HEAD, None, *rows]:
        if row is None:
            print("-" * (sum(widths) + 2 * (len(widths) - 1)))
            continue
        print("  ".join(f"{c:{a}{w}}" for c, a, w in zip(row, aligns, widths, strict=True)))


def machine(redis: str | None) -> str:
    parts = [f"{os.cpu_count()} cores", f"Python {platform.python_version()}"]
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        parts.append(f"uvloop {uvloop.__version__}")
    if redis:
        version = subprocess.run([redis, "--version"], capture_output=True, text=True).stdout
        parts.append(version.split(" v=")[1].split()[0] if " v=" in version else "redis ?")
        parts[-1] = f"redis {parts[-1]}"
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    return ", ".join(parts) + f"; load average {load}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small counts, one round (smoke)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, or 1 with --quick)")
    parser.add_argument("--sessions", type=int, help="sessions a server a round (default 5000)")
    parser.add_argument("--idle", type=int, help="idle clients a round (default 1000)")
    parser.add_argument(
        "--filedock-root", type=Path, default=run.ROOT, metavar="DIR",
        help="run the filedock server of this checkout (default: this one)",
    )  # fmt: skip
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 5)
    args.sessions = args.sessions or (300 if args.quick else 5000)
    args.idle = args.idle or (100 if args.quick else 1000)
    if not args.quick:
        with_uvloop()
    notes = []
    loops = [loop for loop in LOOPS if loop == "asyncio" or importlib.util.find_spec("uvloop")]
    if "uvloop" not in loops:
        notes.append(f"uvloop rows skipped: uvloop is not installed for {sys.executable}")
    redis = anchors.find_or_install("redis-server", "redis-server")
    if redis is None:
        notes.append("redis rows skipped: redis-server is not installed (apt install redis-server)")
    results = measure(args, loops, redis is not None)
    print()
    print(f"filedock sessions benchmark — {machine(redis)}")
    print(
        f"{args.rounds} round(s), medians; {args.sessions:,} sessions one after another a "
        f"server a round (filedock: NAME, HELLO, PING, EXIT; redis: PING, QUIT); "
        f"{args.idle:,} idle clients for memory"
    )
    for note in notes:
        print(f"note: {note}")
    print()
    print_table(table(results, loops))
    return 0


if __name__ == "__main__":
    sys.exit(main())
