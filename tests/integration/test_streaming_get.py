"""v2's GET of a file the server never hashed: the body at once, its digest after it.

``FILE <size> - <path>``, the body, then ``DIGEST <sha256>`` (or ``ERR
changed``); a known digest keeps v1's header; a v1 greeting never sees ``-``.
Against an in-process server (port 0), on the wire and through the library.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import filedock.server.repository
from filedock.client.client import Client, TransferProgress
from filedock.client.connection import client_context
from filedock.errors import Changed, IntegrityError, TooLarge
from tests.conftest import SAMPLE
from tests.integration.test_files import MiB, files_under, make_big, server_log
from tests.support import HOST, LineConn, ServerThread, wait_until
from tests.support.fake_server import FakeServer, Peer, Script

SAMPLE_SHA = hashlib.sha256(SAMPLE).hexdigest()
# Far over what the sockets' buffers hold: a client that stops reading holds
# the server in the middle of the body.
BIG_SIZE = 48 * MiB


@pytest.fixture
def log(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> Iterator[pytest.LogCaptureFixture]:
    """The server's log lines, captured."""
    with server_log(caplog, monkeypatch) as captured:
        yield captured


@pytest.fixture
def cacheable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the test just wrote may be cached at once (no racy window)."""
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)


@pytest.fixture
def big(repo: Path) -> tuple[Path, str]:
    path = repo / "big.bin"
    return path, make_big(path, BIG_SIZE)


def v2(server: ServerThread, timeout: float = 10.0) -> LineConn:
    conn = LineConn(server.port, timeout=timeout)
    name = conn.read_line().removeprefix("NAME ")
    assert conn.request(f"HELLO {name} proto=2").endswith(" proto=2")
    return conn


# A transfer line's seconds and rate.
SECONDS = r"\d+\.\d{3}s"
RATE = r"\d+(\.\d)? [KMGT]?i?B/s"


def lines(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [m for r in list(caplog.records) if (m := r.getMessage()).startswith(start)]


def hold_hashing(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Make the server's hashings wait until the event returned is set."""
    release = threading.Event()
    real_hash_fd = filedock.server.repository.hash_fd

    def held(*args: Any) -> str:
        assert release.wait(30), "the test never released the hashing"
        return real_hash_fd(*args)

    monkeypatch.setattr(filedock.server.repository, "hash_fd", held)
    # Every hashing in a worker, where it can be held (none on the loop).
    monkeypatch.setattr(filedock.server.repository, "INLINE_HASH_BYTES", 0)
    return release


# -- the wire ----------------------------------------------------------------------------


def test_a_cold_get_sends_the_body_first_and_its_digest_after(
    make_server: Callable[..., ServerThread], cacheable: None
) -> None:
    server = make_server()
    with v2(server) as conn:
        assert conn.request("GET sample.txt") == f"FILE {len(SAMPLE)} - sample.txt"
        assert conn.read_exactly(len(SAMPLE)) == SAMPLE
        assert conn.read_line() == f"DIGEST {SAMPLE_SHA}"
        assert conn.request("PING") == "PONG"
        # Learned by that send: the next GET is v1's, digest and all.
        assert conn.request("GET sample.txt") == f"FILE {len(SAMPLE)} {SAMPLE_SHA} sample.txt"
        assert conn.read_exactly(len(SAMPLE)) == SAMPLE
        assert conn.request("PING") == "PONG"
    assert server.statistics().hashings == 1


def test_a_bare_file_name_is_sent_the_same_way(
    make_server: Callable[..., ServerThread],
) -> None:
    with v2(make_server()) as conn:
        assert conn.request("sample.txt") == f"FILE {len(SAMPLE)} - sample.txt"
        assert conn.read_exactly(len(SAMPLE)) == SAMPLE
        assert conn.read_line() == f"DIGEST {SAMPLE_SHA}"
        assert conn.request("no such file") == "ACK no such file"


def test_a_v1_client_never_sees_a_header_without_its_digest(
    make_server: Callable[..., ServerThread],
) -> None:
    with LineConn(make_server().port) as conn:
        conn.greet()  # no proto=2
        assert conn.request("GET sample.txt") == f"FILE {len(SAMPLE)} {SAMPLE_SHA} sample.txt"
        assert conn.read_exactly(len(SAMPLE)) == SAMPLE
        assert conn.request("sample.txt") == f"FILE {len(SAMPLE)} {SAMPLE_SHA} sample.txt"
        assert conn.read_exactly(len(SAMPLE)) == SAMPLE
        assert conn.request("PING") == "PONG"


def test_the_body_does_not_wait_for_the_hashing_and_two_clients_hash_once(
    make_server: Callable[..., ServerThread],
    big: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    cacheable: None,
) -> None:
    path, digest = big
    release = hold_hashing(monkeypatch)
    server = make_server()
    first, second = v2(server, timeout=30), v2(server, timeout=30)
    try:
        for conn in (first, second):
            assert conn.request("GET big.bin") == f"FILE {BIG_SIZE} - big.bin"
        # Every byte of both bodies comes while the one hashing is still held.
        for conn in (first, second):
            body = hashlib.sha256()
            for _ in range(BIG_SIZE // MiB):
                body.update(conn.read_exactly(MiB))
            assert body.hexdigest() == digest
        assert server.statistics().hash_workers_busy == 1
        release.set()
        for conn in (first, second):
            assert conn.read_line() == f"DIGEST {digest}"
            assert conn.request("PING") == "PONG"
    finally:
        release.set()
        first.close()
        second.close()
    assert server.statistics().hashings == 1


def test_a_file_shrunk_during_a_cold_send_is_padded_and_changed(
    make_server: Callable[..., ServerThread], big: tuple[Path, str]
) -> None:
    path, _ = big
    with v2(make_server(), timeout=30) as conn:
        assert conn.request("GET big.bin") == f"FILE {BIG_SIZE} - big.bin"
        conn.read_exactly(MiB)
        os.truncate(path, MiB)
        # The stream stays in step: the announced size, then the reason.
        conn.read_exactly(BIG_SIZE - MiB, timeout=30)
        assert conn.read_line().startswith("ERR changed ")
        assert conn.request("PING") == "PONG"


def test_a_cold_send_cut_short_is_still_hashed_and_cached(
    make_server: Callable[..., ServerThread],
    big: tuple[Path, str],
    cacheable: None,
    log: pytest.LogCaptureFixture,
) -> None:
    _, digest = big
    server = make_server()
    conn = v2(server)
    assert conn.request("GET big.bin") == f"FILE {BIG_SIZE} - big.bin"
    conn.read_exactly(MiB)
    conn.reset()
    wait_until(lambda: bool(lines(log, "Sent file 'big.bin'")), timeout=10)
    wait_until(lambda: server.statistics().hash_cache_entries == 1, timeout=30)
    assert server.statistics().hashings == 1
    with v2(server) as again:  # a resume asks HASH first: answered from the cache
        assert again.request("HASH big.bin").startswith(f"HASH {BIG_SIZE} {digest} ")
        assert again.request(f"RANGE {BIG_SIZE} {digest} big.bin").startswith("PART ")
    assert server.statistics().hashings == 1
    [cut] = [line for line in lines(log, "Sent file 'big.bin'") if " to Client01 " in line]
    head = rf"^Sent file 'big\.bin' size={BIG_SIZE} to Client01 {SECONDS}: "
    assert re.search(head + rf"\d+ of {BIG_SIZE} bytes at {RATE}, cut short: .+$", cut), cut


# -- the library --------------------------------------------------------------------------


def test_the_library_checks_a_cold_file_against_the_digest_after_it(
    make_server: Callable[..., ServerThread],
    big: tuple[Path, str],
    downloads: Path,
    log: pytest.LogCaptureFixture,
) -> None:
    _, digest = big
    with Client(HOST, make_server().port, timeout=30) as client:
        result = client.download("big.bin", downloads)
        assert (result.size, result.sha256) == (BIG_SIZE, digest)
        assert hashlib.sha256(result.path.read_bytes()).hexdigest() == digest
        assert client.ping() >= 0  # still in step
        name = client.name
    wait_until(lambda: bool(lines(log, "Sent file 'big.bin'")), timeout=5)
    # The digest, known only at the end, is logged then.
    [sent] = lines(log, "Sent file 'big.bin'")
    expected = f"Sent file 'big.bin' size={BIG_SIZE} sha256={digest[:12]}… to {name} "
    rest = rf"{SECONDS}: {BIG_SIZE} bytes at {RATE}, completed"
    assert re.fullmatch(re.escape(expected) + rest, sent), sent


def test_the_library_keeps_nothing_of_a_file_rewritten_during_a_cold_send(
    make_server: Callable[..., ServerThread],
    big: tuple[Path, str],
    downloads: Path,
    log: pytest.LogCaptureFixture,
) -> None:
    path, _ = big
    rewritten = threading.Event()

    def rewrite_at_first_bytes(_: TransferProgress) -> None:
        # The client reads no more until the file is rewritten: most of the
        # body is sent after the change, and it ends before the check.
        if not rewritten.is_set():
            with path.open("r+b") as file:  # same size, same inode, other bytes
                file.write(os.urandom(MiB))
            rewritten.set()

    with Client(HOST, make_server().port, timeout=30) as client:
        with pytest.raises(Changed, match="changed while it was sent"):
            client.download("big.bin", downloads, progress=rewrite_at_first_bytes)
        assert client.ping() >= 0  # ERR changed leaves the stream in step
    assert rewritten.is_set()
    assert files_under(downloads) == []  # neither big.bin nor a partial
    wait_until(lambda: bool(lines(log, "Sent file 'big.bin'")), timeout=5)
    [changed] = lines(log, "Sent file 'big.bin'")
    assert re.search(rf"{SECONDS}: {BIG_SIZE} bytes at {RATE}, changed during the send$", changed)


def test_a_resume_is_logged_with_its_offset(
    make_server: Callable[..., ServerThread],
    cacheable: None,
    log: pytest.LogCaptureFixture,
) -> None:
    with v2(make_server()) as conn:
        line = conn.request(f"RANGE 2 {SAMPLE_SHA} sample.txt")
        assert line == f"PART 2 {len(SAMPLE)} {SAMPLE_SHA} sample.txt"
        assert conn.read_exactly(len(SAMPLE) - 2) == SAMPLE[2:]
        assert conn.request("PING") == "PONG"
    [sent] = lines(log, "Sent file 'sample.txt'")
    head = rf"size=6 sha256={SAMPLE_SHA[:12]}… to Client\d+ {SECONDS}: "
    assert re.search(head + rf"4 bytes at {RATE}, resumed from 2$", sent), sent


def test_a_cold_file_over_tls_is_checked_against_its_digest(
    tls_server: ServerThread, ca: Any, downloads: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The file is new: settled at once, the HASH the library sends after the GET
    # (for the mtime) is answered from the digest the cold send learned.
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)
    tls = client_context()
    ca.configure_trust(tls)
    with Client(HOST, tls_server.port, timeout=10, tls=tls) as client:
        result = client.download("sample.txt", downloads)
        assert (result.sha256, result.path.read_bytes()) == (SAMPLE_SHA, SAMPLE)
        assert client.ping() >= 0
    assert tls_server.statistics().hashings == 1


# -- a server whose trailer lies ------------------------------------------------------------


def cold_reply(trailer: bytes) -> Script:
    def script(peer: Peer) -> None:
        peer.greet()
        assert peer.requested() == "sample.txt"
        peer.send(f"FILE {len(SAMPLE)} - sample.txt\n".encode() + SAMPLE + trailer)
        peer.serve_rest()

    return script


@pytest.mark.parametrize(
    ("trailer", "error"),
    [
        (f"DIGEST {'0' * 64}\n".encode(), IntegrityError),
        (b"ERR changed the file changed while it was sent\n", Changed),
    ],
    ids=["wrong digest", "changed"],
)
def test_a_trailer_that_does_not_vouch_for_the_body_keeps_nothing(
    fake_server: Callable[[Script], FakeServer],
    downloads: Path,
    trailer: bytes,
    error: type[Exception],
) -> None:
    server = fake_server(cold_reply(trailer))
    with Client(HOST, server.port, timeout=5) as client:
        with pytest.raises(error):
            client.download("sample.txt", downloads)
        assert client.ping() >= 0  # the trailer was read: still in step
    assert files_under(downloads) == []


def test_a_digest_only_on_disk_follows_the_body_without_a_hashing(
    make_server: Callable[..., ServerThread], repo: Path, tmp_path: Path, cacheable: None
) -> None:
    # The store is not asked before the body (that would take a worker): its
    # digest is the trailer, and the file is not read a second time. (A file
    # past INLINE_HASH_BYTES: a smaller one is hashed again, never stored.)
    body = b"m" * (filedock.server.repository.INLINE_HASH_BYTES + 1)
    (repo / "medium.bin").write_bytes(body)
    digest = hashlib.sha256(body).hexdigest()
    state = str(tmp_path / "state")
    first = make_server(state_dir=state)
    with v2(first) as conn:
        assert conn.request("HASH medium.bin").startswith(f"HASH {len(body)} {digest} ")
    first.stop()
    again = make_server(state_dir=state)  # a restart: memory is empty, the store is not
    with v2(again) as conn:
        assert conn.request("GET medium.bin") == f"FILE {len(body)} - medium.bin"
        assert conn.read_exactly(len(body)) == body
        assert conn.read_line() == f"DIGEST {digest}"
    stats = again.statistics()
    assert (stats.hashings, stats.hash_cache_hits) == (0, 1)


def test_a_cold_body_refused_before_it_is_written_leaves_the_stream_in_step(
    make_server: Callable[..., ServerThread], downloads: Path
) -> None:
    with Client(HOST, make_server().port, timeout=10, max_size=3) as client:
        with pytest.raises(TooLarge):
            client.download("sample.txt", downloads)
        # The body was read and dropped, and its DIGEST too.
        assert not client.closed
        assert client.ping() >= 0
    assert files_under(downloads) == []


def test_a_client_gone_before_the_digest_is_logged_as_cut_short(
    make_server: Callable[..., ServerThread],
    big: tuple[Path, str],
    monkeypatch: pytest.MonkeyPatch,
    cacheable: None,
    log: pytest.LogCaptureFixture,
) -> None:
    release = hold_hashing(monkeypatch)
    server = make_server()
    try:
        conn = v2(server, timeout=30)
        assert conn.request("GET big.bin") == f"FILE {BIG_SIZE} - big.bin"
        for _ in range(BIG_SIZE // MiB):
            conn.read_exactly(MiB)
        conn.reset()  # the whole body came; the DIGEST waits for the hashing
        wait_until(lambda: bool(lines(log, "Sent file 'big.bin'")), timeout=10)
    finally:
        release.set()
    [cut] = lines(log, "Sent file 'big.bin'")
    assert f": {BIG_SIZE} bytes at " in cut, cut  # the whole body went out
    assert cut.endswith("cut short: the connection ended before the DIGEST"), cut
    wait_until(lambda: server.statistics().hash_cache_entries == 1, timeout=30)
