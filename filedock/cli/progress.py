"""The progress line of a transfer, fitted to the terminal's width, and human-readable sizes.

One file: ``name [####----]  45%  450.0 MiB/1.0 GiB  820.3 MiB/s  0:01 left``.
Several (a ``get`` of many files, a ``mirror``): the label counts the files
and the figures are those of the whole call,
``3/10 files docs/a.txt [####--]  45%  450.0 MiB/1.0 GiB  820.3 MiB/s  0:01 left``.
At the end the line says how long it all took. The width is read again at
every redraw, so a resized terminal never shows a wrapped, repeated line.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable
from typing import Protocol, TextIO

from ..safetext import printable

_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB")
# The bar's longest and shortest widths, in cells; under the shortest it is left out.
BAR_WIDTH = 24
MIN_BAR_WIDTH = 6
# A label is shortened (with an ellipsis in the middle) down to this, never under.
MIN_LABEL = 12
# How long each figure of the line stays as it narrows (0: longest), in the
# order they are shown: percentage, sizes, rate, time left.
FIGURES_KEPT = (0, 2, 3, 1)
ERASE_TO_END = "\x1b[K"


def human_size(size: float) -> str:
    """``6 B``, ``1.5 KiB``, ``1.0 GiB``."""
    if size < 1024:
        return f"{int(size)} B"
    for unit in _UNITS[1:]:
        size /= 1024
        if size < 1024 or unit == _UNITS[-1]:
            break
    return f"{size:.1f} {unit}"


def clock(seconds: float) -> str:
    """``0:07``, ``12:30``, ``1:02:03``."""
    minutes, whole = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{whole:02d}" if hours else f"{minutes}:{whole:02d}"


def shorten(text: str, width: int) -> str:
    """``text`` in at most ``width`` characters, an ellipsis replacing its middle."""
    if len(text) <= width:
        return text
    if width <= 1:
        return text[:width]
    head = (width - 1) // 2
    return text[:head] + "…" + text[len(text) - (width - 1 - head) :]


def fit(label: str, fraction: float, figures: list[str], columns: int) -> str:
    """One progress line in fewer than ``columns`` characters (the last column is left
    free: writing into it makes some terminals wrap).

    ``figures`` are shown in their order; when the line is too narrow the bar
    narrows first, then the label, then figures go, the one in FIGURES_KEPT's
    last place first (the percentage stays longest), then the bar.
    """
    room = max(columns - 1, 1)
    kept = len(figures)
    while True:
        shown = [figure for rank, figure in zip(FIGURES_KEPT, figures, strict=False) if rank < kept]
        tail = "".join(f"  {figure}" for figure in shown)
        bar_room = room - len(tail) - min(len(label), MIN_LABEL) - 3  # " [" and "]"
        if bar_room >= MIN_BAR_WIDTH or kept <= 1:
            break
        kept -= 1
    width = min(BAR_WIDTH, bar_room)
    if width >= MIN_BAR_WIDTH:
        filled = int(fraction * width)
        bar = " [" + "#" * filled + "-" * (width - filled) + "]"
    else:
        bar = ""
    label = shorten(label, max(room - len(bar) - len(tail), 0))
    return (label + bar + tail)[:room]


class Transfer(Protocol):
    """What a progress report carries (:class:`filedock.TransferProgress` has it all)."""

    @property
    def path(self) -> str: ...
    @property
    def done(self) -> int: ...
    @property
    def total(self) -> int: ...
    @property
    def files_done(self) -> int: ...
    @property
    def files_total(self) -> int: ...
    @property
    def bytes_done(self) -> int: ...
    @property
    def bytes_total(self) -> int: ...


def stream_columns(stream: TextIO) -> int:
    """The width of the terminal ``stream`` draws on (the environment's guess if it is none)."""
    try:
        return os.get_terminal_size(stream.fileno()).columns
    except (AttributeError, OSError, ValueError):  # no descriptor, or not a terminal
        return shutil.get_terminal_size().columns


class ProgressLine:
    """Draws a transfer's progress in place on ``stream``, at most every ``interval`` seconds.

    ``label`` names a single file; with several files the label is the count
    and the path moving now. :meth:`end` ends the line (before any other
    output); :meth:`finish` replaces it with the total: size, time, rate.
    ``columns`` and ``now`` are the terminal's width and the clock (tests
    give fakes).
    """

    def __init__(
        self,
        stream: TextIO,
        label: str | None = None,
        *,
        columns: Callable[[], int] | None = None,
        now: Callable[[], float] = time.monotonic,
        interval: float = 0.1,
    ) -> None:
        self._stream = stream
        self._label = label
        self._columns = columns or (lambda: stream_columns(stream))
        self._now = now
        self._interval = interval
        self._start = now()
        self._last_draw: float | None = None
        self._drawn = False  # a line is on the screen, not ended
        self.shown = False  # something was drawn at all
        self._last: Transfer | None = None

    def _label_of(self, report: Transfer) -> str:
        # The path is the server's: shown inert, as every name it sends.
        if report.files_total > 1:
            return f"{report.files_done}/{report.files_total} files {printable(report.path)}"
        return self._label if self._label is not None else printable(report.path)

    def update(self, report: Transfer) -> None:
        self._last = report
        now = self._now()
        finished = report.bytes_done >= report.bytes_total
        if not finished and self._last_draw is not None and now - self._last_draw < self._interval:
            return
        self._last_draw = now
        elapsed = max(now - self._start, 1e-6)
        rate = report.bytes_done / elapsed
        left = (report.bytes_total - report.bytes_done) / rate if rate > 0 else 0.0
        if report.files_total > 1:
            done, total = report.bytes_done, report.bytes_total
        else:  # a resumed file shows where it is, from its offset
            done, total = report.done, report.total
        fraction = done / total if total else 1.0
        figures = [  # in FIGURES_KEPT's order of importance
            f"{fraction:4.0%}",
            f"{human_size(done)}/{human_size(total)}",
            f"{human_size(rate)}/s",
            f"{clock(left)} left",
        ]
        self._draw(fit(self._label_of(report), fraction, figures, self._columns()))

    def _draw(self, line: str) -> None:
        self._stream.write("\r" + line + ERASE_TO_END)
        self._stream.flush()
        self._drawn = True
        self.shown = True

    def end(self) -> bool:
        """End the progress line, if one is on the screen, so other output starts on its
        own; whether there was one."""
        if not self._drawn:
            return False
        self._stream.write("\n")
        self._stream.flush()
        self._drawn = False
        return True

    def finish(self) -> None:
        """Say what the whole transfer took, on the progress line, and end it.

        Nothing if nothing was drawn (a small transfer, or none at all).
        """
        report = self._last
        if not self._drawn or report is None:
            self.end()
            return
        elapsed = max(self._now() - self._start, 1e-6)
        label = self._label_of(report)
        if report.files_total > 1:
            label = f"{report.files_done}/{report.files_total} files"
        figures = [
            f"{human_size(report.bytes_done)} in {clock(elapsed)}",
            f"{human_size(report.bytes_done / elapsed)}/s",
        ]
        line = shorten(label, MIN_LABEL * 4) + "".join(f"  {figure}" for figure in figures)
        self._draw(line[: max(self._columns() - 1, 1)])
        self.end()
