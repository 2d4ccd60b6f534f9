"""Long output through a pager, on a terminal only, as git does.

The pager is ``FILEDOCK_PAGER``, else ``PAGER``, else ``less``; empty or
``cat`` means none. Like git, it is run by the shell (so ``PAGER='less -S'``
works) with ``LESS=FRX`` and ``LV=-c`` unless those are set: less then
keeps colours, leaves the screen as it was, and quits by itself when the
text fits. Text that fits the terminal (with a line to spare for the next
prompt) is printed as it is, so short output looks the same with or
without a pager; output that is not a terminal is never paged.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
from collections.abc import Iterator, Mapping
from typing import TextIO

from .screen import display_width

DEFAULT_PAGER = "less"
# What git sets for less and lv when the user has not: quit if it fits (F),
# pass colours (R), do not clear the screen (X).
PAGER_ENVIRONMENT = {"LESS": "FRX", "LV": "-c"}

_SGR = re.compile(r"\x1b\[[0-9;]*m")  # colour codes take no columns
_NOT_FOUND = 127  # the shell's status for a command it cannot find


def pager_command(environ: Mapping[str, str] | None = None) -> str | None:
    """The pager the environment asks for; None for none (empty, or ``cat``)."""
    env = os.environ if environ is None else environ
    command = env.get("FILEDOCK_PAGER", env.get("PAGER", DEFAULT_PAGER)).strip()
    return None if command in ("", "cat") else command


class Pager:
    """Shows text on a terminal of ``height`` rows and ``width`` columns: as it is
    when it fits, through ``command`` when it does not."""

    def __init__(self, out: TextIO, command: str, height: int, width: int) -> None:
        self.out = out
        self.command = command
        self.height = height
        self.width = max(width, 1)

    @classmethod
    def for_stream(cls, out: TextIO, *, environ: Mapping[str, str] | None = None) -> Pager | None:
        """A pager for ``out`` if it is a terminal and one is wanted; else None."""
        command = pager_command(environ)
        try:
            if command is None or not out.isatty():
                return None
            size = os.get_terminal_size(out.fileno())
        except (OSError, ValueError):  # no size to be had, or a closed stream
            return None
        return cls(out, command, size.lines, size.columns)

    def fits(self, text: str) -> bool:
        """Whether ``text`` takes fewer rows than the terminal has (long lines wrap)."""
        rows = 0
        for line in text.splitlines():
            columns = display_width(_SGR.sub("", line))
            rows += max(1, -(-columns // self.width))
            if rows >= self.height:
                return False
        return True

    def show(self, text: str) -> None:
        if self.fits(text):
            self.out.write(text)
            self.out.flush()
            return
        self.out.flush()
        if not self._page(text):
            self.out.write(text)  # no pager to be had: the text as it is
            self.out.flush()

    def _page(self, text: str) -> bool:
        """Run the pager on ``text``; False if it could not be started."""
        env = {**PAGER_ENVIRONMENT, **os.environ}  # the user's LESS wins, as in git
        try:
            pager = subprocess.Popen(
                self.command,
                shell=True,
                stdin=subprocess.PIPE,
                stdout=self.out.fileno(),
                env=env,
                encoding=getattr(self.out, "encoding", None) or "utf-8",
                errors="replace",
            )
        except OSError:
            return False
        assert pager.stdin is not None
        with _ctrl_c_for_the_pager():
            try:
                pager.stdin.write(text)
                pager.stdin.close()
            except BrokenPipeError:
                pass  # the person quit the pager before the end: nothing more to show
            status = pager.wait()
        return status != _NOT_FOUND


@contextlib.contextmanager
def _ctrl_c_for_the_pager() -> Iterator[None]:
    """Ctrl-C belongs to the pager while it runs (less stops a search with it);
    this process, in the same process group, must not die of it meanwhile."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
