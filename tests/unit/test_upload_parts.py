"""The pieces of an upload that need no server: what a folder sends, server paths,
the local source, the put options and exit statuses, and the JSON line."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from filedock.cli.exitcodes import ExitCode, upload_exit_code, worst
from filedock.cli.transfer_options import PutRequest, UsageError, parse_prompt_line
from filedock.cli.uploads import upload_json
from filedock.client.localdigests import LocalDigests
from filedock.client.results import UploadOutcome, UploadResult
from filedock.client.upload import (
    LocalSource,
    UnreadableFile,
    check_remote_path,
    remote_join,
    tree_files,
)
from filedock.errors import (
    BadRequest,
    Changed,
    ConnectionLost,
    Exists,
    Forbidden,
    NoSpace,
    NotFound,
    UploadCorrupted,
    UploadTooLarge,
)


def test_a_folder_sends_its_files_but_hidden_ones_and_symlinks_leading_out(
    tmp_path: Path,
) -> None:
    root = tmp_path / "photos"
    outside = tmp_path / "secret.txt"
    outside.write_bytes(b"secret")
    for name in ("b.jpg", "a.jpg", "sub/c.jpg", ".hidden", ".git/config", "sub/.DS_Store"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(name.encode())
    (root / "inside-link.jpg").symlink_to(root / "a.jpg")
    (root / "outside-link.txt").symlink_to(outside)
    (root / "broken-link").symlink_to(root / "nothing")
    (root / "folder-link").symlink_to(tmp_path)  # never entered: no loop, nothing outside
    found = [relative for _, relative in tree_files(root)]
    assert found == ["a.jpg", "b.jpg", "inside-link.jpg", "sub/c.jpg"]


def test_a_folder_that_is_not_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="not a folder"):
        tree_files(tmp_path / "nothing")


@pytest.mark.parametrize(
    ("folder", "names", "joined"),
    [
        ("", ("a.txt",), "a.txt"),
        (None, ("a.txt",), "a.txt"),
        ("inbox", ("a.txt",), "inbox/a.txt"),
        ("/inbox/", ("sub/a.txt",), "inbox/sub/a.txt"),
        ("inbox", ("photos", "a.jpg"), "inbox/photos/a.jpg"),
    ],
)
def test_remote_join(folder: str | None, names: tuple[str, ...], joined: str) -> None:
    assert remote_join(folder, *names) == joined


@pytest.mark.parametrize("path", ["", "/a", "a/", "a\nb", "a\rb", "a\x00b"])
def test_a_path_that_cannot_travel_is_a_bad_request(path: str) -> None:
    with pytest.raises(BadRequest):
        check_remote_path(path)


def test_a_path_that_is_not_a_string_is_a_type_error() -> None:
    with pytest.raises(TypeError):
        check_remote_path(b"a.txt")  # type: ignore[arg-type]


def test_a_local_source_knows_its_digest_and_when_it_changed(tmp_path: Path) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"hello\n")
    with LocalSource.open(path, LocalDigests(tmp_path / "cache")) as source:
        assert source.sha256 == hashlib.sha256(b"hello\n").hexdigest()
        assert source.size == 6
        assert source.unchanged()
        assert source.last_byte(unchanged=True) == b"\n"
        with path.open("ab") as more:
            more.write(b"!")
        assert not source.unchanged()
        assert source.last_byte(unchanged=False) != b"\n"
    assert source.fd == -1


def test_a_source_that_changes_while_it_is_hashed_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "a.bin"
    path.write_bytes(b"hello\n")
    digests = LocalDigests(tmp_path / "cache")
    real = os.fstat
    calls = []

    def fstat_growing(fd: int) -> os.stat_result:
        calls.append(fd)
        if len(calls) == 2:  # the look after hashing: it grew meanwhile
            with path.open("ab") as more:
                more.write(b"!")
        return real(fd)

    monkeypatch.setattr(os, "fstat", fstat_growing)
    with pytest.raises(Changed, match="changed while it was hashed"):
        LocalSource.open(path, digests)


def test_the_put_line_at_the_prompt() -> None:
    request = parse_prompt_line("put", "a.txt 'b c.txt' --to /inbox/ -r --replace --json", bool)
    assert request == PutRequest(("a.txt", "b c.txt"), "inbox", True, True, True)
    with pytest.raises(UsageError):
        parse_prompt_line("put", "--to inbox", bool)  # no LOCAL


def test_each_refusal_of_an_upload_has_its_exit_status() -> None:
    assert upload_exit_code(Exists("x")) == ExitCode.EXISTS == 10
    assert upload_exit_code(NoSpace("x")) == ExitCode.NO_SPACE == 11
    assert upload_exit_code(UploadTooLarge("x")) == ExitCode.TOO_LARGE == 12
    assert upload_exit_code(Forbidden("x")) == ExitCode.FORBIDDEN == 13
    assert upload_exit_code(UploadCorrupted("x")) == ExitCode.INTEGRITY
    assert upload_exit_code(Changed("x")) == ExitCode.CHANGED
    assert upload_exit_code(ConnectionLost("x")) == ExitCode.CONNECTION
    assert upload_exit_code(NotFound("x")) == ExitCode.NOT_AVAILABLE
    # The numbers before uploads are as they were.
    assert (ExitCode.CHANGED, ExitCode.KEPT) == (8, 9)


def test_the_worst_of_several_uploads() -> None:
    assert worst([ExitCode.EXISTS, ExitCode.NO_SPACE]) == ExitCode.NO_SPACE
    assert worst([ExitCode.EXISTS, ExitCode.FORBIDDEN]) == ExitCode.FORBIDDEN
    assert worst([ExitCode.EXISTS, ExitCode.KEPT]) == ExitCode.EXISTS
    assert worst([ExitCode.TOO_LARGE, ExitCode.INTEGRITY]) == ExitCode.INTEGRITY
    assert worst([ExitCode.OK, ExitCode.EXISTS]) == ExitCode.EXISTS


def test_the_json_line_of_an_upload(tmp_path: Path) -> None:
    local = tmp_path / "a.bin"
    result = UploadResult("inbox/a.bin", 6, "ab" * 32, 2, UploadOutcome.RESUMED, local)
    assert upload_json(local, "inbox/a.bin", result) == {
        "local": str(local),
        "path": "inbox/a.bin",
        "size": 6,
        "sha256": "ab" * 32,
        "result": "resumed",
        "resumed_from": 2,
    }
    failed = upload_json(local, "inbox/a.bin", Exists("there already"))
    assert failed["result"] == "failed"
    assert failed["error"] == "exists: there already"
    assert (failed["size"], failed["sha256"]) == (None, None)
