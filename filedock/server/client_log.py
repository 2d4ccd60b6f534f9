"""A client's two lines in the log: ``Connected: Client01 from ADDR`` at its
``WELCOME``, and ``Finished: Client01 (exit, 12.4 s)`` at its end, with why
and how long after the welcome. Both carry their fields for the json format.
"""

from __future__ import annotations

import logging

from .registry import ClientEntry

log = logging.getLogger("filedock.server")


def connected(entry: ClientEntry) -> None:
    log.info(
        "Connected: %s from %s",
        entry.name,
        entry.address,
        extra={"event": "connected", "client": entry.name, "address": entry.address},
    )


def finished(entry: ClientEntry, reason: str) -> None:
    """``reason``: ``exit``, ``eof``, ``reset``, ``idle-timeout``, ``shutdown``, …"""
    end = entry.finished if entry.finished is not None else entry.accepted
    seconds = max(0.0, end - entry.accepted)  # (a wall clock stepped back: 0, not less)
    log.info(
        "Finished: %s (%s, %.1f s)",
        entry.name,
        reason,
        seconds,
        extra={
            "event": "finished",
            "client": entry.name,
            "address": entry.address,
            "reason": reason,
            "seconds": round(seconds, 3),
        },
    )
