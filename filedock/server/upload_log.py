"""One log line per upload: from whom, which file, its size and digest, how long, how it ended.

A stored upload is logged as a send is (``Received file 'a.txt' size=6
sha256=5891b5b522d5… from Client01: stored, 6 bytes in 0.00 s``); one that
failed, was interrupted or refused says so instead (rate-limited: a flood of
refused uploads must not flood the log).
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .. import protocol as p

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("filedock.server")

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

    def _resumed(self) -> str:
        return f" (resumed from {self.offset})" if self.offset else ""

    def stored(self, received: int) -> None:
        log.info(
            "Received file %r size=%d sha256=%s… from %s: stored%s, %d bytes in %.2f s",
            *self._what(), self._resumed(), received, time.monotonic() - self.started,
        )  # fmt: skip

    def ended(self, how: str, received: int) -> None:
        """The upload ended without being stored: ``how`` says why."""
        self.session.context.warn(
            _KIND,
            "Upload of %r size=%d sha256=%s… from %s %s%s; %d bytes in %.2f s",
            *self._what(), how, self._resumed(), received, time.monotonic() - self.started,
            source=self.session.source,
        )  # fmt: skip

    def refused(self, reason: str) -> None:
        """Refused before any byte of the body."""
        self.session.context.note(
            "upload-refused",
            "Refused upload of %r size=%d sha256=%s… from %s: %s",
            *self._what(), reason,
            source=self.session.source,
        )  # fmt: skip
