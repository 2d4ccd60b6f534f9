"""One log line per transfer: which file, to whom, how many bytes, how long, how fast, how it ended.

A send keeps the wording the log always had at its start (``Sent file
'sample.txt' size=6 sha256=5891b5b522d5…``), then says to whom, the seconds,
the bytes and the rate, and how it ended::

    Sent file 'sample.txt' size=6 sha256=5891b5b522d5… to Client01 0.001s: 6 bytes
    at 5.9 KiB/s, completed

(one line). ``resumed from N``, ``cut short: why`` or ``changed during the
send`` take ``completed``'s place. Each line carries the same as fields for the
json log (:data:`~.logs.FIELDS`). An upload's line (:mod:`.upload_log`) is made
here too.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .logs import LineTemplate
from .transfer import FileShrank, SendStalled, TransferError

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("filedock.server")

_KIND = "transfer"  # the rate limit's kind for sends cut short


class TransferLog:
    """The clock and the names of one file's send, and its one line at the end."""

    __slots__ = ("session", "path", "size", "started")

    def __init__(self, session: Session, path: str, size: int) -> None:
        self.session = session
        self.path = path
        self.size = size
        self.started = time.monotonic()

    def completed(self, sha256: str, offset: int = 0) -> None:
        """The body went out whole (from ``offset``, for a resume)."""
        moved = self._moved(self.size - offset, sha256, offset)
        if offset:
            self._line(moved, "resumed", f"resumed from {offset}")
        else:
            self._line(moved, "completed", "completed")

    def cut_short(self, exc: TransferError, offset: int = 0) -> None:
        """The body could not be sent whole: the connection is dropped, and this is why
        (for its Finished line, unless the connection's loss was seen first)."""
        s = self.session
        s.end_reason = s.end_reason or _end_reason(exc)
        moved = self._moved(exc.sent, None, offset)
        self._line(moved, "cut-short", f"cut short: {exc}", reason=str(exc), limit=_KIND)

    def changed(self) -> None:
        """The body went out, but the file changed meanwhile: ERR changed followed it."""
        self._line(self._moved(self.size, None, 0), "changed", "changed during the send")

    def _moved(self, count: int, sha256: str | None, offset: int) -> Moved:
        seconds = time.monotonic() - self.started
        return Moved(self.path, self.size, sha256, offset, count, seconds)

    def _line(
        self, moved: Moved, result: str, how: str, *, reason: str | None = None,
        limit: str | None = None,
    ) -> None:  # fmt: skip
        log_transfer(self.session, "sent", moved, result, how, reason=reason, limit=limit)


def _end_reason(exc: TransferError) -> str:
    if isinstance(exc, SendStalled):
        return "send-timeout"
    if isinstance(exc, FileShrank):
        return "error"  # (a v1 body cannot be made up: the connection is dropped)
    return "reset"


@dataclass(frozen=True, slots=True)
class Moved:
    """What one transfer moved: the file, from ``offset``, ``count`` bytes in ``seconds``."""

    path: str
    size: int
    sha256: str | None  # None where the line need not repeat it
    offset: int
    count: int
    seconds: float

    @property
    def rate(self) -> float:
        """Bytes a second."""
        return self.count / self.seconds if self.seconds > 0 else 0.0


# The assignment's start ("Sent file 'NAME' size=N sha256=…", as cli.md quotes
# it) stays whole; who, how long and how it ended come after it.
_HEADS = {"sent": "Sent file %r size=%d%s to %s", "received": "Received file %r size=%d%s from %s"}
_TAIL = " %.3fs: %s bytes at %s, %s"
# A line a file: its records are copies of one (see LineTemplate), which halves
# what a small file's line costs (about 11 µs through Logger.info).
_LINES = {
    event: LineTemplate(log, logging.INFO, head + _TAIL, __file__, "log_transfer")
    for event, head in _HEADS.items()
}


def log_transfer(
    s: Session,
    event: str,
    moved: Moved,
    result: str,
    how: str,
    *,
    reason: str | None = None,
    limit: str | None = None,
) -> None:
    """The line of one transfer (``event``: sent, received). One with a ``limit``
    is rate-limited as the warnings of that kind are: a flood of clients that
    leave mid-body must not flood the log."""
    client = s.name or s.address
    wanted = moved.size - moved.offset
    amount = str(moved.count) if moved.count == wanted else f"{moved.count} of {wanted}"
    digest = f" sha256={moved.sha256[:12]}…" if moved.sha256 else ""
    rate = rate_text(moved.rate)
    args = (moved.path, moved.size, digest, client, moved.seconds, amount, rate, how)
    fields = {
        "event": event,
        "client": client,
        "path": moved.path,
        "size": moved.size,
        "sha256": moved.sha256,
        "offset": moved.offset or None,
        "bytes": moved.count,
        "seconds": round(moved.seconds, 6),
        "rate": round(moved.rate),
        "result": result,
        "reason": reason,
    }
    if limit is None:
        _LINES[event].log(args, fields)
        return
    message = _HEADS[event] + _TAIL
    s.context.limiter.info(limit, message, *args, source=s.source, extra=fields)


_RATE_UNITS = ("KiB/s", "MiB/s", "GiB/s", "TiB/s")


def rate_text(per_second: float) -> str:
    """``512 B/s``, ``5.9 KiB/s``, ``112.0 MiB/s``: powers of 1024, one decimal."""
    if per_second < 1024:
        return f"{per_second:.0f} B/s"
    for unit in _RATE_UNITS:
        per_second /= 1024
        if per_second < 1024 or unit == _RATE_UNITS[-1]:
            break
    return f"{per_second:.1f} {unit}"
