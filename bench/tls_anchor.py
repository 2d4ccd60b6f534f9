#!/usr/bin/env python3
"""Large transfers against nginx: 1 GiB over TLS 1.3 to disk and to memory, three clients at once.

Run from a clone, nothing installed (it needs nginx, curl and openssl; nginx
comes from Debian's package when missing and the bench runs as root, else the
anchor rows are skipped with a note)::

    python3 bench/tls_anchor.py              # 1 GiB, 3 rounds (about 3 minutes)
    python3 bench/tls_anchor.py --quick      # 32 MiB, 1 round: a smoke test

Both servers use the same throw-away certificate and only TLS 1.3 with one
cipher suite (``--cipher``, TLS_AES_256_GCM_SHA384 by default): nginx by its
``ssl_conf_command``, filedock, its command-line client and curl by an
OpenSSL configuration file (``OPENSSL_CONF``) that allows nothing else. The
bench checks what each server negotiates and prints it.

Rows, each round running filedock and nginx in turn (the order alternating
from round to round), memory primed before each run as bench/downloads.py
does (see ``primed_for`` there):

- verified to disk: ``filedock-client --cafile get`` (the command a user
  types) against ``curl --cacert -o FILE`` then ``openssl dgst -sha256 FILE``;
- to memory: the client library reading the file into a buffer, its SHA-256
  checked, against ``curl -o /dev/null`` (no check at all), with each
  server's CPU time (user + system, /proc) for the transfer;
- three clients at once over plain TCP, verified: three ``filedock-client
  get`` against three ``curl -o FILE && openssl dgst``; the aggregate rate and
  the fairness (the slowest client's rate over the fastest one's).
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

import anchors  # noqa: E402
import files  # noqa: E402
from downloads import primed_for  # noqa: E402
from tls import make_certificate  # noqa: E402

from filedock.client.connection import client_context  # noqa: E402

MiB = 1024 * 1024
MB = 1_000_000
HOST = "127.0.0.1"
NAME = "big.bin"
CLIENTS = 3
# The to-memory reader: the client library of the filedock being measured (its
# checkout on PYTHONPATH), timing the read alone; it prints the seconds.
_MEMORY_READER = """\
import ssl, sys, time
from filedock.client.client import Client
from filedock.client.connection import client_context
port, cafile, name = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = client_context(cafile)
context.minimum_version = ssl.TLSVersion.TLSv1_3
buffer = memoryview(bytearray(4 * 1024 * 1024))
with Client("127.0.0.1", port, timeout=120, tls=context) as client:
    start = time.perf_counter()
    with client.open(name) as remote:
        while remote.readinto(buffer):
            pass
        if not remote.verified:
            sys.exit("the library did not verify the file")
    print(time.perf_counter() - start)
"""

TARGET_DISK = 1.2  # filedock / nginx, MB/s
TARGET_MEMORY = 1.0
TARGET_MEMORY_CPU = 1.2  # filedock's server CPU / nginx's, at most
TARGET_THREE = 1.1
TARGET_FAIRNESS = 0.9

_OPENSSL_CONF = """\
openssl_conf = filedock_bench
[filedock_bench]
ssl_conf = ssl_section
[ssl_section]
system_default = tls13_only
[tls13_only]
MinProtocol = TLSv1.3
Ciphersuites = {cipher}
"""

_NGINX_TLS = """\
server {{
    listen 127.0.0.1:{{port}} ssl;
    ssl_certificate {cert};
    ssl_certificate_key {key};
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites {cipher};
    sendfile on;
    root {{root}};
}}
"""

_NGINX_PLAIN = """\
server {
    listen 127.0.0.1:{port};
    sendfile on;
    root {root};
}
"""


@dataclass
class Figures:
    """Each round's figures, by name: seconds, CPU seconds, fairness."""

    values: dict[str, list[float]] = field(default_factory=dict)

    def add(self, name: str, value: float) -> None:
        self.values.setdefault(name, []).append(value)

    def median(self, name: str) -> float | None:
        found = self.values.get(name)
        return statistics.median(found) if found else None


@dataclass
class FiledockSide:
    tls_port: int
    plain_port: int
    tls_pid: int  # the TLS server's, whose CPU the to-memory row reads


@dataclass
class NginxSide:
    https: str  # the file's URLs
    http: str
    pids: list[int]  # masters and workers


@dataclass
class Setup:
    size: int
    work: Path
    out: Path
    cert: Path
    cipher: str
    root: Path  # the filedock checkout measured
    prime: Callable[[int], Path]
    expected: str


# -- the servers ----------------------------------------------------------------------------


def start_filedock(setup: Setup, repo: Path, *, tls: bool) -> tuple[files.Proc, int]:
    """A filedock server of ``repo`` (TLS only, with the bench's certificate, when ``tls``)."""
    argv = [sys.executable, str(setup.root / "Server.py"), "--port", "0", "--repo", str(repo)]
    state = setup.work / ("state-tls" if tls else "state-plain")
    argv += ["--max-clients", str(CLIENTS + 2), "--state-dir", str(state)]
    if tls:
        argv += ["--tls-cert", str(setup.cert), "--tls-key", str(setup.cert.with_name("key.pem"))]
    server = files.Proc(argv, stdout=subprocess.DEVNULL)
    return server, int(server.wait_stderr(files._STARTING).group(2))


def nginx_pids(proc: subprocess.Popen[bytes]) -> list[int]:
    """nginx's master and its workers."""
    return [proc.pid, *anchors.nginx_workers(proc.pid)]


def cpu_of(pids: list[int]) -> float:
    return sum(anchors.cpu_seconds(pid) for pid in pids)


def negotiated(port: int, cafile: Path) -> str:
    """The TLS version and cipher suite a server agrees on with a default client."""
    context = client_context(str(cafile))
    raw = socket.create_connection((HOST, port), timeout=10)
    with context.wrap_socket(raw, server_hostname=HOST) as tls:
        cipher = tls.cipher()
        return f"{tls.version()} {cipher[0] if cipher else '?'}"


# -- the contenders -------------------------------------------------------------------------


def filedock_cli(setup: Setup, port: int, dest: Path, *, tls: bool) -> list[str]:
    argv = [sys.executable, str(setup.root / "Client.py"), "--host", HOST, "--port", str(port)]
    if tls:
        argv += ["--cafile", str(setup.cert)]
    return [*argv, "--timeout", "120", "get", NAME, "-o", str(dest)]


def curl_and_dgst(setup: Setup, url: str, dest: Path) -> list[str]:
    """curl to a file, then openssl dgst of it: one shell command, as a user would type."""
    curl = f"curl -s --noproxy '*' --cacert {setup.cert} -o {dest / NAME} {url}"
    if url.startswith("https:"):
        curl += f" --tlsv1.3 --tls13-ciphers {setup.cipher}"
    return ["sh", "-c", f"{curl} && openssl dgst -sha256 {dest / NAME}"]


def run_at_once(setup: Setup, commands: list[list[str]]) -> tuple[list[float], float]:
    """Run ``commands`` at once; each one's seconds, and first start to last end."""
    spans: list[tuple[float, float]] = [(0.0, 0.0)] * len(commands)
    failures: list[str] = []

    def one(index: int) -> None:
        start = time.perf_counter()
        done = subprocess.run(commands[index], capture_output=True, text=True, check=False)
        spans[index] = (start, time.perf_counter())
        if done.returncode != 0:
            failures.append(f"{commands[index]} failed: {done.stderr[-500:]}")
        elif commands[index][0] == "sh" and setup.expected not in done.stdout:
            failures.append(f"openssl dgst printed another digest: {done.stdout.strip()}")

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(commands))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise RuntimeError("; ".join(failures))
    first, last = min(start for start, _ in spans), max(end for _, end in spans)
    return [end - start for start, end in spans], last - first


def library_to_memory(setup: Setup, port: int) -> float:
    """Seconds the client library takes to read the file into memory, verified."""
    argv = [sys.executable, "-c", _MEMORY_READER, str(port), str(setup.cert), NAME]
    env = dict(os.environ, PYTHONPATH=str(setup.root))
    done = subprocess.run(argv, capture_output=True, text=True, check=False, env=env)
    if done.returncode != 0:
        raise RuntimeError(f"the to-memory reader failed: {done.stderr[-1000:]}")
    return float(done.stdout)


def curl_to_memory(setup: Setup, url: str) -> float:
    argv = ["curl", "-s", "--noproxy", "*", "--cacert", str(setup.cert), "-o", "/dev/null"]
    argv += ["--tlsv1.3", "--tls13-ciphers", setup.cipher, url]
    start = time.perf_counter()
    subprocess.run(argv, check=True)
    return time.perf_counter() - start


# -- the run --------------------------------------------------------------------------------


def one_round(
    setup: Setup,
    figures: Figures,
    number: int,
    filedock: FiledockSide,
    nginx: NginxSide | None,
) -> None:
    size = setup.size

    def fd_disk() -> None:
        dest = setup.prime(size)
        command = filedock_cli(setup, filedock.tls_port, dest, tls=True)
        [seconds], _ = run_at_once(setup, [command])
        figures.add("fd_disk", seconds)

    def fd_memory() -> None:
        setup.prime(size)
        before = anchors.cpu_seconds(filedock.tls_pid)
        figures.add("fd_memory", library_to_memory(setup, filedock.tls_port))
        figures.add("fd_memory_cpu", anchors.cpu_seconds(filedock.tls_pid) - before)

    def fd_three() -> None:
        dest = setup.prime(CLIENTS * size)
        port = filedock.plain_port
        commands = [filedock_cli(setup, port, dest / f"c{i}", tls=False) for i in range(CLIENTS)]
        each, span = run_at_once(setup, commands)
        figures.add("fd_three", span)
        figures.add("fd_fairness", min(each) / max(each))

    steps = [fd_disk, fd_memory, fd_three]
    if nginx is not None:
        https, http, pids = nginx.https, nginx.http, nginx.pids

        def ng_disk() -> None:
            dest = setup.prime(size)
            [seconds], _ = run_at_once(setup, [curl_and_dgst(setup, https, dest)])
            figures.add("ng_disk", seconds)

        def ng_memory() -> None:
            setup.prime(size)
            before = cpu_of(pids)
            figures.add("ng_memory", curl_to_memory(setup, https))
            figures.add("ng_memory_cpu", cpu_of(pids) - before)

        def ng_three() -> None:
            dest = setup.prime(CLIENTS * size)
            folders = [dest / f"c{i}" for i in range(CLIENTS)]
            for folder in folders:
                folder.mkdir()
            each, span = run_at_once(setup, [curl_and_dgst(setup, http, f) for f in folders])
            figures.add("ng_three", span)
            figures.add("ng_fairness", min(each) / max(each))

        pairs = [(fd_disk, ng_disk), (fd_memory, ng_memory), (fd_three, ng_three)]
        # A B, then B A: whatever drifts hits both alike.
        steps = [s for pair in pairs for s in (pair if number % 2 == 0 else pair[::-1])]
    for step in steps:
        print(f"round {number + 1}: {step.__name__}", file=sys.stderr, flush=True)
        step()


def run(args: argparse.Namespace) -> int:
    size = args.size_mib * MiB
    cpu = files.CpuShare()
    with tempfile.TemporaryDirectory(prefix="filedock-tls-anchor-") as scratch:
        work = Path(scratch)
        made = make_certificate(work)
        if made is None:
            print("bench/tls_anchor.py skipped: no `openssl` command to make a certificate")
            return 0
        cert, key = made
        conf = work / "openssl.cnf"
        conf.write_text(_OPENSSL_CONF.format(cipher=args.cipher))
        # Every child (the servers, the clients, curl) allows TLS 1.3 and the one cipher only.
        os.environ["OPENSSL_CONF"] = str(conf)
        out = work / "out"

        def prime(count: int) -> Path:
            return files.fresh_outputs(out, count if args.quick else primed_for(count))

        repo = work / "repo"
        repo.mkdir()
        print(f"Creating {files.fmt_size(size)} of random data…", file=sys.stderr)
        expected = files.make_file(repo / NAME, size)
        setup = Setup(size, work, out, cert, args.cipher, args.filedock_root, prime, expected)
        started: list[files.Proc] = []
        daemons: list[subprocess.Popen[bytes]] = []
        figures = Figures()
        notes: list[str] = []
        versions = ""
        try:
            tls_server, tls_port = start_filedock(setup, repo, tls=True)
            started.append(tls_server)
            plain_server, plain_port = start_filedock(setup, repo, tls=False)
            started.append(plain_server)
            suites = {"filedock": negotiated(tls_port, cert)}
            nginx: NginxSide | None = None
            have = {tool: anchors.find_or_install(tool, tool) for tool in ("nginx", "curl")}
            if all(have.values()):
                block = _NGINX_TLS.format(cert=cert, key=key, cipher=args.cipher)
                secure, https_port = anchors.start_nginx(work / "nginx-tls", block)
                daemons.append(secure)
                plain, http_port = anchors.start_nginx(work / "nginx-plain", _NGINX_PLAIN)
                daemons.append(plain)
                for folder in ("nginx-tls", "nginx-plain"):
                    os.link(repo / NAME, work / folder / "www" / NAME)  # the same pages
                nginx = NginxSide(
                    f"https://{HOST}:{https_port}/{NAME}",
                    f"http://{HOST}:{http_port}/{NAME}",
                    nginx_pids(secure) + nginx_pids(plain),
                )
                suites["nginx"] = negotiated(https_port, cert)
                versions = anchor_versions()
            else:
                missing = " and ".join(tool for tool, path in have.items() if path is None)
                notes.append(f"nginx rows skipped: {missing} not found")
            if len(set(suites.values())) != 1:
                raise RuntimeError(f"the servers negotiate different ciphers: {suites}")
            # Untimed: each server hashes the file once, and every cache is warm.
            library_to_memory(setup, tls_port)
            run_at_once(setup, [filedock_cli(setup, plain_port, prime(size), tls=False)])
            filedock = FiledockSide(tls_port, plain_port, tls_server.popen.pid)
            for number in range(args.rounds):
                one_round(setup, figures, number, filedock, nginx)
        finally:
            for daemon in daemons:
                anchors.stop(daemon)
            for proc in started:
                proc.stop()
    report(args, figures, suites, versions, notes, cpu.others())
    return 0


def anchor_versions() -> str:
    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True, check=False)
    curl = subprocess.run(["curl", "--version"], capture_output=True, text=True, check=False)
    found = re.search(r"nginx/(\S+)", nginx.stderr)
    return f"nginx {found.group(1) if found else '?'}, curl {curl.stdout.split()[1]}"


# -- the table ------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    figures: Figures,
    suites: dict[str, str],
    versions: str,
    notes: list[str],
    others: float,
) -> None:
    size = args.size_mib * MiB
    big = files.fmt_size(size)

    def paired(numerator: str, denominator: str, *, invert: bool) -> float | None:
        """The median of each round's own ratio (seconds: the ratio of rates is inverted)."""
        tops, bottoms = figures.values.get(numerator, []), figures.values.get(denominator, [])
        ratios = [(b / a if invert else a / b) for a, b in zip(tops, bottoms, strict=False)]
        return statistics.median(ratios) if ratios else None

    def shown(name: str, unit: str) -> str:
        """A row's median as printed: a rate (MB/s; ``count`` files), seconds or a plain share."""
        value = figures.median(name)
        if value is None:
            return "-"
        if unit == "s":
            return f"{value:.2f} s"
        if unit == "share":
            return f"{value:.2f}"
        return f"{int(unit) * size / value / MB:.0f} MB/s"  # unit: files per run

    # (label, filedock's figure, nginx's, unit, the ratio compared, at least or at most, target)
    specs = [
        (f"TLS {big} verified to disk (get / curl + openssl dgst)",
         "fd_disk", "ng_disk", "1", "speed", ">=", TARGET_DISK),
        (f"TLS {big} to memory (library, verified / curl -o /dev/null)",
         "fd_memory", "ng_memory", "1", "speed", ">=", TARGET_MEMORY),
        ("  server CPU for it (user + system)",
         "fd_memory_cpu", "ng_memory_cpu", "s", "cost", "<=", TARGET_MEMORY_CPU),
        (f"{CLIENTS} x {big} at once, plain TCP, verified (aggregate)",
         "fd_three", "ng_three", str(CLIENTS), "speed", ">=", TARGET_THREE),
        ("  fairness (slowest / fastest client)",
         "fd_fairness", "ng_fairness", "share", "own", ">=", TARGET_FAIRNESS),
    ]  # fmt: skip
    rows: list[tuple[str, str, str, str, str, str]] = []
    for label, ours, theirs, unit, compared, sense, target in specs:
        if compared == "own":  # filedock's own figure against the target
            ratio = figures.median(ours)
        else:  # seconds: a rate's ratio is the seconds' inverted
            ratio = paired(ours, theirs, invert=compared == "speed")
        met = ratio is not None and (ratio >= target if sense == ">=" else ratio <= target)
        verdict = "-" if ratio is None else "met" if met else "NOT met"
        value = "-" if ratio is None else f"{ratio:.2f}"
        aim = f"{sense} {target:g}" + (" (filedock)" if compared == "own" else "")
        rows.append((label, shown(ours, unit), shown(theirs, unit), value, aim, verdict))

    load = " / ".join(f"{x:.1f}" for x in os.getloadavg())
    print()
    print(
        f"filedock against nginx, large transfers — {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, {ssl.OPENSSL_VERSION}"
        + (f", {versions}" if versions else "")
    )
    print(f"TLS: {suites.get('filedock', '?')} on both sides, the same certificate")
    print(f"filedock: {args.filedock_root}")
    print(
        f"{args.rounds} round(s), medians (ratios: of each round's own); MB = 10^6 bytes; "
        f"load average at the end: {load}; CPU used by other programs: {others:.0%} of all cores"
    )
    print()
    head = ("measurement", "filedock", "nginx", "ratio", "target", "verdict")
    widths = [max(len(line[i]) for line in [head, *rows]) for i in range(6)]
    aligns = ("<", ">", ">", ">", ">", "<")
    for cells in [head, *rows]:
        print("  ".join(f"{cell:{aligns[i]}{widths[i]}}" for i, cell in enumerate(cells)).rstrip())
    for note in notes:
        print(f"note: {note}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB, 1 round (a smoke test)")
    parser.add_argument("--size-mib", type=int, help="the file's size in MiB (default 1024)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3)")
    parser.add_argument(
        "--cipher", default="TLS_AES_256_GCM_SHA384", help="the TLS 1.3 cipher suite both use"
    )
    parser.add_argument(
        "--filedock-root",
        type=Path,
        default=files.ROOT,
        help="the filedock checkout to measure (server, client, library; default: this one)",
    )
    args = parser.parse_args(argv)
    args.filedock_root = args.filedock_root.resolve()
    args.size_mib = args.size_mib or (32 if args.quick else 1024)
    args.rounds = args.rounds or (1 if args.quick else 3)
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
