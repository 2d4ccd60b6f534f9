"""The servers filedock's benches measure it against, and how to read a process's cost.

One place for what several benches need: finding (or installing, from Debian's
packages) an anchor's program, starting nginx, an rsync daemon or redis-server
on a free port of 127.0.0.1 with everything under the bench's own folder, and
reading a process's CPU time and memory from /proc. Standard library only.

- ``find_or_install(program, package)``: the program's path, or None (the
  caller skips that anchor with a printed note);
- ``start_nginx(prefix, server_block)``, ``start_rsync_daemon(root, work)``,
  ``start_redis(work)``: ``(process, port)``, listening once returned;
- ``cpu_seconds(pid)``, ``tree_cpu_seconds(pid)`` (its children too),
  ``settled_cpu(pid)``, ``rss_kib(pid)``, ``stop(proc)``;
- ``CpuQuota(name, cores)``: a cgroup that lets the processes put in it use at
  most ``cores`` of CPU time together (as if on a machine that small); None
  from ``CpuQuota.make`` where the kernel's cgroups cannot be written.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")
RSYNC_MODULE = "repo"
_STARTUP_SECONDS = 15.0
# Debian puts daemons in sbin, which a non-root PATH often lacks.
_SBIN = ("/usr/sbin", "/sbin")


# -- programs -------------------------------------------------------------------------------


def _which(program: str) -> str | None:
    found = shutil.which(program)
    if found:
        return found
    for folder in _SBIN:
        candidate = os.path.join(folder, program)
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def find_or_install(program: str, package: str) -> str | None:
    """The path of ``program``; when missing and running as root with apt-get, installs
    Debian's ``package`` (one ``apt-get update`` and a retry if the first try fails)."""
    found = _which(program)
    if found or os.geteuid() != 0 or not shutil.which("apt-get"):
        return found
    print(f"installing {package} with apt-get…", file=sys.stderr, flush=True)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    install = ["apt-get", "install", "-y", "-qq", package]
    quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL, "env": env}
    if subprocess.run(install, check=False, **quiet).returncode != 0:  # type: ignore[call-overload]
        subprocess.run(["apt-get", "update", "-qq"], check=False, **quiet)  # type: ignore[call-overload]
        subprocess.run(install, check=False, **quiet)  # type: ignore[call-overload]
    return _which(program)


def _needed(program: str, package: str) -> str:
    found = find_or_install(program, package)
    if found is None:
        raise RuntimeError(f"{program} is not installed (Debian package {package})")
    return found


# -- processes ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def cpu_times(pid: int) -> tuple[float, float]:
    """User and system CPU time of process ``pid``, all its threads, in seconds."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS  # fields 14 and 15 of stat(5)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid``, all its threads, in seconds."""
    return sum(cpu_times(pid))


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid``, of the children it reaped, and of its live
    descendants: an rsync daemon forks a process per connection, nginx's worker
    is its master's child."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rpartition(")")[2].split()
    total = sum(int(value) for value in fields[11:15]) / TICKS  # utime, stime, cutime, cstime
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            children = (task / "children").read_text().split()
        except OSError:
            continue
        for child in children:
            try:
                total += tree_cpu_seconds(int(child))
            except (OSError, ValueError):
                continue  # ended meanwhile: counted in its parent's cutime once reaped
    return total


def settled_cpu(pid: int, read: Callable[[int], float] = cpu_seconds) -> float:
    """A server's CPU time (``read``) once it has gone idle: its last work may
    trail the replies."""
    last = read(pid)
    for _ in range(40):  # bounded: 30 ms without a tick and it is idle
        time.sleep(0.03)
        now = read(pid)
        if now == last:
            break
        last = now
    return last


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError("no VmRSS in /proc/PID/status")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate ``proc`` and reap it (killed if it does not go within 15 s)."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _failed(proc: subprocess.Popen[bytes], log: Path, what: str) -> RuntimeError:
    stop(proc)
    tail = log.read_text(errors="replace")[-1500:] if log.exists() else ""
    return RuntimeError(f"{what}; log tail:\n{tail}")


def _connects(port: int) -> bool:
    try:
        socket.create_connection((HOST, port), timeout=1).close()
    except OSError:
        return False
    return True


# -- nginx ----------------------------------------------------------------------------------

_NGINX_CONF = """\
worker_processes 1;
daemon off;
{user}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    client_max_body_size 0;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
{server}
}}
"""


def start_nginx(prefix: Path, server_block: str) -> tuple[subprocess.Popen[bytes], int]:
    """nginx on a free port of 127.0.0.1, one worker; pid, temp and log files under
    ``prefix``, its root ``prefix/www``. ``server_block`` is the ``server { … }`` part, in
    nginx's own syntax with ``{port}`` and ``{root}`` put in (nothing else is substituted)."""
    nginx = _needed("nginx", "nginx")
    (prefix / "www").mkdir(parents=True, exist_ok=True)
    port = free_port()
    server = server_block.replace("{port}", str(port)).replace("{root}", str(prefix / "www"))
    user = "user root root;" if os.geteuid() == 0 else ""
    conf = prefix / "nginx.conf"
    conf.write_text(_NGINX_CONF.format(user=user, prefix=prefix, server=server))
    daemon = subprocess.Popen(
        [nginx, "-p", str(prefix), "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            raise _failed(daemon, prefix / "error.log", f"nginx exited ({daemon.returncode})")
        # The master listens before it forks its worker: both, or a bench that
        # reads the worker's CPU finds none.
        if _connects(port) and nginx_workers(daemon.pid):
            return daemon, port
        time.sleep(0.02)  # polling a port another process opens: nothing to wait on
    raise _failed(daemon, prefix / "error.log", "nginx did not start listening")


def nginx_workers(master: int) -> list[int]:
    """The pids of nginx's workers (the master's children)."""
    with open(f"/proc/{master}/task/{master}/children") as children:
        return [int(pid) for pid in children.read().split()]


# -- rsync ----------------------------------------------------------------------------------


def start_rsync_daemon(root: Path, work: Path) -> tuple[subprocess.Popen[bytes], int]:
    """An rsync daemon serving ``root`` read-only as module ``repo`` (``RSYNC_MODULE``) on a
    free port of 127.0.0.1; its configuration and pid file in ``work``."""
    rsync = _needed("rsync", "rsync")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    config = work / "rsyncd.conf"
    config.write_text(
        # As root the daemon would read as "nobody", who cannot enter the bench's 0700 folder.
        f"pid file = {work / 'rsyncd.pid'}\nuse chroot = no\n"
        f"uid = {os.getuid()}\ngid = {os.getgid()}\n"
        f"[{RSYNC_MODULE}]\n    path = {root}\n    read only = yes\n"
    )
    argv = [rsync, "--daemon", "--no-detach", f"--config={config}", f"--port={port}"]
    argv += [f"--address={HOST}"]
    daemon = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"rsync://{HOST}:{port}/{RSYNC_MODULE}/"
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:  # bounded: the daemon answers a listing once up
        listed = subprocess.run([rsync, url], capture_output=True, check=False)
        if listed.returncode == 0:
            return daemon, port
        time.sleep(0.05)
    stop(daemon)
    raise RuntimeError("the rsync daemon did not start")


# -- redis ----------------------------------------------------------------------------------


def start_redis(work: Path, *, max_clients: int = 10_000) -> tuple[subprocess.Popen[bytes], int]:
    """redis-server on a free port of 127.0.0.1, nothing saved, its log in ``work``."""
    redis = _needed("redis-server", "redis-server")
    work.mkdir(parents=True, exist_ok=True)
    port = free_port()
    argv = [redis, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly"]
    argv += ["no", "--maxclients", str(max_clients + 16), "--protected-mode", "no"]
    argv += ["--dir", str(work)]
    log = work / "redis.log"
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + _STARTUP_SECONDS
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((HOST, port), 1) as sock:
            sock.sendall(b"PING\r\n")
            if sock.recv(64).startswith(b"+PONG"):
                return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    raise _failed(proc, log, "redis-server did not start")


# -- CPU quotas ------------------------------------------------------------------------------

_CGROUP_V1_CPU = Path("/sys/fs/cgroup/cpu")  # cgroup v1: the cpu controller's own tree
_CGROUP_V2 = Path("/sys/fs/cgroup")
_QUOTA_PERIOD_US = 10_000  # short: a process over its share waits at most this long


class CpuQuota:
    """A cgroup of its own, limited to ``cores`` of CPU time (cgroup v1 or v2)."""

    def __init__(self, path: Path, v1: bool) -> None:
        self.path = path
        self._v1 = v1

    @classmethod
    def make(cls, name: str, cores: float) -> CpuQuota | None:
        quota = max(1000, int(cores * _QUOTA_PERIOD_US))
        v1 = (_CGROUP_V1_CPU / "cpu.cfs_quota_us").exists()
        v2 = "cpu" in _read(_CGROUP_V2 / "cgroup.controllers").split()
        try:
            if v1:
                path = _CGROUP_V1_CPU / name
                path.mkdir(exist_ok=True)
                (path / "cpu.cfs_period_us").write_text(str(_QUOTA_PERIOD_US))
                (path / "cpu.cfs_quota_us").write_text(str(quota))
            elif v2:
                path = _CGROUP_V2 / name
                path.mkdir(exist_ok=True)
                (path / "cpu.max").write_text(f"{quota} {_QUOTA_PERIOD_US}")
            else:
                return None
        except OSError:
            return None
        return cls(path, v1)

    def add(self, pid: int) -> None:
        """Move the process (every thread of it) into the quota."""
        (self.path / "cgroup.procs").write_text(str(pid))

    def remove(self) -> None:
        """Give its processes back to the root group, and delete it."""
        root = _CGROUP_V1_CPU if self._v1 else _CGROUP_V2
        with contextlib.suppress(OSError):
            for pid in _read(self.path / "cgroup.procs").split():
                with contextlib.suppress(OSError):
                    (root / "cgroup.procs").write_text(pid)
            self.path.rmdir()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def print_table(rows: Sequence[Sequence[str]]) -> None:
    """Rows of cells, each column as wide as its widest cell, left-aligned."""
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        cells = (cell.ljust(width) for cell, width in zip(row, widths, strict=True))
        print("  ".join(cells).rstrip())
