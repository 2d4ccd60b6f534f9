"""SHA-256 on a thread of its own: the same digest as hashlib's, whatever the pieces."""

from __future__ import annotations

import hashlib
import os
import threading

import pytest

from filedock.client import background_hash
from filedock.client.background_hash import BackgroundSha256


def hash_threads() -> int:
    return sum(1 for thread in threading.enumerate() if thread.name == "filedock-stream-hash")


@pytest.mark.parametrize("piece", [97, 1000, background_hash.BATCH, 3 * background_hash.BATCH + 7])
def test_the_digest_is_hashlib_s_whatever_the_pieces(piece: int) -> None:
    data = os.urandom(5 * background_hash.BATCH + 123)
    digest = BackgroundSha256()
    for start in range(0, len(data), piece):
        digest.update(memoryview(data)[start : start + piece])
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()  # asked twice: the same


def test_what_is_given_is_copied_so_the_caller_may_reuse_its_buffer() -> None:
    buffer = bytearray(b"a" * background_hash.BATCH)
    digest = BackgroundSha256()
    digest.update(buffer)
    buffer[:] = b"b" * len(buffer)  # before the thread may have hashed it
    digest.update(buffer)
    expected = hashlib.sha256(b"a" * len(buffer) + b"b" * len(buffer)).hexdigest()
    assert digest.hexdigest() == expected


def test_an_empty_stream_has_the_empty_digest() -> None:
    assert BackgroundSha256().hexdigest() == hashlib.sha256().hexdigest()


def test_stopped_or_finished_its_thread_is_gone() -> None:
    before = hash_threads()
    finished, stopped = BackgroundSha256(), BackgroundSha256()
    stopped.update(b"x" * (2 * background_hash.BATCH))
    assert hash_threads() == before + 2
    finished.hexdigest()
    stopped.stop()
    assert hash_threads() == before
    with pytest.raises(ValueError, match="stopped"):
        stopped.hexdigest()
    with pytest.raises(ValueError, match="finished"):
        stopped.update(b"y")
