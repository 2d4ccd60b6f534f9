"""One log line per transfer: to whom, which file, how many bytes, how long, how it ended.

A completed send keeps the wording the log always had (``Sent file
'sample.txt' size=6 sha256=5891b5b522d5…``) and adds the client, the bytes
and the time: ``… to Client01: 6 bytes in 0.00 s``. A resumed one says
``resumed from N``; one cut short (the client gone, stalled) or whose file
changed during the send says so instead.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .transfer import TransferError

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger("filedock.server")


class TransferLog:
    """The clock and the names of one file's send, and its one line at the end."""

    __slots__ = ("session", "path", "size", "started")

    def __init__(self, session: Session, path: str, size: int) -> None:
        self.session = session
        self.path = path
        self.size = size
        self.started = time.monotonic()

    def _client(self) -> str:
        return self.session.name or self.session.address

    def _seconds(self) -> float:
        return time.monotonic() - self.started

    def completed(self, sha256: str, offset: int = 0) -> None:
        """The body went out whole (from ``offset``, for a resume)."""
        sent = self.size - offset
        if offset:
            log.info(
                "Sent file %r from %d size=%d sha256=%s… to %s: resumed from %d, "
                "%d bytes in %.2f s",
                self.path, offset, self.size, sha256[:12], self._client(), offset, sent,
                self._seconds(),
            )  # fmt: skip
        else:
            log.info(
                "Sent file %r size=%d sha256=%s… to %s: %d bytes in %.2f s",
                self.path, self.size, sha256[:12], self._client(), sent, self._seconds(),
            )  # fmt: skip

    def cut_short(self, exc: TransferError, offset: int = 0) -> None:
        """The body could not be sent whole: the connection is dropped."""
        # Rate-limited: a flood of clients that leave mid-body must not flood the log.
        self.session.context.warn(
            "transfer",
            "Transfer of %r to %s cut short: %s; %d of %d bytes in %.2f s",
            self.path, self.session.label(), exc, exc.sent, self.size - offset,
            self._seconds(),
        )  # fmt: skip

    def changed(self) -> None:
        """The body went out, but the file changed meanwhile: ERR changed followed it."""
        log.warning(
            "Sent file %r size=%d to %s: changed during the send, %d bytes in %.2f s",
            self.path, self.size, self._client(), self.size, self._seconds(),
        )  # fmt: skip
