"""The sans-IO protocol core, without a network: framing, requests, replies, records."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterable
from datetime import UTC, datetime

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from filedock import protocol as p
from filedock.errors import BadEncoding, BadRequest, FiledockError, LineTooLong, ProtocolError
from filedock.safetext import is_inert

SHA = hashlib.sha256(b"hello\n").hexdigest()

# --------------------------------------------------------------------------
# Helpers


def drain(reader: p.LineReader) -> list[bytes]:
    """Every complete line the reader holds now."""
    lines = []
    while (line := reader.next_line()) is not None:
        lines.append(line)
    return lines


def frame(chunks: Iterable[bytes], max_line: int) -> tuple[list[bytes], bool, int]:
    """Feed ``chunks`` to a LineReader: the lines, whether it refused a line, what it holds.

    Only the protocol's own error is caught: anything else fails the test.
    """
    reader = p.LineReader(max_line)
    lines: list[bytes] = []
    try:
        for chunk in chunks:
            reader.receive_data(chunk)
            while (line := reader.next_line()) is not None:
                lines.append(line)
            # What is left is an unfinished line, and it is within the limit.
            assert reader.buffered < max_line
    except LineTooLong:
        return lines, True, reader.buffered
    return lines, False, reader.buffered


def one_at_a_time(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def model(data: bytes, max_line: int) -> tuple[list[bytes], bool]:
    """What framing ``data`` must give, written the obvious way."""
    *complete, tail = data.split(b"\n")
    lines: list[bytes] = []
    for segment in complete:
        if len(segment) + 1 > max_line:  # the LF counts
            return lines, True
        lines.append(segment[:-1] if segment.endswith(b"\r") else segment)
    # An unfinished line already max_line long cannot end within the limit.
    return lines, len(tail) >= max_line


def read_back(data: bytes) -> str:
    """The one line a client reads from ``data``, decoded as the client does."""
    reader = p.LineReader(p.CLIENT_MAX_LINE)
    reader.receive_data(data)
    line = reader.next_line()
    assert line is not None
    assert reader.next_line() is None
    assert reader.buffered == 0
    return line.decode("utf-8")


def request_back(data: bytes) -> str:
    """The text a server takes from a request line ``data``."""
    reader = p.LineReader()
    reader.receive_data(data)
    line = reader.next_line()
    assert line is not None
    assert reader.buffered == 0
    return p.decode_line(line)


# --------------------------------------------------------------------------
# Framing


def test_lines_are_split_on_lf_without_it() -> None:
    reader = p.LineReader()
    reader.receive_data(b"one\ntwo\n\nthree")
    assert drain(reader) == [b"one", b"two", b""]
    assert reader.buffered == len(b"three")
    reader.receive_data(b" more\n")
    assert drain(reader) == [b"three more"]
    assert reader.buffered == 0


@pytest.mark.parametrize(
    ("data", "lines"),
    [
        (b"ping\r\n", [b"ping"]),  # nc -C, telnet
        (b"a\rb\n", [b"a\rb"]),  # a lone CR is kept
        (b"a\r\r\n", [b"a\r"]),  # only the CR right before the LF goes
        (b"\r\n", [b""]),
        (b"\r\n\r\n", [b"", b""]),
        (b"x\r", []),  # not a line until its LF arrives
        (b"\rx\n", [b"\rx"]),
    ],
)
def test_cr_before_lf_is_dropped(data: bytes, lines: list[bytes]) -> None:
    assert frame([data], p.DEFAULT_MAX_LINE)[:2] == (lines, False)
    assert frame(one_at_a_time(data), p.DEFAULT_MAX_LINE)[:2] == (lines, False)


def test_cr_and_lf_in_separate_chunks() -> None:
    reader = p.LineReader()
    reader.receive_data(b"ping\r")
    assert reader.next_line() is None
    reader.receive_data(b"\n")
    assert reader.next_line() == b"ping"


@pytest.mark.parametrize("max_line", [2, 3, 16, p.DEFAULT_MAX_LINE])
def test_line_of_exactly_max_line_bytes_is_accepted(max_line: int) -> None:
    with_lf = b"x" * (max_line - 1) + b"\n"
    with_crlf = b"y" * (max_line - 2) + b"\r\n"
    for data in (with_lf, with_crlf):
        assert len(data) == max_line
        expected = [data.rstrip(b"\r\n")]
        assert frame([data], max_line) == (expected, False, 0)
        assert frame(one_at_a_time(data), max_line) == (expected, False, 0)


@pytest.mark.parametrize("max_line", [2, 3, 16, p.DEFAULT_MAX_LINE])
def test_line_of_max_line_plus_one_bytes_is_refused(max_line: int) -> None:
    with_lf = b"x" * max_line + b"\n"
    with_crlf = b"y" * (max_line - 1) + b"\r\n"
    for data in (with_lf, with_crlf):
        assert len(data) == max_line + 1
        assert frame([data], max_line)[:2] == ([], True)
        assert frame(one_at_a_time(data), max_line)[:2] == ([], True)


def test_default_limit_is_4096_bytes() -> None:
    assert p.DEFAULT_MAX_LINE == 4096
    assert p.LineReader().max_line == 4096


def test_over_long_line_is_refused_before_its_lf_arrives() -> None:
    reader = p.LineReader(8)
    reader.receive_data(b"1234567")  # 7 bytes: with the LF still within the limit
    assert reader.next_line() is None
    reader.receive_data(b"8")  # 8 bytes and no LF yet: it can only end over the limit
    with pytest.raises(LineTooLong):
        reader.next_line()


def test_huge_unterminated_input_is_refused_at_once() -> None:
    reader = p.LineReader()
    reader.receive_data(b"a" * 1_000_000)
    with pytest.raises(LineTooLong) as caught:
        reader.next_line()
    assert caught.value.code == p.ErrorCode.LINE_TOO_LONG


def test_lines_before_an_over_long_one_are_returned() -> None:
    reader = p.LineReader(8)
    reader.receive_data(b"ok\nfine\n" + b"z" * 20 + b"\nnever\n")
    assert reader.next_line() == b"ok"
    assert reader.next_line() == b"fine"
    with pytest.raises(LineTooLong):
        reader.next_line()


def test_line_too_long_is_a_protocol_error() -> None:
    assert issubclass(LineTooLong, ProtocolError)
    assert issubclass(LineTooLong, FiledockError)
    assert LineTooLong("x").code == "line-too-long"


def test_max_line_must_leave_room_for_a_character() -> None:
    with pytest.raises(ValueError, match="max_line"):
        p.LineReader(1)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\n",
        b"HELLO Client01\r\nPING\nWHO\r\nGET a b.txt\nSAY hi\rthere\n",
        b"no end",
        b"\r\r\n\n\r",
        "héllo wörld ✓\n".encode(),
        b"\xff\xfe\n\x00\n",
        b"x" * 15 + b"\n" + b"y" * 16 + b"\n",
        b"a\n" * 50,
    ],
)
def test_byte_at_a_time_and_all_at_once_agree(data: bytes) -> None:
    for max_line in (16, p.DEFAULT_MAX_LINE):
        whole = frame([data], max_line)
        assert frame(one_at_a_time(data), max_line)[:2] == whole[:2]
        assert whole[:2] == model(data, max_line)


def test_receive_data_takes_bytearray_and_memoryview() -> None:
    reader = p.LineReader()
    reader.receive_data(bytearray(b"one\ntw"))
    assert reader.next_line() == b"one"
    reader.receive_data(memoryview(b"o\nthree\n"))
    assert drain(reader) == [b"two", b"three"]


def test_consumed_lines_are_not_held() -> None:
    reader = p.LineReader(16)
    for _ in range(1000):
        reader.receive_data(b"0123456789\n")
        assert reader.next_line() == b"0123456789"
        assert reader.buffered == 0
    # Consumed bytes are dropped, not kept: what is held is one split window at most.
    held = len(reader._data) + sum(map(len, reader._lines))
    assert held <= 2 * 16


def test_take_rest_returns_what_follows_the_header() -> None:
    reader = p.LineReader()
    reader.receive_data(b"FILE 5 " + SHA.encode() + b" a.txt\nhel")
    assert reader.next_line() == b"FILE 5 " + SHA.encode() + b" a.txt"
    assert reader.buffered == 3
    assert reader.take_rest() == b"hel"
    assert reader.buffered == 0
    assert reader.take_rest() == b""
    reader.receive_data(b"BYE\n")
    assert reader.next_line() == b"BYE"


def test_take_rest_includes_unread_lines() -> None:
    reader = p.LineReader()
    reader.receive_data(b"one\ntwo\nthr")
    assert reader.next_line() == b"one"
    assert reader.take_rest() == b"two\nthr"
    assert reader.next_line() is None
    assert reader.buffered == 0


@pytest.mark.parametrize("ending", [b"", b"\n", b"\r\n", b"\n\n"], ids=repr)
def test_take_rest_gives_back_a_binary_body_split_as_lines_byte_for_byte(ending: bytes) -> None:
    """Pipelined bodies after a header are split at their LF (and CR) bytes with
    the lines: what follows the header comes back exactly as it came."""
    body = bytes(range(256)) * 80 + b"\r\n\n\r" + ending  # LF and CR bytes, past the window
    reader = p.LineReader()
    reader.receive_data(b"FILE " + str(len(body)).encode() + b" - a.bin\n" + body)
    assert reader.next_line() == b"FILE " + str(len(body)).encode() + b" - a.bin"
    assert reader.take_rest() == body
    assert reader.buffered == 0


def test_lines_across_split_windows_come_back_whole() -> None:
    # More than one split window of lines, a line straddling each window edge,
    # and a client-sized line longer than a window.
    window = p.LineReader._SPLIT_WINDOW
    lines = [b"x" * (i % 97) + b"\r" * (i % 2) for i in range(3 * window // 40)]
    lines.insert(len(lines) // 2, b"y" * (2 * window))
    data = b"".join(line + b"\n" for line in lines)
    expected = [line.removesuffix(b"\r") for line in lines]
    for chunk in (len(data), window - 1, 4093):
        chunks = [data[i : i + chunk] for i in range(0, len(data), chunk)]
        assert frame(chunks, p.CLIENT_MAX_LINE) == (expected, False, 0)


def test_over_long_line_after_a_window_of_lines_is_refused_in_turn() -> None:
    reader = p.LineReader(64)
    many = b"ping\n" * (p.LineReader._SPLIT_WINDOW // 5 + 10)
    reader.receive_data(many + b"z" * 64 + b"\nafter\n")
    for _ in range(many.count(b"\n")):
        assert reader.next_line() == b"ping"
    with pytest.raises(LineTooLong):
        reader.next_line()


# --------------------------------------------------------------------------
# Decoding


def test_decode_line_strips_white_space() -> None:
    assert p.decode_line(b"  PING \t") == "PING"
    assert p.decode_line(b"\tSAY  hi  there \r") == "SAY  hi  there"
    assert p.decode_line(b"   ") == ""
    assert p.decode_line("  grüße ".encode()) == "grüße"


@pytest.mark.parametrize(
    "data",
    [b"\xff", b"caf\xe9", b"\xc3", b"\xed\xa0\x80", b"\xc0\xaf", b"ok \x80 not"],
)
def test_decode_line_refuses_bad_utf8(data: bytes) -> None:
    with pytest.raises(BadEncoding) as caught:
        p.decode_line(data)
    assert caught.value.code == p.ErrorCode.BAD_ENCODING
    assert isinstance(caught.value, ProtocolError)


# --------------------------------------------------------------------------
# Requests


@pytest.mark.parametrize(
    ("text", "request_"),
    [
        ("PING", p.Ping()),
        ("ping", p.Ping()),
        ("PiNg", p.Ping()),
        ("WHO", p.Who()),
        ("who", p.Who()),
        ("Uptime", p.Uptime()),
        ("about", p.About()),
        ("HELP", p.Help()),
        ("status", p.Status()),
        ("List", p.ListFiles()),
        ("EXIT", p.Exit()),
        ("exit", p.Exit()),
        ("GET Some/File.TXT", p.Get("Some/File.TXT")),
        ("get Some/File.TXT", p.Get("Some/File.TXT")),
        ("gEt my file.txt", p.Get("my file.txt")),
        ("GET  lead.txt", p.Get(" lead.txt")),  # the rest after one space
        ("SAY Hello World", p.Say("Hello World")),
        ("say PING", p.Say("PING")),
        ("Say GET x", p.Say("GET x")),
    ],
)
def test_parse_request(text: str, request_: p.Request) -> None:
    assert p.parse_request(text) == request_


@pytest.mark.parametrize("text", ["get", "GET", "Get", "say", "SAY"])
def test_verb_without_argument_is_a_bad_request(text: str) -> None:
    with pytest.raises(BadRequest) as caught:
        p.parse_request(text)
    assert caught.value.code == p.ErrorCode.BAD_REQUEST


@pytest.mark.parametrize(
    "text",
    [
        "hello there",
        "Hello World",
        "ping now",
        "pingpong",
        "PONG",
        "HELLO",
        "who?",
        "sample.txt",
        "getter x",
        "GET\tx",
        "exit now",
        "a" * 100,
        "statuses",
    ],
)
def test_anything_else_is_a_message(text: str) -> None:
    assert p.parse_request(text) == p.Message(text)


@pytest.mark.parametrize(
    ("text", "greeting"),
    [
        ("HELLO Client01", p.Hello("Client01")),
        ("hello Client01", p.Hello("Client01")),
        ("HELLO", p.Hello("")),
        ("Hello Client07 filedock/1.0", p.Hello("Client07 filedock/1.0")),
        ("EXIT", p.Exit()),
        ("exit", p.Exit()),
        ("PING", None),
        ("EXIT now", None),
        ("HELLOClient01", None),
        ("GET sample.txt", None),
    ],
)
def test_parse_greeting(text: str, greeting: p.Hello | p.Exit | None) -> None:
    assert p.parse_greeting(text) == greeting


@pytest.mark.parametrize(
    ("request_", "data"),
    [
        (p.Hello("Client01"), b"HELLO Client01\n"),
        (p.Hello(), b"HELLO\n"),
        (p.Ping(), b"PING\n"),
        (p.Who(), b"WHO\n"),
        (p.Uptime(), b"UPTIME\n"),
        (p.About(), b"ABOUT\n"),
        (p.Help(), b"HELP\n"),
        (p.Status(), b"STATUS\n"),
        (p.ListFiles(), b"LIST\n"),
        (p.Exit(), b"EXIT\n"),
        (p.Get("a b.txt"), b"GET a b.txt\n"),
        (p.Say("hi there"), b"SAY hi there\n"),
        (p.Message("grüße"), "grüße\n".encode()),
    ],
)
def test_encode_request(request_: p.Request, data: bytes) -> None:
    assert p.encode_request(request_) == data
    if isinstance(request_, p.Hello):
        assert p.parse_greeting(request_back(data)) == request_
    else:
        assert p.parse_request(request_back(data)) == request_


def test_encode_request_refuses_a_line_feed() -> None:
    with pytest.raises(ValueError, match="line feed"):
        p.encode_request(p.Message("two\nlines"))
    with pytest.raises(ValueError, match="line feed"):
        p.encode_request(p.Get("a\nb"))


def test_every_command_word_is_understood() -> None:
    for word in p.COMMAND_WORDS:
        if word in ("get", "say", "hash"):
            assert isinstance(p.parse_request(f"{word.upper()} x"), p.Get | p.Say | p.Hash)
        elif word == "range":
            assert isinstance(p.parse_request(f"RANGE 0 {'a' * 64} x"), p.Range)
        elif word == "put":
            assert isinstance(p.parse_request(f"PUT 0 {'a' * 64} new x"), p.Put)
        else:
            assert not isinstance(p.parse_request(word.upper()), p.Message)


def test_client_names() -> None:
    assert p.client_name(1) == "Client01"
    assert p.client_name(9) == "Client09"
    assert p.client_name(10) == "Client10"
    assert p.client_name(99) == "Client99"
    assert p.client_name(100) == "Client100"
    assert p.client_name(12345) == "Client12345"


# --------------------------------------------------------------------------
# Replies


@pytest.mark.parametrize(
    ("reply", "data"),
    [
        (p.NameReply("Client01"), b"NAME Client01\n"),
        (
            p.FullReply("server is at capacity (3/3 clients)"),
            b"FULL server is at capacity (3/3 clients)\n",
        ),
        (p.WelcomeReply("Client01", "filedock 1.0.0"), b"WELCOME Client01 filedock 1.0.0\n"),
        (p.PongReply(), b"PONG\n"),
        (p.WhoReply(("Client01", "Client03")), b"WHO Client01 Client03\n"),
        (p.WhoReply(()), b"WHO\n"),
        (p.UptimeReply(0), b"UPTIME 0\n"),
        (p.UptimeReply(86_400), b"UPTIME 86400\n"),
        (p.AboutReply("filedock 1.0.0, protocol 1"), b"ABOUT filedock 1.0.0, protocol 1\n"),
        (p.HelpReply("PING WHO"), b"HELP PING WHO\n"),
        (p.StatusReply(3), b"STATUS 3\n"),
        (p.StatsReply(58), b"STATS 58\n"),
        (p.FilesReply(0), b"FILES 0\n"),
        (p.FileReply(6, SHA, "my docs/a b.txt"), f"FILE 6 {SHA} my docs/a b.txt\n".encode()),
        (p.AckReply("hello there"), b"ACK hello there\n"),
        (p.AckReply("grüße ✓"), "ACK grüße ✓\n".encode()),
        (p.ByeReply(), b"BYE\n"),
        (p.ErrorReply("not-found", "no such file"), b"ERR not-found no such file\n"),
    ],
)
def test_encode_and_parse_every_reply(reply: p.Reply, data: bytes) -> None:
    assert p.encode_reply(reply) == data
    assert p.parse_reply(read_back(data)) == reply


def test_parse_reply_ignores_later_fields() -> None:
    assert p.parse_reply("UPTIME 12 seconds") == p.UptimeReply(12)
    assert p.parse_reply("STATUS 2 more") == p.StatusReply(2)
    assert p.parse_reply("FILES 4 x") == p.FilesReply(4)


def test_parse_reply_of_error_without_text() -> None:
    assert p.parse_reply("ERR bad-request") == p.ErrorReply("bad-request", "")


@pytest.mark.parametrize(
    "line",
    [
        "ERR \x1b]0;PWNED\x07\x1b[2J text",  # no space in the escape: all of it is the code
        "ERR \x9b2J text",
        "ERR not\u202efound text",
        "ERR Not-Found text",
        "ERR not_found text",
        "ERR -found text",
        "ERR found- text",
        "ERR 404 text",
        "ERR " + "a" * 41 + " text",
    ],
    ids=[
        "OSC and CSI",
        "8-bit CSI",
        "RLO",
        "capitals",
        "underscore",
        "leading hyphen",
        "trailing hyphen",
        "digits",
        "too long",
    ],
)
def test_parse_reply_refuses_an_error_code_that_is_not_one_lowercase_word(line: str) -> None:
    with pytest.raises(ProtocolError, match="not one word") as caught:
        p.parse_reply(line)
    assert is_inert(str(caught.value))


def test_parse_reply_takes_any_lowercase_error_code() -> None:
    assert p.parse_reply("ERR too-many-2 wait") == p.ErrorReply("too-many-2", "wait")


@pytest.mark.parametrize("word", ["STATUS", "FILES"])
def test_a_record_count_over_the_cap_is_refused_before_any_record(word: str) -> None:
    assert p.parse_reply(f"{word} {p.MAX_RECORDS}") in (
        p.StatusReply(p.MAX_RECORDS),
        p.FilesReply(p.MAX_RECORDS),
    )
    for count in (p.MAX_RECORDS + 1, 99999999999999999999):
        with pytest.raises(ProtocolError, match="over the limit"):
            p.parse_reply(f"{word} {count}")


def test_encode_reply_refuses_a_line_feed() -> None:
    with pytest.raises(ValueError, match="line feed"):
        p.encode_reply(p.AckReply("two\nlines"))


@pytest.mark.parametrize(
    "line",
    [
        "",
        " ",
        "pong",  # reply words are upper case
        "Ack hi",
        "HELLO Client01",
        "OK",
        "PONGS",
        "NAME",
        "NAME ",
        "NAME Client01 extra",
        "ERR",
        "ERR ",
        "UPTIME",
        "UPTIME -1",
        "UPTIME +1",
        "UPTIME 1_0",
        "UPTIME  1",
        "UPTIME 1.5",
        "UPTIME ١٢",
        "UPTIME ²",
        "UPTIME 123456789012345678901",
        "STATUS x",
        "STATUS +1",
        "FILES 1_0",
        "FILES -0",
        "FILES 0x10",
        f"FILE +1 {SHA} a.txt",
        f"FILE 1_0 {SHA} a.txt",
        f"FILE -1 {SHA} a.txt",
        f"FILE  1 {SHA} a.txt",
        f"FILE 1 {SHA.upper()} a.txt",
        f"FILE 1 {SHA[:-1]} a.txt",
        f"FILE 1 {SHA}0 a.txt",
        f"FILE 1 {SHA[:-1]}g a.txt",
        f"FILE 1 {SHA}",
        f"FILE 1 {SHA} ",
        "FILE 1",
        "FILE",
        "\x00",
        "x" * 10_000,
    ],
)
def test_parse_reply_refuses_garbage(line: str) -> None:
    with pytest.raises(ProtocolError):
        p.parse_reply(line)


# --------------------------------------------------------------------------
# Records


def test_client_record_round_trip() -> None:
    record = p.ClientRecord("Client02", datetime(2026, 11, 24, 15, 29, 28), None, "[::1]:50432")
    data = p.encode_client_record(record)
    assert data == b"Client02\t2026-11-24 15:29:28\t-\t[::1]:50432\n"
    assert p.parse_client_record(read_back(data)) == record
    assert record.connected

    finished = p.ClientRecord(
        "Client100",
        datetime(2026, 1, 2, 3, 4, 5),
        datetime(2026, 1, 2, 3, 4, 59),
        "127.0.0.1:5000",
    )
    data = p.encode_client_record(finished)
    assert data == b"Client100\t2026-01-02 03:04:05\t2026-01-02 03:04:59\t127.0.0.1:5000\n"
    assert p.parse_client_record(read_back(data)) == finished
    assert not finished.connected


def test_file_info_round_trip() -> None:
    info = p.FileInfo("docs/a b.txt", 1234, datetime(2026, 11, 24, 15, 29, 28, tzinfo=UTC))
    data = p.encode_file_info(info)
    assert data == b"docs/a b.txt\t1234\t2026-11-24T15:29:28Z\n"
    assert p.parse_file_info(read_back(data)) == info


def test_a_parsed_file_info_is_the_frozen_dataclass_itself() -> None:
    parsed = p.parse_file_info("a.txt\t7\t2026-11-24T15:29:28Z")
    made = p.FileInfo("a.txt", 7, datetime(2026, 11, 24, 15, 29, 28, tzinfo=UTC))
    assert type(parsed) is p.FileInfo
    assert (parsed, hash(parsed), repr(parsed)) == (made, hash(made), repr(made))
    with pytest.raises(dataclasses.FrozenInstanceError):
        parsed.size = 8  # type: ignore[misc]


def test_records_ignore_later_fields() -> None:
    assert p.parse_file_info("a.txt\t1\t2026-11-24T15:29:28Z\textra") == p.FileInfo(
        "a.txt", 1, datetime(2026, 11, 24, 15, 29, 28, tzinfo=UTC)
    )
    # The fifth field is the node (several servers as one); a sixth is ignored.
    record = p.parse_client_record("Client01\t2026-11-24 15:29:28\t-\th:1\ta\tnew fields")
    accepted = datetime(2026, 11, 24, 15, 29, 28)
    assert record == p.ClientRecord("Client01", accepted, None, "h:1", "a")


def test_status_record_node_is_a_fifth_field_only_when_known() -> None:
    alone = p.ClientRecord("Client02", datetime(2026, 11, 24, 15, 29, 28), None, "[::1]:50432")
    assert p.encode_client_record(alone).count(b"\t") == 3  # a server alone: v1's four fields
    clustered = p.ClientRecord("Client02", alone.accepted, None, alone.address, "node-b")
    data = p.encode_client_record(clustered)
    assert data == b"Client02\t2026-11-24 15:29:28\t-\t[::1]:50432\tnode-b\n"
    assert p.parse_client_record(read_back(data)) == clustered
    assert p.parse_client_record(read_back(p.encode_client_record(alone))).node is None


def test_format_times() -> None:
    assert p.format_file_time(0.0) == "1970-01-01T00:00:00Z"
    assert p.format_file_time(1.9) == "1970-01-01T00:00:01Z"
    assert p.format_file_time(datetime(2026, 11, 24, 15, 29, 28, tzinfo=UTC)) == (
        "2026-11-24T15:29:28Z"
    )
    assert p.format_status_time(datetime(2026, 1, 2, 3, 4, 5)) == "2026-01-02 03:04:05"


@pytest.mark.parametrize(
    "line",
    [
        "",
        "a.txt",
        "a.txt\t1",
        "a.txt\t+1\t2026-11-24T15:29:28Z",
        "a.txt\t1_0\t2026-11-24T15:29:28Z",
        "a.txt\t-1\t2026-11-24T15:29:28Z",
        "a.txt\t\t2026-11-24T15:29:28Z",
        "a.txt\t1\t2026-11-24 15:29:28",
        "a.txt\t1\t2026-11-24T15:29:28",
        "a.txt\t1\tyesterday",
        "a.txt 1 2026-11-24T15:29:28Z",
    ],
)
def test_parse_file_info_refuses_garbage(line: str) -> None:
    with pytest.raises(ProtocolError):
        p.parse_file_info(line)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "Client01",
        "Client01\t2026-11-24 15:29:28\t-",
        "Client01\t2026-11-24T15:29:28Z\t-\th:1",
        "Client01\t2026-11-24 15:29:28\tnow\th:1",
        "Client01\t2026-11-24 15:29:28\t\th:1",
        "Client01\t2026-13-24 15:29:28\t-\th:1",
    ],
)
def test_parse_client_record_refuses_garbage(line: str) -> None:
    with pytest.raises(ProtocolError):
        p.parse_client_record(line)


# --------------------------------------------------------------------------
# Properties

# Text that can be sent on one line: no LF, no surrogates (not UTF-8).
_LINE_CHARS = st.characters(codec="utf-8", exclude_characters="\n")
# What the server sends as free text has no white space at either end (it
# strips what it echoes, and a trailing CR would be taken for the line's CR).
texts = st.text(_LINE_CHARS, max_size=60).map(str.strip)
non_empty_texts = texts.filter(bool)
names = st.integers(1, 1_000_000).map(p.client_name)
error_codes = st.from_regex(r"[a-z]+(-[a-z]+)*", fullmatch=True).filter(lambda c: len(c) <= 40)
counts = st.integers(0, 2**63)
record_counts = st.integers(0, p.MAX_RECORDS)
sha256s = st.text("0123456789abcdef", min_size=64, max_size=64)
# Names that can travel in a record field: no TAB, CR or LF.
_FIELD_CHARS = st.characters(codec="utf-8", exclude_characters="\t\r\n")
field_texts = st.text(_FIELD_CHARS, min_size=1, max_size=60)
seconds = st.datetimes(datetime(1900, 1, 1), datetime(9999, 12, 31)).map(
    lambda moment: moment.replace(microsecond=0)
)
utc_seconds = st.datetimes(
    datetime(1970, 1, 1), datetime(9999, 12, 31), timezones=st.just(UTC)
).map(lambda moment: moment.replace(microsecond=0))
addresses = st.one_of(
    st.builds(lambda ip, port: f"{ip}:{port}", st.ip_addresses(v=4), st.integers(0, 65535)),
    st.builds(lambda ip, port: f"[{ip}]:{port}", st.ip_addresses(v=6), st.integers(0, 65535)),
)

replies = st.one_of(
    st.builds(p.NameReply, names),
    st.builds(p.FullReply, texts),
    st.builds(p.WelcomeReply, names, texts),
    st.just(p.PongReply()),
    st.builds(p.WhoReply, st.lists(names, max_size=20).map(tuple)),
    st.builds(p.UptimeReply, counts),
    st.builds(p.AboutReply, texts),
    st.builds(p.HelpReply, texts),
    st.builds(p.StatusReply, record_counts),
    st.builds(p.StatsReply, record_counts),
    st.builds(p.FilesReply, record_counts),
    st.builds(p.FileReply, counts, sha256s, non_empty_texts),
    st.builds(p.AckReply, texts),
    st.just(p.ByeReply()),
    st.builds(p.ErrorReply, error_codes, texts),
)
client_records = st.builds(
    p.ClientRecord, names, seconds, st.none() | seconds, addresses | field_texts
)
file_infos = st.builds(p.FileInfo, field_texts, counts, utc_seconds)


@settings(max_examples=400, deadline=None)
@given(replies)
def test_every_reply_parses_back(reply: p.Reply) -> None:
    assert p.parse_reply(read_back(p.encode_reply(reply))) == reply


@settings(max_examples=200, deadline=None)
@given(client_records)
def test_every_client_record_parses_back(record: p.ClientRecord) -> None:
    assert p.parse_client_record(read_back(p.encode_client_record(record))) == record


@settings(max_examples=200, deadline=None)
@given(file_infos)
def test_every_file_info_parses_back(info: p.FileInfo) -> None:
    assert p.parse_file_info(read_back(p.encode_file_info(info))) == info


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.builds(p.Get, non_empty_texts),
        st.builds(p.Say, non_empty_texts),
        st.sampled_from(
            [p.Ping(), p.Who(), p.Uptime(), p.About(), p.Help(), p.Status(), p.ListFiles()]
        ),
        st.just(p.Exit()),
    )
)
def test_every_request_parses_back(request_: p.Request) -> None:
    assert p.parse_request(request_back(p.encode_request(request_))) == request_


@settings(max_examples=200, deadline=None)
@given(non_empty_texts)
@example("get")
@example("HASH")
@example("range 1 x")
def test_any_text_parses_as_some_request(text: str) -> None:
    try:
        request_ = p.parse_request(text)
    except BadRequest:
        # Only a verb that needs an argument refuses a line: without it, or with a bad one.
        command = p.COMMANDS_BY_WORD[text.partition(" ")[0].lower()]
        assert command.argument is not None
        assert not command.optional
        return
    if isinstance(request_, p.Message):
        assert request_.text == text
        assert p.parse_request(request_back(p.encode_request(request_))) == request_


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=40),
        st.sampled_from([w.encode() for w in p.COMMAND_WORDS]).flatmap(
            lambda w: st.sampled_from([w, w.upper(), w.title(), w + b" ", b" " + w, w + b" x"])
        ),
    )
)
def test_parse_request_line_is_parse_request_of_the_decoded_line(line: bytes) -> None:
    # The server's fast path for raw lines agrees with decoding, then parsing.
    try:
        text = p.decode_line(line)
        expected: object = p.parse_request(text) if text else None
    except (BadEncoding, BadRequest) as exc:
        expected = type(exc)
    try:
        got: object = p.parse_request_line(line)
    except (BadEncoding, BadRequest) as exc:
        got = type(exc)
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(st.builds(p.Hello, texts))
def test_every_greeting_parses_back(hello: p.Hello) -> None:
    assert p.parse_greeting(request_back(p.encode_request(hello))) == hello


# Byte streams rich in the bytes that matter to framing.
_framing_bytes = st.lists(
    st.sampled_from([b"\n", b"\r", b"\r\n", b"a", b"bc", b" ", b"\xff", b"\x00", b"defghij"]),
    max_size=80,
).map(b"".join)
streams = st.one_of(st.binary(max_size=200), _framing_bytes)


def cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in zip(points, points[1:], strict=False)]


@settings(max_examples=400, deadline=None)
@given(streams, st.lists(st.integers(0, 1000), max_size=20), st.integers(2, 12))
def test_any_byte_stream_frames_or_raises_line_too_long(
    data: bytes, cuts: list[int], max_line: int
) -> None:
    # frame() lets nothing but LineTooLong through, and checks the reader
    # holds less than a line's worth after every chunk.
    lines, refused, held = frame(cut(data, cuts), max_line)
    assert (lines, refused) == model(data, max_line)
    for line in lines:
        assert b"\n" not in line
        assert len(line) < max_line
    if not refused:
        assert held == len(data.rsplit(b"\n", 1)[-1])
        assert held < max_line


@settings(max_examples=300, deadline=None)
@given(streams, st.sampled_from([2, 3, 5, 8, 64, p.DEFAULT_MAX_LINE]))
def test_byte_at_a_time_agrees_with_all_at_once(data: bytes, max_line: int) -> None:
    assert frame(one_at_a_time(data), max_line)[:2] == frame([data], max_line)[:2]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(_LINE_CHARS, max_size=30), max_size=10), st.integers(1, 7))
def test_lines_sent_come_back_in_any_chunking(texts_: list[str], step: int) -> None:
    data = b"".join(text.encode() + b"\r\n" for text in texts_)
    chunks = [data[i : i + step] for i in range(0, len(data), step)]
    lines, refused, held = frame(chunks, p.CLIENT_MAX_LINE)
    assert not refused
    assert held == 0
    assert [line.decode() for line in lines] == texts_


# -- STATS records --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("record", "line"),
    [
        (p.StatRecord("bytes_sent", 0), b"bytes_sent\t0\n"),
        (
            p.StatRecord("connections_rejected_per_address", 12),
            b"connections_rejected_per_address\t12\n",
        ),
        (p.StatRecord("uptime_seconds", 3.25), b"uptime_seconds\t3.250\n"),
    ],
)
def test_a_stats_record_is_a_name_a_tab_and_a_value(record: p.StatRecord, line: bytes) -> None:
    assert p.encode_stat_record(record) == line
    parsed = p.parse_stat_record(read_back(line))
    assert parsed == record
    assert type(parsed.value) is type(record.value)  # a whole number stays an int


def test_a_stats_record_takes_later_fields() -> None:
    assert p.parse_stat_record("pending\t3\tlater") == p.StatRecord("pending", 3)


@pytest.mark.parametrize(
    "line",
    [
        "bytes_sent",
        "bytes_sent\t",
        "Bytes\t1",
        "bytes sent\t1",
        "x\t-1",
        "x\t1e3",
        "x\t+1",
        "x\t1.",
        "x\t.5",
        "x\t١",
        "x\t" + "9" * 21,
        "\t1",
    ],
)
def test_a_bad_stats_record_is_a_protocol_error(line: str) -> None:
    with pytest.raises(ProtocolError):
        p.parse_stat_record(line)


@settings(max_examples=200, deadline=None)
@given(
    st.from_regex(r"[a-z][a-z0-9_]{0,40}", fullmatch=True),
    st.integers(0, 2**63) | st.floats(0, 1e12, allow_nan=False).map(lambda x: round(x, 3)),
)
def test_every_stats_record_parses_back(name: str, value: int | float) -> None:
    record = p.StatRecord(name, value)
    assert p.parse_stat_record(read_back(p.encode_stat_record(record))) == record
