"""Giving freed memory back to the system after a large reply.

A listing's records are encoded by a metadata worker, so glibc keeps them in
that thread's own arena; once they are sent and freed, the arena keeps the
pages (it trims only from its top, and only when a large block is freed), some
4 MB for 100,000 files. ``malloc_trim`` hands every arena's free pages back.
Where the C library has no ``malloc_trim`` (musl, macOS), this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from collections.abc import Callable


def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_TRIM = _malloc_trim()


def give_back() -> bool:
    """Return the C heap's free pages to the system; whether any went back."""
    return _TRIM is not None and _TRIM(0) == 1
