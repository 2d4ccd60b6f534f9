"""Several servers as one on a real redis-server (tests/support/redis_server.py):
one capacity, one set of names, one status table, and what each fault does.

The nodes are in-process servers on their own loops, but for the one killed
with SIGKILL (a process). A node cut off from Redis only is cut by a relay
that stops passing bytes, in both directions, without closing anything
(tests/support/freezable_relay.py): what a network partition looks like.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from filedock.server.cluster import scripts
from tests.support import LineConn, ServerThread, running_server, wait_until
from tests.support.freezable_relay import FreezableRelay
from tests.support.process import ServerProcess
from tests.support.redis_server import RedisServer, running_redis

pytest.importorskip("redis", reason="the redis extra (pip install 'filedock[redis]') is missing")

UNAVAILABLE = "FULL registry unavailable (try again shortly)"


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    with running_redis() as server:
        yield server


@pytest.fixture
def make_node(repo: Path, redis_server: RedisServer) -> Iterator[Callable[..., ServerThread]]:
    """Start a node (an in-process server) on ``redis_server`` with the given options."""
    with ExitStack() as nodes:

        def make(node: str, **options: Any) -> ServerThread:
            options.setdefault("registry", redis_server.url)
            return nodes.enter_context(running_server(repo, node=node, **options))

        yield make


@pytest.fixture
def client(redis_server: RedisServer) -> Iterator[Any]:
    """A plain (blocking) redis-py client of ``redis_server``, to run the scripts by hand."""
    import redis

    plain = redis.Redis.from_url(redis_server.url, decode_responses=True)
    yield plain
    plain.close()


def status(conn: LineConn) -> list[str]:
    conn.send_line("STATUS")
    head = conn.read_line()
    assert head.startswith("STATUS ")
    return [conn.read_line() for _ in range(int(head.split()[1]))]


def stats(conn: LineConn) -> dict[str, str]:
    conn.send_line("STATS")
    head = conn.read_line()
    records = [conn.read_line().split("\t") for _ in range(int(head.split()[1]))]
    return {name: value for name, value in records}


def welcomed(port: int) -> LineConn:
    conn = LineConn(port)
    assert conn.read_line().startswith("NAME ")
    assert conn.request("HELLO").startswith("WELCOME ")
    return conn


def evalsha_calls(redis_server: RedisServer) -> int:
    found = re.search(r"cmdstat_evalsha:calls=(\d+)", redis_server.command("INFO", "commandstats"))
    return int(found.group(1)) if found else 0


def loads(node: ServerThread) -> int:
    assert node.server is not None
    assert node.server.cluster is not None
    return node.server.cluster.loads


def test_names_count_up_across_nodes_in_the_order_given(
    make_node: Callable[..., ServerThread],
) -> None:
    a, b = make_node("a", max_clients=10), make_node("b", max_clients=10)
    names = []
    with ExitStack() as conns:
        for port in (a.port, b.port, b.port, a.port, b.port):
            conn = conns.enter_context(LineConn(port))
            names.append(conn.read_line())
    assert names == [f"NAME Client{n:02d}" for n in range(1, 6)]


def test_lines_sent_before_the_registry_answered_are_answered_in_order_after_it(
    make_node: Callable[..., ServerThread],
) -> None:
    a = make_node("a")
    with LineConn(a.port) as conn:
        conn.send(b"HELLO me proto=2\nPING\nWHO\nEXIT\n")  # before NAME, and WELCOME
        assert conn.read_line() == "NAME Client01"
        assert conn.read_line().startswith("WELCOME Client01 ")
        assert [conn.read_line() for _ in range(3)] == ["PONG", "WHO Client01", "BYE"]


def test_a_connection_answered_full_on_accept_takes_no_number(
    make_node: Callable[..., ServerThread],
) -> None:
    a, b = make_node("a", max_clients=1), make_node("b", max_clients=1)
    with welcomed(a.port) as only:
        wait_until(lambda: b.sync(lambda: b.server.registry.is_full))  # type: ignore[union-attr]
        for _ in range(3):
            with LineConn(b.port) as refused:
                assert refused.read_line() == "FULL server is at capacity (1/1 clients)"
        assert only.request("EXIT") == "BYE"
    wait_until(lambda: not b.sync(lambda: b.server.registry.is_full))  # type: ignore[union-attr]
    with LineConn(b.port) as conn:
        assert conn.read_line() == "NAME Client02"


def test_status_is_the_same_on_every_node_with_the_node_as_fifth_field(
    make_node: Callable[..., ServerThread],
) -> None:
    a, b, c = (make_node(node, max_clients=5) for node in "abc")
    with welcomed(a.port) as one, welcomed(b.port) as two, welcomed(c.port) as three:
        assert one.request("EXIT") == "BYE"
        tables: list[list[str]] = []

        def same_everywhere() -> bool:
            tables[:] = [status(two), status(three)]
            rows = tables[0]
            return rows == tables[1] and len(rows) == 3 and rows[0].split("\t")[2] != "-"

        wait_until(same_everywhere)
        rows = [row.split("\t") for row in tables[0]]
        assert [(row[0], row[4]) for row in rows] == [
            ("Client01", "a"), ("Client02", "b"), ("Client03", "c")
        ]  # fmt: skip
        assert [row[2] == "-" for row in rows] == [False, True, True]  # Client01 FINISHED
        two.send_line("WHO")
        assert two.read_line() == "WHO Client02 Client03"
        figures = stats(two)
        assert figures["clients_connected"] == "1"  # the node's own
        assert figures["cluster_clients_connected"] == "2"
        assert int(figures["cluster_nodes"]) >= 2  # (as of its last renewal)


def test_the_cap_is_global_and_exact_under_a_burst(
    make_node: Callable[..., ServerThread],
) -> None:
    nodes = [make_node(node, max_clients=3) for node in "abc"]
    count = 60
    barrier = threading.Barrier(count, timeout=10)
    opened: list[LineConn] = []
    lock = threading.Lock()

    def attempt(i: int) -> str:
        barrier.wait()
        conn = LineConn(nodes[i % 3].port, timeout=10)
        with lock:
            opened.append(conn)
        first = conn.read_line()
        return conn.request("HELLO") if first.startswith("NAME ") else first

    try:
        with ThreadPoolExecutor(max_workers=count) as pool:
            outcomes = list(pool.map(attempt, range(count), timeout=30))
        assert sum(outcome.startswith("WELCOME ") for outcome in outcomes) == 3
        # (Past a node's pending share, FULL or dropped for a newcomer, as alone.)
        assert all(o.startswith(("WELCOME ", "FULL ", "ERR timeout ")) for o in outcomes)
        assert sum(node.connected_count() for node in nodes) == 3
    finally:
        for conn in opened:
            conn.close()


def test_a_session_alone_costs_three_registry_calls_and_commands_none(
    make_node: Callable[..., ServerThread], redis_server: RedisServer
) -> None:
    a = make_node("a", max_clients=5, lease=60.0)  # no renewal within the test
    b = make_node("b", max_clients=5, lease=60.0)
    for node in (a, b):  # each has loaded its copy of the table (one call, not a session's)
        wait_until(lambda node=node: node.sync(lambda: loads(node)) > 0)  # type: ignore[misc]
    before = evalsha_calls(redis_server)
    for done, port in enumerate((a.port, b.port, a.port, b.port), start=1):
        with welcomed(port) as conn:
            for _ in range(3):
                status(conn)
                assert conn.request("WHO").startswith("WHO ")
                assert conn.request("PING") == "PONG"
            assert conn.request("EXIT") == "BYE"
        # Its end reached Redis before the next session (which would share its call).
        wait_until(lambda done=done: evalsha_calls(redis_server) - before >= 3 * done)  # type: ignore[misc]
        assert evalsha_calls(redis_server) - before == 3 * done
    assert a.connected_count() + b.connected_count() == 0


def test_what_is_asked_while_a_call_is_in_flight_goes_in_one_call_after_it(
    make_node: Callable[..., ServerThread], redis_server: RedisServer
) -> None:
    relay = FreezableRelay(redis_server.port)
    try:
        a = make_node("a", max_clients=10, lease=60.0, registry=f"redis://127.0.0.1:{relay.port}/0")
        wait_until(lambda: a.sync(lambda: loads(a)) > 0)
        assert a.server is not None
        assert a.server.cluster is not None
        cluster = a.server.cluster
        with ExitStack() as conns:
            leaving = conns.enter_context(welcomed(a.port))
            greeting = conns.enter_context(LineConn(a.port))
            assert greeting.read_line().startswith("NAME ")
            before = evalsha_calls(redis_server)
            relay.freeze()  # the first call waits in the relay; the rest gathers behind it
            first = conns.enter_context(LineConn(a.port))
            wait_until(lambda: a.sync(lambda: cluster._sending is not None))
            assert leaving.request("EXIT") == "BYE"
            greeting.send_line("HELLO")
            later = [conns.enter_context(LineConn(a.port)) for _ in range(3)]

            def waiting() -> tuple[int, int, int]:
                return len(cluster._ends), len(cluster._slots), len(cluster._names)

            wait_until(lambda: a.sync(waiting) == (1, 1, 3))
            relay.thaw()
            assert greeting.read_line().startswith("WELCOME ")
            names = [conn.read_line() for conn in (first, *later)]
            assert names == [f"NAME Client{n:02d}" for n in range(3, 7)]
            assert evalsha_calls(redis_server) - before == 2  # the one in flight, then one
            assert a.sync(lambda: cluster._unfinished) == set()  # the end was told too
    finally:
        relay.thaw()
        relay.close()


def test_redis_stopped_refuses_new_clients_serves_connected_ones_and_recovers(
    make_node: Callable[..., ServerThread],
    redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="filedock.server")
    a = make_node("a", max_clients=5, lease=6.0)
    with welcomed(a.port) as served:
        redis_server.stop()
        refused = []
        for _ in range(3):
            with LineConn(a.port) as conn:
                refused.append(conn.read_line())
        assert refused == [UNAVAILABLE] * 3
        assert served.request("PING") == "PONG"  # connected clients keep being served
        redis_server.start()  # empty: no persistence

        def named() -> str:
            with LineConn(a.port) as conn:
                return conn.read_line()

        wait_until(lambda: named().startswith("NAME "))
        assert served.request("PING") == "PONG"
        # The name counter did not start again from nothing, and the served
        # client's slot was told again to the Redis that lost it.
        number = int(named().removeprefix("NAME Client"))
        assert number > 1
        wait_until(lambda: [row.split("\t")[0] for row in status(served)][:1] == ["Client01"])
    warnings = [r for r in caplog.records if r.getMessage().startswith("Registry unavailable")]
    assert len(warnings) == 1  # one per outage, not one per connection
    assert sum(r.getMessage().startswith("Registry reachable again") for r in caplog.records) == 1
    assert a.statistics().connections_refused >= 3
    figures = a.sync(lambda: dict(a.server.stats.connections_rejected))  # type: ignore[union-attr]
    assert figures["registry"] >= 3


def test_a_redis_restarted_empty_never_gives_a_name_again(
    make_node: Callable[..., ServerThread], redis_server: RedisServer
) -> None:
    a = make_node("a", max_clients=5)
    b = make_node("b", max_clients=5)
    with welcomed(a.port):
        with LineConn(b.port) as conn:
            assert conn.read_line() == "NAME Client02"
        redis_server.restart()

        def first_line() -> str:
            with LineConn(b.port) as conn:
                return conn.read_line()

        wait_until(lambda: first_line().startswith("NAME "))
        assert int(first_line().removeprefix("NAME Client")) > 2


def test_a_node_killed_frees_its_slots_within_the_lease(
    repo: Path, make_node: Callable[..., ServerThread], redis_server: RedisServer
) -> None:
    lease = 2.0
    options = ("--registry", redis_server.url, "--max-clients", "2", "--lease", str(lease))
    doomed = ServerProcess(repo, *options, "--node", "doomed")
    survivor = make_node("survivor", max_clients=2, lease=lease)
    try:
        with welcomed(doomed.port), welcomed(survivor.port) as watcher:
            with LineConn(survivor.port) as third:
                assert third.read_line() == "FULL server is at capacity (2/2 clients)"
            os.kill(doomed.proc.pid, signal.SIGKILL)
            killed, killed_at = time.monotonic(), time.time()

            def doomed_finished() -> bool:
                rows = [row.split("\t") for row in status(watcher)]
                return any(row[4] == "doomed" and row[2] != "-" for row in rows)

            wait_until(doomed_finished, timeout=lease * 2)
            ended = next(row for row in status(watcher) if row.split("\t")[4] == "doomed")
            stamped = datetime.strptime(ended.split("\t")[2], "%Y-%m-%d %H:%M:%S").timestamp()
            assert stamped <= killed_at + lease + 1  # when its lease ran out (to the second)
            # Freed once its lease ran out, found by the next call (every lease/3).
            assert time.monotonic() - killed <= lease + lease / 3 + 0.5
            with welcomed(survivor.port):  # its slot is free for another
                pass
    finally:
        doomed.proc.kill()
        doomed.wait(10)


def test_a_node_cut_off_from_redis_closes_its_clients_by_its_deadline(
    make_node: Callable[..., ServerThread], redis_server: RedisServer
) -> None:
    lease = 2.0
    relay = FreezableRelay(redis_server.port)
    try:
        cut = make_node(
            "cut", max_clients=2, lease=lease, registry=f"redis://127.0.0.1:{relay.port}/0"
        )
        other = make_node("other", max_clients=2, lease=lease)
        with welcomed(cut.port) as stranded, welcomed(other.port):
            relay.freeze()
            frozen = time.monotonic()
            stranded_closed: list[float] = []
            second_welcome: list[float] = []

            def watch_stranded() -> None:
                try:
                    line = stranded.read_line(timeout=lease * 3)
                    assert line.startswith("ERR shutdown ")
                    assert stranded.at_eof(timeout=2)
                finally:
                    stranded_closed.append(time.monotonic())

            watcher = threading.Thread(target=watch_stranded)
            watcher.start()
            # The other node may take the cut node's slot only once Redis dropped
            # it, which is after the cut node closed its client.
            deadline = time.monotonic() + lease * 3
            while not second_welcome and time.monotonic() < deadline:
                with LineConn(other.port) as conn:
                    first = conn.read_line()
                    if first.startswith("NAME ") and conn.request("HELLO").startswith("WELCOME"):
                        second_welcome.append(time.monotonic())
                        assert stranded_closed, "two nodes held more than the cap"
            watcher.join(lease * 4)
            assert stranded_closed
            assert second_welcome
            assert stranded_closed[0] - frozen <= lease  # by its deadline (0.9 x lease)
            assert stranded_closed[0] <= second_welcome[0]
            relay.thaw()
    finally:
        relay.thaw()
        relay.close()


def test_the_scripts_admit_a_connection_once_and_only_its_node_ends_it(
    client: Any,
) -> None:
    changes = client.register_script(scripts.CHANGES)
    common = [10, 60_000]  # history, lease in ms

    def call(
        cap: int, node: str, floor: int, ends: list[int], slots: list[list[Any]],
        names: list[list[Any]],
    ) -> list[int]:  # fmt: skip
        args = [*common, cap, node, floor, len(ends), len(slots), len(names), *ends]
        for part in (*slots, *names):
            args += part
        return list(changes(args=args))

    slot = [1, "Client01", "10.0.0.1:4000", "10.0.0.1", 0]
    assert call(3, "a", 0, [], [], [["10.0.0.1", 0]]) == [1]
    first = call(3, "a", 0, [], [slot], [])
    assert first[0] == 1
    # Every slot taken (a cap of 1 here): FULL, and no number is spent; a
    # number below what a node knows (5) is never given.
    assert call(1, "a", 5, [], [], [["10.0.0.2", 0], ["10.0.0.3", 0]]) == [-1, -1]
    assert call(3, "a", 5, [], [], [["10.0.0.1", 1], ["10.0.0.2", 0]]) == [-2, 6]
    client.script_flush()  # NOSCRIPT: loaded again, and the retry answers the same
    assert call(3, "a", 0, [], [slot], []) == first
    assert client.zcard("filedock:slots") == 1  # a retried admission takes no second slot
    assert call(3, "b", 0, [1], [], []) == []  # only the node holding it ends it
    assert client.zcard("filedock:slots") == 1
    assert call(3, "a", 0, [1], [], []) == []
    assert client.zcard("filedock:slots") == 0
    assert call(3, "a", 0, [], [slot], []) == [-3, 0]  # retried after its end: no slot again
    assert client.zcard("filedock:slots") == 0


def test_one_call_ends_first_then_admits_then_names_and_tells_it_in_one_message(
    client: Any,
) -> None:
    listener = client.pubsub()
    try:
        listener.subscribe(scripts.CHANNEL)
        assert listener.get_message(timeout=5.0)["type"] == "subscribe"  # type: ignore[index]
        changes = client.register_script(scripts.CHANGES)
        common = [10, 60_000]

        def slot(number: int) -> list[Any]:
            return [number, f"Client{number:02d}", f"10.0.0.{number}:4000", f"10.0.0.{number}", 0]

        # A cap of 1: the end frees the slot the admission in the same call takes.
        assert changes(args=[*common, 1, "a", 0, 0, 1, 0, *slot(1)])[0] == 1
        first = listener.get_message(timeout=5.0)
        assert first is not None
        assert first["data"].startswith("c\t1\tClient01\ta\t")
        answers = changes(args=[*common, 1, "a", 0, 1, 2, 1, 1, *slot(2), *slot(3), "10.0.0.4", 0])
        assert answers[0] == 1
        assert answers[2:] == [-1, 0, -1]
        message = listener.get_message(timeout=5.0)
        assert message is not None
        lines = message["data"].split("\n")
        assert [line.split("\t")[:2] for line in lines] == [["f", "1"], ["c", "2"]]
        assert listener.get_message(timeout=0.2) is None  # one message for the whole call
    finally:
        listener.close()


def test_after_redis_lost_everything_no_slot_is_given_until_the_nodes_told_theirs(
    client: Any,
) -> None:
    changes = client.register_script(scripts.CHANGES)
    renew = client.register_script(scripts.RENEW)
    common = [10, 3_000]  # history, a lease of 3 s: the hold is 1 s + 0.5 s

    def admit(number: int, floor: int) -> list[int]:
        slot = [number, f"Client{number:02d}", f"10.0.0.{number}:4000", f"10.0.0.{number}", 0]
        return list(changes(args=[*common, 2, "a", floor, 0, 1, 0, *slot]))

    assert admit(1, 0)[0] == 1  # a new cluster: nothing held back
    assert client.exists("filedock:settling") == 0
    client.flushdb()  # what a restart without persistence leaves
    # Node b held number 2, and tells it again at its renewal; node a, which
    # knows number 1, asks a slot for its next client before that: refused.
    assert admit(3, 1) == [-4, 0]
    assert 0 < client.pttl("filedock:settling") <= 1_500
    renew(args=[*common, "b", 2, 2, "Client02", "10.0.0.2:4000", "10.0.0.2", 1_700_000_000_000])
    assert client.zcard("filedock:slots") == 1  # b's slot is back: one of the cap of 2
    assert admit(3, 2) == [-4, 0]
    wait_until(lambda: client.exists("filedock:settling") == 0, timeout=5.0)
    assert admit(3, 2)[0] == 1  # and now the cap holds the two, told and new
    assert admit(4, 3) == [-1, 0]
