"""What a test may not leave behind: file descriptors, threads, child processes.

The model is pyftpdlib's ``assert_free_resources``: take a snapshot before a
test and compare after it. Things that close asynchronously (a worker thread
finishing its last job, a child being reaped) get a short grace, polled
against a deadline.
"""

from __future__ import annotations

import gc
import os
import threading
import time
from dataclasses import dataclass

GRACE = 3.0  # seconds for what a test closed to be gone


def _open_fds() -> dict[int, str]:
    """Each open descriptor and what it points at (``socket:[…]``, a path, …)."""
    fds: dict[int, str] = {}
    for entry in os.listdir("/proc/self/fd"):
        try:
            fds[int(entry)] = os.readlink(f"/proc/self/fd/{entry}")
        except FileNotFoundError:  # the listing's own descriptor, closed by now
            continue
    return fds


def _children() -> set[int]:
    """The process ids of this process's children, zombies included (not yet waited)."""
    pids: set[int] = set()
    for task in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{task}/children") as children:
                pids.update(int(pid) for pid in children.read().split())
        except FileNotFoundError:  # the thread ended while we looked
            continue
    return pids


def _describe_child(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat") as stat:
            state = stat.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return f"{pid} (gone)"
    return f"{pid} [{'zombie: not waited for' if state == 'Z' else state}] {command}"


@dataclass(frozen=True)
class Resources:
    fds: dict[int, str]
    threads: frozenset[threading.Thread]
    children: frozenset[int]

    @classmethod
    def now(cls) -> Resources:
        return cls(_open_fds(), frozenset(threading.enumerate()), frozenset(_children()))

    def leaked_since(self, before: Resources) -> list[str]:
        """One line for each thing open now that was not open in ``before``."""
        leaks = [
            f"file descriptor {fd} -> {target}"
            for fd, target in sorted(self.fds.items())
            if before.fds.get(fd) != target
        ]
        leaks += [
            f"thread {thread.name!r} ({type(thread).__name__})"
            for thread in self.threads - before.threads
            if thread.is_alive()
        ]
        new_children = sorted(self.children - before.children)
        leaks += [f"child process {_describe_child(pid)}" for pid in new_children]
        return leaks


def leaks_after(before: Resources, grace: float | None = None) -> list[str]:
    """What is still open after ``grace`` seconds of polling (empty: nothing leaked)."""
    deadline = time.monotonic() + (GRACE if grace is None else grace)
    while True:
        leaks = Resources.now().leaked_since(before)
        if not leaks or time.monotonic() > deadline:
            return leaks
        # What nothing can reach any more is not a leak: let its finalizers run.
        gc.collect()
        time.sleep(0.01)
