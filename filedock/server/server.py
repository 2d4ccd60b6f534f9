"""The filedock server: listening, the shared state, and shutdown.

One asyncio event loop serves every client (see :mod:`filedock.server.session`);
work that would block it (hashing, scanning the folder) runs in worker
threads. Use it from Python::

    server = Server(ServerConfig(port=0))
    await server.start()
    ...
    server.statistics().clients_connected
    await server.aclose()
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import importlib
import ipaddress
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from .. import protocol as p
from ..digests import open_store
from ..hostport import host_port
from ..protocol.state import State
from ..version import server_banner
from .addresses import is_loopback_host
from .auth import AuthGuard, TokenChecker, read_token_rights, server_context
from .commands import REQUEST_VERBS
from .config import ServerConfig
from .context import REJECTED as REJECTED
from .context import ServerContext
from .events import EVENT_HANDLERS, UNCOUNTED
from .listing_cache import ListingCache
from .logs import WarningLimiter, announce
from .reachable import reachable_addresses
from .registry import BRIEF_SESSION, ClientEntry, MemoryRegistry, PendingPool, Registry
from .repository import Repository
from .session import Session
from .shared_digests import SharedDigests
from .stats import Kind, Sample, Statistics
from .status import StatusReplies
from .upload_area import UploadArea
from .uploads import flushes_ended
from .watch import Watch
from .workers import Workers

if TYPE_CHECKING:
    from .cluster.registry import RedisRegistry

log = logging.getLogger("filedock.server")

# What a client whose slot this node could not keep (see cluster.leases) is told.
_REGISTRY_LOST = p.ErrorReply(
    p.ErrorCode.SHUTDOWN, "this server lost its place in the shared registry: connect again"
)

GAUGE = Kind.GAUGE
# The states of a connection whose body moves: a file sent, an upload received.
_MOVING = frozenset({State.SENDING, State.RECEIVING})

# Accept errors that mean "out of resources": asyncio logs them through the
# loop's exception handler, stops accepting and retries after a second.
_OVERLOAD_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

# Pending connections the kernel queues for us: a burst of clients is
# answered FULL instead of refused.
_BACKLOG = 1024

# Connections asyncio accepts per wake-up, kept apart from _BACKLOG: out of
# descriptors, asyncio calls accept() this many times and schedules as many
# retries (CPython gh-151615), which at 1024 grows into a busy loop.
_ACCEPT_BATCH = 100

# What one read from a client may bring: a buffer of this size is lent to each
# session in turn (see Session.get_buffer). A line is at most max_line bytes,
# so a read this size holds many pipelined requests.
_READ_BUFFER = 64 * 1024

# How long a shutdown waits for the work no session waits for (see aclose).
_BACKGROUND_WAIT = 3.0


@dataclass(frozen=True, slots=True)
class ServerStatistics:
    """What a server holds and has done, at one moment (see :meth:`Server.statistics`)."""

    sessions_open: int  # connections in their handshake or welcomed, not yet closed
    sessions_welcomed: int  # of those, the ones whose client holds a slot
    pending: int  # of those, the ones still greeting (in the pending pool)
    clients_connected: int  # welcomed clients holding a slot
    lingering: int  # turned away on accept, saying FULL before the close
    drop_notices_held: int  # dropped for a newcomer, told so after a moment
    connections_accepted: int  # every connection accepted since start()
    connections_refused: int  # of those, turned away for want of room (FULL), at any step
    hash_cache_entries: int  # SHA-256 digests kept in memory
    hash_cache_hits: int  # digests answered from the cache (memory or disk)
    hashings: int  # files read and hashed
    hash_workers_busy: int  # hashing jobs queued or running
    metadata_workers_busy: int  # listing, opening and small-file jobs queued or running
    uptime: int  # whole seconds since start()


class Server:
    """A filedock server. ``start()``, then ``serve_until_stopped()`` or ``aclose()``."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        # Local to this server, whatever registry keeps the clients.
        self.pending: PendingPool[Session] = PendingPool(
            config.max_pending, config.max_pending_per_ip
        )
        # With --registry, shared with the other servers (it starts, stops and
        # has the cluster's figures); else this process's own.
        self.cluster = shared_registry(config, self.pending)
        self.registry: Registry = (
            self.cluster if self.cluster is not None else registry_for(config, self.pending)
        )
        self.workers = Workers()  # hashing and metadata pools, apart (see workers.py)
        # The one set of counters: the sessions, the digest cache and the readers share it.
        self.stats = Statistics(verbs=REQUEST_VERBS, others=EVENT_HANDLERS, derived=UNCOUNTED)
        self.stats.gauges = self._gauges
        self.repository = Repository(
            config.repo, workers=self.workers, max_line=config.max_line, stats=self.stats
        )
        self.tls = (
            server_context(config.tls_cert, config.tls_key)
            if config.tls_cert and config.tls_key
            else None
        )
        self.tokens = (
            TokenChecker(read_token_rights(config.token_file)) if config.token_file else None
        )
        # Its tickets are the turns of greetings queued behind a source's answers.
        self.auth_guard: AuthGuard[asyncio.Future[None]] = AuthGuard(
            at_once=config.max_auth_failures_at_once,
            per_minute=config.max_auth_failures_per_minute,
        )
        self.sessions: set[Session] = set()
        self.lingering: set[Session] = set()  # turned away, saying FULL before the close
        # Dropped from the pending pool, told so after a moment (admission.drop_for_newcomer).
        self.notices_held: set[Session] = set()
        self.read_buffer = memoryview(bytearray(_READ_BUFFER))  # every session reads into it
        self.banner = server_banner()
        self.about = f"{self.banner} | protocol {p.PROTOCOL_VERSION} | multi-client TCP file server"
        self._listener: asyncio.base_events.Server | None = None
        # Made here, not in start(): a signal may arrive while start() runs.
        self._stop_requested = asyncio.Event()
        self._limiter = WarningLimiter(log)
        self._all_closed: asyncio.Event | None = None
        self.context = ServerContext(
            config=config,
            registry=self.registry,
            status=StatusReplies(self.registry, config.status_addresses),
            repository=self.repository,
            workers=self.workers,
            tls=self.tls,
            tokens=self.tokens,
            auth_guard=self.auth_guard,
            banner=self.banner,
            about=self.about,
            limiter=self._limiter,
            read_buffer=self.read_buffer,
            session_closed=self.session_closed,
            sessions=self.sessions,
            lingering=self.lingering,
            notices_held=self.notices_held,
            stats=self.stats,
        )
        self._accept_warned = float("-inf")  # when "Cannot accept" was last logged
        # Set by request_stop and aclose: /healthz answers 503 from then on.
        self.stopping = False
        self.watch: Watch | None = None  # the HTTP side, with --http
        self.shared_digests: SharedDigests | None = None  # with --registry, from start() on

    # -- running ------------------------------------------------------------

    async def start(self) -> None:
        """Listen on the configured address. Raises ``OSError`` if it cannot."""
        loop = asyncio.get_running_loop()
        self._limiter = self.context.limiter = WarningLimiter(log, call_later=loop.call_later)
        loop.set_exception_handler(self._loop_exception)
        self.context.started = time.monotonic()
        self.stats.restart_clock()
        # No ssl= here: asyncio would build a TLS layer for every connection
        # it accepts. Sessions start TLS once the pending pool admits them.
        dual_stack = dual_stack_socket(self.config.host, self.config.port)
        if dual_stack is not None:
            self._listener = await loop.create_server(
                self._accept, sock=dual_stack, backlog=_ACCEPT_BATCH
            )
        else:
            self._listener = await loop.create_server(
                self._accept,
                self.config.host,
                self.config.port,
                backlog=_ACCEPT_BATCH,
                reuse_address=True,
            )
        for sock in self._listener.sockets:  # the kernel's queue: _BACKLOG, not the batch
            with sock.dup() as listening:
                listening.listen(_BACKLOG)
        if self.cluster is not None:
            self.cluster.on_lost = self._registry_lost
            await self.cluster.start()
        state = self.config.state_folder(self.repository.root)
        # Opened in a worker, as every later use is: no SQLite work on the loop.
        self.repository.hashes.store = await self.workers.metadata.run(open_store, state)
        if self.config.registry is not None:  # several servers: one digest cache too
            self.shared_digests = SharedDigests.from_url(self.config.registry)
            self.repository.hashes.shared = self.shared_digests
        if self.config.allow_upload:
            self.context.uploads = await self.workers.uploads.run(self._open_uploads, state)
        if _served_from(state, self.repository.root):
            log.warning(
                "The state folder %s is inside the repository under names that are served: "
                "clients can list and fetch the digest cache (give it a hidden name, or put "
                "it elsewhere)",
                state,
            )
        self.context.listing_cache = cache = ListingCache.open(self.repository.root)
        if cache is not None:
            cache.attach(loop)
        # Both listeners are up before the Starting line, which scripts take to
        # mean "ready": a scrape right after it must find the HTTP side there.
        await self._start_watch()
        address = host_port(*self.address)
        announce(  # at any log level: scripts read the port from it
            log,
            "Starting server on %s, repo=%r, max_clients=%d%s",
            address,
            self.repository.root,
            self.config.max_clients,
            self._extras(),
            event="started",
            address=address,
        )
        if self.watch is not None:
            self.watch.announce()
        await self._name_reachable_addresses()
        self.warn_if_exposed()

    async def _name_reachable_addresses(self) -> None:
        """Beyond loopback (0.0.0.0, ::), say where a colleague could connect: the
        listening address alone names none. Found in a thread (it may run ``ip``)."""
        host, port = self.address
        reachable = await asyncio.to_thread(reachable_addresses, host, port)
        if reachable:
            log.info("Clients can connect to %s", ", ".join(reachable))

    async def _start_watch(self) -> None:
        listen = self.config.http_listen()
        if listen is None:
            return
        watch = Watch(self.context, lambda: self.stopping)
        try:
            await watch.start(*listen)
        except OSError:
            await self.aclose()  # what start() opened before it
            raise
        self.watch = watch

    def _open_uploads(self, state: str) -> UploadArea:
        """In a worker: the uploads' folder, its expired partials removed."""
        area = UploadArea(
            self.repository.root,
            state,
            self.repository.open_root,
            expiry=self.config.upload_expiry,
        )
        removed = area.remove_expired()
        if removed:
            log.info(
                "Removed %d interrupted upload%s older than %g s",
                removed, "" if removed == 1 else "s", self.config.upload_expiry,
            )  # fmt: skip
        return area

    def warn_if_exposed(self) -> None:
        """Log one warning when the address is reachable beyond this machine without
        both TLS and tokens (``start()`` calls it)."""
        if is_loopback_host(self.config.host) or (self.tls and self.tokens):
            return
        missing = " and ".join(
            what
            for what, on in (("without TLS", self.tls), ("with no --token-file", self.tokens))
            if not on
        )
        log.warning(
            "Listening on %s %s: anyone who can reach this port can read every shared file "
            "(see 'Running it beyond localhost' in the README: --tls-cert/--tls-key and "
            "--token-file)",
            self.config.host or "every interface",
            missing,
        )

    def _extras(self) -> str:
        extras = []
        if _is_uvloop(asyncio.get_running_loop()):
            extras.append(", loop=uvloop")
        if self.tls:
            extras.append(", tls=on")
        if self.tokens:
            extras.append(", tokens=required")
        if self.context.uploads is not None:
            extras.append(", uploads=on")
        if self.config.proxy_protocol:
            extras.append(", proxy_protocol=on")
        if self.config.max_clients_per_ip > 0:
            extras.append(f", max_clients_per_ip={self.config.max_clients_per_ip}")
        if self.cluster is not None:
            extras.append(f", registry={self.cluster.url}, node={self.cluster.node}")
        return "".join(extras)

    @property
    def address(self) -> tuple[str, int]:
        """The (host, port) the server listens on; the real port when 0 was asked."""
        assert self._listener is not None, "start() first"
        sockname = self._listener.sockets[0].getsockname()
        return sockname[0], sockname[1]

    def request_stop(self) -> None:
        """Ask ``serve_until_stopped`` to shut down (safe from a signal handler)."""
        self.stopping = True
        self._stop_requested.set()

    async def serve_until_stopped(self) -> None:
        """Serve until :meth:`request_stop`, then shut down cleanly."""
        await self._stop_requested.wait()
        log.info("Shutting down")
        await self.aclose()

    async def aclose(self) -> None:
        """Stop accepting, end every session (transfers get the grace period), close."""
        self.stopping = True
        if self._listener is not None:
            self._listener.close()
        self.workers.stop_hashing()  # no session still waiting for a digest gets it
        for turned_away in list(self.lingering):
            turned_away.abort()
        sessions = list(self.sessions)
        grace = self.config.shutdown_grace
        outcomes = await asyncio.gather(
            *(session.shut_down(grace) for session in sessions), return_exceptions=True
        )
        for session, outcome in zip(sessions, outcomes, strict=True):
            # One connection failing to say goodbye must not stop the others'.
            if isinstance(outcome, Exception):
                log.warning("Could not end %s cleanly: %s", session.label(), outcome)
                session.abort()
        try:
            async with asyncio.timeout(grace + 3.0):
                await self._wait_sessions_closed()
        except TimeoutError:
            for session in list(self.sessions):
                session.abort()
        if self._listener is not None:
            await self._listener.wait_closed()
            self._listener = None
        if self.cluster is not None:  # after the sessions: their ends reach Redis
            await self.cluster.aclose()
        # What goes on unwaited by any session ends on the loop, before the
        # workers close: the hashings (each stops at its next block) and the
        # partials of uploads cut short (what came is written for a resume).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_BACKGROUND_WAIT):
                await self.repository.hashes.settled()
                await flushes_ended()
        self.workers.close()
        # On the loop, as nothing is served any more: the last batch is committed.
        self.repository.hashes.store.close()
        if self.shared_digests is not None:
            await self.shared_digests.aclose()
            self.shared_digests = None
        self.repository.close()
        if self.context.listing_cache is not None:
            self.context.listing_cache.close()
        if self.context.uploads is not None:
            self.context.uploads.close()
        if self.watch is not None:  # last: /healthz says 503 until the very end
            await self.watch.aclose()
            self.watch = None
        self._limiter.flush()

    async def _wait_sessions_closed(self) -> None:
        if self.sessions:
            self._all_closed = asyncio.Event()
            await self._all_closed.wait()

    def statistics(self) -> ServerStatistics:
        """A snapshot of the server's counts; call it on the server's event loop."""
        hashes, workers, stats = self.repository.hashes, self.workers, self.stats
        rejected = stats.connections_rejected
        return ServerStatistics(
            sessions_open=len(self.sessions),
            sessions_welcomed=sum(
                session.entry is not None and session.entry.finished is None
                for session in self.sessions
            ),
            pending=len(self.pending),
            clients_connected=self.registry.connected_count,
            lingering=len(self.lingering),
            drop_notices_held=len(self.notices_held),
            connections_accepted=stats.connections_received,
            connections_refused=sum(stats.connections_rejected.values()) - rejected["token"],
            hash_cache_entries=len(hashes),
            hash_cache_hits=stats.digest_cache_hits,
            hashings=stats.digest_cache_misses,
            hash_workers_busy=workers.hashing.busy,
            metadata_workers_busy=workers.metadata.busy,
            uptime=self.uptime(),
        )

    def samples(self) -> list[Sample]:
        """Every counter and gauge now (see :mod:`.stats`); call it on the server's loop."""
        return self.stats.samples()

    def _gauges(self) -> list[Sample]:
        """What is read rather than counted, at each read of the statistics."""
        sessions = self.sessions
        moving = sum(session.conn.state in _MOVING for session in sessions)
        return [
            Sample("clients_connected", self.registry.connected_count, GAUGE, "Clients welcomed"),
            Sample("sessions_open", len(sessions), GAUGE, "Connections greeting or welcomed"),
            Sample("pending", len(self.pending), GAUGE, "Connections still greeting"),
            Sample("transfers_active", moving, GAUGE, "Bodies being sent or received"),
            Sample("digest_cache_entries", len(self.repository.hashes), GAUGE, "Digests held"),
            Sample("hash_jobs", self.workers.hashing.busy, GAUGE, "Hashings queued or running"),
            *self._cluster_gauges(),
        ]

    def _cluster_gauges(self) -> list[Sample]:
        cluster = self.cluster
        if cluster is None:
            return []
        return [
            Sample(
                "cluster_clients_connected",
                cluster.cluster_connected,
                GAUGE,
                "Clients welcomed by every server sharing the registry",
            ),
            Sample("cluster_nodes", cluster.cluster_nodes, GAUGE, "Servers sharing the registry"),
        ]

    def _registry_lost(self, entry: ClientEntry) -> None:
        """This node may no longer count ``entry``'s slot: end its session now."""
        for session in list(self.sessions):
            if session.entry is entry:
                if session.conn.state is State.SENDING:
                    session.abort("registry-lost")  # a body cut short takes no line after it
                else:
                    session.end_reason = session.end_reason or "registry-lost"
                    session.close_with(_REGISTRY_LOST)
                return

    # -- shared state for sessions --------------------------------------------

    def _accept(self) -> Session:
        self.stats.connections_received += 1
        return Session(self.context)

    def session_closed(self, session: Session) -> None:
        self.sessions.discard(session)
        if not self.sessions and self._all_closed is not None:
            self._all_closed.set()

    def uptime(self) -> int:
        return self.context.uptime()

    def warn(self, kind: str, message: str, *args: object, source: str | None = None) -> None:
        """Log a warning that a flood of clients could repeat (rate-limited by kind and source)."""
        self.context.warn(kind, message, *args, source=source)

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in _OVERLOAD_ERRNOS:
            # One line per retry round, not one per accept() asyncio tried in it.
            now = time.monotonic()
            if now - self._accept_warned >= 1.0:
                self._accept_warned = now
                self.warn(
                    "accept", "Cannot accept connections: %s; retrying in a second", exc.strerror
                )
            return
        if _is_accept_retry(context) and not (self._listener and self._listener.is_serving()):
            return  # asyncio's retry of a failed accept(), due after the listener closed
        loop.default_exception_handler(context)


def shared_registry(config: ServerConfig, pending: PendingPool[Session]) -> RedisRegistry | None:
    """The registry shared with other servers that ``--registry`` names, or ``None``
    (redis-py is imported only then)."""
    if config.registry is None:
        return None
    from .cluster.registry import RedisRegistry

    return RedisRegistry(
        config.registry,
        node=config.node_name(),
        lease=config.lease,
        max_clients=config.max_clients,
        history=config.history,
        pending=pending,
        slots_per_source=config.slots_per_source,
    )


def registry_for(config: ServerConfig, pending: PendingPool[Session]) -> Registry:
    """This process's own registry, for a server alone."""
    return MemoryRegistry(
        config.max_clients,
        config.history,
        slots_per_source=config.slots_per_source,
        pending=pending,
        brief=BRIEF_SESSION if config.compact_history else 0.0,
    )


def _served_from(state: str, root: str) -> bool:
    """Whether files in the folder ``state`` would be listed by the repository at ``root``
    (a hidden name on the way hides them)."""
    inside = os.path.relpath(os.path.realpath(state), root)
    names = inside.split(os.sep)
    if names[0] == "..":
        return False
    return not any(name.startswith(".") for name in names if name != ".")


def _is_accept_retry(context: dict[str, Any]) -> bool:
    """Whether a loop error comes from asyncio's retry of an accept() that failed.

    A callback's error is reported with the message "Exception in callback"
    and the callback's name: read from the message, not from the handle's
    private attributes.
    """
    message = context.get("message")
    return (
        "handle" in context
        and isinstance(message, str)
        and message.startswith("Exception in callback ")
        and "._start_serving(" in message
    )


def event_loop_factory(choice: str) -> Callable[[], asyncio.AbstractEventLoop]:
    """What makes the server's event loop for ``choice`` (see ``LOOP_CHOICES``).

    ``"auto"`` picks uvloop when it is installed and the standard loop otherwise.
    Raises ``ValueError`` for ``"uvloop"`` when uvloop is not installed.
    """
    if choice != "asyncio":
        try:
            uvloop = importlib.import_module("uvloop")
        except ImportError:
            if choice == "uvloop":
                raise ValueError("uvloop is not installed (pip install filedock[fast])") from None
        else:
            return cast(Callable[[], asyncio.AbstractEventLoop], uvloop.new_event_loop)
    return asyncio.new_event_loop


def _is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.partition(".")[0] == "uvloop"


def dual_stack_socket(host: str, port: int) -> socket.socket | None:
    """A listening socket for ``--host ::`` that takes IPv4 clients too, or ``None``
    for any other host (asyncio's own listeners then).

    asyncio sets IPV6_V6ONLY on every IPv6 listener, so ``::`` alone would refuse
    IPv4 clients; the unspecified address means "every address" to a person.
    Raises ``OSError`` if it cannot listen.
    """
    try:
        unspecified_v6 = ipaddress.ip_address(host.strip("[]")) == ipaddress.IPv6Address("::")
    except ValueError:
        return None
    if not (unspecified_v6 and socket.has_dualstack_ipv6()):
        return None
    return socket.create_server(
        (host.strip("[]"), port),
        family=socket.AF_INET6,
        backlog=_BACKLOG,
        dualstack_ipv6=True,
    )
