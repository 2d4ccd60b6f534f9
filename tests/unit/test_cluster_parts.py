"""The parts of the shared registry that need no Redis: when a node gives its
clients up (its own deadline, on a fake clock), and its copy of the table."""

from __future__ import annotations

import asyncio
from datetime import datetime

import pytest

from filedock.server.cluster.leases import DEADLINE_SHARE, Leases
from filedock.server.cluster.table import ClusterTable, Row

LEASE = 10.0


def test_a_slot_is_given_up_before_redis_would_drop_it() -> None:
    leases = Leases(LEASE)
    assert leases.deadline() is None
    leases.hold(1, sent=100.0)  # the admission was sent at 100 (the node's clock)
    leases.hold(2, sent=101.0)
    assert leases.deadline() == 100.0 + LEASE * DEADLINE_SHARE < 100.0 + LEASE
    assert leases.overdue(108.9) == []
    assert leases.overdue(109.0) == [1]  # its deadline: 9/10 of the lease after it was sent
    leases.confirm([1, 2], sent=105.0)  # a renewal sent at 105 renewed both
    assert leases.deadline() == 114.0
    assert leases.overdue(113.9) == []
    assert sorted(leases.overdue(114.0)) == [1, 2]


def test_a_renewal_counts_from_when_it_was_sent_and_never_moves_a_lease_back() -> None:
    leases = Leases(LEASE)
    leases.hold(1, sent=100.0)
    leases.hold(2, sent=106.0)  # admitted while the renewal below was on its way
    leases.confirm([1, 2], sent=105.0)
    assert leases.deadline() == 105.0 + 9.0  # slot 1 from the renewal; slot 2 keeps 106
    assert leases.overdue(114.5) == [1]
    leases.drop(1)
    leases.confirm([1], sent=120.0)  # a slot given up is not renewed back
    assert 1 not in leases
    assert leases.deadline() == 115.0


def row(number: int, node: str = "a", accepted: int = 1_700_000_000_000) -> Row:
    return Row(number, f"Client{number:02d}", node, f"10.0.0.{number}:4000", accepted)


def test_the_table_follows_the_published_messages_and_a_repeat_changes_nothing() -> None:
    table = ClusterTable(history=10)
    table.apply("c\t2\tClient02\tb\t10.0.0.2:4000\t1700000001000")
    table.apply("c\t1\tClient01\ta\t10.0.0.1:4000\t1700000000000")
    version = table.version
    table.apply("c\t1\tClient01\ta\t10.0.0.1:4000\t1700000000000")  # told twice
    assert table.version == version
    assert table.connected_names() == ["Client01", "Client02"]  # connection order
    table.apply("f\t1\t1700000005000")
    table.apply("f\t1\t1700000009000")  # finished once, at its first time
    assert table.connected_count == 1
    first = table.snapshot()[0]
    assert first.finished == datetime.fromtimestamp(1_700_000_005)
    assert (first.node, first.address) == ("a", "10.0.0.1:4000")
    table.apply("x\tnot\tours")
    table.apply("c\tone\tbad")
    assert table.connected_names() == ["Client02"]
    assert table.top == 2


def test_the_table_keeps_the_history_bound_and_drops_what_redis_dropped() -> None:
    table = ClusterTable(history=2)
    for number in (1, 2, 3, 4):
        table.connected(row(number))
    table.finished(1, 1_700_000_001_000)
    table.finished(2, 1_700_000_002_000)
    table.finished(3, 1_700_000_003_000)  # one too many: the oldest finished goes
    assert [r.name for r in table.snapshot()] == ["Client02", "Client03", "Client04"]
    table.finished(4, 1_700_000_004_000, dropped=(2,))  # as the script published it
    assert [r.name for r in table.snapshot()] == ["Client03", "Client04"]


def test_a_reload_replaces_the_table_and_the_names_stay_above_what_was_seen() -> None:
    table = ClusterTable(history=10)
    table.connected(row(7))
    table.reload(
        {"3": "Client03\tb\t10.0.0.3:4000\t1700000000000", "junk": "x", "4": "a\tb"},
        {"3": "1700000001000"},
    )
    assert [(r.name, r.connected) for r in table.snapshot()] == [("Client03", False)]
    assert table.connected_count == 0
    assert table.top == 7  # a restarted Redis must not give 7 again


@pytest.mark.parametrize("history", [0, 1])
def test_no_history_keeps_only_the_connected(history: int) -> None:
    table = ClusterTable(history=history)
    table.connected(row(1))
    table.connected(row(2))
    table.finished(1, 1_700_000_001_000)
    assert len(table.snapshot()) == 1 + history


def test_what_gathered_behind_a_failed_call_fails_with_it_and_no_call_follows() -> None:
    pytest.importorskip("redis", reason="the redis extra is missing")
    from redis.exceptions import ConnectionError as RedisConnectionError

    from filedock.server.cluster.registry import RedisRegistry
    from filedock.server.registry import PendingPool, Refusal

    async def scenario() -> None:
        registry = RedisRegistry(
            "redis://127.0.0.1:1/0", node="a", lease=15.0, max_clients=3, history=10,
            pending=PendingPool(8, 4),
        )  # fmt: skip
        calls: list[list[object]] = []
        release = asyncio.Event()

        async def failing_call(*, args: list[object]) -> list[int]:
            calls.append(args)
            await release.wait()
            raise RedisConnectionError("connection refused")

        registry._changes = failing_call  # type: ignore[assignment]
        first = registry.take_name("10.0.0.1")
        await asyncio.sleep(0)  # its call is in flight
        behind = [registry.take_name(f"10.0.0.{n}") for n in (2, 3)]
        waiting = [first, *behind]
        assert all(isinstance(later, asyncio.Future) for later in waiting)
        release.set()
        answers = [await later for later in waiting if isinstance(later, asyncio.Future)]
        assert len(calls) == 1
        assert all(isinstance(answer, Refusal) for answer in answers)
        assert {answer.reason for answer in answers if isinstance(answer, Refusal)} == {
            "registry unavailable (try again shortly)"
        }
        assert not registry.available
        assert isinstance(registry.take_name("10.0.0.4"), Refusal)  # at once, while down
        await registry._client.aclose()

    asyncio.run(scenario())
