"""Nothing a server sends reaches the terminal as a control or bidirectional character.

A fake server (tests/support/fake_server.py) answers one command with text
full of terminal escapes (OSC, CSI, the 8-bit C1 forms, NEL) and
bidirectional overrides, on every path that prints: each reply of the prompt
and of the one-shot commands, an ``ERR`` (its code and its text), an ``ERR``
or ``FULL`` answered instead of a greeting, error messages built from the
server's words. Every byte printed must be inert, and the text still shown
(as escapes), not dropped.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path

import pytest

from filedock.cli.client import client_main
from filedock.cli.screen import Screen
from filedock.client.results import TransferProgress
from filedock.errors import IntegrityError, NotFound, ProtocolError, ServerFull
from filedock.safetext import is_inert, printable
from tests.support import TypedAtATerminal
from tests.support.fake_server import FakeServer, Peer, Script

# No space or TAB inside: it must survive as one word, one field, one name.
HOSTILE = (
    "\x1b]0;PWNED\x07\x1b[2J"  # retitle the terminal, clear the screen
    "\x9b2J\x9d0;PWNED\x9c\x85"  # the same with 8-bit C1 controls, and NEL
    "invoice\u202efdp.exe"  # shows as invoiceexe.pdf
    "\u2066\u200f\u061c\u2028"
)
SHOWN = ("\\x1b", "\\x9b", "\\u202e")  # what a person sees instead
BODY = b"hello"
BODY_SHA = hashlib.sha256(BODY).hexdigest()
MTIME = "2026-11-24T15:29:28Z"
ACCEPTED = "2026-11-24 15:29:28"


def assert_inert(output: str) -> None:
    lines = output.split("\n")  # not splitlines(): NEL and U+2028 must not count as ends
    bad = [line for line in lines if not is_inert(line)]
    assert not bad, bad


def answering(reply: str, *, first: str = "NAME Client01", to_hello: str | None = None) -> Script:
    """Greet (or not), then answer the first command with ``reply`` and serve the rest."""

    def script(peer: Peer) -> None:
        peer.send(f"{first}\n".encode())
        if not first.startswith("NAME"):
            peer.wait_closed()
            return
        hello = peer.line()
        assert hello is not None
        assert hello.startswith("HELLO")
        peer.send(f"{to_hello or 'WELCOME Client01 fakedock 0.0'}\n".encode())
        if not (to_hello or "WELCOME").startswith("WELCOME"):
            peer.wait_closed()
            return
        if peer.line() is None:
            return
        peer.send(reply.encode())
        peer.serve_rest()

    return script


# command, what the fake server answers it with
REPLIES: dict[str, tuple[str, str]] = {
    "ERR code": ("ping", f"ERR {HOSTILE} text\n"),
    "ERR text": ("ping", f"ERR not-found {HOSTILE} {HOSTILE}\n"),
    "ERR closing": ("ping", f"ERR shutdown {HOSTILE}\n"),
    "ABOUT": ("about", f"ABOUT {HOSTILE} {HOSTILE}\n"),
    "HELP": ("help", f"HELP {HOSTILE}\n"),
    "WHO": ("who", f"WHO Client01 {HOSTILE}\n"),
    "ACK": ("say hi", f"ACK {HOSTILE}\n"),
    "FILES": ("list", f"FILES 1\n{HOSTILE}\t5\t{MTIME}\n"),
    "STATUS": ("status", f"STATUS 1\n{HOSTILE}\t{ACCEPTED}\t-\t{HOSTILE}\n"),
    "FILES as JSON": ("list --json", f"FILES 1\n{HOSTILE}\t5\t{MTIME}\n"),
    "STATUS as JSON": ("status --json", f"STATUS 1\n{HOSTILE}\t{ACCEPTED}\t-\t{HOSTILE}\n"),
    "WHO as JSON": ("who --json", f"WHO Client01 {HOSTILE}\n"),
    "bad record": ("status", f"STATUS 1\n{HOSTILE}\n"),
    "unknown reply": ("ping", f"{HOSTILE} {HOSTILE}\n"),
    "FILE for another path": ("get x", f"FILE 5 {BODY_SHA} {HOSTILE}\n"),
    "FILE with an unsafe path": ("get x", f"FILE 5 {BODY_SHA} ../{HOSTILE}\n"),
}

# Answers instead of the greeting: (first line, answer to HELLO)
GREETINGS: dict[str, tuple[str, str | None]] = {
    "FULL": (f"FULL {HOSTILE} {HOSTILE}", None),
    "garbage": (f"{HOSTILE}", None),
    "ERR to HELLO": ("NAME Client01", f"ERR unauthorized {HOSTILE} {HOSTILE}"),
    "ERR code to HELLO": ("NAME Client01", f"ERR {HOSTILE} text"),
    "NAME": (f"NAME {HOSTILE}", f"WELCOME {HOSTILE} {HOSTILE}"),
    "WELCOME": ("NAME Client01", f"WELCOME Client01 {HOSTILE}"),
}


def run_client(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    port: int,
    argv: list[str],
    typed: str = "",
) -> tuple[int, str]:
    monkeypatch.setenv("NO_COLOR", "1")  # the escapes of colours are ours, not the server's
    monkeypatch.setenv("FILEDOCK_HISTORY_FILE", "/dev/null")
    # The prompt as a person sees it: its greeting is printed too (piped, it is not).
    monkeypatch.setattr("sys.stdin", TypedAtATerminal(typed))
    code = client_main(["--port", str(port), "--timeout", "2", *argv])
    out, err = capsys.readouterr()
    return code, out + err


@pytest.mark.parametrize("mode", ["one-shot", "prompt"])
@pytest.mark.parametrize("case", list(REPLIES))
def test_every_reply_is_printed_inert(
    fake_server: Callable[[Script], FakeServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    case: str,
    mode: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    command, reply = REPLIES[case]
    if mode == "prompt" and "--json" in command:
        pytest.skip("--json is for the one-shot commands")
    server = fake_server(answering(reply))
    if mode == "one-shot":
        code, output = run_client(capsys, monkeypatch, server.port, command.split(" "))
    else:
        code, output = run_client(capsys, monkeypatch, server.port, [], f"{command}\nexit\n")
    assert "Traceback" not in output
    assert_inert(output)
    assert any(shown in output for shown in SHOWN), output
    assert code in (0, 1, 3, 5), output


@pytest.mark.parametrize("mode", ["one-shot", "prompt"])
@pytest.mark.parametrize("case", list(GREETINGS))
def test_every_greeting_is_printed_inert(
    fake_server: Callable[[Script], FakeServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    mode: str,
) -> None:
    first, to_hello = GREETINGS[case]
    server = fake_server(answering("PONG\n", first=first, to_hello=to_hello))
    argv = ["ping"] if mode == "one-shot" else []
    code, output = run_client(capsys, monkeypatch, server.port, argv, "ping\nexit\n")
    assert "Traceback" not in output
    assert_inert(output)
    if mode == "prompt" or case not in ("NAME", "WELCOME"):  # one-shot shows no greeting
        assert any(shown in output for shown in SHOWN), output
    if case == "FULL":
        assert "[SERVER] Server is at capacity: " in output
        assert code == 4


def test_printable_escapes_c1_and_bidirectional_controls() -> None:
    for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)):
        if code != 0x09:
            assert printable(chr(code)) == f"\\x{code:02x}"
    for code in (0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F), *range(0x2066, 0x206A)):
        assert printable(chr(code)) == f"\\u{code:04x}"
    assert printable("invoice\u202efdp.exe") == "invoice\\u202efdp.exe"
    assert printable("tab\tgrüße 日本 ✓") == "tab\tgrüße 日本 ✓"  # text people read stays


def test_the_str_of_an_error_is_inert() -> None:
    """A script that prints an exception cannot be made to drive its terminal."""
    errors = [
        NotFound(HOSTILE),
        NotFound(HOSTILE, code=HOSTILE),
        ServerFull(HOSTILE),
        ProtocolError(HOSTILE),
        IntegrityError(HOSTILE, expected="a", actual="b"),
    ]
    for error in errors:
        assert is_inert(str(error))
        assert "\\u202e" in str(error)
    assert NotFound(HOSTILE).text == HOSTILE  # the server's words, for programs
    assert ServerFull(HOSTILE).reason == HOSTILE


def test_a_request_error_with_any_code_is_printed_inert() -> None:
    out = io.StringIO()
    Screen(out, colour=False).request_error(NotFound(HOSTILE, code=HOSTILE), HOSTILE)
    assert_inert(out.getvalue())


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_progress_bar_label_is_inert(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "500")  # wide enough for the whole label
    stream = _Terminal()
    bar = Screen(io.StringIO(), progress=stream, colour=False).transfer_bar(HOSTILE)
    assert bar is not None
    size = 4 * 1024 * 1024
    for done in (0, 2 * 1024 * 1024, size):
        bar(TransferProgress(HOSTILE, done, size, 0, 1, done, size))
    several = Screen(io.StringIO(), progress=stream, colour=False).transfer_bar()
    assert several is not None  # no label: the path of the file moving now is shown
    for done in (0, size):
        several(TransferProgress(HOSTILE, done, size, 1, 2, size + done, 2 * size))
    drawn = stream.getvalue().replace("\r", "").replace("\x1b[K", "")  # the bar's own codes
    assert "\\u202e" in drawn
    assert_inert(drawn)


def test_idle_disconnect_is_said_clearly(
    fake_server: Callable[[Script], FakeServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for argv, typed in ((["ping"], ""), ([], "ping\n")):
        server = fake_server(answering("ERR timeout idle for too long\n"))
        code, output = run_client(capsys, monkeypatch, server.port, argv, typed)
        assert code == 3, output
        assert "[SERVER] ERR timeout idle for too long" in output
        assert "[CLIENT] Disconnected by the server for being idle" in output
