"""The client's overall bounds against a hostile server: time, records, sizes, disk.

A scripted fake server (tests/support/fake_server.py) drips a reply a byte at
a time, announces more records than any listing has, streams records without
end, or announces a body far larger than the file or the disk. The client
must give up within its limits, hold no more than its caps, write nothing it
refused, and never read on after it stopped saving a body.
"""

from __future__ import annotations

import hashlib
import os
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import filedock.client.download
from filedock import protocol as p
from filedock.cli.client import client_main
from filedock.client.client import Client
from filedock.errors import ConnectionLost, ProtocolError, SaveError, TimedOut, TooLarge
from tests.integration.test_client_hostile import DiskFull, files_in
from tests.support.fake_server import FakeServer, Peer, Script

HOST = "127.0.0.1"
MiB = 1024 * 1024
BODY = b"hello"
BODY_SHA = hashlib.sha256(BODY).hexdigest()
RECORD = b"Client01\t2026-11-24 15:29:28\t-\t127.0.0.1:49559\n"


def drip(data: bytes, every: float = 0.2, limit: int = 200, head: bytes = b"") -> Script:
    """Greet, answer the first command with ``head``, then ``data`` a byte every ``every`` s."""

    def script(peer: Peer) -> None:
        peer.greet()
        peer.line()
        peer.send(head)
        for byte in data[:limit]:
            peer.send(bytes([byte]))
            time.sleep(every)  # the server's pace: it is what is being tested
        peer.wait_closed()

    return script


def answer(data: bytes | Callable[[Peer], None]) -> Script:
    """Greet, then answer the first command with ``data``, then serve PING and EXIT."""

    def script(peer: Peer) -> None:
        peer.greet()
        peer.line()
        if callable(data):
            data(peer)
        else:
            peer.send(data)
        peer.serve_rest()

    return script


# -- time ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("head", "rest"),
    [(b"ACK ", b"hello there" * 20), (b"STATUS 50\n", RECORD * 50)],
    ids=["a reply line", "records"],
)
def test_a_dripping_reply_is_bounded_as_a_whole(
    fake_server: Callable[[Script], FakeServer], head: bytes, rest: bytes
) -> None:
    """Each byte comes within the timeout; the whole reply does not."""
    server = fake_server(drip(rest, head=head))
    with Client(HOST, server.port, timeout=1.0) as client:
        started = time.monotonic()
        with pytest.raises(TimedOut, match="whole answer within 1 s"):
            client.say("hi") if head == b"ACK " else client.status()
        took = time.monotonic() - started
        assert client.closed
    assert 0.9 < took < 2.5, f"gave up after {took:.2f} s"


def test_a_dripping_greeting_is_bounded(fake_server: Callable[[Script], FakeServer]) -> None:
    def script(peer: Peer) -> None:
        for byte in b"NAME Client01" * 10:
            peer.send(bytes([byte]))
            time.sleep(0.2)

    server = fake_server(script)
    started = time.monotonic()
    with pytest.raises(TimedOut):
        Client(HOST, server.port, timeout=1.0)
    assert time.monotonic() - started < 2.5


def test_a_dripping_tls_handshake_is_bounded_as_a_whole(
    fake_server: Callable[[Script], FakeServer],
) -> None:
    """A 16 KiB handshake record a byte at a time: connect_timeout bounds all of it."""

    def script(peer: Peer) -> None:
        peer.sock.recv(65536)  # the ClientHello
        peer.send(b"\x16\x03\x03\x40\x00")
        for _ in range(50):
            peer.send(b"\x02")
            time.sleep(0.2)

    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    server = fake_server(script)
    started = time.monotonic()
    with pytest.raises(TimedOut, match="TLS handshake"):
        Client(HOST, server.port, timeout=5, connect_timeout=1.0, tls=context)
    assert time.monotonic() - started < 2.5


def test_ping_with_timeout_3_against_a_drip_ends_in_3_s(
    fake_server: Callable[[Script], FakeServer],
) -> None:
    """The one-shot command of the report: ``ping --timeout 3`` against 1 byte a second."""
    server = fake_server(drip(b"PONG" * 100, every=0.5, head=b"P"))
    started = time.monotonic()
    code = client_main(["--port", str(server.port), "--timeout", "3", "ping"])
    took = time.monotonic() - started
    assert code == 3
    assert 2.9 < took < 5.0, f"took {took:.2f} s"


def test_max_time_bounds_a_dripping_body(
    fake_server: Callable[[Script], FakeServer], tmp_path: Path
) -> None:
    """During a body, timeout bounds each silence and max_time the whole command."""

    def body(peer: Peer) -> None:
        peer.send(f"FILE 1000 {BODY_SHA} x\n".encode())
        for _ in range(100):
            peer.send(b"x")
            time.sleep(0.1)

    server = fake_server(answer(body))
    with Client(HOST, server.port, timeout=1.0, max_time=1.5) as client:
        started = time.monotonic()
        with pytest.raises(TimedOut, match=r"did not finish within 1\.5 s"):
            client.get("x", tmp_path / "downloads")
        took = time.monotonic() - started
        assert client.closed
    assert 1.4 < took < 3.0, f"gave up after {took:.2f} s"
    assert files_in(tmp_path) == []


def test_without_max_time_a_slow_body_that_keeps_coming_is_received(
    fake_server: Callable[[Script], FakeServer], tmp_path: Path
) -> None:
    """The timeout is per silence in a body: a slow honest server is not cut."""
    data = b"0123456789" * 2

    def body(peer: Peer) -> None:
        peer.send(f"FILE {len(data)} {hashlib.sha256(data).hexdigest()} x\n".encode())
        for byte in data:
            peer.send(bytes([byte]))
            time.sleep(0.05)

    server = fake_server(answer(body))
    with Client(HOST, server.port, timeout=0.5) as client:
        assert client.get("x", tmp_path).read_bytes() == data  # 1 s in all, over 0.5 s


# -- records ---------------------------------------------------------------------------


@pytest.mark.parametrize("word", ["STATUS", "FILES"])
def test_a_record_count_over_the_cap_is_refused_before_any_record(
    fake_server: Callable[[Script], FakeServer], word: str
) -> None:
    server = fake_server(answer(f"{word} 99999999999999999999\n".encode() + RECORD * 10))
    with Client(HOST, server.port, timeout=5) as client:
        with pytest.raises(ProtocolError, match="over the limit"):
            client.status() if word == "STATUS" else client.list()
        assert client.closed


def test_endless_records_stop_at_the_byte_cap(
    fake_server: Callable[[Script], FakeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(p, "MAX_RECORD_BYTES", MiB)  # the same rule, cheaper to reach
    record = b"Client01\t2026-11-24 15:29:28\t-\t" + b"a" * 4000 + b"\n"
    sent: list[int] = []

    def records(peer: Peer) -> None:
        peer.send(f"STATUS {p.MAX_RECORDS}\n".encode())
        for count in range(1, 10_000):
            peer.send(record * 10)
            sent.append(count * 10 * len(record))

    server = fake_server(answer(records))  # the fake ends quietly when the client hangs up
    with Client(HOST, server.port, timeout=10) as client:
        with pytest.raises(ProtocolError, match="bytes of records"):
            client.status()
        assert client.closed
    server.close()
    assert sent[-1] < 20 * MiB  # the client hung up soon after the cap


# -- sizes and the disk -----------------------------------------------------------------


def huge_file(size: int) -> Script:
    """A FILE header announcing ``size`` bytes, then bytes until the client hangs up."""

    def body(peer: Peer) -> None:
        peer.send(f"FILE {size} {BODY_SHA} x\n".encode())
        chunk = b"\0" * MiB
        try:
            for _ in range(min(size // MiB, 200)):
                peer.send(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass

    return answer(body)


def test_max_size_refuses_a_file_before_writing_it(
    fake_server: Callable[[Script], FakeServer], tmp_path: Path
) -> None:
    server = fake_server(huge_file(10**12))
    with Client(HOST, server.port, timeout=5, max_size=1000) as client:
        with pytest.raises(TooLarge, match="over the limit of 1000 bytes"):
            client.get("x", tmp_path / "downloads")
        assert client.closed  # 10**12 bytes are not worth reading to stay in step
    assert files_in(tmp_path) == []


def test_a_refused_file_in_a_pipelined_get_does_not_blame_the_others(
    fake_server: Callable[[Script], FakeServer], tmp_path: Path
) -> None:
    server = fake_server(huge_file(10**12))
    with Client(HOST, server.port, timeout=5, max_size=1000) as client:
        outcomes = client.get_many(["x", "y", "z"], tmp_path)
        assert client.closed
    assert isinstance(outcomes[0], TooLarge)
    for outcome in outcomes[1:]:
        assert type(outcome) is ConnectionLost
        assert "not fetched" in str(outcome)
    assert files_in(tmp_path) == []


def test_a_small_file_over_max_size_is_skipped_and_the_session_goes_on(
    fake_server: Callable[[Script], FakeServer], tmp_path: Path
) -> None:
    server = fake_server(answer(f"FILE {len(BODY)} {BODY_SHA} x\n".encode() + BODY))
    with Client(HOST, server.port, timeout=5, max_size=3) as client:
        with pytest.raises(TooLarge):
            client.get("x", tmp_path / "downloads")
        assert not client.closed
        assert client.ping() < 1.0
    assert files_in(tmp_path) == []


def test_a_file_larger_than_the_free_space_is_refused_before_writing(
    fake_server: Callable[[Script], FakeServer], tmp_path: Path
) -> None:
    """The report's case: 10**12 bytes announced for a file LIST called 5 bytes."""
    announced = 10**18  # more than any disk this runs on
    info = os.statvfs(tmp_path)
    assert info.f_bavail * info.f_frsize < announced
    server = fake_server(huge_file(announced))
    with Client(HOST, server.port, timeout=5) as client:
        with pytest.raises(TooLarge, match="no room"):
            client.get("x", tmp_path / "downloads")
        assert client.closed
    assert files_in(tmp_path) == []


def test_after_a_write_error_the_client_stops_reading_and_hangs_up(
    fake_server: Callable[[Script], FakeServer],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The disk fills during a body: the rest of it is never read."""
    announced = 1024 * MiB
    sent: list[int] = []

    def body(peer: Peer) -> None:
        peer.send(f"FILE {announced} {BODY_SHA} x\n".encode())
        chunk = b"\0" * MiB
        try:
            for count in range(1, announced // MiB + 1):
                peer.send(chunk)
                sent.append(count * MiB)
        except (BrokenPipeError, ConnectionResetError):
            pass

    server = fake_server(answer(body))
    disk = DiskFull()
    monkeypatch.setattr(filedock.client.download, "os", disk)
    with Client(HOST, server.port, timeout=5) as client:
        with pytest.raises(SaveError, match="No space left on device"):
            client.get("x", tmp_path / "downloads")
        assert client.closed
        with pytest.raises(ConnectionLost):
            client.ping()
    server.close()
    assert disk.writes >= 1
    assert sent[-1] < 200 * MiB, f"{sent[-1] // MiB} MiB read after the disk filled"
    assert files_in(tmp_path) == []


# -- the mode of saved files ------------------------------------------------------------------


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_a_saved_file_gets_the_mode_the_umask_gives(
    fake_server: Callable[[Script], FakeServer], tmp_path: Path, umask: int
) -> None:
    server = fake_server(answer(f"FILE {len(BODY)} {BODY_SHA} x\n".encode() + BODY))
    old = os.umask(umask)
    try:
        with Client(HOST, server.port, timeout=5) as client:
            saved = client.get("x", tmp_path)
    finally:
        os.umask(old)
    assert saved.stat().st_mode & 0o777 == 0o666 & ~umask


# -- numbers on the command line and in the library -------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["--timeout", "-1"],
        ["--timeout", "0"],
        ["--timeout", "nan"],
        ["--timeout", "inf"],
        ["--connect-timeout", "-5"],
        ["--connect-timeout", "nan"],
        ["--port", "70000"],
        ["--port", "0"],
        ["--port", "-1"],
        ["--port", "ten"],
        ["--max-time", "-3"],
        ["--max-time", "nan"],
        ["--max-size", "-1"],
        ["--max-size", "5Q"],
        ["--port", "5_0000"],  # int() reads these as 50000
        ["--port", "\u0665\u0660\u0660\u0660\u0660"],
        ["--timeout", "\uff13"],  # a fullwidth 3
        ["--max-time", "1_0"],
        ["--max-size", "\u0665K"],
    ],
    ids=lambda argv: " ".join(argv).encode("ascii", "backslashreplace").decode(),
)
def test_a_bad_number_is_a_usage_error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        client_main([*argv, "ping"])
    assert caught.value.code == 2
    err = capsys.readouterr().err
    assert f"argument {argv[0]}: '{argv[1]}'" in err  # names the option and the value
    assert "Traceback" not in err


def test_a_bad_port_in_the_environment_is_a_usage_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FILEDOCK_PORT", "70000")
    with pytest.raises(SystemExit) as caught:
        client_main(["ping"])
    assert caught.value.code == 2
    assert "FILEDOCK_PORT: '70000'" in capsys.readouterr().err


@pytest.mark.parametrize(
    "options",
    [
        {"port": 70000},
        {"port": 0},
        {"port": True},
        {"timeout": -1},
        {"timeout": 0},
        {"timeout": float("nan")},
        {"timeout": float("inf")},
        {"connect_timeout": -5},
        {"max_time": -1.0},
        {"max_time": float("nan")},
        {"max_size": -1},
    ],
    ids=str,
)
def test_the_library_refuses_bad_numbers(options: dict[str, Any]) -> None:
    kwargs: dict[str, Any] = {"port": 1, **options}
    with pytest.raises(ValueError, match=next(iter(options))):
        Client(HOST, **kwargs)


def test_sizes_and_times_are_read_as_documented(
    fake_server: Callable[[Script], FakeServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: dict[str, Any] = {}

    def fake_client(host: str, port: int, **options: Any) -> Any:
        seen.update(options, port=port)
        raise ConnectionLost("not connecting in this test")

    monkeypatch.setattr("filedock.cli.client.Client", fake_client)
    client_main(["--port", "65535", "--max-size", "2K", "--max-time", "0", "ping"])
    assert seen["port"] == 65535
    assert seen["max_size"] == 2048
    assert seen["max_time"] is None
    client_main(["--max-size", "0", "--max-time", "2.5", "ping"])
    assert seen["max_size"] is None
    assert seen["max_time"] == 2.5
