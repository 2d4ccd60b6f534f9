"""The :class:`~filedock.server.registry.Registry` of several servers as one, on Redis.

Every node (server) of the cluster runs one :class:`RedisRegistry` on the same
Redis. A session asks Redis three changes: its name at ``NAME``, its slot at
``HELLO``, and its end; nothing per command: ``STATUS``, ``WHO`` and the
counts are read from the node's own copy of the table (:mod:`.table`), which
follows what the scripts publish. A node has one call in flight at a time
(one Lua script, :data:`.scripts.CHANGES`); the changes asked for meanwhile,
of every session, go together in the next. One session alone costs three
calls; sessions at once share them. Names go out in the order they were
asked for, which is the order they were counted.

Each node renews its slots every lease/3; Redis drops a slot whose lease ran
out (a node that died) at the next call, whoever makes it, and the node that
cannot renew closes those clients itself before (see :mod:`.leases`).

Redis unreachable: fail closed. A new connection is answered
``FULL registry unavailable …``; connected clients keep being served (for as
long as the lease allows: the node cannot tell an outage from being cut off);
one warning per outage, one line when Redis is back, which the node notices
by itself (it keeps trying every half second). A Redis that lost the slots
(restarted empty) is told them again at the next renewal, and every call
that counts names carries the highest number the node knows, so no name is
ever given twice.

The Redis client's settings, chosen for the lease (redis-py's defaults, 5 s
and 3 retries, would outlast a short one): socket and connect timeout
:func:`socket_timeout` = lease/8, at most 2 s (15 s lease: 1.875 s); one retry
after 50 ms on a connection error or timeout. A call thus ends, answered or
failed, within about a quarter of the lease, before the next renewal is due.
Retrying is safe: the slot's call is keyed by the connection's number (its
id: a retry finds the slot it took and answers the same), the end and the
renewal may run twice, and a name counted twice is only a number skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ConstantBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ...protocol import ClientRecord, client_name
from ..registry import (
    ClientEntry,
    PendingPool,
    Refusal,
    at_capacity,
    per_address,
    registry_unavailable,
)
from . import scripts
from .leases import Leases
from .table import ClusterTable, Row

log = logging.getLogger("filedock.server")

RETRIES = 1  # one retry of a call that timed out or lost its connection
RETRY_BACKOFF = 0.05  # seconds before it
# While Redis is unreachable the node tries again this often (at most lease/3).
OUTAGE_RETRY = 0.5
# How long the subscription waits for a message before it looks again.
_LISTEN_POLL = 1.0
# How long it lets the changes right after one gather before it reads them.
_GATHER = 0.005
# How long a shutdown waits for the ends of sessions to reach Redis.
_CLOSE_WAIT = 2.0
# At most this many ends, slots and names each in one call (a burst is split).
_BATCH = 256


def socket_timeout(lease: float) -> float:
    """The Redis client's socket and connect timeout for ``lease``: well under it."""
    return min(2.0, lease / 8)


class RedisRegistry:
    """This node's view of the cluster's clients, kept in Redis at ``url``.

    ``on_lost`` is called with each client this node must give up (its lease
    could not be renewed in time, or Redis freed its slot): the server ends
    that session, which then calls :meth:`finish`.
    """

    def __init__(
        self,
        url: str,
        *,
        node: str,
        lease: float,
        max_clients: int,
        history: int,
        pending: PendingPool[Any],
        slots_per_source: Callable[[str], int] = lambda _: 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = url
        self.node = node
        self.lease = lease
        self.max_clients = max_clients
        self.pending = pending
        self.table = ClusterTable(history)
        self.cluster_nodes = 0  # nodes alive, as the last renewal found them
        self.loads = 0  # how many times the table was loaded whole (at each subscription)
        self.on_lost: Callable[[ClientEntry], None] = lambda _: None
        self._history = history
        self._lease_ms = int(lease * 1000)
        self._slots_per_source = slots_per_source
        self._clock = clock
        self._interval = lease / 3
        self._held: dict[int, ClientEntry] = {}
        self._accepted_ms: dict[int, int] = {}  # as Redis stamped them: told again as they are
        self._leases = Leases(lease)
        self._issued = 0  # the highest number this node handed out
        # What waits for the next call to Redis (see _send_changes):
        self._ends: list[int] = []
        self._slots: list[_SlotAsked] = []
        self._names: list[tuple[str, asyncio.Future[tuple[int, str] | Refusal]]] = []
        self._sending: asyncio.Task[None] | None = None
        self._unfinished: set[int] = set()  # ended while Redis could not be told
        self._calls: set[asyncio.Task[Any]] = set()
        self._down = False
        self._why = ""
        self._wake = asyncio.Event()  # (made on no loop: bound to the first that waits)
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_at: float | None = None
        self._keeper: asyncio.Task[None] | None = None
        self._listener: asyncio.Task[None] | None = None
        timeout = socket_timeout(lease)
        self._client: aioredis.Redis = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(
                ConstantBackoff(RETRY_BACKOFF),
                RETRIES,
                supported_errors=(RedisConnectionError, RedisTimeoutError),
            ),
            decode_responses=True,
        )
        client = self._client
        self._changes = client.register_script(scripts.CHANGES)
        self._renew = client.register_script(scripts.RENEW)
        self._table = client.register_script(scripts.TABLE)

    # -- running --------------------------------------------------------------

    async def start(self) -> None:
        """Load the scripts, register this node, follow the table. Redis out of
        reach is no error: the node starts answering FULL and keeps trying."""
        try:
            for script in (self._changes, self._renew, self._table):
                script.sha = await self._client.script_load(script.script)
        except RedisError as exc:
            self._went_down(exc)
        else:
            await self._renewal()
        loop = asyncio.get_running_loop()
        self._keeper = loop.create_task(self._keep())
        self._listener = loop.create_task(self._listen())

    async def aclose(self) -> None:
        """Stop renewing; let the ends of sessions reach Redis (briefly); disconnect."""
        for task in (self._keeper, self._listener):
            if task is not None:
                task.cancel()
        if self._deadline is not None:
            self._deadline.cancel()
        if self._calls:
            await asyncio.wait(list(self._calls), timeout=_CLOSE_WAIT)
        for task in list(self._calls):
            task.cancel()
        # Bounded: a Redis cut off does not hold the shutdown.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_WAIT):
                for task in (self._keeper, self._listener):
                    if task is not None:
                        await asyncio.gather(task, return_exceptions=True)
                await self._client.aclose()

    @property
    def available(self) -> bool:
        """Whether Redis answered the last call (new connections are refused if not)."""
        return not self._down

    # -- the Registry protocol ---------------------------------------------------

    @property
    def version(self) -> int:
        return self.table.version

    @property
    def connected_count(self) -> int:
        """This node's clients holding a slot (the cluster's: :attr:`cluster_connected`)."""
        return len(self._held)

    @property
    def cluster_connected(self) -> int:
        return self.table.connected_count

    @property
    def is_full(self) -> bool:
        return self.table.connected_count >= self.max_clients

    def refusal(self, source: str = "") -> Refusal | None:
        """Why a connection would be refused, from the local copy: the scripts
        decide for good, this spares them the calls that would be refused."""
        if self._down:
            return registry_unavailable(self._why)
        if self.is_full:
            return at_capacity(self.max_clients)
        return None

    def accept_refusal(self, source: str) -> Refusal | None:
        return self.refusal(source) or self.pending.refusal(source)

    def connected_names(self) -> list[str]:
        return self.table.connected_names()

    def snapshot(self) -> list[ClientRecord]:
        return self.table.snapshot()

    def take_name(self, source: str = "") -> asyncio.Future[tuple[int, str] | Refusal] | Refusal:
        if self._down:
            return registry_unavailable(self._why)
        loop = asyncio.get_running_loop()
        later: asyncio.Future[tuple[int, str] | Refusal] = loop.create_future()
        self._names.append((source, later))
        self._send_soon()
        return later

    def welcome(
        self, number: int, name: str, address: str, source: str
    ) -> asyncio.Future[ClientEntry | Refusal] | Refusal:
        if self._down:
            return registry_unavailable(self._why)
        later: asyncio.Future[ClientEntry | Refusal] = asyncio.get_running_loop().create_future()
        self._slots.append(_SlotAsked(number, name, address, source, later))
        self._send_soon()
        return later

    def finish(self, entry: ClientEntry) -> bool:
        """Free the slot now, as far as this node is concerned; Redis is told after
        (and its FINISHED time, on Redis's clock, comes back in the table)."""
        if self._held.pop(entry.number, None) is None:
            return False
        self._accepted_ms.pop(entry.number, None)
        self._leases.drop(entry.number)
        entry.finished = time.time()
        entry._record = None
        self._ends.append(entry.number)
        self._send_soon()
        return True

    # -- the calls ------------------------------------------------------------------

    def _send_soon(self) -> None:
        """Have what waits sent: now, or with the next call if one is in flight."""
        if self._sending is None:
            task = asyncio.get_running_loop().create_task(self._send_changes())
            self._sending = task
            self._calls.add(task)
            task.add_done_callback(self._calls.discard)

    def _floor(self) -> int:
        """The highest number this node knows of: Redis must count on from it."""
        return max(self._issued, self.table.top)

    def _args(self, *more: str | int) -> list[str | int]:
        return [self._history, self._lease_ms, *more]

    async def _send_changes(self) -> None:
        """One call at a time, each with every end, slot and name asked for since
        the last went (at most _BATCH of each): under load a session's three
        changes share their calls with other sessions'. The names go out in
        the order they were asked for, and so in the order they were counted."""
        try:
            while self._ends or self._slots or self._names:
                ends, self._ends = self._ends[:_BATCH], self._ends[_BATCH:]
                slots, self._slots = self._slots[:_BATCH], self._slots[_BATCH:]
                names, self._names = self._names[:_BATCH], self._names[_BATCH:]
                await self._send(ends, slots, names)
        finally:
            self._sending = None

    async def _send(
        self,
        ends: list[int],
        slots: list[_SlotAsked],
        names: list[tuple[str, asyncio.Future[tuple[int, str] | Refusal]]],
    ) -> None:
        args = self._args(
            self.max_clients, self.node, self._floor(), len(ends), len(slots), len(names), *ends
        )
        slot_limits = [self._slots_per_source(slot.source) for slot in slots]
        for slot, limit in zip(slots, slot_limits, strict=True):
            args += [slot.number, slot.name, slot.address, slot.source, limit]
        name_limits = [self._slots_per_source(source) for source, _ in names]
        for (source, _), limit in zip(names, name_limits, strict=True):
            args += [source, limit]
        sent = self._clock()
        try:
            answers = await self._changes(args=args)
        except RedisError as exc:
            self._went_down(exc)
            # What gathered behind the failed call fails with it, not one timeout later.
            ends, self._ends = ends + self._ends, []
            slots, self._slots = slots + self._slots, []
            names, self._names = names + self._names, []
            self._unfinished.update(ends)  # told at the next renewal (else its lease ends it)
            for slot in slots:
                _settle(slot.later, registry_unavailable(self._why))
            for _, later in names:
                _settle(later, registry_unavailable(self._why))
            return
        self._came_back()
        self._unfinished.difference_update(ends)
        for index, (slot, limit) in enumerate(zip(slots, slot_limits, strict=True)):
            code, accepted = int(answers[2 * index]), int(answers[2 * index + 1])
            self._settle_slot(slot, limit, code, accepted, sent)
        named = answers[2 * len(slots) :]
        for (_, later), limit, answer in zip(names, name_limits, named, strict=True):
            number = int(answer)
            if number > 0:
                self._issued = max(self._issued, number)
                _settle(later, (number, client_name(number)))
            elif number == -2:
                _settle(later, per_address(limit))
            else:
                _settle(later, at_capacity(self.max_clients))

    def _settle_slot(
        self, slot: _SlotAsked, limit: int, code: int, accepted: int, sent: float
    ) -> None:
        if code == 1:
            number = slot.number
            entry = ClientEntry(
                number, slot.name, slot.address, accepted / 1000, source=slot.source, node=self.node
            )
            self._held[number] = entry
            self._accepted_ms[number] = accepted
            self._leases.hold(number, sent)
            self.table.connected(Row(number, slot.name, self.node, slot.address, accepted))
            self._arm_deadline()
            if not _settle(slot.later, entry):  # (nobody waits: the registry is closing)
                self.finish(entry)
        elif code == -2:
            _settle(slot.later, per_address(limit))
        elif code == -1:
            _settle(slot.later, at_capacity(self.max_clients))
        elif code == -4:
            why = "Redis lost its state: the servers are telling it their clients again"
            _settle(slot.later, registry_unavailable(why))
        else:
            _settle(slot.later, registry_unavailable("its slot was freed meanwhile"))

    async def _renewal(self) -> bool:
        """Renew every slot held, re-assert those Redis lost; False if Redis failed."""
        sent = self._clock()
        numbers = list(self._held)
        held: list[str | int] = []
        for number in numbers:
            entry = self._held[number]
            held += [number, entry.name, entry.address, entry.source, self._accepted_ms[number]]
        try:
            answer = await self._renew(args=self._args(self.node, self._floor(), *held))
        except RedisError as exc:
            self._went_down(exc)
            return False
        self._came_back()
        self.cluster_nodes = int(answer[0])
        lost = {int(number) for number in answer[1:]}
        self._leases.confirm([number for number in numbers if number not in lost], sent)
        self._arm_deadline()
        if lost:
            plural = "" if len(lost) == 1 else "s"
            log.warning(
                "Closing %d client%s whose slot%s the registry freed: this node's lease ran out",
                len(lost), plural, plural,
            )  # fmt: skip
            self._give_up(lost)
        if self._unfinished:
            self._ends += self._unfinished - set(self._ends)
            self._send_soon()
        return True

    async def _keep(self) -> None:
        while True:
            self._wake.clear()
            renewed = await self._renewal()
            delay = self._interval if renewed else min(self._interval, OUTAGE_RETRY)
            # An outage seen by another call starts the quick retries at once.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await self._wake.wait()

    async def _listen(self) -> None:
        """Follow the table: subscribe, load it whole, apply each message after."""
        while True:
            pubsub = self._client.pubsub()
            try:
                await pubsub.subscribe(scripts.CHANNEL)
                rows, finished = await self._table(args=self._args())
                self.table.reload(_pairs(rows), _pairs(finished))
                self.loads += 1
                while True:
                    message = await pubsub.get_message(
                        ignore_subscribe_messages=True, timeout=_LISTEN_POLL
                    )
                    if message is None:
                        continue
                    self._apply(message)
                    # A change is applied at once; those right after it are let
                    # gather, then read in one go: under load a node wakes once
                    # per _GATHER, not once per change anywhere in the cluster.
                    await asyncio.sleep(_GATHER)
                    while message := await pubsub.get_message(ignore_subscribe_messages=True):
                        self._apply(message)
            except RedisError as exc:
                self._went_down(exc)
            finally:
                with contextlib.suppress(RedisError, OSError):  # (gone already)
                    await pubsub.aclose()  # type: ignore[no-untyped-call]
            await asyncio.sleep(OUTAGE_RETRY)

    def _apply(self, message: dict[str, Any]) -> None:
        if message.get("type") == "message":
            self.table.apply(message["data"])

    # -- outages and deadlines ------------------------------------------------------------

    def _went_down(self, exc: Exception) -> None:
        self._why = str(exc) or type(exc).__name__
        if self._down:
            return
        self._down = True
        self._wake.set()
        log.warning(
            "Registry unavailable at %s (%s): new connections are answered FULL until it is "
            "back; connected clients are served for up to %g s",
            self.url, self._why, self.lease * 0.9,
        )  # fmt: skip

    def _came_back(self) -> None:
        if not self._down:
            return
        self._down = False
        log.info("Registry reachable again at %s", self.url)
        # The subscription may have missed messages (or hang on a dead
        # connection): a new one loads the table whole.
        if self._listener is not None:
            self._listener.cancel()
            self._listener = asyncio.get_running_loop().create_task(self._listen())

    def _arm_deadline(self) -> None:
        when = self._leases.deadline()
        if when == self._deadline_at:
            return
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        self._deadline_at = when
        if when is not None:
            delay = max(0.0, when - self._clock())
            self._deadline = asyncio.get_running_loop().call_later(delay, self._deadline_passed)

    def _deadline_passed(self) -> None:
        self._deadline = None
        self._deadline_at = None
        overdue = self._leases.overdue(self._clock())
        if overdue:
            log.warning(
                "Closing %d client%s: the registry has not renewed this node's lease for %g s",
                len(overdue), "" if len(overdue) == 1 else "s", self._leases.margin,
            )  # fmt: skip
            self._give_up(overdue)
        self._arm_deadline()

    def _give_up(self, numbers: Iterable[int]) -> None:
        for number in numbers:
            entry = self._held.get(number)
            if entry is None:
                continue
            self.on_lost(entry)  # the session ends, and calls finish
            if number in self._held:  # (no session held it)
                self.finish(entry)


@dataclass(slots=True)
class _SlotAsked:
    """A connection's slot asked for at its HELLO, waiting for the next call."""

    number: int
    name: str
    address: str
    source: str
    later: asyncio.Future[ClientEntry | Refusal]


def _settle(later: asyncio.Future[Any], answer: Any) -> bool:
    """Answer ``later`` unless nobody waits for it any more; whether it was."""
    if later.done():
        return False
    later.set_result(answer)
    return True


def _pairs(flat: list[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))
