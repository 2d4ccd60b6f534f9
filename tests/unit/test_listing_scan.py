"""The listing's scan: what it keeps out, its order, one folder's listing, and its wire bytes.

The scan takes shortcuts (a plain name is not put through the request rules,
a file of one's own readable by all is not asked about, a folder's runs are
encoded as they end); these tests hold it to what the rules themselves say.
"""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from filedock import protocol as p
from filedock.server import repository as repository_module
from filedock.server.repository import (
    FOLDER_TICKS,
    INLINE_TICKS,
    RUN_RECORDS,
    ListingTooLong,
    Repository,
    records_in,
)
from filedock.server.workers import Stopping

MTIME = 1_700_000_000


def write(path: Path, data: bytes = b"x", mtime: int = MTIME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def wire(repo: Repository, folder: str | None = None) -> bytes:
    """The LIST reply's bytes as the server sends them."""
    listing = repo.reply_records(folder)
    return p.encode_reply(p.FilesReply(listing.count)) + b"".join(listing.pieces)


def encoded_as_before(infos: list[p.FileInfo]) -> bytes:
    """The reply as it was made before records were streamed: one line per FileInfo."""
    return p.encode_reply(p.FilesReply(len(infos))) + b"".join(map(p.encode_file_info, infos))


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return make_tree(tmp_path)


def make_tree(tmp_path: Path) -> Path:
    """Symlinks in and out of the root, hidden files, odd names, names that sort oddly."""
    root = tmp_path / "repo"
    outside = tmp_path / "outside"
    write(outside / "secret.txt")
    write(root / "a-b", b"1")  # "-" < "." < "/" : a-b, a.txt, a/…, a0
    write(root / "a.txt", b"22")
    write(root / "a" / "inner.txt", b"333", MTIME + 1)
    write(root / "a0", b"4")
    write(root / " lead.txt")  # a space at either end cannot travel on a line
    write(root / "trail.txt ")
    write(root / "mid dle.txt")
    write(root / "back\\slash.txt")
    write(root / "ctl\x01.txt")
    write(root / "café.txt", b"5")
    write(root / "日本" / "語.txt", b"66")
    write(root / ("n" * 255))
    write(root / ".hidden")
    write(root / ".hid" / "in.txt")
    write(root / "sub" / ".secret")
    write(root / "sub" / "deep" / "c.txt", b"7")
    write(root / " space-dir" / "x.txt")  # under a folder a line would cut: left out
    for index in range(RUN_RECORDS + 3):  # more than one piece in one folder
        write(root / "many" / f"f{index:04d}", b"m")
    (root / "many" / "zz-sub").mkdir()
    write(root / "many" / "zz-sub" / "last.txt")
    os.symlink("a.txt", root / "link.txt")
    os.symlink("sub", root / "sub-link")  # a folder seen under its own path first
    os.symlink("../outside/secret.txt", root / "escape.txt")
    os.symlink(outside, root / "outlink")
    os.symlink(".hid", root / "to-hidden")  # into a hidden folder: refused, as a GET through it
    write(root / "bad\tdir" / "deep.txt")  # a folder listed only through a link to it
    os.symlink("bad\tdir", root / "via-link")
    os.symlink("nowhere", root / "dangling")
    os.mkfifo(root / "fifo")
    return root


@pytest.fixture
def repo(tree: Path) -> Iterator[Repository]:
    repository = Repository(tree)
    yield repository
    repository.close()


def test_the_listing_keeps_out_what_requests_cannot_name_and_is_sorted(repo: Repository) -> None:
    paths = [record[0] for record in repo.records()]
    assert paths == sorted(paths)
    expected = [
        "a-b",
        "a.txt",
        "a/inner.txt",
        "a0",
        "café.txt",
        "ctl\x01.txt",  # a control character other than TAB, CR, LF travels
        "link.txt",
        *[f"many/f{index:04d}" for index in range(RUN_RECORDS + 3)],
        "many/zz-sub/last.txt",
        "mid dle.txt",
        "n" * 255,
        "sub/deep/c.txt",
        "via-link/deep.txt",
        "日本/語.txt",
    ]
    assert paths == expected


def test_the_streamed_reply_is_byte_for_byte_the_reply_of_one_line_per_file(
    repo: Repository,
) -> None:
    infos = repo.listing()
    assert infos[0] == p.FileInfo("a-b", 1, datetime.fromtimestamp(MTIME, UTC))
    assert wire(repo) == encoded_as_before(infos)
    assert wire(repo).startswith(b"FILES 528\na-b\t1\t2023-11-14T22:13:20Z\n")


@pytest.mark.parametrize(
    "folder",
    [
        "a",
        "a/",
        "a//",
        "many",
        "sub",
        "sub/deep",
        "日本",
        "to-hidden",
        "sub-link",
        "nothing",
        "a.txt",
        "outlink",
        ".hid",
        "",
        " space-dir",
        "many/zz-sub",
    ],
)
def test_one_folder_is_what_the_whole_listing_holds_under_it(repo: Repository, folder: str) -> None:
    under = records_in(repo.records(), folder.rstrip("/")) if folder.rstrip("/") else []
    assert wire(repo, folder) == p.encode_reply(p.FilesReply(len(under))) + (
        p.encode_file_records(under) if under else b""
    )


def test_one_folder_with_a_linked_folder_inside_asks_the_whole_listing(tree: Path) -> None:
    os.symlink("../../a", tree / "sub" / "deep" / "to-a")  # a is listed under its own path
    os.symlink("../via-link", tree / "sub" / "to-via")  # a link to a link to a folder
    repo = Repository(tree)
    try:
        whole = repo.records()
        assert "sub/deep/to-a/inner.txt" not in [record[0] for record in whole]
        for folder in ("sub", "sub/deep"):
            under = records_in(whole, folder)
            assert wire(repo, folder) == p.encode_reply(p.FilesReply(len(under))) + b"".join(
                p.encode_file_records([record]) for record in under
            )
    finally:
        repo.close()


def test_only_the_folder_asked_for_is_read(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    read: list[int] = []
    real_scandir = os.scandir

    def counting(fd: int) -> object:
        read.append(fd)
        return real_scandir(fd)

    monkeypatch.setattr(os, "scandir", counting)
    repo = Repository(tree)
    try:
        assert repo.reply_records("sub").count == 1
        assert len(read) == 2  # sub and sub/deep, nothing else
    finally:
        repo.close()


def test_the_listing_sees_a_change_at_once(tree: Path) -> None:
    """No listing is kept between two LISTs: what changed on disk shows in the next one."""
    repo = Repository(tree)
    try:
        first = dict((path, size) for path, size, _ in repo.records())
        write(tree / "new.txt", b"new")
        (tree / "a0").unlink()
        (tree / "a-b").rename(tree / "renamed")
        with (tree / "a.txt").open("ab") as grown:  # the folder's mtime does not move
            grown.write(b"more")
        then = dict((path, size) for path, size, _ in repo.records())
        lines = wire(repo, "a").decode().splitlines()[1:]
        folder = {info.path: info.size for info in map(p.parse_file_info, lines)}
    finally:
        repo.close()
    assert "new.txt" not in first
    assert then["new.txt"] == 3
    assert "a0" not in then
    assert "a-b" not in then
    assert then["renamed"] == 1
    assert then["a.txt"] == first["a.txt"] + 4
    assert folder == {"a/inner.txt": 3}


# Names of every kind the scan's shortcut must agree with the rules on.
_NAMES = st.text(
    alphabet=st.sampled_from([*string.printable, "é", "\u00a0", "\u2028", "日", "\x7f", "\x00"]),
    min_size=1,
    max_size=12,
)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(names=st.lists(_NAMES, min_size=1, max_size=8, unique=True))
def test_a_name_is_listed_exactly_when_the_request_rules_allow_it(
    tmp_path_factory: pytest.TempPathFactory, names: list[str]
) -> None:
    root = tmp_path_factory.mktemp("names")
    made = []
    for name in names:
        if "/" in name or "\x00" in name or name in (".", ".."):
            continue
        (root / name).write_bytes(b"x")
        made.append(name)
    repo = Repository(root)
    try:
        listed = {record[0] for record in repo.records()}
        allowed = {
            name
            for name in made
            if not name.startswith(".") and repo.listable(name) and repo.listable_file(name)
        }
    finally:
        repo.close()
    assert listed == allowed


def test_a_path_is_listed_only_when_a_request_line_can_carry_it(tmp_path: Path) -> None:
    # A plain name is let through by its folder's room, not by the rules: the
    # room is the path's limit here, not the name's.
    limit = p.longest_request_path(100)  # 94 bytes
    folder = "d" * 40
    fits = f"{folder}/" + "f" * (limit - 41)
    too_long = fits + "g"
    for path in (fits, too_long):
        write(tmp_path / path)
    repo = Repository(tmp_path, max_line=100)
    try:
        assert [record[0] for record in repo.records()] == [fits]
        assert repo.reply_records(folder).count == 1
    finally:
        repo.close()


@pytest.mark.parametrize("reverse", [False, True])
def test_a_folder_linked_twice_is_listed_under_the_link_nearest_the_top(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reverse: bool
) -> None:
    root = tmp_path / "repo"
    write(root / "bad\tdir" / "f.txt")  # its own path cannot be listed: only its links
    os.symlink("bad\tdir", root / "z-top")
    (root / "a").mkdir()
    os.symlink("../bad\tdir", root / "a" / "deeper")  # found first, but one level down
    real_scandir = os.scandir

    def ordered(fd: int) -> Iterator[os.DirEntry[str]]:
        with real_scandir(fd) as entries:
            in_order = sorted(entries, key=lambda entry: entry.name, reverse=reverse)
        yield from in_order

    monkeypatch.setattr(os, "scandir", ordered)
    repo = Repository(root)
    try:
        assert [record[0] for record in repo.records()] == ["z-top/f.txt"]
    finally:
        repo.close()


class _SwappedEntry:
    """A folder entry read as a folder that is a file by the time it is looked at."""

    def __init__(self, entry: os.DirEntry[str]) -> None:
        self.entry, self.name = entry, entry.name

    def is_dir(self, *, follow_symlinks: bool = True) -> bool:
        return True

    def is_symlink(self) -> bool:
        return False

    def stat(self, *, follow_symlinks: bool = True) -> os.stat_result:
        return self.entry.stat(follow_symlinks=follow_symlinks)


def test_an_entry_swapped_while_listed_is_left_out_and_the_order_holds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "repo"
    for name in ("name", "name-x", "name0"):
        write(root / name)
    real_scandir = os.scandir

    def swapping(fd: int) -> Iterator[object]:
        with real_scandir(fd) as entries:
            found = [_SwappedEntry(e) if e.name == "name" else e for e in entries]
        yield from found

    monkeypatch.setattr(os, "scandir", swapping)
    repo = Repository(root)
    try:
        # "name" was ordered as the folder "name/" (after "name-x"); as a file it is not there.
        assert [record[0] for record in repo.records()] == ["name-x", "name0"]
    finally:
        repo.close()


# -- on the event loop -------------------------------------------------------------------------


def plain_tree(root: Path, files: int) -> Path:
    for index in range(files):
        write(root / "docs" / f"f{index:04d}.txt", b"d" * (index % 7))
    write(root / "docs" / "sub" / "inner.txt")
    write(root / "top.txt")
    return root


def test_a_folder_given_up_while_read_is_closed_once(tmp_path: Path) -> None:
    # The folder asked for is the scan's from its push on: closed there, not again.
    repo = Repository(plain_tree(tmp_path / "repo", 300))
    try:
        with pytest.raises(Stopping):
            repo.reply_records("docs", lambda: True)
    finally:
        repo.close()


def test_an_inline_listing_is_the_listing_a_worker_reads(tmp_path: Path) -> None:
    repo = Repository(plain_tree(tmp_path / "repo", 20))
    try:
        for folder in (None, "docs", "docs/sub", "docs/", "nothing-here", "../out"):
            assert repo.reply_records(folder, inline=True) == repo.reply_records(folder)
    finally:
        repo.close()


def test_an_inline_listing_gives_up_past_its_budget_of_entries(tmp_path: Path) -> None:
    # Each entry is one tick read and one visited, each folder entered (docs/ and
    # sub/) and the step down to docs/ FOLDER_TICKS more; sub/ and its file are
    # entries too.
    fits = (INLINE_TICKS - 3 * FOLDER_TICKS - 4) // 2
    repo = Repository(plain_tree(tmp_path / "repo", fits))
    try:
        assert repo.reply_records("docs", inline=True).count == fits + 1
        write(tmp_path / "repo" / "docs" / "one-more.txt")
        with pytest.raises(ListingTooLong):
            repo.reply_records("docs", inline=True)
        assert repo.reply_records("docs").count == fits + 2  # as a worker reads it
    finally:
        repo.close()


def test_an_inline_listing_counts_the_folders_it_enters(tmp_path: Path) -> None:
    # Empty folders are few entries but each is opened, watched and read.
    folders = INLINE_TICKS // (FOLDER_TICKS + 2) + 1
    for index in range(folders):
        (tmp_path / "repo" / "docs" / f"d{index:03d}").mkdir(parents=True)
    write(tmp_path / "repo" / "docs" / f"d{folders - 1:03d}" / "last.txt")
    repo = Repository(tmp_path / "repo")
    try:
        with pytest.raises(ListingTooLong):
            repo.reply_records("docs", inline=True)
        assert repo.reply_records("docs").count == 1
    finally:
        repo.close()


def test_an_inline_listing_leaves_a_folder_large_on_disk_to_a_worker(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # (One emptied of 100,000 files keeps 32 MB of blocks: a read of no entry.)
    repo = Repository(plain_tree(tmp_path / "repo", 3))
    try:
        assert repo.reply_records("docs", inline=True).count == 4
        monkeypatch.setattr(repository_module, "INLINE_FOLDER_BYTES", 0)
        with pytest.raises(ListingTooLong):
            repo.reply_records("docs", inline=True)
        assert repo.reply_records("docs").count == 4
    finally:
        repo.close()


def test_an_inline_listing_counts_the_steps_down_to_its_folder(tmp_path: Path) -> None:
    # A deep path's walk costs as its folders do, listed or not.
    depth = INLINE_TICKS // FOLDER_TICKS + 1
    deep = "/".join(["d"] * depth)
    write(tmp_path / "repo" / deep / "x.txt")
    repo = Repository(tmp_path / "repo")
    try:
        with pytest.raises(ListingTooLong):
            repo.reply_records(deep + "/missing", inline=True)
        assert repo.reply_records(deep + "/missing").count == 0
    finally:
        repo.close()


@pytest.mark.parametrize("folder", ["docs", "linked", None])
def test_an_inline_listing_gives_up_at_a_symlink_before_walking_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: str | None
) -> None:
    root = plain_tree(tmp_path / "repo", 3)
    os.symlink("top.txt", root / "docs" / "link.txt")  # a walk of up to 1,024 steps
    os.symlink("docs", root / "linked")
    repo = Repository(root)
    walks: list[object] = []
    monkeypatch.setattr(repository_module._Walk, "to", lambda *args: walks.append(args))
    try:
        with pytest.raises(ListingTooLong):
            repo.reply_records(folder, inline=True)
    finally:
        repo.close()
    assert walks == []
