"""Opening a folder beneath another in one call: what openat2 refuses is left to the walk."""

from __future__ import annotations

import ctypes
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from filedock.server import beneath


@pytest.fixture
def top(tmp_path: Path) -> Iterator[int]:
    (tmp_path / "top" / "a" / "b").mkdir(parents=True)
    (tmp_path / "top" / "file.txt").write_text("x")
    (tmp_path / "outside").mkdir()
    os.symlink("a", tmp_path / "top" / "alink")
    os.symlink(tmp_path / "outside", tmp_path / "top" / "out")
    fd = os.open(tmp_path / "top", os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


needs_openat2 = pytest.mark.skipif(not beneath.available(), reason="no openat2 here")


@needs_openat2
def test_a_real_folder_is_opened(top: int, tmp_path: Path) -> None:
    fd = beneath.open_folder(top, "a/b")
    assert fd is not None
    try:
        assert os.path.samestat(os.fstat(fd), os.stat(tmp_path / "top" / "a" / "b"))
    finally:
        os.close(fd)


@needs_openat2
@pytest.mark.parametrize("path", ["alink", "alink/b", "out", "../outside", "a/../../outside"])
def test_a_symlink_or_a_way_out_is_left_to_the_walk(top: int, path: str) -> None:
    assert beneath.open_folder(top, path) is None
    assert beneath.available()  # (the path's doing, not the kernel's)


@needs_openat2
def test_a_path_too_long_for_one_call_is_left_to_the_walk(top: int, tmp_path: Path) -> None:
    names = ["n" * 250] * 17  # 4,266 bytes: past PATH_MAX, each name well within NAME_MAX
    here = os.open(tmp_path / "top" / "a", os.O_RDONLY | os.O_DIRECTORY)
    for name in names:  # (made a name at a time: no one call takes the whole path)
        os.mkdir(name, dir_fd=here)
        below = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=here)
        os.close(here)
        here = below
    os.close(here)
    assert beneath.open_folder(top, "/".join(["a", *names])) is None
    assert beneath.available()


@needs_openat2
@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("missing", FileNotFoundError),
        ("a/missing", FileNotFoundError),
        ("file.txt", NotADirectoryError),
    ],
)
def test_what_is_not_there_is_an_os_error(top: int, path: str, error: type[OSError]) -> None:
    with pytest.raises(error):
        beneath.open_folder(top, path)


@pytest.mark.parametrize("code", [errno.ENOSYS, errno.EPERM])
def test_a_kernel_without_openat2_is_asked_once(
    top: int, code: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []

    def missing(*args: object) -> int:
        calls.append(code)
        ctypes.set_errno(code)
        return -1

    monkeypatch.setattr(beneath._openat2, "usable", True)
    monkeypatch.setattr(beneath._openat2, "_syscall", missing)
    assert beneath.open_folder(top, "a") is None
    assert not beneath.available()
    assert beneath.open_folder(top, "a") is None
    assert calls == [code]
