"""The server's log: its format, and warnings that cannot flood it."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable

LOG_FORMAT = "[%(asctime)s] %(levelname)s: %(message)s"


def configure_logging(level: str | int = "INFO") -> None:
    """Log ``[YYYY-MM-DD HH:MM:SS,mmm] LEVEL: message`` lines to stderr.

    For the server's process: it also turns off what logging records for
    formats that name threads, processes or source lines, which ours does not
    (the logging HOWTO's "Optimization"); two lines per client are logged.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no stack walk to find the caller's file and line
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Formatter(LOG_FORMAT))
    root = logging.getLogger("filedock")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


class _Formatter(logging.Formatter):
    """A formatter that makes the text of the time once a second, not once a line."""

    def __init__(self, fmt: str) -> None:
        super().__init__(fmt)
        self._second = -1
        self._second_text = ""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        second = int(record.created)
        if second != self._second or datefmt is not None:
            text = time.strftime(datefmt or self.default_time_format, self.converter(second))
            if datefmt is not None:
                return text
            self._second, self._second_text = second, text
        return f"{self._second_text},{int(record.msecs):03d}"


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
