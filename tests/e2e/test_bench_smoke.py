"""The benchmarks still run with --quick: bench/run.py, files.py, first_byte.py and the others.

They measure nothing here (tests check behaviour; bench/README.md has the
figures). This only keeps them from rotting: each runs with small sizes, exits
0 and prints its table.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def run_bench(script: str, *options: str, timeout: float = 90) -> str:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / script), "--quick", *options],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert done.returncode == 0, f"{script} failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    return done.stdout


def test_run_quick_prints_the_table() -> None:
    out = run_bench("run.py")
    assert "filedock benchmark — " in out
    assert " cores, Python " in out
    header = next(line for line in out.splitlines() if line.startswith("measurement"))
    assert "filedock" in header
    assert "fd/streams" in header
    for row in (
        "PING, 1 connection: server CPU per request",
        "PING, 50 connections: server CPU per request",
        "PING pipelined, 10 conn x 100: server CPU per reply",
        "sessions one after another: server CPU per session",
        "sessions, waves at once: server CPU per session",
        "clients held: server RSS per connected client",
        "STATUS with every client",
        "[files: bench/files.py",
    ):
        assert row in out, row
    assert "bench/files.py failed" not in out


def test_files_gate_against_another_checkout_prints_its_ratios() -> None:
    # This tree against itself: the gate's rows and ratios, with small files.
    options = ("--big-mib", "8", "--small-mib", "2", "--filedock-root", str(ROOT))
    out = run_bench("files.py", *options, timeout=120)
    for what in ("first download", "later download", "3 clients"):
        assert f"gate, this tree: {what}" in out, what
        assert f"gate, --filedock-root: {what}" in out, what
    for what in ("first", "later", "3 clients"):
        assert re.search(
            rf"this tree / --filedock-root: {what} +[\d.]+ +>= 0\.95 +(met|MISSED)", out
        )


def test_files_gate_refuses_a_folder_with_no_server() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "files.py"), "--filedock-root", str(ROOT / "bench")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert "--filedock-root: no Server.py in" in done.stderr


def test_sessions_quick_prints_the_table() -> None:
    out = run_bench("sessions.py")
    assert "filedock sessions benchmark — " in out
    assert " cores, Python " in out
    for loop in ("asyncio", "uvloop") if "uvloop " in out else ("asyncio",):
        assert re.search(rf"server CPU per session +{loop} +[\d,.]+ µs", out), out
        assert re.search(rf"server RSS per idle client +{loop} +[\d,.]+ KiB", out), out
    assert re.search(r"<= 3x redis +(met|NOT met|—)", out), out


def test_files_quick_prints_the_table() -> None:
    out = run_bench("files.py")
    assert "filedock file-transfer benchmark" in out
    assert "filedock verified" in out


def test_first_byte_quick_prints_the_table() -> None:
    out = run_bench("first_byte.py")
    assert "filedock first-byte benchmark — " in out
    for row in ("1 MiB ", "4 MiB ", "16 MiB ", "(cached) ", "flat in the size: "):
        assert row in out, row
    assert re.search(r"20 PINGs", out)
    assert re.search(r"cold / warm \d+\.\d\d \(target at least 0\.8\): (met|NOT met)", out), out


def test_downloads_quick_prints_the_table() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "downloads.py"), "--quick", "--no-rsync"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, f"downloads.py failed:\n{done.stdout}\n{done.stderr[-3000:]}"
    for row in (
        "filedock downloads benchmark — ",
        "resumed after SIGKILL at 50%: time",
        "resumed after SIGKILL at 50%: server sent",
        "mirror, all up to date",
        "rsync -r (daemon)",
    ):
        assert row in done.stdout, row


def test_uploads_quick_prints_the_table() -> None:
    out = run_bench("uploads.py", "--no-nginx", timeout=180)
    for row in (
        "filedock uploads benchmark — ",
        "verified upload (local digest cached)",
        "verified upload (hashed first)",
        "warm verified download",
        "curl -T to nginx",
        "3 uploads at once: server VmHWM",
    ):
        assert row in out, row
    assert re.search(r"\d\.\d\d of the download", out), out


def test_stats_overhead_quick_prints_the_table() -> None:
    out = run_bench("stats_overhead.py", timeout=120)
    assert "statistics overhead: 1 round(s)" in out
    assert re.search(r"note: round 1: [1-9]\d* scrapes of /metrics answered, 0 failed", out), out
    for variant in ("previous", "current", "current --http"):
        for row in (
            "PING, 50 connections: server CPU per request",
            "sessions one after another: server CPU per session",
        ):
            # (A ratio is "-" where the small load cost the anchor under one CPU tick.)
            figures = r"\d+\.\d\d\s+(\d\.\d\d\d|-)"
            assert re.search(rf"{re.escape(row)}\s+{variant}\s+{figures}", out), out


def test_listing_quick_prints_the_table() -> None:
    out = run_bench("listing.py", timeout=120)
    assert "filedock listing benchmark — " in out
    for row in (
        "list --json vs rsync -r --list-only, cold: wall",
        "list --json vs rsync -r --list-only, warm: wall",
        "server CPU (rsync: the daemon's child)",
        "server RSS before / after the listing",
        "LIST of a 100-file folder vs nginx JSON autoindex, cold: per request",
        "floor: the warm request + a bare scan (read, lstat, records)",
        "LIST of a 100-file folder vs nginx JSON autoindex, warm: per request",
        "server CPU per request, warm",
    ):
        assert row in out, row


def test_many_files_quick_prints_the_table() -> None:
    out = run_bench("many_files.py", timeout=120)
    assert "filedock many-files benchmark — " in out
    for row in ("500 x 4 KiB: files/s", "500 x 4 KiB: server CPU a file", "50 x 100 KiB: files/s"):
        assert row in out, row
    assert "filedock checks: SHA-256" in out
    if "best of them" in out:  # an anchor ran: the disk's pace is printed beside the target
        assert "needed for the target" in out
        assert "local copy, no network" in out


def test_cluster_quick_prints_the_table() -> None:
    missing = [program for program in ("redis-server", "haproxy") if shutil.which(program) is None]
    if missing and not os.environ.get("CI"):
        pytest.skip(f"{' and '.join(missing)} not installed (scripts/test installs them)")
    out = run_bench("cluster.py", timeout=120)
    assert "filedock cluster benchmark — " in out
    assert "cores: not pinned" in out
    for setup in ("single", "single via HAProxy", "1 node", "2 nodes", "3 nodes"):
        assert re.search(rf"sessions/s, {setup} \(CPU a session: nodes \d+ µs", out), setup
    for row in ("registry cost a session: 1 node against single", "3 nodes against 1 node"):
        assert re.search(rf"{re.escape(row)}.*\d\.\d\dx.*(met|NOT met)", out), row
    for at_once in (1, 16):
        row = rf"registry round trips a session \(connect \+ finish\), {at_once} at once"
        assert re.search(rf"{row}\s+\d+\.\d\d", out), out
    held = "3 nodes against 1 node, each node held to 1/4 core"
    assert re.search(rf"{held}.*\d\.\d\dx", out) or "1/4-core set-ups: skipped" in out, out
    assert re.search(r"slots of a killed node free after \(lease 2 s\)\s+\d+\.\d\d s", out), out
    assert "evalsha" in out


def test_tls_anchor_quick_prints_the_table() -> None:
    out = run_bench("tls_anchor.py", timeout=120)
    assert "filedock against nginx, large transfers — " in out
    assert re.search(r"TLS: TLSv1\.3 TLS_AES_256_GCM_SHA384 on both sides", out), out
    for row in (
        "TLS 32 MiB verified to disk (get / curl + openssl dgst)",
        "TLS 32 MiB to memory (library, verified / curl -o /dev/null)",
        "  server CPU for it (user + system)",
        "3 x 32 MiB at once, plain TCP, verified (aggregate)",
        "  fairness (slowest / fastest client)",
    ):
        assert row in out, row
