"""A partial's hashed prefix: what the pipeline notes as a body comes, what a
record may vouch for, and a resume that goes on from it and checks it."""

from __future__ import annotations

import hashlib
import itertools
import os
from pathlib import Path

import pytest

from filedock.client import ledger as ledgers
from filedock.client import sha256state
from filedock.client.download import BUFFER_SIZE, receive_body
from filedock.client.ledger import EMPTY, HashedPrefix, Ledger, piece_size, prefix_matches
from filedock.client.piecetag import tag_of
from filedock.client.resume import Checkpoints, new_record
from filedock.client.sha256state import HashState, Sha256
from tests.unit.test_resume_records import body_from

MiB = 1024 * 1024
TAG = "ab" * 16

pytestmark = pytest.mark.skipif(not ledgers.available(), reason="no SHA-256 state here")


@pytest.fixture(autouse=True)
def small_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ledgers, "PIECE_BYTES", 3 * MiB)  # not a multiple of the buffers


class Noting:
    """A checkpoint that only carries a ledger (no record, no sync)."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger: Ledger | None = ledger

    def __call__(self, written: int) -> None:
        pass


def receive(path: Path, data: bytes, ledger: Ledger, *, rehash: int = 0) -> str:
    """Receive ``data`` into ``path`` after its first ``rehash`` bytes; the digest."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        os.lseek(fd, rehash, os.SEEK_SET)
        received = receive_body(
            body_from(data), b"", len(data), fd, checkpoint=Noting(ledger), rehash=rehash
        )
    finally:
        os.close(fd)
    assert received.whole
    return received.sha256


def interrupted(path: Path, whole: bytes, cut: int, durable: int | None = None) -> HashedPrefix:
    """A first download of ``whole`` that stopped after ``cut`` bytes; what its
    last record, at ``durable`` bytes (``cut`` by default), vouched for."""
    first = Ledger(len(whole))
    receive(path, whole[:cut], first)
    return first.vouched(cut if durable is None else durable)


def resumed(path: Path, whole: bytes, cut: int, base: HashedPrefix) -> tuple[bool, Ledger]:
    """Resume ``whole`` from ``cut`` after ``base``: whether the digest is the file's."""
    second = Ledger(len(whole), cut, base)
    digest = receive(path, whole[cut:], second, rehash=cut)
    return digest == hashlib.sha256(whole).hexdigest(), second


def matches(path: Path, prefix: HashedPrefix) -> bool:
    fd = os.open(path, os.O_RDONLY)
    try:
        return prefix_matches(fd, prefix)
    finally:
        os.close(fd)


def test_a_body_notes_a_state_and_a_tag_at_each_piece_end(tmp_path: Path) -> None:
    data = os.urandom(4 * BUFFER_SIZE + 5)
    ledger = Ledger(len(data))
    assert receive(tmp_path / "p", data, ledger) == hashlib.sha256(data).hexdigest()
    whole = ledger.vouched(len(data))
    assert whole.length == len(data)
    ends = [end for end, _ in whole.pieces]
    assert ends == [*range(3 * MiB, len(data), 3 * MiB), len(data)]
    start = 0
    for end, tag in whole.pieces:
        assert tag == tag_of(end, data[start:end])
        start = end
    assert Sha256(whole.state).hexdigest() == hashlib.sha256(data).hexdigest()
    assert matches(tmp_path / "p", whole)


def test_a_checkpoint_vouches_for_no_byte_past_its_durable_length(tmp_path: Path) -> None:
    data = os.urandom(3 * BUFFER_SIZE)
    ledger = Ledger(len(data))
    receive(tmp_path / "p", data, ledger)
    for durable in (0, 3 * MiB - 1, 3 * MiB, 7 * MiB, len(data) - 1):
        prefix = ledger.vouched(durable)
        assert prefix.length == durable - durable % (3 * MiB)
        assert Sha256(prefix.state).hexdigest() == hashlib.sha256(data[: prefix.length]).hexdigest()


def test_a_resume_goes_on_from_the_hashed_prefix_and_bridges_the_rest(tmp_path: Path) -> None:
    whole = os.urandom(5 * BUFFER_SIZE + 7)
    cut = 2 * BUFFER_SIZE + 99  # where the killed download's partial ended
    base = interrupted(tmp_path / "p", whole, cut, cut - 4 * MiB)  # its last record: behind
    assert 0 < base.length < cut
    verified, second = resumed(tmp_path / "p", whole, cut, base)
    assert verified
    assert (tmp_path / "p").read_bytes() == whole
    # What the next record may hold: the old pieces, the bridge, the new ones.
    after = second.vouched(len(whole))
    assert after.length == len(whole)
    assert (base.length, cut) in [(a, b) for (a, _), (b, _) in itertools.pairwise(after.pieces)]
    assert Sha256(after.state).hexdigest() == hashlib.sha256(whole).hexdigest()
    assert matches(tmp_path / "p", after)


def test_a_changed_byte_in_the_hashed_prefix_is_never_trusted(tmp_path: Path) -> None:
    whole = os.urandom(4 * BUFFER_SIZE)
    cut = 2 * BUFFER_SIZE
    base = interrupted(tmp_path / "p", whole, cut)
    assert base.length == 6 * MiB
    with open(tmp_path / "p", "r+b") as partial:  # one bit, inside the checksummed part
        partial.seek(MiB + 12345)
        byte = partial.read(1)
        partial.seek(MiB + 12345)
        partial.write(bytes([byte[0] ^ 0x01]))
    assert not matches(tmp_path / "p", base)
    second = Ledger(len(whole), cut, base)
    assert receive(tmp_path / "p", whole[cut:], second, rehash=cut) == ""  # verifies as nothing


def test_a_tampered_state_gives_a_digest_that_is_not_the_files(tmp_path: Path) -> None:
    whole = os.urandom(4 * BUFFER_SIZE)
    cut = 2 * BUFFER_SIZE
    base = interrupted(tmp_path / "p", whole, cut)
    words = (base.state.words[0] ^ 1, *base.state.words[1:])
    forged = HashedPrefix(HashState(base.length, words, base.state.tail), base.pieces)
    verified, _ = resumed(tmp_path / "p", whole, cut, forged)
    assert not verified  # the caller starts over


def test_a_short_remaining_part_also_goes_on_from_the_state(tmp_path: Path) -> None:
    whole = os.urandom(3 * BUFFER_SIZE + 1000)
    cut = 3 * BUFFER_SIZE
    base = interrupted(tmp_path / "p", whole, cut)
    assert resumed(tmp_path / "p", whole, cut, base)[0]
    os.truncate(tmp_path / "p", cut)
    with open(tmp_path / "p", "r+b") as partial:  # damaged: checked before the short part
        partial.write(bytes([whole[0] ^ 0x80]))
    assert not resumed(tmp_path / "p", whole, cut, base)[0]


def test_a_resume_without_a_hashed_prefix_hashes_it_all_back(tmp_path: Path) -> None:
    whole = os.urandom(3 * BUFFER_SIZE)
    cut = BUFFER_SIZE + 5
    (tmp_path / "p").write_bytes(whole[:cut])  # as a record of the first version left it
    verified, second = resumed(tmp_path / "p", whole, cut, EMPTY)
    assert verified
    after = second.vouched(len(whole))
    assert after.pieces[0] == (cut, tag_of(cut, whole[:cut]))  # the whole prefix is the bridge
    assert Sha256(after.state).hexdigest() == hashlib.sha256(whole).hexdigest()


def test_pieces_grow_with_a_huge_file_so_a_record_stays_small() -> None:
    assert piece_size(10) == 3 * MiB
    huge = 10 * 1024**4
    assert huge / piece_size(huge) <= ledgers.MAX_PIECES
    assert piece_size(huge) % (3 * MiB) == 0


def test_without_libcrypto_checkpoints_note_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sha256state, "_library", lambda: None)  # hashlib's state is none to save
    assert not ledgers.available()
    fd = os.open(tmp_path / "p", os.O_RDWR | os.O_CREAT)
    try:
        checkpoints = Checkpoints(fd, tmp_path / "f", new_record("h:1", "f", 10 * MiB, None))
        assert checkpoints.ledger is None
    finally:
        os.close(fd)


@pytest.mark.parametrize(
    "fields",
    [
        None,
        [],
        {"length": 3, "state": "0" * 70, "pieces": [[3, TAG]], "more": 1},
        {"length": 3, "state": "0" * 70, "pieces": [[2, TAG]]},  # short of the length
        {
            "length": 3,
            "state": "0" * 70,
            "pieces": [[2, TAG], [2, TAG], [3, TAG]],
        },  # not increasing
        {"length": 3, "state": "0" * 70, "pieces": [[3, 5]]},  # a number is no tag
        {"length": 3, "state": "0" * 70, "pieces": [[3, "0" * 31]]},
        {"length": 3, "state": "0" * 70, "pieces": [[3, "A" * 32]]},
        {"length": 3, "state": "0" * 70, "pieces": [[3, " " + "0" * 31]]},
        {"length": 3, "state": "0" * 70, "pieces": [[3]]},
        {"length": 3, "state": "0" * 64, "pieces": [[3, TAG]]},  # the tail missing
        {"length": True, "state": "0" * 66, "pieces": [[1, TAG]]},
        {"length": 3, "state": None, "pieces": [[3, TAG]]},
        {"length": 3, "state": "0" * 70, "pieces": "[[3, TAG]]"},
    ],
)
def test_a_hashed_prefix_that_cannot_be_one_is_none(fields: object) -> None:
    assert HashedPrefix.from_fields(fields) is None


def test_a_hashed_prefix_is_read_back_as_written() -> None:
    digest = Sha256()
    digest.update(b"x" * 100)
    prefix = HashedPrefix(digest.state(), ((60, TAG), (100, "0f" * 16)))
    assert HashedPrefix.from_fields(prefix.to_fields()) == prefix
