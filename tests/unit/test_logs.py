"""WarningLimiter: a flood of warnings of one kind cannot flood the log."""

from __future__ import annotations

import logging
from collections.abc import Callable

import pytest

from filedock.server.logs import WarningLimiter, configure_logging

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
        configure_logging("INFO")
        other.warning("from a known line")
    finally:
        other.removeHandler(handler)
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
