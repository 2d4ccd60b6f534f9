"""The repository boundary, the listing and the hash cache, on temporary folders."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from filedock.errors import Forbidden, NotFound, RequestError
from filedock.server import beneath
from filedock.server import repository as repository_module
from filedock.server.repository import (
    INLINE_HASH_BYTES,
    RACY_NS,
    FileChanged,
    FileKey,
    HashCache,
    OpenedFile,
    Repository,
    hash_fd,
    hash_opened,
)
from filedock.server.stats import Statistics
from filedock.server.workers import Workers
from tests.support import wait_until

MTIME = 1_700_000_000


def write(path: Path, data: bytes = b"data\n", mtime: int = MTIME) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    folder = tmp_path / "outside"
    write(folder / "secret.txt", b"secret\n")
    return folder


@pytest.fixture
def root(tmp_path: Path, outside: Path) -> Path:
    """A repository with files to serve and every kind of thing not to serve."""
    root = tmp_path / "repo"
    write(root / "a.txt", b"alpha\n")
    write(root / "B.txt", b"bravo\n")
    write(root / "name with spaces.txt", b"spaces\n")
    write(root / "sub-x.txt", b"dash\n")
    write(root / "sub" / "b.txt", b"in sub\n")
    write(root / "sub" / "deeper" / "c.txt", b"deep\n")
    write(root / ".hidden", b"hidden\n")
    write(root / ".hid" / "inside.txt", b"in hidden folder\n")
    write(root / "sub" / ".secret", b"hidden in sub\n")
    (root / "empty-folder").mkdir()
    os.symlink("a.txt", root / "link.txt")  # stays inside: served
    os.symlink("../a.txt", root / "sub" / "up.txt")  # stays inside: served
    os.symlink(root / "sub" / "b.txt", root / "abs-link.txt")  # absolute, inside: served
    os.symlink(outside / "secret.txt", root / "escape.txt")  # outside: refused
    os.symlink("../outside/secret.txt", root / "escape2.txt")  # outside: refused
    os.symlink(outside, root / "outlink")  # folder outside: refused
    os.symlink(".hidden", root / "peek")  # to a hidden file: refused
    os.symlink("nowhere.txt", root / "dangling")  # inside, to nothing
    os.symlink("../outside/nowhere.txt", root / "dangling-out")  # outside, to nothing
    os.symlink("a.txt", root / ".alias")  # a hidden name for a visible file: refused
    os.symlink("sub", root / ".subalias")  # a hidden folder name for a visible one: refused
    write(tmp_path / "repo-sibling" / "x.txt")  # its path starts with the root's path
    os.symlink("../repo-sibling/x.txt", root / "sibling.txt")  # outside: refused
    os.symlink("../repo-sibling", root / "sibling-dir")  # outside: refused
    return root


def later() -> int:
    """A clock past the racy window of files the tests just wrote: their digests are cached."""
    return time.time_ns() + 10 * RACY_NS


@pytest.fixture(params=["openat2", "walk"])
def repo(
    root: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Repository]:
    """The repository, opening plain paths with openat2 where the kernel has it, and
    walking every path as on a kernel without it."""
    if request.param == "walk":
        monkeypatch.setattr(beneath._openat2, "usable", False)
    elif not beneath.available():
        pytest.skip("no openat2 here")
    repository = Repository(root, clock=later)
    yield repository
    repository.close()


def refusal(repo: Repository, path: str, error: type[RequestError]) -> RequestError:
    """The error ``repo`` refuses ``path`` with, checked the same for every entry point."""
    with pytest.raises(error) as caught:
        repo.resolve(path)
    with pytest.raises(error):
        repo.open(path)
    assert not repo.serves(path)
    return caught.value


def assert_no_server_path(exc: BaseException, tmp_path: Path) -> None:
    for text in (str(exc), getattr(exc, "text", ""), repr(exc)):
        assert str(tmp_path) not in text
        assert "repo" not in text.replace("repository", "")


# --------------------------------------------------------------------------
# The boundary


@pytest.mark.parametrize(
    "path",
    [
        "..",
        "../outside/secret.txt",
        "sub/../a.txt",
        "sub/../../outside/secret.txt",
        "sub/..",
        "sub/deeper/../../a.txt",
        "a.txt/..",
        "/etc/passwd",
        "/a.txt",
        "//a.txt",
        "sub\\b.txt",
        "..\\outside\\secret.txt",
        "a.txt\0",
        "a\0.txt",
        "a.txt\t",
        "a.txt\r",
        "a.txt\n",
        "",
        ".",
        "./a.txt",
        "sub/./b.txt",
        "sub//b.txt",
        "sub/",
        ".hidden",
        ".hid/inside.txt",
        ".hid",
        "sub/.secret",
        "sub",
        "sub/deeper",
        "empty-folder",
        "escape.txt",
        "escape2.txt",
        "outlink",
        "outlink/secret.txt",
        "peek",
        "dangling-out",
        ".alias",
        ".subalias/b.txt",
        "sibling.txt",
        "sibling-dir/x.txt",
    ],
)
def test_forbidden(repo: Repository, path: str, tmp_path: Path) -> None:
    exc = refusal(repo, path, Forbidden)
    assert exc.code == "forbidden"
    assert_no_server_path(exc, tmp_path)


def test_absolute_path_into_the_root_is_forbidden(
    repo: Repository, root: Path, tmp_path: Path
) -> None:
    exc = refusal(repo, str(root / "a.txt"), Forbidden)
    assert_no_server_path(exc, tmp_path)


@pytest.mark.parametrize(
    "path",
    ["missing.txt", "sub/missing.txt", "nofolder/x.txt", "a.txt/x", "dangling", "A.TXT"],
)
def test_not_found(repo: Repository, path: str, tmp_path: Path) -> None:
    exc = refusal(repo, path, NotFound)
    assert exc.code == "not-found"
    assert_no_server_path(exc, tmp_path)


def test_fifo_is_forbidden(repo: Repository, root: Path, tmp_path: Path) -> None:
    os.mkfifo(root / "fifo")
    exc = refusal(repo, "fifo", Forbidden)  # and open() does not block on it
    assert_no_server_path(exc, tmp_path)
    assert "fifo" not in [info.path for info in repo.listing()]


def test_unix_socket_is_forbidden(
    repo: Repository, root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(root)  # a relative name: socket paths are short
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind("sock")
        assert (root / "sock").is_socket()
        exc = refusal(repo, "sock", Forbidden)
        assert_no_server_path(exc, tmp_path)
        assert "sock" not in [info.path for info in repo.listing()]


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("a.txt", b"alpha\n"),
        ("B.txt", b"bravo\n"),
        ("name with spaces.txt", b"spaces\n"),
        ("sub/b.txt", b"in sub\n"),
        ("sub/deeper/c.txt", b"deep\n"),
        ("link.txt", b"alpha\n"),
        ("sub/up.txt", b"alpha\n"),
        ("abs-link.txt", b"in sub\n"),
    ],
)
def test_served(repo: Repository, root: Path, path: str, data: bytes) -> None:
    assert repo.serves(path)
    real = repo.resolve(path)
    assert Path(real).read_bytes() == data
    assert Path(real).parent == root or root in Path(real).parents
    assert not Path(real).is_symlink()
    with repo.open(path) as opened:
        assert isinstance(opened, OpenedFile)
        assert opened.path == path
        assert opened.size == len(data)
        assert os.pread(opened.fd, 100, 0) == data
        assert opened.unchanged()


def test_the_folders_on_the_way_are_entered_without_an_lstat(
    repo: Repository, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A GET of a small file pays each system call: a real folder's open is its check.
    looked_at: list[object] = []
    real_stat = os.stat

    def counted(path: object, *args: object, **kwargs: object) -> object:
        if kwargs.get("follow_symlinks") is False:
            looked_at.append(path)
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(repository_module.os, "stat", counted)
    with repo.open("sub/deeper/c.txt") as opened:
        assert os.pread(opened.fd, 100, 0) == b"deep\n"
    assert looked_at == ["c.txt"]  # the file alone: never open a device to find out


def test_a_path_of_real_folders_is_opened_without_a_walk(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not beneath.available():
        pytest.skip("no openat2 here")
    walks: list[list[str]] = []
    real_to = repository_module._Walk.to

    def counted(walk: object, parts: list[str]) -> object:
        walks.append(parts)
        return real_to(walk, parts)  # type: ignore[arg-type]

    monkeypatch.setattr(repository_module._Walk, "to", counted)
    os.symlink("sub", root / "sublink")
    repo = Repository(root)
    try:
        for path, data in (("a.txt", b"alpha\n"), ("sub/deeper/c.txt", b"deep\n")):
            with repo.open(path) as opened:
                assert os.pread(opened.fd, 100, 0) == data
        assert walks == []
        with repo.open("sublink/b.txt") as opened, repo.open("link.txt") as linked:
            assert os.pread(opened.fd, 100, 0) == b"in sub\n"
            assert os.pread(linked.fd, 100, 0) == b"alpha\n"
        assert walks == [["sublink", "b.txt"], ["link.txt"]]  # a symlink: the rules' walk
    finally:
        repo.close()


def test_what_is_no_folder_on_the_way_is_not_found_and_never_opened(
    repo: Repository, root: Path
) -> None:
    os.mkfifo(root / "fifo")  # opening it for reading would block
    for path in ("fifo/x.txt", "a.txt/x.txt", "nothing/x.txt"):
        assert refusal(repo, path, NotFound).code == "not-found"


def test_each_descriptor_of_the_root_reads_from_its_own_position(
    repo: Repository, root: Path
) -> None:
    # Listings read the root at once: duplicates of one descriptor would share
    # where they are, one's read taking the others' entries.
    with repo.open_root() as first, repo.open_root() as second:
        reading = os.scandir(first)
        next(reading)  # reads a batch: the whole of this small folder
        try:
            assert sorted(os.listdir(second)) == sorted(os.listdir(root))
        finally:
            reading.close()


def test_a_repository_folder_gone_is_not_found(repo: Repository, root: Path) -> None:
    root.rename(root.with_name("moved-away"))
    with pytest.raises(NotFound, match="not available"):
        repo.open("a.txt")
    assert not repo.serves("a.txt")


def test_symlinked_folder_inside_is_served(repo: Repository, root: Path) -> None:
    os.symlink("sub", root / "sublink")
    with repo.open("sublink/b.txt") as opened:
        assert os.pread(opened.fd, 100, 0) == b"in sub\n"


def test_repository_root_may_be_a_symlink(root: Path, tmp_path: Path) -> None:
    os.symlink(root, tmp_path / "root-link")
    repo = Repository(tmp_path / "root-link")
    assert repo.root == str(root)
    assert repo.serves("a.txt")
    assert not repo.serves("escape.txt")


def test_root_must_be_a_folder(root: Path) -> None:
    with pytest.raises(NotADirectoryError):
        Repository(root / "a.txt")
    with pytest.raises(NotADirectoryError):
        Repository(root / "missing")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any file")
def test_unreadable_file_is_forbidden_at_open(repo: Repository, root: Path) -> None:
    (root / "a.txt").chmod(0)
    with pytest.raises(Forbidden):
        repo.open("a.txt")


def test_opened_file_close(repo: Repository) -> None:
    opened = repo.open("a.txt")
    fd = opened.fd
    with opened:
        pass
    assert opened.fd == -1
    with pytest.raises(OSError):  # noqa: PT011 - EBADF: the descriptor is really closed
        os.fstat(fd)
    opened.close()  # twice is fine
    assert opened.fd == -1


def test_opened_file_notices_a_change(repo: Repository, root: Path) -> None:
    with repo.open("a.txt") as opened:
        assert opened.unchanged()
        with open(root / "a.txt", "ab") as file:
            file.write(b"more\n")
        assert not opened.unchanged()


# --------------------------------------------------------------------------
# Listing


@pytest.fixture
def repo_log(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    # configure_logging() (run by other tests' servers) stops "filedock" from
    # propagating to the root logger, where caplog listens.
    monkeypatch.setattr(logging.getLogger("filedock"), "propagate", True)
    with caplog.at_level(logging.WARNING, logger="filedock.server.repository"):
        yield


def test_listing(repo: Repository) -> None:
    listing = repo.listing()
    assert [info.path for info in listing] == [
        "B.txt",
        "a.txt",
        "abs-link.txt",
        "link.txt",
        "name with spaces.txt",
        "sub-x.txt",  # "-" sorts before "/": plain string order, not folders first
        "sub/b.txt",
        "sub/deeper/c.txt",
        "sub/up.txt",
    ]
    by_path = {info.path: info for info in listing}
    assert by_path["a.txt"].size == len(b"alpha\n")
    assert by_path["sub/deeper/c.txt"].size == len(b"deep\n")
    assert by_path["link.txt"].size == len(b"alpha\n")  # the target's size
    assert by_path["a.txt"].mtime == datetime.fromtimestamp(MTIME, UTC)
    assert by_path["a.txt"].mtime.tzinfo is not None


def test_listing_matches_what_is_served(repo: Repository, root: Path) -> None:
    listed = {info.path for info in repo.listing()}
    everything = {
        path.relative_to(root).as_posix() for path in root.rglob("*") if not path.is_dir()
    }
    for path in everything:
        assert (path in listed) == repo.serves(path), path


def test_listing_of_an_empty_repository(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    assert Repository(tmp_path / "empty").listing() == []


def test_listing_survives_a_symlink_loop(repo: Repository, root: Path) -> None:
    os.symlink("..", root / "sub" / "loop")
    os.symlink(".", root / "self")
    paths = [info.path for info in repo.listing()]
    assert paths.count("a.txt") == 1
    assert "sub/deeper/c.txt" in paths


@pytest.mark.parametrize("reverse", [False, True])
def test_listing_does_not_depend_on_folder_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reverse: bool
) -> None:
    """A folder also reachable through a symlink is listed under its own path."""
    root = tmp_path / "repo"
    write(root / "sub" / "f.txt")
    write(root / "top.txt")
    for name in ("a_link", "z_link"):
        os.symlink("sub", root / name)
    real_scandir = os.scandir

    def ordered(path: str) -> Iterator[os.DirEntry[str]]:
        with real_scandir(path) as entries:
            ordered_entries = sorted(entries, key=lambda entry: entry.name, reverse=reverse)
        yield from ordered_entries  # a generator: closable, as a scandir iterator is

    monkeypatch.setattr(os, "scandir", ordered)
    paths = [info.path for info in Repository(root).listing()]
    assert "sub/f.txt" in paths
    assert "top.txt" in paths
    assert len(paths) == len(set(paths))


@pytest.mark.parametrize(
    "name",
    [b"tab\there.txt", b"new\nline.txt", b"cr\rname.txt", b"bad\xffname.txt", b"caf\xe9.txt"],
)
def test_listing_leaves_out_names_that_cannot_travel(
    repo: Repository,
    root: Path,
    name: bytes,
    caplog: pytest.LogCaptureFixture,
    repo_log: None,
    tmp_path: Path,
) -> None:
    path = os.path.join(os.fsencode(root), name)
    with open(path, "wb") as file:
        file.write(b"x")
    before = [info.path for info in repo.listing()]
    again = [info.path for info in repo.listing()]  # logged once, not at every LIST
    assert before == again
    assert "a.txt" in before
    assert all("\t" not in p and "\n" not in p and "\r" not in p for p in before)
    for listed in before:
        listed.encode("utf-8")  # no surrogates
    warnings = [r for r in caplog.records if r.name == "filedock.server.repository"]
    assert len(warnings) == 1
    assert warnings[0].levelno == logging.WARNING
    assert str(tmp_path) not in warnings[0].getMessage()


def test_listing_leaves_out_folders_with_bad_names(
    repo: Repository, root: Path, caplog: pytest.LogCaptureFixture, repo_log: None
) -> None:
    folder = os.path.join(os.fsencode(root), b"bad\xffdir")
    os.mkdir(folder)
    with open(os.path.join(folder, b"inner.txt"), "wb") as file:
        file.write(b"x")
    os.mkdir(os.path.join(os.fsencode(root), b"tab\tdir"))
    with open(os.path.join(os.fsencode(root), b"tab\tdir", b"inner.txt"), "wb") as file:
        file.write(b"x")
    for _ in range(3):
        paths = [info.path for info in repo.listing()]
        assert not any("inner.txt" in path for path in paths)
    warnings = [r for r in caplog.records if r.name == "filedock.server.repository"]
    assert len(warnings) == 2


# --------------------------------------------------------------------------
# Hash cache


def sha256_of(repo: Repository, path: str, cache: HashCache | None = None) -> str:
    cache = repo.hashes if cache is None else cache
    with repo.open(path) as opened:
        return asyncio.run(cache.sha256(opened))


def test_digest_is_correct(repo: Repository) -> None:
    assert sha256_of(repo, "a.txt") == hashlib.sha256(b"alpha\n").hexdigest()
    assert sha256_of(repo, "sub/deeper/c.txt") == hashlib.sha256(b"deep\n").hexdigest()
    assert repo.hashes.hashings == 2


def test_digest_of_an_empty_and_a_large_file(repo: Repository, root: Path) -> None:
    write(root / "empty.txt", b"")
    big = bytes(range(256)) * (10 * 1024 + 7)  # over two read chunks, not a multiple
    write(root / "big.bin", big)
    assert sha256_of(repo, "empty.txt") == hashlib.sha256(b"").hexdigest()
    assert sha256_of(repo, "big.bin") == hashlib.sha256(big).hexdigest()


def test_digest_is_cached(repo: Repository) -> None:
    first = sha256_of(repo, "a.txt")
    assert repo.hashes.hashings == 1
    assert sha256_of(repo, "a.txt") == first
    assert sha256_of(repo, "link.txt") == first  # the same file under another name
    assert repo.hashes.hashings == 1
    with repo.open("a.txt") as opened:
        assert repo.hashes.cached(opened.key) == first
    assert len(repo.hashes) == 1


def test_concurrent_requests_hash_once(repo: Repository, root: Path) -> None:
    write(root / "big.bin", os.urandom(3 * 1024 * 1024))
    cache = repo.hashes

    async def fetch_all() -> list[str]:
        with repo.open("big.bin") as one, repo.open("big.bin") as two:
            return list(
                await asyncio.gather(cache.sha256(one), cache.sha256(two), cache.sha256(one))
            )

    digests = asyncio.run(fetch_all())
    assert digests == [hashlib.sha256((root / "big.bin").read_bytes()).hexdigest()] * 3
    assert cache.hashings == 1
    assert len(cache) == 1


def test_the_cache_counts_into_the_statistics_it_is_given(repo: Repository) -> None:
    stats = Statistics()
    cache = HashCache(clock=later, stats=stats)
    try:
        sha256_of(repo, "a.txt", cache)
        sha256_of(repo, "a.txt", cache)
        sha256_of(repo, "B.txt", cache)
    finally:
        cache.close()
    size = len(b"alpha\n") + os.path.getsize(os.path.join(repo.root, "B.txt"))
    assert (stats.digest_cache_misses, stats.digest_cache_hits, stats.bytes_hashed) == (2, 1, size)
    assert (cache.hashings, cache.hits) == (2, 1)  # read there: one number each


def test_cache_is_bounded_least_recently_used_first(repo: Repository) -> None:
    cache = HashCache(max_entries=2, clock=later)
    try:
        _check_bounded(repo, cache)
    finally:
        cache.close()


def _check_bounded(repo: Repository, cache: HashCache) -> None:
    sha256_of(repo, "a.txt", cache)
    sha256_of(repo, "B.txt", cache)
    sha256_of(repo, "a.txt", cache)  # a.txt is now the most recently used
    sha256_of(repo, "sub/b.txt", cache)  # drops B.txt
    assert len(cache) == 2
    assert cache.hashings == 3
    with repo.open("B.txt") as bravo, repo.open("a.txt") as alpha:
        assert cache.cached(bravo.key) is None
        assert cache.cached(alpha.key) == hashlib.sha256(b"alpha\n").hexdigest()
    sha256_of(repo, "B.txt", cache)
    assert cache.hashings == 4
    assert len(cache) == 2


def hashing_threads() -> list[threading.Thread]:
    # Small files are hashed in the metadata threads, large ones in the hashing threads.
    return [t for t in threading.enumerate() if t.name.startswith("filedock-")]


def test_close_stops_the_hashing_threads_a_repository_started(root: Path) -> None:
    """A repository made without a server's workers starts its own: close() ends them."""
    before = set(hashing_threads())
    write(root / "mid.bin", b"m" * (INLINE_HASH_BYTES + 1))  # hashed in a worker
    repository = Repository(root, clock=later)
    sha256_of(repository, "mid.bin")
    assert set(hashing_threads()) - before  # hashing started a thread of its own
    repository.close()
    wait_until(lambda: not set(hashing_threads()) - before)


def test_close_lets_the_held_folder_go(root: Path) -> None:
    def held() -> int:
        return sum(
            os.readlink(f"/proc/self/fd/{fd}") == str(root.resolve())
            for fd in map(int, os.listdir("/proc/self/fd"))
            if _is_link(fd)
        )

    before = held()
    repository = Repository(root, clock=later)
    assert held() == before + 1  # the root is held open between requests
    repository.close()
    assert held() == before


def _is_link(fd: int) -> bool:
    try:
        os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return False
    return True


def test_close_leaves_workers_it_was_given_to_their_owner(root: Path) -> None:
    workers = Workers()
    try:
        repository = Repository(root, clock=later, workers=workers)
        repository.close()
        assert sha256_of(repository, "a.txt") == hashlib.sha256(b"alpha\n").hexdigest()
    finally:
        workers.close()


def test_changed_file_is_rehashed(repo: Repository, root: Path) -> None:
    assert sha256_of(repo, "a.txt") == hashlib.sha256(b"alpha\n").hexdigest()
    write(root / "a.txt", b"alpha, longer\n", mtime=MTIME + 1)
    assert sha256_of(repo, "a.txt") == hashlib.sha256(b"alpha, longer\n").hexdigest()
    write(root / "a.txt", b"ALPHA, LONGER\n", mtime=MTIME + 2)  # same size, new mtime
    assert sha256_of(repo, "a.txt") == hashlib.sha256(b"ALPHA, LONGER\n").hexdigest()
    assert repo.hashes.hashings == 3


def test_file_changing_while_hashed_is_not_cached(repo: Repository, root: Path) -> None:
    with repo.open("a.txt") as opened:
        os.truncate(root / "a.txt", 2)
        with pytest.raises(FileChanged):
            asyncio.run(repo.hashes.sha256(opened))
        assert repo.hashes.cached(opened.key) is None
    assert len(repo.hashes) == 0
    assert sha256_of(repo, "a.txt") == hashlib.sha256(b"al").hexdigest()


@pytest.fixture
def opened_file(root: Path) -> Iterator[Callable[[str], tuple[int, FileKey]]]:
    fds: list[int] = []

    def open_file(name: str) -> tuple[int, FileKey]:
        fd = os.open(root / name, os.O_RDONLY)
        fds.append(fd)
        return fd, FileKey.of(os.fstat(fd))

    yield open_file
    for fd in fds:
        os.close(fd)


def test_hash_fd(opened_file: Callable[[str], tuple[int, FileKey]]) -> None:
    fd, key = opened_file("a.txt")
    assert hash_fd(fd, key) == hashlib.sha256(b"alpha\n").hexdigest()


def test_hash_fd_raises_when_the_file_shrinks(
    root: Path, opened_file: Callable[[str], tuple[int, FileKey]]
) -> None:
    fd, key = opened_file("a.txt")
    os.truncate(root / "a.txt", 3)
    with pytest.raises(FileChanged) as caught:
        hash_fd(fd, key)
    assert isinstance(caught.value, RequestError)
    assert caught.value.code == "changed"


def test_hash_fd_raises_when_the_file_is_rewritten(
    root: Path, opened_file: Callable[[str], tuple[int, FileKey]]
) -> None:
    fd, key = opened_file("a.txt")
    write(root / "a.txt", b"ALPHA\n", mtime=MTIME + 60)  # same size, new contents
    with pytest.raises(FileChanged):
        hash_opened(fd, key, lambda: False)


def test_hash_fd_hashes_the_prefix_of_a_file_that_grows(
    root: Path, opened_file: Callable[[str], tuple[int, FileKey]]
) -> None:
    fd, key = opened_file("a.txt")
    with open(root / "a.txt", "ab") as file:
        file.write(b"more")
    assert hash_fd(fd, key) == hashlib.sha256(b"alpha\n").hexdigest()
    hashed = hash_opened(fd, key, lambda: False)  # a prefix: right, but not for the cache
    assert hashed.digest == hashlib.sha256(b"alpha\n").hexdigest()
    assert not hashed.cacheable


class _RecordingStore:
    """A digest store in a dict that notes which thread called it."""

    def __init__(self) -> None:
        self.rows: dict[tuple[int, int, int, int, int], str] = {}
        self.threads: set[str] = set()

    def get(self, key: tuple[int, int, int, int, int]) -> str | None:
        self.threads.add(threading.current_thread().name)
        return self.rows.get(key)

    def put(self, key: tuple[int, int, int, int, int], digest: str) -> None:
        self.threads.add(threading.current_thread().name)
        self.rows[key] = digest

    def flush(self) -> None:
        self.threads.add(threading.current_thread().name)

    def close(self) -> None:
        pass


def test_the_store_is_asked_before_hashing_and_only_from_worker_threads(
    repo: Repository, root: Path
) -> None:
    write(root / "big.bin", b"b" * (2 * 1024 * 1024))  # hashed in the hashing pool
    write(root / "mid.bin", b"m" * (INLINE_HASH_BYTES + 1))  # in a metadata worker
    store = _RecordingStore()
    first = HashCache(clock=later, store=store)
    try:
        digests = [sha256_of(repo, name, first) for name in ("mid.bin", "big.bin")]
        assert first.hashings == 2
    finally:
        first.close()
    assert len(store.rows) == 2
    second = HashCache(clock=later, store=store)  # as after a restart
    try:
        assert [sha256_of(repo, name, second) for name in ("mid.bin", "big.bin")] == digests
        assert (second.hashings, second.hits) == (0, 2)
    finally:
        second.close()
    assert store.threads
    assert threading.current_thread().name not in store.threads  # never the loop's


def test_a_racy_digest_never_reaches_the_store(root: Path) -> None:
    store = _RecordingStore()
    repository = Repository(root)  # the real clock: the files were just written
    cache = HashCache(store=store)
    try:
        write(root / "now.txt", b"just now\n", mtime=int(time.time()))
        sha256_of(repository, "now.txt", cache)
        sha256_of(repository, "now.txt", cache)
        assert cache.hashings == 2
        assert store.rows == {}
    finally:
        cache.close()
        repository.close()


def test_a_small_file_is_hashed_on_the_loop_kept_in_memory_and_never_stored(
    repo: Repository, root: Path
) -> None:
    """Its read and hash cost less than a worker's round trip, and less than a look-up
    in the store: no thread, no store, and the digest is a hit the next time."""
    write(root / "small.bin", b"s" * INLINE_HASH_BYTES)
    store = _RecordingStore()
    cache = HashCache(clock=later, store=store)
    try:
        before = set(hashing_threads())
        digest = sha256_of(repo, "small.bin", cache)
        assert digest == hashlib.sha256(b"s" * INLINE_HASH_BYTES).hexdigest()
        assert set(hashing_threads()) == before  # no worker was started for it
        assert (store.rows, store.threads) == ({}, set())
        assert sha256_of(repo, "small.bin", cache) == digest
        assert (cache.hashings, cache.hits) == (1, 1)
    finally:
        cache.close()


def test_a_small_racy_file_hashed_on_the_loop_is_not_kept(repo: Repository, root: Path) -> None:
    write(root / "small.bin", b"fresh\n")
    cache = HashCache(clock=time.time_ns)  # the file was written just now
    try:
        for _ in range(2):
            assert sha256_of(repo, "small.bin", cache) == hashlib.sha256(b"fresh\n").hexdigest()
        assert (cache.hashings, cache.hits, len(cache)) == (2, 0, 0)
    finally:
        cache.close()


def test_a_small_file_that_shrank_before_its_hashing_is_changed(
    repo: Repository, root: Path
) -> None:
    write(root / "small.bin", b"0123456789")
    cache = HashCache(clock=later)
    try:
        with repo.open("small.bin") as opened:
            os.truncate(root / "small.bin", 4)
            with pytest.raises(FileChanged):
                asyncio.run(cache.sha256(opened))
        assert len(cache) == 0
    finally:
        cache.close()
