"""What the client prints for each outcome of a download and each change of a mirror."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

from filedock.cli.screen import Screen
from filedock.client.results import Change, DownloadResult, Outcome, TransferProgress, TreeSummary
from filedock.errors import NotFound

SHA = "ab" * 32
WHERE = os.path.abspath("downloads/a.txt")


@pytest.mark.parametrize(
    ("result", "lines"),
    [
        (
            DownloadResult(Path("downloads/a.txt"), 6, SHA),
            [f"[CLIENT] Saved file to: {WHERE}", "[CLIENT] SHA256 verify: PASS"],
        ),
        (
            DownloadResult(Path("downloads/a.txt"), 6, SHA, Outcome.RESUMED, resumed_from=4),
            [
                f"[CLIENT] Saved file to: {WHERE}",
                "[CLIENT] SHA256 verify: PASS (resumed from 4 bytes)",
            ],
        ),
        (
            DownloadResult(
                Path("downloads/a.txt"), 6, SHA, restarted="the file changed on the server"
            ),
            [
                f"[CLIENT] Saved file to: {WHERE}",
                "[CLIENT] SHA256 verify: PASS (started over: the file changed on the server)",
            ],
        ),
        (
            DownloadResult(Path("downloads/a.txt"), 6, SHA, Outcome.REPLACED),
            [
                f"[CLIENT] Saved file to: {WHERE}",
                "[CLIENT] SHA256 verify: PASS (replaced a different local file)",
            ],
        ),
        (
            DownloadResult(Path("downloads/a.txt"), 6, SHA, Outcome.SKIPPED),
            [f"[CLIENT] Skipped (up to date): {WHERE}"],
        ),
        (
            DownloadResult(Path("downloads/a.txt"), 6, SHA, Outcome.KEPT),
            [f"[CLIENT] Kept (--no-clobber; it differs from the server's): {WHERE}"],
        ),
    ],
    ids=["fetched", "resumed", "restarted", "replaced", "skipped", "kept"],
)
def test_each_outcome_has_its_line(result: DownloadResult, lines: list[str]) -> None:
    out = io.StringIO()
    Screen(out, colour=False).download(result)
    assert out.getvalue().splitlines() == lines


def test_mirror_lines_and_summary() -> None:
    out, err = io.StringIO(), io.StringIO()
    screen = Screen(out, errors=err, colour=False)
    screen.change(Change("fetch", "docs/a.txt", Path("copy/a.txt"), 1536), dry_run=False)
    screen.change(Change("delete", "", Path("copy/old.txt"), 3), dry_run=True)
    screen.change(
        Change("fail", "docs/b.txt", Path("copy/b.txt"), 2, NotFound("gone")), dry_run=False
    )
    summary = TreeSummary(fetched=1, skipped=2, deleted=1, failed=1, kept=1, bytes=1536)
    screen.mirror_summary(summary, 65.0, dry_run=False)
    assert out.getvalue().splitlines() == [
        "fetch copy/a.txt (1.5 KiB)",
        "would delete copy/old.txt",
        "[CLIENT] fetched 1, skipped 2, replaced 0, deleted 1, failed 1, kept 1; 1.5 KiB in 1:05",
    ]
    assert err.getvalue() == "[CLIENT] fail copy/b.txt: not-found: gone\n"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_ends_before_any_other_line() -> None:
    terminal = _Terminal()
    screen = Screen(terminal, progress=terminal, colour=False)
    bar = screen.transfer_bar("big.bin")
    assert bar is not None
    size = 8 * 1024 * 1024
    bar(TransferProgress("big.bin", 0, size, 0, 1, 0, size))
    bar(TransferProgress("big.bin", size // 2, size, 0, 1, size // 2, size))
    screen.client_error("Connection to the server was lost")
    drawn = terminal.getvalue()
    assert "\x1b[K\n[CLIENT] Connection to the server was lost\n" in drawn
    assert drawn.count("\n") == 2  # the bar's line ended once, then the error's
    bar.finish()  # already ended: nothing more is drawn
    assert terminal.getvalue() == drawn
