"""The library checks its arguments before anything is sent, and send_line answers
as the prompt would: a bad argument leaves the connection as it was."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from filedock import protocol as p
from filedock.cli.shell import Shell
from filedock.client.client import Client, DownloadResult, LineTooLong
from filedock.errors import BadRequest
from filedock.protocol import DEFAULT_MAX_LINE
from tests.conftest import SAMPLE
from tests.support import HOST, ServerThread

SHA = "a" * 64

# A call with one bad argument, and the error it must raise at once.
BAD_CALLS: dict[str, tuple[Callable[[Client], Any], type[Exception]]] = {
    "get dest_dir int": (lambda c: c.get("sample.txt", 42), TypeError),  # type: ignore[arg-type]
    "get path int": (lambda c: c.get(7), TypeError),  # type: ignore[arg-type]
    "get progress not callable": (
        lambda c: c.get("sample.txt", progress=3),  # type: ignore[arg-type]
        TypeError,
    ),
    "download resume int": (lambda c: c.download("sample.txt", resume=0), TypeError),  # type: ignore[arg-type]
    "download save_as int": (lambda c: c.download("sample.txt", save_as=5), TypeError),  # type: ignore[arg-type]
    "get_many one str": (lambda c: c.get_many("sample.txt"), TypeError),
    "get_many int inside": (lambda c: c.get_many(["sample.txt", 3]), TypeError),  # type: ignore[list-item]
    "list folder int": (lambda c: c.list(5), TypeError),  # type: ignore[arg-type]
    "hash None": (lambda c: c.hash(None), TypeError),  # type: ignore[arg-type]
    "say bytes": (lambda c: c.say(b"hi"), TypeError),  # type: ignore[arg-type]
    "get_range negative": (lambda c: c.get_range("sample.txt", -1, SHA, io.BytesIO()), ValueError),
    "get_range bad digest": (
        lambda c: c.get_range("sample.txt", 0, "xyz", io.BytesIO()),
        ValueError,
    ),
    "get_range no sink": (lambda c: c.get_range("sample.txt", 0, SHA, "out"), TypeError),  # type: ignore[arg-type]
    "download_tree dest int": (lambda c: c.download_tree("", 1), TypeError),  # type: ignore[arg-type]
    "mirror delete str": (lambda c: c.mirror(None, "copy", delete="yes"), TypeError),  # type: ignore[arg-type]
    "upload remote int": (lambda c: c.upload("x", 1), TypeError),  # type: ignore[arg-type]
    "upload_tree local int": (lambda c: c.upload_tree(1, "x"), TypeError),  # type: ignore[arg-type]
    "send_line int": (lambda c: c.send_line(1), TypeError),  # type: ignore[arg-type]
    "send_line blank": (lambda c: c.send_line("  "), ValueError),
    "send_line two lines": (lambda c: c.send_line("ping\nwho"), ValueError),
    "send_line range": (lambda c: c.send_line(f"range 0 {SHA} sample.txt"), ValueError),
}


@pytest.mark.parametrize("case", list(BAD_CALLS))
def test_a_bad_argument_raises_before_anything_is_sent(
    connect: Callable[..., Client],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    case: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    call, error = BAD_CALLS[case]
    client = connect()
    with caplog.at_level(logging.INFO):
        with pytest.raises(error):
            call(client)
        assert not client.closed
        assert client.ping() >= 0  # the next call works: the conversation is in step
        assert client.say("still here") == "still here"
    assert "Sent file" not in caplog.text
    assert not (tmp_path / "downloads").exists()


def test_send_line_returns_what_the_line_asks_for(
    connect: Callable[..., Client], downloads: Path
) -> None:
    client = connect()
    assert isinstance(client.send_line("ping"), float)
    assert isinstance(client.send_line("  PING\t"), float)  # as the server reads it
    assert client.send_line("who") == [client.name]
    assert isinstance(client.send_line("uptime"), int)
    assert client.send_line("about") == client.about()
    assert client.send_line("help") == client.help()
    stats = client.send_line("stats")
    assert isinstance(stats, dict)
    assert stats["requests_ping"] == 2  # the two pings above
    [record] = client.send_line("status")  # type: ignore[misc]
    assert isinstance(record, p.ClientRecord)
    assert [info.path for info in client.send_line("list")] == ["sample.txt"]  # type: ignore[union-attr]
    digest = client.send_line("hash sample.txt")
    assert isinstance(digest, p.FileDigest)
    assert digest.size == len(SAMPLE)
    assert client.send_line("ping me") == "ping me"  # a command word with words after: a message
    assert client.send_line("say ping") == "ping"
    result = client.send_line("get sample.txt", downloads)
    assert isinstance(result, DownloadResult)
    assert (downloads / "sample.txt").read_bytes() == SAMPLE
    by_name = client.send_line("sample.txt", downloads / "again")
    assert isinstance(by_name, DownloadResult)
    assert (downloads / "again" / "sample.txt").read_bytes() == SAMPLE
    with pytest.raises(BadRequest):
        client.send_line("get")  # the server's own words: get needs a file
    assert client.send_line("exit") is True
    assert client.closed


# -- the server's line limit ------------------------------------------------------------


def test_a_line_over_the_servers_limit_is_refused_unsent(
    connect: Callable[..., Client], downloads: Path
) -> None:
    client = connect()
    exactly = "x" * (DEFAULT_MAX_LINE - len("SAY \n"))
    assert client.say(exactly) == exactly  # at the limit: sent
    with pytest.raises(LineTooLong) as refused:
        client.say(exactly + "x")
    assert "4097 bytes, over the server's limit of 4096" in str(refused.value)
    with pytest.raises(LineTooLong):
        client.send_line("y" * 5000)
    assert not client.closed
    assert client.ping() >= 0  # the server never saw it, and the session goes on
    outcomes = client.get_many(["z" * 5000, "sample.txt"], downloads)
    assert isinstance(outcomes[0], LineTooLong)
    assert isinstance(outcomes[1], DownloadResult)


def test_the_line_limit_follows_a_server_with_a_larger_one(
    make_server: Callable[..., ServerThread],
) -> None:
    server = make_server(max_line=8192)
    with Client(HOST, server.port, timeout=10, max_line=8192) as client:
        assert client.say("x" * 5000) == "x" * 5000
    for bad in (63, 32769, "4096", True):
        with pytest.raises(ValueError, match="max_line"):
            Client(HOST, server.port, max_line=bad)  # type: ignore[arg-type]


def test_the_prompt_says_a_long_line_was_not_sent_and_goes_on(
    connect: Callable[..., Client],
) -> None:
    out, err = io.StringIO(), io.StringIO()
    shell = Shell(connect(), out=out, err=err, line_editing=False, colour=False, batch=True)
    assert shell.execute("q" * 5000) is False
    assert err.getvalue() == (
        "[CLIENT] not sent: the line is 5001 bytes, over the server's limit of 4096 bytes"
        " (its --max-line, the line feed included)\n"
    )
    assert shell.status == 1
    assert shell.execute("ping") is False
    assert out.getvalue() == "[SERVER] PONG\n"


def test_the_constructor_checks_its_arguments_before_connecting(server: ServerThread) -> None:
    for bad in ({"host": 127}, {"tls": 1}, {"token": 42}, {"cache_dir": 3}):
        options: dict[str, Any] = {"host": HOST, **bad}
        with pytest.raises(TypeError):
            Client(port=server.port, **options)
    assert server.session_count() == 0  # none of them connected
