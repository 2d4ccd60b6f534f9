"""Downloads attacked from outside: a hostile local folder, a careless user,
a server that lies. Whatever happens, nothing is written or deleted outside
the destination, nothing half-written or unverified keeps a final name, and
the client never hangs or crashes."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import filedock.client.plan as plan_module
import filedock.server.repository
from filedock.client.client import Change, Client, DownloadResult, Outcome, TransferProgress
from filedock.client.download import partial_path
from filedock.client.localdigests import LocalDigests
from filedock.client.resume import new_record, record_path
from filedock.errors import (
    ConnectionLost,
    FiledockError,
    IntegrityError,
    NotFound,
    ProtocolError,
    SaveError,
)
from tests.support import HOST, ServerThread
from tests.support.fake_server import GREETING, WELCOME, FakeServer, Peer, Script

MiB = 1024 * 1024
BIG = 6 * MiB  # over the client's inline limit: written as it comes, with a resume record
PRECIOUS = b"precious, and outside the destination\n" * 100


@pytest.fixture(autouse=True)
def trusted_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)


@pytest.fixture
def client(server: ServerThread) -> Iterator[Client]:
    with Client(HOST, server.port, timeout=10) as connected:
        yield connected


@pytest.fixture
def precious(tmp_path: Path) -> Path:
    """A file outside every destination, that no download may touch."""
    path = tmp_path / "precious.txt"
    path.write_bytes(PRECIOUS)
    return path


@pytest.fixture
def big(repo: Path) -> bytes:
    data = os.urandom(BIG)
    (repo / "big.bin").write_bytes(data)
    return data


def download_within(client: Client, path: str, dest: Path, fifo: Path) -> object:
    """The download's result or error; fails (after freeing it) if it blocks on ``fifo``."""
    outcome: list[object] = []

    def run() -> None:
        try:
            outcome.append(client.download(path, dest))
        except FiledockError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(10.0)
    if thread.is_alive():  # blocked opening the FIFO: a writer and a reader set it free
        fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)
        thread.join(10.0)
        os.close(fd)
        pytest.fail(f"the download blocked on the FIFO {fifo.name}")
    return outcome[0]


# -- resume records and partials that are not what they seem -------------------


def test_a_fifo_as_the_resume_record_is_ignored_not_waited_on(
    repo: Path, downloads: Path, client: Client
) -> None:
    (repo / "a.txt").write_text("A")
    downloads.mkdir()
    fifo = record_path(downloads / "a.txt")
    os.mkfifo(fifo)
    result = download_within(client, "a.txt", downloads, fifo)
    assert isinstance(result, DownloadResult), result
    assert (downloads / "a.txt").read_text() == "A"


def test_a_fifo_as_the_resume_record_of_a_large_file_is_replaced_not_written_into(
    big: bytes, downloads: Path, client: Client
) -> None:
    downloads.mkdir()
    fifo = record_path(downloads / "big.bin")
    os.mkfifo(fifo)
    result = download_within(client, "big.bin", downloads, fifo)
    assert isinstance(result, DownloadResult), result
    assert (downloads / "big.bin").read_bytes() == big


def test_a_resume_record_hard_linked_to_a_file_elsewhere_never_writes_into_it(
    big: bytes, downloads: Path, client: Client, precious: Path
) -> None:
    downloads.mkdir()
    os.link(precious, record_path(downloads / "big.bin"))
    assert client.download("big.bin", downloads).outcome is Outcome.FETCHED
    assert precious.read_bytes() == PRECIOUS
    assert (downloads / "big.bin").read_bytes() == big


def test_a_partial_hard_linked_to_a_file_elsewhere_never_writes_into_it(
    big: bytes, downloads: Path, client: Client, precious: Path
) -> None:
    downloads.mkdir()
    os.link(precious, partial_path(downloads / "big.bin"))
    result = client.download("big.bin", downloads)
    assert result.sha256 == hashlib.sha256(big).hexdigest()
    assert precious.read_bytes() == PRECIOUS
    assert (downloads / "big.bin").read_bytes() == big
    assert not os.path.samefile(precious, downloads / "big.bin")


# -- symbolic links in the destination ------------------------------------------


@pytest.fixture
def linked_sub(repo: Path, tmp_path: Path) -> tuple[Path, Path]:
    """A server folder ``sub/``, and a destination whose ``sub`` is a link to a folder outside."""
    (repo / "sub").mkdir()
    (repo / "sub" / "a.txt").write_text("A")
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "copy"
    dest.mkdir()
    (dest / "sub").symlink_to(outside)
    return dest, outside


def test_a_mirror_never_saves_through_a_linked_folder_in_the_destination(
    linked_sub: tuple[Path, Path], client: Client
) -> None:
    dest, outside = linked_sub
    summary = client.mirror(None, dest, delete=True)
    assert list(outside.iterdir()) == []
    assert (summary.failed, summary.fetched) == (1, 1)  # sub/a.txt refused, sample.txt fetched
    [failed] = [change for change in summary.changes if change.action == "fail"]
    assert "symbolic link" in str(failed.error)
    assert (dest / "sub").is_symlink()  # not deleted either: it is not the server's to judge


def test_a_download_never_saves_through_a_linked_folder_in_the_destination(
    linked_sub: tuple[Path, Path], client: Client
) -> None:
    dest, outside = linked_sub
    with pytest.raises(SaveError, match="symbolic link"):
        client.download("sub/a.txt", dest)
    [outcome] = client.get_many(["sub/a.txt"], dest)
    assert isinstance(outcome, SaveError)
    assert client.download_tree("sub", dest).failed == 1
    assert list(outside.iterdir()) == []


def test_a_linked_destination_itself_and_save_as_are_the_users_choice(
    linked_sub: tuple[Path, Path], client: Client
) -> None:
    dest, outside = linked_sub
    client.download("sample.txt", dest / "sub")  # asked there
    assert (outside / "sample.txt").read_text() == "hello\n"
    saved = client.download("sub/a.txt", save_as=dest / "sub" / "b.txt").path
    assert (outside / "b.txt").read_text() == "A" == saved.read_text()


# -- a server that lies ---------------------------------------------------------

WHEN = "2001-01-01T00:00:00Z"


def v2_server(answers: dict[str, bytes]) -> Script:
    """A version 2 server answering each line from ``answers`` (PING, EXIT as usual)."""

    def script(peer: Peer) -> None:
        peer.send(GREETING)
        assert (peer.line() or "").startswith("HELLO")
        peer.send(WELCOME.rstrip(b"\n") + b" proto=2\n")
        for _ in range(50):  # bounded: a test sends a handful of lines
            line = peer.line()
            if line is None or line == "EXIT":
                peer.send(b"BYE\n")
                return
            peer.send(b"PONG\n" if line == "PING" else answers[line])

    return script


def test_a_mirror_refuses_a_listing_of_files_outside_the_folder(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    listing = f"FILES 1\nother1/b.txt\t1\t{WHEN}\n".encode()
    server = fake_server(v2_server({"LIST docs": listing}))
    dest = tmp_path / "copy"
    with (
        Client(HOST, server.port, timeout=5) as client,
        pytest.raises(ProtocolError, match="got .other1/b.txt"),
    ):
        client.mirror("docs", dest)
    assert not dest.exists()


def test_a_digest_of_another_file_never_decides_a_skip(
    fake_server: Callable[..., FakeServer], tmp_path: Path
) -> None:
    local = b"the local copy, not the server's\n"
    sha = hashlib.sha256(local).hexdigest()
    lie = f"HASH {len(local)} {sha} {WHEN} b.txt\n".encode()
    server = fake_server(v2_server({"HASH a.txt": lie}))
    dest = tmp_path / "d"
    dest.mkdir()
    (dest / "a.txt").write_bytes(local)
    with Client(HOST, server.port, timeout=5) as client:
        [outcome] = client.get_many(["a.txt"], dest)
    assert isinstance(outcome, ProtocolError), outcome
    assert "b.txt" in str(outcome)
    assert (dest / "a.txt").read_bytes() == local


# -- a careless user -------------------------------------------------------------


@pytest.mark.parametrize("folder", ["dcos", "sample.txt"])
def test_a_mirror_delete_of_a_folder_with_no_files_deletes_nothing(
    folder: str, tmp_path: Path, client: Client
) -> None:
    dest = tmp_path / "copy"
    (dest / "sub").mkdir(parents=True)
    (dest / "mine.txt").write_text("mine")
    (dest / "sub" / "too.txt").write_text("too")
    for dry_run in (True, False):
        with pytest.raises(NotFound, match="nothing deleted"):
            client.mirror(folder, dest, delete=True, dry_run=dry_run)
    assert (dest / "mine.txt").read_text() == "mine"
    assert (dest / "sub" / "too.txt").read_text() == "too"
    assert client.mirror(folder, dest).changes == []  # without --delete: nothing to do


# -- a connection cut at the worst moment ------------------------------------------


def cut_before_the_digest(
    server: ServerThread, downloads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Download big.bin (cold: its DIGEST follows the body) and lose the connection
    after the whole body, just before the DIGEST."""

    def cut(self: Client) -> str:
        raise ConnectionLost("connection closed before the DIGEST")

    with monkeypatch.context() as patched:
        patched.setattr(Client, "_trailer_digest", cut)
        with Client(HOST, server.port, timeout=10) as client, pytest.raises(ConnectionLost):
            client.download("big.bin", downloads)


def test_a_whole_cold_body_cut_before_its_digest_is_kept_and_verified_next_time(
    big: bytes, server: ServerThread, downloads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut_before_the_digest(server, downloads, monkeypatch)
    dest = downloads / "big.bin"
    assert not dest.exists()  # unverified: no final name
    assert partial_path(dest).stat().st_size == BIG  # but every byte kept for later
    with Client(HOST, server.port, timeout=10) as client:
        result = client.download("big.bin", downloads)
    assert (result.outcome, result.resumed_from) == (Outcome.RESUMED, BIG)
    assert dest.read_bytes() == big
    assert not partial_path(dest).exists()
    assert not record_path(dest).exists()


def test_a_damaged_whole_cold_body_kept_before_its_digest_ends_verified(
    big: bytes, server: ServerThread, downloads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cut_before_the_digest(server, downloads, monkeypatch)
    dest = downloads / "big.bin"
    with open(partial_path(dest), "r+b") as partial:  # a byte changed on disk meanwhile
        partial.seek(BIG // 2)
        partial.write(bytes([big[BIG // 2] ^ 1]))
    with Client(HOST, server.port, timeout=10) as client:
        result = client.download("big.bin", downloads)
    assert result.restarted is not None
    assert dest.read_bytes() == big


# -- deletions that cannot be done --------------------------------------------------


def test_a_local_file_turned_folder_before_its_deletion_is_kept_and_said(
    tmp_path: Path, client: Client
) -> None:
    dest = tmp_path / "copy"
    dest.mkdir()
    (dest / "extra.txt").write_text("extra")

    def meanwhile(change: Change) -> None:  # between the plan and the deletion
        if change.action == "fetch":
            (dest / "extra.txt").unlink()
            (dest / "extra.txt").mkdir()
            (dest / "extra.txt" / "inside.txt").write_text("inside")

    summary = client.mirror(None, dest, delete=True, on_change=meanwhile)
    assert (summary.fetched, summary.deleted, summary.failed) == (1, 0, 1)
    [failed] = [change for change in summary.changes if change.action == "fail"]
    assert failed.local == dest / "extra.txt"
    assert isinstance(failed.error, SaveError)
    assert (dest / "extra.txt" / "inside.txt").read_text() == "inside"


def test_a_file_that_cannot_be_deleted_fails_the_mirror_and_says_why(
    tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "copy"
    (dest / "ro").mkdir(parents=True)
    (dest / "ro" / "stuck.txt").write_text("stuck")
    unlink = Path.unlink

    def read_only(self: Path, missing_ok: bool = False) -> None:
        if self.parent.name == "ro":  # as in a read-only folder (root ignores chmod)
            raise PermissionError(13, "Permission denied", str(self))
        unlink(self, missing_ok)

    monkeypatch.setattr(Path, "unlink", read_only)
    summary = client.mirror(None, dest, delete=True)
    assert (summary.deleted, summary.failed) == (0, 1)
    [failed] = [change for change in summary.changes if change.action == "fail"]
    assert "Permission denied" in str(failed.error)
    assert (dest / "ro" / "stuck.txt").exists()


# -- Ctrl-C at every phase --------------------------------------------------------


def interrupted_at_half(server: ServerThread, path: str, dest: Path) -> None:
    """Download ``path`` into ``dest`` until half of it came, then Ctrl-C."""

    def stop(moving: TransferProgress) -> None:
        if moving.done >= moving.total // 2:
            raise KeyboardInterrupt

    with Client(HOST, server.port, timeout=10) as client, pytest.raises(KeyboardInterrupt):
        client.download(path, dest, progress=stop)


@pytest.mark.parametrize("phase", ["looking", "deciding", "telling"])
def test_ctrl_c_while_planning_lets_go_of_every_partial(
    phase: str,
    big: bytes,
    repo: Path,
    downloads: Path,
    server: ServerThread,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (repo / "other.bin").write_bytes(big[::-1])
    interrupted_at_half(server, "big.bin", downloads)
    interrupted_at_half(server, "other.bin", downloads)
    (downloads / "sample.txt").write_text("HELLO\n")  # the size of the server's: hashed
    paths = ["big.bin", "other.bin", "sample.txt"]

    def telling(change: Change) -> None:
        raise KeyboardInterrupt

    def run(client: Client) -> object:
        if phase == "telling":  # printing the first change of a mirror
            return client.mirror(None, downloads, on_change=telling)
        return client.get_many(paths, downloads)

    with monkeypatch.context() as patched:
        if phase == "looking":  # after the first partial was taken
            target, original = plan_module, plan_module.Partial.reopen
            calls: list[Path] = []

            def reopen(dest: Path) -> object:
                calls.append(dest)
                if len(calls) == 2:
                    raise KeyboardInterrupt
                return original(dest)

            patched.setattr(target.Partial, "reopen", reopen)
        elif phase == "deciding":  # hashing a local file, every partial taken

            def hashing(*args: object) -> str:
                raise KeyboardInterrupt

            patched.setattr(LocalDigests, "digest_of", hashing)
        with Client(HOST, server.port, timeout=10) as client, pytest.raises(KeyboardInterrupt):
            run(client)
    # The same process (a shell) goes on: the partials are free to be resumed.
    with Client(HOST, server.port, timeout=10) as again:
        outcomes = again.get_many(paths, downloads)
    assert [getattr(outcome, "outcome", outcome) for outcome in outcomes] == [
        Outcome.RESUMED,
        Outcome.RESUMED,
        Outcome.REPLACED,
    ]
    assert (downloads / "big.bin").read_bytes() == big


# -- a careless user's destination --------------------------------------------------


def test_a_folder_under_the_final_name_is_refused_before_the_body_moves(
    big: bytes, tmp_path: Path, client: Client
) -> None:
    dest = tmp_path / "copy"
    (dest / "big.bin").mkdir(parents=True)
    (dest / "big.bin" / "mine.txt").write_text("mine")
    with pytest.raises(SaveError, match="a folder has that name"):
        client.download("big.bin", save_as=dest / "big.bin")
    summary = client.mirror(None, dest)
    assert (summary.failed, summary.fetched, summary.bytes) == (1, 1, len("hello\n"))
    assert (dest / "big.bin" / "mine.txt").read_text() == "mine"
    assert [path.name for path in dest.iterdir() if path.name.startswith(".")] == []


def test_a_file_named_at_the_prompt_never_saves_through_a_linked_folder(
    linked_sub: tuple[Path, Path], client: Client
) -> None:
    dest, outside = linked_sub
    with pytest.raises(SaveError, match="symbolic link"):
        client.send_line("sub/a.txt", dest)  # the server sends it at once: no plan first
    assert list(outside.iterdir()) == []
    assert client.ping() >= 0  # the small body was read and dropped: still in step


def tampered(record: dict[str, object], how: str) -> bytes:
    """The JSON of ``record`` changed as ``how`` says."""
    changes: dict[str, dict[str, object]] = {
        "another path": {"path": "other.bin"},
        "another server": {"server": "127.0.0.1:1"},
        "negative durable": {"durable": -5},
        "huge size": {"size": 10**40},
        "huge durable": {"durable": 10**40},
        "bool size": {"size": True},
        "short digest": {"sha256": "ab"},
        "unknown field": {"extra": 1},
    }
    if how == "bad json":
        return b'{"version": 1, "server": '
    if how == "not an object":
        return b"[1, 2, 3]"
    return json.dumps(record | changes[how]).encode()


@pytest.mark.parametrize(
    "how",
    [
        "bad json",
        "not an object",
        "another path",
        "another server",
        "negative durable",
        "huge size",
        "huge durable",
        "bool size",
        "short digest",
        "unknown field",
    ],
)
def test_a_tampered_resume_record_still_ends_in_a_verified_file(
    how: str, big: bytes, server: ServerThread, downloads: Path
) -> None:
    interrupted_at_half(server, "big.bin", downloads)
    dest = downloads / "big.bin"
    record = json.loads(record_path(dest).read_bytes())
    record_path(dest).write_bytes(tampered(record, how))
    with open(partial_path(dest), "r+b") as partial:  # and the partial damaged too
        partial.write(b"\0" * 16)
    with Client(HOST, server.port, timeout=10) as client:
        result = client.download("big.bin", downloads)
    assert dest.read_bytes() == big
    assert result.sha256 == hashlib.sha256(big).hexdigest()
    assert hidden_names(downloads) == []


def test_a_partial_longer_than_the_file_is_cut_to_it(
    big: bytes, server: ServerThread, downloads: Path
) -> None:
    interrupted_at_half(server, "big.bin", downloads)
    dest = downloads / "big.bin"
    partial_path(dest).write_bytes(big + b"an error page appended\n")
    with Client(HOST, server.port, timeout=10) as client:
        result = client.download("big.bin", downloads)
    assert (result.outcome, result.resumed_from) == (Outcome.RESUMED, BIG)
    assert dest.read_bytes() == big
    assert hidden_names(downloads) == []


def hidden_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_a_server_answering_changed_to_every_range_starts_over_once_and_keeps_nothing_wrong(
    fake_server: Callable[..., FakeServer], downloads: Path
) -> None:
    data = b"0123456789"
    sha = hashlib.sha256(data).hexdigest()
    wrong = b"9876543210"
    server = fake_server(
        v2_server(
            {
                "HASH f.bin": f"HASH 10 {sha} {WHEN} f.bin\n".encode(),
                f"RANGE 5 {sha} f.bin": b"ERR changed the file changed\n",
                "GET f.bin": f"FILE 10 {sha} f.bin\n".encode() + wrong,
            }
        )
    )
    downloads.mkdir()
    dest = downloads / "f.bin"
    partial_path(dest).write_bytes(data[:5])
    record = new_record(f"{HOST}:{server.port}", "f.bin", 10, sha)
    record.save(dest)
    with Client(HOST, server.port, timeout=5) as client:
        with pytest.raises(IntegrityError):
            client.download("f.bin", downloads)
        assert client.ping() >= 0
    assert server.peer is not None
    asked = [line.split(" ")[0] for line in server.peer.lines]
    assert asked.count("RANGE") == 1
    assert asked.count("GET") == 1
    assert not dest.exists()
    assert hidden_names(downloads) == []


def test_a_folder_that_cannot_be_read_fails_the_mirror_delete_and_keeps_its_files(
    tmp_path: Path, client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    dest = tmp_path / "copy"
    (dest / "locked").mkdir(parents=True)
    (dest / "locked" / "inside.txt").write_text("inside")
    (dest / "extra.txt").write_text("extra")
    scandir = os.scandir

    def unreadable(path: object = ".") -> object:
        if Path(str(path)).name == "locked":  # as a folder mode 000 (root ignores chmod)
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr(os, "scandir", unreadable)
    summary = client.mirror(None, dest, delete=True)
    assert (summary.fetched, summary.deleted, summary.failed) == (1, 1, 1)
    [failed] = [change for change in summary.changes if change.action == "fail"]
    assert failed.local == dest / "locked"
    assert "Permission denied" in str(failed.error)
    assert (dest / "locked" / "inside.txt").read_text() == "inside"


def test_a_path_a_thousand_and_a_half_folders_deep_is_mirrored_and_walked_without_recursion(
    fake_server: Callable[..., FakeServer], tmp_path: Path, deep_removed: None
) -> None:
    deep = "/".join(["a"] * 1500) + "/x.txt"  # under PATH_MAX, over the recursion limit
    sha = hashlib.sha256(b"x").hexdigest()
    listing = f"FILES 1\n{deep}\t1\t{WHEN}\n".encode()
    answers = {
        "LIST": listing,
        f"GET {deep}": f"FILE 1 {sha} {deep}\nx".encode(),
        f"HASH {deep}": f"HASH 1 {sha} {WHEN} {deep}\n".encode(),
    }
    server = fake_server(v2_server(answers))
    dest = tmp_path / "copy"
    (dest / "extra.txt").parent.mkdir()
    (dest / "extra.txt").write_text("extra")
    with Client(HOST, server.port, timeout=5) as client:
        summary = client.mirror(None, dest, delete=True)
        assert (summary.fetched, summary.deleted, summary.failed) == (1, 1, 0)
        assert dest.joinpath(*deep.split("/")).read_bytes() == b"x"
        again = client.mirror(None, dest, delete=True)  # its deletions walk the deep tree
    assert (again.skipped, again.deleted, again.failed) == (1, 0, 0)


@pytest.fixture
def deep_removed(tmp_path: Path) -> Iterator[None]:
    """Remove what the test leaves under tmp_path, from the bottom, in a loop:
    shutil.rmtree (pytest's clean-up of old tmp_path folders) recurses once a
    level, and a tree too deep for it would break every later run."""
    yield
    folders, stack = [], [tmp_path]
    while stack:
        folder = stack.pop()
        folders.append(folder)
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(Path(entry.path))
                else:
                    os.unlink(entry.path)
    for folder in reversed(folders[1:]):
        folder.rmdir()
