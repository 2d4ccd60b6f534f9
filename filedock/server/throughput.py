"""Bytes per second over the last minutes, for the status page's chart.

A ring buffer of per-second figures: :meth:`Throughput.tick` is given the
byte counters' total about once a second (by the HTTP side's sampling task,
which runs only while ``--http`` is on) and keeps how much it grew since the
last. A tick that comes late (the loop was busy, the process was stopped)
spreads what grew over the seconds that went by, so the chart shows neither a
false peak nor a shortened span.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

SECONDS_KEPT = 300


class Throughput:
    def __init__(self, seconds: int = SECONDS_KEPT, clock: Callable[[], float] = time.monotonic):
        self._per_second: deque[int] = deque(maxlen=seconds)
        self._clock = clock
        self._last: tuple[int, float] | None = None  # the total, and when it was given

    def tick(self, total: int) -> None:
        """About a second (or more) went by and the bytes moved so far are ``total``."""
        now = self._clock()
        if self._last is not None:
            last_total, then = self._last
            # At least one: the sampler never ticks sooner than a second.
            seconds = max(round(now - then), 1)
            each, rest = divmod(max(total - last_total, 0), seconds)
            kept = min(seconds, self._per_second.maxlen or seconds)  # the ring keeps no more
            self._per_second.extend(each + (i < rest) for i in range(seconds - kept, seconds))
        self._last = (total, now)

    def series(self) -> list[int]:
        """Bytes moved in each of the last seconds, oldest first."""
        return list(self._per_second)
