"""The per-second series of the status page's chart: a ring buffer of differences."""

from __future__ import annotations

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
