"""Large bodies over TLS: whole and verified, and a file that shrinks meanwhile still says so."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import filedock.server.repository
from filedock.client.client import Client
from filedock.client.connection import client_context
from filedock.errors import Changed, ConnectionLost
from tests.integration.test_files import MiB, make_big
from tests.support import HOST, ServerThread

# Far more than the sockets and the TLS layer hold: the server is still
# reading the file when the client has its first megabyte.
SIZE = 48 * MiB


@pytest.fixture
def big(repo: Path) -> tuple[Path, str]:
    path = repo / "big.bin"
    return path, make_big(path, SIZE)


@pytest.fixture
def cacheable(monkeypatch: pytest.MonkeyPatch) -> None:
    """A file the test just wrote may be cached at once (no racy window)."""
    monkeypatch.setattr(filedock.server.repository, "RACY_NS", 0)


def tls_client(server: ServerThread, ca_file: str) -> Client:
    return Client(HOST, server.port, timeout=30, tls=client_context(ca_file))


def test_a_large_body_arrives_whole_and_verified(
    tls_server: ServerThread, ca_file: str, big: tuple[Path, str], tmp_path: Path, cacheable: None
) -> None:
    path, digest = big
    with tls_client(tls_server, ca_file) as client:
        for _ in range(2):  # sent while hashed, then with the digest in its header
            with client.open("big.bin") as remote:
                assert remote.read() == path.read_bytes()
                assert remote.verified
                assert remote.sha256 == digest
        client.get("big.bin", tmp_path / "out")
    assert (tmp_path / "out" / "big.bin").read_bytes() == path.read_bytes()


def test_a_file_shrunk_during_a_cold_tls_send_is_changed_and_in_step(
    tls_server: ServerThread, ca_file: str, big: tuple[Path, str]
) -> None:
    path, _ = big
    with tls_client(tls_server, ca_file) as client:
        with client.open("big.bin") as remote:
            assert remote.sha256 is None  # never hashed: the digest comes after the body
            remote.read(MiB)
            os.truncate(path, MiB)
            with pytest.raises(Changed):
                remote.read()
        assert client.ping() < 30  # padded to the size announced: still in step


def test_a_file_shrunk_during_a_hashed_tls_send_cuts_the_connection(
    tls_server: ServerThread, ca_file: str, big: tuple[Path, str], cacheable: None
) -> None:
    path, digest = big
    with tls_client(tls_server, ca_file) as client:
        assert client.read("big.bin")  # hashed now: the next header has the digest
        with client.open("big.bin") as remote:
            assert remote.sha256 == digest
            remote.read(MiB)
            os.truncate(path, MiB)
            with pytest.raises(ConnectionLost):
                remote.read()


def stream_hashes() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "filedock-stream-hash")


def test_a_large_stream_hashes_beside_the_reading_and_leaves_no_thread(
    tls_server: ServerThread, ca_file: str, big: tuple[Path, str]
) -> None:
    path, digest = big
    before = stream_hashes()
    with tls_client(tls_server, ca_file) as client:
        with client.open("big.bin") as remote:
            remote.read(MiB)
            assert stream_hashes() == before + 1  # hashing on its own thread
        assert stream_hashes() == before  # closed early: the rest drained, unhashed
        with client.open("big.bin") as remote:
            assert remote.read() == path.read_bytes()
            assert remote.verified
            assert stream_hashes() == before
