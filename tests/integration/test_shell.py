"""The interactive shell's commands against an in-process server, without a terminal: help, quit."""

from __future__ import annotations

import io
from collections.abc import Callable

from filedock.cli.shell import Shell
from filedock.client.client import Client
from tests.support import SGR


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
