#!/usr/bin/env python3
"""What the statistics cost: server CPU per request beside the release before them, in one run.

Run from a clone, nothing installed::

    python3 bench/stats_overhead.py              # 5 rounds
    python3 bench/stats_overhead.py --quick      # CI smoke: small sizes, one round
    python3 bench/stats_overhead.py --previous REV

Three servers answer the same loads (bench/load.py, driven as bench/run.py
drives it), in an order rotated from round to round:

- ``previous``: the release before the statistics, by default the parent of
  the commit that added ``filedock/server/stats.py`` (``--previous REV`` for
  another), unpacked with ``git archive`` into a temporary folder;
- ``current``: this checkout, whose statistics are always on;
- ``current --http``: the same with the HTTP listener on and a scraper
  fetching ``/metrics`` once a second for as long as the loads run.

The figure is the server process's CPU time (user + sys) per request, as in
bench/run.py: PING over 50 connections, pipelined PINGs, and whole sessions
one after another. Target: each of the two ``current`` rows within 3% of
``previous`` (ratio ≤ 1.03), medians of the rounds.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from anchors import free_port  # noqa: E402 - bench/ is not a package
from run import (  # noqa: E402 - bench/ is not a package
    FULL,
    HOST,
    QUICK,
    ROOT,
    Contender,
    Running,
    Sizes,
    measure_requests,
    measure_sessions,
    scratch_repo,
    start_filedock,
)

# Larger loads than bench/run.py's: a 3% difference must stand out of the
# 10 ms granularity of the CPU clock in /proc/PID/stat.
LARGER = replace(FULL, ping50=300_000, pipelined=3_000_000, serial=6_000)
TARGET_RATIO = 1.03  # per-request server CPU, against the release before the statistics
SCRAPE_EVERY = 1.0  # seconds between two scrapes of /metrics


# What the loads send (filedock's greeting and PING); each variant starts its own server.
def _started_by_the_variant(_: int) -> Running:
    raise AssertionError("each variant starts its own server")


LOADS = Contender("filedock", "asyncio", start=_started_by_the_variant)

MEASURES = (
    ("ping50", "PING, 50 connections: server CPU per request"),
    ("pipelined", "PING, 10 connections x 100 in flight: server CPU per request"),
    ("serial", "sessions one after another: server CPU per session"),
)


@dataclass(frozen=True)
class Variant:
    name: str
    root: Path  # the checkout whose Server.py runs
    http: bool = False  # with --http, scraped once a second


def previous_revision() -> str:
    """The parent of the commit that added the statistics module."""
    added = subprocess.run(
        ["git", "log", "--diff-filter=A", "--format=%H", "--", "filedock/server/stats.py"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not added:
        raise SystemExit("no commit adds filedock/server/stats.py: give --previous REV")
    return subprocess.run(
        ["git", "rev-parse", "--short", f"{added[-1]}^"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@contextlib.contextmanager
def unpacked(revision: str) -> Iterator[Path]:
    """The tree of ``revision``, unpacked into a temporary folder."""
    with tempfile.TemporaryDirectory(prefix="filedock-previous-") as folder:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", revision], cwd=ROOT, capture_output=True, check=True
        ).stdout
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(folder, filter="data")
        yield Path(folder)


class Scraper:
    """Fetches /metrics once a second until stopped; counts what it got."""

    def __init__(self, port: int) -> None:
        self.url = f"http://{HOST}:{port}/metrics"
        self.scrapes = 0
        self.failures = 0
        self.errors: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Scraper:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        while True:  # the first scrape at once, then one a second
            try:
                with urllib.request.urlopen(self.url, timeout=5) as reply:
                    reply.read()
                    self.scrapes += reply.status == 200
            except OSError as exc:
                self.failures += 1
                self.errors.append(f"{type(exc).__name__}: {exc}")
            if self._stop.wait(SCRAPE_EVERY):
                return


def run_round(
    index: int,
    sizes: Sizes,
    repo: Path,
    found: list[Variant],
    results: dict[tuple[str, str], list[float]],
) -> list[str]:
    notes = []
    shift = index % len(found)
    for variant in found[shift:] + found[:shift]:
        print(f"round {index + 1}/{sizes.rounds}: {variant.name}", file=sys.stderr, flush=True)
        port = free_port() if variant.http else 0
        extra = ("--http", f"{HOST}:{port}") if variant.http else ()
        server = start_filedock("asyncio", sizes.wave + 64, repo, variant.root, extra)
        try:
            with Scraper(port) if variant.http else contextlib.nullcontext() as scraper:
                measured = {
                    "ping50": measure_requests(LOADS, server, 50, sizes.ping50, 1),
                    "pipelined": measure_requests(LOADS, server, 10, sizes.pipelined, 100),
                    "serial": measure_sessions(LOADS, server, sizes.serial, 1),
                }
        finally:
            server.stop()
        if isinstance(scraper, Scraper):
            notes.append(
                f"round {index + 1}: {scraper.scrapes} scrapes of /metrics answered, "
                f"{scraper.failures} failed"
            )
            if scraper.failures or not scraper.scrapes:
                why = "; ".join(scraper.errors)
                raise SystemExit(f"/metrics was not scraped cleanly: {notes[-1]} ({why})")
        for measure, value in measured.items():
            results.setdefault((measure, variant.name), []).append(value["cpu_us"])
    return notes


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (CI smoke)")
    parser.add_argument("--rounds", type=int, help="rounds (default 5, or 1 with --quick)")
    parser.add_argument("--previous", metavar="REV", help="the release to compare with")
    parser.add_argument("--no-http", action="store_true", help="without the --http row")
    args = parser.parse_args(argv)
    sizes = QUICK if args.quick else LARGER
    if args.rounds:
        sizes = replace(sizes, rounds=args.rounds)
    revision = args.previous or previous_revision()
    results: dict[tuple[str, str], list[float]] = {}
    notes: list[str] = []
    started = time.monotonic()
    with scratch_repo() as repo, unpacked(revision) as previous:
        found = [
            Variant("previous", previous),
            Variant("current", ROOT),
            Variant("current --http", ROOT, http=True),
        ]
        if args.no_http:
            found.pop()
        for index in range(sizes.rounds):
            notes += run_round(index, sizes, repo, found, results)
    print()
    print(
        f"statistics overhead: {sizes.rounds} round(s), medians of server CPU per request "
        f"(user + sys); previous = {revision}; took {time.monotonic() - started:.0f} s"
    )
    for note in notes:
        print(f"note: {note}")
    print()
    print(f"{'measurement':<62} {'variant':<16} {'µs':>8} {'ratio':>7}  target")
    for measure, title in MEASURES:
        anchor = statistics.median(results[(measure, "previous")])
        for variant in found:
            value = statistics.median(results[(measure, variant.name)])
            verdict = ""
            if not anchor:  # too little CPU to see in /proc's 10 ms ticks (--quick)
                ratio_text = f"{'-':>7}"
            else:
                ratio = value / anchor
                ratio_text = f"{ratio:7.3f}"
                if variant.name != "previous":
                    met = "met" if ratio <= TARGET_RATIO else "NOT met"
                    verdict = f"≤ {TARGET_RATIO}: {met}"
            print(f"{title:<62} {variant.name:<16} {value:8.2f} {ratio_text}  {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
