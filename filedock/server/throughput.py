"""Bytes per second over the last minutes, for the status page's chart.

A ring buffer of per-second figures: :meth:`Throughput.tick` is given the
byte counters' total once a second (by the HTTP side's sampling task, which
runs only while ``--http`` is on) and keeps how much it grew since the last.
"""

from __future__ import annotations

from collections import deque

SECONDS_KEPT = 300


class Throughput:
    def __init__(self, seconds: int = SECONDS_KEPT) -> None:
        self._per_second: deque[int] = deque(maxlen=seconds)
        self._last: int | None = None

    def tick(self, total: int) -> None:
        """One second went by and the bytes moved so far are ``total``."""
        if self._last is not None:
            self._per_second.append(max(total - self._last, 0))
        self._last = total

    def series(self) -> list[int]:
        """Bytes moved in each of the last seconds, oldest first."""
        return list(self._per_second)
