#!/usr/bin/env python3
"""Verified uploads: against a warm verified download, against curl -T to nginx, and memory.

Run from a clone (Linux)::

    python3 bench/uploads.py             # 1 GiB, 3 rounds
    python3 bench/uploads.py --quick     # CI smoke: 64 MiB, 1 round
    python3 bench/uploads.py --no-nginx  # without the nginx anchor (nothing installed)
    python3 bench/uploads.py --json results.json

Each round, in client processes against one server started with
``--allow-upload``:

- a verified upload of the file (``Client.upload``: its digest in the local
  cache, as after a first upload or download of it; the server hashes the
  body as it comes, ``fsync``s it, places it under its final name and
  answers ``STORED``), timed from the call to ``STORED``. The bench then
  checks the server's copy: under its final name, its SHA-256 the file's.
  The same with the local cache empty (the client hashes the file first)
  is shown beside it.
- a warm verified download of the same file (its digest known to the
  server, as the upload left it), timed the same way.
- ``curl -T`` of the file to nginx with its DAV module (``dav_methods PUT``),
  followed by ``openssl dgst -sha256`` of nginx's copy: a plain upload, then
  the check filedock does as it receives. Beside it, the same followed by
  ``sync FILE`` too (the copy's fsync, which filedock does before ``STORED``
  and nginx never does). nginx (Debian's ``nginx``) is
  installed with apt-get when it is missing and the bench runs as root, and
  started on a free port of 127.0.0.1 with its own configuration and prefix
  in the bench's temporary folder.
- three uploads of the file at once to a freshly started server, whose peak
  resident memory (VmHWM) is read after them.

Before each timed run dirty pages are flushed and memory primed alike
(``files.prime_memory``). Every figure is a median over the rounds.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
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
from downloads import PRIME, Figures, median, note, verdict  # noqa: E402
from files import _STARTING, HOST, MiB, Proc, make_file, prime_memory, vm_hwm_mib  # noqa: E402

BIG = "big.bin"
AT_ONCE = 3

# Targets, from the uploads work.
VS_DOWNLOAD_TARGET = 0.7  # upload speed / warm download speed, at least
VS_NGINX_TARGET = 1.2  # upload speed / (curl -T + openssl dgst) speed, at least
MAX_SERVER_HWM_MIB = 100.0


@dataclass(frozen=True)
class Sizes:
    big: int
    rounds: int


FULL = Sizes(big=1024 * MiB, rounds=3)
QUICK = Sizes(big=64 * MiB, rounds=1)

# -- roles run in client processes -------------------------------------------------------


def role_upload(port: int, local: Path, remote: str, ready: bool) -> None:
    """Upload ``local`` as ``remote``; print the seconds of the call. With ``ready``,
    connect, say so, and wait for a line on stdin before starting (uploads at once)."""
    from filedock import Client

    with Client(HOST, port, timeout=300) as client:
        if ready:
            print("ready", flush=True)
            sys.stdin.readline()
        started = time.perf_counter()
        result = client.upload(local, remote)
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "outcome": str(result.outcome)}), flush=True)


def role_fetch(port: int, remote: str, dest: Path) -> None:
    from filedock import Client

    with Client(HOST, port, timeout=300) as client:
        started = time.perf_counter()
        result = client.download(remote, dest)
        seconds = time.perf_counter() - started
    print(json.dumps({"seconds": seconds, "outcome": str(result.outcome)}), flush=True)


# -- helpers -------------------------------------------------------------------------------


def client_argv(argv: list[str]) -> list[str]:
    return [sys.executable, str(Path(__file__).resolve()), *argv]


def client_json(argv: list[str], env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        client_argv(argv), cwd=ROOT, capture_output=True, text=True, env=env, timeout=900
    )
    if done.returncode != 0:
        raise RuntimeError(f"client {argv[:2]} failed ({done.returncode}): {done.stderr[-1500:]}")
    result: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return result


def start_filedock(repo: Path, state: Path) -> tuple[Proc, int]:
    argv = [sys.executable, str(ROOT / "Server.py"), "--port", "0", "--repo", str(repo)]
    argv += ["--state-dir", str(state), "--max-clients", "8", "--allow-upload"]
    server = Proc(argv, stdout=subprocess.DEVNULL)
    return server, int(server.wait_stderr(_STARTING).group(2))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as source:
        while chunk := source.read(4 * MiB):
            digest.update(chunk)
    return digest.hexdigest()


# -- nginx ---------------------------------------------------------------------------------

NGINX_SERVER = """\
    server {
        listen 127.0.0.1:{port};
        root {root};
        location / {
            dav_methods PUT;
            create_full_put_path on;
        }
    }
"""


def curl_then_dgst(port: int, local: Path, stored: Path, *, synced: bool = False) -> float:
    """Seconds for ``curl -T`` to nginx, then ``openssl dgst -sha256`` of nginx's copy
    (and, ``synced``, ``sync FILE``: its fsync, which filedock does before STORED)."""
    url = f"http://{HOST}:{port}/{BIG}"
    started = time.perf_counter()
    subprocess.run(
        ["curl", "-sS", "--fail", "-T", str(local), url],
        check=True,
        stdout=subprocess.DEVNULL,
        timeout=600,
    )
    digest = subprocess.run(
        ["openssl", "dgst", "-sha256", str(stored)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    if synced:
        subprocess.run(["sync", str(stored)], check=True, timeout=600)
    seconds = time.perf_counter() - started
    if not digest.stdout.strip():
        raise RuntimeError("openssl dgst printed nothing")
    return seconds


# -- the measurements ------------------------------------------------------------------------


def measure_round(
    figures: Figures, work: Path, local: Path, expected: str, warm_env: dict[str, str]
) -> None:
    repo, state = work / "repo", work / "state"
    repo.mkdir()
    state.mkdir()
    server, port = start_filedock(repo, state)
    try:
        note(figures, "upload_seconds", timed_upload(port, local, repo, expected, warm_env))
        prime_memory(work, PRIME)
        down = client_json(
            ["--role", "fetch", "--port", str(port), "--remote", BIG, "--dest", str(work / "down")],
            warm_env,
        )
        note(figures, "download_seconds", down["seconds"])
        shutil.rmtree(work / "down")
        (repo / BIG).unlink()
        cold_env = dict(warm_env, FILEDOCK_CACHE_DIR=str(work / "cache-cold"))
        note(figures, "upload_cold_seconds", timed_upload(port, local, repo, expected, cold_env))
        (repo / BIG).unlink()
        shutil.rmtree(work / "cache-cold")
    finally:
        server.stop()
    shutil.rmtree(repo)
    shutil.rmtree(state)


def timed_upload(port: int, local: Path, repo: Path, expected: str, env: dict[str, str]) -> float:
    """Seconds of one upload of ``local`` as BIG (memory primed first), its copy checked after."""
    prime_memory(repo.parent, PRIME)
    answer = client_json(
        ["--role", "upload", "--port", str(port), "--local", str(local), "--remote", BIG], env
    )
    if answer.get("outcome") != "stored":
        raise RuntimeError(f"the upload was not stored whole: {answer}")
    stored = repo / BIG
    if not stored.is_file() or sha256_of(stored) != expected:
        raise RuntimeError(f"the server's copy {stored} is missing or differs")
    seconds: float = answer["seconds"]
    return seconds


def measure_at_once(figures: Figures, work: Path, local: Path, warm_env: dict[str, str]) -> None:
    """Three uploads at once to a fresh server; its VmHWM after them."""
    repo, state = work / "repo-3", work / "state-3"
    repo.mkdir()
    state.mkdir()
    server, port = start_filedock(repo, state)
    try:
        prime_memory(work, PRIME)
        clients = [
            subprocess.Popen(
                client_argv(
                    [
                        *("--role", "upload", "--port", str(port), "--local", str(local)),
                        *("--remote", f"at-once-{index}.bin", "--ready"),
                    ]
                ),
                cwd=ROOT,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=warm_env,
            )
            for index in range(AT_ONCE)
        ]
        for proc in clients:
            assert proc.stdout is not None
            if proc.stdout.readline().strip() != "ready":
                raise RuntimeError("an uploading client did not connect")
        started = time.perf_counter()
        for proc in clients:
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc in clients:
            out, _ = proc.communicate(timeout=900)
            if proc.returncode != 0 or json.loads(out.splitlines()[-1])["outcome"] != "stored":
                raise RuntimeError(f"an upload at once failed ({proc.returncode}): {out[-500:]}")
        note(figures, "at_once_seconds", time.perf_counter() - started)
        note(figures, "at_once_hwm_mib", vm_hwm_mib(server.popen.pid))
    finally:
        server.stop()
    shutil.rmtree(repo)
    shutil.rmtree(state)


def run(sizes: Sizes, *, with_nginx: bool = True) -> Figures:
    figures: Figures = {}
    nginx = anchors.find_or_install("nginx", "nginx") if with_nginx else None
    env = {k: v for k, v in os.environ.items() if not k.startswith("FILEDOCK_")}
    env["PYTHONPATH"] = str(ROOT)
    with tempfile.TemporaryDirectory(prefix="filedock-uploads-") as scratch:
        work = Path(scratch)
        local = work / "local" / BIG
        local.parent.mkdir()
        expected = make_file(local, sizes.big)
        # The local digest warm, as after a first upload or download of the file.
        warm_env = dict(env, FILEDOCK_CACHE_DIR=str(work / "cache-warm"))
        client_json(["--role", "hash", "--local", str(local)], warm_env)
        daemon = None
        try:
            if nginx is not None:
                daemon, nginx_port = anchors.start_nginx(work / "nginx", NGINX_SERVER)
            for _ in range(sizes.rounds):
                measure_round(figures, work, local, expected, warm_env)
                if daemon is not None:
                    prime_memory(work, PRIME)
                    stored = work / "nginx" / "www" / BIG
                    note(figures, "nginx_seconds", curl_then_dgst(nginx_port, local, stored))
                    stored.unlink()
                    prime_memory(work, PRIME)
                    seconds = curl_then_dgst(nginx_port, local, stored, synced=True)
                    note(figures, "nginx_synced_seconds", seconds)
                    stored.unlink()
                measure_at_once(figures, work, local, warm_env)
        finally:
            if daemon is not None:
                anchors.stop(daemon)
    return figures


# -- the table ---------------------------------------------------------------------------


def rate(size: int, seconds: float) -> str:
    return f"{size / MiB / seconds:.0f} MiB/s"


def report(sizes: Sizes, figures: Figures) -> None:
    up, down = median(figures, "upload_seconds"), median(figures, "download_seconds")
    cold = median(figures, "upload_cold_seconds")
    vs_download = down / up  # speed ratio: upload speed / download speed
    python = sys.version.split()[0]
    print(f"filedock uploads benchmark — {os.cpu_count()} cores, Python {python}")
    print(f"medians of {sizes.rounds} round(s); {sizes.big // MiB} MiB file")
    print()
    rows = [
        ("measurement", "time", "speed", "ratio", "target"),
        (
            "verified upload (local digest cached)",
            f"{up:.3f} s",
            rate(sizes.big, up),
            f"{vs_download:.2f} of the download",
            f">= {VS_DOWNLOAD_TARGET} {verdict(vs_download >= VS_DOWNLOAD_TARGET)}",
        ),
        ("verified upload (hashed first)", f"{cold:.3f} s", rate(sizes.big, cold), "", ""),
        ("warm verified download", f"{down:.3f} s", rate(sizes.big, down), "", ""),
    ]
    if "nginx_seconds" in figures:
        anchor = median(figures, "nginx_seconds")
        vs_nginx = anchor / up
        rows.append(
            (
                "curl -T to nginx (dav), then openssl dgst",
                f"{anchor:.3f} s",
                rate(sizes.big, anchor),
                f"filedock {vs_nginx:.2f}x",
                f">= {VS_NGINX_TARGET} {verdict(vs_nginx >= VS_NGINX_TARGET)}",
            )
        )
        synced = median(figures, "nginx_synced_seconds")
        rows.append(
            (
                "  the same, then sync of its copy",
                f"{synced:.3f} s",
                rate(sizes.big, synced),
                f"filedock {synced / up:.2f}x",
                "",
            )
        )
    else:
        rows.append(("curl -T to nginx", "not run (no nginx, or --no-nginx)", "", "", ""))
    hwm = median(figures, "at_once_hwm_mib")
    rows.append(
        (
            f"{AT_ONCE} uploads at once: server VmHWM",
            f"{median(figures, 'at_once_seconds'):.3f} s",
            f"{hwm:.1f} MiB",
            "",
            f"< {MAX_SERVER_HWM_MIB:g} MiB {verdict(hwm < MAX_SERVER_HWM_MIB)}",
        )
    )
    anchors.print_table(rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, one round (CI smoke)")
    parser.add_argument("--rounds", type=int, help="rounds (default 3, 1 with --quick)")
    parser.add_argument("--json", type=Path, help="also write every round's figures here")
    parser.add_argument("--no-nginx", action="store_true", help="leave out the nginx row")
    parser.add_argument("--role", choices=["upload", "fetch", "hash"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--local", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--remote", help=argparse.SUPPRESS)
    parser.add_argument("--dest", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--ready", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "upload":
        role_upload(args.port, args.local, args.remote, args.ready)
        return 0
    if args.role == "fetch":
        role_fetch(args.port, args.remote, args.dest)
        return 0
    if args.role == "hash":
        role_hash(args.local)
        return 0
    sizes = QUICK if args.quick else FULL
    if args.rounds:
        sizes = Sizes(sizes.big, args.rounds)
    figures = run(sizes, with_nginx=not args.no_nginx)
    report(sizes, figures)
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


def role_hash(local: Path) -> None:
    """Put the file's digest in the local cache (FILEDOCK_CACHE_DIR), as an upload would."""
    from filedock.client.localdigests import LocalDigests

    digests = LocalDigests(None, clock=lambda: time.time_ns() + 10**10)  # not "racy": kept
    with local.open("rb") as source:
        st = os.fstat(source.fileno())
        digest = digests.digest_of_fd(source.fileno(), st)
    digests.close()
    print(json.dumps({"sha256": digest}), flush=True)


if __name__ == "__main__":
    sys.exit(main())
