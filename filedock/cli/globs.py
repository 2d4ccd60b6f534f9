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


def _matched_prefixes(pattern: tuple[str, ...], parts: tuple[str, ...]) -> list[bool]:
    """For each j, whether the first j of ``parts`` match ``pattern``, part for part.

    Worked out row by row over the pattern, never by recursion: a server may
    list a path thousands of folders deep, and a person may type ``**`` many
    times, and neither may cost more than one step per pattern part and path part.
    """
    reached = [True] + [False] * len(parts)  # by the pattern so far
    for head in pattern:
        if head == ANY_FOLDERS:  # zero folders, or any number more
            for j in range(1, len(parts) + 1):
                reached[j] = reached[j] or reached[j - 1]
            continue
        regex = _part_regex(head)
        for j in range(len(parts), 0, -1):
            reached[j] = reached[j - 1] and regex.match(parts[j - 1]) is not None
        reached[0] = False
    return reached


def matches(pattern: str, path: str, *, folders: bool = False) -> bool:
    """Whether server path ``path`` matches ``pattern``; with ``folders``, also
    when one of the folders it is in does (``get -r 'docs/*'`` takes docs/sub/a.txt)."""
    parts = tuple(path.split("/"))
    reached = _matched_prefixes(tuple(pattern.split("/")), parts)
    return reached[-1] or (folders and any(reached[1:-1]))


def expand(pattern: str, listing: list[str], *, folders: bool = False) -> list[str]:
    """The paths of ``listing`` that ``pattern`` matches, in the listing's order."""
    return [path for path in listing if matches(pattern, path, folders=folders)]
