"""The checks every public :class:`~filedock.client.client.Client` method makes of its
arguments before anything is sent.

A wrong type raises ``TypeError`` and a value out of range ``ValueError``, as
Python's own functions do, and at once: a ``GET`` sent with a destination that
turns out to be an ``int`` would leave its body unread and the connection out
of step, so the next call would find it closed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from typing import Any

_SHA256 = re.compile(r"[0-9a-f]{64}")


def _kind(value: object) -> str:
    return type(value).__name__


def text(name: str, value: object) -> str:
    """``value`` if it is a ``str``."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {_kind(value)}")
    return value


def optional_text(name: str, value: object) -> str | None:
    """``value`` if it is a ``str`` or None."""
    return None if value is None else text(name, value)


def local_path(name: str, value: object) -> str | os.PathLike[str]:
    """``value`` if it names a local file or folder: a ``str`` or an ``os.PathLike``."""
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike) and isinstance(os.fspath(value), str):
        return value
    raise TypeError(f"{name} must be a str or a path (os.PathLike), not {_kind(value)}")


def optional_local_path(name: str, value: object) -> str | os.PathLike[str] | None:
    return None if value is None else local_path(name, value)


def flag(name: str, value: object) -> bool:
    """``value`` if it is a ``bool`` (``resume=0`` is a slip, not a choice)."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {_kind(value)}")
    return value


def callback(name: str, value: Any) -> Any:
    """``value`` if it can be called, or None."""
    if value is not None and not callable(value):
        raise TypeError(f"{name} must be callable or None, not {_kind(value)}")
    return value


def paths(name: str, value: object) -> list[str]:
    """``value`` as a list of server paths: an iterable of ``str``, never one ``str``
    (whose letters would each be a path)."""
    if isinstance(value, str | bytes):
        raise TypeError(f"{name} must be a list of paths, not one {_kind(value)}: [{value!r}]")
    if not isinstance(value, Iterable):
        raise TypeError(f"{name} must be a list of paths, not {_kind(value)}")
    return [text(f"each of {name}", path) for path in value]


def offset(name: str, value: object) -> int:
    """``value`` if it is a whole number of bytes, 0 or more."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, not {_kind(value)}")
    if value < 0:
        raise ValueError(f"{name} must be 0 or more, not {value}")
    return value


def sha256(name: str, value: object) -> str:
    """``value`` if it is a SHA-256 as the server writes it: 64 lowercase hex digits."""
    if not _SHA256.fullmatch(text(name, value)):
        raise ValueError(f"{name} must be 64 lowercase hex digits, not {value!r}")
    assert isinstance(value, str)
    return value


def writable(name: str, value: object) -> None:
    """Refuses a ``value`` that is no file to write to (it has no ``write``)."""
    if not callable(getattr(value, "write", None)):
        raise TypeError(f"{name} must be a binary file open for writing, not {_kind(value)}")


def line(value: object) -> str:
    """``value`` if it is one line a person could type: a ``str``, not blank
    (the server answers nothing to a blank line), without a line break."""
    typed = text("line", value)
    if "\n" in typed or "\r" in typed:
        raise ValueError(f"a line cannot hold a line break: {typed!r}")
    if not typed.strip(" \t"):
        raise ValueError("a blank line is not sent: the server answers nothing to it")
    return typed
