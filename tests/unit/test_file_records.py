"""FILES records in bulk: the fast time format and parser, the bulk record reader, list --json.

Each fast path is held to the slow one it replaced: ``strftime``/``strptime``
with FILES_TIME_FORMAT, one event per record, ``json.dump(indent=2)``.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from filedock import protocol as p
from filedock.cli.oneshot import file_json, write_files_json
from filedock.cli.times import local_time
from filedock.errors import LineTooLong, ProtocolError
from filedock.protocol.client import NEED_DATA, ClientConnection, ClientState, EndOfReply
from filedock.protocol.listing import FILES_TIME_FORMAT, _parsed_times
from tests.unit.test_client_connection import greeted

FIRST_SECOND = int(datetime(1, 1, 1, tzinfo=UTC).timestamp())
LAST_SECOND = int(datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC).timestamp())


def slow_format(seconds: int) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime(FILES_TIME_FORMAT)


def slow_parse(text: str) -> datetime:
    return datetime.strptime(text, FILES_TIME_FORMAT).replace(tzinfo=UTC)


def outcome(parse: object, text: str) -> object:
    """What ``parse(text)`` gives, or the kind of error it raises."""
    try:
        return parse(text)  # type: ignore[operator]
    except ValueError:
        return ValueError


# -- times --------------------------------------------------------------------------------


@given(st.integers(FIRST_SECOND, LAST_SECOND))
@example(0)
@example(-1)  # 1969-12-31T23:59:59Z
@example(951_782_400)  # 2000-02-29
@example(FIRST_SECOND)
@example(LAST_SECOND)
def test_a_time_is_formatted_as_strftime_formats_it(seconds: int) -> None:
    assert p.format_file_seconds(seconds) == slow_format(seconds)


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2026, 11, 24, 15, 29, 28, tzinfo=UTC),
        datetime(2026, 11, 24, 15, 29, 28, 999_999, tzinfo=UTC),  # cut to the second
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(2026, 11, 24, 15, 29, 28),  # naive: its own fields
        datetime(2026, 11, 24, 15, 29, 28, tzinfo=timezone(timedelta(hours=1))),
        datetime(999, 1, 1, tzinfo=UTC),  # strftime does not pad the year
    ],
)
def test_a_datetime_is_formatted_as_strftime_formats_it(moment: datetime) -> None:
    assert p.format_file_time(moment) == moment.strftime(FILES_TIME_FORMAT)


def test_a_float_time_is_cut_to_the_second_below() -> None:
    assert p.format_file_time(1.9) == "1970-01-01T00:00:01Z"
    assert p.format_file_time(-0.5) == slow_format(-1)


_SHAPED = st.builds(
    "{}-{}-{}T{}:{}:{}Z".format,
    *(st.text("0123456789", min_size=size, max_size=size) for size in (4, 2, 2, 2, 2, 2)),
)


@given(st.one_of(_SHAPED, st.text(max_size=24)))
@example("2026-11-24T15:29:28Z")
@example("2026-02-29T00:00:00Z")  # no such day
@example("2024-02-29T23:59:59Z")
@example("2026-11-24T24:00:00Z")
@example("2026-11-24T23:59:60Z")  # a leap second strptime refuses too
@example("0000-01-01T00:00:00Z")
@example("0999-01-01T00:00:00Z")
@example("2026-1-24T15:29:28Z")  # strptime takes one digit: the fallback does
@example("2026-11-24T15:29:28.Z")  # fromisoformat alone would take these
@example("20261124T152928Z")
@example("2026-W48-2T15:29:28Z")
@example("2026-11-24T15:29:28+00:00")
@example("٢٠٢٦-11-24T15:29:28Z")  # digits strptime's \\d takes
@example("2026-11-24T15:29:28z")  # strptime's match ignores case
def test_a_time_is_parsed_as_strptime_parses_it(text: str) -> None:
    _parsed_times.clear()
    expected = outcome(slow_parse, text)
    assert outcome(p.parse_file_time, text) == expected
    assert outcome(p.parse_file_time, text) == expected  # the second time, from the cache
    if expected is not ValueError:
        assert p.parse_file_time(text).tzinfo is UTC


@pytest.fixture
def zone(request: pytest.FixtureRequest) -> Iterator[str]:
    """This machine's zone set to a POSIX TZ string (no tz database needed)."""
    before = os.environ.get("TZ")
    os.environ["TZ"] = request.param
    time.tzset()
    yield request.param
    if before is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = before
    time.tzset()


@pytest.mark.parametrize(
    "zone",
    [
        "UTC0",
        "CET-1CEST,M3.5.0,M10.5.0/3",
        "NPT-5:45",
        "NST3:30NDT,M3.2.0,M11.1.0",
        "LHST-10:30LHDT-11,M10.1.0,M4.1.0",
    ],
    indirect=True,
)
@pytest.mark.parametrize(
    "text",
    [
        "2026-03-29T00:59:59Z",  # the hour before Europe's clocks go forward
        "2026-03-29T01:00:00Z",
        "2026-10-25T00:30:00Z",  # inside the hour Europe's clocks go back over
        "2026-11-01T05:30:00Z",
        "2026-04-05T15:00:00Z",
        "1970-01-01T00:00:00Z",
    ],
)
def test_the_cli_shows_a_parsed_time_in_each_zone_as_before(zone: str, text: str) -> None:
    _parsed_times.clear()
    assert local_time(p.parse_file_time(text)) == local_time(slow_parse(text))


# -- records in bulk --------------------------------------------------------------------------


def listing_lines(count: int) -> bytes:
    records = [
        (f"d{index // 7}/f{index}.txt", index, 1_700_000_000 + index % 3) for index in range(count)
    ]
    return p.encode_file_records(records)


def in_events(conn: ClientConnection) -> list[object]:
    """The records one event at a time, as before."""
    out: list[object] = []
    while not isinstance(event := conn.next_event(), EndOfReply):
        out.append(event)
    return out


def received(data: bytes, cuts: list[int], bulk: bool) -> list[object]:
    """The events of a LIST then a PING, ``data`` fed in pieces of ``cuts`` bytes (then
    the rest): the records taken in bulk whenever they may be, or one event at a time."""
    conn = greeted()
    conn.send(p.ListFiles())
    conn.send(p.Ping())
    events: list[object] = []
    start = 0
    for size in [*cuts, len(data)]:
        conn.receive_data(data[start : start + size])
        start += size
        while True:
            if bulk:
                events += conn.take_records()
            event = conn.next_event()
            if event is NEED_DATA:
                break
            events.append(event)
            if isinstance(event, p.PongReply):
                assert conn.state is ClientState.IDLE
                return events
    raise AssertionError("no PONG")


@given(count=st.integers(0, 40), cuts=st.lists(st.integers(1, 300), max_size=6), crlf=st.booleans())
def test_records_taken_in_bulk_are_those_read_one_event_at_a_time(
    count: int, cuts: list[int], crlf: bool
) -> None:
    body = listing_lines(count)
    if crlf:
        body = body.replace(b"\n", b"\r\n")
    data = f"FILES {count}\n".encode() + body + b"PONG\n"
    expected = [p.parse_file_info(line) for line in body.decode().replace("\r", "").splitlines()]
    bulk = received(data, cuts, bulk=True)
    assert bulk == received(data, cuts, bulk=False)
    assert bulk == [p.FilesReply(count), *expected, EndOfReply(), p.PongReply()]


def records_state(data: bytes, **limits: int) -> ClientConnection:
    conn = ClientConnection(**limits)
    conn.receive_data(b"NAME Client01\n")
    conn.next_event()
    conn.send(p.Hello("Client01"))
    conn.receive_data(b"WELCOME Client01 filedock 1.0.0\n")
    conn.next_event()
    conn.send(p.ListFiles())
    conn.receive_data(data)
    assert isinstance(conn.next_event(), p.FilesReply)
    return conn


@pytest.mark.parametrize(
    ("data", "limits", "error"),
    [
        (b"FILES 2\na\t1\t2026-11-24T15:29:28Z\nb\tX\t2026-11-24T15:29:28Z\n", {}, ProtocolError),
        (b"FILES 1\na\t1\tyesterday\n", {}, ProtocolError),
        (b"FILES 1\nbad\xff\t1\t2026-11-24T15:29:28Z\n", {}, ProtocolError),
        (b"FILES 1\n" + b"x" * 100 + b"\t1\t2026-11-24T15:29:28Z\n", {"max_line": 64}, LineTooLong),
        (b"FILES 2\n" + listing_lines(2), {"max_record_bytes": 40}, ProtocolError),
    ],
    ids=["bad-size", "bad-time", "not-utf8", "too-long", "over-the-byte-limit"],
)
def test_a_bad_record_taken_in_bulk_breaks_the_connection_as_one_event_would(
    data: bytes, limits: dict[str, int], error: type[Exception]
) -> None:
    with pytest.raises(error):
        records_state(data, **limits).take_records()
    broken = records_state(data, **limits)
    with pytest.raises(error):
        in_events(broken)
    assert broken.state is ClientState.BROKEN
    bulk = records_state(data, **limits)
    with pytest.raises(error):
        bulk.take_records()
    assert bulk.state is ClientState.BROKEN


def test_a_record_path_with_a_line_feed_is_not_encoded() -> None:
    with pytest.raises(ValueError, match="line feed"):
        p.encode_file_records([("a\nb", 1, 0)])


# -- list --json ------------------------------------------------------------------------------


_PATHS = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=10)


@given(
    st.lists(
        st.tuples(_PATHS, st.integers(0, 2**63), st.integers(FIRST_SECOND, LAST_SECOND)), max_size=5
    )
)
@example([])
@example([('q"\\/\x01\u2028é😀', 0, 0)])
def test_list_json_is_written_as_json_dump_writes_it(files: list[tuple[str, int, int]]) -> None:
    infos = [
        p.FileInfo(path, size, datetime.fromtimestamp(mtime, UTC)) for path, size, mtime in files
    ]
    streamed = io.StringIO()
    write_files_json(streamed, infos)
    whole = io.StringIO()
    json.dump([file_json(info) for info in infos], whole, indent=2)
    assert streamed.getvalue() == whole.getvalue() + "\n"


def test_list_json_of_more_files_than_one_batch() -> None:
    when = datetime(2026, 11, 24, tzinfo=UTC)
    infos = [p.FileInfo(f"f{index}", index, when) for index in range(2500)]
    streamed = io.StringIO()
    write_files_json(streamed, infos)
    assert json.loads(streamed.getvalue()) == [file_json(info) for info in infos]
