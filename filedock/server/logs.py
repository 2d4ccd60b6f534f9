"""The server's log: its formats (text, json), its file, and warnings that cannot flood it.

Importing it changes nothing: the process-wide set-up is
:func:`configure_logging`, which the command line calls.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from datetime import datetime
from io import TextIOWrapper
from typing import Any

LOG_FORMAT = "[%(asctime)s] %(levelname)s: %(message)s"

# The structured fields a line may carry in its record's ``extra``: the json
# format writes those a line has as keys of its object.
FIELDS = (
    *("event", "client", "address", "path", "size", "sha256", "offset"),
    *("bytes", "seconds", "rate", "result", "reason"),
)

# A log file is made readable by its owner's group, not by everyone: it names
# the clients' addresses and the files they fetch. (The umask may take more.)
LOG_FILE_MODE = 0o640


def configure_logging(
    level: str | int = "INFO", *, log_file: str | None = None, log_format: str = "text"
) -> LogFile | None:
    """Log ``[YYYY-MM-DD HH:MM:SS,mmm] LEVEL: message`` lines (or json ones) to stderr,
    or to ``log_file``, appended to; the file's handler is returned, for its
    :meth:`LogFile.reopen`. With a file, errors are shown on stderr as well, so a
    server that cannot start says why where it was started. Raises OSError if the
    file cannot be opened.

    For the server's process only (the command line calls it): it also turns
    off what logging records for formats that name threads or processes,
    which ours does not (the logging HOWTO's "Optimization"). Source lines
    are still looked up: the only switch for that is private to logging, and
    the lookup costs a few microseconds for the two lines a client logs.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    formatter = JsonFormatter() if log_format == "json" else _Formatter(LOG_FORMAT)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    handlers: list[logging.Handler] = [stderr]
    file_handler = None
    if log_file is not None:
        file_handler = LogFile(log_file)
        file_handler.setFormatter(formatter)
        stderr.setLevel(logging.ERROR)
        handlers.insert(0, file_handler)
    root = logging.getLogger("filedock")
    root.handlers[:] = handlers
    root.setLevel(level)
    root.propagate = False
    return file_handler


def announce(logger: logging.Logger, message: str, *args: object, **fields: object) -> None:
    """Log ``message`` at INFO whatever the level: the line that names the port
    a server listens on must reach the scripts that read it, even with
    ``--log-level WARNING``."""
    fn, lno, func, sinfo = logger.findCaller(stacklevel=2)
    record = logger.makeRecord(
        logger.name, logging.INFO, fn, lno, message, args, None, func, fields, sinfo
    )
    logger.handle(record)  # (handle() skips the level check; handlers and filters still apply)


class LogFile(logging.FileHandler):
    """Appends to a file made :data:`LOG_FILE_MODE`; :meth:`reopen` starts a new one
    where the old was, for logrotate (which renames the file, then sends SIGHUP)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, mode="a", encoding="utf-8")

    def _open(self) -> TextIOWrapper:
        flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC
        fd = os.open(self.baseFilename, flags, LOG_FILE_MODE)
        return open(fd, "a", encoding=self.encoding, errors=self.errors)

    def reopen(self) -> None:
        """Write to the file at the path from now on; if it cannot be opened, say so
        and keep writing to the one open."""
        log = logging.getLogger("filedock.server")
        try:
            stream = self._open()
        except OSError as exc:
            log.error(
                "Cannot reopen the log file %s: %s (still writing to the one open)",
                self.baseFilename,
                exc.strerror or exc,
            )
            return
        old = self.setStream(stream)
        if old is not None:
            old.close()
        log.info("Reopened the log file %s", self.baseFilename)


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ``time`` (ISO 8601 with the UTC offset), ``level``,
    ``message`` (the text line's), and the :data:`FIELDS` the line has."""

    def format(self, record: logging.LogRecord) -> str:
        when = datetime.fromtimestamp(record.created).astimezone()
        line: dict[str, object] = {
            "time": when.isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "message": record.getMessage(),
        }
        values: Mapping[str, object] = record.__dict__
        for name in FIELDS:
            value = values.get(name)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line)


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

    def warning(self, kind: str, message: str, *args: object, **where: Any) -> None:
        """:meth:`log` at WARNING (``where``: its ``source`` and ``extra``)."""
        self.log(logging.WARNING, kind, message, *args, **where)

    def info(self, kind: str, message: str, *args: object, **where: Any) -> None:
        """:meth:`log` at INFO: what was refused, worth reading, not acting on."""
        self.log(logging.INFO, kind, message, *args, **where)

    def log(
        self,
        level: int,
        kind: str,
        message: str,
        *args: object,
        source: str | None = None,
        extra: Mapping[str, object] | None = None,
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
            self._logger.log(level, message, *args, extra=extra)
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
