"""A listing's ``FILES`` records in bulk, and the time format they carry.

A listing can hold 100,000 records, so what is done per record here is kept
to a few C calls: a record travels as a plain ``(path, size, mtime)`` tuple
(:data:`FileRecord`, mtime in whole seconds since the epoch) and is encoded
with one f-string; a time is formatted from a per-day prefix and parsed by
``datetime.fromisoformat`` once its shape is checked. Both give exactly what
``strftime``/``strptime`` with :data:`FILES_TIME_FORMAT` give (they are the
fallback for anything else), which the tests check over their edge cases.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime

FILES_TIME_FORMAT = "%Y-%m-%dT%H:%M:%SZ"

# One FILES record before it is encoded: path, size, mtime (whole seconds, UTC).
FileRecord = tuple[str, int, int]

_DAY = 86_400
# "HH:MM" for each minute of a day, and "SS" for each second of a minute.
_MINUTES = tuple(f"{minute // 60:02d}:{minute % 60:02d}" for minute in range(24 * 60))
_SECONDS = tuple(f"{second:02d}" for second in range(60))
# Days seen, as strftime writes them ("2026-11-24T"): a listing's mtimes fall on
# few days. Bounded, so a hostile spread of mtimes costs little memory.
_MAX_CACHED = 4096
_day_prefixes: dict[int, str] = {}
# Times parsed, by their text, and formatted, by their value: files written
# together share their second.
_parsed_times: dict[str, datetime] = {}
_formatted_times: dict[datetime, str] = {}
# The one shape fromisoformat is trusted with (it also takes "20261124T…",
# "…:28.Z", week dates, which strptime refuses).
_TIME_SHAPE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")


def format_file_seconds(seconds: int) -> str:
    """``seconds`` since the epoch as FILES shows a time: ``2026-11-24T15:29:28Z``."""
    day, second_of_day = divmod(seconds, _DAY)
    prefix = _day_prefixes.get(day)
    if prefix is None:
        prefix = datetime.fromtimestamp(day * _DAY, UTC).strftime("%Y-%m-%dT")
        if len(_day_prefixes) >= _MAX_CACHED:
            _day_prefixes.clear()
        _day_prefixes[day] = prefix
    minute, second = divmod(second_of_day, 60)
    return f"{prefix}{_MINUTES[minute]}:{_SECONDS[second]}Z"


def format_file_time(mtime: float | datetime) -> str:
    """A time as FILES shows it: a float of seconds (cut to the second below), or
    a datetime's own fields (which should be UTC)."""
    if not isinstance(mtime, datetime):
        mtime = datetime.fromtimestamp(mtime, UTC)
    if mtime.tzinfo is not UTC or mtime.microsecond:
        return mtime.strftime(FILES_TIME_FORMAT)
    # Two UTC datetimes that are equal have the same fields, so the same text.
    shown = _formatted_times.get(mtime)
    if shown is None:
        shown = format_file_seconds(int(mtime.timestamp()))  # whole seconds: exact
        if len(_formatted_times) >= _MAX_CACHED:
            _formatted_times.clear()
        _formatted_times[mtime] = shown
    return shown


def parse_file_time(text: str) -> datetime:
    """The UTC time a FILES (or HASH) field gives; ValueError if it is not one."""
    parsed = _parsed_times.get(text)
    if parsed is not None:
        return parsed
    if _TIME_SHAPE.fullmatch(text):
        try:
            parsed = datetime.fromisoformat(text)  # "Z" gives UTC itself
        except ValueError:
            parsed = None  # (2026-02-30…): strptime below says why
    if parsed is None:
        parsed = datetime.strptime(text, FILES_TIME_FORMAT).replace(tzinfo=UTC)
    if len(_parsed_times) >= _MAX_CACHED:
        _parsed_times.clear()
    _parsed_times[text] = parsed
    return parsed


def encode_file_records(records: Sequence[FileRecord]) -> bytes:
    """The FILES record lines of ``records``, in their order.

    Raises ValueError if a path holds a line feed (it would end the record).
    """
    times: dict[int, str] = {}  # files written together share their second
    lines = []
    for path, size, mtime in records:
        shown = times.get(mtime)
        if shown is None:
            shown = times[mtime] = format_file_seconds(mtime)
        lines.append(f"{path}\t{size}\t{shown}\n")
    text = "".join(lines)
    if text.count("\n") != len(records):
        raise ValueError("a protocol line cannot hold a line feed")
    return text.encode("utf-8")
