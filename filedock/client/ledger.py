"""What a partial file's prefix is known to hold, so a resume need not hash it again.

A resume needs the SHA-256 of the whole file, and hashing the prefix again
cost as much as the transfer it saved. So while a body is received, the
hashing thread notes SHA-256's state at each piece end and the writing
thread the tag of each piece it wrote (:mod:`.piecetag`: a check that runs
seven times as fast as SHA-256); a checkpoint, once the partial is fsynced,
puts the longest prefix that has both into the resume record
(:class:`HashedPrefix`). The next download reads that prefix back and checks
it against its tags, beside the transfer, and goes on hashing from the
saved state; a piece that does not match means the partial changed on disk
since it was hashed, and the download starts over.

Pieces are ``piece_size`` bytes from where the body starts, so a record holds
about MAX_PIECES of them whatever the file's size. A resume adds one piece,
the *bridge*: the bytes between the record's hashed prefix and the partial's
good length, which its hashing thread reads back from the disk.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from . import piecetag, sha256state
from .piecetag import Tagger, is_tag
from .sha256state import INITIAL, HashState, Sha256

# Smallest piece: a checkpoint (64 MiB) spans a few, and a record of a 1 GiB file holds 64.
PIECE_BYTES = 16 * 1024 * 1024
# Pieces a body is cut into at most: bounds the record (about 50 bytes of JSON a piece).
MAX_PIECES = 1024
# Bytes the prefix is read back in, to be checked: a buffer that stays in the
# core's cache. In one test, 1 MiB reads beside a resume's writer doubled the
# writer's CPU time (bench/README.md says how weak that figure is); the check
# costs the same either way.
CHECK_CHUNK = 64 * 1024


def available() -> bool:
    """Whether hashed prefixes can be made here: SHA-256's state and piece tags."""
    return sha256state.available() and piecetag.available()


def piece_size(size: int) -> int:
    """The piece of a file of ``size`` bytes: PIECE_BYTES, or more for a huge file."""
    wanted = -(-size // MAX_PIECES)
    return max(PIECE_BYTES, -(-wanted // PIECE_BYTES) * PIECE_BYTES)


@dataclass(frozen=True, slots=True)
class HashedPrefix:
    """A partial's first bytes as they were hashed: SHA-256's state after them, and
    the tag of each piece, (end, tag), consecutive from the file's first byte."""

    state: HashState
    pieces: tuple[tuple[int, str], ...]

    @property
    def length(self) -> int:
        return self.state.length

    def to_fields(self) -> dict[str, Any]:
        return {
            "length": self.length,
            "state": self.state.to_text(),
            "pieces": [list(piece) for piece in self.pieces],
        }

    @classmethod
    def from_fields(cls, fields: object) -> HashedPrefix | None:
        """The prefix ``to_fields`` wrote; None for anything else (torn, tampered, foreign)."""
        if not isinstance(fields, dict) or set(fields) != {"length", "state", "pieces"}:
            return None
        length, text, pieces = fields["length"], fields["state"], fields["pieces"]
        if not _count(length) or not isinstance(text, str) or not isinstance(pieces, list):
            return None
        state = HashState.from_text(length, text)
        if state is None:
            return None
        checked: list[tuple[int, str]] = []
        end = 0
        for piece in pieces:
            if not isinstance(piece, list) or len(piece) != 2:
                return None
            if not (_count(piece[0]) and piece[0] > end and is_tag(piece[1])):
                return None
            end = piece[0]
            checked.append((piece[0], piece[1]))
        if end != length:
            return None  # the pieces must cover the prefix, exactly
        return cls(state, tuple(checked))


EMPTY = HashedPrefix(INITIAL, ())


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def prefix_matches(fd: int, prefix: HashedPrefix) -> bool:
    """Whether ``fd``'s first bytes still have the prefix's tags (False if unreadable)."""
    buffer = memoryview(bytearray(CHECK_CHUNK))
    tagger = Tagger()
    start = 0
    try:
        for end, expected in prefix.pieces:
            tagger.start(end)
            while start < end:
                count = os.preadv(fd, [buffer[: min(len(buffer), end - start)]], start)
                if count == 0:
                    return False
                tagger.update(buffer[:count])
                start += count
            if tagger.finish() != expected:
                return False
    except OSError:
        return False
    return True


class Ledger:
    """What a body's checkpoints can vouch for, gathered as it is received.

    The body starts at ``offset`` in the file, after ``base`` (the record's
    hashed prefix; the bytes between are the bridge). The hashing thread
    calls :meth:`hashed` at each piece end, the writer :meth:`wrote`; a
    checkpoint asks :meth:`vouched`, from its own thread.
    """

    def __init__(self, size: int, offset: int = 0, base: HashedPrefix = EMPTY) -> None:
        assert base.length <= offset <= size
        self.size = size
        self.offset = offset
        self.base = base
        self.piece = piece_size(size)
        self._lock = threading.Lock()
        self._bridge: tuple[int, str] | None = None
        self._written: list[tuple[int, str]] = []
        self._states: dict[int, HashState] = {}

    def piece_end(self, position: int) -> int:
        """Where the piece holding the file's byte at ``position`` ends."""
        if position < self.offset:
            return self.offset  # the bridge
        pieces = (position - self.offset) // self.piece + 1
        return min(self.offset + pieces * self.piece, self.size)

    def hashed(self, state: HashState) -> None:
        with self._lock:
            self._states[state.length] = state

    def bridged(self, tag: str) -> None:
        with self._lock:
            self._bridge = (self.offset, tag)

    def wrote(self, end: int, tag: str) -> None:
        with self._lock:
            self._written.append((end, tag))

    def vouched(self, durable: int) -> HashedPrefix:
        """The longest prefix, at most ``durable`` bytes, with a state and every piece's tag."""
        with self._lock:
            best = self.base
            pieces = list(self.base.pieces)
            if self.offset > self.base.length:
                if self._bridge is None:
                    return best
                pieces.append(self._bridge)
            candidates = [(self.offset, ""), *self._written]
            for index, (end, tag) in enumerate(candidates):
                if end > durable:
                    break
                if index:
                    pieces.append((end, tag))
                state = self._states.get(end)
                if state is not None:
                    best = HashedPrefix(state, tuple(pieces))
            return best


def _by_piece(
    ledger: Ledger, position: int, data: memoryview
) -> Iterator[tuple[memoryview, int, bool]]:
    """``data`` (the file's bytes from ``position``) cut at piece ends: each chunk,
    the end of its piece, and whether the chunk reaches it."""
    while data:
        end = max(ledger.piece_end(position), position + 1)
        chunk, data = data[: end - position], data[end - position :]
        position += len(chunk)
        yield chunk, end, position == end


class HashFeed:
    """The hashing thread's side: hashes the file's bytes in order from ``position``,
    and tells the ledger the state at each piece end (and the bridge's tag)."""

    def __init__(self, digest: Sha256, ledger: Ledger, position: int) -> None:
        self.digest = digest
        self._ledger = ledger
        self._position = position
        self._bridge: Tagger | None = None
        if position < ledger.offset:
            self._bridge = Tagger()
            self._bridge.start(ledger.offset)

    def update(self, data: memoryview) -> None:
        ledger = self._ledger
        for chunk, _, ends_piece in _by_piece(ledger, self._position, data):
            self.digest.update(chunk)
            in_bridge = self._position < ledger.offset
            if in_bridge and self._bridge is not None:
                self._bridge.update(chunk)
            self._position += len(chunk)
            if ends_piece:
                if in_bridge and self._bridge is not None:
                    ledger.bridged(self._bridge.finish())
                ledger.hashed(self.digest.state())


class WriteFeed:
    """The writer's side: the tag of each piece of the body as it is written."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._position = ledger.offset
        self._tagger = Tagger()
        self._in_piece = False

    def wrote(self, data: memoryview) -> None:
        for chunk, end, ends_piece in _by_piece(self._ledger, self._position, data):
            if not self._in_piece:
                self._tagger.start(end)
                self._in_piece = True
            self._tagger.update(chunk)
            self._position += len(chunk)
            if ends_piece:
                self._ledger.wrote(end, self._tagger.finish())
                self._in_piece = False
