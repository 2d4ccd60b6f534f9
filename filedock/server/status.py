"""The ``STATUS`` reply, encoded from the registry's snapshot and kept until it changes.

What a client sees of the addresses follows ``--status-addresses``: ``all``
of them, only its ``own`` (the default), or none (``hidden``). A file server
shared by a few machines need not tell every colleague where the others
connect from; the log and the status page (``--http``) still show them all
to whoever runs the server.
"""

from __future__ import annotations

from dataclasses import replace

from .. import protocol as p
from .config import DEFAULT_STATUS_ADDRESSES, STATUS_ADDRESSES
from .registry import Registry


class StatusReplies:
    """``STATUS n`` and its n records as bytes, made again only when the registry's
    :attr:`~Registry.version` moves, and then re-encoding only the records that
    changed: with thousands of clients kept, a ``STATUS`` stays cheap.

    With ``addresses="own"`` the kept reply has every address hidden and the
    asking client's own row is spliced in: two slices, not a new encoding.
    """

    def __init__(self, registry: Registry, addresses: str = DEFAULT_STATUS_ADDRESSES) -> None:
        if addresses not in STATUS_ADDRESSES:
            raise ValueError(f"addresses must be one of {', '.join(STATUS_ADDRESSES)}")
        self._registry = registry
        self._addresses = addresses
        self._version: int | None = None
        self._reply = b""
        # Per client name (never reused): its record, the line sent to others, and
        # the line with its address (the same unless addresses are hidden).
        self._lines: dict[str, tuple[p.ClientRecord, bytes, bytes]] = {}
        # Per client name: where its line is in _reply (for "own").
        self._spans: dict[str, tuple[int, int]] = {}

    def reply(self, viewer: str | None = None) -> bytes:
        """The reply for the client named ``viewer`` (``None``: a client with no row)."""
        version = self._registry.version
        if version != self._version:
            self._encode()
            self._version = version
        if self._addresses != "own" or viewer is None:
            return self._reply
        span = self._spans.get(viewer)
        if span is None:
            return self._reply
        start, end = span
        return self._reply[:start] + self._lines[viewer][2] + self._reply[end:]

    def _encode(self) -> None:
        known: dict[str, tuple[p.ClientRecord, bytes, bytes]] = self._lines
        lines: dict[str, tuple[p.ClientRecord, bytes, bytes]] = {}
        for record in self._registry.snapshot():
            cached = known.get(record.name)
            if cached is None or not (cached[0] is record or cached[0] == record):
                cached = self._encoded(record)
            lines[record.name] = cached
        self._lines = lines  # only the clients kept: bounded as the registry is
        parts = [p.encode_reply(p.StatusReply(len(lines)))]
        spans: dict[str, tuple[int, int]] = {}
        offset = len(parts[0])
        for name, (_, shown, _own) in lines.items():
            spans[name] = offset, offset + len(shown)
            offset += len(shown)
            parts.append(shown)
        self._spans = spans
        self._reply = b"".join(parts)

    def _encoded(self, record: p.ClientRecord) -> tuple[p.ClientRecord, bytes, bytes]:
        full = p.encode_client_record(record)
        if self._addresses == "all":
            return record, full, full
        return record, p.encode_client_record(replace(record, address=p.HIDDEN_ADDRESS)), full
