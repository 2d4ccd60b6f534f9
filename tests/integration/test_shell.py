"""The interactive shell's commands against an in-process server, without a terminal: help, quit."""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from pathlib import Path

from filedock.cli.shell import Shell
from filedock.client.client import Client
from tests.support import SGR, write_file


def test_help_explains_every_command(connect: Callable[..., Client]) -> None:
    out = io.StringIO()
    shell = Shell(connect(), "downloads", out=out, err=io.StringIO(), line_editing=False)
    assert shell.execute("help") is False
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("[SERVER] CMDs: ")
    commands = ("help", "list [folder]", "status", "who", "ping", "uptime", "about", "get <file>")
    for command in (*commands, "hash <path>"):
        assert any(line.split("  ")[1:2] == [command] for line in lines), command
    for client_side in ("exit, quit", "Ctrl-D", "Ctrl-C", "TAB", "say <text>"):
        assert client_side in out.getvalue()
    assert not SGR.search(out.getvalue().encode())  # a StringIO is no terminal


def test_quit_leaves_like_exit(connect: Callable[..., Client]) -> None:
    out = io.StringIO()
    shell = Shell(connect(), out=out, err=io.StringIO(), line_editing=False)
    assert shell.execute("QUIT") is True
    assert out.getvalue() == "[SERVER] BYE\n"


def test_a_mistyped_command_is_sent_as_a_message_and_gets_a_hint(
    connect: Callable[..., Client],
) -> None:
    out = io.StringIO()
    shell = Shell(connect(), out=out, err=io.StringIO(), line_editing=False, colour=False)
    assert shell.execute("lsit") is False
    assert shell.execute("cd docs") is False
    assert shell.execute("hello there") is False
    assert out.getvalue().splitlines() == [
        "[SERVER] lsit ACK",  # the assignment's rule: still a message
        "[CLIENT] did you mean 'list'? (say lsit sends it as a message)",
        "[SERVER] cd docs ACK",
        "[CLIENT] did you mean 'list docs'? (say cd docs sends it as a message)",
        "[SERVER] hello there ACK",
    ]


def test_piped_messages_get_no_hint(connect: Callable[..., Client]) -> None:
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(connect(), out=out, err=err, line_editing=False, colour=False, batch=True)
    assert shell.execute("lsit") is False
    assert out.getvalue() == "[SERVER] lsit ACK\n"
    assert err.getvalue() == ""


def test_ping_alone_is_the_assignments_line_and_ping_c_shows_round_trips(
    connect: Callable[..., Client],
) -> None:
    out = io.StringIO()
    shell = Shell(connect(), out=out, err=io.StringIO(), line_editing=False, colour=False)
    assert shell.execute("ping") is False
    assert out.getvalue() == "[SERVER] PONG\n"  # the walk-through's screen, exactly
    assert shell.execute("ping -c 3") is False
    lines = out.getvalue().splitlines()[1:]
    assert len(lines) == 4
    times = [float(re.fullmatch(r"\[SERVER\] PONG (\d+\.\d\d) ms", line)[1]) for line in lines[:3]]  # type: ignore[index]
    summary = re.fullmatch(
        r"\[CLIENT\] 3 pings, round trip min/avg/max (\d+\.\d\d)/(\d+\.\d\d)/(\d+\.\d\d) ms",
        lines[3],
    )
    assert summary is not None
    low, mean, high = (float(value) for value in summary.groups())
    assert low == min(times)
    assert high == max(times)
    assert low <= mean <= high
    assert shell.execute("ping me") is False  # words other than -c N: a message, as ever
    assert out.getvalue().endswith("[SERVER] ping me ACK\n")
    assert shell.execute("ping -c 0") is False
    assert shell.status == 2


def test_stats_prints_the_counters_as_a_table(connect: Callable[..., Client]) -> None:
    out = io.StringIO()
    shell = Shell(connect(), out=out, err=io.StringIO(), line_editing=False)
    assert shell.execute("ping") is False
    assert shell.execute("STATS") is False
    lines = out.getvalue().splitlines()
    assert lines[1] == "[SERVER] --- STATS ---"
    assert lines[-1] == "[SERVER] -----"
    table = dict(line.split() for line in lines[2:-1])
    assert (table["requests_ping"], table["requests_stats"]) == ("1", "1")


def test_a_bare_folder_or_dotted_path_gets_a_hint_once_listed(
    connect: Callable[..., Client], repo: Path
) -> None:
    write_file(repo / "docs" / "a.txt", b"a\n")
    out = io.StringIO()
    shell = Shell(connect(), out=out, err=io.StringIO(), line_editing=False, colour=False)
    assert shell.execute("list") is False  # what TAB completes from, fetched
    start = len(out.getvalue())
    assert shell.execute("docs/") is False
    assert shell.execute("./sample.txt") is False
    assert out.getvalue()[start:].splitlines() == [
        "[SERVER] docs/ ACK",
        "[CLIENT] did you mean 'list docs'? (say docs/ sends it as a message)",
        "[SERVER] ./sample.txt ACK",
        "[CLIENT] did you mean 'get sample.txt'? (say ./sample.txt sends it as a message)",
    ]


class _CtrlCAfter(io.StringIO):
    """A script's input that is cut by Ctrl-C once its lines are read."""

    def readline(self, size: int | None = -1) -> str:
        line = super().readline()
        if not line:
            raise KeyboardInterrupt
        return line


def test_ctrl_c_stops_piped_commands_with_130_even_after_a_failure(
    connect: Callable[..., Client],
) -> None:
    out, err = io.StringIO(), io.StringIO()
    client = connect()
    shell = Shell(
        client, out=out, err=err, colour=False, batch=True, keep_going=True,
        stdin=_CtrlCAfter("get nope.txt\nping\n"),
    )  # fmt: skip
    assert shell.run() == 130  # the interruption, not the earlier failure's 5
    assert out.getvalue() == "[SERVER] PONG\n"
    assert "not-found" in err.getvalue()
    assert client.closed  # it left the server
