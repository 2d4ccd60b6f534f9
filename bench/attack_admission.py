#!/usr/bin/env python3
"""Two attacks on admission, measured on two checkouts side by side.

Run from a clone (the development tools need not be installed)::

    python3 bench/attack_admission.py --before ../before        # this tree vs another
    python3 bench/attack_admission.py --rounds 1 --seconds 5    # a quick look

Each server is ``Server.py`` of a checkout, started here as a subprocess on
127.0.0.1 and stopped after; every round runs both checkouts, in turn, and
the table shows medians.

- **Memory before TLS**: a TLS server under ``--max-clients-per-ip 1`` gets
  ``--silent`` connections from one address that never start TLS. Measured:
  the server's resident memory (VmRSS) growth and its open descriptors once
  it has taken them all.
- **Token guessing**: a server with a token file gets guesses from one address
  for ``--seconds``, from ``--workers`` connections at once, each giving up on
  a guess when no WELCOME came within 0.3 s (what the attack on the old server
  did). Every ``--every``-th guess is the right token, so the guesses the
  server really compared are ``every`` × the WELCOMEs it gave: a guess past
  the limits is refused unchecked and tells the guesser nothing. Shown per
  second, with ``--max-clients`` 3 and 50. A second figure counts them in the
  server's log (its "gave no valid token" lines, the failures its rate limit
  counted in its "… suppressed" lines, and the WELCOMEs): every guess the
  server compared.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
HOST = "127.0.0.1"
TOKEN = "the-right-token-0123456789abcdef"
GIVE_UP = 0.3  # seconds without a WELCOME after which the guesser moves on
_STARTING = re.compile(r"Starting server on \S+?:(\d+)")


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def server(root: Path, workdir: Path, *options: str) -> Iterator[Server]:
    """``Server.py`` of checkout ``root`` on 127.0.0.1, port 0, until the block ends."""
    repo = workdir / "repo"
    repo.mkdir(exist_ok=True)
    log = workdir / f"server-{time.monotonic_ns()}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    argv = [sys.executable, str(root / "Server.py"), "--port", "0", "--repo", str(repo)]
    argv += ["--loop", "asyncio", *options]
    with log.open("wb") as sink:
        proc = subprocess.Popen(argv, cwd=root, stdout=subprocess.DEVNULL, stderr=sink, env=env)
    running = None
    try:
        deadline = time.monotonic() + 30
        while running is None and time.monotonic() < deadline and proc.poll() is None:
            match = _STARTING.search(log.read_text(errors="replace"))
            if match:
                running = Server(proc, int(match.group(1)), log)
            else:
                time.sleep(0.02)  # polling the log for the start line
        if running is None:
            raise RuntimeError(f"{root}: the server did not start:\n{log.read_text()[-2000:]}")
        yield running
    finally:
        if running is not None:
            running.stop()
        elif proc.poll() is None:
            proc.kill()
            proc.wait()


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def descriptors(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def make_certificate(workdir: Path) -> tuple[Path, Path]:
    cert, key = workdir / "cert.pem", workdir / "key.pem"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"]
            + ["-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1"]
            + ["-subj", "/CN=127.0.0.1"],
            check=True,
            capture_output=True,
        )
    return cert, key


# -- memory before TLS ---------------------------------------------------------------


def silent_connections(root: Path, workdir: Path, count: int) -> dict[str, float]:
    cert, key = make_certificate(workdir)
    options = ["--tls-cert", str(cert), "--tls-key", str(key), "--max-clients-per-ip", "1"]
    options += ["--handshake-timeout", "120"]  # the connections stay for the measurement
    with server(root, workdir, *options) as running:
        pid = running.proc.pid
        before_kib, before_fds = rss_kib(pid), descriptors(pid)
        socks: list[socket.socket] = []
        try:
            for _ in range(count):
                sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                socks.append(sock)
                sock.settimeout(10)
                sock.connect((HOST, running.port))  # and never a byte of TLS
            settled, last, stable_since = False, -1, time.monotonic()
            deadline = time.monotonic() + 30
            while not settled and time.monotonic() < deadline:
                now_fds = descriptors(pid)
                if now_fds != last:
                    last, stable_since = now_fds, time.monotonic()
                settled = time.monotonic() - stable_since > 1.0
                time.sleep(0.05)  # polling the server's descriptors until they settle
            return {
                "rss_growth_mib": (rss_kib(pid) - before_kib) / 1024,
                "rss_mib": rss_kib(pid) / 1024,
                "fds": descriptors(pid),
                "fds_growth": descriptors(pid) - before_fds,
            }
        finally:
            for sock in socks:
                sock.close()


# -- token guessing --------------------------------------------------------------------


@dataclass
class Guessing:
    attempts: int = 0  # guesses sent (a HELLO with a token)
    welcomed: int = 0  # WELCOMEs: the right token was compared and accepted
    turned_away: int = 0  # FULL (or a close) before a guess could be sent
    answered_wrong: int = 0  # ERR unauthorized within the give-up time


async def _guess_once(port: int, token: str, tally: Guessing) -> None:
    try:
        reader, writer = await asyncio.open_connection(HOST, port)
    except OSError:
        tally.turned_away += 1
        await asyncio.sleep(0.01)  # the kernel's queue is full: a moment's pause
        return
    try:
        first = await asyncio.wait_for(reader.readline(), 5)
        if not first.startswith(b"NAME "):
            tally.turned_away += 1
            return
        writer.write(f"HELLO {first.split()[1].decode()} token={token}\n".encode())
        tally.attempts += 1
        try:
            answer = await asyncio.wait_for(reader.readline(), GIVE_UP)
        except TimeoutError:
            return  # no WELCOME in time: the guesser takes it as wrong and moves on
        if answer.startswith(b"WELCOME "):
            tally.welcomed += 1
        elif answer.startswith(b"ERR unauthorized"):
            tally.answered_wrong += 1
    except (OSError, TimeoutError):
        tally.turned_away += 1
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def _guess_for(port: int, seconds: float, workers: int, every: int) -> Guessing:
    tally = Guessing()
    deadline = time.monotonic() + seconds
    counter = 0

    async def worker() -> None:
        nonlocal counter
        while time.monotonic() < deadline:
            counter += 1
            token = TOKEN if counter % every == 0 else f"guess-{counter:012d}"
            await _guess_once(port, token, tally)

    await asyncio.gather(*(worker() for _ in range(workers)))
    return tally


def guessing(
    root: Path, workdir: Path, max_clients: int, seconds: float, workers: int, every: int
) -> dict[str, float]:
    tokens = workdir / "tokens.txt"
    tokens.write_text(TOKEN + "\n")
    options = ["--token-file", str(tokens), "--max-clients", str(max_clients)]
    with server(root, workdir, *options) as running:
        started = time.monotonic()
        tally = asyncio.run(_guess_for(running.port, seconds, workers, every))
        took = time.monotonic() - started
        log = running.log
    running_log = log.read_text(errors="replace")
    compared_wrong = wrong_tokens_logged(running_log)
    return {
        "sent_per_s": tally.attempts / took,
        "compared_per_s": tally.welcomed * every / took,
        "welcomed": tally.welcomed,
        "turned_away_per_s": tally.turned_away / took,
        # Cross-check from the log: guesses compared and found wrong, logged
        # or counted in the "… suppressed" lines of the log's rate limit.
        "logged_wrong": compared_wrong,
        "logged_compared_per_s": (compared_wrong + tally.welcomed) / took,
    }


_SUPPRESSED_AUTH = re.compile(r"(\d+) more 'auth' warnings(?: from \S+)? suppressed")


def wrong_tokens_logged(log: str) -> int:
    """Wrong tokens a server compared, from its log: every failure is logged or
    counted in a later "N more 'auth' warnings … suppressed" line (the guessers
    here always send a token, so every 'auth' warning is a wrong one)."""
    shown = log.count("gave no valid token")
    return shown + sum(int(count) for count in _SUPPRESSED_AUTH.findall(log))


# -- the table ------------------------------------------------------------------------


def median(runs: list[dict[str, float]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, required=True, help="the checkout to compare with")
    parser.add_argument("--after", type=Path, default=ROOT, help="default: this checkout")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--silent", type=int, default=1500, help="silent TLS connections")
    parser.add_argument("--seconds", type=float, default=15.0, help="guessing time per run")
    parser.add_argument("--workers", type=int, default=50, help="guessing connections at once")
    parser.add_argument("--every", type=int, default=10, help="every n-th guess is right")
    args = parser.parse_args(argv)
    if shutil.which("openssl") is None:
        parser.error("openssl is needed to make the test certificate")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < args.silent + 200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, args.silent + 1000), hard))
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    memory: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    guesses: dict[tuple[str, int], list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="filedock-attack-") as tmp:
        workdir = Path(tmp)
        for round_index in range(args.rounds):
            order = list(trees.items())
            if round_index % 2:
                order.reverse()  # neither checkout always runs first
            for name, root in order:
                memory[name].append(silent_connections(root, workdir, args.silent))
                print(f"round {round_index + 1} {name} silent TLS: {memory[name][-1]}", flush=True)
                for max_clients in (3, 50):
                    run = guessing(
                        root, workdir, max_clients, args.seconds, args.workers, args.every
                    )
                    guesses.setdefault((name, max_clients), []).append(run)
                    print(f"round {round_index + 1} {name} {max_clients}: {run}", flush=True)
    print()
    print(
        f"{args.silent} silent connections to a TLS server, --max-clients-per-ip 1 "
        f"(medians of {args.rounds}):"
    )
    print("| checkout | server RSS growth | server RSS | open descriptors |")
    print("|---|---|---|---|")
    for name in trees:
        runs = memory[name]
        growth, rss = median(runs, "rss_growth_mib"), median(runs, "rss_mib")
        print(f"| {name} | {growth:.1f} MiB | {rss:.1f} MiB | {median(runs, 'fds'):.0f} |")
    print()
    print(
        f"Token guessing from one address, {args.workers} at once, {args.seconds:g} s a run "
        f"(medians of {args.rounds}):"
    )
    print(
        "| checkout | --max-clients | guesses compared/s (every × WELCOMEs) | compared/s "
        "(server log) | guesses sent/s | WELCOMEs | turned away/s |"
    )
    print("|---|---|---|---|---|---|---|")
    for (name, max_clients), runs in guesses.items():
        print(
            f"| {name} | {max_clients} | {median(runs, 'compared_per_s'):.2f} | "
            f"{median(runs, 'logged_compared_per_s'):.2f} | "
            f"{median(runs, 'sent_per_s'):.1f} | {median(runs, 'welcomed'):.0f} | "
            f"{median(runs, 'turned_away_per_s'):.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
