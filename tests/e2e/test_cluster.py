"""Three filedock nodes on one Redis behind a real HAProxy behave as one server.

Every piece is a real process (tests/support/cluster.py): redis-server,
``python3 Server.py --registry … --node a|b|c --proxy-protocol`` on one
shared repository, and HAProxy sending PROXY v2 headers. These are the
whole-system checks, through HAProxy; the registry's own rules (its scripts,
retries, one warning per outage) are tested against Redis alone in
tests/integration.

A node is cut off from Redis alone by a relay between the two that stops
every byte (tests/support/freezable_relay.py), as a lost network does: HAProxy and
the clients still reach the node.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import HOST, LineConn, wait_until
from tests.support.cluster import Cluster, Row, at_eof_now, closing_all, number, status
from tests.support.haproxy import free_port, haproxy_binary, is_listening
from tests.support.process import ROOT, ServerProcess
from tests.support.redis_server import RedisServer, running_redis

BURST = 200
# Beyond a lease, for the polling and for a machine busy with other work.
SLACK = 1.0
SAMPLE_GET = "FILE 6 5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03 sample.txt"

README = ROOT / "README.md"

StartCluster = Callable[..., Cluster]


@pytest.fixture
def start_cluster(repo: Path, tmp_path: Path) -> Iterator[StartCluster]:
    started: list[Cluster] = []

    def start(**options: Any) -> Cluster:
        cluster = Cluster(repo, tmp_path / f"cluster{len(started)}", **options)
        started.append(cluster)
        return cluster

    yield start
    for cluster in started:
        cluster.close()


def admission(conn: LineConn) -> str:
    """The server's last word on a new connection: ``WELCOME …`` or ``FULL …`` (closed after)."""
    with conn:
        return admitted(conn)


def admitted(conn: LineConn) -> str:
    """The server's last word on a new connection, which stays open."""
    first = conn.read_line()
    if not first.startswith("NAME "):
        return first
    return conn.request(f"HELLO {first.removeprefix('NAME ')}")


def welcomed_on(cluster: Cluster, node: str) -> bool:
    """Whether a new client is welcomed on ``node`` now (it leaves at once)."""
    return admission(cluster.direct(node)).startswith("WELCOME ")


def greeted_into(conns: list[LineConn], cluster: Cluster, node: str) -> bool:
    """Whether a client greeted on ``node`` now was welcomed (then kept in ``conns``)."""
    conn = cluster.direct(node)
    try:
        welcomed = admitted(conn).startswith("WELCOME ")
    except BaseException:
        conn.close()
        raise
    if not welcomed:
        conn.close()
        return False
    conns.append(conn)
    return True


def stats(conn: LineConn) -> dict[str, str]:
    count = int(conn.request("STATS").removeprefix("STATS "))
    return dict(conn.read_line().split("\t", 1) for _ in range(count))


def row(rows: list[Row], name: str) -> Row:
    [found] = [each for each in rows if each.name == name]
    return found


def settled_status(
    queriers: dict[str, LineConn], until: Callable[[list[Row]], bool] = lambda _: True
) -> list[Row]:
    """STATUS once every node answers the same, and that table meets ``until``."""
    tables: dict[str, list[Row]] = {}

    def same() -> bool:
        tables.update({node: status(conn) for node, conn in queriers.items()})
        return len({tuple(rows) for rows in tables.values()}) == 1 and until(tables["a"])

    try:
        wait_until(same, timeout=5, interval=0.05)
    except AssertionError:
        raise AssertionError(f"the nodes' STATUS never agreed: {tables}") from None
    return next(iter(tables.values()))


def one_client_a_node(cluster: Cluster, conns: list[LineConn]) -> dict[str, tuple[LineConn, str]]:
    """A welcomed connection straight to each node (kept in ``conns``) and its name."""
    held = {}
    for node in cluster.nodes:
        conn, name = cluster.greeted(node=node)
        conns.append(conn)
        held[node] = (conn, name)
    return held


def test_a_burst_over_three_nodes_admits_exactly_max_clients(start_cluster: StartCluster) -> None:
    cluster = start_cluster(max_clients=5)
    with closing_all([cluster.connect() for _ in range(BURST)]) as conns:
        first = [conn.read_line() for conn in conns]
        names = [line.removeprefix("NAME ") for line in first if line.startswith("NAME ")]
        assert len(names) == BURST, first  # no slot is taken before HELLO: all are named
        assert len(set(names)) == BURST, "a name was given twice"
        for conn, name in zip(conns, names, strict=True):
            conn.send_line(f"HELLO {name}")
        answers = [conn.read_line() for conn in conns]
        welcomed = [
            conn for conn, answer in zip(conns, answers, strict=True) if "WELCOME" in answer
        ]
        refused = [answer for answer in answers if answer.startswith("FULL ")]
        assert len(welcomed) == cluster.max_clients, answers
        assert len(refused) == BURST - cluster.max_clients, answers
        for conn in welcomed:  # all held at once: none was let go to make room
            assert conn.request("PING") == "PONG"
    # HAProxy spread the burst over every node (+1: the connection asking).
    with closing_all([]) as askers:
        for node in cluster.nodes:
            # The burst's slots (and each probe's) are given back a little after
            # their close: greeted once one is free.
            wait_until(
                lambda node=node: greeted_into(askers, cluster, node), timeout=5, interval=0.05
            )
            assert int(stats(askers[-1])["connections_received"]) > BURST // 6, node


def test_names_increase_across_nodes_in_connection_order(start_cluster: StartCluster) -> None:
    cluster = start_cluster(max_clients=8)
    with closing_all([]) as conns:
        names = []
        for _ in range(6):
            conn, name = cluster.greeted()
            conns.append(conn)
            names.append(name)
        numbers = [number(name) for name in names]
        assert numbers == sorted(set(numbers)), names
        rows: list[Row] = []

        def all_listed() -> bool:  # the others' clients come to a node's copy of the table
            rows[:] = status(conns[0])
            return len(rows) == len(names)

        wait_until(all_listed, timeout=5, interval=0.05)
    assert [each.name for each in rows] == names
    assert {each.node for each in rows} == set(cluster.nodes), rows  # HAProxy used all three


def test_status_is_the_same_from_every_node_with_the_clients_addresses(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(max_clients=9)
    with closing_all([]) as conns:
        queriers = {node: conn for node, (conn, _) in one_client_a_node(cluster, conns).items()}
        two, name_two = cluster.greeted(source="127.0.0.2")
        three, name_three = cluster.greeted(source="127.0.0.3")
        gone, name_gone = cluster.greeted(source="127.0.0.2")
        conns += [two, three]
        assert gone.request("EXIT") == "BYE"
        gone.close()
        rows = settled_status(queriers, until=lambda rows: not row(rows, name_gone).live)
        table = {each.name: each for each in rows}
        # The PROXY header's address: the client's own, its port too, not HAProxy's.
        assert table[name_two].address == "{}:{}".format(*two.sock.getsockname())
        assert table[name_three].address == "{}:{}".format(*three.sock.getsockname())
        assert table[name_two].live
        assert table[name_three].live
        assert not table[name_gone].live
        assert table[name_gone].address.startswith("127.0.0.2:")
        # In connection order, each client with the node that holds it.
        assert [number(each.name) for each in rows] == sorted(number(each.name) for each in rows)
        nodes_of_queriers = [each.node for each in rows if each.address.startswith("127.0.0.9:")]
        assert nodes_of_queriers == list(cluster.nodes), rows


def test_a_killed_node_frees_its_slots_within_the_lease(start_cluster: StartCluster) -> None:
    cluster = start_cluster(max_clients=3, lease=2.0)
    with closing_all([]) as conns:
        held = one_client_a_node(cluster, conns)
        assert admission(cluster.direct("a")).startswith("FULL "), "the cluster is full"
        killed_at = time.monotonic()
        cluster.kill("b")
        wait_until(
            lambda: welcomed_on(cluster, "a"), timeout=cluster.lease + 2 * SLACK, interval=0.05
        )
        freed_after = time.monotonic() - killed_at
        assert freed_after <= cluster.lease + SLACK, f"freed {freed_after:.2f} s after the kill"
        survivors = [held["a"][0], held["c"][0]]
        for conn in survivors:
            assert conn.request("PING") == "PONG"
        wait_until(
            lambda: all(not row(status(conn), held["b"][1]).live for conn in survivors),
            timeout=cluster.lease,
            interval=0.05,
        )


def test_redis_stopped_refuses_new_clients_serves_the_others_and_recovers(
    start_cluster: StartCluster,
) -> None:
    # A lease far above the outage: the served client's node keeps its deadline.
    cluster = start_cluster(max_clients=4, lease=15.0)
    with closing_all([]) as conns:
        served, name = cluster.greeted()
        conns.append(served)
        cluster.redis.stop()
        for _ in range(3):  # whichever node HAProxy picks
            assert admission(cluster.connect()).startswith("FULL registry unavailable"), name
        assert served.request("PING") == "PONG"
        assert served.request("GET sample.txt") == SAMPLE_GET
        assert served.read_exactly(6) == b"hello\n"
        cluster.redis.start()
        for node in cluster.nodes:
            wait_until(lambda node=node: welcomed_on(cluster, node), timeout=5, interval=0.05)
        assert served.request("PING") == "PONG"
        assert row(status(served), name).live


def test_redis_restarted_empty_reuses_no_name(start_cluster: StartCluster) -> None:
    cluster = start_cluster(max_clients=4, lease=3.0)
    with closing_all([]) as conns:
        held = one_client_a_node(cluster, conns)
        names = {name for _, name in held.values()}
        cluster.redis.restart()  # on the same port, with nothing: no persistence
        named_after: list[str] = []

        def named_on(node: str) -> bool:
            answer = admission(cluster.direct(node))
            if answer.startswith("WELCOME "):
                named_after.append(answer.split()[1])
            return answer.startswith("WELCOME ")

        for node in cluster.nodes:  # each notices by itself that Redis is back
            wait_until(lambda node=node: named_on(node), timeout=5, interval=0.05)
        assert min(map(number, named_after)) > max(map(number, names)), (named_after, names)
        queriers = {node: conn for node, (conn, _) in held.items()}
        # (Each node's copy of the table follows Redis: the newcomers' ends reach
        # every node a moment later, and until then it counts them as connected.)
        settled_status(queriers, until=lambda rows: {r.name for r in rows if r.live} == names)
        # The nodes put their live slots back (by their next renewal at the latest):
        # the three held and one more fill the four slots.
        last, last_name = cluster.greeted()
        conns.append(last)
        assert number(last_name) > max(map(number, named_after))
        wait_until(
            lambda: admission(cluster.connect()).startswith("FULL "),
            timeout=cluster.lease,
            interval=0.1,
        )
        rows = settled_status(queriers, until=lambda rows: row(rows, last_name).live)
        assert {each.name for each in rows if each.live} == names | {last_name}


def test_a_node_cut_off_from_redis_closes_its_clients_by_its_deadline(
    start_cluster: StartCluster,
) -> None:
    cluster = start_cluster(max_clients=3, lease=2.0, cuttable=("b",))
    with closing_all([]) as conns:
        held = one_client_a_node(cluster, conns)
        cut_off = held["b"][0]
        cluster.cut("b")
        cut_at = time.monotonic()
        closed_at: list[float] = []

        def freed_in_order() -> bool:
            # Never more than three at once: b's client is gone before another is let in.
            if not closed_at and at_eof_now(cut_off):
                closed_at.append(time.monotonic())
            if not closed_at:
                assert not welcomed_on(cluster, "a"), "a fourth client while b still serves"
                return False
            return welcomed_on(cluster, "a")

        wait_until(freed_in_order, timeout=cluster.lease + 3, interval=0.02)
        assert closed_at[0] - cut_at <= cluster.lease + SLACK, closed_at[0] - cut_at
        for node in ("a", "c"):
            assert held[node][0].request("PING") == "PONG"
        assert admission(cluster.direct("b", timeout=15)).startswith("FULL registry unavailable")
        cluster.heal("b")
        wait_until(lambda: welcomed_on(cluster, "b"), timeout=10, interval=0.1)


def readme_commands() -> list[str]:
    """The README's commands of "Several servers as one", one a line, comments cut."""
    blocks = re.findall(r"^```sh\n(.*?)^```", README.read_text(encoding="utf-8"), re.M | re.S)
    [block] = [block for block in blocks if "--registry" in block]
    return [line.split("#")[0].strip() for line in block.splitlines() if line.strip()]


def test_the_readmes_commands_make_one_server_of_two(repo: Path, tmp_path: Path) -> None:
    with running_redis() as redis_server:
        run_the_readmes_commands(repo, tmp_path, redis_server)


def run_the_readmes_commands(repo: Path, tmp_path: Path, redis_server: RedisServer) -> None:
    commands = readme_commands()
    assert commands[0] == "redis-server &", commands  # ours instead, on a free port
    assert commands[-1] == "haproxy -f examples/haproxy.cfg", commands
    ports = {"50000": free_port(), "50001": free_port(), "50002": free_port()}

    def ours(text: str) -> str:
        text = text.replace("redis://127.0.0.1:6379/0", redis_server.url)
        text = text.replace("/shared/repo", str(repo))
        return re.sub(r"\b5000[012]\b", lambda match: str(ports[match[0]]), text)

    nodes = []
    haproxy = None
    try:
        for command in commands[1:-1]:
            argv = shlex.split(ours(command).removesuffix("&"))
            assert argv[0] == "filedock-server", argv
            nodes.append(ServerProcess(repo, *argv[1:], start_timeout=30))
        config = tmp_path / "haproxy.cfg"
        config.write_text(ours((ROOT / "examples" / "haproxy.cfg").read_text()).replace(
            f"bind :{ports['50000']}", f"bind {HOST}:{ports['50000']}"
        ))  # fmt: skip
        haproxy = subprocess.Popen(
            [haproxy_binary(), "-db", "-f", str(config)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: is_listening(ports["50000"]), timeout=10)
        with closing_all([]) as conns:
            for source in ("127.0.0.2", "127.0.0.3"):
                conn = LineConn(ports["50000"], source=source)
                conns.append(conn)
                # HAProxy's health checks took no name: these are the first two.
                assert conn.greet() == f"Client0{len(conns)}"
            rows: list[Row] = []

            def both_listed() -> bool:
                rows[:] = status(conns[0])
                return len(rows) == 2

            wait_until(both_listed, timeout=5, interval=0.05)
            assert {each.node for each in rows} == {"a", "b"}, rows  # leastconn: one each
            assert [each.address.split(":")[0] for each in rows] == ["127.0.0.2", "127.0.0.3"]
    finally:
        if haproxy is not None:
            haproxy.terminate()
            haproxy.wait(10)
        for node in nodes:
            node.stop()
