"""One log line per upload: which file, from whom, its size and digest, how long, how fast,
how it ended.

A stored upload is logged as a send is (:mod:`.transfer_log`)::

    Received file 'a.txt' size=6 sha256=5891b5b522d5… from Client01 0.002s: 6 bytes
    at 2.9 KiB/s, stored

(one line); ``stored, resumed from N`` for a resumed one. One that failed or
was interrupted says so instead (rate-limited: a flood of broken uploads must
not flood the log). A refusal, before any byte of the body, is a warning of its
own.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .. import protocol as p
from .transfer_log import Moved, log_transfer

if TYPE_CHECKING:
    from .session import Session

_KIND = "upload"  # the warning kind, for the rate limit


class UploadLog:
    """The clock and the names of one upload, and its one line at the end."""

    __slots__ = ("session", "put", "offset", "started")

    def __init__(self, session: Session, put: p.Put, offset: int = 0) -> None:
        self.session = session
        self.put = put
        self.offset = offset
        self.started = time.monotonic()

    def _what(self) -> tuple[object, ...]:
        put, s = self.put, self.session
        return put.path, put.size, put.sha256[:12], s.name or s.address

    def _moved(self, received: int) -> Moved:
        put = self.put
        seconds = time.monotonic() - self.started
        return Moved(put.path, put.size, put.sha256, self.offset, received, seconds)

    def stored(self, received: int) -> None:
        if self.offset:
            how, result = f"stored, resumed from {self.offset}", "resumed"
        else:
            how, result = "stored", "stored"
        log_transfer(self.session, "received", self._moved(received), result, how)

    def ended(self, how: str, received: int) -> None:
        """The upload ended without being stored: ``how`` says why (its first word,
        ``failed``, ``interrupted`` or ``stopped``, is the json ``result``)."""
        result = how.split(" ", 1)[0]
        if self.offset:
            how = f"{how} (resumed from {self.offset})"
        moved = self._moved(received)
        log_transfer(self.session, "received", moved, result, how, reason=how, limit=_KIND)

    def refused(self, reason: str) -> None:
        """Refused before any byte of the body."""
        self.session.context.note(
            "upload-refused",
            "Refused upload of %r size=%d sha256=%s… from %s: %s",
            *self._what(), reason,
            source=self.session.source,
        )  # fmt: skip
