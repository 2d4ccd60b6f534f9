"""The ``STATUS`` reply, encoded from the registry's snapshot and kept until it changes."""

from __future__ import annotations

from .. import protocol as p
from .registry import Registry


class StatusReplies:
    """``STATUS n`` and its n records as bytes, made again only when the registry's
    :attr:`~Registry.version` moves, and then re-encoding only the records that
    changed: with thousands of clients kept, a ``STATUS`` stays cheap."""

    def __init__(self, registry: Registry) -> None:
        self._registry = registry
        self._version: int | None = None
        self._reply = b""
        # Per client name (never reused), its record and that record's line.
        self._lines: dict[str, tuple[p.ClientRecord, bytes]] = {}

    def reply(self) -> bytes:
        version = self._registry.version
        if version != self._version:
            self._reply = self._encode()
            self._version = version
        return self._reply

    def _encode(self) -> bytes:
        known, lines = self._lines, {}
        for record in self._registry.snapshot():
            cached = known.get(record.name)
            if cached is None or not (cached[0] is record or cached[0] == record):
                cached = record, p.encode_client_record(record)
            lines[record.name] = cached
        self._lines = lines  # only the clients kept: bounded as the registry is
        header = p.encode_reply(p.StatusReply(len(lines)))
        return header + b"".join(line for _, line in lines.values())
