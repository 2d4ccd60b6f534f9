"""The client registry: names, capacity, the pending pool, and every client's
times and address.

:class:`Registry` is what a server needs of it, whatever keeps the state;
:class:`MemoryRegistry` keeps it in this process, for one server. It is the
one owner of that state. The server runs it on its event loop thread, so
each call is atomic with respect to the others: with N slots, however many
connections arrive at once, exactly N are welcomed. The registry holds
values, not wire bytes: encoding a ``STATUS`` reply is its caller's job
(see :mod:`filedock.server.status`).

A connection passes two gates, as in OpenSSH (``MaxStartups``, then a
session): on accept it enters the **pending pool** (bounded, with a share
per source) and is given a name; only when its handshake completes (TLS,
``HELLO``, a right token) does it take a **slot**. Silent or unauthenticated
connections thus hold a place in the pool for at most the handshake timeout,
never a slot.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from itertools import chain
from typing import Any, Generic, Protocol, TypeAlias, TypeVar

from .. import protocol as p
from ..protocol import ClientRecord, client_name

T = TypeVar("T")
# What a registry call gives: its answer now, or (a round trip away: a shared
# registry) a future of it, which the registry always completes (an error
# becomes a Refusal) within its own timeouts.
Answer: TypeAlias = "T | asyncio.Future[T]"


@dataclass(eq=False, slots=True)
class ClientEntry:
    """One welcomed client, from ``WELCOME`` to its end."""

    number: int
    name: str
    address: str
    accepted: float  # wall-clock seconds, for people
    finished: float | None = None
    source: str = ""  # the address's source group, for the per-source cap
    node: str | None = None  # the server that holds it, in a cluster (None: alone)
    _record: ClientRecord | None = field(default=None, repr=False)

    def record(self) -> ClientRecord:
        # Built once per state: STATUS with thousands of clients stays cheap.
        if self._record is None:
            accepted = datetime.fromtimestamp(int(self.accepted))
            finished = None if self.finished is None else datetime.fromtimestamp(int(self.finished))
            self._record = ClientRecord(self.name, accepted, finished, self.address, self.node)
        return self._record


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection was turned away: ``reason`` for the client, ``summary`` for
    the log, ``kind`` for the statistics (``full``, ``per-address``, ``registry``)."""

    reason: str
    summary: str
    kind: str = "full"


def at_capacity(limit: int) -> Refusal:
    """Every one of the ``limit`` slots is taken."""
    return Refusal(
        f"server is at capacity ({limit}/{limit} clients)", f"at capacity ({limit}/{limit})"
    )


def per_address(limit: int) -> Refusal:
    """The source already holds its ``limit`` slots."""
    return Refusal(
        f"too many connections from your address ({limit}/{limit} per address)",
        f"per-address limit ({limit}/{limit})",
        "per-address",
    )


def registry_unavailable(detail: str) -> Refusal:
    """The refusal of a connection the shared registry could not be asked about:
    no slot the registry did not grant (``detail`` is for the log)."""
    return Refusal(p.REGISTRY_UNAVAILABLE_REASON, f"registry unavailable ({detail})", "registry")


# A finished session shorter than this is brief: a one-shot command (`filedock
# ping`, `filedock get FILE` of a small file) lasts milliseconds, a person at the
# prompt stays far longer. A run of brief sessions from one source keeps only its
# latest in the history (see MemoryRegistry.finish), so a script's hundred calls
# are one row of STATUS, not a hundred pushing everyone else out. A run is one
# after another, as a script's calls are: brief clients that were connected at
# the same time (three people, a shutdown) are each kept.
BRIEF_SESSION = 2.0
# How far back among the finished clients a brief one looks for its source's
# previous brief row: bounded work per finish, and a few scripts from other
# addresses running at once still collapse.
BRIEF_LOOKBACK = 16

# How long a connection that has not sent its HELLO is safe from being dropped
# for a newcomer from its source (see PendingPool.make_room). An honest client
# greets one round trip after NAME, a TLS one a few round trips later: well
# under a second even far away and under load. A second also keeps a burst of
# new connections from dropping each other: past the share, the burst is
# answered FULL, as it always was.
EVICTION_GRACE = 1.0


class Waiting(Protocol):
    """A connection in the pending pool, as the pool sees it."""

    def may_be_dropped(self) -> bool:
        """Whether it may make room for a newcomer: no HELLO received, no answer owed."""
        ...

    def has_spoken(self) -> bool:
        """Whether it did more than connect (it began a TLS handshake): dropped only
        when no connection that did nothing at all may go. A TLS client needs more
        round trips than a plain one before its HELLO, so it ages longer in the pool."""
        ...


W = TypeVar("W", bound=Waiting)


class PendingPool(Generic[W]):
    """Connections still in their handshake: at most ``size``, ``share`` per source.

    When a newcomer finds its source's share (or the whole pool) full,
    :meth:`make_room` names a connection to drop for it: the oldest of its
    source (for the pool: of the source holding the most places) that has
    waited at least ``grace`` seconds without greeting, or that took its own
    place by having another dropped. So silent connections that reconnect
    when dropped cannot keep an honest client of the same source out, while a
    burst of new connections past the share is still answered ``FULL``.
    """

    def __init__(
        self,
        size: int,
        share: int,
        *,
        grace: float = EVICTION_GRACE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if size < 1 or share < 1:
            raise ValueError("the pending pool and its share must hold at least one")
        self.size = size
        self.share = share
        self.grace = grace
        self._clock = clock
        # Per source, its connections in the order they entered, with that time
        # and whether it came in by having another dropped (see _oldest_droppable).
        self._members: dict[str, dict[W, tuple[float, bool]]] = {}
        # The source make_room last dropped a connection for: its next entry
        # took a place that was not free.
        self._made_room_for: str | None = None
        # Sources whose newcomers found no place to take, and when: bounded by
        # the sources in the pool (forgotten when a source has no place left).
        self._pressed: dict[str | None, float] = {}
        self._count = 0

    def __len__(self) -> int:
        return self._count

    def held_by(self, source: str) -> int:
        return len(self._members.get(source, ()))

    @property
    def sources(self) -> int:
        """How many sources hold a place now: a source is forgotten with its last place."""
        return len(self._members)

    def refusal(self, source: str) -> Refusal | None:
        """Why a new connection from ``source`` cannot wait here now, or ``None``."""
        if self._count >= self.size:
            return Refusal(
                f"server is busy: too many connections still greeting ({self.size}/{self.size}); "
                "try again shortly",
                f"pending pool full ({self.size}/{self.size})",
            )
        if self.held_by(source) >= self.share:
            return Refusal(
                "too many connections greeting from your address "
                f"({self.share}/{self.share} per address); try again shortly",
                f"pending share full ({self.share}/{self.share} per address)",
                "per-address",
            )
        return None

    def make_room(self, source: str) -> W | None:
        """The connection to drop so that one from ``source`` fits, or ``None``.

        ``None`` either when there is room already or when no connection may
        be dropped; the caller drops the one named (which then leaves).
        """
        victim = self._victim_for(source)
        self._made_room_for = None if victim is None else source
        return victim

    def _victim_for(self, source: str) -> W | None:
        if self.held_by(source) >= self.share:
            return self._pressing(source, lambda due: self._oldest_droppable(source, due))
        if self._count < self.size:
            return None
        return self._pressing(None, self._oldest_droppable_of_the_largest)

    def _pressing(
        self, key: str | None, find: Callable[[float], tuple[W, float] | None]
    ) -> W | None:
        """``find`` the oldest that may go, entered before the grace (or waived, see below).

        Once a newcomer has found no such place (in its source's share, or with
        ``key`` None in the pool), the grace is waived for as long as newcomers
        keep coming within a grace of each other: connections that reconnect
        as fast as they are dropped would otherwise keep every place younger
        than the grace, and every newcomer out. A connection that sent its
        HELLO is never dropped, so an honest burst loses nothing.
        """
        now = self._clock()
        due = now - self.grace
        waived = self._pressed.get(key, float("-inf")) > due
        found = find(float("inf") if waived else due)
        if found is None or found[1] > due:  # refused, or let in by the waiver only
            self._pressed[key] = now
        return None if found is None else found[0]

    def _oldest_droppable_of_the_largest(self, due: float) -> tuple[W, float] | None:
        by_places = sorted(self._members, key=self.held_by, reverse=True)
        for holder in by_places:  # the largest first; the next if none of its may go
            found = self._oldest_droppable(holder, due)
            if found is not None:
                return found
        return None

    def _oldest_droppable(self, source: str, due: float) -> tuple[W, float] | None:
        """The oldest connection of ``source`` that may be dropped, and when it entered.

        One that entered after ``due`` is spared, unless it took its place by
        having another dropped: the grace lets a client of a calm source finish
        its first round trip, and a connection that needed a place pushed free
        came in a crowd. Else silent connections dropped together, back
        together a moment later, would hold every place inside the grace and
        the next newcomer, honest or not, would be refused.
        """
        spoken: tuple[W, float] | None = None  # the oldest that did more than connect
        for member, (entered, displaced) in self._members.get(source, {}).items():
            if entered > due and not displaced:
                continue
            if member.may_be_dropped():
                if not member.has_spoken():
                    return member, entered
                spoken = spoken or (member, entered)
        return spoken

    def enter(self, source: str, member: W) -> None:
        """Give ``member`` a place; after :meth:`make_room` named a connection to drop
        for ``source``, that place is one pushed free."""
        displaced, self._made_room_for = self._made_room_for == source, None
        self._members.setdefault(source, {})[member] = (self._clock(), displaced)
        self._count += 1

    def leave(self, source: str, member: W) -> None:
        members = self._members.get(source)
        if members is None or members.pop(member, None) is None:
            return
        if not members:
            del self._members[source]
            self._pressed.pop(source, None)
        self._count -= 1
        if not self._count:
            self._pressed.clear()


class Registry(Protocol):
    """What a server needs of its client registry, wherever the state lives.

    ``max_clients`` slots are shared by the welcomed clients only; finished
    clients are kept for ``STATUS`` (up to a bound), connected ones always
    are. A connection takes a name (:meth:`take_name`) when it enters the
    pending pool and a slot (:meth:`welcome`) when its handshake completes;
    its session calls :meth:`finish` on every path out, which frees the slot.

    ``pending`` is this server's own pool of connections still greeting:
    it is local to one server whatever keeps the rest (connections greet
    the process they reached).
    """

    @property
    def max_clients(self) -> int: ...

    @property
    def pending(self) -> PendingPool[Any]: ...

    @property
    def connected_count(self) -> int:
        """How many clients hold a slot now."""
        ...

    @property
    def is_full(self) -> bool:
        """Whether every slot is taken."""
        ...

    @property
    def version(self) -> int:
        """A number that changes whenever :meth:`snapshot` would: a caller may keep
        what it made of a snapshot until then (an encoded ``STATUS``)."""
        ...

    def refusal(self, source: str = "") -> Refusal | None:
        """Why ``source`` could not take a slot now, or ``None``."""
        ...

    def accept_refusal(self, source: str) -> Refusal | None:
        """Why a new connection from ``source`` is answered ``FULL`` on accept, or ``None``."""
        ...

    def take_name(self, source: str = "") -> Answer[tuple[int, str] | Refusal]:
        """The next number and its name (counted up, never reused), or why a new
        connection from ``source`` is answered ``FULL`` (taking no number)."""
        ...

    def welcome(
        self, number: int, name: str, address: str, source: str
    ) -> Answer[ClientEntry | Refusal]:
        """Give the named connection a slot (ACCEPTED now), or say why it cannot have one.

        ``number`` is the connection's id too: asked again for the same one, a
        registry gives the same answer and never a second slot."""
        ...

    def finish(self, entry: ClientEntry) -> bool:
        """Free ``entry``'s slot and stamp its FINISHED time; ``False`` if it already was.

        Answered at once: a shared registry tells the others after."""
        ...

    def connected_names(self) -> list[str]:
        """Names of the clients connected now, in the order they connected."""
        ...

    def snapshot(self) -> list[ClientRecord]:
        """Every client kept, connected or finished, oldest first."""
        ...


class MemoryRegistry:
    """A :class:`Registry` kept in this process: one server's clients.

    Finished clients are kept up to ``history`` of them, oldest dropped
    first; a brief one (under ``brief`` seconds, a one-shot command; 0: none
    is) replaces the previous brief row of its source, so a script's run of
    one-shot commands is one row. Connections never welcomed (refused, ``FULL``, no
    valid token) are never kept. ``slots_per_source(source)`` caps the slots one source may hold
    (0: no cap); ``pending`` is the pool that connections wait in before
    their ``WELCOME``.
    """

    def __init__(
        self,
        max_clients: int,
        history: int = 1000,
        clock: Callable[[], float] = time.time,
        *,
        slots_per_source: Callable[[str], int] = lambda _: 0,
        pending: PendingPool[Any] | None = None,
        brief: float = BRIEF_SESSION,
    ) -> None:
        if max_clients < 1:
            raise ValueError("max_clients must be at least 1")
        if history < 0:
            raise ValueError("history cannot be negative")
        self.max_clients = max_clients
        # An empty pool is falsy (len 0): test for None, not truth.
        self.pending: PendingPool[Any] = pending if pending is not None else PendingPool(64, 64)
        self._version = 0
        self._slots_per_source = slots_per_source
        self._per_source: dict[str, int] = {}
        self._clock = clock
        self._brief = brief
        self._issued = 0
        self._connected: dict[str, ClientEntry] = {}  # in the order they connected
        self._finished: deque[ClientEntry] = deque(maxlen=history)

    def refusal(self, source: str = "") -> Refusal | None:
        """Why ``source`` could not take a slot now, or ``None``."""
        if len(self._connected) >= self.max_clients:
            return at_capacity(self.max_clients)
        limit = self._slots_per_source(source)
        if limit and self._per_source.get(source, 0) >= limit:
            return per_address(limit)
        return None

    def accept_refusal(self, source: str) -> Refusal | None:
        """Why a new connection from ``source`` is answered ``FULL`` on accept, or ``None``."""
        return self.refusal(source) or self.pending.refusal(source)

    def take_name(self, source: str = "") -> tuple[int, str]:
        """The next number and its name: counted up, never reused (the caller
        asked :meth:`refusal` first, on this same loop turn)."""
        self._issued += 1
        return self._issued, client_name(self._issued)

    def welcome(self, number: int, name: str, address: str, source: str) -> ClientEntry | Refusal:
        """Give the named connection a slot (ACCEPTED now), or say why it cannot have one."""
        refusal = self.refusal(source)
        if refusal is not None:
            return refusal
        entry = ClientEntry(number, name, address, self._clock(), source=source)
        self._connected[name] = entry
        self._per_source[source] = self._per_source.get(source, 0) + 1
        self._version += 1
        return entry

    def admit(self, address: str, source: str = "") -> ClientEntry | None:
        """Name and welcome ``address`` at once, or ``None`` (taking no number) when refused."""
        if self.refusal(source) is not None:
            return None
        entry = self.welcome(*self.take_name(), address, source)
        assert isinstance(entry, ClientEntry)
        return entry

    def finish(self, entry: ClientEntry) -> bool:
        """Free ``entry``'s slot and stamp its FINISHED time; ``False`` if it already was."""
        if self._connected.pop(entry.name, None) is None:
            return False
        left = self._per_source.pop(entry.source, 1) - 1
        if left:
            self._per_source[entry.source] = left
        entry.finished = self._clock()
        entry._record = None
        if self._finished.maxlen:
            if self._brief and self._is_brief(entry):
                self._forget_previous_brief(entry)
            self._finished.append(entry)
        self._version += 1
        return True

    def _is_brief(self, entry: ClientEntry) -> bool:
        return entry.finished is not None and entry.finished - entry.accepted < self._brief

    def _forget_previous_brief(self, entry: ClientEntry) -> None:
        """Drop the latest brief row of ``entry``'s source among the last few
        finished, if it had finished before ``entry`` was welcomed."""
        finished = self._finished
        for back in range(1, min(BRIEF_LOOKBACK, len(finished)) + 1):
            earlier = finished[-back]
            if earlier.source == entry.source and self._is_brief(earlier):
                assert earlier.finished is not None
                if earlier.finished <= entry.accepted:
                    del finished[-back]
                return

    @property
    def version(self) -> int:
        return self._version

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

    def _kept(self) -> list[ClientEntry]:
        # Connected clients are in admission order already; finished ones are in
        # the order they left, so the two are merged by a sort.
        return sorted(chain(self._finished, self._connected.values()), key=_admission_order)


def _admission_order(entry: ClientEntry) -> int:
    return entry.number
