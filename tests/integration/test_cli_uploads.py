"""`put` on the command line and at the prompt: where files go, what each outcome prints
and exits with, and --json; against an in-process server that takes uploads (and
one that does not, and a fake one for a full disk).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from filedock.cli.exitcodes import ExitCode
from filedock.cli.shell import Shell
from filedock.client.client import Client
from tests.integration import test_oneshot
from tests.integration.test_oneshot import SUMMARY, Run
from tests.support import ServerThread, write_file
from tests.support.fake_server import FakeServer, Peer

run = test_oneshot.run  # the fixture: client_main's exit status, stdout and stderr


@pytest.fixture
def uploads(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(allow_upload=True)


@pytest.fixture
def up_port(uploads: ServerThread) -> str:
    return str(uploads.port)


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    write_file(root / "a.jpg", b"a" * 10)
    write_file(root / "sub" / "b.jpg", b"b" * 20)
    write_file(root / ".thumbs" / "x", b"hidden")
    return root


def test_put_stores_a_file_under_the_folder_given(
    run: Run, up_port: str, repo: Path, tmp_path: Path
) -> None:
    local = write_file(tmp_path / "notes.txt", b"notes\n")
    code, out, err = run("--port", up_port, "put", str(local), "--to", "inbox")
    assert (code, err) == (0, "")
    assert out == "[CLIENT] Stored inbox/notes.txt (6 B, SHA-256 checked)\n"
    assert (repo / "inbox" / "notes.txt").read_bytes() == b"notes\n"


def test_put_of_a_path_the_server_has_exits_10_and_replace_replaces_it(
    run: Run, up_port: str, repo: Path, tmp_path: Path
) -> None:
    local = write_file(tmp_path / "sample.txt", b"mine\n")
    code, out, err = run("--port", up_port, "put", str(local))
    assert code == ExitCode.EXISTS == 10
    assert out == ""
    assert err.startswith("[SERVER] ERR exists ")
    assert err.rstrip().endswith("(sample.txt)")
    assert (repo / "sample.txt").read_bytes() == b"hello\n"  # the server's, kept
    code, out, err = run("--port", up_port, "put", str(local), "--replace")
    assert (code, err) == (0, "")
    assert out.startswith("[CLIENT] Stored sample.txt ")
    assert (repo / "sample.txt").read_bytes() == b"mine\n"


def test_put_r_sends_a_folder_and_skips_what_the_server_has(
    run: Run, up_port: str, repo: Path, photos: Path
) -> None:
    code, out, err = run("--port", up_port, "put", "-r", str(photos), "--to", "backup")
    assert (code, err) == (0, "")
    *files, summary = out.splitlines()
    assert files == [
        "[CLIENT] Stored backup/photos/a.jpg (10 B, SHA-256 checked)",
        "[CLIENT] Stored backup/photos/sub/b.jpg (20 B, SHA-256 checked)",
    ]
    assert re.fullmatch(SUMMARY.format("2 files: 2 stored; 30 B"), summary)
    assert (repo / "backup" / "photos" / "sub" / "b.jpg").read_bytes() == b"b" * 20
    assert not (repo / "backup" / "photos" / ".thumbs").exists()
    code, out, err = run("--port", up_port, "put", "-r", str(photos), "--to", "backup", "--json")
    assert (code, err) == (0, "")
    lines = [json.loads(line) for line in out.splitlines()]
    assert [(line["path"], line["result"]) for line in lines] == [
        ("backup/photos/a.jpg", "skipped"),
        ("backup/photos/sub/b.jpg", "skipped"),
    ]
    assert lines[0] == {
        "local": str(photos / "a.jpg"),
        "path": "backup/photos/a.jpg",
        "size": 10,
        "sha256": hashlib.sha256(b"a" * 10).hexdigest(),
        "result": "skipped",
        "resumed_from": 0,
    }


def test_put_r_says_which_files_differ_on_the_server(
    run: Run, up_port: str, repo: Path, photos: Path
) -> None:
    write_file(repo / "photos" / "a.jpg", b"other")
    code, out, err = run("--port", up_port, "put", "-r", str(photos), "--json")
    assert code == ExitCode.EXISTS
    [first, second] = [json.loads(line) for line in out.splitlines()]
    assert (first["result"], first["path"]) == ("failed", "photos/a.jpg")
    assert first["error"].startswith("exists")
    assert second["result"] == "stored"
    assert "ERR exists" in err  # said on stderr too


def test_put_of_a_folder_without_r_is_an_error(run: Run, up_port: str, photos: Path) -> None:
    code, out, err = run("--port", up_port, "put", str(photos))
    assert code == ExitCode.ERROR
    assert "is a folder: put -r" in err


def test_put_of_a_missing_file_says_so_and_sends_the_others(
    run: Run, up_port: str, repo: Path, tmp_path: Path
) -> None:
    local = write_file(tmp_path / "b.txt", b"b")
    code, out, err = run("--port", up_port, "put", str(tmp_path / "nope.txt"), str(local))
    assert code == ExitCode.ERROR
    assert "cannot read" in err
    *files, summary = out.splitlines()
    assert files == ["[CLIENT] Stored b.txt (1 B, SHA-256 checked)"]
    assert re.fullmatch(SUMMARY.format("2 files: 1 stored, 1 failed; 1 B"), summary)
    assert (repo / "b.txt").read_bytes() == b"b"


def test_put_to_a_server_without_uploads_exits_13(
    run: Run, port: str, repo: Path, tmp_path: Path
) -> None:
    local = write_file(tmp_path / "notes.txt", b"notes\n")
    code, out, err = run("--port", port, "put", str(local))
    assert code == ExitCode.FORBIDDEN == 13
    assert err.startswith("[SERVER] ERR forbidden ")
    assert not (repo / "notes.txt").exists()


def test_put_over_the_size_limit_exits_12(
    run: Run, make_server: Callable[..., ServerThread], repo: Path, tmp_path: Path
) -> None:
    server = make_server(allow_upload=True, max_upload_size=4)
    local = write_file(tmp_path / "notes.txt", b"notes\n")
    code, out, err = run("--port", str(server.port), "put", str(local))
    assert code == ExitCode.TOO_LARGE == 12
    assert err.startswith("[SERVER] ERR too-large ")
    assert not (repo / "notes.txt").exists()


def test_put_with_no_room_exits_11(run: Run, tmp_path: Path) -> None:
    def script(peer: Peer) -> None:
        peer.send(b"NAME Client01\n")
        peer.line()
        peer.send(b"WELCOME Client01 fakedock 0.0 proto=2\n")
        line = peer.line()
        assert line is not None
        assert line.startswith("PUT ")
        peer.send(b"ERR no-space not enough room for 6 bytes\n")
        peer.goodbye()

    server = FakeServer(script)
    local = write_file(tmp_path / "notes.txt", b"notes\n")
    try:
        code, out, err = run("--port", str(server.port), "put", str(local))
    finally:
        server.close()
    assert code == ExitCode.NO_SPACE == 11
    assert err == "[SERVER] ERR no-space not enough room for 6 bytes (notes.txt)\n"


def test_put_at_the_prompt(uploads: ServerThread, repo: Path, tmp_path: Path) -> None:
    local = write_file(tmp_path / "my notes.txt", b"notes\n")
    out = io.StringIO()
    with Client("127.0.0.1", uploads.port, timeout=5) as client:
        shell = Shell(client, tmp_path / "downloads", out=out, err=out, colour=False)
        shell.execute(f"put '{local}' --to inbox")
        shell.execute(f"put '{local}' --to inbox")
        local.write_bytes(b"other\n")
        shell.execute(f"put '{local}' --to inbox")
        shell.execute("put --help")
    lines = out.getvalue().splitlines()
    assert lines[0] == "[CLIENT] Stored inbox/my notes.txt (6 B, SHA-256 checked)"
    assert lines[1] == "[CLIENT] Skipped inbox/my notes.txt (the server has it)"
    assert lines[2].startswith("[SERVER] ERR exists ")
    assert any(line.startswith("usage: put ") for line in lines[3:])
    assert (repo / "inbox" / "my notes.txt").read_bytes() == b"notes\n"
