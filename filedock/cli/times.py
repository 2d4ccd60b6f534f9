"""The times the client shows, each with its zone.

A file's mtime comes in UTC (``LIST``) and is shown in this machine's zone,
its name after it (``2026-11-24 15:10:02 CET``), as ``ls`` and ``date`` show
theirs. A ``STATUS`` record's times come in the server's local time with no
zone on the wire (the assignment's format); its screen keeps that fixed format
as it is, and ``--json`` gives them in ISO 8601 with the server's UTC offset,
read from this client's own record: its ACCEPTED time is the server's clock at
the moment this client was welcomed, which the client knows in UTC.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone

from .. import protocol as p

# Zones are whole quarter hours from UTC (Nepal: +5:45), so the server's offset
# is its clock minus ours rounded to one: clocks a few minutes apart still agree.
_QUARTER_HOUR = 15 * 60


def local_time(moment: datetime) -> str:
    """``moment`` in this machine's zone, with the zone's name: ``2026-11-24 15:10:02 CET``."""
    here = moment.astimezone()
    return f"{here.strftime(p.STATUS_TIME_FORMAT)} {here.tzname() or here.strftime('%z')}"


def server_zone(
    records: Sequence[p.ClientRecord], name: str, welcomed_at: datetime
) -> timezone | None:
    """The server's UTC offset, from the record of the client ``name`` welcomed at
    ``welcomed_at`` (aware); None when no record is that client's."""
    for record in records:
        if record.name == name and record.finished is None:
            ahead = (
                record.accepted - welcomed_at.astimezone(UTC).replace(tzinfo=None)
            ).total_seconds()
            quarters = round(ahead / _QUARTER_HOUR)
            if abs(quarters) > 14 * 4:  # no zone is more than 14 hours from UTC: a wrong clock
                return None
            return timezone(timedelta(seconds=quarters * _QUARTER_HOUR))
    return None


def iso_time(moment: datetime, zone: timezone | None) -> str:
    """A STATUS time (the server's local time) in ISO 8601 with its offset, in ``zone``
    (None: this machine's, for want of the server's)."""
    if zone is None:
        return moment.astimezone().isoformat(timespec="seconds")  # naive: read as local
    return moment.replace(tzinfo=zone).isoformat(timespec="seconds")
