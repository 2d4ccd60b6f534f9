"""Partial download files on disk: a live download's lock, odd files under the name, old ones."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from filedock.client.download import OLD_PARTIAL_AGE, partial_path, remove_old_partials


def test_a_partial_locked_by_a_live_download_is_left_alone(tmp_path: Path) -> None:
    """Two clients saving the same file into one folder: the second is refused, not mixed in."""
    from filedock.client.download import Partial
    from filedock.errors import SaveError

    dest = tmp_path / "big.bin"
    first = Partial.open(dest, 10)
    try:
        with pytest.raises(SaveError, match="being downloaded by another client"):
            Partial.open(dest, 10)
    finally:
        first.discard()
    second = Partial.open(dest, 10)  # free again
    second.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_or_fifo_under_the_partial_name_is_refused(tmp_path: Path) -> None:
    from filedock.client.download import Partial
    from filedock.errors import SaveError

    outside = tmp_path / "outside.txt"
    outside.write_text("keep me")
    folder = tmp_path / "downloads"
    folder.mkdir()
    partial_path(folder / "a").symlink_to(outside)
    os.mkfifo(partial_path(folder / "b"))
    for name in ("a", "b"):
        with pytest.raises(SaveError):
            Partial.open(folder / name, 10)
    assert outside.read_text() == "keep me"


def test_old_partials_with_random_names_are_removed_once_stale(tmp_path: Path) -> None:
    """Earlier versions named each partial anew: those left by killed runs are cleaned."""
    old = [tmp_path / f".big.bin.{suffix}.part" for suffix in ("abcd1234", "x_y_z_w0")]
    for path in old:
        path.write_bytes(b"partial")
        os.utime(path, (time.time() - OLD_PARTIAL_AGE - 60,) * 2)
    recent = tmp_path / ".big.bin.qwer5678.part"
    recent.write_bytes(b"an older client may still write this")
    mine = partial_path(tmp_path / "big.bin")
    mine.write_bytes(b"kept for a resume")
    os.utime(mine, (time.time() - OLD_PARTIAL_AGE - 60,) * 2)
    other = tmp_path / "notes.part"
    other.write_bytes(b"not ours")
    assert remove_old_partials(tmp_path) == 2
    assert sorted(tmp_path.iterdir()) == sorted([recent, mine, other])
