"""A one-line progress bar for downloads, and human-readable sizes."""

from __future__ import annotations

import time
from typing import TextIO

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")


def human_size(size: float) -> str:
    """``6 B``, ``1.5 KiB``, ``1.0 GiB``."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in _UNITS[1:]:
        size /= 1024
        if size < 1024 or unit == _UNITS[-1]:
            break
    return f"{size:.1f} {unit}"


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class ProgressBar:
    """Draws ``name [####----]  45%  450.0 MiB/1.0 GiB  820.3 MiB/s  0:01 left`` in place.

    Call it with (done, total) as bytes arrive; it redraws at most every
    ``interval`` seconds, and always at 100%.
    """

    def __init__(self, stream: TextIO, label: str, *, width: int = 24, interval: float = 0.1):
        self._stream = stream
        self._label = label
        self._width = width
        self._interval = interval
        self._start = time.monotonic()
        self._last_draw = 0.0
        self._drawn = False

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if done < total and now - self._last_draw < self._interval:
            return
        self._last_draw = now
        elapsed = max(now - self._start, 1e-6)
        rate = done / elapsed
        fraction = done / total if total else 1.0
        filled = int(fraction * self._width)
        left = (total - done) / rate if rate > 0 else 0.0
        bar = "#" * filled + "-" * (self._width - filled)
        line = (
            f"\r{self._label} [{bar}] {fraction:4.0%}  {human_size(done)}/{human_size(total)}"
            f"  {human_size(rate)}/s  {_clock(left)} left"
        )
        self._stream.write(line + "\x1b[K")
        self._stream.flush()
        self._drawn = True

    def close(self) -> None:
        """End the bar's line, if one was drawn."""
        if self._drawn:
            self._stream.write("\n")
            self._stream.flush()
            self._drawn = False
