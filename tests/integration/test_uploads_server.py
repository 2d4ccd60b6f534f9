"""The server's side of uploads, on the wire (raw sockets, an in-process server
on port 0): every refusal before any body byte, the body stored whole under
its name or not at all, resumes, and the uploads that end badly."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from filedock.server import upload_area
from filedock.server import uploads as uploads_module
from filedock.server.config import ServerConfig
from filedock.server.upload_area import ROOT_UPLOADS, partial_name
from tests.conftest import SAMPLE
from tests.support import LineConn, ServerThread, random_bytes, wait_until

BODY = random_bytes(3 * 1024 * 1024 + 5)  # over a few chunks of the server's
BODY_SHA = hashlib.sha256(BODY).hexdigest()
OTHER = random_bytes(len(BODY))
OTHER_SHA = hashlib.sha256(OTHER).hexdigest()
SAMPLE_SHA = hashlib.sha256(SAMPLE).hexdigest()


_OPENED: list[LineConn] = []


@pytest.fixture(autouse=True)
def _close_connections() -> Iterator[None]:
    yield
    while _OPENED:
        _OPENED.pop().close()


def v2(server: ServerThread, token: str = "") -> LineConn:
    """A connection greeted in version 2 (closed at the test's end)."""
    conn = LineConn(server.port, timeout=10.0)
    _OPENED.append(conn)
    name = conn.read_line().removeprefix("NAME ")
    words = f" token={token}" if token else ""
    assert conn.request(f"HELLO {name} proto=2{words}").startswith("WELCOME ")
    return conn


def put(conn: LineConn, path: str, body: bytes = BODY, mode: str = "new") -> str:
    """Send PUT for ``body``; the server's answer, read before any body byte is sent."""
    return conn.request(f"PUT {len(body)} {hashlib.sha256(body).hexdigest()} {mode} {path}")


def upload(conn: LineConn, path: str, body: bytes = BODY, mode: str = "new") -> str:
    """A whole upload: PUT, the rest of the body after READY; the last answer."""
    ready = put(conn, path, body, mode)
    assert ready.startswith("READY "), ready
    offset = int(ready.split(" ")[1])
    conn.send(body[offset:])
    return conn.read_line()


def stored(body: bytes, path: str) -> str:
    return f"STORED {len(body)} {hashlib.sha256(body).hexdigest()} {path}"


def partials(server: ServerThread) -> list[str]:
    assert server.server is not None
    area = server.server.context.uploads
    assert area is not None
    return sorted(name for name in os.listdir(area.folder) if name.endswith(".part"))


@pytest.fixture
def uploads(make_server: Callable[..., ServerThread]) -> ServerThread:
    return make_server(allow_upload=True)


# -- off by default, and the token's rights -------------------------------------------


def test_uploads_are_off_by_default(server: ServerThread, repo: Path) -> None:
    assert ServerConfig().allow_upload is False
    conn = v2(server)
    assert put(conn, "new.txt") == "ERR forbidden this server does not take uploads"
    assert conn.request("PING") == "PONG"  # no body was taken: the stream is in step
    assert not (repo / "new.txt").exists()


def test_a_read_only_token_may_not_upload_a_write_token_may(
    make_server: Callable[..., ServerThread], tmp_path: Path, repo: Path
) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("# who may do what\nreader\nalso-reader read\nwriter read,write\n")
    server = make_server(allow_upload=True, token_file=str(tokens))
    for token in ("reader", "also-reader"):
        conn = v2(server, token)
        assert put(conn, "a.txt") == "ERR forbidden this access token may not upload"
        assert conn.request("PING") == "PONG"
    conn = v2(server, "writer")
    assert upload(conn, "a.txt") == stored(BODY, "a.txt")
    assert (repo / "a.txt").read_bytes() == BODY


# -- every refusal before any body byte -------------------------------------------------


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("../escape.txt", "path leaves the repository"),
        ("/etc/passwd", "absolute paths are not allowed"),
        (".hidden.txt", "hidden files are not served"),
        ("sub/.git/config", "hidden files are not served"),
        ("back\\slash.txt", "path holds a character that is not allowed"),
        ("a//b.txt", "path has an empty or '.' component"),
        ("link/inside.txt", "uploads are not written through a symbolic link"),
        ("alias.txt", "uploads are not written through a symbolic link"),
        ("sample.txt/below.txt", "a name on the path is a file, not a folder"),
        ("folder", "not a regular file"),
    ],
)
def test_a_path_the_repository_would_not_serve_or_create_is_forbidden_up_front(
    uploads: ServerThread, repo: Path, tmp_path: Path, path: str, why: str
) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (repo / "link").symlink_to(outside)
    (repo / "alias.txt").symlink_to(repo / "sample.txt")
    (repo / "folder").mkdir()
    conn = v2(uploads)
    assert put(conn, path, mode="replace") == f"ERR forbidden {why}"
    assert conn.request("PING") == "PONG"
    assert list(outside.iterdir()) == []
    assert (repo / "sample.txt").read_bytes() == SAMPLE
    assert partials(uploads) == []


def test_mode_new_of_a_path_that_exists_is_refused_up_front(uploads: ServerThread) -> None:
    conn = v2(uploads)
    assert put(conn, "sample.txt") == "ERR exists a file of that name exists"
    assert conn.request("PING") == "PONG"


def test_an_upload_over_the_size_limit_is_refused_up_front(
    make_server: Callable[..., ServerThread],
) -> None:
    assert ServerConfig().max_upload_size == 4 * 1024**3
    server = make_server(allow_upload=True, max_upload_size=len(BODY) - 1)
    conn = v2(server)
    assert put(conn, "big.bin") == (
        f"ERR too-large the server takes uploads of {len(BODY) - 1} bytes at most"
    )
    assert conn.request("PING") == "PONG"
    assert upload(conn, "small.txt", SAMPLE) == stored(SAMPLE, "small.txt")


@pytest.mark.parametrize(
    "line",
    [
        f"PUT x {SAMPLE_SHA} new a.txt",
        f"PUT 10 {'z' * 64} new a.txt",
        f"PUT 10 {SAMPLE_SHA} append a.txt",
        f"PUT 10 {SAMPLE_SHA} new",
        "PUT",
    ],
)
def test_a_malformed_put_is_a_bad_request(uploads: ServerThread, line: str) -> None:
    conn = v2(uploads)
    assert conn.request(line).startswith("ERR bad-request PUT needs ")
    assert conn.request("PING") == "PONG"


def test_an_upload_that_would_leave_too_little_free_space_is_refused_up_front(
    make_server: Callable[..., ServerThread], repo: Path
) -> None:
    free = os.statvfs(repo).f_bavail * os.statvfs(repo).f_frsize
    # A floor a tebibyte over what is free: space freed by others meanwhile changes nothing.
    server = make_server(allow_upload=True, min_free_space=free + 1024**4)
    conn = v2(server)
    assert put(conn, "a.txt").startswith("ERR no-space room for 0 more bytes, not ")
    assert conn.request("PING") == "PONG"


def test_the_default_free_space_floor_is_1_gib_or_5_percent() -> None:
    config = ServerConfig()
    assert config.free_space_floor(10 * 1024**3) == 1024**3
    assert config.free_space_floor(100 * 1024**3) == 5 * 1024**3
    assert ServerConfig(min_free_space=0).free_space_floor(100 * 1024**3) == 0


# -- stored whole -------------------------------------------------------------------------


def test_an_upload_is_stored_under_its_name_and_its_first_download_is_warm(
    uploads: ServerThread, repo: Path
) -> None:
    conn = v2(uploads)
    assert upload(conn, "docs/deep/new.bin") == stored(BODY, "docs/deep/new.bin")
    assert (repo / "docs" / "deep" / "new.bin").read_bytes() == BODY
    assert partials(uploads) == []
    assert conn.request("PING") == "PONG"
    # The digest is known: the FILE header carries it at once (no "-").
    assert conn.request("GET docs/deep/new.bin") == f"FILE {len(BODY)} {BODY_SHA} docs/deep/new.bin"
    assert conn.read_exactly(len(BODY)) == BODY
    assert uploads.server is not None
    assert uploads.sync(lambda: uploads.server.repository.hashes.hashings) == 0  # type: ignore[union-attr]


def test_replace_puts_the_new_file_in_the_place_of_the_old(
    uploads: ServerThread, repo: Path
) -> None:
    conn = v2(uploads)
    assert upload(conn, "sample.txt", BODY, mode="replace") == stored(BODY, "sample.txt")
    assert (repo / "sample.txt").read_bytes() == BODY
    assert conn.request("HASH sample.txt").startswith(f"HASH {len(BODY)} {BODY_SHA} ")
    assert uploads.sync(lambda: uploads.server.repository.hashes.hashings) == 0  # type: ignore[union-attr]


def test_an_empty_file_and_pipelined_requests_after_the_body(
    uploads: ServerThread, repo: Path
) -> None:
    conn = v2(uploads)
    assert put(conn, "empty.txt", b"") == "READY 0 empty.txt"
    assert conn.read_line() == stored(b"", "empty.txt")
    assert (repo / "empty.txt").read_bytes() == b""
    assert put(conn, "two.txt", SAMPLE) == "READY 0 two.txt"
    conn.send(SAMPLE + b"PING\nWHO\n")
    assert conn.read_line() == stored(SAMPLE, "two.txt")
    assert conn.read_line() == "PONG"
    assert conn.read_line().startswith("WHO ")


def test_a_body_that_does_not_match_its_digest_places_nothing(
    uploads: ServerThread, repo: Path
) -> None:
    conn = v2(uploads)
    ready = conn.request(f"PUT {len(BODY)} {BODY_SHA} new bad.bin")
    assert ready == "READY 0 bad.bin"
    conn.send(OTHER)
    assert conn.read_line() == (
        f"ERR integrity the body's SHA-256 is {OTHER_SHA}, not the {BODY_SHA} announced"
    )
    assert not (repo / "bad.bin").exists()
    assert partials(uploads) == []
    assert conn.request("PING") == "PONG"  # the connection stays open
    assert upload(conn, "bad.bin") == stored(BODY, "bad.bin")


def test_status_and_who_answer_while_an_upload_is_under_way(uploads: ServerThread) -> None:
    conn = v2(uploads)
    assert put(conn, "slow.bin") == "READY 0 slow.bin"
    conn.send(BODY[:1000])
    other = v2(uploads)
    assert other.request("WHO") == "WHO Client01 Client02"
    assert other.request("STATUS") == "STATUS 2"
    assert [other.read_line().split("\t")[0] for _ in range(2)] == ["Client01", "Client02"]
    assert other.request("LIST") == "FILES 1"
    assert other.read_line().startswith("sample.txt\t")
    assert other.request("PING") == "PONG"
    conn.send(BODY[1000:])
    assert conn.read_line() == stored(BODY, "slow.bin")


# -- two at once ------------------------------------------------------------------------------


def test_two_uploads_of_one_path_in_mode_new_at_once_store_exactly_one(
    uploads: ServerThread, repo: Path
) -> None:
    first, second = v2(uploads), v2(uploads)
    assert put(first, "race.bin", BODY) == "READY 0 race.bin"
    assert put(second, "race.bin", OTHER) == "READY 0 race.bin"  # neither is placed yet
    answers: dict[str, str] = {}

    def send(conn: LineConn, body: bytes, key: str) -> None:
        conn.send(body)
        answers[key] = conn.read_line()

    threads = [
        threading.Thread(target=send, args=(first, BODY, "first")),
        threading.Thread(target=send, args=(second, OTHER, "second")),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    outcomes = sorted(answers.values())
    assert len(outcomes) == 2
    assert outcomes[0] == "ERR exists another upload placed a file of that name first"
    assert outcomes[1].startswith("STORED ")
    winner = BODY if answers["first"].startswith("STORED") else OTHER
    assert (repo / "race.bin").read_bytes() == winner  # one of the two, whole
    assert partials(uploads) == []


def test_space_is_reserved_at_acceptance(
    make_server: Callable[..., ServerThread], small_fs: Path
) -> None:
    # 5 MiB: room for one body of 3 MiB, not for two at once.
    server = make_server(repo=_repo_in(small_fs), allow_upload=True, min_free_space=0)
    first, second = v2(server), v2(server)
    assert put(first, "one.bin") == "READY 0 one.bin"
    assert put(second, "two.bin", OTHER).startswith("ERR no-space room for ")
    assert second.request("PING") == "PONG"
    first.send(BODY)
    assert first.read_line() == stored(BODY, "one.bin")


def test_the_disk_filling_during_an_upload_places_nothing_and_the_server_goes_on(
    make_server: Callable[..., ServerThread], small_fs: Path
) -> None:
    repo = _repo_in(small_fs)
    server = make_server(repo=repo, allow_upload=True, min_free_space=0)
    conn = v2(server)
    assert put(conn, "full.bin") == "READY 0 full.bin"
    filler = small_fs / "filler"
    # Another writer takes the room meanwhile.
    with open(filler, "wb") as out, contextlib.suppress(OSError):
        out.write(random_bytes(4 * 1024 * 1024))
    conn.send(BODY)
    assert conn.read_line() == "ERR no-space the server's disk filled during the upload"
    assert not (repo / "full.bin").exists()
    assert partials(server) == []  # its room is given back
    assert conn.request("PING") == "PONG"
    filler.unlink()
    assert upload(conn, "full.bin") == stored(BODY, "full.bin")
    assert (repo / "full.bin").read_bytes() == BODY


# -- interrupted, resumed, expired --------------------------------------------------------------


@pytest.mark.parametrize("how", ["closed", "reset"])
def test_a_client_killed_at_half_leaves_a_partial_that_a_resume_completes(
    uploads: ServerThread, repo: Path, how: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="filedock")  # (the upload's line is at INFO)
    conn = v2(uploads)
    half = len(BODY) // 2
    assert put(conn, "docs/half.bin") == "READY 0 docs/half.bin"
    conn.send(BODY[:half])
    name = partial_name(len(BODY), BODY_SHA, "docs/half.bin")
    if how == "closed":  # a killed process's kernel closes its socket: every byte sent arrives
        conn.sock.shutdown(socket.SHUT_WR)
    else:  # a reset: what had come is kept
        wait_until(lambda: _received(uploads) == half)
        _kill(conn)
    wait_until(lambda: partials(uploads) == [name] and _partial_size(uploads, name) == half)
    why = "the client closed the connection" if how == "closed" else "the connection was lost"
    wait_until(lambda: f"interrupted ({why}), its partial kept at {half} bytes" in caplog.text)
    head = f"Received file 'docs/half.bin' size={len(BODY)} sha256={BODY_SHA[:12]}… from Client01 "
    assert head in caplog.text
    assert f"s: {half} of {len(BODY)} bytes at " in caplog.text
    wait_until(lambda: uploads.sync(lambda: uploads.server.context.uploads.reserved) == 0)  # type: ignore[union-attr]
    assert not (repo / "docs" / "half.bin").exists()
    again = v2(uploads)
    listing = again.request("LIST")
    records = [again.read_line() for _ in range(int(listing.split(" ")[1]))]
    assert all("half" not in record and ".part" not in record for record in records)
    assert put(again, "docs/half.bin") == f"READY {half} docs/half.bin"
    again.send(BODY[half:])  # only the rest
    assert again.read_line() == stored(BODY, "docs/half.bin")
    assert (repo / "docs" / "half.bin").read_bytes() == BODY
    assert partials(uploads) == []


def test_a_resume_of_another_file_at_the_same_path_starts_from_zero(
    uploads: ServerThread,
) -> None:
    conn = v2(uploads)
    assert put(conn, "x.bin") == "READY 0 x.bin"
    conn.send(BODY[:1000])
    _kill(conn)
    wait_until(lambda: len(partials(uploads)) == 1)
    wait_until(lambda: _partial_size(uploads, partials(uploads)[0]) == 1000)
    assert put(v2(uploads), "x.bin", OTHER) == "READY 0 x.bin"


def test_partials_older_than_the_expiry_are_removed_at_start_up(
    make_server: Callable[..., ServerThread], repo: Path
) -> None:
    folder = repo / ".filedock" / "uploads"
    folder.mkdir(parents=True)
    old, fresh = folder / ("a" * 40 + ".part"), folder / ("b" * 40 + ".part")
    old.write_bytes(b"old")
    fresh.write_bytes(b"fresh")
    day_ago = os.stat(old).st_mtime - 2 * 3600
    os.utime(old, (day_ago, day_ago))
    server = make_server(allow_upload=True, upload_expiry=3600.0)
    assert partials(server) == [fresh.name]


def test_the_server_stopped_mid_upload_keeps_the_partial_for_a_resume(
    make_server: Callable[..., ServerThread], repo: Path
) -> None:
    server = make_server(allow_upload=True)
    conn = v2(server)
    half = len(BODY) // 2
    assert put(conn, "stop.bin") == "READY 0 stop.bin"
    conn.send(BODY[:half])
    name = partial_name(len(BODY), BODY_SHA, "stop.bin")
    wait_until(lambda: _received(server) == half)
    folder = server.server.context.uploads.folder  # type: ignore[union-attr]
    server.stop()  # what came and was not written yet is written as it stops
    assert conn.read_line() == "ERR shutdown server is shutting down"
    assert os.path.getsize(os.path.join(folder, name)) == half
    assert not (repo / "stop.bin").exists()
    again = make_server(allow_upload=True)
    conn = v2(again)
    assert put(conn, "stop.bin") == f"READY {half} stop.bin"
    conn.send(BODY[half:])
    assert conn.read_line() == stored(BODY, "stop.bin")


def test_the_server_stopped_mid_upload_ends_the_partials_flush_before_it_returns(
    make_server: Callable[..., ServerThread], monkeypatch: pytest.MonkeyPatch
) -> None:
    flushed: list[int] = []
    write_and_keep = uploads_module._write_and_keep

    def slow_flush(partial: upload_area.Partial, chunks: list[tuple[bytearray, int]]) -> None:
        time.sleep(2.5)  # a slow disk: longer than the rest of the shutdown takes
        write_and_keep(partial, chunks)
        flushed.append(len(chunks))

    monkeypatch.setattr(uploads_module, "_write_and_keep", slow_flush)
    server = make_server(allow_upload=True)
    conn = v2(server)
    half = len(BODY) // 2
    assert put(conn, "stop.bin") == "READY 0 stop.bin"
    conn.send(BODY[:half])
    wait_until(lambda: _received(server) == half)
    assert server.server is not None
    server.call(server.server.aclose(), timeout=15)
    assert flushed  # ended before the shutdown did, not left to end after the loop
    assert not uploads_module._FLUSHING


def _repo_in(folder: Path) -> Path:
    repo = folder / "repo"
    repo.mkdir()
    (repo / "sample.txt").write_bytes(SAMPLE)
    return repo


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A 5 MiB tmpfs mounted for the test (skipped where it cannot be)."""
    mount_point = tmp_path / "small-fs"
    mount_point.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=5m", "tmpfs", str(mount_point)],
            check=True, capture_output=True, timeout=10,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot mount a small tmpfs here (needs root and CAP_SYS_ADMIN): {exc}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False, timeout=10)


def _received(server: ServerThread) -> int:
    """Body bytes the server has taken from the transports of its uploads now."""
    assert server.server is not None
    sessions = server.server.sessions
    return server.sync(lambda: sum(s.upload.received for s in sessions if s.upload))


def _kill(conn: LineConn) -> None:
    """Drop the connection as a killed client's kernel does (a reset, no goodbye)."""
    conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    conn.sock.close()


def _partial_size(server: ServerThread, name: str) -> int:
    assert server.server is not None
    assert server.server.context.uploads is not None
    try:
        return os.path.getsize(os.path.join(server.server.context.uploads.folder, name))
    except FileNotFoundError:
        return -1


def test_the_uploads_folder_is_hidden_inside_the_state_folder(
    uploads: ServerThread, repo: Path
) -> None:
    assert uploads.server is not None
    assert uploads.server.context.uploads is not None
    assert uploads.server.context.uploads.folder == str(repo / ".filedock" / "uploads")


def test_a_state_folder_on_another_file_system_puts_the_uploads_in_the_root(
    make_server: Callable[..., ServerThread], repo: Path
) -> None:
    elsewhere = "/dev/shm"  # a tmpfs: another device than the repository's
    if os.stat(elsewhere).st_dev == os.stat(repo).st_dev:
        pytest.skip("/dev/shm is on the repository's file system here")
    state = Path(elsewhere) / f"filedock-state-{os.getpid()}-{id(repo)}"
    try:
        server = make_server(allow_upload=True, state_dir=str(state))
        assert server.server is not None
        assert server.server.context.uploads is not None
        assert server.server.context.uploads.folder == str(repo / ROOT_UPLOADS)
        conn = v2(server)
        assert upload(conn, "a.bin") == stored(BODY, "a.bin")
        listing = conn.request("LIST")
        records = [conn.read_line() for _ in range(int(listing.split(" ")[1]))]
        assert [r.split("\t")[0] for r in records] == ["a.bin", "sample.txt"]
    finally:
        for path in sorted(state.rglob("*"), reverse=True):
            path.unlink() if not path.is_dir() else path.rmdir()
        if state.exists():
            state.rmdir()


# -- flow control ------------------------------------------------------------------------------


def test_a_writer_behind_stops_the_reading_and_memory_stays_bounded(
    uploads: ServerThread, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    released = threading.Event()
    store = upload_area.Partial.store

    def paused_store(self: upload_area.Partial, data: memoryview) -> None:
        released.wait(30)  # a disk that does not keep up
        store(self, data)

    monkeypatch.setattr(upload_area.Partial, "store", paused_store)
    body = random_bytes(48 * 1024 * 1024)
    conn = v2(uploads)
    assert put(conn, "flood.bin", body) == "READY 0 flood.bin"
    sender = threading.Thread(target=conn.send, args=(body,))
    sender.start()
    assert uploads.server is not None
    sessions = uploads.server.sessions

    def reading_paused() -> bool:
        return uploads.sync(
            lambda: any(
                s.upload is not None and s.transport is not None and not s.transport.is_reading()
                for s in sessions
            )
        )

    try:
        wait_until(reading_paused, timeout=10)
        # Bounded: the chunks queued, the one being filled and the one being
        # written, and one read's worth more; the rest waits in TCP's buffers.
        bound = (uploads_module.CHUNKS_QUEUED + 2) * uploads_module.CHUNK + 64 * 1024
        assert _received(uploads) <= bound
        assert v2(uploads).request("PING") == "PONG"  # the loop serves the others meanwhile
    finally:
        released.set()
    sender.join(30)
    assert conn.read_line(timeout=30) == stored(body, "flood.bin")
    assert (repo / "flood.bin").stat().st_size == len(body)


def test_no_upload_goes_into_the_servers_own_folders_even_under_a_served_name(
    make_server: Callable[..., ServerThread], repo: Path
) -> None:
    server = make_server(allow_upload=True, state_dir=str(repo / "state"))  # warned about
    conn = v2(server)
    for path in ("state/digests.sqlite", "state/uploads/x.part", "state/new/x.bin"):
        assert (
            put(conn, path, SAMPLE, mode="replace")
            == "ERR forbidden that folder is the server's own"
        )
    assert upload(conn, "elsewhere/x.bin", SAMPLE) == stored(SAMPLE, "elsewhere/x.bin")
