"""Piece tags: a check of a partial's pieces far cheaper than hashing them again.

A tag is GMAC, AES-GCM's authentication of data sent as "associated data"
only, under a fixed key, with the piece's end offset as the nonce: GHASH, a
polynomial over GF(2**128), with the AES-NI and carry-less multiply code of
OpenSSL, the libcrypto :mod:`.sha256state` uses. Measured here with 64 MiB
runs (best of 15, Python 3.11, OpenSSL 3.0): GMAC 12.5 GB/s, zlib's CRC-32
3.4-4.7 GB/s, Adler-32 2.7-3.4 GB/s, SHA-256 1.7 GB/s; with other work on
both cores CRC-32 fell to 1.6 GB/s against SHA-256's 1.3 (it shares the
integer units a sibling thread uses; the vector units GHASH runs on were far
less contended), so a check by CRC-32 cost a resume as much as the hashing it
replaced. A tag catches any change within one 16-byte block, and any other
change but with a chance of about 2**-128 a piece (CRC-32: 2**-32).

It guards against damage, not a forger: the key is no secret, and whoever
can write the partial and its record can as well replace the saved file.
"""

from __future__ import annotations

import ctypes
import functools
from typing import TYPE_CHECKING

from .sha256state import libcrypto, pointer_to

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_KEY = bytes(16)
_NONCE = 12
_TAG = 16
_GET_TAG = 0x10  # EVP_CTRL_GCM_GET_TAG (EVP_CTRL_AEAD_GET_TAG), the same in OpenSSL 1.1 and 3
# AES-128-GCM, the key and the nonce all zero, nothing authenticated: test case 1
# of McGrew and Viega's GCM specification.
_EMPTY_TAG = "58e2fccefa7e3061367f1d57a4e7455a"


class Tagger:
    """Tags pieces one after the other: :meth:`start`, :meth:`update`, :meth:`finish`.

    Only made when :func:`available`. One thread at a time.
    """

    def __init__(self, library: ctypes.CDLL | None = None) -> None:
        library = library or _library()
        assert library is not None, "a Tagger is only made when available() says so"
        self._lib = library
        self._context = library.EVP_CIPHER_CTX_new()
        if not self._context:
            raise MemoryError("EVP_CIPHER_CTX_new")
        self._count = ctypes.c_int()

    def start(self, end: int) -> None:
        """Begin the tag of the piece that ends at the file's byte ``end``."""
        nonce = end.to_bytes(_NONCE, "big")
        self._lib.EVP_EncryptInit_ex(self._context, self._lib.EVP_aes_128_gcm(), None, _KEY, nonce)

    def update(self, data: ReadableBuffer) -> None:
        start, count = pointer_to(data)
        if count:
            self._lib.EVP_EncryptUpdate(
                self._context, None, ctypes.byref(self._count), start, count
            )

    def finish(self) -> str:
        """The tag of the piece begun last, in hex."""
        lib, tag = self._lib, ctypes.create_string_buffer(_TAG)
        lib.EVP_EncryptFinal_ex(self._context, tag, ctypes.byref(self._count))
        lib.EVP_CIPHER_CTX_ctrl(self._context, _GET_TAG, _TAG, tag)
        return tag.raw.hex()

    def __del__(self) -> None:
        context, self._context = getattr(self, "_context", None), None
        if context:
            self._lib.EVP_CIPHER_CTX_free(context)


def tag_of(end: int, data: ReadableBuffer, library: ctypes.CDLL | None = None) -> str:
    """The tag of one whole piece."""
    tagger = Tagger(library)
    tagger.start(end)
    tagger.update(data)
    return tagger.finish()


def is_tag(text: object) -> bool:
    return isinstance(text, str) and len(text) == 2 * _TAG and text == text.lower() and _hex(text)


def _hex(text: str) -> bool:
    try:
        return bytes.fromhex(text).hex() == text
    except ValueError:
        return False


def available() -> bool:
    """Whether tags can be made here (libcrypto's AES-GCM found, and answering as it should)."""
    return _library() is not None


@functools.cache
def _library() -> ctypes.CDLL | None:
    library = libcrypto()
    if library is None:
        return None
    try:
        library.EVP_CIPHER_CTX_new.restype = ctypes.c_void_p
        library.EVP_CIPHER_CTX_new.argtypes = []
        library.EVP_CIPHER_CTX_free.argtypes = [ctypes.c_void_p]
        library.EVP_aes_128_gcm.restype = ctypes.c_void_p
        library.EVP_aes_128_gcm.argtypes = []
        void, count = ctypes.c_void_p, ctypes.POINTER(ctypes.c_int)
        library.EVP_EncryptInit_ex.argtypes = [void, void, void, ctypes.c_char_p, ctypes.c_char_p]
        library.EVP_EncryptUpdate.argtypes = [void, void, count, void, ctypes.c_int]
        library.EVP_EncryptFinal_ex.argtypes = [void, void, count]
        library.EVP_CIPHER_CTX_ctrl.argtypes = [void, ctypes.c_int, ctypes.c_int, void]
    except AttributeError:
        return None
    return library if _answers_as_gcm(library) else None


def _answers_as_gcm(library: ctypes.CDLL) -> bool:
    """The known answer for nothing, the same tag however the bytes are cut, and
    another tag for another byte or another end."""
    try:
        sample = bytes(range(256)) * 4
        whole = tag_of(0, sample, library)
        cut = Tagger(library)
        cut.start(0)
        for start, end in ((0, 7), (7, 500), (500, len(sample))):
            cut.update(sample[start:end])
        changed = bytearray(sample)
        changed[300] ^= 1
        return (
            tag_of(0, b"", library) == _EMPTY_TAG
            and cut.finish() == whole
            and tag_of(0, changed, library) != whole
            and tag_of(1, sample, library) != whole
        )
    except MemoryError:
        return False
