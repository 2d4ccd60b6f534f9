"""Two names trading places in a tight loop, in a child process, while a test walks them.

A child process and not a thread: a thread takes turns with the test under
the GIL, each handing over at the other's system calls, and those turns can
fall into step with a walk so that every walk sees the same side of the swap
(on a busy machine, 3000 walks once met the symlink not once). A process
swaps at the kernel's pace, whatever the test is doing.

Run as a script (standard library only, so it starts fast):
``swapper.py ONE TWO ROUNDS`` prints ``ready``, exchanges ONE and TWO up to
ROUNDS times or until SIGTERM, then prints how many exchanges it made.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def _renameat2() -> Callable[[str, str], None] | None:
    """``renameat2(RENAME_EXCHANGE)`` through libc, or None where it is missing."""
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is None:
        return None
    at_fdcwd, rename_exchange = -100, 2

    def exchange(one: str, two: str) -> None:
        if func(at_fdcwd, os.fsencode(one), at_fdcwd, os.fsencode(two), rename_exchange):
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))

    try:
        probe = Path(tempfile.mkdtemp())
        (probe / "a").mkdir()
        os.symlink("a", probe / "b")
        exchange(str(probe / "a"), str(probe / "b"))
    except OSError:
        return None
    finally:
        for name in ("a", "b"):
            path = probe / name
            path.unlink() if path.is_symlink() else path.rmdir()
        probe.rmdir()
    return exchange


def _swap_by_renames(one: str, two: str) -> None:
    """The same exchange in three renames, where renameat2 is missing."""
    spare = one + ".swap"
    os.rename(one, spare)
    os.rename(two, one)
    os.rename(spare, two)


def _swap(one: str, two: str, rounds: int) -> int:
    """Exchange ``one`` and ``two`` up to ``rounds`` times or until SIGTERM; how many done."""
    stopping: list[int] = []
    signal.signal(signal.SIGTERM, lambda signum, _frame: stopping.append(signum))
    exchange = _renameat2() or _swap_by_renames
    print("ready", flush=True)
    done = 0
    while done < rounds and not stopping:  # an exchange under way is always finished
        try:
            exchange(one, two)
        except OSError:
            continue
        done += 1
    return done


class Swapper:
    """``with Swapper(one, two, rounds):`` the two names trade places until the block ends."""

    def __init__(self, one: Path, two: Path, rounds: int) -> None:
        self._command = [sys.executable, __file__, str(one), str(two), str(rounds)]
        self._proc: subprocess.Popen[str] | None = None
        self._done: int | None = None

    def __enter__(self) -> Swapper:
        self._proc = subprocess.Popen(self._command, stdout=subprocess.PIPE, text=True)
        assert self._proc.stdout is not None
        ready = self._proc.stdout.readline()
        if ready != "ready\n":
            self.stop()
            raise AssertionError(f"the swapper did not start: {ready!r}")
        return self

    @property
    def done(self) -> int:
        """How many exchanges were made (this stops the swapping)."""
        return self.stop()

    def stop(self) -> int:
        if self._done is None:
            assert self._proc is not None
            self._proc.terminate()
            output, _ = self._proc.communicate(timeout=10)
            self._done = int(output.split()[-1]) if output.strip() else 0
        return self._done

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


if __name__ == "__main__":
    print(_swap(sys.argv[1], sys.argv[2], int(sys.argv[3])), flush=True)
