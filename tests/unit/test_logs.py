"""The log: a flood of warnings of one kind cannot flood it; its json lines, its file, and
the lines every client and transfer gets."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import stat
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import pytest

from filedock.server import client_log
from filedock.server.logs import (
    FIELDS,
    LOG_FILE_MODE,
    LOG_FORMAT,
    JsonFormatter,
    LineTemplate,
    LogFile,
    LogWriter,
    WarningLimiter,
    _Formatter,
    announce,
    configure_logging,
)
from filedock.server.registry import ClientEntry
from filedock.server.transfer_log import rate_text
from tests.support import wait_until

LOGGER = "tests.limiter"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTimers:
    """Records call_later requests; the test runs them when it wants."""

    def __init__(self) -> None:
        self.scheduled: list[tuple[float, Callable[[], None]]] = []

    def __call__(self, delay: float, callback: Callable[[], None]) -> object:
        self.scheduled.append((delay, callback))
        return None


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def messages(caplog: pytest.LogCaptureFixture) -> Callable[[], list[str]]:
    caplog.set_level(logging.WARNING, logger=LOGGER)

    def logged() -> list[str]:
        return [record.getMessage() for record in caplog.records if record.name == LOGGER]

    return logged


def limiter(clock: FakeClock, call_later: FakeTimers | None = None) -> WarningLimiter:
    logger = logging.getLogger(LOGGER)
    return WarningLimiter(logger, burst=3, period=10.0, clock=clock, call_later=call_later)


def test_at_most_burst_warnings_then_a_summary(
    clock: FakeClock, messages: Callable[[], list[str]]
) -> None:
    warnings = limiter(clock)
    for i in range(10):
        warnings.warning("storm", "bad client %d", i)
        clock.now += 0.5  # all within one 10 s period
    assert messages() == ["bad client 0", "bad client 1", "bad client 2"]
    clock.now = 1010.0  # the period is over: the next warning reports the rest
    warnings.warning("storm", "bad client %d", 10)
    assert messages()[3:] == ["7 more 'storm' warnings suppressed in 10 s", "bad client 10"]


def test_just_before_the_period_ends_still_suppressed(
    clock: FakeClock, messages: Callable[[], list[str]]
) -> None:
    warnings = limiter(clock)
    for i in range(4):
        warnings.warning("storm", "w%d", i)
    clock.now += 9.999
    warnings.warning("storm", "late")
    assert messages() == ["w0", "w1", "w2"]


def test_each_kind_has_its_own_burst(clock: FakeClock, messages: Callable[[], list[str]]) -> None:
    warnings = limiter(clock)
    for i in range(5):
        warnings.warning("accept", "accept %d", i)
        warnings.warning("handshake", "handshake %d", i)
    assert messages() == [
        "accept 0",
        "handshake 0",
        "accept 1",
        "handshake 1",
        "accept 2",
        "handshake 2",
    ]
    clock.now += 10
    warnings.warning("accept", "accept again")
    assert messages()[6:] == ["2 more 'accept' warnings suppressed in 10 s", "accept again"]
    warnings.warning("handshake", "handshake again")
    assert messages()[8:] == [
        "2 more 'handshake' warnings suppressed in 10 s",
        "handshake again",
    ]


def test_no_summary_when_nothing_was_suppressed(
    clock: FakeClock, messages: Callable[[], list[str]]
) -> None:
    warnings = limiter(clock)
    for i in range(3):
        warnings.warning("storm", "w%d", i)
    clock.now += 10
    warnings.warning("storm", "next")
    warnings.flush()
    assert messages() == ["w0", "w1", "w2", "next"]


def test_a_new_period_gets_a_new_burst(clock: FakeClock, messages: Callable[[], list[str]]) -> None:
    warnings = limiter(clock)
    for period in range(3):
        for i in range(5):
            warnings.warning("storm", "p%d w%d", period, i)
        clock.now += 10
    warnings.flush()
    assert messages() == [
        "p0 w0",
        "p0 w1",
        "p0 w2",
        "2 more 'storm' warnings suppressed in 10 s",
        "p1 w0",
        "p1 w1",
        "p1 w2",
        "2 more 'storm' warnings suppressed in 10 s",
        "p2 w0",
        "p2 w1",
        "p2 w2",
        "2 more 'storm' warnings suppressed in 10 s",
    ]


def test_flush_reports_what_is_suppressed(
    clock: FakeClock, messages: Callable[[], list[str]]
) -> None:
    warnings = limiter(clock)
    for i in range(8):
        warnings.warning("storm", "w%d", i)
    warnings.warning("other", "o")
    warnings.flush()
    assert messages() == ["w0", "w1", "w2", "o", "5 more 'storm' warnings suppressed in 10 s"]
    warnings.flush()  # nothing left to report
    assert len(messages()) == 5


def test_summary_at_the_end_of_the_period_with_call_later(
    clock: FakeClock, messages: Callable[[], list[str]]
) -> None:
    timers = FakeTimers()
    warnings = limiter(clock, call_later=timers)
    for i in range(3):
        warnings.warning("storm", "w%d", i)
    assert timers.scheduled == []  # nothing suppressed, nothing to report later
    clock.now += 2
    for i in range(3, 50):
        warnings.warning("storm", "w%d", i)
    [(delay, report)] = timers.scheduled  # one timer per period, not per warning
    assert delay == pytest.approx(8.0)  # when the period that began at the first warning ends
    clock.now += delay
    report()
    assert messages() == ["w0", "w1", "w2", "47 more 'storm' warnings suppressed in 10 s"]
    # The next warning starts a new period with a full burst.
    warnings.warning("storm", "after")
    assert messages()[-1] == "after"
    report()  # a stale timer reports nothing twice
    warnings.flush()
    assert len(messages()) == 5


def test_stale_timer_after_a_new_period_reports_nothing(
    clock: FakeClock, messages: Callable[[], list[str]]
) -> None:
    timers = FakeTimers()
    warnings = limiter(clock, call_later=timers)
    for i in range(5):
        warnings.warning("storm", "w%d", i)
    [(_, report)] = timers.scheduled
    clock.now += 10
    for i in range(5):
        warnings.warning("storm", "new %d", i)  # the first reports the 2 itself
    report()  # the old timer fires late: the new period is not cut short
    warnings.warning("storm", "still suppressed")
    assert messages() == [
        "w0",
        "w1",
        "w2",
        "2 more 'storm' warnings suppressed in 10 s",
        "new 0",
        "new 1",
        "new 2",
    ]
    assert len(timers.scheduled) == 2  # the new period's own timer
    timers.scheduled[1][1]()
    assert messages()[-1] == "3 more 'storm' warnings suppressed in 10 s"


# -- per source ------------------------------------------------------------------------


def test_decoys_from_one_source_do_not_hide_another(
    clock: FakeClock, messages: Callable[[], list[str]]
) -> None:
    warnings = limiter(clock)
    for i in range(20):
        warnings.warning("auth", "Unauthorized: decoy %d", i, source="192.0.2.1/32")
    warnings.warning("auth", "Unauthorized: attacker", source="198.51.100.7/32")
    assert messages() == [
        "Unauthorized: decoy 0",
        "Unauthorized: decoy 1",
        "Unauthorized: decoy 2",
        "Unauthorized: attacker",
    ]
    warnings.flush()
    assert messages()[-1] == "17 more 'auth' warnings from 192.0.2.1/32 suppressed in 10 s"


def test_the_first_warning_from_each_source_is_logged(
    clock: FakeClock, messages: Callable[[], list[str]]
) -> None:
    warnings = limiter(clock)
    for i in range(100):  # a hundred decoy sources, each over its burst
        for _ in range(5):
            warnings.warning("auth", "decoy %d", i, source=f"decoy-{i}")
    warnings.warning("auth", "the real one", source="real")
    logged = messages()
    assert logged[-1] == "the real one"
    assert [f"decoy {i}" in logged for i in range(100)] == [True] * 100


def test_sources_kept_are_bounded_and_reported_when_dropped(
    clock: FakeClock, messages: Callable[[], list[str]]
) -> None:
    logger = logging.getLogger(LOGGER)
    warnings = WarningLimiter(logger, burst=1, period=10.0, max_sources=3, clock=clock)
    warnings.warning("auth", "a", source="a")
    warnings.warning("auth", "a again", source="a")  # suppressed
    for name in ("b", "c", "d"):  # "d" pushes out the least recently used, "a"
        warnings.warning("auth", name, source=name)
    assert len(warnings) == 3
    assert messages() == ["a", "b", "c", "1 more 'auth' warnings from a suppressed in 10 s", "d"]
    warnings.warning("auth", "a is back", source="a")  # forgotten, so a first again
    assert messages()[-1] == "a is back"


def test_configuring_the_log_leaves_other_loggers_their_source_lines() -> None:
    """The process-wide set-up must not blank what another module's format shows."""
    root = logging.getLogger("filedock")
    saved = root.handlers[:], root.level, root.propagate
    records: list[logging.LogRecord] = []
    other = logging.getLogger("tests.elsewhere")
    handler = _Collecting(records)
    other.addHandler(handler)
    other.propagate = False
    try:
        writer = configure_logging("INFO")
        other.warning("from a known line")
    finally:
        other.removeHandler(handler)
        writer.close()
        root.handlers[:], root.level, root.propagate = saved
    [record] = records
    assert record.funcName == "test_configuring_the_log_leaves_other_loggers_their_source_lines"
    assert record.pathname == __file__


class _Collecting(logging.Handler):
    def __init__(self, records: list[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


# -- what the lines carry, and where they go ------------------------------------------------


def test_the_limiter_passes_a_lines_fields_on(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    lines = limiter(clock)
    for i in range(5):
        lines.info("transfer", "cut %d", i, extra={"result": "cut-short"})
    lines.flush()
    records = [r for r in caplog.records if r.name == LOGGER]
    assert [(r.levelno, r.getMessage()) for r in records[:3]] == [
        (logging.INFO, f"cut {i}") for i in range(3)
    ]
    assert [getattr(r, "result", None) for r in records[:3]] == ["cut-short"] * 3
    [summary] = records[3:]
    assert summary.getMessage() == "2 more 'transfer' messages suppressed in 10 s"


def _record(message: str, *args: object, **fields: object) -> logging.LogRecord:
    logger = logging.getLogger(LOGGER)
    return logger.makeRecord(LOGGER, logging.INFO, __file__, 1, message, args, None, extra=fields)


def test_a_json_line_has_the_time_with_its_offset_the_level_the_message_and_the_fields() -> None:
    record = _record("Finished: %s (%s, %.1f s)", "Client03", "exit", 12.4, client="Client03",
                     reason="exit", seconds=12.4, event="finished", unknown="left out")  # fmt: skip
    line = json.loads(JsonFormatter().format(record))
    assert line.pop("time") == datetime.fromtimestamp(record.created).astimezone().isoformat(
        timespec="milliseconds"
    )
    assert line == {
        "level": "INFO",
        "message": "Finished: Client03 (exit, 12.4 s)",
        "event": "finished",
        "client": "Client03",
        "reason": "exit",
        "seconds": 12.4,
    }
    assert set(line) - {"level", "message"} <= set(FIELDS)


def test_a_json_line_carries_the_traceback_of_an_error() -> None:
    try:
        raise ValueError("a bug")
    except ValueError:
        record = logging.getLogger(LOGGER).makeRecord(
            LOGGER, logging.ERROR, __file__, 1, "Internal error", (), sys.exc_info()
        )
    line = json.loads(JsonFormatter().format(record))
    assert line["level"] == "ERROR"
    assert "ValueError: a bug" in line["exception"]
    assert "\n" not in JsonFormatter().format(record)  # one line, whatever the traceback


def test_an_announced_line_passes_a_level_that_holds_back_info(
    caplog: pytest.LogCaptureFixture,
) -> None:
    logger = logging.getLogger(LOGGER + ".announce")
    logger.setLevel(logging.WARNING)
    caplog.set_level(logging.INFO)
    try:
        logger.info("held back")
        announce(logger, "Starting server on %s:%d", "127.0.0.1", 5, event="started")
    finally:
        logger.setLevel(logging.NOTSET)
    [record] = [r for r in caplog.records if r.name == logger.name]
    assert (record.levelname, record.getMessage()) == ("INFO", "Starting server on 127.0.0.1:5")
    assert record.event == "started"
    assert record.funcName == "test_an_announced_line_passes_a_level_that_holds_back_info"


def test_a_log_file_is_reopened_at_its_path_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "server.log"
    handler = LogFile(str(path))
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger = logging.getLogger("filedock.server")
    logger.addHandler(handler)
    saved = logger.level
    logger.setLevel(logging.INFO)
    try:
        logger.info("before")
        path.rename(tmp_path / "server.log.1")
        handler.reopen()
        logger.info("after")
        (tmp_path / "server.log").rename(tmp_path / "elsewhere.log")
        (tmp_path / "server.log").mkdir()  # what is at the path now cannot be written to
        handler.reopen()  # so the one open is kept
        logger.info("still")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)
        handler.close()
    assert (tmp_path / "server.log.1").read_text() == "before\n"
    assert (tmp_path / "elsewhere.log").read_text().splitlines() == [
        f"Reopened the log file {path}",
        "after",
        f"Cannot reopen the log file {path}: Is a directory (still writing to the one open)",
        "still",
    ]


def test_a_log_file_is_made_readable_by_its_group_at_most(tmp_path: Path) -> None:
    saved = os.umask(0)
    try:
        handler = LogFile(str(tmp_path / "server.log"))
    finally:
        os.umask(saved)
    handler.close()
    assert stat.S_IMODE((tmp_path / "server.log").stat().st_mode) == LOG_FILE_MODE == 0o640


@pytest.mark.parametrize(
    ("per_second", "text"),
    [(0, "0 B/s"), (1023, "1023 B/s"), (1024, "1.0 KiB/s"), (6 / 0.001, "5.9 KiB/s"),
     (112 * 1024**2, "112.0 MiB/s"), (3 * 1024**4, "3.0 TiB/s"), (5 * 1024**5, "5120.0 TiB/s")],
)  # fmt: skip
def test_a_rate_is_shown_in_powers_of_1024(per_second: float, text: str) -> None:
    assert rate_text(per_second) == text


def test_a_finished_line_says_why_and_how_long_after_the_welcome(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="filedock.server")
    entry = ClientEntry(3, "Client03", "127.0.0.1:40000", accepted=1000.0, finished=1012.44)
    client_log.finished(entry, "idle-timeout")
    stepped_back = ClientEntry(4, "Client04", "127.0.0.1:40001", accepted=1000.0, finished=999.0)
    client_log.finished(stepped_back, "exit")
    first, second = (r for r in caplog.records if r.name == "filedock.server")
    assert first.getMessage() == "Finished: Client03 (idle-timeout, 12.4 s)"
    assert (first.reason, first.seconds) == ("idle-timeout", 12.44)
    assert second.getMessage() == "Finished: Client04 (exit, 0.0 s)"  # a clock stepped back


def test_info_lines_are_limited_as_warnings_are_and_summed_up_at_info(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)
    notes = limiter(clock)
    for i in range(8):
        notes.info("refused", "refused %d", i, source="192.0.2.1/32")
    notes.flush()
    logged = [(r.levelno, r.getMessage()) for r in caplog.records if r.name == LOGGER]
    assert logged == [
        (logging.INFO, "refused 0"),
        (logging.INFO, "refused 1"),
        (logging.INFO, "refused 2"),
        (logging.INFO, "5 more 'refused' messages from 192.0.2.1/32 suppressed in 10 s"),
    ]


def test_info_lines_are_dropped_under_a_warning_level(
    clock: FakeClock, messages: Callable[[], list[str]]
) -> None:
    notes = limiter(clock)  # (the fixture logs from WARNING up)
    for i in range(5):
        notes.info("refused", "refused %d", i)
    notes.flush()
    notes.warning("storm", "kept")
    assert messages() == ["kept"]


# -- the writer: no line formatted or written on the caller's thread -------------------------


class _ThreadNoting(logging.Formatter):
    """``%(message)s``, noting the thread that formats each line."""

    def __init__(self) -> None:
        super().__init__("%(message)s")
        self.threads: set[str] = set()

    def format(self, record: logging.LogRecord) -> str:
        self.threads.add(threading.current_thread().name)
        return super().format(record)


class _CountingStream(io.StringIO):
    """A stream that counts its writes, and notes the threads they come from."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.threads: set[str] = set()

    def write(self, text: str) -> int:
        self.writes += 1
        self.threads.add(threading.current_thread().name)
        return super().write(text)


@pytest.fixture
def written() -> Iterator[tuple[logging.Logger, _CountingStream, _ThreadNoting, LogWriter]]:
    """A logger whose one handler is a LogWriter (gathering for 10 s: only a flush
    or the close writes) over a stream that counts its writes."""
    stream = _CountingStream()
    output = logging.StreamHandler(stream)
    formatter = _ThreadNoting()
    output.setFormatter(formatter)
    writer = LogWriter([output], gather=10.0, batch=1_000)
    logger = logging.getLogger("tests.writer")
    logger.addHandler(writer)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream, formatter, writer
    finally:
        logger.removeHandler(writer)
        writer.close()
        output.close()


def test_the_writer_writes_a_batch_in_order_on_its_own_thread_formatted_where_logged(
    written: tuple[logging.Logger, _CountingStream, _ThreadNoting, LogWriter],
) -> None:
    logger, stream, formatter, writer = written
    for i in range(100):
        logger.info("line %d", i)
    assert stream.getvalue() == ""  # nothing written on the caller's thread
    writer.flush()
    assert stream.getvalue().splitlines() == [f"line {i}" for i in range(100)]
    assert stream.writes == 1  # one write for the batch, not one a line
    assert stream.threads == {"filedock-log"}
    # Formatted by the caller: the writer's thread needs the interpreter's lock
    # only to join the batch, so it does not take it from the loop in a burst.
    assert formatter.threads == {threading.current_thread().name}


@contextmanager
def logging_to(writer: LogWriter, name: str) -> Iterator[logging.Logger]:
    """The logger ``name`` with ``writer`` as its one handler; the writer closed after."""
    logger = logging.getLogger(name)
    logger.addHandler(writer)
    logger.propagate = False
    try:
        yield logger
    finally:
        logger.removeHandler(writer)
        writer.close()


def test_a_burst_of_lines_wakes_the_writer_once_a_batch_not_once_a_line() -> None:
    stream = _CountingStream()
    writer = LogWriter([logging.StreamHandler(stream)], gather=10.0, batch=250)
    with logging_to(writer, "tests.writer.burst") as logger:
        for i in range(1000):
            logger.warning("line %d", i)
        writer.flush()  # the last lines, short of a batch, would wait for the gathering
        writes = stream.writes
    assert stream.getvalue().splitlines() == [f"line {i}" for i in range(1000)]
    # A write per full batch of 250 and the flush's, give or take one: not one a line.
    assert writes <= 1000 // 250 + 2


def test_a_line_says_what_its_arguments_were_when_it_was_logged(
    written: tuple[logging.Logger, _CountingStream, _ThreadNoting, LogWriter],
) -> None:
    logger, stream, _, writer = written
    changing = ["before"]
    logger.info("%s and %s", changing, "a string")
    changing[0] = "after"
    writer.flush()
    assert stream.getvalue() == "['before'] and a string\n"


def test_the_close_writes_what_is_queued_and_later_lines_at_once(
    written: tuple[logging.Logger, _CountingStream, _ThreadNoting, LogWriter],
) -> None:
    logger, stream, _, writer = written
    logger.info("queued")
    writer.close()
    assert stream.getvalue() == "queued\n"
    logger.info("after the close")
    assert stream.getvalue() == "queued\nafter the close\n"
    assert not any(thread.name == "filedock-log" for thread in threading.enumerate())


def test_an_output_takes_only_the_lines_of_its_level(tmp_path: Path) -> None:
    quiet, loud = io.StringIO(), io.StringIO()
    errors_only = logging.StreamHandler(quiet)
    errors_only.setLevel(logging.ERROR)
    writer = LogWriter([logging.StreamHandler(loud), errors_only], gather=10.0)
    with logging_to(writer, "tests.writer.levels") as logger:
        logger.warning("a warning")
        logger.error("an error")
        writer.flush()
    assert loud.getvalue() == "a warning\nan error\n"
    assert quiet.getvalue() == "an error\n"


def test_the_writer_reopens_its_file_between_the_lines_before_and_after(tmp_path: Path) -> None:
    path = tmp_path / "server.log"
    file = LogFile(str(path))
    file.setFormatter(logging.Formatter("%(message)s"))
    writer = LogWriter([file], file, gather=10.0)
    logger = logging.getLogger("filedock.server")
    saved = logger.level
    logger.addHandler(writer)
    logger.setLevel(logging.INFO)
    try:
        logger.info("before")
        path.rename(tmp_path / "server.log.1")  # before the lines are written: they follow it
        writer.reopen()
        logger.info("after")
        writer.flush()
    finally:
        logger.removeHandler(writer)
        logger.setLevel(saved)
        writer.close()
        file.close()
    assert (tmp_path / "server.log.1").read_text() == "before\n"
    assert path.read_text().splitlines() == [f"Reopened the log file {path}", "after"]


def test_an_announced_line_is_written_before_announce_returns() -> None:
    stream = io.StringIO()
    writer = LogWriter([logging.StreamHandler(stream)], gather=10.0)
    root = logging.getLogger("filedock")
    saved = root.handlers[:], root.propagate
    root.handlers[:] = [writer]
    root.propagate = False
    try:
        announce(logging.getLogger("filedock.server"), "Starting server on %s", "127.0.0.1:5")
        assert stream.getvalue() == "Starting server on 127.0.0.1:5\n"  # no flush, no close
    finally:
        root.handlers[:], root.propagate = saved
        writer.close()


def test_configuring_the_log_again_closes_the_writer_before() -> None:
    root = logging.getLogger("filedock")
    saved = root.handlers[:], root.level, root.propagate
    try:
        first = configure_logging("INFO")
        second = configure_logging("INFO")
        assert root.handlers == [second]
        logging.getLogger("filedock.server").info("to the second")
        assert not first._thread.is_alive()
    finally:
        second.close()
        root.handlers[:], root.level, root.propagate = saved


def test_a_full_batch_is_written_without_waiting_for_the_gathering() -> None:
    stream = io.StringIO()
    writer = LogWriter([logging.StreamHandler(stream)], gather=60.0, batch=4)
    with logging_to(writer, "tests.writer.batch") as logger:
        for i in range(4):
            logger.warning("line %d", i)
        wait_until(lambda: stream.getvalue().count("\n") == 4, timeout=10.0)
    assert stream.getvalue().splitlines() == [f"line {i}" for i in range(4)]


# -- what makes a line cheap: a copied record, a formatter without a template ---------------


def test_a_line_templates_record_is_the_record_makerecord_would_make() -> None:
    logger = logging.getLogger(LOGGER + ".template")
    template = LineTemplate(logger, logging.INFO, "Connected: %s from %s", __file__, "connected")
    fields = {"event": "connected", "client": "Client07", "address": "127.0.0.1:5"}
    made = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "Connected: %s from %s",
                             ("Client07", "127.0.0.1:5"), None, "connected", fields)  # fmt: skip
    for _ in range(2):  # the first record and a copy
        copied = template.record(("Client07", "127.0.0.1:5"), fields)
        assert type(copied) is type(made)
        assert copied.getMessage() == "Connected: Client07 from 127.0.0.1:5"
        assert abs(copied.created - made.created) < 5.0
        assert copied.msecs == int((copied.created - int(copied.created)) * 1000)
        assert abs(copied.relativeCreated - made.relativeCreated) < 5000.0
        unchanging = {"created", "msecs", "relativeCreated"}
        assert {k: v for k, v in vars(copied).items() if k not in unchanging} == {
            k: v for k, v in vars(made).items() if k not in unchanging
        }


def test_the_text_lines_are_those_of_the_log_format() -> None:
    ours, standard = _Formatter(), logging.Formatter(LOG_FORMAT)
    plain = _record("Finished: %s (%s, %.1f s)", "Client03", "exit", 12.4)
    assert ours.format(plain) == standard.format(plain)
    assert re.fullmatch(r"\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}\] INFO: Finished: Client03 "
                        r"\(exit, 12\.4 s\)", ours.format(plain))  # fmt: skip
    try:
        raise ValueError("a bug")
    except ValueError:
        failing = logging.getLogger(LOGGER).makeRecord(
            LOGGER, logging.ERROR, __file__, 1, "Internal error", (), sys.exc_info()
        )
    assert ours.format(failing) == logging.Formatter(LOG_FORMAT).format(failing)
    assert "ValueError: a bug" in ours.format(failing)
