"""Piece tags: the same for the same bytes however they are fed, another for any change."""

from __future__ import annotations

import os
import random

import pytest

from filedock.client import piecetag
from filedock.client.piecetag import Tagger, is_tag, tag_of

pytestmark = pytest.mark.skipif(not piecetag.available(), reason="no libcrypto AES-GCM here")


def test_a_tag_is_the_same_however_the_piece_is_cut() -> None:
    data = os.urandom(3 * 1024 * 1024 + 17)
    whole = tag_of(99, data)
    assert is_tag(whole)
    rng = random.Random(5)
    for _ in range(20):
        cuts = sorted(rng.randrange(len(data)) for _ in range(rng.randrange(1, 6)))
        tagger = Tagger()
        tagger.start(99)
        for start, end in zip([0, *cuts], [*cuts, len(data)], strict=True):
            tagger.update(memoryview(bytearray(data))[start:end])
        assert tagger.finish() == whole


def test_any_flipped_bit_or_another_end_gives_another_tag() -> None:
    data = bytearray(os.urandom(4096))
    whole = tag_of(4096, data)
    for bit in range(0, 4096 * 8, 257):
        data[bit // 8] ^= 1 << bit % 8
        assert tag_of(4096, data) != whole
        data[bit // 8] ^= 1 << bit % 8
    assert tag_of(4096, data) == whole
    assert tag_of(4097, data) != whole  # the piece's place counts too


def test_one_tagger_tags_piece_after_piece() -> None:
    tagger = Tagger()
    for end in (10, 20):
        tagger.start(end)
        tagger.update(b"x" * 10)
        assert tagger.finish() == tag_of(end, b"x" * 10)


def test_without_libcrypto_there_are_no_tags(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(piecetag, "libcrypto", lambda: None)
    piecetag._library.cache_clear()
    try:
        assert not piecetag.available()
    finally:
        monkeypatch.undo()
        piecetag._library.cache_clear()
    assert piecetag.available()
