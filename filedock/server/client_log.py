"""A client's two lines in the log: ``Connected: Client01 from ADDR`` at its
``WELCOME``, and ``Finished: Client01 (exit, 12.4 s)`` at its end, with why
and how long after the welcome. Both carry their fields for the json format.
With several servers as one (``--registry``) both end with the node that
holds the client: ``Connected: Client01 from ADDR on node a``.
"""

from __future__ import annotations

import logging

from .logs import LineTemplate
from .registry import ClientEntry

log = logging.getLogger("filedock.server")


# These two lines come for every session: their records are copies (see
# LineTemplate), and their source is always this module.
_CONNECTED = LineTemplate(log, logging.INFO, "Connected: %s from %s", __file__, "connected")
_FINISHED = LineTemplate(log, logging.INFO, "Finished: %s (%s, %.1f s)", __file__, "finished")
_CONNECTED_ON_NODE = LineTemplate(
    log, logging.INFO, "Connected: %s from %s on node %s", __file__, "connected"
)
_FINISHED_ON_NODE = LineTemplate(
    log, logging.INFO, "Finished: %s (%s, %.1f s) on node %s", __file__, "finished"
)


def connected(entry: ClientEntry) -> None:
    fields: dict[str, object] = {
        "event": "connected", "client": entry.name, "address": entry.address
    }  # fmt: skip
    if entry.node is None:
        _CONNECTED.log((entry.name, entry.address), fields)
        return
    fields["node"] = entry.node
    _CONNECTED_ON_NODE.log((entry.name, entry.address, entry.node), fields)


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
        _FINISHED.log((entry.name, reason, seconds), fields)
        return
    fields["node"] = entry.node
    _FINISHED_ON_NODE.log((entry.name, reason, seconds, entry.node), fields)
