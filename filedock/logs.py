"""The server's log: its format, and warnings that cannot flood it."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

LOG_FORMAT = "[%(asctime)s] %(levelname)s: %(message)s"


def configure_logging(level: str | int = "INFO") -> None:
    """Log ``[YYYY-MM-DD HH:MM:SS,mmm] LEVEL: message`` lines to stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger("filedock")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class WarningLimiter:
    """Logs at most ``burst`` warnings of one kind per ``period`` seconds.

    A connection storm or a flood of bad clients must not flood the log: past
    the burst, warnings of that kind are counted, and one line says how many
    were suppressed when the period ends.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 20,
        period: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        call_later: Callable[[float, Callable[[], None]], object] | None = None,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._period = period
        self._clock = clock
        self._call_later = call_later
        self._windows: dict[str, _Window] = {}

    def warning(self, kind: str, message: str, *args: object) -> None:
        now = self._clock()
        window = self._windows.get(kind)
        if window is None or now - window.start >= self._period:
            if window is not None:
                self._report(kind, window)
            window = self._windows[kind] = _Window(now)
        if window.logged < self._burst:
            window.logged += 1
            self._logger.warning(message, *args)
            return
        window.suppressed += 1
        if window.suppressed == 1 and self._call_later is not None:
            self._call_later(window.start + self._period - now, lambda: self._expire(kind, window))

    def flush(self) -> None:
        """Report what is suppressed now (at shutdown)."""
        for kind, window in list(self._windows.items()):
            self._report(kind, window)
        self._windows.clear()

    def _expire(self, kind: str, window: _Window) -> None:
        if self._windows.get(kind) is window:
            del self._windows[kind]
            self._report(kind, window)

    def _report(self, kind: str, window: _Window) -> None:
        if window.suppressed:
            self._logger.warning(
                "%d more '%s' warnings suppressed in %.0f s", window.suppressed, kind, self._period
            )
            window.suppressed = 0


class _Window:
    __slots__ = ("start", "logged", "suppressed")

    def __init__(self, start: float) -> None:
        self.start = start
        self.logged = 0
        self.suppressed = 0
