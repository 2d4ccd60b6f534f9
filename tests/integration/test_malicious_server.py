"""The client library against a lying server: it refuses, and saves nothing.

A tiny fake server (a plain socket in a thread on 127.0.0.1, port 0) greets
the client like filedock does, then answers each GET with what a test gives it.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import pytest

from filedock.client.client import Client
from filedock.errors import ConnectionLost, FiledockError, IntegrityError, ProtocolError
from tests.support.fake_server import HOST, Answer, FakeServer, answering, requested

BODY = b"the payload of x\n"
BODY_SHA = hashlib.sha256(BODY).hexdigest()
OTHER_SHA = hashlib.sha256(b"something else").hexdigest()
BIG_BODY = bytes(range(256)) * (5 * 4096)  # 5 MiB: over the client's in-line limit


def file_reply(size: int | str, sha: str, path: str, body: bytes) -> bytes:
    return f"FILE {size} {sha} {path}\n".encode() + body


@pytest.fixture
def lying_server(fake_server: Callable[..., FakeServer]) -> Callable[[Answer], FakeServer]:
    """A fake server that greets, answers PING and EXIT, and every other line with ``answer``."""
    return lambda answer: fake_server(answering(answer))


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder two levels under tmp_path, made the current folder.

    ``downloads/../../x`` still lands inside tmp_path, where the test looks.
    """
    work = tmp_path / "home" / "work"
    work.mkdir(parents=True)
    monkeypatch.chdir(work)
    return work


def entries(root: Path) -> set[Path]:
    """Every path under ``root`` (symlinks not followed)."""
    found: set[Path] = set()
    for folder, dirs, files in os.walk(root):
        found.update(Path(folder) / name for name in [*dirs, *files])
    return found


def assert_nothing_saved(tmp_path: Path, downloads: Path, before: set[Path]) -> None:
    after = entries(tmp_path)
    new = after - before
    # At most the downloads folder (and folders in it) appeared; no file anywhere.
    assert all(path == downloads or downloads in path.parents for path in new), sorted(new)
    assert not [path for path in after if not path.is_dir() or path.is_symlink()], sorted(after)
    assert not [path for path in after if path.name == "x" or ".part" in path.name]
    assert not os.path.lexists(os.path.normpath(downloads / ".." / ".." / "x"))
    assert not os.path.lexists(tmp_path / "abs" / "x")


# Each case: what the client asks for, how the fake answers, the error expected,
# and whether the session can go on (the body was read whole).
CASES: dict[str, tuple[str, Answer, type[FiledockError], bool]] = {
    "wrong sha256": (
        "x",
        lambda line: (file_reply(len(BODY), OTHER_SHA, requested(line), BODY), False),
        IntegrityError,
        True,
    ),
    "wrong sha256, large body": (
        "x",
        lambda line: (file_reply(len(BIG_BODY), OTHER_SHA, requested(line), BIG_BODY), False),
        IntegrityError,
        True,
    ),
    "body corrupted": (
        "x",
        lambda line: (file_reply(len(BODY), BODY_SHA, requested(line), BODY.upper()), False),
        IntegrityError,
        True,
    ),
    "../../x for x": (
        "x",
        lambda line: (file_reply(len(BODY), BODY_SHA, "../../x", BODY), False),
        ProtocolError,
        False,
    ),
    "../../x echoed": (
        "../../x",
        lambda line: (file_reply(len(BODY), BODY_SHA, requested(line), BODY), False),
        ProtocolError,
        False,
    ),
    "another path": (
        "sample.txt",
        lambda line: (file_reply(len(BODY), BODY_SHA, "x", BODY), False),
        ProtocolError,
        False,
    ),
    "absolute for x": (
        "x",
        lambda line: (file_reply(len(BODY), BODY_SHA, "{abs}", BODY), False),
        ProtocolError,
        False,
    ),
    "absolute echoed": (
        "{abs}",
        lambda line: (file_reply(len(BODY), BODY_SHA, requested(line), BODY), False),
        ProtocolError,
        False,
    ),
    "backslashes echoed": (
        "a\\..\\..\\x",
        lambda line: (file_reply(len(BODY), BODY_SHA, requested(line), BODY), False),
        ProtocolError,
        False,
    ),
    "empty component echoed": (
        "a//x",
        lambda line: (file_reply(len(BODY), BODY_SHA, requested(line), BODY), False),
        ProtocolError,
        False,
    ),
    "dot component echoed": (
        "./x",
        lambda line: (file_reply(len(BODY), BODY_SHA, requested(line), BODY), False),
        ProtocolError,
        False,
    ),
    "NUL echoed": (
        "x\0",
        lambda line: (file_reply(len(BODY), BODY_SHA, requested(line), BODY), False),
        ProtocolError,
        False,
    ),
    "fewer bytes, then close": (
        "x",
        lambda line: (file_reply(len(BODY) + 100, BODY_SHA, requested(line), BODY), True),
        ConnectionLost,
        False,
    ),
    "large body cut short": (
        "x",
        lambda line: (file_reply(len(BIG_BODY), OTHER_SHA, requested(line), BIG_BODY[:-1]), True),
        ConnectionLost,
        False,
    ),
    "non-numeric size": (
        "x",
        lambda line: (file_reply("six", BODY_SHA, requested(line), BODY), False),
        ProtocolError,
        False,
    ),
    "negative size": (
        "x",
        lambda line: (file_reply(-len(BODY), BODY_SHA, requested(line), BODY), False),
        ProtocolError,
        False,
    ),
    "sha256 not hex": (
        "x",
        lambda line: (file_reply(len(BODY), "Z" * 64, requested(line), BODY), False),
        ProtocolError,
        False,
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_client_refuses_a_lying_server(
    lying_server: Callable[[Answer], FakeServer], tmp_path: Path, home: Path, case: str
) -> None:
    asked, answer, error, goes_on = CASES[case]
    absolute = str(tmp_path / "abs" / "x")
    asked = asked.replace("{abs}", absolute)

    def answer_here(line: str) -> tuple[bytes, bool]:
        data, hang_up = answer(line)
        return data.replace(b"{abs}", absolute.encode()), hang_up

    downloads = home / "downloads"
    before = entries(tmp_path)
    server = lying_server(answer_here)
    with Client(HOST, server.port, timeout=5) as client:
        with pytest.raises(error):
            client.get(asked, downloads)
        if goes_on:
            assert not client.closed
            assert client.ping() < 1.0
        else:
            assert client.closed  # the stream cannot be trusted any more
            with pytest.raises(ConnectionLost):
                client.ping()
    server.close()  # the fake has finished: nothing more can arrive
    assert server.lines[1] == f"GET {asked}"
    assert_nothing_saved(tmp_path, downloads, before)


def test_bare_line_answered_with_an_unsafe_file_is_refused(
    lying_server: Callable[[Answer], FakeServer], tmp_path: Path, home: Path
) -> None:
    downloads = home / "downloads"
    before = entries(tmp_path)
    server = lying_server(
        lambda line: (file_reply(len(BODY), BODY_SHA, requested(line), BODY), False)
    )
    with Client(HOST, server.port, timeout=5) as client, pytest.raises(ProtocolError):
        client.send_line("../../x", downloads)
    server.close()
    assert server.lines[1] == "../../x"
    assert_nothing_saved(tmp_path, downloads, before)


def test_an_honest_answer_is_saved(
    lying_server: Callable[[Answer], FakeServer], tmp_path: Path, home: Path
) -> None:
    """The control: the fake server, told the truth, gets the file saved."""
    downloads = home / "downloads"
    server = lying_server(
        lambda line: (file_reply(len(BODY), BODY_SHA, requested(line), BODY), False)
    )
    with Client(HOST, server.port, timeout=5) as client:
        assert client.get("sub/x", downloads) == downloads / "sub" / "x"
        assert client.ping() < 1.0
    server.close()
    assert (downloads / "sub" / "x").read_bytes() == BODY
    assert [path for path in entries(tmp_path) if not path.is_dir()] == [downloads / "sub" / "x"]


def test_errors_are_filedock_errors(
    lying_server: Callable[[Answer], FakeServer], home: Path
) -> None:
    """A server that vanishes mid-body surfaces as ConnectionLost, not an OSError."""
    server = lying_server(
        lambda line: (file_reply(len(BODY), BODY_SHA, requested(line), b""), True)
    )
    with Client(HOST, server.port, timeout=5) as client:
        with pytest.raises(FiledockError) as caught:
            client.get("x", home / "downloads")
        assert isinstance(caught.value, ConnectionLost)
    server.close()
    assert not (home / "downloads" / "x").exists()
