"""The server's log: its format, and warnings that cannot flood it.

Importing it changes nothing: the process-wide set-up is
:func:`configure_logging`, which the command line calls.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import OrderedDict
from collections.abc import Callable

LOG_FORMAT = "[%(asctime)s] %(levelname)s: %(message)s"


def configure_logging(level: str | int = "INFO") -> None:
    """Log ``[YYYY-MM-DD HH:MM:SS,mmm] LEVEL: message`` lines to stderr.

    For the server's process only (the command line calls it): it also turns
    off what logging records for formats that name threads or processes,
    which ours does not (the logging HOWTO's "Optimization"). Source lines
    are still looked up: the only switch for that is private to logging, and
    the lookup costs a few microseconds for the two lines a client logs.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
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
    """Logs at most ``burst`` warnings of one kind from one source per ``period`` seconds.

    A connection storm or a flood of bad clients must not flood the log: past
    the burst, warnings of that kind from that source are counted, and one
    line says how many were suppressed when the period ends. Each source has
    its own burst, so decoys from one source cannot hide another's lines (the
    first warning from each source is always logged, which is what a
    fail2ban-style reader needs). At most ``max_sources`` (kind, source)
    windows are kept; the least recently used is reported and dropped first.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        burst: int = 20,
        period: float = 10.0,
        max_sources: int = 4096,
        clock: Callable[[], float] = time.monotonic,
        call_later: Callable[[float, Callable[[], None]], object] | None = None,
    ) -> None:
        self._logger = logger
        self._burst = burst
        self._period = period
        self._max_sources = max_sources
        self._clock = clock
        self._call_later = call_later
        self._windows: OrderedDict[_Key, _Window] = OrderedDict()

    def __len__(self) -> int:
        """How many (kind, source) windows are kept now: at most ``max_sources``."""
        return len(self._windows)

    def warning(self, kind: str, message: str, *args: object, source: str | None = None) -> None:
        self.log(logging.WARNING, kind, message, *args, source=source)

    def info(self, kind: str, message: str, *args: object, source: str | None = None) -> None:
        """As :meth:`warning`, at INFO: what was refused, worth reading, not acting on."""
        self.log(logging.INFO, kind, message, *args, source=source)

    def log(
        self, level: int, kind: str, message: str, *args: object, source: str | None = None
    ) -> None:
        now = self._clock()
        key = (kind, source)
        window = self._windows.get(key)
        if window is None or now - window.start >= self._period:
            if window is not None:
                self._report(key, window)
            window = self._windows[key] = _Window(now, level)
            self._forget_oldest()
        self._windows.move_to_end(key)
        if window.logged < self._burst:
            window.logged += 1
            self._logger.log(level, message, *args)
            return
        window.suppressed += 1
        if window.suppressed == 1 and self._call_later is not None:
            self._call_later(window.start + self._period - now, lambda: self._expire(key, window))

    def flush(self) -> None:
        """Report what is suppressed now (at shutdown)."""
        for key, window in list(self._windows.items()):
            self._report(key, window)
        self._windows.clear()

    def _forget_oldest(self) -> None:
        while len(self._windows) > self._max_sources:
            key, window = self._windows.popitem(last=False)
            self._report(key, window)

    def _expire(self, key: _Key, window: _Window) -> None:
        if self._windows.get(key) is window:
            del self._windows[key]
            self._report(key, window)

    def _report(self, key: _Key, window: _Window) -> None:
        if window.suppressed:
            kind, source = key
            where = f" from {source}" if source is not None else ""
            self._logger.log(
                window.level,
                "%d more '%s' %s%s suppressed in %.0f s",
                window.suppressed,
                kind,
                "warnings" if window.level >= logging.WARNING else "messages",
                where,
                self._period,
            )
            window.suppressed = 0


_Key = tuple[str, str | None]


class _Window:
    __slots__ = ("start", "level", "logged", "suppressed")

    def __init__(self, start: float, level: int) -> None:
        self.start = start
        self.level = level  # of the kind's lines, and of the line that counts the rest
        self.logged = 0
        self.suppressed = 0
