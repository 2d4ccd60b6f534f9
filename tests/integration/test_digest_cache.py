"""The digest cache across restarts: kept on disk in the state folder, never served,
and never in the way of a start (a damaged file, a folder that cannot be written)."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import filedock.server.repository
from filedock.cli.server import server_parser
from filedock.client.client import Client, DownloadResult
from filedock.digests import FILE_NAME, SET_ASIDE_SUFFIX
from filedock.server.config import ServerConfig
from tests.support import HOST, LineConn, ServerThread, running_server

# Larger than INLINE_HASH_BYTES: a smaller file is hashed again rather than looked up.
CONTENT = b"a file fetched after each restart\n" * 3_000
STATE = ".filedock"  # the default state folder, inside the repository


@pytest.fixture(autouse=True)
def trusted_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file written by the test may be cached at once (no racy window)."""
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)


@pytest.fixture
def served(repo: Path) -> Path:
    path = repo / "data.bin"
    path.write_bytes(CONTENT)
    return path


def fetch(server: ServerThread, dest: Path, path: str = "data.bin") -> bytes:
    """Download ``path`` (checked against the announced digest) and return its bytes.

    As a bare line, the one download that sends nothing but its GET (``get``
    asks HASH after it, for the mtime), so the counts are the GET's alone.
    """
    with Client(HOST, server.port, timeout=10) as client:
        result = client.send_line(path, dest)
        assert isinstance(result, DownloadResult)
        return result.path.read_bytes()


def counts(server: ServerThread) -> tuple[int, int]:
    stats = server.statistics()
    return stats.hashings, stats.hash_cache_hits


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_the_state_dir_option_its_default_and_env_twin(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("FILEDOCK_STATE_DIR", raising=False)
    assert server_parser().parse_args([]).state_dir is None
    assert ServerConfig().state_folder("/srv/repo") == f"/srv/repo/{STATE}"
    monkeypatch.setenv("FILEDOCK_STATE_DIR", str(tmp_path / "from-env"))
    assert server_parser().parse_args([]).state_dir == str(tmp_path / "from-env")
    assert server_parser().parse_args(["--state-dir", "flag"]).state_dir == "flag"
    monkeypatch.chdir(tmp_path)
    assert ServerConfig(state_dir="flag").state_folder("/srv/repo") == str(tmp_path / "flag")
    assert "--state-dir STATE_DIR" in server_parser().format_help()


def test_a_restarted_server_serves_a_warm_digest_without_hashing(
    repo: Path, served: Path, tmp_path: Path
) -> None:
    with running_server(repo) as first:
        assert fetch(first, tmp_path / "one") == CONTENT
        assert counts(first) == (1, 0)
    assert (repo / STATE / FILE_NAME).is_file()
    with running_server(repo) as second:
        assert fetch(second, tmp_path / "two") == CONTENT
        assert counts(second) == (0, 1)  # from the disk
        assert fetch(second, tmp_path / "three") == CONTENT
        assert counts(second) == (0, 2)  # from memory now


def test_a_state_dir_elsewhere_is_used(repo: Path, served: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    with running_server(repo, state_dir=str(state)) as first:
        fetch(first, tmp_path / "one")
    assert (state / FILE_NAME).is_file()
    assert not (repo / STATE).exists()
    with running_server(repo, state_dir=str(state)) as second:
        fetch(second, tmp_path / "two")
        assert counts(second) == (0, 1)


def test_a_file_rewritten_with_its_size_and_mtime_is_hashed_again_after_a_restart(
    repo: Path, served: Path, tmp_path: Path
) -> None:
    with running_server(repo) as first:
        fetch(first, tmp_path / "one")
    before = served.stat()
    rewritten = CONTENT.replace(b"a file", b"A FILE")
    with open(served, "r+b") as rewrite:  # in place: the same inode
        rewrite.write(rewritten)
    os.utime(served, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = served.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        before.st_ino,
        before.st_size,
        before.st_mtime_ns,
    )
    with running_server(repo) as second:
        assert fetch(second, tmp_path / "two") == rewritten  # verified against its digest
        assert counts(second) == (1, 0)


def test_a_racy_file_is_not_kept_on_disk(
    repo: Path, served: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 3600 * 10**9)  # changed "now"
    with running_server(repo) as first:
        fetch(first, tmp_path / "one")
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)
    with running_server(repo) as second:
        fetch(second, tmp_path / "two")
        assert counts(second) == (1, 0)


def test_a_damaged_cache_file_is_rebuilt_with_a_warning(
    repo: Path, served: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    (repo / STATE).mkdir()
    (repo / STATE / FILE_NAME).write_bytes(b"\x00garbage, not SQLite\n" * 512)
    with running_server(repo) as first:
        assert fetch(first, tmp_path / "one") == CONTENT
        assert counts(first) == (1, 0)
    [warning] = warnings_of(caplog)
    assert "set aside" in warning
    assert (repo / STATE / (FILE_NAME + SET_ASIDE_SUFFIX)).is_file()
    caplog.clear()
    with running_server(repo) as second:  # the new file works
        fetch(second, tmp_path / "two")
        assert counts(second) == (0, 1)
    assert warnings_of(caplog) == []


def test_an_unwritable_state_dir_runs_in_memory_with_one_warning(
    repo: Path, served: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # A path under a regular file: no folder can be made there, even by root.
    (tmp_path / "plain-file").write_bytes(b"")
    state = tmp_path / "plain-file" / "state"
    with running_server(repo, state_dir=str(state)) as server:
        assert fetch(server, tmp_path / "one") == CONTENT
        assert fetch(server, tmp_path / "two") == CONTENT
        assert counts(server) == (1, 1)  # the memory cache still works
    [warning] = warnings_of(caplog)
    assert "memory only" in warning
    assert str(state) in warning


def test_the_state_folder_is_never_listed_or_served(
    repo: Path, served: Path, tmp_path: Path, make_server: Callable[..., ServerThread]
) -> None:
    with running_server(repo) as first:
        fetch(first, tmp_path / "one")
    database = repo / STATE / FILE_NAME
    assert database.is_file()
    (repo / "link-to-cache").symlink_to(f"{STATE}/{FILE_NAME}")
    (repo / "link-to-state").symlink_to(STATE)
    (repo / "absolute-link").symlink_to(database)
    server = make_server()
    with Client(HOST, server.port, timeout=10) as client:
        assert [info.path for info in client.list()] == ["data.bin", "sample.txt"]
    with LineConn(server.port) as conn:
        conn.greet()
        for path in (
            f"{STATE}/{FILE_NAME}",
            f"{STATE}/{FILE_NAME}-wal",
            "link-to-cache",
            "link-to-state/" + FILE_NAME,
            "absolute-link",
        ):
            reply = conn.request(f"GET {path}")
            assert reply.startswith("ERR forbidden "), (path, reply)
        assert conn.request("PING") == "PONG"


@pytest.mark.parametrize(
    ("where", "warned"), [(".", True), ("state", True), ("sub/.state", False), ("../out", False)]
)
def test_a_state_dir_whose_files_would_be_served_is_warned_about(
    repo: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, where: str, warned: bool
) -> None:
    with (
        running_server(repo, state_dir=str(repo / where)) as server,
        Client(HOST, server.port, timeout=10) as client,
    ):
        names = {info.path for info in client.list()}
    warnings = [text for text in warnings_of(caplog) if "state folder" in text]
    assert len(warnings) == warned
    assert (f"{where}/{FILE_NAME}".lstrip("./") in names) == warned


def test_digests_of_many_files_stay_warm_past_the_old_bound(repo: Path) -> None:
    """The in-memory bound was 4,096: a larger tree was hashed again on every pass."""
    folder = repo / "many"
    folder.mkdir()
    for number in range(4_200):
        (folder / f"{number}.txt").write_bytes(b"%d\n" % number)
    cache = filedock.server.repository.Repository(repo)
    try:

        async def every_digest() -> list[str]:
            digests = []
            for number in range(4_200):
                with cache.open(f"many/{number}.txt") as opened:
                    digests.append(await cache.hashes.sha256(opened))
            return digests

        first = asyncio.run(every_digest())
        again = asyncio.run(every_digest())
        assert first == again
        assert first[7] == hashlib.sha256(b"7\n").hexdigest()
        assert cache.hashes.hashings == 4_200  # the second pass was all hits
    finally:
        cache.close()


@pytest.mark.parametrize("journal", ["", "-wal", "-shm"])
def test_a_cache_file_made_a_symlink_is_set_aside_and_nothing_is_written_through_it(
    repo: Path, served: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture, journal: str
) -> None:
    # A link in the state folder to a path elsewhere: SQLite would make (or
    # write into) a database there, outside the folder the server owns.
    (repo / STATE).mkdir()
    target = tmp_path / "elsewhere.db"
    (repo / STATE / (FILE_NAME + journal)).symlink_to(target)
    with running_server(repo) as server:
        assert fetch(server, tmp_path / "one") == CONTENT
    assert not target.exists()
    assert not (repo / STATE / FILE_NAME).is_symlink()
    [warning] = warnings_of(caplog)
    assert "symbolic link" in warning
