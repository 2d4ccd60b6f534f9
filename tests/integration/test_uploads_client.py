"""Client.upload and Client.upload_tree against an in-process server that takes uploads:
what is stored, what a second run skips, progress, refusals, and the connection after."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest
import trustme

from filedock.client.client import Client
from filedock.client.connection import client_context
from filedock.client.results import TransferProgress, UploadOutcome
from filedock.errors import Exists, Forbidden
from tests.support import ServerThread, random_bytes, write_file
from tests.support.credentials import tls_options


@pytest.fixture
def uploads(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(allow_upload=True)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_an_upload_is_stored_verified_and_its_first_download_is_warm(
    uploads: ServerThread, repo: Path, tmp_path: Path
) -> None:
    data = random_bytes(3 * 1024 * 1024 + 7)
    local = write_file(tmp_path / "big.bin", data)
    reports: list[TransferProgress] = []
    with Client("127.0.0.1", uploads.port, timeout=10) as client:
        result = client.upload(local, "in/big.bin", progress=reports.append)
        assert (result.path, result.size, result.sha256) == ("in/big.bin", len(data), sha(data))
        assert (result.outcome, result.resumed_from, result.local) == (
            UploadOutcome.STORED,
            0,
            local,
        )
        assert (repo / "in" / "big.bin").read_bytes() == data
        assert [info.path for info in client.list("in")] == ["in/big.bin"]
        assert client.hash("in/big.bin").sha256 == sha(data)
        fetched = client.download("in/big.bin", tmp_path / "down")
        assert fetched.path.read_bytes() == data
    assert reports[-1].done == reports[-1].total == len(data)
    assert reports[-1].bytes_done == reports[-1].bytes_total == len(data)
    assert all(report.path == "in/big.bin" for report in reports)


def test_a_path_there_is_refused_and_replace_replaces_it(
    uploads: ServerThread, repo: Path, tmp_path: Path
) -> None:
    local = write_file(tmp_path / "sample.txt", b"mine\n")
    with Client("127.0.0.1", uploads.port, timeout=10) as client:
        with pytest.raises(Exists):
            client.upload(local, "sample.txt")
        assert (repo / "sample.txt").read_bytes() == b"hello\n"
        result = client.upload(local, "sample.txt", replace=True)
        assert result.outcome is UploadOutcome.STORED
        assert client.ping() < 5  # still in step
    assert (repo / "sample.txt").read_bytes() == b"mine\n"


def test_a_file_the_server_has_already_is_skipped(
    uploads: ServerThread, repo: Path, tmp_path: Path
) -> None:
    local = write_file(tmp_path / "sample.txt", b"hello\n")  # the server's own bytes
    with Client("127.0.0.1", uploads.port, timeout=10) as client:
        result = client.upload(local, "sample.txt")
    assert (result.outcome, result.size, result.sha256) == (
        UploadOutcome.SKIPPED,
        6,
        sha(b"hello\n"),
    )


def test_a_server_without_uploads_refuses_and_the_connection_goes_on(
    server: ServerThread, repo: Path, tmp_path: Path
) -> None:
    local = write_file(tmp_path / "notes.txt", b"notes\n")
    with Client("127.0.0.1", server.port, timeout=10) as client:
        with pytest.raises(Forbidden):
            client.upload(local, "notes.txt")
        assert [info.path for info in client.list()] == ["sample.txt"]
    assert not (repo / "notes.txt").exists()


def test_upload_tree_stores_then_skips_then_says_what_differs(
    uploads: ServerThread, repo: Path, tmp_path: Path
) -> None:
    root = tmp_path / "photos"
    write_file(root / "a.jpg", b"a" * 100)
    write_file(root / "sub" / "b.jpg", b"b" * 200)
    write_file(root / ".cache" / "c", b"hidden")
    with Client("127.0.0.1", uploads.port, timeout=10) as client:
        first = client.upload_tree(root, "backup")
        assert (first.stored, first.skipped, first.failed, first.bytes) == (2, 0, 0, 300)
        # Hashed once each, though just written (too recent for the cache to keep).
        assert client.local_digests.misses == 2
        assert [path for _, path in first.files] == ["backup/a.jpg", "backup/sub/b.jpg"]
        again = client.upload_tree(root, "backup")
        assert (again.stored, again.skipped, again.bytes) == (0, 2, 0)
        write_file(root / "a.jpg", b"A" * 100)
        changed = client.upload_tree(root, "backup")
        assert (changed.failed, changed.skipped) == (1, 1)
        assert isinstance(changed.results[0], Exists)
        replaced = client.upload_tree(root, "backup", replace=True)
        assert (replaced.stored, replaced.skipped) == (1, 1)
    assert (repo / "backup" / "a.jpg").read_bytes() == b"A" * 100
    assert (repo / "backup" / "sub" / "b.jpg").read_bytes() == b"b" * 200
    assert not (repo / "backup" / ".cache").exists()


def test_upload_tree_progress_counts_the_whole_call(uploads: ServerThread, tmp_path: Path) -> None:
    root = tmp_path / "two"
    write_file(root / "a", b"a" * 1000)
    write_file(root / "b", b"b" * 3000)
    reports: list[TransferProgress] = []
    with Client("127.0.0.1", uploads.port, timeout=10) as client:
        client.upload_tree(root, "", progress=reports.append)
    assert {report.files_total for report in reports} == {2}
    assert reports[-1].bytes_done == reports[-1].bytes_total == 4000
    assert [report.path for report in reports][-1] == "b"


def test_an_upload_over_tls_is_sent_in_chunks_and_stored(
    make_server: Callable[..., ServerThread],
    ca: trustme.CA,
    ca_file: str,
    repo: Path,
    tmp_path: Path,
) -> None:
    server = make_server(allow_upload=True, **tls_options(ca, tmp_path))
    data = random_bytes(2 * 1024 * 1024 + 1)
    local = write_file(tmp_path / "tls.bin", data)
    with Client("127.0.0.1", server.port, timeout=10, tls=client_context(ca_file)) as client:
        result = client.upload(local, "tls.bin")
        assert client.ping() < 5
    assert result.outcome is UploadOutcome.STORED
    assert (repo / "tls.bin").read_bytes() == data


def test_a_read_only_token_may_not_upload(
    make_server: Callable[..., ServerThread], repo: Path, tmp_path: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("reader-1 read\nwriter-1 read,write\n")
    server = make_server(allow_upload=True, token_file=str(tokens))
    local = write_file(tmp_path / "notes.txt", b"notes\n")
    reader = Client("127.0.0.1", server.port, timeout=10, token="reader-1")
    with reader, pytest.raises(Forbidden):
        reader.upload(local, "notes.txt")
    assert not (repo / "notes.txt").exists()
    with Client("127.0.0.1", server.port, timeout=10, token="writer-1") as client:
        assert client.upload(local, "notes.txt").outcome is UploadOutcome.STORED
