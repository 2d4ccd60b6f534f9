"""SHA-256 whose state can be saved and taken up again: a resume goes on from it.

``hashlib`` cannot export a hash's state, so a resumed download had to hash
its whole prefix again. OpenSSL's low-level ``SHA256_Init`` /
``SHA256_Update`` / ``SHA256_Final`` keep the state in a ``SHA256_CTX`` of
a known layout, which this module reads and writes through :mod:`ctypes`:
the same library ``hashlib`` already loaded, the same code (SHA-NI where the
CPU has it), as fast per byte, and ctypes lets go of the GIL during each
call, so hashing still runs beside receiving and writing.

Where that library or those functions cannot be found, or the layout does
not hold (checked once against ``hashlib``), :func:`available` is False and
callers hash with ``hashlib`` as before (a resume then hashes its prefix
again).

A :class:`HashState` is written in a form of its own, not OpenSSL's bytes: the
eight words of the chaining value, big-endian, then the bytes of the last,
unfinished 64-byte block. With the count of bytes hashed, that is the whole
state of SHA-256 (FIPS 180-4), whatever the library or the machine.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_BLOCK = 64
_WORDS = 8
_STATE_HEX = 2 * 4 * _WORDS
# Library names tried after the one this process has loaded already.
_NAMES = ("libcrypto.so.3", "libcrypto.so.1.1", "libcrypto.so")
_MAPS = "/proc/self/maps"
# SHA-256's initial chaining value (FIPS 180-4, 5.3.3).
_INITIAL_WORDS = (
    0x6A09E667, 0xBB67AE85, 0x3C6EF372, 0xA54FF53A, 0x510E527F, 0x9B05688C, 0x1F83D9AB, 0x5BE0CD19,
)  # fmt: skip


class Digest(Protocol):
    """What the download pipeline needs of a hash: ``hashlib``'s or :class:`Sha256`."""

    def update(self, data: ReadableBuffer, /) -> None: ...

    def hexdigest(self) -> str: ...


class _Context(ctypes.Structure):
    """OpenSSL's ``SHA256_CTX`` (``SHA_LONG`` is 32 bits wherever OpenSSL 1.1 or 3 builds)."""

    _fields_ = [  # noqa: RUF012 (ctypes reads it from the class)
        ("h", ctypes.c_uint32 * _WORDS),
        ("Nl", ctypes.c_uint32),
        ("Nh", ctypes.c_uint32),
        ("data", ctypes.c_uint8 * _BLOCK),
        ("num", ctypes.c_uint),
        ("md_len", ctypes.c_uint),
    ]


@dataclass(frozen=True, slots=True)
class HashState:
    """SHA-256 after ``length`` bytes: the chaining value and the unfinished block."""

    length: int
    words: tuple[int, ...]
    tail: bytes  # the last length % 64 bytes, not yet compressed

    def to_text(self) -> str:
        return "".join(f"{word:08x}" for word in self.words) + self.tail.hex()

    @classmethod
    def from_text(cls, length: int, text: str) -> HashState | None:
        """The state ``to_text`` wrote for ``length`` bytes; None if it cannot be one."""
        if len(text) != _STATE_HEX + 2 * (length % _BLOCK) or length < 0:
            return None
        try:
            raw = bytes.fromhex(text)
        except ValueError:
            return None
        if raw.hex() != text.lower() or not text.isascii():
            return None  # fromhex skips spaces: only plain hex digits are a state
        words = tuple(int.from_bytes(raw[i : i + 4], "big") for i in range(0, _STATE_HEX // 2, 4))
        return cls(length, words, raw[_STATE_HEX // 2 :])


class Sha256:
    """SHA-256 through OpenSSL's ``SHA256_CTX``; only made when :func:`available`."""

    def __init__(self, state: HashState | None = None) -> None:
        library = _library()
        assert library is not None, "Sha256 is only made when available() says so"
        self._lib = library
        self._context = _Context()
        if state is None:
            library.SHA256_Init(ctypes.byref(self._context))
        else:
            _restore(self._context, state)

    def update(self, data: ReadableBuffer, /) -> None:
        start, count = pointer_to(data)
        if count:
            self._lib.SHA256_Update(ctypes.byref(self._context), start, count)

    def digest(self) -> bytes:
        """The digest of what was hashed so far; hashing may go on after."""
        finished = _Context.from_buffer_copy(self._context)
        out = ctypes.create_string_buffer(32)
        self._lib.SHA256_Final(out, ctypes.byref(finished))
        return out.raw

    def hexdigest(self) -> str:
        return self.digest().hex()

    def state(self) -> HashState:
        context = self._context
        bits = (context.Nh << 32) | context.Nl
        return HashState(bits // 8, tuple(context.h), bytes(context.data)[: context.num])


INITIAL = HashState(0, _INITIAL_WORDS, b"")


def pointer_to(data: ReadableBuffer) -> tuple[Any, int]:
    """A pointer ctypes can pass to ``data``'s bytes, and their count."""
    view = memoryview(data).cast("B")
    if not view.nbytes:
        return None, 0
    if view.readonly:  # ctypes can point only into a writable buffer without a copy
        view = memoryview(bytearray(view))
    return ctypes.byref(ctypes.c_char.from_buffer(view)), view.nbytes


def _restore(context: _Context, state: HashState) -> None:
    bits = state.length * 8
    context.h[:] = state.words
    context.Nl, context.Nh = bits & 0xFFFFFFFF, (bits >> 32) & 0xFFFFFFFF
    context.data[: len(state.tail)] = state.tail
    context.num = len(state.tail)
    context.md_len = 32


def available() -> bool:
    """Whether :class:`Sha256` can be used here (libcrypto found, and it hashes as hashlib)."""
    return _library() is not None


@functools.cache
def libcrypto() -> ctypes.CDLL | None:
    """OpenSSL's libcrypto, loaded; None where none can be."""
    for path in _candidates():
        try:
            return ctypes.CDLL(path)
        except OSError:
            continue
    return None


@functools.cache
def _library() -> ctypes.CDLL | None:
    library = libcrypto()
    if library is None:
        return None
    try:
        for name in ("SHA256_Init", "SHA256_Update", "SHA256_Final"):
            getattr(library, name).restype = ctypes.c_int
        library.SHA256_Init.argtypes = [ctypes.c_void_p]
        library.SHA256_Update.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
        library.SHA256_Final.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    except AttributeError:
        return None
    return library if _agrees_with_hashlib(library) else None


def _candidates() -> Iterator[str]:
    """The libcrypto ``hashlib`` loaded first (the same code), then the usual names."""
    import _hashlib  # noqa: F401 (loads libcrypto into this process, when hashlib has it)

    try:
        with open(_MAPS, encoding="utf-8", errors="replace") as maps:
            for line in maps:
                path = line.rstrip("\n").split(maxsplit=5)[-1]
                if "/libcrypto" in path and path.startswith("/"):
                    yield path
                    break
    except OSError:
        pass
    found = ctypes.util.find_library("crypto")
    if found:
        yield found
    yield from _NAMES


def _agrees_with_hashlib(library: ctypes.CDLL) -> bool:
    """The layout read and written here holds: a state saved mid-block and taken
    up again gives hashlib's digest."""
    sample = bytes(range(256)) * 5
    context = _Context()
    if ctypes.sizeof(context) != 112 or library.SHA256_Init(ctypes.byref(context)) != 1:
        return False
    head = ctypes.create_string_buffer(sample[:1000], 1000)
    library.SHA256_Update(ctypes.byref(context), head, 1000)
    bits = (context.Nh << 32) | context.Nl
    if (bits, context.num, context.md_len) != (8000, 1000 % _BLOCK, 32):
        return False
    state = HashState(1000, tuple(context.h), bytes(context.data)[: context.num])
    again = _Context()
    _restore(again, state)
    rest = ctypes.create_string_buffer(sample[1000:], len(sample) - 1000)
    library.SHA256_Update(ctypes.byref(again), rest, len(sample) - 1000)
    out = ctypes.create_string_buffer(32)
    library.SHA256_Final(out, ctypes.byref(again))
    return out.raw == hashlib.sha256(sample).digest()
