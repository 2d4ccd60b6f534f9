"""The pager's choices without a terminal: which command, what fits, falling back."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from filedock.cli.pager import Pager, pager_command
from filedock.cli.screen import Screen


def test_which_pager() -> None:
    assert pager_command({}) == "less"
    assert pager_command({"PAGER": "most"}) == "most"
    assert pager_command({"PAGER": "most", "FILEDOCK_PAGER": "less -S"}) == "less -S"
    assert pager_command({"PAGER": ""}) is None
    assert pager_command({"PAGER": "cat"}) is None
    assert pager_command({"PAGER": "more", "FILEDOCK_PAGER": ""}) is None


def test_what_fits_counts_wrapped_rows_and_no_colour_codes() -> None:
    pager = Pager(io.StringIO(), "less", height=4, width=10)
    assert pager.fits("a\nb\nc\n")  # three rows and one for the prompt
    assert not pager.fits("a\nb\nc\nd\n")
    assert not pager.fits("a\n" + "x" * 11 + "\nc\n")  # the long line takes two rows
    assert pager.fits("\x1b[1;36m[SERVER]\x1b[0m 12\nb\n")  # 11 characters, 10 columns
    assert not pager.fits("報告報告報告\nb\nc\n")  # twelve columns: two rows


def test_not_a_terminal_has_no_pager() -> None:
    assert Pager.for_stream(io.StringIO(), environ={"PAGER": "less"}) is None


def test_text_that_fits_is_written_and_a_missing_pager_falls_back(tmp_path: Path) -> None:
    out = io.StringIO()
    Pager(out, "no-such-pager-anywhere", height=40, width=80).show("short\n")
    assert out.getvalue() == "short\n"
    with open(tmp_path / "out", "w+") as stream:
        long = "".join(f"{n}\n" for n in range(100))
        Pager(stream, "no-such-pager-anywhere 2>/dev/null", height=10, width=80).show(long)
        stream.seek(0)
        assert stream.read() == long


def test_the_pager_gets_the_text(tmp_path: Path) -> None:
    got = tmp_path / "got"
    command = (
        f"{sys.executable} -c 'import sys; open(sys.argv[1], \"w\").write(sys.stdin.read())' {got}"
    )
    with open(tmp_path / "out", "w+") as stream:
        Pager(stream, command, height=3, width=80).show("1\n2\n3\n4\n")
        stream.seek(0)
        assert stream.read() == ""
    assert got.read_text() == "1\n2\n3\n4\n"


def test_paged_collects_the_block_and_lets_errors_through() -> None:
    out, errors = io.StringIO(), io.StringIO()
    shown: list[str] = []

    class Recording(Pager):
        def show(self, text: str) -> None:
            shown.append(text)

    screen = Screen(out, errors=errors)
    with screen.paged(Recording(out, "less", 10, 80)):
        screen.server("--- FILES ---")
        screen.client_error("a warning")
    assert shown == ["[SERVER] --- FILES ---\n"]
    assert out.getvalue() == ""
    assert errors.getvalue() == "[CLIENT] a warning\n"

    def cut_short() -> None:
        with screen.paged(Recording(out, "less", 10, 80)):
            screen.line("so far")
            raise KeyError("cut short")

    with pytest.raises(KeyError):
        cut_short()
    assert out.getvalue() == "so far\n"  # what there was, printed
    assert screen.out is out
