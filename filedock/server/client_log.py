"""A client's two lines in the log: ``Connected: Client01 from ADDR`` at its
``WELCOME``, and ``Finished: Client01 (exit, 12.4 s)`` at its end, with why
and how long after the welcome. Both carry their fields for the json format.
With several servers as one (``--registry``) both end with the node that
holds the client: ``Connected: Client01 from ADDR on node a``.
"""

from __future__ import annotations

import logging

from .registry import ClientEntry

log = logging.getLogger("filedock.server")


def _info(message: str, args: tuple[object, ...], fields: dict[str, object]) -> None:
    """Log at INFO without looking up the caller's source line: these two lines
    come for every session, and the lookup (a walk of the stack) was a fifth
    of their cost. Their source is always this module."""
    if log.isEnabledFor(logging.INFO):
        log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, message, args, None,
                                  "client_log", fields))  # fmt: skip


def connected(entry: ClientEntry) -> None:
    fields: dict[str, object] = {
        "event": "connected", "client": entry.name, "address": entry.address
    }  # fmt: skip
    if entry.node is None:
        _info("Connected: %s from %s", (entry.name, entry.address), fields)
        return
    fields["node"] = entry.node
    _info("Connected: %s from %s on node %s", (entry.name, entry.address, entry.node), fields)


def finished(entry: ClientEntry, reason: str) -> None:
    """``reason``: ``exit``, ``eof``, ``reset``, ``idle-timeout``, ``shutdown``, …"""
    end = entry.finished if entry.finished is not None else entry.accepted
    seconds = max(0.0, end - entry.accepted)  # (a wall clock stepped back: 0, not less)
    fields: dict[str, object] = {
        "event": "finished",
        "client": entry.name,
        "address": entry.address,
        "reason": reason,
        "seconds": round(seconds, 3),
    }
    if entry.node is None:
        _info("Finished: %s (%s, %.1f s)", (entry.name, reason, seconds), fields)
        return
    fields["node"] = entry.node
    _info("Finished: %s (%s, %.1f s) on node %s", (entry.name, reason, seconds, entry.node), fields)
