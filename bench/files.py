#!/usr/bin/env python3
"""File-transfer benchmark: filedock's verified download against the limits of this machine.

Run from a clone, nothing installed::

    python3 bench/files.py              # full run: 1 GiB + 100 MiB files, 5 rounds
    python3 bench/files.py --quick      # CI smoke: 64 MiB + 8 MiB, 1 round, a few seconds
    python3 bench/files.py --json results.json

Every contender runs once per round, in an order rotated from round to round,
so drift (other load, page-cache state) hits all of them alike; the table shows
medians. See bench/README.md for what each row means.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import hashlib
import json
import mmap
import os
import platform
import queue
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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

MiB = 1024 * 1024
MB = 1_000_000
HOST = "127.0.0.1"
BIG, SMALL = "big.bin", "small.bin"

# The best Python receiver: buffers filled with recv_into, hashed by one
# thread and written by another (hashlib and os.write release the GIL).
RECV_BUFFER = 4 * MiB
RECV_BUFFERS = 8

# Targets, as ratios of median MB/s.
TARGET_VS_BEST = 0.85
TARGET_VS_STOCK = 1.5
TARGET_FIRST_VS_LATER = 0.5
MAX_SERVER_HWM_MIB = 100.0
GATE = 0.95  # this tree's rate over --filedock-root's: no more than 5% worse

_STARTING = re.compile(r"Starting server on \[?([^\]\s]+?)\]?:(\d+)")
_SERVING = re.compile(r"Serving HTTP on \S+ port (\d+)")


# -- the files ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Corpus:
    repo: Path
    sizes: dict[str, int]
    digests: dict[str, str]


def make_file(path: Path, size: int) -> str:
    """Write ``size`` random bytes to ``path``; their SHA-256."""
    digest = hashlib.sha256()
    with path.open("wb") as out:
        left = size
        while left:
            chunk = os.urandom(min(4 * MiB, left))
            digest.update(chunk)
            out.write(chunk)
            left -= len(chunk)
    return digest.hexdigest()


# -- subprocesses ---------------------------------------------------------------------------


class Proc:
    """A helper subprocess: its stderr is drained into a short tail for error messages."""

    def __init__(self, argv: list[str], *, stdout: int | None = None) -> None:
        self.argv = argv
        self.popen = subprocess.Popen(
            argv,
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE if stdout is None else stdout,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.tail: collections.deque[str] = collections.deque(maxlen=40)
        self._lines: queue.SimpleQueue[str | None] = queue.SimpleQueue()
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        assert self.popen.stderr is not None
        for line in self.popen.stderr:
            self.tail.append(line.rstrip("\n"))
            self._lines.put(line)
        self._lines.put(None)

    def wait_stderr(self, pattern: re.Pattern[str], timeout: float = 30.0) -> re.Match[str]:
        """The first stderr line matching ``pattern``."""
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                break
            if match := pattern.search(line):
                return match
        raise RuntimeError(self.failure(f"no line matching {pattern.pattern!r}"))

    def read_stdout_line(self) -> str:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        if not line:
            raise RuntimeError(self.failure("ended without answering"))
        return line.strip()

    def write_line(self, text: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(text + "\n")
        self.popen.stdin.flush()

    def failure(self, what: str) -> str:
        tail = "\n    ".join(self.tail) or "(no stderr)"
        return f"{' '.join(self.argv[:4])}…: {what}; stderr:\n    {tail}"

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


def start_filedock(
    repo: Path, max_clients: int, root: Path = ROOT, state: Path | None = None
) -> tuple[Proc, int]:
    """A server of the checkout at ``root`` (with its digest cache in ``state``, if given)."""
    argv = [sys.executable, str(root / "Server.py"), "--port", "0", "--repo", str(repo)]
    argv += ["--max-clients", str(max_clients)]
    if state is not None:
        argv += ["--state-dir", str(state)]
    server = Proc(argv, stdout=subprocess.DEVNULL)
    return server, int(server.wait_stderr(_STARTING).group(2))


class CpuShare:
    """How much of the machine's CPU other programs used while the benchmark ran.

    All CPU busy time (/proc/stat: user, nice, system, and steal by the
    hypervisor) less this process's and its waited-for children's (the helpers
    are all stopped and waited for at the end). Interrupt time is left out: part
    of it is this benchmark's own network traffic.
    """

    def __init__(self) -> None:
        self._busy, self._own, self._wall = self._busy_now(), self._own_now(), time.monotonic()

    @staticmethod
    def _busy_now() -> float:
        with open("/proc/stat") as stat:
            fields = [int(x) for x in stat.readline().split()[1:9]]
        user, nice, system, _idle, _iowait, _irq, _softirq, steal = fields
        return (user + nice + system + steal) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _own_now() -> float:
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system

    def others(self) -> float:
        """Share of all cores' time (0-1) used by other programs since creation."""
        busy = self._busy_now() - self._busy
        own = self._own_now() - self._own
        capacity = (time.monotonic() - self._wall) * (os.cpu_count() or 1)
        return max(0.0, busy - own) / capacity if capacity > 0 else 0.0


def vm_hwm_mib(pid: int) -> float:
    """Peak resident memory of process ``pid`` so far (VmHWM), in MiB."""
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/PID/status")


# -- roles run in helper processes ----------------------------------------------------------


def role_sender(repo: Path) -> None:
    """Serve whole files with blocking os.sendfile: ``NAME\\n`` in, the bytes out, repeatedly."""
    listener = socket.create_server((HOST, 0))
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        with conn, conn.makefile("rb") as requests:
            while name := requests.readline().decode().strip():
                fd = os.open(repo / name, os.O_RDONLY)
                try:
                    offset, size = 0, os.fstat(fd).st_size
                    while offset < size:
                        sent = os.sendfile(conn.fileno(), fd, offset, size - offset)
                        if sent == 0:
                            break
                        offset += sent
                except OSError:
                    break
                finally:
                    os.close(fd)


def role_client(port: int, name: str, dest: Path) -> None:
    """Connect, say ``ready``, wait for ``go``, download, print start and end (monotonic)."""
    from filedock.client.client import Client

    with Client(HOST, port, timeout=120) as client:
        print("ready", flush=True)
        sys.stdin.readline()
        start = time.monotonic()
        client.get(name, dest)
        end = time.monotonic()
    print(f"{start!r} {end!r}", flush=True)


# -- the contenders -------------------------------------------------------------------------


def page_aligned(size: int) -> memoryview:
    """A buffer starting on a page boundary (an anonymous mapping).

    malloc puts a fresh large block 16 bytes past a page boundary, and on some
    CPUs (AMD Zen 3 here) the kernel copies into such a buffer 2-3 times slower.
    """
    return memoryview(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE))


def raw_loopback(sock: socket.socket, name: str, size: int) -> float:
    """Seconds to receive ``size`` bytes sent with os.sendfile: recv_into only."""
    buffer = page_aligned(RECV_BUFFER)
    start = time.perf_counter()
    sock.sendall(name.encode() + b"\n")
    received = 0
    while received < size:
        count = sock.recv_into(buffer, min(len(buffer), size - received))
        if count == 0:
            raise RuntimeError("raw loopback: connection closed early")
        received += count
    return time.perf_counter() - start


def hashlib_speed(size: int) -> float:
    """Seconds for hashlib to SHA-256 ``size`` bytes already in memory."""
    block = os.urandom(RECV_BUFFER)
    view = memoryview(block)
    start = time.perf_counter()
    digest = hashlib.sha256()
    left = size
    while left:
        count = min(left, len(block))
        digest.update(view[:count])
        left -= count
    digest.hexdigest()
    return time.perf_counter() - start


def filedock_hash_fd(path: Path, expected: str) -> float:
    """Seconds for the server's own hashing function to hash a (page-cached) file."""
    from filedock.server.repository import FileKey, hash_fd

    fd = os.open(path, os.O_RDONLY)
    try:
        key = FileKey.of(os.fstat(fd))
        start = time.perf_counter()
        digest = hash_fd(fd, key)
        elapsed = time.perf_counter() - start
    finally:
        os.close(fd)
    if digest != expected:
        raise RuntimeError("hash_fd gave a wrong digest")
    return elapsed


def best_receiver(sock: socket.socket, name: str, size: int, expected: str, out: Path) -> float:
    """Seconds for a verified download by the best receiver we know how to write in Python.

    The calling thread fills large page-aligned buffers with recv_into; a hashing
    thread and a writing thread take them in turn. The bytes go to a temporary
    file renamed into place once the SHA-256 matches, like a real download.
    """
    free: queue.SimpleQueue[memoryview] = queue.SimpleQueue()
    to_hash: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
    to_write: queue.SimpleQueue[tuple[memoryview, int] | None] = queue.SimpleQueue()
    start = time.perf_counter()
    for _ in range(RECV_BUFFERS):
        free.put(page_aligned(RECV_BUFFER))
    digest = hashlib.sha256()

    def hasher() -> None:
        while (item := to_hash.get()) is not None:
            digest.update(item[0][: item[1]])
            to_write.put(item)
        to_write.put(None)

    def writer(fd: int) -> None:
        while (item := to_write.get()) is not None:
            view = item[0][: item[1]]
            while view:
                view = view[os.write(fd, view) :]
            free.put(item[0])

    fd, temp = tempfile.mkstemp(dir=out, prefix=f".{name}.", suffix=".part")
    threads = [threading.Thread(target=hasher), threading.Thread(target=writer, args=(fd,))]
    for thread in threads:
        thread.start()
    try:
        sock.sendall(name.encode() + b"\n")
        received = 0
        while received < size:
            view = free.get()
            end = min(len(view), size - received)
            filled = 0
            while filled < end:
                count = sock.recv_into(view[filled:end])
                if count == 0:
                    raise RuntimeError("best receiver: connection closed early")
                filled += count
            to_hash.put((view, filled))
            received += filled
    finally:
        to_hash.put(None)
        for thread in threads:
            thread.join()
        os.close(fd)
    if digest.hexdigest() != expected:
        os.unlink(temp)
        raise RuntimeError("best receiver: SHA-256 mismatch")
    os.replace(temp, out / name)
    return time.perf_counter() - start


def filedock_get(client: Any, name: str, out: Path) -> float:
    """Seconds for ``client.get`` (a verified download through the client library)."""
    start = time.perf_counter()
    client.get(name, out)
    return time.perf_counter() - start


def stock_pipeline(http_port: int, name: str, expected: str, out: Path) -> float:
    """Seconds for ``curl -s -o FILE`` from http.server, then ``openssl dgst -sha256 FILE``."""
    target = out / name
    url = f"http://{HOST}:{http_port}/{name}"
    start = time.perf_counter()
    subprocess.run(["curl", "-s", "--noproxy", "*", "-o", str(target), url], check=True)
    result = subprocess.run(
        ["openssl", "dgst", "-sha256", str(target)], check=True, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if result.stdout.strip().rsplit("= ", 1)[-1] != expected:
        raise RuntimeError(f"stock pipeline: SHA-256 mismatch: {result.stdout.strip()}")
    return elapsed


def concurrent_clients(port: int, name: str, count: int, out: Path, root: Path = ROOT) -> float:
    """Seconds from the first client's start to the last one's end, ``count`` at once
    (clients of the library of the checkout at ``root``)."""
    procs = []
    try:
        for index in range(count):
            dest = out / f"client{index}"
            argv = [sys.executable, str(Path(__file__).resolve()), "--role", "client"]
            argv += ["--port", str(port), "--name", name, "--dest", str(dest)]
            argv += ["--root", str(root)]
            procs.append(Proc(argv))
        for proc in procs:
            if proc.read_stdout_line() != "ready":
                raise RuntimeError(proc.failure("did not get ready"))
        for proc in procs:
            proc.write_line("go")
        spans = [tuple(map(float, proc.read_stdout_line().split())) for proc in procs]
        for proc in procs:
            if proc.popen.wait(timeout=60) != 0:
                raise RuntimeError(proc.failure("failed"))
    finally:
        for proc in procs:
            proc.stop()
    return max(end for _, end in spans) - min(start for start, _ in spans)


def version_downloads(
    root: Path, repo: Path, state: Path, big: str, small: str, fresh: Callable[[], Path]
) -> tuple[float, float, float]:
    """The gate's three figures for the checkout at ``root``, server and client
    library alike: a first download of ``big`` (a server with an empty digest
    cache), the later one, and three clients at once of ``small``; seconds."""
    shutil.rmtree(state, ignore_errors=True)
    server, port = start_filedock(repo, max_clients=4, root=root, state=state)
    try:
        first = concurrent_clients(port, big, 1, fresh(), root)
        later = concurrent_clients(port, big, 1, fresh(), root)
        concurrent_clients(port, small, 1, fresh(), root)  # untimed: the small file hashed
        three = concurrent_clients(port, small, 3, fresh(), root)
    finally:
        server.stop()
    return first, later, three


# -- bookkeeping ----------------------------------------------------------------------------


@dataclass
class Row:
    key: str
    label: str
    size: int
    seconds: list[float] = field(default_factory=list)
    note: str = ""

    @property
    def rates(self) -> list[float]:
        return [self.size / s / MB for s in self.seconds]

    @property
    def median(self) -> float | None:
        return statistics.median(self.rates) if self.seconds else None


@dataclass
class Ratio:
    label: str
    numerator: str
    denominator: str
    target: float


def fresh_outputs(out: Path, prime: int) -> Path:
    """Get ready for the next contender; ``out``, emptied.

    Deletes every earlier output and flushes dirty pages (``os.sync``), so nobody
    pays for somebody else's writeback. Then writes and deletes ``prime`` bytes
    of scratch file: in a VM with free page reporting (virtio-balloon), memory
    left free for a couple of seconds is handed back to the host, and whoever
    next fills the page cache pays to fault it back in (measured here: a 1 GiB
    download took 1.3 s of system time after a 3 s pause, 0.7 s right after
    such a scratch write). Priming hands every contender the same warm memory.
    """
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    prime_memory(out, prime)
    return out


def prime_memory(folder: Path, prime: int) -> None:
    """Flush dirty pages, then write and delete ``prime`` bytes in ``folder`` (fresh_outputs)."""
    os.sync()
    scratch = folder / ".prime"
    block = page_aligned(min(4 * MiB, prime))
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        left = prime
        while left > 0:
            left -= os.write(fd, block[: min(len(block), left)])
    finally:
        os.close(fd)
        scratch.unlink()


def fmt_size(size: int) -> str:
    if size % (1024 * MiB) == 0:
        return f"{size // (1024 * MiB)} GiB"
    return f"{size // MiB} MiB" if size % MiB == 0 else f"{size} B"


# -- the run --------------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from filedock.client.client import Client

    big_size = args.big_mib * MiB
    small_size = args.small_mib * MiB
    have_curl = shutil.which("curl") is not None
    have_openssl = shutil.which("openssl") is not None
    stock_ok = have_curl and have_openssl
    work = Path(tempfile.mkdtemp(prefix="filedock-bench-", dir=args.tmp))
    repo, out = work / "repo", work / "out"
    repo.mkdir()
    big, small = fmt_size(big_size), fmt_size(small_size)
    rows = {
        row.key: row
        for row in [
            Row("raw", f"raw loopback sendfile -> recv_into, {big}", big_size),
            Row("sha256", f"hashlib SHA-256 in memory, {big}", big_size),
            Row("hash_fd", f"filedock hash_fd (server hashing), {big}", big_size),
            Row("best", f"best Python verified receiver, {big}", big_size),
            Row("first", f"filedock verified, first download, {big}", big_size),
            Row("later", f"filedock verified, later download, {big}", big_size),
            Row("small", f"filedock verified, 1 client, {small}", small_size),
            Row("three", f"filedock 3 clients at once, {small} each (aggregate)", 3 * small_size),
            Row("stock", f"http.server + curl + openssl dgst, {big}", big_size),
        ]
    }
    previous: Path | None = args.filedock_root
    gate_rows = (
        ("first", f"first download, {big}", big_size),
        ("later", f"later download, {big}", big_size),
        ("three", f"3 clients, {small} each", 3 * small_size),
    )
    if previous is not None:
        for tag, whose in (("this", "this tree"), ("root", "--filedock-root")):
            for key, what, size in gate_rows:
                rows[f"{tag}_{key}"] = Row(f"{tag}_{key}", f"gate, {whose}: {what}", size)
    if not stock_ok:
        tools = (("curl", have_curl), ("openssl", have_openssl))
        missing = " and ".join(tool for tool, found in tools if not found)
        rows["stock"].note = f"skipped: {missing} not found"
    ratios = [
        Ratio(f"filedock verified {big} / best Python receiver", "later", "best", TARGET_VS_BEST),
        Ratio("filedock / http.server+curl+openssl", "later", "stock", TARGET_VS_STOCK),
        Ratio("first download / later downloads", "first", "later", TARGET_FIRST_VS_LATER),
    ]
    if previous is not None:
        ratios += [
            Ratio(f"this tree / --filedock-root: {what}", f"this_{key}", f"root_{key}", GATE)
            for key, what in (("first", "first"), ("later", "later"), ("three", "3 clients"))
        ]
    hwm: list[float] = []
    procs: list[Proc] = []
    cpu = CpuShare()
    prime = big_size + big_size // 2  # the page cache a download fills, and some

    def fresh() -> Path:
        return fresh_outputs(out, prime)

    sender_sock: socket.socket | None = None
    print(f"Working in {work}", file=sys.stderr)
    try:
        print(f"Creating {big} and {small} of random data…", file=sys.stderr)
        digests = {BIG: make_file(repo / BIG, big_size), SMALL: make_file(repo / SMALL, small_size)}
        os.sync()

        sender = Proc(
            [sys.executable, str(Path(__file__).resolve()), "--role", "sender", "--repo", str(repo)]
        )
        procs.append(sender)
        # One connection for the whole run, warmed by one download (untimed): the
        # best receiver then runs, like filedock's later downloads, on a connection
        # that already carried a file (its receive buffer grown by autotuning).
        sender_sock = socket.create_connection((HOST, int(sender.read_stdout_line())))
        best_receiver(sender_sock, BIG, big_size, digests[BIG], fresh())
        http_port = 0
        if stock_ok:
            http = Proc(
                [
                    sys.executable,
                    "-u",
                    "-m",
                    "http.server",
                    "--bind",
                    HOST,
                    "--directory",
                    str(repo),
                    "0",
                ]
            )
            procs.append(http)
            match = _SERVING.search(http.read_stdout_line())
            if match is None:
                raise RuntimeError(http.failure("http.server did not say its port"))
            http_port = int(match.group(1))
        # A long-running server with a warm hash cache, for the 100 MiB rows.
        warm, warm_port = start_filedock(repo, max_clients=4)
        procs.append(warm)
        with Client(HOST, warm_port, timeout=120) as client:
            client.get(SMALL, fresh())  # hashes it: the cache is warm from now on

        def step_limits() -> None:
            fresh()  # nothing written here, but no writeback left running either
            rows["raw"].seconds.append(raw_loopback(sender_sock, BIG, big_size))
            rows["sha256"].seconds.append(hashlib_speed(big_size))
            rows["hash_fd"].seconds.append(filedock_hash_fd(repo / BIG, digests[BIG]))

        def step_best() -> None:
            seconds = best_receiver(sender_sock, BIG, big_size, digests[BIG], fresh())
            rows["best"].seconds.append(seconds)

        def step_filedock() -> None:
            # A fresh server process: it has never hashed the file.
            server, port = start_filedock(repo, max_clients=2)
            procs.append(server)
            try:
                with Client(HOST, port, timeout=120) as client:
                    rows["first"].seconds.append(filedock_get(client, BIG, fresh()))
                    rows["later"].seconds.append(filedock_get(client, BIG, fresh()))
                hwm.append(vm_hwm_mib(server.popen.pid))
            finally:
                server.stop()
                procs.remove(server)

        def step_small() -> None:
            with Client(HOST, warm_port, timeout=120) as client:
                rows["small"].seconds.append(filedock_get(client, SMALL, fresh()))
            seconds = concurrent_clients(warm_port, SMALL, 3, fresh())
            rows["three"].seconds.append(seconds)

        def step_stock() -> None:
            if stock_ok:
                seconds = stock_pipeline(http_port, BIG, digests[BIG], fresh())
                rows["stock"].seconds.append(seconds)

        def step_versions(previous: Path) -> None:
            # Which checkout goes first alternates with the rounds done.
            shift = len(rows["this_first"].seconds) % 2
            checkouts = [("this", ROOT), ("root", previous)]
            for tag, root in checkouts[shift:] + checkouts[:shift]:
                figures = version_downloads(root, repo, work / f"state-{tag}", BIG, SMALL, fresh)
                for (key, _, _), seconds in zip(gate_rows, figures, strict=True):
                    rows[f"{tag}_{key}"].seconds.append(seconds)

        steps: list[tuple[str, Callable[[], None]]] = [
            ("limits", step_limits),
            ("best receiver", step_best),
            ("filedock", step_filedock),
            (f"filedock {small}", step_small),
            ("stock", step_stock),
        ]
        if previous is not None:
            gate = ("this tree and --filedock-root", functools.partial(step_versions, previous))
            steps = [gate] if args.gate_only else [*steps, gate]
        for round_index in range(args.rounds):
            shift = round_index % len(steps)
            for name, step in steps[shift:] + steps[:shift]:
                print(f"round {round_index + 1}/{args.rounds}: {name}", file=sys.stderr)
                step()
        hwm.append(vm_hwm_mib(warm.popen.pid))
    finally:
        if sender_sock is not None:
            sender_sock.close()
        for proc in procs:
            proc.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    results = report(args, rows, ratios, hwm, cpu.others())
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nResults written to {args.json}")
    verdicts = [r["verdict"] for r in results["ratios"]] + [results["server_vm_hwm_mib"]["verdict"]]
    return 1 if args.strict and "MISSED" in verdicts else 0


def report(
    args: argparse.Namespace,
    rows: dict[str, Row],
    ratios: list[Ratio],
    hwm: list[float],
    others: float,
) -> dict[str, Any]:
    """Print the one table; the results as a JSON-ready dict."""
    table: list[tuple[str, str, str, str, str, str]] = []
    for row in rows.values():
        if row.median is None:
            table.append((row.label, "—", "", "", "", row.note))
            continue
        spread = f"{min(row.rates):.0f} – {max(row.rates):.0f}"
        table.append((row.label, f"{row.median:.0f} MB/s", spread, "", "", row.note))
    table.append(("", "", "", "", "", ""))
    ratio_results = []
    for ratio in ratios:
        num, den = rows[ratio.numerator], rows[ratio.denominator]
        value = num.median / den.median if num.median and den.median else None
        # Each round's own ratio: the two ran minutes apart at most, so drift cancels.
        paired = [a / b for a, b in zip(num.rates, den.rates, strict=False)]
        paired_median = statistics.median(paired) if paired else None
        verdict = "n/a" if value is None else "met" if value >= ratio.target else "MISSED"
        note = "" if paired_median is None else f"median of per-round ratios {paired_median:.2f}"
        shown = "—" if value is None else f"{value:.2f}"
        table.append((ratio.label, shown, "", f">= {ratio.target:g}", verdict, note))
        ratio_results.append(
            {
                "label": ratio.label,
                "value": value,
                "per_round": paired,
                "median_of_per_round": paired_median,
                "target": ratio.target,
                "verdict": verdict,
            }
        )
    peak = max(hwm) if hwm else None
    hwm_verdict = "n/a" if peak is None else "met" if peak < MAX_SERVER_HWM_MIB else "MISSED"
    table.append(
        (
            f"server peak memory (VmHWM), {fmt_size(rows['first'].size)} transfers",
            "—" if peak is None else f"{peak:.1f} MiB",
            "" if not hwm else f"{min(hwm):.1f} – {max(hwm):.1f}",
            f"< {MAX_SERVER_HWM_MIB:g} MiB",
            hwm_verdict,
            "",
        )
    )

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(
        f"filedock file-transfer benchmark — {os.cpu_count()} cores (os.cpu_count()), "
        f"Python {platform.python_version()}, {platform.system()} {platform.release()}"
    )
    print(
        f"{args.rounds} round(s), medians; MB = 10^6 bytes; "
        f"load average at the end (1/5/15 min): {load}"
    )
    print(f"CPU used by other programs during the run: {others:.0%} of all cores", end="")
    print(" (high: figures are lower and noisier than on a quiet machine)" if others > 0.1 else "")
    print()
    head = ("measurement", "median", "min – max", "target", "verdict", "note")
    widths = [max(len(line[i]) for line in [head, *table]) for i in range(5)]
    aligns = ("<", ">", ">", ">", "<")

    def line(cells: tuple[str, ...]) -> str:
        parts = [f"{cell:{aligns[i]}{widths[i]}}" for i, cell in enumerate(cells[:5])]
        return ("  ".join(parts) + "  " + cells[5]).rstrip()

    print(line(head))
    print("-" * (sum(widths) + 2 * 5 + 4))
    for cells in table:
        print(line(cells) if any(cells) else "")
    return {
        "python": platform.python_version(),
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "load_average_at_end": list(os.getloadavg()),
        "other_programs_cpu_share": others,
        "rounds": args.rounds,
        "quick": args.quick,
        "sizes": {"big": args.big_mib * MiB, "small": args.small_mib * MiB},
        "measurements": {
            row.key: {
                "label": row.label,
                "bytes": row.size,
                "seconds": row.seconds,
                "mb_per_s": row.rates,
                "median_mb_per_s": row.median,
                "note": row.note,
            }
            for row in rows.values()
        },
        "ratios": ratio_results,
        "server_vm_hwm_mib": {
            "samples": hwm,
            "peak": peak,
            "limit": MAX_SERVER_HWM_MIB,
            "verdict": hwm_verdict,
        },
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="64 MiB and 8 MiB files, 1 round (CI smoke test)"
    )
    parser.add_argument("--rounds", type=int, help="rounds (default 5, or 1 with --quick)")
    parser.add_argument("--big-mib", type=int, help="size of the big file (default 1024)")
    parser.add_argument("--small-mib", type=int, help="size of the small file (default 100)")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
    parser.add_argument(
        "--tmp",
        metavar="DIR",
        help="where the temporary files go (default: the system's temporary folder)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary files")
    parser.add_argument(
        "--strict", action="store_true", help="exit with status 1 when a target is missed"
    )
    parser.add_argument(
        "--filedock-root",
        type=Path,
        metavar="DIR",
        help="also run the downloads with the server and client library of the checkout"
        " at DIR (a previous release) and this tree's, in turn each round, and print"
        " this tree's rates over DIR's (the gate: no more than 5%% worse)",
    )
    parser.add_argument(
        "--gate-only",
        action="store_true",
        help="with --filedock-root: run the gate's rows alone (more rounds in the same time)",
    )
    # Internal: the helper processes this script starts.
    parser.add_argument("--role", choices=["sender", "client"], help=argparse.SUPPRESS)
    parser.add_argument("--repo", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    parser.add_argument("--dest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--root", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.root is not None:
        sys.path.insert(0, str(args.root))  # the client library of that checkout
    if args.role == "sender":
        role_sender(args.repo)
        return 0
    if args.role == "client":
        role_client(args.port, args.name, args.dest)
        return 0
    if args.rounds is None:
        args.rounds = 1 if args.quick else 5
    if args.big_mib is None:
        args.big_mib = 64 if args.quick else 1024
    if args.small_mib is None:
        args.small_mib = 8 if args.quick else 100
    if args.rounds < 1 or args.big_mib < 1 or args.small_mib < 1:
        parser.error("--rounds, --big-mib and --small-mib must be positive")
    if args.gate_only and args.filedock_root is None:
        parser.error("--gate-only needs --filedock-root")
    if args.filedock_root is not None:
        args.filedock_root = args.filedock_root.resolve()
        if not (args.filedock_root / "Server.py").is_file():
            parser.error(f"--filedock-root: no Server.py in {args.filedock_root}")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
