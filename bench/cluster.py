#!/usr/bin/env python3
"""Several servers as one: what the Redis registry costs a session, and how nodes add up.

Run from a clone (redis-server and haproxy installed; the nodes need the
Redis client, ``pip install 'filedock[redis]'``)::

    python3 bench/cluster.py              # 5 rounds, then the kill; about 3 minutes
    python3 bench/cluster.py --quick      # CI smoke: small sizes, one round, no plot
    python3 bench/cluster.py --plot slots.png

Five set-ups answer the same sessions (connect, ``HELLO``, one ``PING``,
``EXIT``), in an order rotated from round to round (medians of the rounds):

- ``single``: one filedock without a registry, reached directly;
- ``single via HAProxy``: the same behind HAProxy (``send-proxy-v2``, the node
  with ``--proxy-protocol``), so the next rows differ by the registry only;
- ``1 node``, ``2 nodes``, ``3 nodes``: nodes with ``--registry`` (each set-up
  its own redis-server) behind HAProxy, as examples/haproxy.cfg has them.

Two more set-ups hold each node to a quarter core of CPU time (a cgroup of its
own, as if each node had a small machine of its own), 1 node and 3 nodes. On
two cores that everything shares, one node is bound by its own core, and the
rest of the other core is less than what spreading the same sessions over
more processes costs (more wake-ups, fewer changes a call, each node reading
every node's changes), so only with the nodes held to less than the machine
can more of them add sessions/s. Each row also says how many cores the
set-up and the load generator kept busy. Skipped, with a note, where no
cgroup may be written.

Then, on a 3-node set-up: the registry's round trips per session, sessions one
at a time and 16 at once (every top-level command the nodes send Redis, from
``MONITOR``, checked against ``INFO commandstats``), and a node killed with
SIGKILL while it holds clients: the slots Redis still counts for it, sampled
every 100 ms, plotted to a PNG (matplotlib, installed by this program into its
own temporary venv), and the time until they are free. Every server is started here on free ports of
127.0.0.1 and stopped after; the cores are not pinned (see the table's note).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import anchors  # noqa: E402 - bench/ is not a package
from anchors import free_port, settled_cpu  # noqa: E402
from run import (  # noqa: E402
    HOST,
    Running,
    drive,
    scratch_repo,
    start_filedock,
    versions,
)

SESSION = [
    ["", 1, "NAME"],
    ["HELLO bench\n", 1, "WELCOME"],
    ["PING\n", 1, "PONG"],
    ["EXIT\n", 1, "BYE"],
]
MAX_CLIENTS = 64  # on every node: far above the sessions in flight, so none is refused
WAVE = 16  # sessions at once
NODE_NAMES = ("a", "b", "c")

TARGET_REGISTRY_COST = 2.0  # sessions/s of the single server ÷ of 1 node with the registry
TARGET_SCALE = 1.5  # sessions/s of 3 nodes ÷ of 1 node
TARGET_ROUND_TRIPS = 2.0  # registry round trips per session, connect + finish
SAMPLE_EVERY = 0.1  # seconds between two looks at the slots after the kill
# The quota set-ups' CPU a node: as if each had a small machine of its own, so
# that the nodes, not the two cores everything shares, bound the sessions/s.
NODE_CORES = 0.25


@dataclass(frozen=True)
class Sizes:
    sessions: int  # per set-up per round
    rounds: int
    counted: int  # sessions whose round trips are counted
    held: int  # clients on the node that is killed
    lease: float  # --lease of the kill's nodes, seconds


FULL = Sizes(sessions=2_000, rounds=5, counted=300, held=30, lease=3.0)
QUICK = Sizes(sessions=50, rounds=1, counted=10, held=5, lease=2.0)


# -- Redis, spoken directly (RESP) --------------------------------------------------------


class Resp:
    """A blocking RESP connection: enough of Redis's protocol for INFO, MONITOR, ZCARD…"""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection((HOST, port), timeout=10)
        self.file = self.sock.makefile("rb")

    def call(self, *args: str) -> Any:
        out = f"*{len(args)}\r\n" + "".join(f"${len(a.encode())}\r\n{a}\r\n" for a in args)
        self.sock.sendall(out.encode())
        return self.reply()

    def reply(self) -> Any:
        line = self.file.readline()
        if not line:
            raise ConnectionError("Redis closed the connection")
        kind, rest = line[:1], line[1:-2]
        if kind == b"+":
            return rest.decode()
        if kind == b"-":
            raise RuntimeError(rest.decode())
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self.file.read(size + 2)[:-2].decode()
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self.reply() for _ in range(size)]
        raise RuntimeError(f"unexpected RESP line {line!r}")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


def command_calls(port: int) -> dict[str, int]:
    """``INFO commandstats``: calls per command (top-level and from scripts alike)."""
    conn = Resp(port)
    try:
        text = conn.call("INFO", "commandstats")
    finally:
        conn.close()
    return {m[1]: int(m[2]) for m in re.finditer(r"cmdstat_([\w|]+):calls=(\d+)", text)}


class Monitor:
    """Counts the top-level commands Redis runs (``MONITOR`` marks a script's own ``lua``)."""

    def __init__(self, port: int) -> None:
        self.conn = Resp(port)
        self.counts: Counter[str] = Counter()
        assert self.conn.call("MONITOR") == "OK"
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError, ConnectionError, ValueError):
            while True:
                line = self.conn.file.readline().decode(errors="replace")
                if not line:
                    return
                match = re.match(r'\+[\d.]+ \[\d+ ([^\]]+)\] "([^"]+)"', line)
                if match and match[1] != "lua":
                    self.counts[match[2].lower()] += 1

    def stop(self) -> Counter[str]:
        self.conn.sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(5)
        self.conn.close()
        return self.counts


# -- the processes --------------------------------------------------------------------------


def listening(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port`` (read from /proc: no connection made,
    which through HAProxy would take a name from the registry)."""
    want = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(
            fields[1] == want and fields[3] == "0A"  # 0A: LISTEN
            for fields in (line.split() for line in table)
        )


def wait_listening(proc: subprocess.Popen[bytes], port: int, what: str) -> None:
    deadline = time.monotonic() + 15
    while not listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.02)


def start_redis(work: Path) -> Running:
    proc, port = anchors.start_redis(work / "redis")
    return Running(proc, port)


HAPROXY_CFG = """\
global
    maxconn 4096  # two descriptors a connection: within a 20,000 ulimit
defaults
    mode tcp
    timeout connect 2s
    timeout client 60s
    timeout server 60s
frontend filedock
    bind {host}:{port}
    default_backend nodes
backend nodes
    balance roundrobin
{servers}
"""


def start_haproxy(work: Path, backends: list[int]) -> Running:
    port = free_port()
    servers = "\n".join(
        f"    server n{i} {HOST}:{backend} send-proxy-v2" for i, backend in enumerate(backends)
    )
    config = work / f"haproxy-{port}.cfg"
    config.write_text(HAPROXY_CFG.format(host=HOST, port=port, servers=servers))
    proc = subprocess.Popen(
        ["haproxy", "-db", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_listening(proc, port, "haproxy")
    return Running(proc, port)


@dataclass
class Setup:
    label: str
    nodes: list[Running]
    haproxy: Running | None = None
    redis: Running | None = None
    results: list[dict[str, float]] = field(default_factory=list)
    quotas: list[anchors.CpuQuota] = field(default_factory=list)  # one a node, if held to one

    @property
    def port(self) -> int:
        return self.haproxy.port if self.haproxy else self.nodes[0].port

    def stop(self) -> None:
        for running in [*([self.haproxy] if self.haproxy else []), *self.nodes]:
            running.stop()
        if self.redis is not None:
            self.redis.stop()
        for quota in self.quotas:
            quota.remove()


def node_options(redis: Running | None, name: str, lease: float) -> tuple[str, ...]:
    options: tuple[str, ...] = ("--proxy-protocol",)
    if redis is not None:
        url = f"redis://{HOST}:{redis.port}/0"
        options += ("--registry", url, "--node", name, "--lease", str(lease))
    return options


def start_setup(
    label: str,
    repo: Path,
    work: Path,
    nodes: int,
    *,
    registry: bool,
    proxied: bool = True,
    node_cores: float | None = None,
) -> Setup:
    """``node_cores``: hold each node to that much CPU time (its own cgroup)."""
    setup = Setup(label, [])
    try:
        setup.redis = start_redis(work) if registry else None
        for name in NODE_NAMES[:nodes]:
            extra = node_options(setup.redis, name, 15.0) if proxied else ()
            node = start_filedock("asyncio", MAX_CLIENTS, repo, extra=extra)
            setup.nodes.append(node)
            if node_cores is not None:
                quota = anchors.CpuQuota.make(
                    f"filedock-bench-{os.getpid()}-{len(setup.quotas)}", node_cores
                )
                if quota is None:
                    raise RuntimeError("no cgroup to hold a node's CPU to")
                setup.quotas.append(quota)
                quota.add(node.pid)
        if proxied:
            setup.haproxy = start_haproxy(work, [node.port for node in setup.nodes])
    except BaseException:
        setup.stop()
        raise
    return setup


# -- the sessions ----------------------------------------------------------------------------


def run_sessions(setup: Setup, total: int, wave: int) -> dict[str, float]:
    """``total`` sessions through ``setup``, ``wave`` at once (bench/load.py): the rate,
    and the CPU every process of the set-up spent per session."""
    spec = {"mode": "sessions", "port": setup.port, "total": total, "wave": wave}
    spec["session"] = SESSION
    groups = {"nodes": setup.nodes, "haproxy": [setup.haproxy], "redis": [setup.redis]}

    def cpu_of_every_group(report: dict[str, Any]) -> None:
        for group, procs in groups.items():
            report[group] = sum(settled_cpu(p.pid) for p in procs if p is not None)

    # (drive() reads the first node's CPU too: the groups hold every process's.)
    ready, done = drive(setup.nodes[0], spec, cpu_of_every_group)
    result = {"rate": total / done["seconds"], "load_cpu_us": done["load_cpu"] / total * 1e6}
    for group in groups:
        result[f"{group}_cpu_us"] = (done[group] - ready[group]) / total * 1e6
    return result


def count_round_trips(setup: Setup, total: int, at_once: int) -> dict[str, Any]:
    """Every top-level command the nodes send Redis over ``total`` sessions, ``at_once``
    of them at a time (a node's changes asked while a call is in flight share the next)."""
    assert setup.redis is not None
    before = command_calls(setup.redis.port)
    monitor = Monitor(setup.redis.port)
    try:
        run_sessions(setup, total, at_once)
    finally:
        counts = monitor.stop()
    after = command_calls(setup.redis.port)
    for ours in ("monitor", "info"):  # this program's own
        counts.pop(ours, None)
    evalsha = after.get("evalsha", 0) - before.get("evalsha", 0)
    return {"per_session": sum(counts.values()) / total, "counts": dict(counts), "evalsha": evalsha}


# -- a node killed ---------------------------------------------------------------------------


SLOTS_KEY = "filedock:slots"  # the registry's sorted set: client number -> lease end (ms)


def held_slots(redis: Resp) -> tuple[int, int]:
    """The slots whose lease still runs on Redis's clock, and the slots Redis still
    records (an expired one goes at the next script run, whichever node runs it)."""
    seconds, micros = redis.call("TIME")
    now_ms = int(seconds) * 1000 + int(micros) // 1000
    running = int(redis.call("ZCOUNT", SLOTS_KEY, str(now_ms), "+inf"))
    return running, int(redis.call("ZCARD", SLOTS_KEY))


def direct_client(port: int) -> socket.socket:
    """A welcomed client straight to a node, with the PROXY v1 header HAProxy would send."""
    sock = socket.create_connection((HOST, port), timeout=10)
    sock.sendall(f"PROXY TCP4 127.0.0.2 {HOST} {sock.getsockname()[1]} {port}\r\n".encode())
    file = sock.makefile("rb")
    name = file.readline().decode().split()
    if name[:1] != ["NAME"]:
        raise RuntimeError(f"the node said {name}")
    sock.sendall(f"HELLO {name[1]}\n".encode())
    if not file.readline().startswith(b"WELCOME "):
        raise RuntimeError("not welcomed")
    file.close()
    return sock


def kill_a_node(repo: Path, work: Path, sizes: Sizes) -> dict[str, Any]:
    """3 nodes, ``held`` clients on node b, b killed: Redis's slot count every 100 ms."""
    redis = start_redis(work)
    nodes: list[Running] = []
    clients: list[socket.socket] = []
    try:
        for name in NODE_NAMES:
            extra = node_options(redis, name, sizes.lease)
            nodes.append(start_filedock("asyncio", MAX_CLIENTS, repo, extra=extra))
        clients = [direct_client(nodes[1].port) for _ in range(sizes.held)]
        clients.append(direct_client(nodes[0].port))  # one on a survivor, never freed
        conn = Resp(redis.port)
        samples: list[tuple[float, int, int]] = []
        held_before = held_slots(conn)[1]
        start = time.monotonic()
        os.kill(nodes[1].pid, signal.SIGKILL)
        nodes[1].proc.wait()
        freed_at = dropped_at = None
        for tick in range(int((sizes.lease * 3 + 3) / SAMPLE_EVERY)):
            now = time.monotonic() - start
            running, recorded = held_slots(conn)
            samples.append((now, running, recorded))
            if freed_at is None and running <= 1:  # only the survivor's client's lease runs
                freed_at = now
            if dropped_at is None and recorded <= 1:
                dropped_at = now
            if dropped_at is not None and now > dropped_at + 1:
                break
            time.sleep(max(0.0, start + (tick + 1) * SAMPLE_EVERY - time.monotonic()))
        conn.close()
    finally:
        for client in clients:
            client.close()
        for node in nodes:
            node.stop()
        redis.stop()
    return {
        "samples": samples,
        "freed_after": freed_at,
        "dropped_after": dropped_at,
        "held": held_before,
        "lease": sizes.lease,
    }


PLOT = """\
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
data = json.load(open(sys.argv[1]))
xs = [t for t, _, _ in data["samples"]]
fig, ax = plt.subplots(figsize=(7, 3.5))
ax.step(xs, [n for _, n, _ in data["samples"]], where="post", label="leases running")
ax.step(xs, [n for _, _, n in data["samples"]], where="post", linestyle=":",
        label="slots recorded in Redis")
ax.axvline(data["lease"], linestyle="--", color="grey", label=f"lease ({data['lease']:g} s)")
ax.set_xlabel("seconds after SIGKILL of node b")
ax.set_ylabel("slots held in Redis")
ax.set_title(f"{data['held'] - 1} clients on a killed node, 1 on a live one")
ax.legend()
fig.tight_layout()
fig.savefig(sys.argv[2], dpi=100)
"""


def plot(kill: dict[str, Any], path: Path, work: Path) -> str:
    """The PNG, drawn by matplotlib in a venv made for it here (nothing installed outside)."""
    venv = work / "plot-venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    installed = subprocess.run(
        [*pip, "--disable-pip-version-check", "matplotlib"], capture_output=True, text=True
    )
    if installed.returncode != 0:
        tail = installed.stderr.strip().splitlines()[-1:]
        return f"plot: not drawn (pip could not install matplotlib into its venv: {tail})"
    data = work / "slots.json"
    data.write_text(json.dumps(kill))
    script = work / "plot.py"
    script.write_text(PLOT)
    subprocess.run([str(venv / "bin" / "python"), str(script), str(data), str(path)], check=True)
    return f"plot: {path} (matplotlib installed into a temporary venv, removed after)"


# -- the table -------------------------------------------------------------------------------


def probe_quota() -> bool:
    quota = anchors.CpuQuota.make(f"filedock-bench-{os.getpid()}-probe", NODE_CORES)
    if quota is None:
        return False
    quota.remove()
    return True


def busy_cores(setup: Setup) -> float:
    """How much of the machine the set-up and the load generator kept busy together."""
    groups = ("nodes_cpu_us", "redis_cpu_us", "haproxy_cpu_us", "load_cpu_us")
    per_session = sum(median(setup, key) for key in groups)
    return median(setup, "rate") * per_session / 1e6


def verdict(met: bool) -> str:
    return "met" if met else "NOT met"


def median(setup: Setup, key: str) -> float:
    return statistics.median(result[key] for result in setup.results)


def print_table(rows: list[tuple[str, ...]]) -> None:
    head = ("measurement", "figure", "against", "ratio", "target", "")
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    for index, row in enumerate([head, *rows]):
        print(
            "  ".join(
                f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
                for i, (c, w) in enumerate(zip(row, widths, strict=True))
            ).rstrip()
        )
        if index == 0:
            print("-" * (sum(widths) + 2 * (len(head) - 1)))


def table(
    setups: list[Setup], trips: dict[int, dict[str, Any]], kill: dict[str, Any]
) -> list[tuple[str, ...]]:
    by = {setup.label: setup for setup in setups}
    rows: list[tuple[str, ...]] = []
    for setup in setups:
        rate, nodes_cpu = median(setup, "rate"), median(setup, "nodes_cpu_us")
        extra = f"nodes {nodes_cpu:.0f} µs"
        if setup.redis is not None:
            extra += f", redis {median(setup, 'redis_cpu_us'):.0f} µs"
        if setup.haproxy is not None:
            extra += f", haproxy {median(setup, 'haproxy_cpu_us'):.0f} µs"
        extra += f", load {median(setup, 'load_cpu_us'):.0f} µs; {busy_cores(setup):.2f} cores busy"
        rows.append(
            (f"sessions/s, {setup.label} (CPU a session: {extra})", f"{rate:.0f}", "", "", "", "")
        )
    one = median(by["1 node"], "rate")
    for anchor in ("single", "single via HAProxy"):
        cost = median(by[anchor], "rate") / one
        rows.append(
            (
                f"registry cost a session: 1 node against {anchor}",
                f"{one:.0f}/s",
                f"{median(by[anchor], 'rate'):.0f}/s",
                f"{cost:.2f}x",
                f"<= {TARGET_REGISTRY_COST:g}x",
                verdict(cost <= TARGET_REGISTRY_COST),
            )
        )
    scale = median(by["3 nodes"], "rate") / one
    rows.append(
        (
            "3 nodes against 1 node",
            f"{median(by['3 nodes'], 'rate'):.0f}/s",
            f"{one:.0f}/s",
            f"{scale:.2f}x",
            f">= {TARGET_SCALE:g}x",
            verdict(scale >= TARGET_SCALE),
        )
    )
    if all(label in by for label in QUOTA_LABELS):
        few, many = (median(by[label], "rate") for label in QUOTA_LABELS)
        rows.append(
            (
                "3 nodes against 1 node, each node held to 1/4 core",
                f"{many:.0f}/s",
                f"{few:.0f}/s",
                f"{many / few:.2f}x",
                f">= {TARGET_SCALE:g}x",
                verdict(many / few >= TARGET_SCALE),
            )
        )
    for at_once, counted in sorted(trips.items()):
        per = counted["per_session"]
        rows.append(
            (
                f"registry round trips a session (connect + finish), {at_once} at once",
                f"{per:.2f}",
                "",
                "",
                f"<= {TARGET_ROUND_TRIPS:g}",
                verdict(per <= TARGET_ROUND_TRIPS),
            )
        )
    freed, dropped = kill["freed_after"], kill["dropped_after"]
    rows.append(
        (
            f"slots of a killed node free after (lease {kill['lease']:g} s)",
            "never" if freed is None else f"{freed:.2f} s",
            "",
            "",
            f"<= {kill['lease']:g} s (+{SAMPLE_EVERY:g} s: the sampling)",
            verdict(freed is not None and freed <= kill["lease"] + SAMPLE_EVERY),
        )
    )
    rows.append(
        (
            "  ... and dropped from Redis (at the next script run) after",
            "never" if dropped is None else f"{dropped:.2f} s",
            "",
            "",
            "",
            "",
        )
    )
    return rows


def haproxy_version() -> str:
    out = subprocess.run(["haproxy", "-v"], capture_output=True, text=True).stdout
    match = re.search(r"version (\S+)", out)
    return f"haproxy {match[1] if match else '?'}"


QUOTA_LABELS = ("1 node, held to 1/4 core", "3 nodes, each held to 1/4 core")


@contextlib.contextmanager
def started(repo: Path, work: Path, quotas: bool) -> Iterator[list[Setup]]:
    """The set-ups, started at once (each start is mostly a Python start-up);
    with ``quotas`` also the two whose nodes are each held to a quarter core."""
    plans: list[tuple[str, int, bool, bool, float | None]] = [
        ("single", 1, False, False, None),
        ("single via HAProxy", 1, False, True, None),
        ("1 node", 1, True, True, None),
        ("2 nodes", 2, True, True, None),
        ("3 nodes", 3, True, True, None),
    ]
    if quotas:
        plans += [
            (QUOTA_LABELS[0], 1, True, True, NODE_CORES),
            (QUOTA_LABELS[1], 3, True, True, NODE_CORES),
        ]
    with ThreadPoolExecutor(max_workers=len(plans)) as pool:
        futures = [
            pool.submit(
                start_setup, label, repo, work, count, registry=registry, proxied=proxied,
                node_cores=cores,
            )
            for label, count, registry, proxied, cores in plans
        ]  # fmt: skip
    setups = [future.result() for future in futures if future.exception() is None]
    try:
        for future in futures:
            future.result()  # the first failure to start, if any
        yield setups
    finally:
        for setup in setups:
            setup.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round, no plot")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, or 1 with --quick)")
    parser.add_argument("--plot", type=Path, help="the PNG of the kill (default: in the temp dir)")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = Sizes(**{**sizes.__dict__, "rounds": args.rounds})
    missing = [program for program in ("redis-server", "haproxy") if not shutil.which(program)]
    if missing:
        print(
            f"bench/cluster.py needs {' and '.join(missing)} (apt-get install redis-server haproxy)"
        )
        return 2
    notes = []
    began = time.monotonic()
    with scratch_repo() as repo, tempfile.TemporaryDirectory(prefix="filedock-cluster-") as tmp:
        work = Path(tmp)
        quotas = probe_quota()
        if not quotas:
            notes.append("the 1/4-core set-ups: skipped (no cgroup this user may write)")
        with started(repo, work, quotas) as setups:
            for round_index in range(sizes.rounds):
                turn = round_index % len(setups)
                for setup in setups[turn:] + setups[:turn]:  # rotated: no set-up always first
                    setup.results.append(run_sessions(setup, sizes.sessions, WAVE))
            three = next(setup for setup in setups if setup.label == "3 nodes")
            trips = {n: count_round_trips(three, sizes.counted, n) for n in (1, WAVE)}
        kill = kill_a_node(repo, work, sizes)
        if args.quick:
            notes.append("plot: not drawn with --quick (matplotlib would be installed first)")
        else:
            path = args.plot or Path(tempfile.gettempdir()) / "filedock-cluster-slots.png"
            notes.append(plot(kill, path.resolve(), work))
    took = time.monotonic() - began
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(f"filedock cluster benchmark — {os.cpu_count()} cores, {versions()}, {haproxy_version()}")
    print(
        f"{sizes.rounds} round(s) of {sizes.sessions} sessions a set-up, {WAVE} at once, "
        f"medians; took {took:.0f} s; load average at the end: {load}"
    )
    print(
        "cores: not pinned (no taskset): the nodes, HAProxy, Redis and the load generator "
        "share both cores as the kernel schedules them; in the 1/4-core set-ups each node is "
        f"also held to {NODE_CORES:g} core of CPU time by a cgroup of its own (cpu quota)"
    )
    for at_once, counted in sorted(trips.items()):
        counts = ", ".join(
            f"{name} {n / sizes.counted:.2f}" for name, n in sorted(counted["counts"].items())
        )
        notes.append(
            f"round trips a session by command, {sizes.counted} sessions {at_once} at once on "
            f"3 nodes (MONITOR, top-level only): {counts or 'none'}; INFO commandstats "
            f"evalsha {counted['evalsha'] / sizes.counted:.2f} a session"
        )
    running = " ".join(str(n) for _, n, _ in kill["samples"])
    notes.append(f"leases running, every 100 ms from the kill on: {running}")
    for note in notes:
        print(f"note: {note}")
    print()
    print_table(table(setups, trips, kill))
    return 0


if __name__ == "__main__":
    sys.exit(main())
