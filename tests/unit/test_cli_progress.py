"""The progress line: fitted to the terminal's width at each redraw, ended before
other output, the total time at the end; with a fake terminal, width and clock."""

from __future__ import annotations

import io
import re
from dataclasses import dataclass

import pytest

from filedock.cli.progress import ProgressLine, clock, fit, human_size, shorten

MiB = 1024 * 1024


@dataclass(frozen=True)
class Report:
    path: str
    done: int
    total: int
    files_done: int = 0
    files_total: int = 1
    bytes_done: int = -1
    bytes_total: int = -1

    def __post_init__(self) -> None:  # one file: the call's bytes are the file's
        if self.bytes_done < 0:
            object.__setattr__(self, "bytes_done", self.done)
        if self.bytes_total < 0:
            object.__setattr__(self, "bytes_total", self.total)


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def drawn_lines(stream: io.StringIO) -> list[str]:
    """Each redraw (after its carriage return), without the erase-to-end code."""
    lines = []
    for chunk in re.split(r"[\r\n]", stream.getvalue()):
        line = chunk.replace("\x1b[K", "")
        if line:
            lines.append(line)
    return lines


LONG_NAME = "folder/with a long name/and-a-much-longer-file-name-than-fits-anywhere.iso"


@pytest.mark.parametrize("columns", [20, 40, 60, 80, 200])
def test_every_redraw_fits_the_width(columns: int) -> None:
    stream, now = io.StringIO(), FakeClock()
    line = ProgressLine(stream, LONG_NAME, columns=lambda: columns, now=now)
    for step in range(0, 101, 10):
        now.now += 1
        line.update(Report(LONG_NAME, step * 10 * MiB, 1000 * MiB))
    line.finish()
    lines = drawn_lines(stream)
    assert len(lines) == 12  # eleven redraws and the total
    for text in lines:
        assert len(text) < columns, (columns, text)  # the last column stays free: no wrap
    assert stream.getvalue().endswith("\n")


def test_at_60_columns_the_figures_that_matter_stay() -> None:
    stream, now = io.StringIO(), FakeClock()
    line = ProgressLine(stream, LONG_NAME, columns=lambda: 60, now=now)
    now.now += 2
    line.update(Report(LONG_NAME, 500 * MiB, 1000 * MiB))
    text = drawn_lines(stream)[-1]
    assert " 50%" in text
    assert "0:02 left" in text
    assert "…" in text  # the name is shortened in its middle
    assert text.startswith("folder/")
    assert "[" in text


def test_a_resize_is_read_at_the_next_redraw() -> None:
    stream, now = io.StringIO(), FakeClock()
    width = [120]
    line = ProgressLine(stream, LONG_NAME, columns=lambda: width[0], now=now)
    now.now += 1
    line.update(Report(LONG_NAME, 100 * MiB, 1000 * MiB))
    width[0] = 50  # the terminal was made narrower
    now.now += 1
    line.update(Report(LONG_NAME, 200 * MiB, 1000 * MiB))
    first, second = drawn_lines(stream)
    assert len(first) > 50
    assert len(second) < 50


def test_redraws_are_throttled_but_the_last_is_drawn() -> None:
    stream, now = io.StringIO(), FakeClock()
    line = ProgressLine(stream, "f", columns=lambda: 80, now=now, interval=0.1)
    for done in range(1, 100):
        now.now += 0.002
        line.update(Report("f", done * MiB, 100 * MiB))
    now.now += 0.001
    line.update(Report("f", 100 * MiB, 100 * MiB))
    lines = drawn_lines(stream)
    assert len(lines) == 3  # the first, one 0.1 s later, and 100%
    assert "100%" in lines[-1]


def test_finish_says_the_total_time_and_ends_the_line() -> None:
    stream, now = io.StringIO(), FakeClock()
    line = ProgressLine(stream, "big.iso", columns=lambda: 80, now=now)
    now.now += 65
    line.update(Report("big.iso", 64 * MiB, 64 * MiB))
    line.finish()
    assert drawn_lines(stream)[-1] == "big.iso  64.0 MiB in 1:05  1008.2 KiB/s"
    assert stream.getvalue().endswith("\n")


def test_end_ends_the_line_once_and_only_if_drawn() -> None:
    stream = io.StringIO()
    line = ProgressLine(stream, "f", columns=lambda: 80, now=FakeClock())
    line.end()
    line.finish()
    assert stream.getvalue() == ""  # nothing drawn: nothing to end
    line.update(Report("f", 1, 2))
    line.end()
    line.end()
    assert stream.getvalue().count("\n") == 1


def test_several_files_count_files_and_show_the_call_s_bytes() -> None:
    stream, now = io.StringIO(), FakeClock()
    line = ProgressLine(stream, columns=lambda: 100, now=now)
    now.now += 10
    report = Report("docs/c.bin", 5 * MiB, 10 * MiB, 2, 10, 25 * MiB, 100 * MiB)
    line.update(report)
    text = drawn_lines(stream)[-1]
    assert text.startswith("2/10 files docs/c.bin [")
    assert " 25%" in text  # of the call's bytes, not the file's
    assert "25.0 MiB/100.0 MiB" in text
    assert "2.5 MiB/s" in text
    assert "0:30 left" in text
    line.finish()
    assert drawn_lines(stream)[-1].startswith("2/10 files  25.0 MiB in 0:10")


def test_a_resumed_file_shows_where_it_is_and_the_rate_of_what_moved() -> None:
    stream, now = io.StringIO(), FakeClock()
    line = ProgressLine(stream, "f", columns=lambda: 100, now=now)
    now.now += 1
    # 60 MiB were on disk; 10 MiB moved in this call, 30 MiB to go.
    line.update(Report("f", 70 * MiB, 100 * MiB, 0, 1, 10 * MiB, 40 * MiB))
    text = drawn_lines(stream)[-1]
    assert " 70%" in text
    assert "70.0 MiB/100.0 MiB" in text
    assert "10.0 MiB/s" in text
    assert "0:03 left" in text


def test_fit_drops_the_rate_then_the_sizes_then_the_time_left() -> None:
    figures = ["45%", "450.0 MiB/1.0 GiB", "820.3 MiB/s", "0:01 left"]
    wide = fit("name", 0.45, figures, 200)
    assert wide == "name [##########--------------]  " + "  ".join(figures)
    assert fit("name", 0.45, figures, 50) == "name [###----]  45%  450.0 MiB/1.0 GiB  0:01 left"
    assert fit("name", 0.45, figures, 33) == "name [####-----]  45%  0:01 left"
    narrow = fit("name", 0.45, figures, 20)
    assert "45%" in narrow
    assert len(narrow) < 20
    assert "left" not in narrow


def test_the_small_pieces() -> None:
    assert shorten("abcdefghij", 5) == "ab…ij"
    assert shorten("abc", 5) == "abc"
    assert (clock(5), clock(65), clock(3723)) == ("0:05", "1:05", "1:02:03")
    assert (human_size(6), human_size(1536), human_size(1024**3)) == ("6 B", "1.5 KiB", "1.0 GiB")
