#!/usr/bin/env python3
"""filedock's benchmark suite: server CPU per request beside anchors, in one table.

Run from a clone, nothing installed::

    python3 bench/run.py                  # full run (several minutes)
    python3 bench/run.py --quick          # CI smoke: small sizes, a few seconds
    python3 bench/run.py --only ping50,pipelined --contenders filedock,streams

On a 2-core machine a Python load generator saturates before the server does,
and wall-clock rates swing with where the kernel places processes. So the
headline figure is the server process's own CPU time (user + sys, from
/proc/PID/stat) divided by the requests it served under a fixed load; the
anchors are measured the same way, by the same load generator (bench/load.py),
in the same run. Wall-clock rates are shown too, as secondary figures.

Anchors, each started here on 127.0.0.1 and stopped after:

- ``streams``: a minimal asyncio streams server (readuntil, write, drain), the
  floor of what an asyncio server pays per request (bench/floor_server.py);
- ``batch``: a bare asyncio.Protocol answering each batch of lines with one
  write, filedock's design with nothing else in it (bench/floor_server.py);
- ``redis``: redis-server (skipped with a note when not installed), the C
  ceiling for a line-protocol server; for PING, redis-benchmark's own figures
  too;
- files: bench/files.py's anchors (best Python receiver, http.server + curl +
  openssl), run as a subprocess and folded into the table.

Every server runs on the standard asyncio loop and, when uvloop is importable,
on uvloop too. Each round runs every contender once, in an order rotated from
round to round; the table shows medians. See bench/README.md.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import anchors  # noqa: E402 - bench/anchors.py beside this file
from anchors import cpu_times, rss_kib, settled_cpu  # noqa: E402

HOST = "127.0.0.1"

# Targets (from the performance issue).
TARGET_RTT_VS_STREAMS = 1.2  # PING, 50 connections, not pipelined: × the streams floor's CPU
TARGET_PIPELINED_US = 1.5  # µs of server CPU per pipelined PING
TARGET_SESSION_US = 150.0  # µs of server CPU per session, set-up to tear-down
TARGET_RSS_KIB = 10.0  # KiB of server memory per connected client
TARGET_STATUS_MS = 100.0  # STATUS with 10,000 rows

_STARTING = re.compile(r"Starting server on \[?([^\]\s]+?)\]?:(\d+)")

# The protocol dialects: steps are [send, lines to read, prefix of the first].
FILEDOCK_GREETING = [["", 1, "NAME"], ["HELLO bench\n", 1, "WELCOME"]]
FILEDOCK_SESSION = [*FILEDOCK_GREETING, ["EXIT\n", 1, "BYE"]]
REDIS_SESSION = [["PING\r\n", 1, "+PONG"], ["QUIT\r\n", 1, "+OK"]]


# -- sizes ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sizes:
    ping1: int  # round trips on one connection
    ping50: int  # round trips over 50 connections
    pipelined: int  # PINGs over 10 connections, 100 in flight on each
    serial: int  # sessions one after another
    wave_total: int  # sessions in waves ...
    wave: int  # ... of this many at once
    scale: int  # clients connected and greeted at once
    rounds: int


FULL = Sizes(50_000, 200_000, 1_000_000, 2_000, 2_000, 200, 10_000, 5)
QUICK = Sizes(1_000, 2_000, 20_000, 100, 100, 50, 200, 1)


# -- processes ------------------------------------------------------------------------------


@dataclass
class Running:
    """A server started for a measurement."""

    proc: subprocess.Popen[bytes]
    port: int
    log: Any = None

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()


def _fail(proc: subprocess.Popen[bytes], log: Any, what: str) -> RuntimeError:
    proc.kill()
    proc.wait()
    tail = ""
    if log is not None:
        log.seek(0)
        tail = log.read().decode(errors="replace")[-2000:]
    return RuntimeError(f"{what}; log tail:\n{tail}")


def start_filedock(
    loop: str, max_clients: int, repo: Path, root: Path = ROOT, extra: tuple[str, ...] = ()
) -> Running:
    argv = [sys.executable, str(root / "Server.py"), "--port", "0", "--repo", str(repo)]
    argv += ["--max-clients", str(max_clients), "--loop", loop, *extra]
    log = tempfile.TemporaryFile()  # noqa: SIM115 - the server writes it until stop()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    # The load generator opens hundreds of connections at once from one address:
    # a pending pool that holds them all (an older checkout ignores these).
    env |= {"FILEDOCK_MAX_PENDING": "20000", "FILEDOCK_MAX_PENDING_PER_IP": "20000"}
    proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.DEVNULL, stderr=log, env=env)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        log.seek(0)
        match = _STARTING.search(log.read().decode(errors="replace"))
        if match:
            return Running(proc, int(match.group(2)), log)
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise _fail(proc, log, "filedock did not start")


def start_floor(kind: str, loop: str) -> Running:
    argv = [sys.executable, str(BENCH / "floor_server.py"), "--kind", kind, "--loop", loop]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    line = proc.stdout.readline().decode()
    if not line.startswith("PORT "):
        raise _fail(proc, None, f"floor server said {line!r}")
    return Running(proc, int(line.split()[1]))


def start_redis(max_clients: int, work: Path) -> Running:
    proc, port = anchors.start_redis(work, max_clients=max_clients)
    return Running(proc, port)


# -- contenders -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Contender:
    key: str  # filedock, streams, batch, redis
    loop: str  # asyncio, uvloop, or "-" for redis
    start: Callable[[int], Running]
    greeting: list[list[Any]] = field(default_factory=lambda: FILEDOCK_GREETING)
    request: str = "PING\n"
    session: list[list[Any]] = field(default_factory=lambda: FILEDOCK_SESSION)
    queries: list[list[str]] = field(default_factory=list)


def contenders(args: argparse.Namespace, repo: Path) -> tuple[list[Contender], list[str]]:
    loops = ["asyncio"]
    notes = []
    if importlib.util.find_spec("uvloop") is not None:
        loops.append("uvloop")
    else:
        notes.append(f"uvloop rows skipped: uvloop is not installed for {sys.executable}")
    found = []
    for loop in loops:
        found.append(
            Contender(
                "filedock",
                loop,
                lambda n, loop=loop: start_filedock(loop, n, repo, args.filedock_root),
                queries=[["status", "STATUS\n", "records"], ["who", "WHO\n", "line"]],
            )
        )
        for kind in ("streams", "batch"):
            found.append(
                Contender(kind, loop, lambda n, kind=kind, loop=loop: start_floor(kind, loop))
            )
    if anchors.find_or_install("redis-server", "redis-server"):
        found.append(
            Contender(
                "redis",
                "-",
                lambda n: start_redis(n, repo.parent / "redis"),
                greeting=[],
                request="PING\r\n",
                session=REDIS_SESSION,
                queries=[["status", "CLIENT LIST\r\n", "bulk"]],
            )
        )
    else:
        notes.append("redis rows skipped: redis-server is not installed (apt install redis-server)")
    wanted = set(args.contenders.split(",")) if args.contenders else None
    if wanted is not None:
        found = [c for c in found if c.key in wanted]
    return found, notes


# -- driving the load generator -------------------------------------------------------------


def drive(
    server: Running,
    spec: dict[str, Any],
    on_phase: Callable[[dict[str, Any]], None] = lambda _: None,
) -> list[dict[str, Any]]:
    """Run bench/load.py with ``spec``; each phase's report with the server's CPU and RSS
    (and whatever ``on_phase`` adds to it: other processes' CPU, say)."""
    spec = {"host": HOST, "port": server.port, **spec}
    argv = [sys.executable, str(BENCH / "load.py"), json.dumps(spec)]
    load = subprocess.Popen(
        argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert load.stdin is not None
    assert load.stdout is not None
    phases = []
    try:
        for line in load.stdout:
            report = json.loads(line)
            report["cpu"] = settled_cpu(server.pid)
            report["cpu_user"] = cpu_times(server.pid)[0]
            report["rss_kib"] = rss_kib(server.pid)
            on_phase(report)
            phases.append(report)
            load.stdin.write("go\n")
            load.stdin.flush()
        _, err = load.communicate(timeout=60)
    finally:
        if load.poll() is None:
            load.kill()
            load.wait()
    if load.returncode != 0:
        raise RuntimeError(f"load generator failed ({spec['mode']}): {err.strip()[-2000:]}")
    return phases


def redis_benchmark(server: Running, conns: int, total: int, depth: int) -> dict[str, float]:
    """redis-benchmark -t ping_inline: its own requests/s, and redis's CPU per request."""
    argv = ["redis-benchmark", "-h", HOST, "-p", str(server.port), "-t", "ping_inline", "--csv"]
    argv += ["-n", str(total), "-c", str(conns), "-P", str(depth)]
    before = settled_cpu(server.pid)
    out = subprocess.run(argv, check=True, capture_output=True, text=True, timeout=600).stdout
    cpu = settled_cpu(server.pid) - before
    rps = next(
        float(line.split(",")[1].strip('"'))
        for line in out.splitlines()
        if line.startswith('"PING_INLINE"')
    )
    return {"cpu_us": cpu / total * 1e6, "rate": rps}


# -- measurements ---------------------------------------------------------------------------

Results = dict[tuple[str, str, str], list[dict[str, float]]]  # (measure, key, loop) → rounds


def measure_requests(c: Contender, server: Running, conns: int, total: int, depth: int) -> dict:
    spec = {"mode": "requests", "conns": conns, "total": total, "depth": depth}
    spec |= {"greeting": c.greeting, "request": c.request}
    ready, done = drive(server, spec)
    cpu = done["cpu"] - ready["cpu"]
    return {
        "cpu_us": cpu / total * 1e6,
        "user_us": (done["cpu_user"] - ready["cpu_user"]) / total * 1e6,
        "rate": total / done["seconds"],
        "server_busy": cpu / done["seconds"],
        "load_busy": done["load_cpu"] / done["seconds"],
    }


def measure_sessions(c: Contender, server: Running, total: int, wave: int) -> dict:
    spec = {"mode": "sessions", "total": total, "wave": wave, "session": c.session}
    ready, done = drive(server, spec)
    cpu = done["cpu"] - ready["cpu"]
    return {
        "cpu_us": cpu / total * 1e6,
        "user_us": (done["cpu_user"] - ready["cpu_user"]) / total * 1e6,
        "rate": total / done["seconds"],
    }


def measure_scale(c: Contender, server: Running, conns: int) -> dict:
    spec = {"mode": "scale", "conns": conns, "greeting": c.greeting, "request": c.request}
    spec |= {"queries": c.queries, "repeat": 5}
    ready, greeted, pinged, queries = drive(server, spec)
    result = {
        "rss_kib": (greeted["rss_kib"] - ready["rss_kib"]) / conns,
        "greet_rate": conns / greeted["seconds"],
        "greet_cpu_us": (greeted["cpu"] - ready["cpu"]) / conns * 1e6,
        "answered": pinged["count"],
        "ping_ms": pinged["seconds"] * 1e3,
        "ping_cpu_us": (pinged["cpu"] - greeted["cpu"]) / conns * 1e6,
    }
    for name, seconds in queries["seconds"].items():
        result[f"{name}_ms"] = statistics.median(seconds) * 1e3
    return result


def run_round(
    round_index: int,
    sizes: Sizes,
    found: list[Contender],
    only: set[str],
    results: Results,
    quick: bool = False,
) -> None:
    shift = round_index % len(found)
    for c in found[shift:] + found[:shift]:
        label = c.key if c.loop == "-" else f"{c.key}/{c.loop}"
        print(f"round {round_index + 1}/{sizes.rounds}: {label}", file=sys.stderr, flush=True)

        def keep(measure: str, value: dict, c: Contender = c) -> None:
            results.setdefault((measure, c.key, c.loop), []).append(value)

        server = c.start(max(sizes.wave + 64, sizes.scale if quick else 0))
        try:
            if "ping1" in only:
                keep("ping1", measure_requests(c, server, 1, sizes.ping1, 1))
            if "ping50" in only:
                keep("ping50", measure_requests(c, server, 50, sizes.ping50, 1))
            if "pipelined" in only:
                keep("pipelined", measure_requests(c, server, 10, sizes.pipelined, 100))
            if "serial" in only:
                keep("serial", measure_sessions(c, server, sizes.serial, 1))
            if "wave" in only:
                keep("wave", measure_sessions(c, server, sizes.wave_total, sizes.wave))
            if c.key == "redis" and shutil.which("redis-benchmark"):
                if "ping1" in only:
                    keep("rb_ping1", redis_benchmark(server, 1, sizes.ping1, 1))
                if "ping50" in only:
                    keep("rb_ping50", redis_benchmark(server, 50, sizes.ping50, 1))
                if "pipelined" in only:
                    keep("rb_pipelined", redis_benchmark(server, 10, sizes.pipelined, 100))
            if quick and "scale" in only:
                keep("scale", measure_scale(c, server, sizes.scale))
        finally:
            server.stop()
        if "scale" in only and not quick:
            server = c.start(sizes.scale)  # a fresh process: its memory is all the clients'
            try:
                keep("scale", measure_scale(c, server, sizes.scale))
            finally:
                server.stop()


# -- files ----------------------------------------------------------------------------------


def run_files(args: argparse.Namespace, loops: list[str]) -> dict[str, Any]:
    """bench/files.py once per event loop; its JSON results by loop (or an error text)."""
    found: dict[str, Any] = {}
    for loop in loops:
        print(f"files: bench/files.py with FILEDOCK_LOOP={loop}", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory(prefix="filedock-run-") as tmp:
            out = Path(tmp) / "files.json"
            argv = [sys.executable, str(BENCH / "files.py"), "--json", str(out)]
            if args.quick:
                argv += ["--quick", "--big-mib", "8", "--small-mib", "2"]
            if args.files_rounds:
                argv += ["--rounds", str(args.files_rounds)]
            env = {**os.environ, "FILEDOCK_LOOP": loop}
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)
            if done.returncode != 0 or not out.exists():
                tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
                found[loop] = "bench/files.py failed: " + " | ".join(tail)
            else:
                found[loop] = json.loads(out.read_text())
    return found


# -- the table ------------------------------------------------------------------------------

ANCHORS = ("streams", "batch", "redis")
HEAD = ("measurement", "loop", "filedock", "streams", "batch", "redis", "fd/streams", "fd/redis")
HEAD += ("target", "verdict")


@dataclass(frozen=True)
class Line:
    measure: str
    metric: str
    label: str
    unit: str
    lower_is_better: bool = True
    target: str = ""
    # (filedock, streams floor) → met, or None when it cannot be told (no floor figure)
    check: Callable[[float, float | None], bool | None] | None = None


def _rtt_check(value: float, streams: float | None) -> bool | None:
    return None if streams is None else value <= TARGET_RTT_VS_STREAMS * streams


LINES = [
    Line("ping1", "cpu_us", "PING, 1 connection: server CPU per request", "µs"),
    Line("ping1", "rate", "  requests/s (wall clock)", "/s", False),
    Line(
        "ping50",
        "cpu_us",
        "PING, 50 connections: server CPU per request",
        "µs",
        target=f"<= {TARGET_RTT_VS_STREAMS:g}x streams",
        check=_rtt_check,
    ),
    Line("ping50", "rate", "  requests/s (wall clock)", "/s", False),
    Line(
        "pipelined",
        "cpu_us",
        "PING pipelined, 10 conn x 100: server CPU per reply",
        "µs",
        target=f"<= {TARGET_PIPELINED_US:g} µs",
        check=lambda v, _: v <= TARGET_PIPELINED_US,
    ),
    Line("pipelined", "rate", "  replies/s (wall clock)", "/s", False),
    Line(
        "serial",
        "cpu_us",
        "sessions one after another: server CPU per session",
        "µs",
        target=f"<= {TARGET_SESSION_US:g} µs",
        check=lambda v, _: v <= TARGET_SESSION_US,
    ),
    Line("serial", "rate", "  sessions/s (wall clock)", "/s", False),
    Line(
        "wave",
        "cpu_us",
        "sessions, waves at once: server CPU per session",
        "µs",
        target=f"<= {TARGET_SESSION_US:g} µs",
        check=lambda v, _: v <= TARGET_SESSION_US,
    ),
    Line("wave", "rate", "  sessions/s (wall clock)", "/s", False),
    Line(
        "scale",
        "rss_kib",
        "clients held: server RSS per connected client",
        "KiB",
        target=f"< {TARGET_RSS_KIB:g} KiB",
        check=lambda v, _: v < TARGET_RSS_KIB,
    ),
    Line("scale", "greet_rate", "  clients connected + greeted per s", "/s", False),
    Line("scale", "greet_cpu_us", "  server CPU per client connected + greeted", "µs"),
    Line("scale", "ping_cpu_us", "  every client PINGs once: server CPU per PING", "µs"),
    Line("scale", "ping_ms", "  every client PINGs once: wall time for all", "ms"),
    Line(
        "scale",
        "status_ms",
        "  STATUS with every client (redis: CLIENT LIST)",
        "ms",
        target=f"< {TARGET_STATUS_MS:g} ms",
        check=lambda v, _: v < TARGET_STATUS_MS,
    ),
    Line("scale", "who_ms", "  WHO with every client", "ms"),
]

REDIS_BENCHMARK_LINES = [
    ("rb_ping1", "ping1", "PING, 1 connection"),
    ("rb_ping50", "ping50", "PING, 50 connections"),
    ("rb_pipelined", "pipelined", "PING pipelined, 10 conn x 100"),
]


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    if unit == "/s":
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def median_of(results: Results, measure: str, key: str, loop: str, metric: str) -> float | None:
    rounds = results.get((measure, key, loop))
    if not rounds or metric not in rounds[0]:
        return None
    return statistics.median(r[metric] for r in rounds)


def build_table(
    sizes: Sizes, results: Results, loops: list[str], files: dict[str, Any]
) -> tuple[list[tuple[str, ...]], list[dict[str, Any]]]:
    rows: list[tuple[str, ...]] = []
    verdicts: list[dict[str, Any]] = []
    titles = {
        "ping1": f"{sizes.ping1:,} round trips",
        "ping50": f"{sizes.ping50:,} round trips",
        "pipelined": f"{sizes.pipelined:,} PINGs",
        "serial": f"{sizes.serial:,} sessions",
        "wave": f"{sizes.wave_total:,} sessions, {sizes.wave} at once",
        "scale": f"{sizes.scale:,} clients",
    }
    last_measure = None
    for line in LINES:
        if not any((line.measure, "filedock", loop) in results for loop in loops):
            continue
        if line.measure != last_measure:
            if last_measure is not None:
                rows.append(("",) * len(HEAD))
            rows.append((f"[{titles[line.measure]}]",) + ("",) * (len(HEAD) - 1))
            last_measure = line.measure
        for index, loop in enumerate(loops):
            value = median_of(results, line.measure, "filedock", loop, line.metric)
            against = [median_of(results, line.measure, a, loop, line.metric) for a in ANCHORS[:2]]
            redis = median_of(results, line.measure, "redis", "-", line.metric)
            shown_redis = fmt(redis, line.unit) if index == 0 else ""

            def ratio(anchor: float | None, value: float | None = value) -> str:
                return "" if value is None or not anchor else f"{value / anchor:.2f}"

            verdict = ""
            if line.check is not None and value is not None:
                met = line.check(value, against[0])
                verdict = "n/a" if met is None else "met" if met else "MISSED"
                verdicts.append(
                    {
                        "measurement": line.label.strip(),
                        "loop": loop,
                        "value": value,
                        "target": line.target,
                        "verdict": verdict,
                    }
                )
            if line.measure == "scale" and line.metric == "rss_kib" and value is not None:
                answered = median_of(results, "scale", "filedock", loop, "answered")
                if answered is not None and answered < sizes.scale:
                    verdict = f"MISSED ({answered:.0f} answered)"
            rows.append(
                (
                    line.label if index == 0 else "",
                    loop,
                    fmt(value, line.unit) + ("" if value is None else f" {line.unit}"),
                    fmt(against[0], line.unit),
                    fmt(against[1], line.unit),
                    shown_redis,
                    ratio(against[0]),
                    ratio(redis),
                    line.target if index == 0 else "",
                    verdict,
                )
            )
    rb = [(k, m, label) for k, m, label in REDIS_BENCHMARK_LINES if (k, "redis", "-") in results]
    if rb:
        rows.append(("",) * len(HEAD))
        rows.append(("[redis-benchmark -t ping_inline as the load, same counts]",) + ("",) * 9)
        for key, measure, label in rb:
            cpu = median_of(results, key, "redis", "-", "cpu_us")
            rate = median_of(results, key, "redis", "-", "rate")
            ours = median_of(results, measure, "filedock", "asyncio", "cpu_us")
            rows.append(
                (
                    f"{label}: redis CPU per request",
                    "-",
                    "",
                    "",
                    "",
                    fmt(cpu, "µs"),
                    "",
                    "" if ours is None or not cpu else f"{ours / cpu:.2f}",
                    "",
                    "",
                )
            )
            rows.append(
                ("  requests/s (wall clock)", "-", "", "", "", fmt(rate, "/s"), "", "", "", "")
            )
    file_rows, file_verdicts = files_rows(files)
    rows.extend(file_rows)
    verdicts.extend(file_verdicts)
    return rows, verdicts


def files_rows(files: dict[str, Any]) -> tuple[list[tuple[str, ...]], list[dict[str, Any]]]:
    """bench/files.py's figures as rows of the table; its anchors take the anchor columns."""
    rows: list[tuple[str, ...]] = []
    verdicts: list[dict[str, Any]] = []
    if not files:
        return rows, verdicts
    rows.append(("",) * len(HEAD))
    rows.append(
        ("[files: bench/files.py, MB/s]", "", "filedock", "best rx", "", "stock")
        + ("fd/best", "fd/stock", "", "")
    )
    for loop, data in files.items():
        if isinstance(data, str):
            rows.append((data, loop) + ("",) * 8)
            continue
        m = data["measurements"]
        best, stock = m["best"]["median_mb_per_s"], m["stock"]["median_mb_per_s"]
        for key in ("later", "first", "small", "three"):
            value = m[key]["median_mb_per_s"]
            against = (best, stock) if key == "later" else (None, None)
            rows.append(
                (m[key]["label"], loop, fmt(value) + " MB/s")
                + tuple("" if a is None else fmt(a, "/s") for a in (against[0], None, against[1]))
                + tuple("" if not a or value is None else f"{value / a:.2f}" for a in against)
                + ("", "")
            )
        for ratio in data["ratios"]:
            shown = "—" if ratio["value"] is None else f"{ratio['value']:.2f}"
            target = f">= {ratio['target']:g}"
            rows.append(
                ("  " + ratio["label"], loop, shown) + ("",) * 5 + (target, ratio["verdict"])
            )
            verdicts.append(
                {
                    "measurement": ratio["label"],
                    "loop": loop,
                    "value": ratio["value"],
                    "target": target,
                    "verdict": ratio["verdict"],
                }
            )
        hwm = data["server_vm_hwm_mib"]
        target = f"< {hwm['limit']:g} MiB"
        rows.append(
            ("  server peak memory (VmHWM)", loop, fmt(hwm["peak"]) + " MiB")
            + ("",) * 5
            + (target, hwm["verdict"])
        )
        verdicts.append(
            {
                "measurement": "server peak memory (VmHWM), files",
                "loop": loop,
                "value": hwm["peak"],
                "target": target,
                "verdict": hwm["verdict"],
            }
        )
    return rows, verdicts


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in [HEAD, *rows]) for i in range(len(HEAD))]
    aligns = ["<", "<"] + [">"] * 6 + ["<", "<"]

    def render(cells: tuple[str, ...]) -> str:
        if cells[0].startswith("[") and not any(cells[1:]):
            return cells[0]  # a section's title
        return "  ".join(
            f"{c:{a}{w}}" for c, a, w in zip(cells, aligns, widths, strict=True)
        ).rstrip()

    print(render(HEAD))
    print("-" * (sum(widths) + 2 * (len(HEAD) - 1)))
    for cells in rows:
        print(render(cells) if any(cells) else "")


def versions() -> str:
    parts = [f"Python {platform.python_version()}", f"{platform.system()} {platform.release()}"]
    if importlib.util.find_spec("uvloop") is not None:
        import uvloop

        parts.append(f"uvloop {uvloop.__version__}")
    if shutil.which("redis-server"):
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        match = re.search(r"v=(\S+)", out)
        parts.append(f"redis {match.group(1) if match else '?'}")
    return ", ".join(parts)


# -- main -----------------------------------------------------------------------------------

MEASURES = ("ping1", "ping50", "pipelined", "serial", "wave", "scale", "files")


@contextlib.contextmanager
def scratch_repo() -> Iterator[Path]:
    """A repository with one file, in a scratch folder where anchors keep their own files."""
    with tempfile.TemporaryDirectory(prefix="filedock-bench-repo-") as tmp:
        repo = Path(tmp) / "repo"
        repo.mkdir()
        (repo / "sample.txt").write_text("hello\n")
        yield repo


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (CI smoke)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, or 1 with --quick)")
    parser.add_argument(
        "--only", help=f"comma-separated measurements to run, of: {', '.join(MEASURES)}"
    )
    parser.add_argument(
        "--contenders", help="comma-separated servers to run, of: filedock, streams, batch, redis"
    )
    parser.add_argument("--files-rounds", type=int, help="--rounds for bench/files.py")
    parser.add_argument(
        "--filedock-root",
        type=Path,
        default=ROOT,
        metavar="DIR",
        help="run the filedock server of this checkout (to compare versions; default: this one)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = Sizes(**{**sizes.__dict__, "rounds": args.rounds})
    only = set(args.only.split(",")) if args.only else set(MEASURES)
    unknown = only - set(MEASURES)
    if unknown:
        parser.error(f"unknown measurement(s): {', '.join(sorted(unknown))}")

    results: Results = {}
    with scratch_repo() as repo:
        found, notes = contenders(args, repo)
        loops = sorted({c.loop for c in found if c.loop != "-"}, key=["asyncio", "uvloop"].index)
        started = time.monotonic()
        if found and only - {"files"}:
            for round_index in range(sizes.rounds):
                run_round(round_index, sizes, found, only, results, args.quick)
        files = {}
        if "files" in only and (not args.contenders or "filedock" in args.contenders):
            # The smoke test runs the files benchmark once: the other loop's run
            # goes through the same code.
            files = run_files(args, loops[:1] if args.quick else loops)
    elapsed = time.monotonic() - started

    rows, verdicts = build_table(sizes, results, loops, files)
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(f"filedock benchmark — {os.cpu_count()} cores, {versions()}")
    print(
        f"{sizes.rounds} round(s), medians{' (--quick sizes)' if args.quick else ''}; "
        f"server CPU = user + sys from /proc/PID/stat over a fixed load; "
        f"took {elapsed:.0f} s; load average at the end: {load}"
    )
    for note in notes:
        print(f"note: {note}")
    print()
    print_table(rows)
    if args.json:
        data = {
            "cores": os.cpu_count(),
            "python": platform.python_version(),
            "versions": versions(),
            "quick": args.quick,
            "sizes": sizes.__dict__,
            "results": {"|".join(k): v for k, v in results.items()},
            "files": files,
            "verdicts": verdicts,
            "notes": notes,
        }
        Path(args.json).write_text(json.dumps(data, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
