"""A cached listing is the listing: every change made before a LIST is in its reply.

Each test lists once (filling the cache), checks that the next LIST came from
the cache, changes the tree, and checks the very next LIST shows the change,
byte for byte what a fresh scan of the tree gives. The last tests check
where a scan runs: a small folder on the loop, a large one in a worker.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from filedock import protocol as p
from filedock.server.listing_cache import ListingCache
from filedock.server.repository import INLINE_TICKS, Repository
from tests.support import LineConn, ServerThread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify")


def fresh_reply(root: Path, folder: str | None = None) -> bytes:
    """What a scan of the tree as it is now answers."""
    repo = Repository(root)
    try:
        listing = repo.reply_records(folder)
    finally:
        repo.close()
    return p.encode_reply(p.FilesReply(listing.count)) + b"".join(listing.pieces)


def read_listing(conn: LineConn, folder: str | None = None) -> bytes:
    conn.send_line("LIST" if folder is None else f"LIST {folder}")
    head = conn.read_line()
    assert head.startswith("FILES "), head
    lines = [conn.read_line() for _ in range(int(head.split()[1]))]
    return "".join(line + "\n" for line in [head, *lines]).encode()


def cache_of(server: ServerThread) -> ListingCache:
    assert server.server is not None
    cache = server.server.context.listing_cache
    assert cache is not None, "the test tree is on a trusted local file system"
    return cache


def hits(server: ServerThread) -> int:
    cache = cache_of(server)
    return server.sync(lambda: cache.hits)


@pytest.fixture
def tree(repo: Path) -> Path:
    (repo / "docs").mkdir()
    (repo / "docs" / "a.txt").write_bytes(b"alpha")
    (repo / "docs" / "old").mkdir()
    (repo / "docs" / "old" / "b.txt").write_bytes(b"beta")
    os.utime(repo / "docs" / "a.txt", (1_000_000_000, 1_000_000_000))
    return repo


def _append(root: Path) -> None:
    with open(root / "docs" / "a.txt", "ab") as file:
        file.write(b" and more")


def _replace_folder(root: Path) -> None:
    spare = root / "spare"
    spare.mkdir()
    (spare / "c.txt").write_bytes(b"gamma")
    shutil.rmtree(root / "docs" / "old")
    os.rename(spare, root / "docs" / "old")


CHANGES: dict[str, Callable[[Path], None]] = {
    "add": lambda root: (root / "docs" / "new.txt").write_bytes(b"new"),
    "remove": lambda root: (root / "docs" / "a.txt").unlink(),
    "rename": lambda root: os.rename(root / "docs" / "a.txt", root / "docs" / "z.txt"),
    "append": _append,
    "chmod": lambda root: os.chmod(root / "docs" / "a.txt", 0o200),
    "touch": lambda root: os.utime(root / "docs" / "a.txt", (2_000_000_000, 2_000_000_000)),
    "replace-folder": _replace_folder,
    "deep-append": lambda root: (root / "docs" / "old" / "b.txt").write_bytes(b"beta, longer"),
}


@pytest.mark.parametrize("folder", [None, "docs"])
@pytest.mark.parametrize("change", sorted(CHANGES))
def test_the_next_list_after_a_change_shows_it(
    server: ServerThread, tree: Path, change: str, folder: str | None
) -> None:
    with LineConn(server.port) as conn:
        conn.greet()
        before = read_listing(conn, folder)
        assert read_listing(conn, folder) == before
        assert hits(server) == 1  # the second came from the cache, and was the same
        CHANGES[change](tree)
        after = read_listing(conn, folder)
        assert hits(server) == 1  # scanned again
        assert after == fresh_reply(tree, folder)
        if not (change == "chmod" and os.geteuid() == 0):  # root reads it either way
            assert after != before
        assert read_listing(conn, folder) == after  # and that one is cached in turn
        assert hits(server) == 2


def test_a_cached_reply_is_byte_for_byte_a_fresh_one(server: ServerThread, tree: Path) -> None:
    with LineConn(server.port) as conn:
        conn.greet()
        replies = [read_listing(conn), read_listing(conn)]
    assert hits(server) == 1
    assert replies == [fresh_reply(tree)] * 2


def test_each_list_reads_the_queued_events_itself(server: ServerThread, tree: Path) -> None:
    """With the loop's reader taken away, a LIST still sees the change made before it."""
    assert server.server is not None
    loop = server.loop
    cache = cache_of(server)
    inotify = cache._inotify
    assert inotify is not None
    server.sync(lambda: loop.remove_reader(inotify.fd))
    with LineConn(server.port) as conn:
        conn.greet()
        before = read_listing(conn)
        assert read_listing(conn) == before
        _append(tree)
        assert read_listing(conn) == fresh_reply(tree) != before


def test_a_listing_that_meets_a_symlink_is_not_cached(server: ServerThread, tree: Path) -> None:
    (tree / "link").symlink_to("docs")
    with LineConn(server.port) as conn:
        conn.greet()
        first = read_listing(conn)
        _append(tree)  # seen through the link too: a cached copy would miss it
        assert read_listing(conn) == fresh_reply(tree) != first
    assert hits(server) == 0


def test_the_root_replaced_is_listed_anew(
    make_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    holder = tmp_path / "holder"
    (holder / "repo").mkdir(parents=True)
    (holder / "repo" / "one.txt").write_bytes(b"1")
    server = make_server(repo=holder / "repo")
    with LineConn(server.port) as conn:
        conn.greet()
        before = read_listing(conn)
        assert read_listing(conn) == before
        # The folder above renamed: no event reaches the root's own watch.
        os.rename(holder, tmp_path / "moved")
        (holder / "repo").mkdir(parents=True)
        (holder / "repo" / "two.txt").write_bytes(b"2")
        assert read_listing(conn) == fresh_reply(holder / "repo") != before


# -- where the scan runs ----------------------------------------------------------------------


def count_metadata_runs(server: ServerThread, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the functions the server hands its metadata workers from now on."""
    assert server.server is not None
    pool = server.server.context.workers.metadata
    handed: list[str] = []
    run = pool.run

    def counted(function: Callable[..., Any], *args: Any) -> Awaitable[Any]:
        handed.append(function.__name__)
        return run(function, *args)

    monkeypatch.setattr(pool, "run", counted)
    return handed


@pytest.mark.parametrize("files", [3, INLINE_TICKS // 2 + 10])
def test_a_watched_folder_is_read_in_a_worker_only_when_it_is_large(
    repo: Path, server: ServerThread, monkeypatch: pytest.MonkeyPatch, files: int
) -> None:
    for index in range(files):
        (repo / "docs" / "sub").mkdir(parents=True, exist_ok=True)
        (repo / "docs" / f"f{index:04d}.txt").write_bytes(b"x" * index)
    (repo / "docs" / "sub" / "inner.txt").write_bytes(b"inner")
    handed = count_metadata_runs(server, monkeypatch)
    with LineConn(server.port) as conn:
        conn.greet()
        # The first listing to read docs/ watches it, a kernel walk of every
        # entry it holds for the folder: never on the loop.
        assert read_listing(conn, "docs/sub") == fresh_reply(repo, "docs/sub")
        assert handed == ["reply_records"]
        assert read_listing(conn) == fresh_reply(repo)  # kept: every folder now watched
        handed.clear()
        assert read_listing(conn, "docs") == fresh_reply(repo, "docs")
    large = files * 2 > INLINE_TICKS
    assert handed == (["reply_records"] if large else [])
