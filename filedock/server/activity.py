"""What one session is doing now: the live view of its one task.

A session runs at most one task at a time (a send, an upload's body, a
listing, a digest); while it runs, :attr:`Session.activity` says what it is,
and ``done`` grows as the body moves, so a reader (the status page) sees a
transfer's progress without asking the transfer anything. It is None when
the session only answers lines.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass(eq=False, slots=True)
class Activity:
    """One session's task now: its verb, the file, how far its body got."""

    verb: str  # "get", "range", "put", "list", "hash", ...
    path: str | None
    size: int | None  # the body's bytes, when known (the whole file's, for a part)
    # The body's position so far, grown as its bytes move: from the part's
    # offset for a RANGE, from the partial's for a resumed upload.
    done: int = 0
    started: float = field(default_factory=time.monotonic)
