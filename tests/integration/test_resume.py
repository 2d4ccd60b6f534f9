"""Downloads that survive: resume from a kept partial, skip what is there,
replace or keep a different file, the server's mtime on what is saved.

Every download here goes through a relay that counts the bytes the server
sent, so "resumed from the offset" and "nothing fetched" are measured, not
taken from the client's word.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import filedock.client.download
import filedock.client.ledger
import filedock.client.resume
import filedock.server.repository
from filedock.client import piecetag, sha256state
from filedock.client.client import (
    PIPELINE_BYTES,
    Client,
    DownloadResult,
    Outcome,
    TransferProgress,
)
from filedock.client.download import partial_path
from filedock.client.plan import CHANGED_ON_SERVER, DAMAGED_PARTIAL, FilePlan
from filedock.client.resume import load_record, new_record, record_path
from filedock.errors import ConnectionLost
from filedock.protocol import Range, Request
from tests.support import HOST, ServerThread, wait_until
from tests.support.fake_server import FakeServer, Peer
from tests.support.proxy import CountingProxy, counting_proxy

MiB = 1024 * 1024
SIZE = 12 * MiB  # three of the client's buffers: written as it comes, so resumable
# Bytes of reply lines around a body, at most (FILE/PART/HASH lines).
LINES = 4096
OLD_MTIME = 978_307_200  # 2001-01-01T00:00:00Z


@pytest.fixture
def big(repo: Path) -> bytes:
    data = os.urandom(SIZE)
    (repo / "big.bin").write_bytes(data)
    return data


@pytest.fixture(autouse=True)
def trusted_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """Files written by a test may be cached by the server at once (no racy window)."""
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)


@pytest.fixture
def proxy(server: ServerThread) -> Iterator[CountingProxy]:
    with counting_proxy(server.port) as relay:
        yield relay


@pytest.fixture
def client(proxy: CountingProxy) -> Iterator[Client]:
    with Client(HOST, proxy.port, timeout=10) as connected:
        yield connected


def interrupted_download(proxy: CountingProxy, dest_dir: Path, at: int = SIZE // 2) -> int:
    """Download big.bin until ``at`` bytes have come, then Ctrl-C; the partial's length."""

    def stop(moving: TransferProgress) -> None:
        if moving.done >= at:
            raise KeyboardInterrupt

    with Client(HOST, proxy.port, timeout=10) as client, pytest.raises(KeyboardInterrupt):
        client.download("big.bin", dest_dir, progress=stop)
    proxy.reset()
    return partial_path(dest_dir / "big.bin").stat().st_size


def interrupted_with_durable(proxy: CountingProxy, dest_dir: Path, durable: int) -> Path:
    """An interrupted download whose last checkpoint had fsynced ``durable`` bytes."""
    interrupted_download(proxy, dest_dir)
    dest = dest_dir / "big.bin"
    fields = json.loads(record_path(dest).read_text())
    fields["durable"] = durable
    record_path(dest).write_text(json.dumps(fields))
    return dest


def hidden(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_ctrl_c_keeps_the_partial_and_its_record(
    big: bytes, proxy: CountingProxy, downloads: Path
) -> None:
    length = interrupted_download(proxy, downloads)
    assert SIZE // 2 <= length < SIZE
    assert not (downloads / "big.bin").exists()
    assert hidden(downloads) == [".big.bin.part", ".big.bin.resume"]
    record = load_record(downloads / "big.bin")
    assert record is not None
    assert (record.server, record.path, record.size) == (f"{HOST}:{proxy.port}", "big.bin", SIZE)
    # None when the header came without it (a never-hashed file: the digest follows the body).
    assert record.sha256 in (None, hashlib.sha256(big).hexdigest())
    assert partial_path(downloads / "big.bin").read_bytes() == big[:length]


def test_the_next_download_moves_only_the_rest(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    length = interrupted_download(proxy, downloads)
    result = client.download("big.bin", downloads)
    assert (result.outcome, result.resumed_from, result.restarted) == (
        Outcome.RESUMED,
        length,
        None,
    )
    assert SIZE - length <= proxy.from_server <= SIZE - length + LINES
    assert (downloads / "big.bin").read_bytes() == big
    assert hidden(downloads) == []  # the partial became the file; the record is gone


def test_resume_false_starts_again(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    interrupted_download(proxy, downloads)
    result = client.download("big.bin", downloads, resume=False)
    assert (result.outcome, result.resumed_from) == (Outcome.FETCHED, 0)
    assert proxy.from_server >= SIZE
    assert (downloads / "big.bin").read_bytes() == big
    assert hidden(downloads) == []  # the old partial's record went with it


def test_resume_false_in_a_folder_download_drops_old_records(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    interrupted_download(proxy, downloads)
    [result] = client.get_many(["big.bin"], downloads, resume=False)
    assert isinstance(result, DownloadResult)
    assert (downloads / "big.bin").read_bytes() == big
    assert hidden(downloads) == []


def test_a_file_changed_on_the_server_starts_over_once(
    repo: Path, big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    client.hash("big.bin")  # known to the server: the FILE header, so the record, has the digest
    interrupted_download(proxy, downloads)
    record = load_record(downloads / "big.bin")
    assert record is not None
    assert record.sha256 == hashlib.sha256(big).hexdigest()
    served = repo / "big.bin"
    before = served.stat()
    new = os.urandom(SIZE)  # the same size, the mtime put back: only the digest tells
    served.write_bytes(new)
    os.utime(served, ns=(before.st_atime_ns, before.st_mtime_ns))
    result = client.download("big.bin", downloads)
    assert (result.outcome, result.resumed_from) == (Outcome.FETCHED, 0)
    assert result.restarted == CHANGED_ON_SERVER
    assert (downloads / "big.bin").read_bytes() == new
    assert SIZE <= proxy.from_server <= SIZE + LINES  # once, not twice
    assert hidden(downloads) == []


def test_a_complete_partial_is_resumed_with_nothing_to_move(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    dest = downloads / "big.bin"
    downloads.mkdir()
    partial_path(dest).write_bytes(big)
    sha = hashlib.sha256(big).hexdigest()
    new_record(f"{HOST}:{proxy.port}", "big.bin", SIZE, sha).save(dest)
    result = client.download("big.bin", downloads)
    assert (result.outcome, result.resumed_from) == (Outcome.RESUMED, SIZE)
    assert proxy.from_server <= LINES
    assert dest.read_bytes() == big


def test_a_flipped_byte_in_the_partial_ends_in_a_verified_file(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    length = interrupted_download(proxy, downloads)
    partial = partial_path(downloads / "big.bin")
    with partial.open("r+b") as file:
        file.seek(length // 3)
        byte = file.read(1)
        file.seek(length // 3)
        file.write(bytes([byte[0] ^ 0xFF]))
    result = client.download("big.bin", downloads)
    assert (result.outcome, result.restarted) == (Outcome.FETCHED, DAMAGED_PARTIAL)
    assert (downloads / "big.bin").read_bytes() == big
    # The rest once, then the whole file once more: never a third time.
    assert proxy.from_server <= (SIZE - length) + SIZE + 2 * LINES


def test_after_another_boot_only_the_durable_length_is_trusted(
    big: bytes,
    proxy: CountingProxy,
    client: Client,
    downloads: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    dest = interrupted_with_durable(proxy, downloads, 2 * MiB)
    monkeypatch.setattr(filedock.client.resume, "boot_id", lambda: "a later boot")
    result = client.download("big.bin", downloads)
    assert (result.outcome, result.resumed_from) == (Outcome.RESUMED, 2 * MiB)
    assert dest.read_bytes() == big


def test_a_torn_record_means_starting_again(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    interrupted_download(proxy, downloads)
    record_path(downloads / "big.bin").write_text('{"version": 1, "serv')
    result = client.download("big.bin", downloads)
    assert (result.outcome, result.resumed_from) == (Outcome.FETCHED, 0)
    assert (downloads / "big.bin").read_bytes() == big


def test_a_partial_from_another_server_is_not_resumed(
    big: bytes, server: ServerThread, proxy: CountingProxy, downloads: Path
) -> None:
    interrupted_download(proxy, downloads)
    with Client(HOST, server.port, timeout=10) as direct:  # another host:port than the record's
        result = direct.download("big.bin", downloads)
    assert (result.outcome, result.resumed_from) == (Outcome.FETCHED, 0)
    assert (downloads / "big.bin").read_bytes() == big


def test_an_identical_file_is_skipped_without_a_body(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    first = client.download("big.bin", downloads)
    assert first.outcome is Outcome.FETCHED
    proxy.reset()
    again = client.download("big.bin", downloads)
    assert (again.outcome, again.sha256, again.path) == (Outcome.SKIPPED, first.sha256, first.path)
    assert proxy.from_server <= LINES  # a HASH reply, no body
    assert client.local_digests.misses == 0  # its digest was kept when it was saved


def test_a_missing_file_is_asked_for_with_get_first(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    seen: list[str] = []
    send = client._link.send

    def record_lines(data: bytes) -> None:
        seen.append(data.decode(errors="replace"))
        send(data)

    client._link.send = record_lines  # type: ignore[method-assign]
    client.download("big.bin", downloads)
    assert seen[0].startswith("GET big.bin\n")  # the first byte waits for no HASH


def test_a_different_file_is_replaced_and_no_clobber_keeps_it(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    dest = downloads / "big.bin"
    downloads.mkdir()
    dest.write_bytes(b"another file\n")
    proxy.reset()
    kept = client.download("big.bin", downloads, no_clobber=True)
    assert (kept.outcome, kept.size) == (Outcome.KEPT, len(b"another file\n"))
    assert dest.read_bytes() == b"another file\n"
    assert proxy.reset() <= LINES  # a HASH reply, no body
    inode = dest.stat().st_ino
    replaced = client.download("big.bin", downloads)
    assert replaced.outcome is Outcome.REPLACED
    assert dest.read_bytes() == big
    assert dest.stat().st_ino != inode  # a new file renamed over it, never rewritten in place
    dest.write_bytes(os.urandom(SIZE))  # the same size: HASH and the local digest tell
    proxy.reset()
    assert client.download("big.bin", downloads, no_clobber=True).outcome is Outcome.KEPT
    assert proxy.from_server <= LINES
    assert hidden(downloads) == []


def test_saved_and_skipped_files_get_the_server_mtime(
    repo: Path, big: bytes, client: Client, downloads: Path
) -> None:
    os.utime(repo / "big.bin", (OLD_MTIME, OLD_MTIME))
    saved = client.download("big.bin", downloads).path
    assert saved.stat().st_mtime == OLD_MTIME
    os.utime(saved)  # touched locally: same bytes, another mtime
    again = client.download("big.bin", downloads)
    assert again.outcome is Outcome.SKIPPED
    assert saved.stat().st_mtime == OLD_MTIME
    # The digest was kept under the file's new key (its ctime moved): no hashing next time.
    misses = client.local_digests.misses
    assert client.download("big.bin", downloads).outcome is Outcome.SKIPPED
    assert client.local_digests.misses == misses


def test_save_as_names_the_local_file(big: bytes, client: Client, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere" / "copy.bin"
    result = client.download("big.bin", save_as=target)
    assert (result.path, result.outcome) == (target, Outcome.FETCHED)
    assert target.read_bytes() == big
    assert client.download("big.bin", save_as=target).outcome is Outcome.SKIPPED


def test_get_many_resumes_skips_and_fetches(
    repo: Path, big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    (repo / "small.txt").write_bytes(b"small\n")
    client.download("small.txt", downloads)  # there already: skipped
    length = interrupted_download(proxy, downloads)
    seen: list[TransferProgress] = []
    outcomes = client.get_many(
        ["small.txt", "big.bin", "nope.txt"], downloads, progress=seen.append
    )
    kinds = [getattr(outcome, "outcome", type(outcome).__name__) for outcome in outcomes]
    assert kinds == [Outcome.SKIPPED, Outcome.RESUMED, "NotFound"]
    assert (downloads / "big.bin").read_bytes() == big
    assert SIZE - length <= proxy.from_server <= SIZE - length + LINES
    assert seen[-1].done == SIZE
    assert seen[-1].files_total == 3
    assert seen[-1].bytes_done == SIZE - length


def files_of(folder: Path) -> dict[str, bytes]:
    return {
        path.relative_to(folder).as_posix(): path.read_bytes()
        for path in sorted(folder.rglob("*"))
        if path.is_file()
    }


@pytest.fixture
def tree(repo: Path) -> dict[str, bytes]:
    files = {
        "docs/a.txt": b"a\n",
        "docs/sub/b.txt": b"bb\n",
        "docs/sub/deeper/c.txt": b"ccc\n",
        "docsish/not-me.txt": b"a look-alike name\n",
        "top.txt": b"top\n",
    }
    for name, data in files.items():
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_bytes(data)
    return files


def test_download_tree_saves_a_folder_at_its_server_paths(
    tree: dict[str, bytes], client: Client, downloads: Path
) -> None:
    summary = client.download_tree("docs", downloads)
    assert files_of(downloads) == {k: v for k, v in tree.items() if k.startswith("docs/")}
    assert (summary.fetched, summary.skipped, summary.failed) == (3, 0, 0)
    assert summary.bytes == len(b"a\nbb\nccc\n")
    assert [change.action for change in summary.changes] == ["fetch"] * 3
    again = client.download_tree("docs/", downloads)
    assert (again.fetched, again.skipped, again.bytes, again.changes) == (0, 3, 0, [])


def test_a_folder_that_does_not_exist_gives_an_empty_summary(
    tree: dict[str, bytes], client: Client, downloads: Path
) -> None:
    for summary in (client.download_tree("nope", downloads), client.mirror("nope", downloads)):
        assert (summary.fetched, summary.skipped, summary.deleted, summary.bytes) == (0, 0, 0, 0)
        assert (summary.changes, summary.results) == ([], [])
    assert not downloads.exists()


def test_mirror_deletes_local_extras_only_when_asked(
    tree: dict[str, bytes], client: Client, tmp_path: Path
) -> None:
    copy = tmp_path / "copy"
    first = client.mirror("docs", copy)
    wanted = {k.removeprefix("docs/"): v for k, v in tree.items() if k.startswith("docs/")}
    assert files_of(copy) == wanted
    (copy / "extra.txt").write_bytes(b"mine\n")
    (copy / "gone" / "deep").mkdir(parents=True)
    (copy / "gone" / "deep" / "old.txt").write_bytes(b"old\n")
    (copy / ".hidden").write_bytes(b"never deleted\n")
    (copy / ".cache").mkdir()
    (copy / ".cache" / "x").write_bytes(b"never deleted\n")
    (copy / "a.txt").write_bytes(b"changed here\n")
    kept = client.mirror("docs", copy)
    assert (kept.deleted, kept.replaced, kept.skipped) == (0, 1, 2)
    assert (copy / "extra.txt").exists()
    changes: list[str] = []
    summary = client.mirror(
        "docs", copy, delete=True, on_change=lambda change: changes.append(change.action)
    )
    assert (summary.deleted, summary.skipped, summary.fetched) == (2, 3, 0)
    assert sorted(c.local.name for c in summary.changes if c.action == "delete") == [
        "extra.txt",
        "old.txt",
    ]
    assert changes == [change.action for change in summary.changes]
    assert files_of(copy) == wanted | {
        ".hidden": b"never deleted\n",
        ".cache/x": b"never deleted\n",
    }
    assert not (copy / "gone").exists()  # the folders the deletions left empty
    assert first.fetched == 3


def test_a_dry_run_changes_nothing(tree: dict[str, bytes], client: Client, tmp_path: Path) -> None:
    copy = tmp_path / "copy"
    (copy / "sub").mkdir(parents=True)
    (copy / "sub" / "b.txt").write_bytes(b"xx\n")  # the same size, other bytes: replaced
    (copy / "extra.txt").write_bytes(b"mine\n")

    def snapshot() -> list[tuple[str, int, int, bytes]]:
        return [
            (
                path.relative_to(copy).as_posix(),
                path.stat().st_mtime_ns,
                path.stat().st_ino,
                path.read_bytes() if path.is_file() else b"",
            )
            for path in sorted(copy.rglob("*"))
        ]

    before = snapshot()
    summary = client.mirror("docs", copy, delete=True, dry_run=True)
    assert snapshot() == before
    assert sorted((c.action, c.path) for c in summary.changes) == [
        ("delete", ""),
        ("fetch", "docs/a.txt"),
        ("fetch", "docs/sub/deeper/c.txt"),
        ("replace", "docs/sub/b.txt"),
    ]
    assert (summary.bytes, summary.results) == (0, [])


def test_a_second_mirror_of_an_unchanged_tree_hashes_nothing(
    repo: Path, server: ServerThread, tmp_path: Path
) -> None:
    for index in range(300):
        (repo / "many" / f"{index % 7}").mkdir(parents=True, exist_ok=True)
        (repo / "many" / f"{index % 7}" / f"{index}.txt").write_bytes(b"%d\n" % index)
    copy = tmp_path / "copy"
    with Client(HOST, server.port, timeout=10) as first:
        assert first.mirror("many", copy).fetched == 300
    with Client(HOST, server.port, timeout=10) as second:  # a new process would do the same
        summary = second.mirror("many", copy, delete=True)
        assert second.local_digests.misses == 0  # every digest from the cache on disk
    assert (summary.skipped, summary.fetched, summary.deleted, summary.bytes) == (300, 0, 0, 0)


def test_an_unusable_cache_folder_is_no_failure(
    big: bytes, server: ServerThread, tmp_path: Path
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_bytes(b"")
    with Client(HOST, server.port, timeout=10, cache_dir=blocker / "cache") as client:
        client.download("big.bin", tmp_path / "dl")
        assert client.download("big.bin", tmp_path / "dl").outcome is Outcome.SKIPPED


def test_a_tree_costs_one_mkdir_a_folder_and_one_lstat_a_file(
    repo: Path, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for index in range(40):
        (repo / "t" / f"d{index % 2}").mkdir(parents=True, exist_ok=True)
        (repo / "t" / f"d{index % 2}" / f"{index}.txt").write_bytes(b"%d\n" % index)
    copy = tmp_path / "copy"
    made: list[Path] = []
    looked: list[str] = []
    mkdir, lstat = Path.mkdir, os.lstat

    def counting_mkdir(self: Path, *args: object, **kwargs: object) -> None:
        made.append(self)
        mkdir(self, *args, **kwargs)  # type: ignore[arg-type]

    def counting_lstat(path: object, *args: object, **kwargs: object) -> os.stat_result:
        # The destinations only (the partial's own check after its lock is apart).
        if str(path).startswith(str(copy)) and not Path(str(path)).name.startswith("."):
            looked.append(str(path))
        return lstat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Path, "mkdir", counting_mkdir)
    monkeypatch.setattr(os, "lstat", counting_lstat)
    assert client.mirror("t", copy).fetched == 40
    # Not one per file: once a folder (pathlib's parents=True retries a folder
    # after making its parent, so the first one is asked twice).
    assert sorted(set(made)) == [copy, copy / "d0", copy / "d1"]
    assert len(made) <= 4
    # Nothing there yet: the folder listing says so. Each folder is looked at
    # once, to tell it is no symbolic link out of the destination.
    folders = [str(copy / "d0"), str(copy / "d1")]
    assert looked == folders
    looked.clear()
    summary = client.mirror("t", copy)
    assert summary.skipped == 40
    assert set(folders) <= set(looked)
    assert len(looked) == len(set(looked)) == 40 + 2  # one lstat a file, one a folder


def test_a_record_without_a_digest_is_resumed_after_a_hash(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    # A cold GET (FILE <size> -) cut short never learnt the digest: HASH tells it.
    dest = downloads / "big.bin"
    downloads.mkdir()
    partial_path(dest).write_bytes(big[: 5 * MiB])
    new_record(f"{HOST}:{proxy.port}", "big.bin", SIZE, None).save(dest)
    proxy.reset()
    result = client.download("big.bin", downloads)
    assert (result.outcome, result.resumed_from) == (Outcome.RESUMED, 5 * MiB)
    assert proxy.from_server <= SIZE - 5 * MiB + LINES
    assert dest.read_bytes() == big


def test_a_record_without_a_digest_meets_a_rewritten_file(
    big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    dest = downloads / "big.bin"
    downloads.mkdir()
    partial_path(dest).write_bytes(os.urandom(5 * MiB))  # of another file of the same size
    new_record(f"{HOST}:{proxy.port}", "big.bin", SIZE, None).save(dest)
    result = client.download("big.bin", downloads)
    assert (result.outcome, result.restarted) == (Outcome.FETCHED, DAMAGED_PARTIAL)
    assert dest.read_bytes() == big


def test_a_file_changed_between_hash_and_range_starts_over_once(
    repo: Path,
    big: bytes,
    proxy: CountingProxy,
    client: Client,
    downloads: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    interrupted_download(proxy, downloads)
    new = os.urandom(SIZE)
    ask = Client._requests

    def rewrite_first(self: Client, plan: FilePlan) -> list[Request]:
        requests = ask(self, plan)
        if isinstance(requests[0], Range):  # HASH said unchanged; now it changes
            (repo / "big.bin").write_bytes(new)
        return requests

    monkeypatch.setattr(Client, "_requests", rewrite_first)
    result = client.download("big.bin", downloads)  # RANGE: ERR changed, then GET
    assert (result.outcome, result.restarted) == (Outcome.FETCHED, CHANGED_ON_SERVER)
    assert (downloads / "big.bin").read_bytes() == new
    assert hidden(downloads) == []


def test_a_dry_run_leaves_partials_as_they_are(
    repo: Path,
    big: bytes,
    proxy: CountingProxy,
    client: Client,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (repo / "d").mkdir()
    (repo / "d" / "big.bin").write_bytes(big)
    (repo / "d" / "other.bin").write_bytes(big[::-1])
    copy = tmp_path / "copy"
    copy.mkdir()
    server = f"{HOST}:{proxy.port}"
    # One partial to resume (after "another boot": it would be cut to 1 MiB), one
    # whose record names a digest the server's file no longer has.
    partial_path(copy / "big.bin").write_bytes(big[: 3 * MiB])
    new_record(server, "d/big.bin", SIZE, hashlib.sha256(big).hexdigest()).save(copy / "big.bin")
    fields = json.loads(record_path(copy / "big.bin").read_text())
    record_path(copy / "big.bin").write_text(json.dumps(fields | {"durable": MiB, "boot": "old"}))
    partial_path(copy / "other.bin").write_bytes(b"x" * MiB)
    new_record(server, "d/other.bin", SIZE, "0" * 64).save(copy / "other.bin")
    before = {path.name: path.read_bytes() for path in copy.iterdir()}
    summary = client.mirror("d", copy, dry_run=True)
    assert {path.name: path.read_bytes() for path in copy.iterdir()} == before
    assert sorted((c.action, c.path) for c in summary.changes) == [
        ("fetch", "d/other.bin"),
        ("resume", "d/big.bin"),
    ]
    done = client.mirror("d", copy)
    assert sorted(
        (r.path.name, r.outcome, r.resumed_from, r.restarted)
        for r in done.results
        if not isinstance(r, Exception)
    ) == [
        ("big.bin", Outcome.RESUMED, MiB, None),
        ("other.bin", Outcome.FETCHED, 0, CHANGED_ON_SERVER),
    ]
    assert files_of(copy) == {"big.bin": big, "other.bin": big[::-1]}


def test_a_lost_connection_keeps_the_partial_and_its_record(
    fake_server: Callable[..., FakeServer], downloads: Path
) -> None:
    body = os.urandom(SIZE)
    sha = hashlib.sha256(body).hexdigest()
    welcome = b"WELCOME Client01 fakedock 0.0 proto=2\n"

    def cut_at_half(peer: Peer) -> None:
        peer.send(b"NAME Client01\n")
        assert (peer.line() or "").startswith("HELLO")
        peer.send(welcome)
        assert peer.line() == "GET big.bin"
        peer.send(f"FILE {SIZE} {sha} big.bin\n".encode() + body[: SIZE // 2])
        peer.sock.shutdown(socket.SHUT_RDWR)  # the server is gone mid-body

    fake = fake_server(cut_at_half)
    with Client(HOST, fake.port, timeout=10) as client, pytest.raises(ConnectionLost):
        client.download("big.bin", downloads)
    # All that came, the buffer being filled when the connection broke too.
    assert partial_path(downloads / "big.bin").read_bytes() == body[: SIZE // 2]
    record = load_record(downloads / "big.bin")
    assert record is not None
    assert (record.server, record.size, record.sha256) == (f"{HOST}:{fake.port}", SIZE, sha)


def test_pipelined_requests_go_out_in_few_sends(
    repo: Path, client: Client, downloads: Path
) -> None:
    names = [f"{'n' * 60}{index}.txt" for index in range(400)]  # lines past the budget
    for name in names:
        (repo / name).write_bytes(name.encode())
    sends: list[int] = []
    send = client._link.send

    def counting(data: bytes) -> None:
        sends.append(len(data))
        send(data)

    client._link.send = counting  # type: ignore[method-assign]
    outcomes = client.get_many(names, downloads)
    assert all(getattr(outcome, "outcome", None) is Outcome.FETCHED for outcome in outcomes)
    # Topped up by half the budget at a time, not one small send per reply.
    assert len(sends) <= 20, sends
    assert max(sends) <= PIPELINE_BYTES


# -- the hashed prefix: a resume goes on from the record's SHA-256 state ---------------


@pytest.fixture
def small_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    """Checkpoints and pieces small enough that a 12 MiB download's record holds a hashed prefix."""
    monkeypatch.setattr(filedock.client.resume, "CHECKPOINT_BYTES", MiB)
    monkeypatch.setattr(filedock.client.ledger, "PIECE_BYTES", MiB)


def hashed_prefix_of(dest: Path) -> dict[str, Any]:
    fields = json.loads(record_path(dest).read_text())
    assert fields["version"] == 2
    hashed: dict[str, Any] = fields["hashed"]
    assert hashed is not None, "the interrupted download's record holds a hashed prefix"
    return hashed


def resumed_hashing_from(
    client: Client, downloads: Path, big: bytes, monkeypatch: pytest.MonkeyPatch
) -> tuple[DownloadResult, int]:
    """Download big.bin again, verified; the result, and the first byte the
    resume read back from the partial to hash."""
    starts: list[int] = []
    hash_back = filedock.client.download.hash_back

    def noting(fd: int, start: int, end: int, digest: Any) -> bool:
        starts.append(start)
        return hash_back(fd, start, end, digest)

    monkeypatch.setattr(filedock.client.download, "hash_back", noting)
    result = client.download("big.bin", downloads)
    assert (downloads / "big.bin").read_bytes() == big
    assert starts, "a resume hashes back at least the bytes after the hashed prefix"
    return result, min(starts)


def hide_libcrypto(monkeypatch: pytest.MonkeyPatch) -> None:
    """As where libcrypto cannot be loaded: no SHA-256 state, no piece tags."""
    monkeypatch.setattr(sha256state, "_library", lambda: None)
    monkeypatch.setattr(piecetag, "_library", lambda: None)


needs_state = pytest.mark.skipif(not filedock.client.ledger.available(), reason="no libcrypto")


@needs_state
@pytest.mark.usefixtures("small_checkpoints")
def test_a_resume_hashes_only_what_follows_the_hashed_prefix(
    big: bytes,
    proxy: CountingProxy,
    client: Client,
    downloads: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    length = interrupted_download(proxy, downloads)
    hashed = hashed_prefix_of(downloads / "big.bin")["length"]
    assert 0 < hashed <= length
    result, first_hashed_back = resumed_hashing_from(client, downloads, big, monkeypatch)
    assert (result.outcome, result.resumed_from, result.restarted) == (
        Outcome.RESUMED,
        length,
        None,
    )
    assert first_hashed_back == hashed  # never from the first byte
    assert SIZE - length <= proxy.from_server <= SIZE - length + LINES


@needs_state
@pytest.mark.usefixtures("small_checkpoints")
@pytest.mark.parametrize("where", [0, 1 / 3, 0.999])
def test_a_flipped_byte_in_the_hashed_prefix_ends_in_a_verified_file(
    where: float, big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    length = interrupted_download(proxy, downloads)
    hashed = hashed_prefix_of(downloads / "big.bin")["length"]
    at = int(where * hashed)  # inside the part its CRC-32s cover, never hashed again
    with partial_path(downloads / "big.bin").open("r+b") as file:
        file.seek(at)
        byte = file.read(1)
        file.seek(at)
        file.write(bytes([byte[0] ^ 0x10]))
    result = client.download("big.bin", downloads)
    assert (result.outcome, result.restarted) == (Outcome.FETCHED, DAMAGED_PARTIAL)
    assert (downloads / "big.bin").read_bytes() == big
    assert proxy.from_server <= (SIZE - length) + SIZE + 2 * LINES
    assert hidden(downloads) == []


@needs_state
@pytest.mark.usefixtures("small_checkpoints")
@pytest.mark.parametrize("how", ["state word", "state tail", "piece tag", "shorter, same pieces"])
def test_a_tampered_hashed_prefix_never_ends_in_a_wrong_file(
    how: str, big: bytes, proxy: CountingProxy, client: Client, downloads: Path
) -> None:
    interrupted_download(proxy, downloads)
    dest = downloads / "big.bin"
    fields = json.loads(record_path(dest).read_text())
    hashed = fields["hashed"]
    assert hashed is not None
    if how == "state word":
        hashed["state"] = f"{int(hashed['state'][:8], 16) ^ 1:08x}" + hashed["state"][8:]
    elif how == "state tail":  # a length off the block boundary, with a made-up tail
        hashed["length"] -= 1
        hashed["state"] = hashed["state"][:64] + "00" * 63
        hashed["pieces"][-1][0] -= 1
    elif how == "piece tag":
        hashed["pieces"][0][1] = "0" * 32
    else:  # the whole prefix's state, claimed for its first piece only
        hashed["pieces"] = hashed["pieces"][:1]
        hashed["length"] = hashed["pieces"][0][0]
    record_path(dest).write_text(json.dumps(fields))
    result = client.download("big.bin", downloads)
    assert dest.read_bytes() == big
    assert result.sha256 == hashlib.sha256(big).hexdigest()
    assert (result.outcome, result.restarted) == (Outcome.FETCHED, DAMAGED_PARTIAL)
    assert hidden(downloads) == []


@pytest.mark.usefixtures("small_checkpoints")
@pytest.mark.parametrize("where", ["interrupted", "resumed", "both"])
def test_without_libcrypto_a_resume_hashes_the_prefix_again(
    where: str,
    big: bytes,
    proxy: CountingProxy,
    client: Client,
    downloads: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if where in ("interrupted", "both"):
        hide_libcrypto(monkeypatch)
    length = interrupted_download(proxy, downloads)
    fields = json.loads(record_path(downloads / "big.bin").read_text())
    assert (fields["hashed"] is None) == (
        where != "resumed" or not filedock.client.ledger.available()
    )
    if where == "resumed":
        hide_libcrypto(monkeypatch)
    result, first_hashed_back = resumed_hashing_from(client, downloads, big, monkeypatch)
    assert (result.outcome, result.resumed_from) == (Outcome.RESUMED, length)
    assert first_hashed_back == 0


@pytest.mark.usefixtures("small_checkpoints")
def test_a_record_of_the_first_version_is_resumed_by_hashing_again(
    big: bytes,
    proxy: CountingProxy,
    client: Client,
    downloads: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    length = interrupted_download(proxy, downloads)
    dest = downloads / "big.bin"
    fields = json.loads(record_path(dest).read_text())
    del fields["hashed"]
    fields["version"] = 1  # as the version before wrote it
    record_path(dest).write_text(json.dumps(fields))
    result, first_hashed_back = resumed_hashing_from(client, downloads, big, monkeypatch)
    assert (result.outcome, result.resumed_from) == (Outcome.RESUMED, length)
    assert first_hashed_back == 0


def test_a_resumes_record_claims_no_more_than_the_disk_has(
    big: bytes,
    proxy: CountingProxy,
    client: Client,
    downloads: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Until its first checkpoint, a resume's record keeps the durable length it
    had: the partial's end, written by the killed download, may not be on the
    disk yet, and after a power cut only the durable length is trusted."""
    dest = interrupted_with_durable(proxy, downloads, MiB)

    def disk_gone(fd: int) -> None:
        raise OSError(5, "Input/output error")  # no checkpoint moves the record on

    monkeypatch.setattr(os, "fdatasync", disk_gone)

    def stop(moving: TransferProgress) -> None:
        if moving.done >= SIZE - MiB:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        client.download("big.bin", downloads, progress=stop)
    record = load_record(dest)
    assert record is not None
    assert record.durable == MiB


def test_a_download_received_whole_does_not_wait_for_the_disk(
    big: bytes, client: Client, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    disk_done = threading.Event()
    syncing = threading.Event()

    def slow_fdatasync(fd: int) -> None:  # a disk far slower than the network
        syncing.set()
        disk_done.wait(30)

    monkeypatch.setattr(filedock.client.resume, "CHECKPOINT_BYTES", MiB)
    monkeypatch.setattr(filedock.client.resume.os, "fdatasync", slow_fdatasync)
    done = threading.Event()

    def fetch() -> None:
        client.get("big.bin", tmp_path / "out")
        done.set()

    fetching = threading.Thread(target=fetch, daemon=True)
    fetching.start()
    try:
        wait_until(syncing.is_set, timeout=10)
        wait_until(done.is_set, timeout=10)  # saved while the sync still writes
        assert (tmp_path / "out" / "big.bin").read_bytes() == big
        assert not record_path(tmp_path / "out" / "big.bin").exists()
    finally:
        disk_done.set()
        fetching.join(timeout=30)
