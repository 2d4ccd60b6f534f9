"""The pieces behind the interactive shell, without a terminal: completion, history, tables."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import cast

import pytest

from filedock.cli.hints import command_hint, one_edit_apart, path_hint
from filedock.cli.screen import display_width, file_lines, stats_lines, status_lines
from filedock.cli.shell import (
    COMPLETION_WORDS,
    FILES_TTL,
    HISTORY_ENV,
    Completer,
    history_path,
)
from filedock.cli.times import iso_time, local_time, server_zone
from filedock.client.client import Client
from filedock.protocol import ClientRecord, FileInfo


class _FakeLister:
    """Stands in for a Client in the completer: counts its LIST calls."""

    def __init__(self, paths: list[str]) -> None:
        self.paths = paths
        self.calls = 0
        self.closed = False

    def list(self) -> list[FileInfo]:
        self.calls += 1
        return [FileInfo(path, 1, datetime.now(UTC)) for path in self.paths]


def _completer(paths: list[str], clock: Callable[[], float] = time.monotonic) -> Completer:
    return Completer(cast(Client, _FakeLister(paths)), clock=clock)


def _complete(completer: Completer, line: str) -> list[str]:
    begin = line.rfind(" ") + 1  # readline's word: after the last space
    return completer.candidates(line, begin, len(line))


def test_completer_offers_command_words_then_files() -> None:
    completer = _completer(["sample.txt", "status.log"])
    assert _complete(completer, "") == list(COMPLETION_WORDS)
    assert _complete(completer, "st") == ["stats", "status", "status.log"]
    assert _complete(completer, "statu") == ["status", "status.log"]
    assert _complete(completer, "get sa") == ["sample.txt"]
    assert _complete(completer, "GET sa") == ["sample.txt"]
    assert _complete(completer, "hash sa") == ["sample.txt"]
    assert _complete(completer, "say sa") == []
    assert _complete(completer, "qu") == ["quit"]
    assert _complete(completer, "get -r sa") == ["sample.txt"]  # the word after options
    assert _complete(completer, "get status.log sa") == ["sample.txt"]


def test_completer_never_offers_a_name_that_would_drive_the_terminal() -> None:
    """readline prints the candidates as they are: a server's escapes would reach the terminal."""
    hostile = ["a\x1b]0;PWNED\x07.txt", "a\x9b2J.txt", "a\u202efdp.exe", "a\x85.txt"]
    completer = _completer([*hostile, "a.txt"])
    assert _complete(completer, "get a") == ["a.txt"]
    assert _complete(completer, "a") == ["about", "a.txt"]


def test_completer_goes_one_folder_at_a_time() -> None:
    completer = _completer(["docs/a b.pdf", "docs/c.pdf", "docs/sub/d.txt", "x.txt"])
    assert _complete(completer, "get ") == ["docs/", "x.txt"]
    # One folder only: its files, so readline fills in "docs/" and adds no space.
    assert _complete(completer, "get d") == ["docs/a b.pdf", "docs/c.pdf", "docs/sub/d.txt"]
    assert _complete(completer, "get docs/") == ["docs/a b.pdf", "docs/c.pdf", "docs/sub/"]
    # A name with a space: readline replaces only the last word.
    assert _complete(completer, "get docs/a b") == ["b.pdf"]


def test_completer_caches_file_names_for_a_while() -> None:
    now = [0.0]
    completer = _completer(["a.txt"], clock=lambda: now[0])
    lister = cast(_FakeLister, completer._client)
    _complete(completer, "get a")
    _complete(completer, "get a")
    assert lister.calls == 1
    now[0] += FILES_TTL + 1
    _complete(completer, "get a")
    assert lister.calls == 2
    completer.invalidate()  # after a not-found
    lister.paths = ["b.txt"]
    assert _complete(completer, "get ") == ["b.txt"]
    assert lister.calls == 3


def test_history_path(tmp_path: Path) -> None:
    assert history_path({HISTORY_ENV: str(tmp_path / "h")}) == tmp_path / "h"
    state = {"XDG_STATE_HOME": str(tmp_path), "HOME": "/nowhere"}
    assert history_path(state) == tmp_path / "filedock" / "history"
    relative = {"XDG_STATE_HOME": "relative/state"}  # ignored, as the XDG spec says
    assert history_path(relative) == Path.home() / ".local" / "state" / "filedock" / "history"


def test_status_widens_for_long_names() -> None:
    moment = datetime(2026, 11, 24, 15, 29, 28)
    records = [
        ClientRecord("Client01", moment, moment, "127.0.0.1:1"),
        ClientRecord("AVeryLongClientName", moment, None, "127.0.0.1:2"),
    ]
    assert status_lines(records) == [
        "CLIENT               ACCEPTED             FINISHED             ADDR",
        "Client01             2026-11-24 15:29:28  2026-11-24 15:29:28  127.0.0.1:1",
        "AVeryLongClientName  2026-11-24 15:29:28  None                 127.0.0.1:2",
    ]


def test_completer_offers_local_paths_after_put(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_bytes(b"a")
    (tmp_path / "dog.txt").write_bytes(b"d")
    (tmp_path / ".hidden").write_bytes(b"h")
    monkeypatch.chdir(tmp_path)
    completer = _completer(["docs/server-only.txt"])
    assert _complete(completer, "put do") == ["docs/", "dog.txt"]  # local, not the server's
    assert _complete(completer, "put docs/") == ["docs/a.txt"]
    assert _complete(completer, "put ") == ["docs/", "dog.txt"]
    assert _complete(completer, "put .h") == [".hidden"]
    assert _complete(completer, "put -r --to x d") == ["docs/", "dog.txt"]
    assert _complete(completer, f"put {tmp_path}/do") == [
        f"{tmp_path}/docs/",
        f"{tmp_path}/dog.txt",
    ]
    assert _complete(completer, "put nowhere/x") == []


def test_completer_offers_nothing_after_a_verb_of_several_arguments() -> None:
    completer = _completer(["sample.txt"])
    assert _complete(completer, "range sa") == []


def test_list_aligns_wide_and_combining_names_by_their_columns() -> None:
    moment = datetime(2026, 11, 24, 15, 29, 28, tzinfo=UTC)
    names = ["a.txt", "報告.txt", "cafe\u0301.txt", "\U0001f600.txt", "ｆｕｌｌ.txt"]
    lines = file_lines([FileInfo(name, 6, moment) for name in names])
    assert display_width("報告.txt") == 8
    assert display_width("cafe\u0301.txt") == 8  # the accent takes no column
    assert display_width("\U0001f600") == 2
    assert display_width("ｆｕｌｌ") == 8  # fullwidth letters
    # The size column starts at the same column on every line: 12 columns of name, two spaces.
    for line, name in zip(lines, names, strict=True):
        name_part, rest = line[: len(name)], line[len(name) :]
        assert name_part == name
        assert display_width(name_part) + len(rest) - len(rest.lstrip(" ")) == 14, line
        assert rest.lstrip(" ").startswith("6 B  ")


def test_the_servers_zone_is_read_from_this_clients_own_record() -> None:
    welcomed = datetime(2026, 11, 24, 10, 0, 0, tzinfo=UTC)
    nepal = datetime(2026, 11, 24, 15, 45, 3)  # its clock 5:45 ahead, and 3 s behind ours
    records = [
        ClientRecord("Client01", datetime(2026, 11, 24, 9, 0), nepal, "127.0.0.1:1"),
        ClientRecord("Client02", nepal, None, "127.0.0.1:2"),
    ]
    zone = server_zone(records, "Client02", welcomed)
    assert zone == timezone(timedelta(hours=5, minutes=45))
    assert iso_time(records[0].accepted, zone) == "2026-11-24T09:00:00+05:45"
    assert server_zone(records, "Client09", welcomed) is None  # not ours: unknown
    wrong_clock = [ClientRecord("Client02", datetime(2026, 12, 24), None, "127.0.0.1:2")]
    assert server_zone(wrong_clock, "Client02", welcomed) is None
    mtime = datetime(2026, 11, 24, 15, 10, 2, tzinfo=UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \S+", local_time(mtime))


@pytest.mark.parametrize(
    ("line", "meant"),
    [
        ("lsit", "list"),
        ("stauts", "status"),
        ("quti", "quit"),
        ("ls", "list"),
        ("LS docs", "list docs"),
        ("cd docs", "list docs"),
        ("gte sample.txt", "get sample.txt"),
        ("pign", "ping"),
        ("hepl", "help"),
        ("ping me", None),  # a command word with words after it: a message by the rule
        ("pin the notice", None),  # ping takes nothing: no guess
        ("hello there", None),
        ("ok", None),
        ("list", None),  # the word itself is no typo (it would have run)
    ],
)
def test_a_message_like_a_command_gets_a_hint(line: str, meant: str | None) -> None:
    assert command_hint(line, COMPLETION_WORDS) == meant


def test_one_edit_apart() -> None:
    assert one_edit_apart("lsit", "list")  # swapped
    assert one_edit_apart("lst", "list")  # missing
    assert one_edit_apart("lisst", "list")  # extra
    assert one_edit_apart("lisx", "list")  # wrong
    assert not one_edit_apart("list", "list")
    assert not one_edit_apart("sitl", "list")
    assert not one_edit_apart("lsti", "list")  # two swaps


def test_a_swap_is_likelier_than_a_missing_letter() -> None:
    assert command_hint("stauts", ["stats", "status"]) == "status"
    assert command_hint("stat", ["stats", "status"]) == "stats"
    assert command_hint("lis", ["list", "lisp"]) is None  # as near as each other


def test_the_stats_table_aligns_names_left_and_values_right() -> None:
    figures = {"uptime_seconds": 12.5, "bytes_sent": 1234567, "timeouts": 0}
    assert stats_lines(figures) == [
        "uptime_seconds   12.500",
        "bytes_sent      1234567",
        "timeouts              0",
    ]
    assert stats_lines({}) == []
    assert stats_lines({"x\x1b[2J": 1}) == ["x\\x1b[2J  1"]  # a name cannot drive the terminal


def test_a_message_that_is_a_path_written_as_a_shell_would_gets_a_hint() -> None:
    files = ["sample.txt", "docs/a.txt", "docs/sub/b.txt"]
    assert path_hint("./sample.txt", files) == "get sample.txt"
    assert path_hint("docs/", files) == "list docs"  # what TAB completes
    assert path_hint("docs", files) == "list docs"
    assert path_hint("./docs/sub/", files) == "list docs/sub"
    assert path_hint("sample.txt", files) is None  # that one the server fetches itself
    assert path_hint("./nothing.txt", files) is None
    assert path_hint("hello there", files) is None
    assert path_hint("docs/", []) is None  # nothing listed yet: no guess
