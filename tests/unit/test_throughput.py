"""The rates the status page shows: the chart's per-second series (a ring buffer of
differences) and each transfer's own."""

from __future__ import annotations

from filedock.server.activity import Activity
from filedock.server.status_page import Rates
from filedock.server.throughput import Throughput


def test_each_tick_keeps_what_the_total_grew_by() -> None:
    throughput = Throughput(seconds=3)
    assert throughput.series() == []
    for total in (100, 150, 150, 400):
        throughput.tick(total)
    assert throughput.series() == [50, 0, 250]  # the first tick is only the baseline


def test_only_the_last_seconds_are_kept() -> None:
    throughput = Throughput(seconds=2)
    for total in (0, 1, 3, 6):
        throughput.tick(total)
    assert throughput.series() == [2, 3]


def test_a_total_that_falls_counts_as_nothing_moved() -> None:
    throughput = Throughput(seconds=5)
    for total in (10, 4, 9):
        throughput.tick(total)
    assert throughput.series() == [0, 5]


def test_a_transfer_rate_counts_from_when_it_was_first_seen() -> None:
    part = Activity("range", "big.bin", 10_000, done=6_000)  # a part from offset 6000
    other = Activity("get", "small.bin", 100)
    rates = Rates()
    assert rates.update([part], now=100.0) == {part: 0}
    part.done = 7_000
    assert rates.update([part, other], now=100.5) == {part: 2_000, other: 0}
    other.done = 50
    assert rates.update([other], now=101.0) == {other: 100}
    part.done = 8_000
    assert rates.update([part], now=102.0) == {part: 0}  # ended and forgotten: a new one


def test_a_late_tick_spreads_what_moved_over_the_seconds_that_went_by() -> None:
    now = [0.0]
    throughput = Throughput(seconds=10, clock=lambda: now[0])
    for at, total in ((0.0, 0), (1.0, 100), (6.0, 1103), (7.0, 1103)):
        now[0] = at
        throughput.tick(total)
    # 5 s without a tick (a busy loop, a stopped process): no false peak of 1003 B/s.
    assert throughput.series() == [100, 201, 201, 201, 200, 200, 0]


def test_a_tick_after_a_long_stop_keeps_only_the_last_seconds() -> None:
    now = [0.0]
    throughput = Throughput(seconds=3, clock=lambda: now[0])
    throughput.tick(0)
    now[0] = 3600.0
    throughput.tick(3600)
    assert throughput.series() == [1, 1, 1]  # the rate it had, not 3600 B in 3 s
