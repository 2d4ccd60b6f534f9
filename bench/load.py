#!/usr/bin/env python3
"""The benchmark's load generator: a separate process driving plain non-blocking sockets.

``python3 bench/load.py '<json spec>'`` runs one measurement against one server
and talks to its parent (bench/run.py) in lines: it prints a JSON object at
the end of each phase and waits for ``go`` on stdin before the next, so the
parent can read the server's CPU time and memory between phases while nothing
is in flight. The load is fixed (a number of requests or sessions), so the
server's CPU time divided by that number does not depend on how fast this
process is; only the wall-clock rates do.

Modes (``spec["mode"]``):

``requests``  ``conns`` connections, greeted first (phase ``ready``); then
              ``total`` requests spread over them, ``depth`` in flight on each
              (1 = round trips, more = pipelined) (phase ``done``).
``sessions``  ``total`` short sessions (connect, the ``session`` script, close),
              ``wave`` at once (1 = one after another) (phase ``done``).
``scale``     ``conns`` connections opened and greeted (phase ``greeted``), each
              answers one ``request`` (``pinged``), then the ``queries`` are timed
              ``repeat`` times each on one of them (``queries``); all stay open
              until the last ``go``.

A server's dialect is in the spec: ``greeting`` (steps run on every new
connection before the measured work), ``request`` (one request line, answered
by one line) and ``session`` (the steps of one short session). A step is
``[send, lines, prefix]``: send these bytes, then read ``lines`` lines, the
first of which must start with ``prefix``.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import select
import socket
import sys
import time
from typing import Any

Step = tuple[bytes, int, bytes]

_RECV = 256 * 1024


class LoadError(RuntimeError):
    pass


def _steps(raw: list[list[Any]]) -> list[Step]:
    return [(send.encode(), int(lines), prefix.encode()) for send, lines, prefix in raw]


class _Conn:
    __slots__ = ("sock", "fd", "step", "need", "buf", "connected")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self.step = -1
        self.need = 0
        self.buf = b""
        self.connected = False


def run_scripts(
    host: str,
    port: int,
    count: int,
    steps: list[Step],
    concurrency: int,
    *,
    keep: bool = False,
) -> list[socket.socket]:
    """Open ``count`` connections, at most ``concurrency`` of them unfinished at a time,
    and run ``steps`` on each. Returns the sockets when ``keep``; closes them otherwise."""
    poller = select.epoll()
    live: dict[int, _Conn] = {}
    kept: list[socket.socket] = []
    started = finished = 0

    def advance(conn: _Conn) -> bool:
        """Send the next step's bytes; True when the script is over."""
        while True:
            conn.step += 1
            if conn.step == len(steps):
                return True
            send, lines, _ = steps[conn.step]
            conn.need = lines
            conn.buf = b""
            if send:
                conn.sock.sendall(send)
            if lines:
                return False

    def finish(conn: _Conn) -> None:
        nonlocal finished
        poller.unregister(conn.fd)
        del live[conn.fd]
        finished += 1
        if keep:
            kept.append(conn.sock)
        else:
            conn.sock.close()

    while finished < count:
        while started < count and len(live) < concurrency:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            code = sock.connect_ex((host, port))
            if code not in (0, errno.EINPROGRESS):
                sock.close()
                raise LoadError(f"connect: {os.strerror(code)}")
            conn = _Conn(sock)
            live[conn.fd] = conn
            poller.register(conn.fd, select.EPOLLOUT | select.EPOLLIN)
            started += 1
        for fd, _ in poller.poll(5.0) or _timeout(live):
            conn = live[fd]
            if not conn.connected:
                code = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise LoadError(f"connect: {os.strerror(code)}")
                conn.connected = True
                poller.modify(fd, select.EPOLLIN)
                if advance(conn):
                    finish(conn)
                    continue
            try:
                data = conn.sock.recv(_RECV)
            except BlockingIOError:
                continue
            if not data:
                if conn.need:
                    raise LoadError(f"connection closed in step {conn.step}: {conn.buf[:200]!r}")
                continue
            if len(conn.buf) < 256:
                conn.buf += data
            conn.need -= data.count(b"\n")
            if conn.need <= 0:
                prefix = steps[conn.step][2]
                if not conn.buf.startswith(prefix):
                    raise LoadError(f"expected {prefix!r}, got {conn.buf[:200]!r}")
                if advance(conn):
                    finish(conn)
    poller.close()
    return kept


def _timeout(live: dict[int, _Conn]) -> list[tuple[int, int]]:
    raise LoadError(f"no progress for 5 s with {len(live)} connections in flight")


def hammer(socks: list[socket.socket], total: int, depth: int, request: bytes) -> None:
    """``total`` requests over ``socks``, ``depth`` in flight on each; returns when all
    are answered (one line each)."""
    poller = select.epoll()
    count = len(socks)
    by_fd: dict[int, socket.socket] = {}
    unsent: dict[int, int] = {}
    for index, sock in enumerate(socks):
        share = total // count + (1 if index < total % count else 0)
        if not share:
            continue
        fd = sock.fileno()
        by_fd[fd] = sock
        first = min(depth, share)
        sock.sendall(request * first)
        unsent[fd] = share - first
        poller.register(fd, select.EPOLLIN)
    unanswered = total
    while unanswered:
        events = poller.poll(10.0)
        if not events:
            raise LoadError(f"no reply for 10 s, {unanswered} requests unanswered")
        for fd, _ in events:
            sock = by_fd[fd]
            try:
                data = sock.recv(_RECV)
            except BlockingIOError:
                continue
            if not data:
                raise LoadError("the server closed a connection")
            answered = data.count(b"\n")
            unanswered -= answered
            more = unsent[fd]
            if more and answered:
                more = min(more, answered)
                sock.sendall(request * more)
                unsent[fd] -= more
    poller.close()


def query(sock: socket.socket, request: bytes, kind: str) -> float:
    """Seconds from sending ``request`` until its whole answer is in.

    ``kind``: ``line`` (one line), ``records`` (``WORD <n>`` then n lines) or
    ``bulk`` (a RESP bulk string: ``$<n>`` then n bytes and CRLF)."""
    sock.setblocking(True)
    sock.settimeout(30.0)
    start = time.perf_counter()
    sock.sendall(request)
    buf = bytearray()
    while b"\n" not in buf:
        buf += _recv(sock)
    head, _, rest = bytes(buf).partition(b"\n")
    if kind == "records":
        left = int(head.split()[1]) - rest.count(b"\n")
        while left > 0:
            left -= _recv(sock).count(b"\n")
    elif kind == "bulk":
        left = int(head[1:]) + 2 - len(rest)
        while left > 0:
            left -= len(_recv(sock))
    elapsed = time.perf_counter() - start
    sock.setblocking(False)
    return elapsed


def _recv(sock: socket.socket) -> bytes:
    data = sock.recv(_RECV)
    if not data:
        raise LoadError("the server closed the connection")
    return data


class Parent:
    """Phase reports to bench/run.py, each answered by ``go``."""

    def __init__(self) -> None:
        self._cpu = _own_cpu()

    def report(self, phase: str, **values: Any) -> None:
        cpu = _own_cpu()
        values.update(phase=phase, load_cpu=cpu - self._cpu)
        print(json.dumps(values), flush=True)
        if sys.stdin.readline().strip() != "go":
            raise SystemExit(0)  # the parent is gone or wants no more
        self._cpu = _own_cpu()


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def main() -> int:
    spec = json.loads(sys.argv[1])
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    host, port, mode = spec["host"], spec["port"], spec["mode"]
    greeting = _steps(spec.get("greeting", []))
    request = spec.get("request", "").encode()
    parent = Parent()
    if mode == "requests":
        conns = spec["conns"]
        socks = run_scripts(host, port, conns, greeting, conns, keep=True)
        parent.report("ready")
        start = time.perf_counter()
        hammer(socks, spec["total"], spec["depth"], request)
        parent.report("done", seconds=time.perf_counter() - start, count=spec["total"])
    elif mode == "sessions":
        session = _steps(spec["session"])
        total, wave = spec["total"], spec["wave"]
        parent.report("ready")
        start = time.perf_counter()
        if wave == 1:
            run_scripts(host, port, total, session, 1)
        else:
            done = 0
            while done < total:  # waves: `wave` sessions start together, all end
                batch = min(wave, total - done)
                run_scripts(host, port, batch, session, batch)
                done += batch
        parent.report("done", seconds=time.perf_counter() - start, count=total)
    elif mode == "scale":
        conns = spec["conns"]
        parent.report("ready")
        start = time.perf_counter()
        socks = run_scripts(host, port, conns, greeting, spec.get("pending", 500), keep=True)
        parent.report("greeted", seconds=time.perf_counter() - start, count=len(socks))
        start = time.perf_counter()
        hammer(socks, len(socks), 1, request)
        parent.report("pinged", seconds=time.perf_counter() - start, count=len(socks))
        times: dict[str, list[float]] = {}
        for name, line, kind in spec.get("queries", []):
            times[name] = [
                query(socks[0], line.encode(), kind) for _ in range(spec.get("repeat", 5))
            ]
        parent.report("queries", seconds=times)
        for sock in socks:
            sock.close()
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
