"""Paths as a person types them after ``get``: globs over the server's listing, folders.

A path with ``*``, ``?`` or ``[`` is a pattern matched against the paths of
``list``, one ``/``-separated part at a time, as a shell matches file names:
``*`` and ``?`` never cross a ``/`` (``docs/*.txt`` is not ``docs/sub/a.txt``),
and a part that is exactly ``**`` matches any number of folders, none
included (``docs/**/*.txt``). Matching is case-sensitive; ``[*]`` names a
literal ``*``. A leading ``./`` is dropped (``./docs`` is ``docs``).
"""

from __future__ import annotations

import fnmatch
import functools
import re

GLOB_CHARACTERS = frozenset("*?[")
ANY_FOLDERS = "**"


def is_glob(path: str) -> bool:
    return not GLOB_CHARACTERS.isdisjoint(path)


def clean(path: str) -> str:
    """``path`` without a leading ``./`` (any number of them) or trailing ``/``;
    ``.`` alone is the whole repository (``""``)."""
    while path.startswith("./"):
        path = path[2:].lstrip("/")
    if path == ".":
        return ""
    return path.rstrip("/") if path != "/" else path


def literal_folder(pattern: str) -> str:
    """The folder before the first part with a glob character: where to list (``""``: all)."""
    parts = pattern.split("/")
    literal = []
    for part in parts[:-1]:
        if is_glob(part):
            break
        literal.append(part)
    return "/".join(literal)


@functools.lru_cache(maxsize=256)
def _part_regex(part: str) -> re.Pattern[str]:
    return re.compile(fnmatch.translate(part))


def _match_parts(pattern: tuple[str, ...], parts: tuple[str, ...]) -> bool:
    if not pattern:
        return not parts
    head, rest = pattern[0], pattern[1:]
    if head == ANY_FOLDERS:
        # Zero folders, or one more folder eaten by the same `**`.
        return _match_parts(rest, parts) or (bool(parts) and _match_parts(pattern, parts[1:]))
    if not parts or _part_regex(head).match(parts[0]) is None:
        return False
    return _match_parts(rest, parts[1:])


def matches(pattern: str, path: str, *, folders: bool = False) -> bool:
    """Whether server path ``path`` matches ``pattern``; with ``folders``, also
    when one of the folders it is in does (``get -r 'docs/*'`` takes docs/sub/a.txt)."""
    pattern_parts = tuple(pattern.split("/"))
    parts = tuple(path.split("/"))
    if _match_parts(pattern_parts, parts):
        return True
    return folders and any(
        _match_parts(pattern_parts, parts[:depth]) for depth in range(1, len(parts))
    )


def expand(pattern: str, listing: list[str], *, folders: bool = False) -> list[str]:
    """The paths of ``listing`` that ``pattern`` matches, in the listing's order."""
    return [path for path in listing if matches(pattern, path, folders=folders)]
