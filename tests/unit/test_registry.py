"""The client registry: capacity, names, times and history, with a fake clock."""

from __future__ import annotations

from datetime import datetime

import pytest

from filedock import protocol as p
from filedock.cli.server import server_main
from filedock.protocol import ClientRecord, client_name, encode_client_record
from filedock.server.config import ServerConfig
from filedock.server.registry import ClientEntry, MemoryRegistry, PendingPool, Refusal
from filedock.server.status import StatusReplies

T0 = 1_700_000_000.0


class FakeClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def local(moment: float) -> datetime:
    """A wall-clock time as STATUS shows it: local time, to the second."""
    return datetime.fromtimestamp(int(moment))


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def test_admit_until_full(clock: FakeClock) -> None:
    registry = MemoryRegistry(3, clock=clock)
    entries = [registry.admit(f"127.0.0.1:{5000 + i}") for i in range(3)]
    assert [entry.name for entry in entries if entry] == ["Client01", "Client02", "Client03"]
    assert registry.is_full
    assert registry.connected_count == 3
    assert registry.admit("127.0.0.1:6000") is None
    assert registry.admit("127.0.0.1:6001") is None
    assert registry.connected_count == 3
    assert registry.connected_names() == ["Client01", "Client02", "Client03"]


def test_a_rejected_admit_takes_no_number(clock: FakeClock) -> None:
    registry = MemoryRegistry(1, clock=clock)
    first = registry.admit("a:1")
    assert first is not None
    for _ in range(5):
        assert registry.admit("b:2") is None
    registry.finish(first)
    second = registry.admit("c:3")
    assert second is not None
    assert (second.number, second.name) == (2, "Client02")
    # Rejected connections do not show in STATUS either.
    assert [record.address for record in registry.snapshot()] == ["a:1", "c:3"]


def test_names_count_past_99_and_are_never_reused(clock: FakeClock) -> None:
    registry = MemoryRegistry(2, history=0, clock=clock)
    names = []
    for _ in range(120):
        entry = registry.admit("h:1")
        assert entry is not None
        names.append(entry.name)
        registry.finish(entry)
    assert names == [client_name(n) for n in range(1, 121)]
    assert names[0] == "Client01"
    assert names[8:10] == ["Client09", "Client10"]
    assert names[98:100] == ["Client99", "Client100"]
    assert len(set(names)) == len(names)


def test_finish_frees_a_slot(clock: FakeClock) -> None:
    registry = MemoryRegistry(2, clock=clock)
    first = registry.admit("a:1")
    second = registry.admit("b:2")
    assert first is not None
    assert second is not None
    assert registry.admit("c:3") is None
    assert registry.finish(first) is True
    assert not registry.is_full
    assert registry.connected_count == 1
    third = registry.admit("c:3")
    assert third is not None
    assert third.name == "Client03"
    assert registry.connected_names() == ["Client02", "Client03"]


def test_finish_is_idempotent(clock: FakeClock) -> None:
    registry = MemoryRegistry(2, clock=clock)
    entry = registry.admit("a:1")
    other = registry.admit("b:2")
    assert entry is not None
    assert other is not None
    clock.advance(5)
    assert registry.finish(entry) is True
    assert entry.finished == T0 + 5
    clock.advance(5)
    assert registry.finish(entry) is False
    assert entry.finished == T0 + 5  # the first FINISHED time stays
    # A second finish frees no other slot and records the client once.
    assert registry.connected_count == 1
    assert registry.connected_names() == ["Client02"]
    assert [record.name for record in registry.snapshot()] == ["Client01", "Client02"]


def test_snapshot_is_oldest_first_with_times(clock: FakeClock) -> None:
    registry = MemoryRegistry(5, clock=clock)
    a = registry.admit("10.0.0.1:4001")
    clock.advance(1)
    b = registry.admit("[::1]:4002")
    clock.advance(1)
    c = registry.admit("10.0.0.3:4003")
    assert a is not None
    assert b is not None
    assert c is not None
    clock.advance(3)
    registry.finish(c)  # the newest leaves first...
    clock.advance(2)
    registry.finish(a)  # ...then the oldest; the order stays by admission
    assert registry.snapshot() == [
        ClientRecord("Client01", local(T0), local(T0 + 7), "10.0.0.1:4001"),
        ClientRecord("Client02", local(T0 + 1), None, "[::1]:4002"),
        ClientRecord("Client03", local(T0 + 2), local(T0 + 5), "10.0.0.3:4003"),
    ]


def test_snapshot_follows_changes(clock: FakeClock) -> None:
    registry = MemoryRegistry(2, clock=clock)
    entry = registry.admit("a:1")
    assert entry is not None
    [before] = registry.snapshot()
    assert before.finished is None
    clock.advance(3)
    registry.finish(entry)
    [after] = registry.snapshot()
    assert after.finished == local(T0 + 3)
    assert after.accepted == local(T0)


def test_status_replies_are_the_snapshot_encoded_and_follow_changes(clock: FakeClock) -> None:
    registry = MemoryRegistry(5, history=2, clock=clock)
    replies = StatusReplies(registry, "all")
    entries = [registry.admit(f"127.0.0.1:{5000 + i}") for i in range(4)]

    def encoded() -> bytes:
        records = registry.snapshot()
        header = p.encode_reply(p.StatusReply(len(records)))
        return header + b"".join(encode_client_record(record) for record in records)

    assert replies.reply() == encoded()
    for entry in entries[::-1]:
        assert entry is not None
        clock.advance(1.5)
        version = registry.version
        registry.finish(entry)  # the line kept for the connected entry is made again
        assert registry.version != version
        assert replies.reply() == encoded()
    assert replies.reply().startswith(p.encode_reply(p.StatusReply(2)))


def test_the_version_moves_only_when_the_snapshot_changes(clock: FakeClock) -> None:
    registry = MemoryRegistry(1, history=1, clock=clock)
    version = registry.version
    entry = registry.admit("a:1")
    assert entry is not None
    assert registry.version != version
    version = registry.version
    assert registry.admit("b:2") is None  # refused: nothing changed
    registry.take_name()
    assert registry.version == version
    assert registry.finish(entry)
    assert registry.version != version
    version = registry.version
    assert not registry.finish(entry)  # already finished
    assert registry.version == version


def test_times_are_to_the_second(clock: FakeClock) -> None:
    clock.now = T0 + 0.999
    registry = MemoryRegistry(1, clock=clock)
    entry = registry.admit("a:1")
    assert entry is not None
    [record] = registry.snapshot()
    assert record.accepted == local(T0)
    assert record.accepted.microsecond == 0


def test_history_keeps_the_most_recent_finished(clock: FakeClock) -> None:
    registry = MemoryRegistry(10, history=2, clock=clock)
    entries = []
    for i in range(6):
        entry = registry.admit(f"h:{i}")
        assert entry is not None
        entries.append(entry)
        clock.advance(1)
    # Client01 and Client04 stay connected; the others finish in this order.
    for index in (4, 1, 5, 2):
        registry.finish(entries[index])
        clock.advance(1)
    names = [record.name for record in registry.snapshot()]
    # The two most recent to finish are Client06 and Client03; connected ones always stay.
    assert names == ["Client01", "Client03", "Client04", "Client06"]


def test_history_zero_keeps_only_connected(clock: FakeClock) -> None:
    registry = MemoryRegistry(3, history=0, clock=clock)
    first = registry.admit("a:1")
    second = registry.admit("b:2")
    assert first is not None
    assert second is not None
    registry.finish(first)
    assert [record.name for record in registry.snapshot()] == ["Client02"]
    registry.finish(second)
    assert registry.snapshot() == []


def test_connected_are_kept_beyond_history(clock: FakeClock) -> None:
    registry = MemoryRegistry(50, history=1, clock=clock)
    for i in range(40):
        assert registry.admit(f"h:{i}") is not None
    assert len(registry.snapshot()) == 40


def test_connected_names_in_connection_order(clock: FakeClock) -> None:
    registry = MemoryRegistry(5, clock=clock)
    a = registry.admit("a:1")
    b = registry.admit("b:2")
    c = registry.admit("c:3")
    assert a is not None
    assert b is not None
    assert c is not None
    registry.finish(b)
    registry.admit("d:4")
    assert registry.connected_names() == ["Client01", "Client03", "Client04"]
    registry.finish(a)
    assert registry.connected_names() == ["Client03", "Client04"]


@pytest.mark.parametrize(("max_clients", "history"), [(0, 10), (-1, 10), (1, -1)])
def test_invalid_settings(max_clients: int, history: int) -> None:
    with pytest.raises(ValueError, match="max_clients|history"):
        MemoryRegistry(max_clients, history=history)


# -- naming, welcoming and the pending pool -------------------------------------


def test_accepted_is_the_moment_of_welcome(clock: FakeClock) -> None:
    registry = MemoryRegistry(3, clock=clock)
    number, name = registry.take_name()
    clock.advance(5)
    entry = registry.welcome(number, name, "a:1", "loopback")
    assert isinstance(entry, ClientEntry)
    assert entry.accepted == T0 + 5
    assert registry.snapshot()[0].accepted == local(T0 + 5)


def test_a_name_is_taken_for_good_even_without_a_welcome(clock: FakeClock) -> None:
    registry = MemoryRegistry(1, clock=clock)
    assert registry.take_name() == (1, "Client01")  # named, never greets
    assert registry.take_name() == (2, "Client02")
    entry = registry.welcome(2, "Client02", "b:2", "")
    assert isinstance(entry, ClientEntry)
    late = registry.welcome(1, "Client01", "a:1", "")
    assert isinstance(late, Refusal)
    assert late.reason == "server is at capacity (1/1 clients)"
    assert registry.connected_names() == ["Client02"]
    assert registry.take_name() == (3, "Client03")


def test_slots_per_source(clock: FakeClock) -> None:
    registry = MemoryRegistry(
        5, clock=clock, slots_per_source=lambda source: 2 if source == "a" else 0
    )
    for _ in range(2):
        assert isinstance(registry.welcome(*registry.take_name(), "x", "a"), ClientEntry)
    refusal = registry.welcome(*registry.take_name(), "x", "a")
    assert isinstance(refusal, Refusal)
    assert "(2/2 per address)" in refusal.reason
    for _ in range(3):  # another source is not capped
        assert isinstance(registry.welcome(*registry.take_name(), "y", "b"), ClientEntry)


class Member:
    """A pending connection as the pool sees it."""

    def __init__(self, greeted: bool = False, spoken: bool = False) -> None:
        self.greeted = greeted
        self.spoken = spoken

    def may_be_dropped(self) -> bool:
        return not self.greeted

    def has_spoken(self) -> bool:
        return self.spoken


def test_pending_pool_and_its_share() -> None:
    pool: PendingPool[Member] = PendingPool(3, 2)
    a1, a2, b1 = Member(), Member(), Member()
    assert pool.refusal("a") is None
    pool.enter("a", a1)
    pool.enter("a", a2)
    share = pool.refusal("a")
    assert share is not None
    assert "from your address (2/2 per address)" in share.reason
    assert pool.refusal("b") is None
    pool.enter("b", b1)
    full = pool.refusal("c")
    assert full is not None
    assert "still greeting (3/3)" in full.reason
    pool.leave("a", a1)
    pool.leave("a", a1)  # twice: counted once
    assert pool.refusal("a") is None
    assert pool.held_by("a") == 1
    assert len(pool) == 2
    pool.leave("a", a2)
    pool.leave("b", b1)
    assert len(pool) == 0
    assert pool.sources == 0  # no source is remembered once it holds nothing


def test_a_full_share_makes_room_by_its_oldest_silent_connection_past_the_grace() -> None:
    now = [0.0]
    pool: PendingPool[Member] = PendingPool(10, 3, grace=1.0, clock=lambda: now[0])
    greeted, silent, young = Member(greeted=True), Member(), Member()
    pool.enter("a", greeted)
    now[0] = 0.5
    pool.enter("a", silent)
    now[0] = 1.2
    pool.enter("a", young)
    assert pool.make_room("a") is None  # a burst: the silent one waited 0.7 s only
    now[0] = 1.5
    assert pool.make_room("a") is silent  # not the older one that greeted
    assert pool.make_room("b") is None  # another source has room: nobody goes
    pool.leave("a", silent)
    assert pool.make_room("a") is None  # room now


def test_a_connection_that_did_nothing_goes_before_one_that_finished_tls() -> None:
    now = [0.0]
    pool: PendingPool[Member] = PendingPool(10, 3, grace=1.0, clock=lambda: now[0])
    tls_client, silent, other_silent = Member(spoken=True), Member(), Member()
    for member in (tls_client, silent, other_silent):
        pool.enter("a", member)
    now[0] = 2.0
    assert pool.make_room("a") is silent  # the oldest is a TLS client: it is spared
    pool.leave("a", silent)
    pool.enter("a", Member(greeted=True))
    pool.leave("a", other_silent)
    pool.enter("a", Member(greeted=True))
    assert pool.make_room("a") is tls_client  # none silent left: it may go after all


def test_a_full_pool_makes_room_from_the_source_holding_the_most() -> None:
    now = [0.0]
    pool: PendingPool[Member] = PendingPool(4, 3, grace=1.0, clock=lambda: now[0])
    small, big = Member(), [Member(), Member(greeted=True), Member(greeted=True)]
    pool.enter("small", small)
    for member in big:
        pool.enter("big", member)
    now[0] = 0.9
    assert pool.make_room("new") is None  # nobody past the grace yet
    now[0] = 2.0
    assert pool.make_room("new") is big[0]  # the largest holder's oldest silent one
    pool.leave("big", big[0])
    pool.enter("new", Member())
    assert pool.make_room("other") is small  # the largest has none that may go: the next


def test_accept_refusal_says_capacity_first(clock: FakeClock) -> None:
    registry = MemoryRegistry(1, clock=clock, pending=PendingPool(2, 1))
    registry.pending.enter("a", Member())
    refusal = registry.accept_refusal("a")
    assert refusal is not None
    assert refusal.reason.startswith("too many connections greeting")
    assert registry.admit("b:1", "b") is not None
    refusal = registry.accept_refusal("a")
    assert refusal is not None
    assert refusal.reason == "server is at capacity (1/1 clients)"


def test_config_slots_per_source_by_default() -> None:
    config = ServerConfig()
    assert config.slots_per_source("loopback") == 0  # the 3 local clients of the default
    assert config.slots_per_source("192.0.2.1/32") == 2  # half of 3, rounded up
    assert ServerConfig(max_clients=10).slots_per_source("192.0.2.1/32") == 5
    assert ServerConfig(max_clients_per_ip=1).slots_per_source("loopback") == 1
    assert ServerConfig(max_clients_per_ip=0).slots_per_source("192.0.2.1/32") == 0


def test_newcomers_that_keep_coming_waive_the_grace_until_they_stop() -> None:
    """Connections reconnecting as fast as they are dropped keep every place
    younger than the grace; once one newcomer was refused for it, the oldest
    silent one goes, whatever its age, until newcomers stop for a grace."""
    now = [0.0]
    pool: PendingPool[Member] = PendingPool(10, 2, grace=1.0, clock=lambda: now[0])
    first, second = Member(), Member()
    pool.enter("a", first)
    pool.enter("a", second)
    now[0] = 0.1
    assert pool.make_room("a") is None  # a burst: refused, and the source is pressed
    now[0] = 0.2
    assert pool.make_room("a") is first  # 0.2 s old only: the grace is waived
    pool.leave("a", first)
    third = Member()
    pool.enter("a", third)
    now[0] = 1.0
    assert pool.make_room("a") is second  # still pressed: the last waiver was at 0.2
    pool.leave("a", second)
    fourth = Member()
    pool.enter("a", fourth)
    for member in (third, fourth):
        pool.leave("a", member)
    assert len(pool) == 0
    now[0] = 2.5  # quiet for more than a grace: a burst is refused again
    pool.enter("a", Member())
    pool.enter("a", Member())
    now[0] = 2.6
    assert pool.make_room("a") is None


def test_a_place_pushed_free_has_no_grace() -> None:
    """Silent connections dropped together come back together: their places,
    each taken by having another dropped, are all younger than the grace when
    the next newcomer comes, and the pressure that waived it has lapsed. That
    newcomer (a TLS client, say, that needs its place at once) takes the oldest
    of them; places taken in calm keep their grace."""
    now = [0.0]
    pool: PendingPool[Member] = PendingPool(10, 2, grace=1.0, clock=lambda: now[0])
    calm = [Member(), Member()]
    for member in calm:
        pool.enter("a", member)
    now[0] = 1.5  # both past the grace: each newcomer pushes one out
    pushed = [Member(), Member()]
    for old, new in zip(calm, pushed, strict=True):
        assert pool.make_room("a") is old
        pool.leave("a", old)
        pool.enter("a", new)
    now[0] = 2.0  # half a grace later, no newcomer refused meanwhile
    assert pool.make_room("a") is pushed[0]
    pool.leave("a", pushed[0])
    newest = Member()
    pool.enter("a", newest)
    for member in (pushed[1], newest):
        pool.leave("a", member)
    assert len(pool) == 0
    now[0] = 5.0  # calm again: a burst past the share is refused, as before
    pool.enter("a", Member())
    pool.enter("a", Member())
    now[0] = 5.1
    assert pool.make_room("a") is None
    assert pool.refusal("a") is not None


@pytest.mark.parametrize("value", ["99999999999", str(p.MAX_LINE_LIMIT + 1), "63"])
def test_a_line_limit_outside_its_range_is_a_usage_error(
    value: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Past the limit a FILE header could carry a path no client reads, and
    # every connection could hold that much input.
    with pytest.raises(SystemExit) as exited:
        server_main(["--max-line", value])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"--max-line must be from 64 to {p.MAX_LINE_LIMIT} bytes, not {value}" in err


def test_the_longest_line_limit_is_accepted() -> None:
    assert ServerConfig(max_line=p.MAX_LINE_LIMIT).max_line == p.MAX_LINE_LIMIT


def _status_addresses(reply: bytes) -> dict[str, str]:
    lines = reply.decode().splitlines()[1:]
    return {record.name: record.address for record in map(p.parse_client_record, lines)}


def test_status_addresses_own_shows_a_client_its_own_address_only(clock: FakeClock) -> None:
    registry = MemoryRegistry(5, clock=clock)
    replies = StatusReplies(registry, "own")
    for port in (5000, 5001, 5002):
        registry.admit(f"127.0.0.1:{port}")
    assert _status_addresses(replies.reply("Client02")) == {
        "Client01": p.HIDDEN_ADDRESS,
        "Client02": "127.0.0.1:5001",
        "Client03": p.HIDDEN_ADDRESS,
    }
    # The kept reply is not changed by a viewer's splice.
    assert _status_addresses(replies.reply("Client01"))["Client02"] == p.HIDDEN_ADDRESS
    assert set(_status_addresses(replies.reply(None)).values()) == {p.HIDDEN_ADDRESS}
    assert set(_status_addresses(replies.reply("Client99")).values()) == {p.HIDDEN_ADDRESS}


@pytest.mark.parametrize(
    ("addresses", "shown"),
    [
        ("all", {"Client01": "10.0.0.1:5000", "Client02": "10.0.0.2:5001"}),
        ("hidden", {"Client01": p.HIDDEN_ADDRESS, "Client02": p.HIDDEN_ADDRESS}),
    ],
)
def test_status_addresses_all_or_hidden(
    clock: FakeClock, addresses: str, shown: dict[str, str]
) -> None:
    registry = MemoryRegistry(5, clock=clock)
    replies = StatusReplies(registry, addresses)
    registry.admit("10.0.0.1:5000")
    registry.admit("10.0.0.2:5001")
    assert _status_addresses(replies.reply("Client01")) == shown


def test_status_addresses_must_be_a_known_word() -> None:
    with pytest.raises(ValueError, match="hidden, own, all"):
        StatusReplies(MemoryRegistry(1), "some")
    with pytest.raises(ValueError, match="status_addresses must be one of hidden, own, all"):
        ServerConfig(status_addresses="some")


def _finish_after(registry: MemoryRegistry, clock: FakeClock, source: str, seconds: float) -> str:
    entry = registry.admit(f"{source}:5000", source)
    assert entry is not None
    clock.advance(seconds)
    registry.finish(entry)
    return entry.name


def test_a_run_of_brief_sessions_from_one_source_keeps_its_latest(clock: FakeClock) -> None:
    registry = MemoryRegistry(5, clock=clock)
    person = _finish_after(registry, clock, "10.0.0.9", 60.0)  # a session at the prompt
    names = [_finish_after(registry, clock, "10.0.0.1", 0.05) for _ in range(30)]
    other = _finish_after(registry, clock, "10.0.0.2", 0.05)  # another machine's script
    last = _finish_after(registry, clock, "10.0.0.1", 0.05)
    kept = [record.name for record in registry.snapshot()]
    assert kept == [person, other, last]
    assert names[-1] not in kept  # replaced by the newer brief row of its source


def test_a_long_session_between_brief_ones_is_kept(clock: FakeClock) -> None:
    registry = MemoryRegistry(5, clock=clock)
    first = _finish_after(registry, clock, "10.0.0.1", 0.1)
    long = _finish_after(registry, clock, "10.0.0.1", 30.0)
    last = _finish_after(registry, clock, "10.0.0.1", 0.1)
    # The long one stays, and so does nothing older of that run but the latest brief one.
    assert [record.name for record in registry.snapshot()] == [long, last]
    assert first not in [record.name for record in registry.snapshot()]


def test_connected_brief_clients_are_all_shown(clock: FakeClock) -> None:
    registry = MemoryRegistry(5, clock=clock)
    for port in range(3):
        assert registry.admit(f"10.0.0.1:{port}", "10.0.0.1") is not None
    assert len(registry.snapshot()) == 3  # only finished rows collapse


def test_brief_clients_connected_at_once_are_each_kept(clock: FakeClock) -> None:
    registry = MemoryRegistry(5, clock=clock)
    entries = [registry.admit(f"10.0.0.1:{port}", "10.0.0.1") for port in range(3)]
    clock.advance(0.5)
    for entry in entries:  # three people at once, or a shutdown: not one script's run
        assert entry is not None
        registry.finish(entry)
    assert [record.name for record in registry.snapshot()] == ["Client01", "Client02", "Client03"]
