"""The server's log: its formats (text, json), its file, its writer, and warnings
that cannot flood it.

Importing it changes nothing: the process-wide set-up is
:func:`configure_logging`, which the command line calls. No line is written on
the event loop: the loop formats each line and hands it to a
:class:`LogWriter`, whose thread writes them in order, a batch at a time.
"""

from __future__ import annotations

import io
import json
import logging
import os
import sys
import threading
import time
from collections import OrderedDict, deque
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
) -> LogWriter:
    """Log ``[YYYY-MM-DD HH:MM:SS,mmm] LEVEL: message`` lines (or json ones) to stderr,
    or to ``log_file``, appended to, through one :class:`LogWriter` (returned: its
    :meth:`LogWriter.reopen` is SIGHUP's, its :meth:`LogWriter.close` the last
    word). With a file, errors are shown on stderr as well, so a server that
    cannot start says why where it was started. Raises OSError if the file
    cannot be opened.

    For the server's process only (the command line calls it): it also turns
    off what logging records for formats that name threads or processes,
    which ours does not (the logging HOWTO's "Optimization"). Source lines
    are still looked up: the only switch for that is private to logging, and
    the lookup costs a few microseconds for the two lines a client logs.
    """
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    formatter = JsonFormatter() if log_format == "json" else _Formatter()
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(formatter)
    outputs: list[logging.StreamHandler[Any]] = [stderr]
    file_handler = None
    if log_file is not None:
        file_handler = LogFile(log_file)
        file_handler.setFormatter(formatter)
        stderr.setLevel(logging.ERROR)
        outputs.insert(0, file_handler)
    root = logging.getLogger("filedock")
    for old in root.handlers:
        if isinstance(old, LogWriter):
            old.close()  # (configured again: its lines are out before the new writer's)
    writer = LogWriter(outputs, file_handler)
    root.handlers[:] = [writer]
    root.setLevel(level)
    root.propagate = False
    return writer


def announce(logger: logging.Logger, message: str, *args: object, **fields: object) -> None:
    """Log ``message`` at INFO whatever the level: the line that names the port
    a server listens on must reach the scripts that read it, even with
    ``--log-level WARNING``."""
    fn, lno, func, sinfo = logger.findCaller(stacklevel=2)
    record = logger.makeRecord(
        logger.name, logging.INFO, fn, lno, message, args, None, func, fields, sinfo
    )
    logger.handle(record)  # (handle() skips the level check; handlers and filters still apply)
    for handler in logging.getLogger("filedock").handlers:
        if isinstance(handler, LogWriter):
            handler.flush()  # out before the caller goes on: scripts wait for this line


class LineTemplate:
    """The records of one line that every session logs, made by copying one record.

    A LogRecord's ``__init__`` works out its source's file and module names
    and more on every call: for a line logged twice a session that was the
    larger part of what the line cost the loop. The copy takes what does not
    change from a record made once, and sets the time, the arguments and the
    fields. (Made through the logger's ``makeRecord``, so a record factory
    set with ``logging.setLogRecordFactory`` still makes the first.)
    """

    def __init__(
        self, logger: logging.Logger, level: int, message: str, source: str, func: str
    ) -> None:
        self.logger = logger
        self.level = level
        self._message = message
        self._source = source  # the file, and the function, that log the line
        self._func = func
        self._fixed: dict[str, object] | None = None  # made at the first line
        self._kind = logging.LogRecord
        self._start = 0.0  # logging's start, for relativeCreated

    def log(self, args: tuple[object, ...], fields: Mapping[str, object]) -> None:
        """Log the line with ``args`` and ``fields``, if its logger takes its level."""
        if self.logger.isEnabledFor(self.level):
            self.logger.handle(self.record(args, fields))

    def record(self, args: tuple[object, ...], fields: Mapping[str, object]) -> logging.LogRecord:
        fixed = self._fixed
        if fixed is None:
            first = self.logger.makeRecord(
                self.logger.name, self.level, self._source, 0, self._message, (), None, self._func
            )
            fixed = self._fixed = dict(first.__dict__)
            self._kind = type(first)
            self._start = first.created - first.relativeCreated / 1000
        record = self._kind.__new__(self._kind)
        values = record.__dict__
        values.update(fixed)
        now = time.time()
        values["created"] = now
        values["msecs"] = int((now - int(now)) * 1000) + 0.0  # (as LogRecord does)
        values["relativeCreated"] = (now - self._start) * 1000
        if logging.logThreads:
            values["thread"] = threading.get_ident()
            values["threadName"] = threading.current_thread().name
        values["args"] = args
        values.update(fields)
        return record


class LogWriter(logging.Handler):
    """The log's one handler: what the event loop logs costs it a record, its
    lines formatted and an append; a thread writes them, in order, one write
    per output per batch.

    The lines are formatted where they are logged, as the standard library's
    ``QueueHandler`` does: a line says what its arguments were when it was
    logged, and the thread needs the interpreter's lock only to take a batch.
    (A thread that formatted them took that lock from the loop thousands of
    times a second in a burst of clients, which cost more than it saved.)
    A batch is one buffer an output, each line copied in as it is formatted:
    a few KiB of text, not hundreds of small objects kept among the clients'.

    The thread wakes at the first line of a batch, then gathers for up to
    ``gather`` seconds, or until ``batch`` lines wait, so a busy server wakes
    it a few dozen times a second, not once a line.

    :meth:`flush` waits until what was logged before it is written (the
    Starting line, which scripts wait for; the shutdown); :meth:`reopen`
    reopens the log file between the lines before it and those after (its own
    line first). Once closed, lines are written at once, on the caller's
    thread.
    """

    def __init__(
        self,
        outputs: list[logging.StreamHandler[Any]],
        file: LogFile | None = None,
        *,
        gather: float = 0.05,
        # Lines held at most: 64 woke the thread so often in a burst that it
        # cost the loop more than it saved; 1024 held so many that 1,000 new
        # clients kept 0.1 KiB each more memory (bench/README.md, "Sessions").
        batch: int = 256,
    ) -> None:
        super().__init__()
        self.outputs = outputs
        self.file = file  # reopened on SIGHUP
        self._gather = gather
        self._batch = batch
        # Batches (a buffer an output) and the calls (a reopen, a flush's signal)
        # to run between them; lines go to the last batch until the thread takes it.
        self._queue: deque[list[io.StringIO] | Callable[[], None]] = deque()
        self._open: list[io.StringIO] | None = None  # the batch lines go to now
        self._held = 0  # lines in the queue's batches
        self._lock = threading.Lock()  # the queue and the open batch: the loop's and the thread's
        self._wake = threading.Event()  # set when the queue has something for the thread
        self._hurry = threading.Event()  # flush, close or a full batch: write without gathering
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="filedock-log", daemon=True)
        self._thread.start()

    def handle(self, record: logging.LogRecord) -> bool:
        # No lock, no emit() call: an append to a deque is atomic. The thread's
        # own lines (a reopen's) are written at once, where the call runs.
        if self._closed or threading.get_ident() == self._thread.ident:
            return super().handle(record)
        if self.filters and not self.filter(record):
            return False
        lines = self._lines(record)
        with self._lock:
            batch = self._open
            if batch is None:
                batch = self._open = [io.StringIO() for _ in self.outputs]
                self._queue.append(batch)
            for buffer, line in zip(batch, lines, strict=True):
                if line is not None:
                    buffer.write(line)
            self._held += 1
            held = self._held
        if not self._wake.is_set():  # (set once per batch: the thread clears it, then drains)
            self._wake.set()
        elif held >= self._batch and not self._hurry.is_set():
            self._hurry.set()  # enough for one write: lines held cost memory
        return True

    def _lines(self, record: logging.LogRecord) -> list[str | None]:
        """``record`` formatted for each output (None for one below its level)."""
        lines: list[str | None] = []
        for output in self.outputs:
            line = None
            if record.levelno >= output.level:
                try:
                    line = output.format(record) + output.terminator
                except Exception:
                    output.handleError(record)
            lines.append(line)
        return lines

    def emit(self, record: logging.LogRecord) -> None:
        """Write ``record`` now, on this thread (once closed)."""
        self._write_lines(self._lines(record))

    def reopen(self) -> None:
        """Reopen the log file (see :meth:`LogFile.reopen`) once the lines logged
        before are written to the one open."""
        if self.file is not None:
            self._call(self.file.reopen)

    def flush(self) -> None:
        """Return once what was logged before is written (or the thread is gone)."""
        thread = self._thread
        if self._closed or not thread.is_alive() or thread is threading.current_thread():
            return
        done = threading.Event()
        self._call(done.set)
        self._hurry.set()
        done.wait(timeout=10.0)  # (a stuck disk must not hang the server's shutdown for ever)

    def close(self) -> None:
        """Write what is queued, stop the thread; later records are written at once."""
        if not self._closed:
            self._closed = True
            self._hurry.set()
            self._wake.set()
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=10.0)
            self._write(self._take())  # (anything the thread left)
        super().close()

    def _call(self, call: Callable[[], None]) -> None:
        with self._lock:
            self._open = None  # lines logged after the call go to a batch after it
            self._queue.append(call)
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait()
            self._hurry.wait(self._gather)
            self._wake.clear()  # before the drain: what comes after sets it again
            self._hurry.clear()
            self._write(self._take())
            if self._closed:
                return

    def _take(self) -> list[list[io.StringIO] | Callable[[], None]]:
        with self._lock:
            taken = list(self._queue)
            self._queue.clear()
            self._open, self._held = None, 0
        return taken

    def _write(self, taken: list[list[io.StringIO] | Callable[[], None]]) -> None:
        """Each batch of ``taken`` in one write an output; a call runs where it was queued."""
        for item in taken:
            if isinstance(item, list):
                self._write_lines([buffer.getvalue() for buffer in item])
            else:
                item()

    def _write_lines(self, texts: list[str | None]) -> None:
        """``texts[i]`` to output ``i``, each in one write."""
        for output, text in zip(self.outputs, texts, strict=True):
            if not text:
                continue
            with output.lock:  # type: ignore[union-attr]  # (set by Handler.__init__)
                try:
                    output.stream.write(text)
                    output.stream.flush()
                except Exception:
                    _write_failed(output)


def _write_failed(output: logging.StreamHandler[Any]) -> None:
    """Tell of a write that failed as logging does (``logging.raiseExceptions``):
    a line on stderr, never an exception into the writer's thread."""
    record = logging.LogRecord("filedock", logging.ERROR, __file__, 0, "log write", None, None)
    output.handleError(record)


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
    """:data:`LOG_FORMAT`'s lines, made with one f-string where a line has no
    traceback, and the text of the time once a second, not once a line."""

    def __init__(self) -> None:
        super().__init__(LOG_FORMAT)
        self._second = -1
        self._second_text = ""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info:
            return super().format(record)
        record.message = message = record.getMessage()
        return f"[{self.formatTime(record)}] {record.levelname}: {message}"

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
