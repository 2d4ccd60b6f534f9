"""Patterns after `get`, matched over the server's listing one folder level at a time."""

from __future__ import annotations

import time

import pytest

from filedock.cli.globs import clean, expand, is_glob, literal_folder, matches

LISTING = [
    "a.txt",
    "docs/a.txt",
    "docs/b.md",
    "docs/sub/c.txt",
    "docs/sub/deeper/d.txt",
    "notes[1].txt",
]


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("*.txt", ["a.txt", "notes[1].txt"]),  # * does not cross /
        ("docs/*.txt", ["docs/a.txt"]),
        ("docs/*", ["docs/a.txt", "docs/b.md"]),
        ("docs/?.md", ["docs/b.md"]),
        ("docs/[ab].*", ["docs/a.txt", "docs/b.md"]),
        ("docs/**/*.txt", ["docs/a.txt", "docs/sub/c.txt", "docs/sub/deeper/d.txt"]),
        ("**/c.txt", ["docs/sub/c.txt"]),
        ("notes[[]1].txt", ["notes[1].txt"]),  # a bracket names itself
        ("*.TXT", []),  # case counts, as on the server
        ("nothing/*", []),
    ],
)
def test_patterns(pattern: str, expected: list[str]) -> None:
    assert expand(pattern, LISTING) == expected


def test_with_folders_a_matched_folder_brings_what_is_under_it() -> None:
    assert expand("docs/*", LISTING, folders=True) == [
        "docs/a.txt",
        "docs/b.md",
        "docs/sub/c.txt",
        "docs/sub/deeper/d.txt",
    ]
    assert not matches("doc*", "docs/a.txt")
    assert matches("doc*", "docs/a.txt", folders=True)


def test_where_to_list_and_what_is_a_pattern() -> None:
    assert literal_folder("docs/sub/*.txt") == "docs/sub"
    assert literal_folder("docs/*/a.txt") == "docs"
    assert literal_folder("*.txt") == ""
    assert all(is_glob(pattern) for pattern in ("a*", "a?", "a[b]"))
    assert not is_glob("plain name.txt")


@pytest.mark.parametrize(
    ("typed", "path"),
    [
        ("./docs/a.txt", "docs/a.txt"),
        ("././docs", "docs"),
        ("docs/", "docs"),
        (".", ""),
        ("./", ""),
    ],
)
def test_a_leading_dot_slash_and_a_trailing_slash_are_dropped(typed: str, path: str) -> None:
    assert clean(typed) == path


def test_a_path_thousands_of_folders_deep_is_matched_without_recursion() -> None:
    deep = "/".join(["a"] * 5000) + "/x.txt"  # a server may list one
    assert expand("**", [deep]) == [deep]
    assert expand("**/*.txt", [deep]) == [deep]
    assert expand("a/*", [deep], folders=True) == [deep]
    assert expand("a/*.txt", [deep]) == []


def test_many_any_folders_parts_cost_one_step_a_part() -> None:
    # Tried every way to split the folders among the `**`: C(37, 12) ways.
    path = "/".join(["a"] * 25)
    started = time.monotonic()
    assert expand("**/" * 12 + "b", [path]) == []
    assert expand("**/" * 12 + "a", [path]) == [path]
    assert time.monotonic() - started < 5.0  # microseconds; the old way took hours
