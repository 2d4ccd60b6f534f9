"""SHA-256 whose state is saved and taken up again: always hashlib's digest."""

from __future__ import annotations

import hashlib
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from filedock.client import sha256state
from filedock.client.sha256state import INITIAL, HashState, Sha256

pytestmark = pytest.mark.skipif(
    not sha256state.available(), reason="no libcrypto with SHA256_* here: the fallback is tested"
)


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=700), cuts=st.lists(st.integers(0, 700), max_size=5))
def test_a_state_saved_anywhere_and_taken_up_gives_hashlibs_digest(
    data: bytes, cuts: list[int]
) -> None:
    digest = Sha256()
    done = 0
    for cut in sorted(min(cut, len(data)) for cut in cuts):
        digest.update(data[done:cut])
        state = digest.state()
        assert state.length == cut
        assert state.tail == data[cut - cut % 64 : cut]
        again = HashState.from_text(state.length, state.to_text())
        assert again == state
        digest = Sha256(again)  # a new process, from the record
        assert digest.hexdigest() == hashlib.sha256(data[:cut]).hexdigest()
        done = cut
    digest.update(data[done:])
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_large_buffers_split_at_random_places() -> None:
    data = os.urandom(9 * 1024 * 1024 + 13)
    view = memoryview(bytearray(data))  # writable, as the download's buffers are
    rng = random.Random(12)
    for _ in range(20):
        cut = rng.randrange(len(data))
        first = Sha256()
        first.update(view[:cut])
        second = Sha256(HashState.from_text(cut, first.state().to_text()))
        second.update(view[cut:])
        assert second.digest() == hashlib.sha256(data).digest()


def test_the_digest_can_be_read_on_the_way_and_read_only_data_hashed() -> None:
    digest = Sha256()
    digest.update(b"abc")  # bytes: read-only
    assert digest.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    digest.update(memoryview(b"def"))
    assert digest.hexdigest() == hashlib.sha256(b"abcdef").hexdigest()
    digest.update(b"")
    assert digest.state().length == 6


def test_the_initial_state_is_sha256s() -> None:
    assert Sha256().state() == INITIAL
    assert Sha256(INITIAL).hexdigest() == hashlib.sha256(b"").hexdigest()


@pytest.mark.parametrize(
    ("length", "text"),
    [
        (0, ""),  # too short
        (0, "0" * 63),
        (1, "0" * 64),  # no tail byte for the odd byte
        (0, "0" * 64 + "00"),  # a tail that cannot be there
        (0, "g" * 64),
        (0, " " + "0" * 63),  # fromhex skips spaces: refused all the same
        (-1, "0" * 64),
    ],
)
def test_a_state_text_that_cannot_be_one_is_none(length: int, text: str) -> None:
    assert HashState.from_text(length, text) is None


def test_without_libcrypto_it_is_not_available(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sha256state, "_library", lambda: None)
    assert not sha256state.available()


def test_a_library_that_hashes_otherwise_is_not_used(monkeypatch: pytest.MonkeyPatch) -> None:
    """The layout is checked against hashlib once: a library whose SHA256_CTX
    differs (another build, another version) is never used."""
    # The saved fields written nowhere: as if this library kept them elsewhere.
    monkeypatch.setattr(sha256state, "_restore", lambda context, state: None)
    sha256state._library.cache_clear()
    try:
        assert not sha256state.available()
    finally:
        monkeypatch.undo()
        sha256state._library.cache_clear()
    assert sha256state.available()
