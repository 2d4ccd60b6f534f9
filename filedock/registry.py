"""The client registry: names, capacity, and every client's times and address.

It is the one owner of that state. The server runs it on its event loop
thread, so each call is atomic with respect to the others: with N slots,
however many connections arrive at once, exactly N are admitted.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain

from .protocol import ClientRecord, client_name, encode_client_record


@dataclass(eq=False, slots=True)
class ClientEntry:
    """One admitted connection, from ``NAME`` to its end."""

    number: int
    name: str
    address: str
    accepted: float  # wall-clock seconds, for people
    finished: float | None = None
    host: str = ""  # the address without its port, for the per-address limit
    _record: ClientRecord | None = field(default=None, repr=False)
    _line: bytes | None = field(default=None, repr=False)

    def record(self) -> ClientRecord:
        # Built once per state: STATUS with thousands of clients stays cheap.
        if self._record is None:
            accepted = datetime.fromtimestamp(int(self.accepted))
            finished = None if self.finished is None else datetime.fromtimestamp(int(self.finished))
            self._record = ClientRecord(self.name, accepted, finished, self.address)
        return self._record

    def line(self) -> bytes:
        """The record as ``STATUS`` sends it, encoded once per state too."""
        if self._line is None:
            self._line = encode_client_record(self.record())
        return self._line


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection was turned away: ``reason`` for the client, ``summary`` for the log."""

    reason: str
    summary: str


class Registry:
    """Who is connected now and who was before.

    ``max_clients`` slots are shared by every connection that was sent a name,
    greeted or not. Finished clients are kept for ``STATUS`` up to
    ``history`` of them, oldest dropped first; connected ones always are.
    With ``max_per_host``, one host may hold at most that many slots.
    """

    def __init__(
        self,
        max_clients: int,
        history: int = 1000,
        clock: Callable[[], float] = time.time,
        *,
        max_per_host: int = 0,
    ) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        if history < 0:
            raise ValueError("history cannot be negative")
        self.max_clients = max_clients
        self.max_per_host = max_per_host
        self._per_host: dict[str, int] = {}
        self._clock = clock
        self._issued = 0
        self._connected: dict[str, ClientEntry] = {}  # in the order they connected
        self._finished: deque[ClientEntry] = deque(maxlen=history)

    def refusal(self, host: str = "") -> Refusal | None:
        """Why a connection from ``host`` would be turned away now, or ``None``."""
        if len(self._connected) >= self.max_clients:
            limit = self.max_clients
            return Refusal(
                f"server is at capacity ({limit}/{limit} clients)", f"at capacity ({limit}/{limit})"
            )
        if self.max_per_host and self._per_host.get(host, 0) >= self.max_per_host:
            limit = self.max_per_host
            return Refusal(
                f"too many connections from your address ({limit}/{limit} per address)",
                f"per-address limit ({limit}/{limit})",
            )
        return None

    def admit(self, address: str, host: str = "") -> ClientEntry | None:
        """Hold a slot and a new name for ``address``, or ``None`` when refused."""
        if self.refusal(host) is not None:
            return None
        self._issued += 1
        entry = ClientEntry(
            self._issued, client_name(self._issued), address, self._clock(), host=host
        )
        self._connected[entry.name] = entry
        if self.max_per_host:
            self._per_host[host] = self._per_host.get(host, 0) + 1
        return entry

    def finish(self, entry: ClientEntry) -> bool:
        """Free ``entry``'s slot and stamp its FINISHED time; ``False`` if it already was."""
        if self._connected.pop(entry.name, None) is None:
            return False
        if self.max_per_host:
            left = self._per_host.pop(entry.host, 1) - 1
            if left:
                self._per_host[entry.host] = left
        entry.finished = self._clock()
        entry._record = entry._line = None
        if self._finished.maxlen:
            self._finished.append(entry)
        return True

    @property
    def connected_count(self) -> int:
        return len(self._connected)

    @property
    def is_full(self) -> bool:
        return len(self._connected) >= self.max_clients

    def connected_names(self) -> list[str]:
        """Names of the clients connected now, in the order they connected."""
        return list(self._connected)

    def snapshot(self) -> list[ClientRecord]:
        """Every client kept, connected or finished, oldest first."""
        return [entry.record() for entry in self._kept()]

    def snapshot_lines(self) -> list[bytes]:
        """:meth:`snapshot`'s records as ``STATUS`` sends them (10,000 in a few ms)."""
        return [entry.line() for entry in self._kept()]

    def _kept(self) -> list[ClientEntry]:
        # Connected clients are in admission order already; finished ones are in
        # the order they left, so the two are merged by a sort.
        return sorted(chain(self._finished, self._connected.values()), key=_admission_order)


def _admission_order(entry: ClientEntry) -> int:
    return entry.number
