"""A node's own copy of the cluster's table of clients: STATUS, WHO and the
counts are answered from it, with no round trip to Redis per command.

It follows the messages the scripts publish (see :mod:`.scripts`), and is
loaded whole again each time the node (re)subscribes. Applying a message
twice, or one older than the load, changes nothing: a row once finished stays
finished, and the history bound is kept here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from ...protocol import FIELD_SEPARATOR, ClientRecord


@dataclass(slots=True)
class Row:
    """One client of the cluster: times in ms of Redis's clock."""

    number: int
    name: str
    node: str
    address: str
    accepted: int
    finished: int | None = None
    _record: ClientRecord | None = field(default=None, repr=False)

    def record(self) -> ClientRecord:
        if self._record is None:  # built once per state, as ClientEntry's
            finished = None if self.finished is None else _local(self.finished)
            self._record = ClientRecord(
                self.name, _local(self.accepted), finished, self.address, self.node
            )
        return self._record


def _local(ms: int) -> datetime:
    return datetime.fromtimestamp(ms // 1000)


class ClusterTable:
    """Every node's clients, connected or finished (up to ``history`` of those)."""

    def __init__(self, history: int) -> None:
        self.history = history
        self.version = 0
        self._rows: dict[int, Row] = {}
        self._connected = 0
        self._snapshot: tuple[int, list[ClientRecord]] | None = None
        self.top = 0  # the highest number seen: names above it only, ever

    @property
    def connected_count(self) -> int:
        return self._connected

    def connected_names(self) -> list[str]:
        """The connected clients' names, in connection order."""
        rows = sorted(self._rows.values(), key=_number)
        return [row.name for row in rows if row.finished is None]

    def snapshot(self) -> list[ClientRecord]:
        """Every row kept, oldest first (made again only when the table changed)."""
        if self._snapshot is None or self._snapshot[0] != self.version:
            rows = sorted(self._rows.values(), key=_number)
            self._snapshot = self.version, [row.record() for row in rows]
        return self._snapshot[1]

    def connected(self, row: Row) -> None:
        """A slot taken (or told again: changes nothing)."""
        self.top = max(self.top, row.number)
        if row.number in self._rows:
            return
        self._rows[row.number] = row
        if row.finished is None:
            self._connected += 1
        self._changed()

    def finished(self, number: int, when: int, dropped: tuple[int, ...] = ()) -> None:
        """A slot freed at ``when``; ``dropped``: finished rows out of the history now."""
        row = self._rows.get(number)
        if row is not None and row.finished is None:
            row.finished = when
            row._record = None
            self._connected -= 1
        for old in dropped:
            self._forget(old)
        self._bound_history()
        self._changed()

    def apply(self, message: str) -> None:
        """A message published by a script (see :mod:`.scripts`): a change a line.
        Lines of other forms are ignored."""
        for line in message.split("\n"):
            self._apply_line(line)

    def _apply_line(self, line: str) -> None:
        kind, *fields = line.split(FIELD_SEPARATOR)
        try:
            if kind == "c" and len(fields) == 5:
                number, name, node, address, accepted = fields
                self.connected(Row(int(number), name, node, address, int(accepted)))
            elif kind == "f" and len(fields) >= 2:
                self.finished(int(fields[0]), int(fields[1]), tuple(map(int, fields[2:])))
        except ValueError:
            return  # not ours: the channel is open to anyone with access to Redis

    def reload(self, rows: dict[str, str], finished: dict[str, str]) -> None:
        """The whole table as Redis holds it now (see scripts.TABLE)."""
        loaded: dict[int, Row] = {}
        for key, value in rows.items():
            parts = value.split(FIELD_SEPARATOR)
            if len(parts) != 4 or not key.isdigit() or not parts[3].isdigit():
                continue
            end = finished.get(key)
            number = int(key)
            loaded[number] = Row(
                number, parts[0], parts[1], parts[2], int(parts[3]),
                int(end) if end is not None and end.isdigit() else None,
            )  # fmt: skip
        self._rows = loaded
        self._connected = sum(row.finished is None for row in loaded.values())
        self.top = max([self.top, *loaded])
        self._bound_history()
        self._changed()

    def _forget(self, number: int) -> None:
        row = self._rows.get(number)
        if row is not None and row.finished is not None:
            del self._rows[number]

    def _bound_history(self) -> None:
        if len(self._rows) - self._connected <= self.history:
            return  # (the common case, in O(1))
        finished = [row for row in self._rows.values() if row.finished is not None]
        if len(finished) > self.history:
            finished.sort(key=lambda row: (row.finished, row.number))
            for row in finished[: len(finished) - self.history]:
                del self._rows[row.number]

    def _changed(self) -> None:
        self.version += 1


def _number(row: Row) -> int:
    return row.number
