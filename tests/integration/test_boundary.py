"""The repository boundary under attack: swaps mid-walk, races, deep trees, odd names."""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import filedock.server.repository
from filedock import protocol as p
from filedock.client.client import Client
from filedock.errors import Forbidden, NotFound, RequestError
from filedock.server.repository import MAX_WALK_STEPS, RACY_NS, Repository, WalkTooLong
from tests.support import HOST, LineConn, ServerThread
from tests.support.swapper import Swapper

INSIDE = b"inside\n"
OUTSIDE = b"OUTSIDE SECRET\n"


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    write(tmp_path / "outside" / "f.txt", OUTSIDE)
    return tmp_path / "outside"


@pytest.fixture
def root(tmp_path: Path, outside: Path) -> Path:
    root = tmp_path / "shared"
    write(root / "pub" / "f.txt", INSIDE)
    write(root / "a.txt", b"alpha\n")
    os.symlink(outside, root / "publink")  # refused: outside
    return root


@pytest.fixture
def logged(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Capture the 'filedock' loggers, even if a CLI test turned propagation off."""
    monkeypatch.setattr(logging.getLogger("filedock"), "propagate", True)
    with caplog.at_level(logging.INFO, logger="filedock"):
        yield


def greeted(port: int) -> LineConn:
    conn = LineConn(port, timeout=10)
    conn.greet()
    return conn


# -- swapping a folder for a symlink mid-walk --------------------------------------------


def test_folder_swapped_for_a_symlink_never_leads_outside(root: Path) -> None:
    """pub/ (a folder) and publink (a symlink to a folder outside) trade places
    thousands of times while pub/f.txt is opened: only inside bytes ever come."""
    repo = Repository(root)
    served = refused = 0
    with Swapper(root / "pub", root / "publink", rounds=200_000) as swapper:
        for _ in range(3000):
            try:
                with repo.open("pub/f.txt") as opened:
                    data = os.pread(opened.fd, 100, 0)
            except RequestError:
                refused += 1
                continue
            assert data == INSIDE
            served += 1
        assert swapper.done > 100  # the swaps really ran meanwhile
    assert served > 0
    assert refused > 0  # some walks met the symlink and were refused, as they must be


def test_folder_swap_over_the_wire_serves_nothing_from_outside(
    root: Path, make_server: Callable[..., ServerThread]
) -> None:
    server = make_server(repo=root)
    conn = greeted(server.port)
    header = f"FILE {len(INSIDE)} {hashlib.sha256(INSIDE).hexdigest()} pub/f.txt"
    try:
        with Swapper(root / "pub", root / "publink", rounds=200_000):
            for _ in range(300):
                conn.send_line("GET pub/f.txt")
                line = conn.read_line()
                if line.startswith("FILE "):
                    assert line == header
                    assert conn.read_exactly(len(INSIDE)) == INSIDE
                else:
                    assert line.startswith(("ERR forbidden ", "ERR not-found ")), line
        assert conn.request("PING") == "PONG"
    finally:
        conn.close()


# -- symlinks that stay inside keep working ------------------------------------------------


@pytest.fixture
def linked(root: Path) -> Path:
    write(root / "sub" / "deeper" / "c.txt", b"deep\n")
    os.symlink("sub/deeper", root / "deeplink")  # a folder inside
    os.symlink("deeplink/c.txt", root / "chain.txt")  # through another link
    os.symlink("../a.txt", root / "sub" / "up.txt")
    os.symlink("../../a.txt", root / "sub" / "deeper" / "up2.txt")
    os.symlink(str(root / "sub" / "deeper"), root / "abs-folder")  # absolute, inside
    os.symlink(".", root / "self")
    os.symlink("loop-b", root / "loop-a")
    os.symlink("loop-a", root / "loop-b")
    os.symlink("../../../outside/f.txt", root / "sub" / "deeper" / "out.txt")
    os.symlink("../..", root / "sub" / "deeper" / "top")  # the root: fine
    os.symlink("../../..", root / "sub" / "deeper" / "above")  # above the root: refused
    os.symlink("sub/../../outside/f.txt", root / "via-dots.txt")
    write(root / ".hid" / "x.txt", b"hidden\n")
    os.symlink(".hid/x.txt", root / "peek.txt")
    os.symlink("sub/.", root / "dot-target")
    return root


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("deeplink/c.txt", b"deep\n"),
        ("chain.txt", b"deep\n"),
        ("sub/up.txt", b"alpha\n"),
        ("sub/deeper/up2.txt", b"alpha\n"),
        ("abs-folder/c.txt", b"deep\n"),
        ("self/a.txt", b"alpha\n"),
        ("self/self/pub/f.txt", INSIDE),
        ("sub/deeper/top/a.txt", b"alpha\n"),
        ("dot-target/deeper/c.txt", b"deep\n"),
    ],
)
def test_symlinks_inside_are_followed_under_the_same_rule(
    linked: Path, path: str, data: bytes
) -> None:
    with Repository(linked).open(path) as opened:
        assert os.pread(opened.fd, 100, 0) == data


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("loop-a", Forbidden),  # more hops than the limit
        ("sub/deeper/out.txt", Forbidden),
        ("sub/deeper/above/outside/f.txt", Forbidden),
        ("via-dots.txt", Forbidden),
        ("peek.txt", Forbidden),
        ("publink/f.txt", Forbidden),
        ("deeplink", Forbidden),  # a folder
        ("self", Forbidden),
        ("deeplink/missing.txt", NotFound),
    ],
)
def test_symlinks_leading_out_or_nowhere_are_refused(
    linked: Path, tmp_path: Path, path: str, error: type[RequestError]
) -> None:
    with pytest.raises(error) as caught:
        Repository(linked).open(path)
    assert str(tmp_path) not in str(caught.value)


def test_listing_follows_links_as_a_request_would(linked: Path) -> None:
    repo = Repository(linked)
    listed = [info.path for info in repo.listing()]
    assert "chain.txt" in listed
    assert "sub/up.txt" in listed
    assert "sub/deeper/up2.txt" in listed
    for refused in ("peek.txt", "via-dots.txt", "sub/deeper/out.txt", "loop-a"):
        assert refused not in listed
    assert not any(path.startswith(("publink/", ".hid/")) for path in listed)
    for path in listed:
        with repo.open(path):
            pass


# -- races inside the repository and OS errors on a path ----------------------------------


def test_a_deploy_swap_inside_gives_answers_never_a_cut(
    root: Path,
    make_server: Callable[..., ServerThread],
    caplog: pytest.LogCaptureFixture,
    logged: None,
) -> None:
    """current -> v1 (a symlink) and v2 (a folder) trade places in a loop while
    clients fetch current/f.txt: each gets an answer, and the connection lives."""
    for version in ("v1", "v2"):
        write(root / version / "f.txt", version.encode() * 100)
    os.symlink("v1", root / "current")
    server = make_server(repo=root)
    conns = [greeted(server.port) for _ in range(2)]
    try:
        with Swapper(root / "current", root / "v2", rounds=200_000):
            for _ in range(150):
                for conn in conns:
                    conn.send_line("GET current/f.txt")
                    conn.send_line("current/f.txt")
                for conn in conns:
                    for _request in range(2):
                        line = conn.read_line()
                        if line.startswith("FILE "):
                            assert conn.read_exactly(200) in (b"v1" * 100, b"v2" * 100)
                        else:
                            assert line.startswith(("ERR ", "ACK ")), line
        for conn in conns:
            assert conn.request("PING") == "PONG"
    finally:
        for conn in conns:
            conn.close()
    assert not [record for record in caplog.records if record.exc_info]
    assert "Connected: Client01" in caplog.text  # the log was really captured


@pytest.mark.parametrize("err", [errno.EINVAL, errno.EIO, errno.ELOOP, errno.EMFILE])
def test_any_os_error_on_a_path_is_an_err_reply(
    root: Path,
    make_server: Callable[..., ServerThread],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    logged: None,
    err: int,
) -> None:
    os.symlink("a.txt", root / "link.txt")
    real_readlink = os.readlink

    def failing_readlink(path: str, *args: object, **kwargs: object) -> str:
        if os.fsdecode(path).endswith("link.txt"):
            raise OSError(err, os.strerror(err))
        return real_readlink(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "readlink", failing_readlink)
    server = make_server(repo=root)
    conn = greeted(server.port)
    try:
        assert conn.request("GET link.txt").startswith("ERR ")
        assert conn.request("link.txt") == "ACK link.txt"
        assert conn.request("PING") == "PONG"
    finally:
        conn.close()
    assert not [record for record in caplog.records if record.exc_info]
    assert "Connected: Client01" in caplog.text  # the log was really captured


# -- deep folders ----------------------------------------------------------------------------


def make_deep_tree(top: Path, depth: int, name: str = "d") -> None:
    """``depth`` folders, one in the other, with a file at the bottom; through
    descriptors, as the whole path is past what one system call takes."""
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(depth):
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        file_fd = os.open("bottom.txt", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        os.close(file_fd)
    finally:
        os.close(fd)


def remove_deep_tree(top: Path, name: str = "d") -> None:
    """Remove what make_deep_tree made, without recursion."""
    fds = [os.open(top, os.O_RDONLY | os.O_DIRECTORY)]
    try:
        while name in os.listdir(fds[-1]):
            fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
        os.unlink("bottom.txt", dir_fd=fds[-1])
        while len(fds) > 1:
            os.close(fds.pop())
            os.rmdir(name, dir_fd=fds[-1])
    finally:
        for fd in fds:
            os.close(fd)


@pytest.fixture
def deep(root: Path) -> Iterator[Path]:
    make_deep_tree(root, 1000)
    yield root
    remove_deep_tree(root)


def test_a_tree_1000_deep_lists_and_is_capped(
    deep: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("filedock"), "propagate", True)
    repo = Repository(deep)
    with caplog.at_level(logging.WARNING, logger="filedock.server.repository"):
        for _ in range(3):
            listed = [info.path for info in repo.listing()]
            assert "a.txt" in listed
            assert "pub/f.txt" in listed
            assert not any(path.endswith("bottom.txt") for path in listed)
    deeper = [r for r in caplog.records if "deeper than" in r.getMessage()]
    assert len(deeper) == 1  # said once, not at every LIST


def test_a_tree_1000_deep_lists_for_every_client(
    deep: Path, make_server: Callable[..., ServerThread]
) -> None:
    server = make_server(repo=deep)
    clients = [Client(HOST, server.port, timeout=30) for _ in range(2)]
    try:
        for client in clients:
            assert "a.txt" in [info.path for info in client.list()]
        for client in clients:
            assert client.ping() < 5
    finally:
        for client in clients:
            client.close()


def test_depth_cap_is_exact(root: Path) -> None:
    """A file p.MAX_PATH_COMPONENTS components down is listed and served; one more is not."""
    (root / "top").mkdir()
    make_deep_tree(root / "top", p.MAX_PATH_COMPONENTS - 2, name="f")
    make_deep_tree(root / "top" / "f", p.MAX_PATH_COMPONENTS - 2, name="g")
    at_cap = "/".join(["top"] + ["f"] * (p.MAX_PATH_COMPONENTS - 2) + ["bottom.txt"])
    over = "/".join(["top", "f"] + ["g"] * (p.MAX_PATH_COMPONENTS - 2) + ["bottom.txt"])
    assert at_cap.count("/") + 1 == p.MAX_PATH_COMPONENTS
    repo = Repository(root)
    listed = [info.path for info in repo.listing()]
    assert at_cap in listed
    assert over not in listed
    repo.open(at_cap).close()
    with pytest.raises(Forbidden):
        repo.open(over)
    bottom = "/".join(["top"] + ["f"] * (p.MAX_PATH_COMPONENTS - 2))
    os.symlink(bottom, root / "jump")
    make_deep_tree(root / bottom, 1, name="x")  # one level past the cap, really
    assert "jump/bottom.txt" not in listed  # the same file, listed under its own path
    repo.open("jump/bottom.txt").close()
    with pytest.raises(Forbidden):  # through a link, the real position counts too
        repo.open("jump/x/bottom.txt")
    assert "jump/x/bottom.txt" not in [info.path for info in repo.listing()]
    remove_deep_tree(root / bottom, name="x")
    remove_deep_tree(root / "top" / "f", name="g")
    remove_deep_tree(root / "top", name="f")


@pytest.mark.parametrize(
    "path",
    [
        "a/" * 2048,
        "/".join(["x"] * p.MAX_PATH_COMPONENTS + ["f"]),
        "n" * (p.MAX_NAME_BYTES + 1),
        "\u00e9" * (p.MAX_NAME_BYTES // 2 + 1),
    ],
)
def test_paths_over_the_caps_are_refused_without_the_disk(
    root: Path, monkeypatch: pytest.MonkeyPatch, path: str
) -> None:
    class NoDisk:
        """The os module as the repository sees it, with every disk call refused."""

        def __getattr__(self, name: str) -> object:
            if name in ("open", "stat", "lstat", "readlink", "scandir", "access"):
                raise AssertionError(f"the disk was touched: os.{name}")
            return getattr(os, name)

    repo = Repository(root)
    monkeypatch.setattr(filedock.server.repository, "os", NoDisk())
    with pytest.raises(Forbidden):
        repo.open(path)


# -- listing only what would be served, as an ordinary user ----------------------------------


def _listings(root: Path) -> dict[str, list[str]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    logger = logging.getLogger("filedock.server.repository")
    logger.addHandler(handler)
    try:
        repo = Repository(root)
        listings = [[info.path for info in repo.listing()] for _ in range(3)]
        served = [path for path in listings[0] if repo.serves(path)]
    finally:
        logger.removeHandler(handler)
    return {"listings": listings, "served": served, "warnings": [r.getMessage() for r in records]}


def list_as_ordinary_user(root: Path) -> dict[str, list[str]]:
    """Three listings of ``root`` by a user that permissions apply to: this
    user, or "nobody" in a forked child when the tests run as root."""
    if os.geteuid() != 0:
        return _listings(root)
    read_end, write_end = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        status = 1
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(write_end, json.dumps(_listings(root)).encode())
            status = 0
        finally:
            os._exit(status)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        data = pipe.read()
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)  # type: ignore[no-any-return]


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A repository another user can reach (pytest's tmp_path is private to its owner)."""
    top = Path(tempfile.mkdtemp(prefix="filedock-perm-"))
    top.chmod(0o755)
    try:
        yield top
    finally:
        shutil.rmtree(top)  # root: permissions do not stop it


def test_listing_offers_only_readable_files_and_warns_once_per_folder(shared_root: Path) -> None:
    write(shared_root / "open.txt", b"x").chmod(0o644)
    write(shared_root / "locked.txt", b"x").chmod(0o600)
    write(shared_root / "pub" / "in.txt", b"x").chmod(0o644)
    (shared_root / "pub").chmod(0o755)
    for name in ("closed", "closed2"):
        write(shared_root / name / "in.txt", b"x").chmod(0o644)
        (shared_root / name).chmod(0o700)
    os.symlink("locked.txt", shared_root / "link-to-locked.txt")
    seen = list_as_ordinary_user(shared_root)
    assert seen["listings"][0] == ["open.txt", "pub/in.txt"]
    assert seen["listings"][0] == seen["listings"][1] == seen["listings"][2]
    assert seen["served"] == seen["listings"][0]
    cannot = [w for w in seen["warnings"] if w.startswith("Cannot read folder")]
    assert sorted(cannot) == [
        "Cannot read folder 'closed' of the repository: Permission denied",
        "Cannot read folder 'closed2' of the repository: Permission denied",
    ]


def test_a_repository_below_a_folder_that_is_only_searchable_is_served(
    shared_root: Path,
) -> None:
    home = shared_root / "home"
    write(home / "share" / "f.txt", b"x").chmod(0o644)
    (home / "share").chmod(0o755)
    home.chmod(0o711)  # others may pass through, not read: as many home folders
    seen = list_as_ordinary_user(home / "share")
    assert seen["listings"][0] == ["f.txt"]
    assert seen["served"] == ["f.txt"]


# -- names ending in white space ----------------------------------------------------------------

FETCHABLE_NAMES = [
    "nbsp\u00a0",
    "ideographic\u3000",
    "nel\u0085",
    "line-sep\u2028",
    "unit-sep\x1f",
    "\u00a0lead-nbsp",
    "vt\x0b",
    "ff\x0c",
]
UNFETCHABLE_NAMES = ["trailing-space ", " leading-space", "sub /x "]


@pytest.fixture
def spaced(root: Path) -> Path:
    for name in FETCHABLE_NAMES + UNFETCHABLE_NAMES:
        write(root / name, name.encode())
    return root


def test_names_ending_in_unicode_white_space_are_listed_and_fetched(
    spaced: Path, make_server: Callable[..., ServerThread], tmp_path: Path
) -> None:
    server = make_server(repo=spaced)
    client = Client(HOST, server.port, timeout=10)
    try:
        listed = {info.path for info in client.list()}
        for name in FETCHABLE_NAMES:
            assert name in listed
            result = client.download(name, tmp_path / "by-get")
            assert result.path.read_bytes() == name.encode()
            by_line = client.send_line(name, tmp_path / "by-line")
            assert not isinstance(by_line, str), name
            assert by_line.path.read_bytes() == name.encode()
        for name in UNFETCHABLE_NAMES:
            assert name not in listed
    finally:
        client.close()


# -- the root itself swapped at run time -------------------------------------------------------


def test_a_root_swapped_for_a_symlink_at_run_time_serves_nothing_from_outside(
    tmp_path: Path, outside: Path
) -> None:
    parent = tmp_path / "srv"
    write(parent / "repo" / "f.txt", INSIDE)
    write(tmp_path / "elsewhere" / "repo" / "f.txt", OUTSIDE)
    repo = Repository(parent / "repo")
    with repo.open("f.txt") as opened:
        assert os.pread(opened.fd, 100, 0) == INSIDE
    (parent / "repo").rename(parent / "repo.old")
    os.symlink(outside, parent / "repo")  # the root itself
    os.symlink("repo.old/f.txt", outside / "f.txt.link")
    for path in ("f.txt", "f.txt.link"):
        with pytest.raises(NotFound):
            repo.open(path)
    assert repo.listing() == []
    (parent / "repo").unlink()
    write(parent / "repo" / "f.txt", b"recreated\n")  # a real folder put back: served
    with repo.open("f.txt") as opened:
        assert os.pread(opened.fd, 100, 0) == b"recreated\n"
    parent.rename(tmp_path / "srv.old")
    os.symlink(tmp_path / "elsewhere", parent)  # a folder above the root
    with pytest.raises(NotFound):
        repo.open("f.txt")


# -- LIST offers exactly what GET serves ------------------------------------------------------

SMALL_LINE = 256  # a server's --max-line, so a path too long for it is short to build


def listed_and_served(port: int) -> tuple[list[str], dict[str, str]]:
    """Every path LIST gives, and the first word of the answer to a GET of each."""
    conn = greeted(port)
    try:
        header = conn.request("LIST")
        paths = [conn.read_line().split("\t")[0] for _ in range(int(header.split()[1]))]
        answers = {}
        for path in paths:
            answer = conn.request(f"GET {path}")
            answers[path] = answer.split()[0]
            if answer.startswith("FILE "):
                conn.read_exactly(int(answer.split()[1]))
        return paths, answers
    finally:
        conn.sock.close()


def test_listing_offers_nothing_a_request_refuses(
    root: Path, make_server: Callable[..., ServerThread]
) -> None:
    refused = {
        "back\\slash.txt": "a backslash is refused in every request",
        "in\\folder/f.txt": "so is one in a folder's name",
        "d" * 200 + "/" + "f" * 60: "longer than a GET line of this server carries",
    }
    for name in refused:
        write(root / name, b"x")
    write(root / "spaced " / "in.txt", b"x")  # a folder may end in a space
    server = make_server(repo=root, max_line=SMALL_LINE)
    paths, answers = listed_and_served(server.port)
    assert {path: word for path, word in answers.items() if word != "FILE"} == {}
    for name in refused:
        assert name not in paths
    assert "spaced /in.txt" in paths
    assert set(paths) >= {"a.txt", "pub/f.txt"}


def test_padding_is_ascii_space_tab_and_cr_only() -> None:
    assert p.decode_line(b" \t x \t\r") == "x"
    assert p.decode_line("x\u00a0".encode()) == "x\u00a0"
    assert p.decode_line("\u3000x\u2028".encode()) == "\u3000x\u2028"
    assert p.decode_line(b"x\x1f\x0b\x0c") == "x\x1f\x0b\x0c"


# -- a stale digest ---------------------------------------------------------------------------


def test_same_size_rewrite_with_the_mtime_put_back_gets_a_new_digest(root: Path) -> None:
    later = lambda: time.time_ns() + 10 * RACY_NS  # noqa: E731 - past the racy window
    repo = Repository(root, clock=later)
    path = root / "a.txt"
    stamp = path.stat()

    def digest() -> str:
        import asyncio

        with repo.open("a.txt") as opened:
            return asyncio.run(repo.hashes.sha256(opened))

    assert digest() == hashlib.sha256(b"alpha\n").hexdigest()
    path.write_bytes(b"ALPHA\n")  # same size
    os.utime(path, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))  # touch -d, cp -p, rsync -t
    assert path.stat().st_mtime_ns == stamp.st_mtime_ns
    assert digest() == hashlib.sha256(b"ALPHA\n").hexdigest()
    assert repo.hashes.hashings == 2


def test_a_file_changed_within_the_racy_window_is_not_cached(root: Path) -> None:
    import asyncio

    now = [0]
    repo = Repository(root, clock=lambda: now[0])
    changed = max(os.stat(root / "a.txt").st_mtime_ns, os.stat(root / "a.txt").st_ctime_ns)

    def digest() -> str:
        with repo.open("a.txt") as opened:
            return asyncio.run(repo.hashes.sha256(opened))

    now[0] = changed + RACY_NS - 1
    digest()
    digest()
    assert repo.hashes.hashings == 2  # hashed each time: not trusted yet
    assert len(repo.hashes) == 0
    now[0] = changed + RACY_NS
    digest()
    digest()
    assert repo.hashes.hashings == 3  # cached from now on
    assert len(repo.hashes) == 1


# -- how much walking the event loop does -------------------------------------------------------


def test_a_walk_on_the_loop_stops_at_its_step_budget(linked: Path) -> None:
    repo = Repository(linked)
    with pytest.raises(WalkTooLong):
        repo.open("/".join(["self"] * 8 + ["a.txt"]), max_steps=8)
    with pytest.raises(WalkTooLong):  # symlink hops count too
        repo.open("chain.txt", max_steps=2)
    repo.open("chain.txt", max_steps=8).close()
    repo.open("/".join(["self"] * 8 + ["a.txt"])).close()  # no budget: a worker's walk


def test_a_path_of_real_folders_keeps_the_loops_step_budget(root: Path) -> None:
    # One openat2 call of 63 folders not in the kernel's cache took milliseconds:
    # past the budget, the path is opened in a worker whatever opens it.
    for depth, on_the_loop in ((7, True), (8, False), (20, False)):
        deep = root.joinpath(*["d"] * depth)
        deep.mkdir(parents=True, exist_ok=True)
        (deep / "f.txt").write_bytes(b"deep\n")
        path = "/".join(["d"] * depth + ["f.txt"])
        repo = Repository(root)
        try:
            if on_the_loop:
                repo.open(path, max_steps=8).close()
            else:
                with pytest.raises(WalkTooLong):
                    repo.open(path, max_steps=8)
            with repo.open(path) as opened:  # no budget: a worker's open
                assert os.pread(opened.fd, 10, 0) == b"deep\n"
        finally:
            repo.close()


def test_dots_in_symlink_targets_count_as_steps(root: Path) -> None:
    os.symlink("./" * 10 + "a.txt", root / "dotted.txt")
    os.symlink("./" * 600 + "a.txt", root / "padded.txt")
    os.symlink("./" * 2000 + "a.txt", root / "overpadded.txt")
    os.symlink("./" * 2000 + "spin", root / "spin")  # a loop, each hop 2000 steps
    repo = Repository(root)
    with pytest.raises(WalkTooLong):  # not free on the event loop
        repo.open("dotted.txt", max_steps=8)
    repo.open("dotted.txt").close()
    repo.open("padded.txt").close()
    for path in ("overpadded.txt", "spin"):
        with pytest.raises(Forbidden, match=f"more than {MAX_WALK_STEPS} steps"):
            repo.open(path)


def test_listing_leaves_out_what_a_long_symlink_walk_puts_over_the_step_cap(
    root: Path,
) -> None:
    # Reached only through the link: a request cannot name it, so the scan skips it.
    deep = root / "back\\slash"
    for level in range(30):
        write(deep / f"f{level}.txt", b"x")
        deep = deep / f"d{level}"
    os.symlink("./" * (MAX_WALK_STEPS - 20) + "back\\slash", root / "far")
    repo = Repository(root)
    listed = [info.path for info in repo.listing()]
    through_far = [path for path in listed if path.startswith("far/")]
    assert through_far  # the link is followed, as far as a request can follow it
    assert len(through_far) < 30
    for path in listed:
        repo.open(path).close()  # everything listed is served


def test_long_walks_are_served_from_a_worker(
    linked: Path, make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    long_path = "/".join(["self"] * 20 + ["a.txt"])
    server = make_server(repo=linked)
    assert server.server is not None
    walked_in: list[str] = []
    real_open = Repository.open

    def recording_open(self: Repository, path: str, **kwargs: Any) -> Any:
        walked_in.append(threading.current_thread().name)
        return real_open(self, path, **kwargs)

    monkeypatch.setattr(Repository, "open", recording_open)
    conn = greeted(server.port)
    try:
        assert conn.request(f"GET {long_path}").startswith("FILE 6 ")
        assert conn.read_exactly(6) == b"alpha\n"
        assert conn.request(long_path).startswith("FILE 6 ")  # a bare line too
        assert conn.read_exactly(6) == b"alpha\n"
        assert conn.request("a.txt").startswith("FILE 6 ")
        assert conn.read_exactly(6) == b"alpha\n"
        assert conn.request("no such thing") == "ACK no such thing"
    finally:
        conn.close()
    on_loop = [name for name in walked_in if name == "test-server"]
    in_workers = [name for name in walked_in if name.startswith("filedock-meta")]
    assert len(in_workers) == 2  # the two long walks, after their tries on the loop
    assert len(on_loop) == 4  # the two tries over budget, a.txt, and the echoed line
