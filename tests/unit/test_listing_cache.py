"""The listing cache on its own: where it is trusted, its bounds, and the events
that drop what it keeps (an overflow, a change while a scan runs)."""

from __future__ import annotations

import errno
import os
import struct
import sys
from pathlib import Path

import pytest

from filedock.server import listing_cache as lc
from filedock.server.listing_cache import ListingCache, ScanWatches, mount_type
from filedock.server.repository import EncodedListing, ListingTooLong, Repository

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")


class FakeInotify:
    """Watches handed out by number; events written to a pipe the cache reads."""

    def __init__(self, *, fail_with: int | None = None, as_the_kernel: bool = False) -> None:
        self.fd, self._write = os.pipe()
        os.set_blocking(self.fd, False)
        self.fail_with = fail_with
        self.as_the_kernel = as_the_kernel  # one watch a folder, as inotify gives
        self.watched: dict[int, str] = {}
        self.removed: list[int] = []

    def add_watch(self, path: str, mask: int) -> int:
        if self.fail_with is not None:
            raise OSError(self.fail_with, os.strerror(self.fail_with))
        folder = os.readlink(path) if path.startswith("/proc/self/fd/") else path
        if self.as_the_kernel:
            for wd, watched in self.watched.items():
                if watched == folder and wd not in self.removed:
                    return wd
        wd = len(self.watched) + 1
        self.watched[wd] = folder
        return wd

    def rm_watch(self, wd: int) -> None:
        self.removed.append(wd)

    def event(self, wd: int, mask: int) -> None:
        os.write(self._write, struct.pack("iIII", wd, mask, 0, 0))

    def close(self) -> None:
        os.close(self.fd)
        os.close(self._write)


def local(_: str) -> str:
    return "ext4"


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "docs").mkdir(parents=True)
    (root / "docs" / "a.txt").write_bytes(b"a")
    (root / "b.txt").write_bytes(b"b")
    return root


def scanned(cache: ListingCache, root: Path, folder: str | None = None) -> ScanWatches:
    """One LIST's scan through the cache (as the LIST handler does), kept if it may be."""
    watches = cache.begin()
    assert watches is not None
    repo = Repository(root)
    try:
        listing = repo.reply_records(folder, watches=watches)
    finally:
        repo.close()
    cache.end(folder, watches, listing)
    return watches


def scanned_on_the_loop(
    cache: ListingCache, root: Path, folder: str | None = None
) -> EncodedListing | None:
    """A LIST's scan as the handler first tries it, on the loop: None if it gave up."""
    watches = cache.begin()
    assert watches is not None
    repo = Repository(root)
    listing: EncodedListing | None = None
    try:
        listing = repo.reply_records(folder, watches=watches, inline=True)
    except ListingTooLong:
        pass
    finally:
        repo.close()
    cache.end(folder, watches, listing)
    return listing


def test_the_loop_reads_only_folders_that_a_kept_listing_watches(tree: Path) -> None:
    # A first watch walks all the kernel holds for a folder (milliseconds for some).
    fake = FakeInotify(as_the_kernel=True)
    cache = ListingCache(str(tree), fake)
    assert scanned_on_the_loop(cache, tree, "docs") is None
    assert fake.watched == {}  # given up before any watch
    scanned(cache, tree)  # the whole listing, kept: the root and docs/ watched
    listing = scanned_on_the_loop(cache, tree, "docs")
    assert listing is not None
    assert listing.count == 1
    assert cache.lookup("docs") is not None
    cache.close()


def test_the_listings_kept_are_bounded_in_number(tree: Path) -> None:
    # Listings of missing folders hold no record and no watch of their own.
    cache = ListingCache(str(tree), FakeInotify(), max_listings=2)
    for name in ("n1", "n2", "n3"):
        scanned(cache, tree, name)
    assert cache.lookup("n1") is None
    assert cache.lookup("n2") is not None
    assert cache.lookup("n3") is not None
    cache.close()


def test_a_listing_with_a_hard_linked_file_is_not_kept(tree: Path) -> None:
    # Appended to through its other name, the file changes no event in docs/.
    os.link(tree / "b.txt", tree / "docs" / "again.txt")
    cache = ListingCache(str(tree), FakeInotify())
    assert scanned(cache, tree, "docs").spoiled
    assert cache.lookup("docs") is None
    cache.close()


def test_a_listing_not_kept_leaves_no_watch_behind(tree: Path) -> None:
    os.symlink("../b.txt", tree / "docs" / "link.txt")  # a symlink: never kept
    fake = FakeInotify()
    cache = ListingCache(str(tree), fake)
    watches = scanned(cache, tree, "docs")
    assert watches.spoiled
    assert cache.lookup("docs") is None
    assert sorted(fake.removed) == sorted(watches.wds) != []
    cache.close()


def test_the_folders_watched_are_bounded_too(tree: Path) -> None:
    # Empty listings hold watches and no record: a bound of records keeps any number.
    for name in ("e1", "e2", "e3"):
        (tree / name).mkdir()
    fake = FakeInotify(as_the_kernel=True)
    cache = ListingCache(str(tree), fake, max_watches=3)  # the root, and two eN
    for name in ("e1", "e2", "e3"):
        scanned(cache, tree, name)
    assert cache.lookup("e1") is None  # the least recently used
    assert cache.lookup("e2") is not None
    assert cache.lookup("e3") is not None
    assert str(tree / "e1") in [fake.watched[wd] for wd in fake.removed]
    cache.close()


def test_every_folder_read_is_watched_and_a_second_lookup_hits(tree: Path) -> None:
    fake = FakeInotify()
    cache = ListingCache(str(tree), fake)
    assert cache.lookup(None) is None
    scanned(cache, tree)
    assert sorted(fake.watched.values()) == [str(tree), str(tree / "docs")]
    kept = cache.lookup(None)
    assert kept is not None
    assert kept.count == 2
    assert cache.hits == 1
    assert len(cache) == 2
    cache.close()


def test_an_event_drops_the_listings_that_read_its_folder_only(tree: Path) -> None:
    fake = FakeInotify()
    cache = ListingCache(str(tree), fake)
    scanned(cache, tree)  # watches 1 (root) and 2 (docs)
    scanned(cache, tree, "docs")  # the same folders again: 3 (root, on the way), 4 (docs)
    fake.event(4, lc.IN_MODIFY)
    assert cache.lookup("docs") is None
    assert cache.lookup(None) is not None  # it read docs through watch 2: still there
    fake.event(2, lc.IN_ATTRIB)
    assert cache.lookup(None) is None
    cache.close()


def test_an_overflow_drops_everything(tree: Path) -> None:
    fake = FakeInotify()
    cache = ListingCache(str(tree), fake)
    scanned(cache, tree)
    scanned(cache, tree, "docs")
    fake.event(-1, lc.IN_Q_OVERFLOW)
    assert cache.lookup(None) is None
    assert cache.lookup("docs") is None
    assert len(cache) == 0
    cache.close()


def test_a_change_while_the_scan_ran_keeps_its_listing_out(tree: Path) -> None:
    fake = FakeInotify()
    cache = ListingCache(str(tree), fake)
    watches = cache.begin()
    assert watches is not None
    repo = Repository(str(tree))
    listing = repo.reply_records(None, watches=watches)
    repo.close()
    fake.event(list(watches.wds)[-1], lc.IN_CREATE)  # after the folder was read, before the end
    cache.end(None, watches, listing)
    assert cache.lookup(None) is None
    scanned(cache, tree)  # a scan with no change meanwhile is kept
    assert cache.lookup(None) is not None
    cache.close()


def test_an_overflow_while_the_scan_ran_keeps_its_listing_out(tree: Path) -> None:
    fake = FakeInotify()
    cache = ListingCache(str(tree), fake)
    watches = cache.begin()
    assert watches is not None
    fake.event(-1, lc.IN_Q_OVERFLOW)
    cache.drain()
    repo = Repository(str(tree))
    listing = repo.reply_records(None, watches=watches)
    repo.close()
    cache.end(None, watches, listing)
    assert cache.lookup(None) is None
    cache.close()


def test_the_least_recently_used_listing_goes_first_past_the_cap(tree: Path) -> None:
    fake = FakeInotify()
    cache = ListingCache(str(tree), fake, max_records=2)
    scanned(cache, tree)  # 2 records
    scanned(cache, tree, "docs")  # 1 more: the whole listing goes
    assert cache.lookup(None) is None
    assert cache.lookup("docs") is not None
    assert len(cache) == 1
    assert 1 in fake.removed  # the root's watch served only the listing dropped
    cache.close()


def test_a_listing_bigger_than_the_cap_is_not_kept(tree: Path) -> None:
    cache = ListingCache(str(tree), FakeInotify(), max_records=1)
    scanned(cache, tree)
    assert cache.lookup(None) is None
    assert len(cache) == 0
    cache.close()


def test_out_of_watches_turns_the_cache_off(tree: Path) -> None:
    cache = ListingCache(str(tree), FakeInotify(fail_with=errno.ENOSPC))
    watches = scanned(cache, tree)
    assert watches.spoiled
    assert not cache.active
    assert cache.lookup(None) is None
    assert cache.begin() is None


def test_a_watch_refused_otherwise_keeps_that_listing_out_only(tree: Path) -> None:
    fake = FakeInotify(fail_with=errno.EACCES)
    cache = ListingCache(str(tree), fake)
    scanned(cache, tree)
    assert cache.active
    assert cache.lookup(None) is None
    fake.fail_with = None
    scanned(cache, tree)
    assert cache.lookup(None) is not None
    cache.close()


def test_a_folder_no_request_can_name_is_not_kept(tree: Path) -> None:
    cache = ListingCache(str(tree), FakeInotify())
    assert scanned(cache, tree, "../elsewhere").spoiled
    assert cache.lookup("../elsewhere") is None
    cache.close()


@pytest.mark.parametrize("kind", ["nfs4", "cifs", "fuse.sshfs", "overlay", None])
def test_no_cache_on_a_file_system_the_kernel_does_not_see_all_of(
    tree: Path, kind: str | None
) -> None:
    opened: list[FakeInotify] = []
    cache = ListingCache.open(str(tree), fs_type=lambda _: kind, inotify=lambda: opened[0])
    assert cache is None


def test_a_cache_on_a_local_file_system(tree: Path) -> None:
    fake = FakeInotify()
    cache = ListingCache.open(str(tree), fs_type=local, inotify=lambda: fake)
    assert cache is not None
    assert cache.active
    cache.close()


def test_no_cache_without_inotify(tree: Path) -> None:
    def unavailable() -> FakeInotify:
        raise OSError(errno.EMFILE, "too many open files")

    assert ListingCache.open(str(tree), fs_type=local, inotify=unavailable) is None


def test_the_real_inotify_reports_a_change(tree: Path) -> None:
    cache = ListingCache.open(str(tree), fs_type=local)
    assert cache is not None
    scanned(cache, tree)
    assert cache.lookup(None) is not None
    with open(tree / "docs" / "a.txt", "ab") as file:
        file.write(b"more")
    assert cache.lookup(None) is None
    cache.close()


def test_mount_type_is_the_mount_of_the_folders_device(tmp_path: Path) -> None:
    dev = os.stat(tmp_path).st_dev
    here = f"{os.major(dev)}:{os.minor(dev)}"
    info = tmp_path / "mountinfo"
    info.write_text(
        "22 1 0:99 / / rw - ext4 /dev/vda rw\n"
        f"40 22 {here} / /somewhere rw shared:1 - nfs4 server:/x rw\n"
    )
    assert mount_type(str(tmp_path), str(info)) == "nfs4"
    info.write_text("22 1 0:99 / / rw - xfs /dev/vda rw\n")  # no device match: the longest mount
    assert mount_type(str(tmp_path), str(info)) == "xfs"
    assert mount_type(str(tmp_path), str(tmp_path / "absent")) is None


def test_a_kept_listing_is_handed_out_as_a_copy(tree: Path) -> None:
    cache = ListingCache(str(tree), FakeInotify())
    scanned(cache, tree)
    first = cache.lookup(None)
    assert isinstance(first, EncodedListing)
    first.pieces[:] = [b""] * len(first.pieces)  # as the reply does while sending
    second = cache.lookup(None)
    assert second is not None
    assert b"".join(second.pieces).count(b"\n") == 2
    cache.close()


def test_the_root_stays_watched_from_the_start_when_no_listing_needs_it(tree: Path) -> None:
    fake = FakeInotify(as_the_kernel=True)
    cache = ListingCache.open(str(tree), fs_type=local, inotify=lambda: fake)
    assert cache is not None
    assert fake.watched == {1: str(tree)}  # before any listing
    fake.event(1, lc.IN_CREATE)  # a change before the first listing: it does not spoil it
    assert cache.lookup(None) is None
    scanned(cache, tree)  # the root again (the same watch), and docs
    assert cache.lookup(None) is not None
    assert fake.watched == {1: str(tree), 2: str(tree / "docs")}
    fake.event(1, lc.IN_CREATE)  # a file made in the root drops the listing, as before
    assert cache.lookup(None) is None
    assert fake.removed == [2]  # docs' watch went with it; the root's stays
    cache.close()
