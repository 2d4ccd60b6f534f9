"""Several filedock servers as one, all real processes: a Redis, N nodes, an HAProxy.

The nodes are ``python3 Server.py`` processes on free ports of 127.0.0.1,
each with ``--registry`` (the one Redis), ``--node a|b|c``, ``--lease``,
``--proxy-protocol`` and the same ``--repo``; HAProxy listens in front and
sends each a PROXY v2 header, as in examples/haproxy.cfg. Nodes named in
``cuttable`` reach Redis through their own :class:`FreezableRelay`, so a test can
cut one node off from Redis alone. Everything is stopped by :meth:`close`.

A test reaches a chosen node past HAProxy with :meth:`Cluster.direct`, which
sends the PROXY v1 header itself (a loopback peer is allowed to, by default).
"""

from __future__ import annotations

import contextlib
import re
import signal
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from filedock.protocol.messages import NOT_FINISHED
from tests.support import HOST, LineConn
from tests.support.freezable_relay import FreezableRelay
from tests.support.haproxy import HAProxy
from tests.support.process import ServerProcess
from tests.support.redis_server import RedisServer

NODE_NAMES = ("a", "b", "c")
# The address :meth:`Cluster.direct` claims by default: none of HAProxy's clients has it.
DIRECT_SOURCE = "127.0.0.9"
# Past every per-source handshake limit: a burst through HAProxy is answered by
# the registry's capacity, not by a node's pending pool.
WIDE_POOL = ("--max-pending", "512", "--max-pending-per-ip", "512")


@dataclass
class Node:
    name: str
    process: ServerProcess
    relay: FreezableRelay | None

    @property
    def port(self) -> int:
        return self.process.port


class Cluster:
    """``len(names)`` nodes on one Redis behind one HAProxy; :attr:`port` is HAProxy's."""

    def __init__(
        self,
        repo: Path,
        work: Path,
        *,
        names: Iterable[str] = NODE_NAMES,
        max_clients: int = 3,
        lease: float = 15.0,
        cuttable: Iterable[str] = (),
        options: Iterable[str] = (),
    ) -> None:
        self.repo, self.work = repo, work
        self.max_clients, self.lease = max_clients, lease
        self.options = tuple(options)
        self.nodes: dict[str, Node] = {}
        for folder in ("redis", "haproxy"):
            (work / folder).mkdir(parents=True, exist_ok=True)
        self.redis = RedisServer(work / "redis").start()
        self.haproxy: HAProxy | None = None
        try:
            cut = set(cuttable)
            relays = {name: FreezableRelay(self.redis.port) for name in names if name in cut}
            with ThreadPoolExecutor(max_workers=3) as pool:  # each start is a Python start-up
                started = pool.map(lambda name: self._start(name, relays.get(name)), names)
                for node in started:
                    self.nodes[node.name] = node
            backends = [(HOST, node.port) for node in self.nodes.values()]
            self.haproxy = HAProxy(work / "haproxy", backends, send_proxy="send-proxy-v2").start()
        except BaseException:
            self.close()
            raise
        self.port: int = self.haproxy.port

    def _start(self, name: str, relay: FreezableRelay | None) -> Node:
        url = self.redis.url if relay is None else f"redis://{HOST}:{relay.port}/0"
        options = ["--registry", url, "--node", name, "--lease", str(self.lease)]
        options += ["--proxy-protocol", "--max-clients", str(self.max_clients), *WIDE_POOL]
        try:
            # (Three Python start-ups at once, on a machine other tests keep busy.)
            process = ServerProcess(self.repo, *options, *self.options, start_timeout=30)
        except BaseException:
            if relay is not None:
                relay.close()
            raise
        return Node(name, process, relay)

    # -- clients ------------------------------------------------------------------------

    def connect(self, source: str = HOST, timeout: float = 5.0) -> LineConn:
        """A raw connection through HAProxy from ``source`` (a 127.x.y.z address)."""
        return LineConn(self.port, timeout=timeout, source=source)

    def direct(self, node: str, source: str = DIRECT_SOURCE, timeout: float = 5.0) -> LineConn:
        """A raw connection to ``node`` itself that claims ``source`` in a PROXY v1 header."""
        conn = LineConn(self.nodes[node].port, timeout=timeout)
        client_port = conn.sock.getsockname()[1]
        conn.send(f"PROXY TCP4 {source} {HOST} {client_port} {self.port}\r\n")
        return conn

    def greeted(self, node: str | None = None, source: str | None = None) -> tuple[LineConn, str]:
        """A welcomed client (through HAProxy, or to ``node``) and its name."""
        if node is None:
            conn = self.connect(source or HOST)
        else:
            conn = self.direct(node, source or DIRECT_SOURCE)
        try:
            return conn, conn.greet()
        except BaseException:
            conn.close()
            raise

    # -- faults -------------------------------------------------------------------------

    def kill(self, node: str) -> None:
        """SIGKILL: no goodbye to Redis, its leases just stop being renewed."""
        process = self.nodes[node].process
        process.proc.send_signal(signal.SIGKILL)
        process.wait()

    def cut(self, node: str) -> None:
        relay = self.nodes[node].relay
        assert relay is not None, f"node {node} was not started cuttable"
        relay.freeze()

    def heal(self, node: str) -> None:
        relay = self.nodes[node].relay
        assert relay is not None
        relay.thaw()

    # -- the end ------------------------------------------------------------------------

    def close(self) -> None:
        if self.haproxy is not None:
            self.haproxy.stop()
        for node in self.nodes.values():
            with contextlib.suppress(AssertionError):  # a killed node was waited for already
                node.process.stop()
            if node.relay is not None:
                node.relay.close()
        self.redis.stop()

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


# -- reading STATUS -------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One STATUS record: name, accepted, finished, address and the node."""

    name: str
    accepted: str
    finished: str
    address: str
    node: str

    @property
    def live(self) -> bool:
        return self.finished == NOT_FINISHED


def status(conn: LineConn) -> list[Row]:
    head = conn.request("STATUS")
    match = re.fullmatch(r"STATUS (\d+)", head)
    assert match, head
    rows = []
    for _ in range(int(match.group(1))):
        fields = conn.read_line().split("\t")
        assert len(fields) == 5, fields
        rows.append(Row(*fields))
    return rows


def number(name: str) -> int:
    """``Client17`` → 17."""
    match = re.fullmatch(r"Client(\d+)", name)
    assert match, name
    return int(match.group(1))


@contextlib.contextmanager
def closing_all(conns: list[LineConn]) -> Iterator[list[LineConn]]:
    try:
        yield conns
    finally:
        for conn in conns:
            conn.close()


def at_eof_now(conn: LineConn) -> bool:
    """Whether the server has closed ``conn`` already, without waiting (what it
    sent before closing is read and dropped)."""
    conn.sock.setblocking(False)
    try:
        while conn.sock.recv(65536):
            pass
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True
    finally:
        conn.sock.setblocking(True)
