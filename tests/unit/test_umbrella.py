"""``filedock`` itself: its help, its version, and a mistyped command."""

from __future__ import annotations

import pytest

from filedock.cli import main
from filedock.cli.screen import capacity_line
from filedock.version import __version__


def test_version_and_help_exit_zero(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"filedock {__version__}\n"
    for flag in ("--help", "-h"):
        assert main([flag]) == 0
        out = capsys.readouterr().out
        assert out.startswith("usage: filedock COMMAND")
        assert "  server  " in out
        assert "  client  " in out


def test_no_command_is_a_usage_error_with_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "commands:" in captured.err


@pytest.mark.parametrize(
    ("word", "hint"),
    [("clinet", "did you mean 'client'?"), ("srever", "did you mean 'server'?"), ("zzz", None)],
)
def test_a_mistyped_command_is_named_with_a_suggestion(
    capsys: pytest.CaptureFixture[str], word: str, hint: str | None
) -> None:
    assert main([word]) == 2
    err = capsys.readouterr().err
    assert f"unknown command {word!r}" in err
    if hint is None:
        assert "did you mean" not in err
    else:
        assert hint in err


@pytest.mark.parametrize(
    ("reason", "line"),
    [
        ("server is at capacity (3/3 clients)", "Server is at capacity (3/3 clients)"),
        ("registry unavailable: lost", "Server is at capacity: registry unavailable: lost"),
        ("", "Server is at capacity"),
        ("server is at capacityish", "Server is at capacity: server is at capacityish"),
    ],
)
def test_a_full_answer_says_its_reason_once(reason: str, line: str) -> None:
    assert capacity_line(reason) == line
