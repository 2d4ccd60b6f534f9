"""A small HTTP/1.1 listener on the server's event loop: ``GET`` and ``HEAD`` only.

No framework: the request line and headers are read line by line and parsed
here under strict limits (CR LF line ends, no control character, one
``Host``), and a request never has a body. A slow or hostile HTTP client can
hold at most one of ``max_connections`` connections, with at most
``MAX_HEAD`` bytes buffered, for at most ``head_timeout`` seconds per request
(also the keep-alive idle time) and ``write_timeout`` seconds per answer.
Requests begin at most ``REQUESTS_PER_SECOND`` a second, in turn, whoever
asks: a client asking as fast as it can takes no more of the loop.

When all places are taken, a newcomer takes the place of the connection that
has waited longest on its client (for a head, or for an answer to be taken),
if that is ``evict_after`` seconds or more: a real client sends its head and
takes its answer in far less, so connections held open on purpose cannot
lock the others out; and a source holding more than half the places gives
one up to any other source's newcomer. Only when neither applies is the
newcomer answered 503 at once. The line protocol's clients never wait on any
of it: nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

log = logging.getLogger("filedock.server")

MAX_CONNECTIONS = 16
MAX_HEAD = 8 * 1024  # the request line and every header, in bytes
MAX_HEADERS = 32
HEAD_TIMEOUT = 10.0  # seconds for a request's head to arrive, from the connect or the last answer
WRITE_TIMEOUT = 10.0  # seconds for an answer to be taken by the client
MAX_REQUESTS = 1000  # per connection, then it is closed (a page polls on one connection)
EVICT_AFTER = 1.0  # seconds a connection waits on its client before a newcomer may take its place
LINGER = 1.0  # seconds a closing connection reads what its client still sends (see _linger)
MAX_REFUSING = 64  # connections answered 503 that may linger at once
# Requests the whole listener begins in a second, at most: a page polls three
# times a second and Prometheus once in seconds, while a client asking as fast
# as it can would take the loop the file clients are served on.
REQUESTS_PER_SECOND = 50

_RETRY = ("Retry-After", "1")
_END_OF_LINE = b"\r\n"
_END_OF_HEAD = b"\r\n\r\n"
_METHODS = ("GET", "HEAD")
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")
# RFC 9110's token characters: what a method and a header's name are made of.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
# A target is visible ASCII; a header's value may hold a tab and bytes past
# ASCII, never another control character (a NUL, a lone CR, DEL).
_TARGET = frozenset(map(chr, range(0x21, 0x7F)))
_CONTROLS = frozenset(map(chr, (*range(0x00, 0x09), *range(0x0A, 0x20), 0x7F)))


@dataclass(frozen=True, slots=True)
class Request:
    method: str  # GET or HEAD
    path: str  # the target without its query
    query: str
    headers: dict[str, str]  # names in lowercase; a repeated header's values joined by ", "
    version: str


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes = b""
    content_type: str = "text/plain; charset=utf-8"
    headers: tuple[tuple[str, str], ...] = ()


def text_response(status: int, text: str, *headers: tuple[str, str]) -> Response:
    return Response(status, text.encode("utf-8"), headers=headers)


class HeadError(Exception):
    """A request head that is refused: the status to answer with (the connection then closes)."""

    def __init__(self, status: int, reason: str, *headers: tuple[str, str]) -> None:
        super().__init__(reason)
        self.response = text_response(status, reason + "\n", *headers)


def parse_head(head: bytes) -> Request:
    """The request in ``head`` (up to and with its blank line); HeadError if refused."""
    lines = head[: -len(_END_OF_HEAD)].decode("latin-1").split("\r\n")  # latin-1 never fails
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[0] or not set(parts[0]) <= _TOKEN:
        raise HeadError(400, "Bad request line")
    method, target, version = parts
    if version not in _VERSIONS:
        raise HeadError(505, "Only HTTP/1.1 and HTTP/1.0 are served")
    if not set(target) <= _TARGET:
        raise HeadError(400, "Bad request target")
    if len(lines) - 1 > MAX_HEADERS:
        raise HeadError(431, f"More than {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    hosts = 0
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or not set(name) <= _TOKEN:  # no space before the colon either
            raise HeadError(400, "Bad header line")  # an obs-fold's line starts with a space
        if not _CONTROLS.isdisjoint(value):
            raise HeadError(400, "Bad header value")
        key, value = name.lower(), value.strip(" \t")
        hosts += key == "host"
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
    # RFC 9112 3.2: one Host in an HTTP/1.1 request, at most one in any.
    if hosts > 1 or (hosts == 0 and version == "HTTP/1.1"):
        raise HeadError(400, "One Host header is needed")
    if method not in _METHODS:
        raise HeadError(405, "Only GET and HEAD are served", ("Allow", ", ".join(_METHODS)))
    # A body is never read: refused rather than read as the next request.
    if "transfer-encoding" in headers or headers.get("content-length", "0") != "0":
        raise HeadError(400, "A request here has no body")
    if not target.startswith("/"):
        raise HeadError(400, "The target must be a path")
    path, _, query = target.partition("?")
    return Request(method, path, query, headers, version)


def keeps_alive(request: Request) -> bool:
    words = {word.strip().lower() for word in request.headers.get("connection", "").split(",")}
    if request.version == "HTTP/1.0":
        return "keep-alive" in words
    return "close" not in words


def encode(response: Response, *, head_only: bool, keep_alive: bool) -> bytes:
    phrase = HTTPStatus(response.status).phrase
    lines = [
        f"HTTP/1.1 {response.status} {phrase}",
        f"Date: {formatdate(usegmt=True)}",
        f"Content-Type: {response.content_type}",
        f"Content-Length: {len(response.body)}",
        "Cache-Control: no-store",
        "X-Content-Type-Options: nosniff",
        f"Connection: {'keep-alive' if keep_alive else 'close'}",
    ]
    lines += [f"{name}: {value}" for name, value in response.headers]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if head_only else head + response.body


# A request and the host of the peer that sent it, to its answer (which may wait).
Handler = Callable[[Request, str], Awaitable[Response]]


@dataclass(eq=False, slots=True)
class _Connection:
    writer: asyncio.StreamWriter
    task: asyncio.Task[None] | None
    host: str  # the peer's address
    source: str  # its group, for the share of places one source may hold
    # When it last began to wait on its client: connected, a head came, an answer was taken.
    since: float = field(default_factory=time.monotonic)
    dropped: bool = False  # its place was given to a newcomer, or the listener closes


async def read_head(reader: asyncio.StreamReader) -> bytes:
    """The next request's head, up to and with its blank line, read line by line;
    HeadError if refused (a line that ends in LF alone: at once, not at the timeout).

    Raises ``asyncio.IncompleteReadError`` when the client closes first.
    """
    lines: list[bytes] = []
    size = 0
    while True:
        try:
            line = await reader.readuntil(b"\n")
        except asyncio.LimitOverrunError:
            line = b""
            size = MAX_HEAD + 1
        size += len(line)
        if size > MAX_HEAD:
            if not lines:
                raise HeadError(414, "Request line too long")
            raise HeadError(431, "Request head too large")
        if not line.endswith(_END_OF_LINE):
            raise HeadError(400, "Lines end with CR LF")
        if line == _END_OF_LINE:
            if lines:
                return b"".join(lines) + line
            continue  # an empty line before a request is ignored (RFC 9112 2.2)
        lines.append(line)
        if len(lines) > MAX_HEADERS + 1:
            raise HeadError(431, f"More than {MAX_HEADERS} headers")


class HttpListener:
    """Serves ``handler``'s answers over HTTP/1.1 until :meth:`aclose`."""

    def __init__(
        self,
        handler: Handler,
        *,
        source_of: Callable[[str], str] = str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.handler = handler
        self.source_of = source_of
        # Read when made, not when imported: a test may lower them.
        self.max_connections = MAX_CONNECTIONS
        self.head_timeout = HEAD_TIMEOUT
        self.write_timeout = WRITE_TIMEOUT
        self.evict_after = EVICT_AFTER
        self.pace = 1.0 / REQUESTS_PER_SECOND  # seconds between two requests' starts
        self._clock = clock
        self._next_start = float("-inf")
        self._server: asyncio.base_events.Server | None = None
        self._connections: dict[asyncio.StreamWriter, _Connection] = {}
        self._refusing: set[asyncio.Task[None]] = set()  # answered 503, lingering (_linger)
        self._closing = False

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host``:``port``. Raises ``OSError`` if it cannot."""
        self._server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD, reuse_address=True
        )

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "start() first"
        sockname = self._server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def aclose(self) -> None:
        """Stop listening and end every connection now; returns once all are gone."""
        if self._server is None:
            return
        self._closing = True
        self._server.close()
        held = list(self._connections.values())
        for connection in held:
            self._drop(connection)
        refusing = list(self._refusing)
        for task in refusing:
            task.cancel()
        # Each task ends on its own once cancelled: none is left for the loop's
        # end to cancel (which asyncio's streams would log as an error).
        tasks = (*(c.task for c in held if c.task is not None), *refusing)
        await asyncio.gather(*tasks, return_exceptions=True)  # a bug in one: logged by asyncio
        await self._server.wait_closed()
        self._server = None

    def _drop(self, connection: _Connection) -> None:
        connection.dropped = True
        self._connections.pop(connection.writer, None)
        connection.writer.transport.abort()
        if connection.task is not None:
            connection.task.cancel()

    def _make_room(self, source: str) -> bool:
        """Whether there is a place for a newcomer from ``source``, once a place is given up.

        A source holding more than half the places gives up its longest waiting
        one to another source's newcomer, however fresh: one source cannot keep
        the others out. Else the longest waiting connection gives up its place
        if it has waited ``evict_after`` seconds or more.
        """
        held = list(self._connections.values())
        if len(held) < self.max_connections:
            return True
        crowd, count = Counter(c.source for c in held).most_common(1)[0]
        if crowd != source and count > self.max_connections // 2:
            self._drop(min((c for c in held if c.source == crowd), key=lambda c: c.since))
            return True
        oldest = min(held, key=lambda c: c.since)
        if self._clock() - oldest.since < self.evict_after:
            return False
        self._drop(oldest)
        return True

    def _turn_in(self) -> float:
        """Seconds until a request that came now may begin: requests begin ``pace``
        apart, listener-wide, in the order they came. A connection waits for one
        request at a time, so a wait is at most ``max_connections`` paces long."""
        now = self._clock()
        start = max(now, self._next_start)
        self._next_start = start + self.pace
        return start - now

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        host = peer[0] if isinstance(peer, tuple) else str(peer)
        source = self.source_of(host)
        if self._closing or not self._make_room(source):
            await self._refuse(reader, writer)
            return
        connection = _Connection(writer, asyncio.current_task(), host, source, self._clock())
        self._connections[writer] = connection
        # drain() then waits until an answer is all with the kernel: the write
        # timeout bounds the whole answer, not just its last 64 KiB.
        writer.transport.set_write_buffer_limits(high=0)
        try:
            await self._requests(reader, connection)
            await self._linger(reader, writer)
        except (ConnectionError, TimeoutError):
            pass  # the client went away, or did not take its answer in time
        except asyncio.CancelledError:
            if not connection.dropped:
                raise
            # Dropped for a newcomer, or the listener closes: the task ends
            # here, quietly, its answer (if one was waiting) given up.
        finally:
            self._connections.pop(writer, None)
            writer.transport.abort()  # a no-op once closed; else nothing more is sent

    async def _refuse(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer 503 to a connection there is no place for, then close it."""
        busy = text_response(503, "Too many HTTP connections; try again shortly\n", _RETRY)
        writer.write(encode(busy, head_only=False, keep_alive=False))
        task = asyncio.current_task()
        if task is None or len(self._refusing) >= MAX_REFUSING:
            writer.close()  # a flood: closed at once, even if its client may see a reset
            return
        self._refusing.add(task)
        try:
            await self._linger(reader, writer)
        except (ConnectionError, TimeoutError):
            pass
        except asyncio.CancelledError:
            if not self._closing:
                raise
        finally:
            self._refusing.discard(task)
            writer.transport.abort()

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """End the connection from this side, then read what its client still
        sends until it closes too, for ``LINGER`` seconds at most: a close with
        the client's bytes unread (a pipelined request, a refused head's rest)
        would reset the connection, and the client could lose its answer."""
        if writer.can_write_eof():
            writer.write_eof()  # after the answer: the transport sends what it holds first
        async with asyncio.timeout(LINGER):
            while await reader.read(MAX_HEAD):
                pass

    async def _requests(self, reader: asyncio.StreamReader, connection: _Connection) -> None:
        writer = connection.writer
        for left in range(MAX_REQUESTS - 1, -1, -1):
            try:
                async with asyncio.timeout(self.head_timeout):
                    head = await read_head(reader)
            except HeadError as refused:
                await self._send(writer, refused.response)
                return
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # closed, or silent: no answer owed
            connection.since = self._clock()
            wait = self._turn_in()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                request = parse_head(head)
            except HeadError as refused:
                await self._send(writer, refused.response)
                return
            keep_alive = left > 0 and keeps_alive(request)
            try:
                answer = await self.handler(request, connection.host)
            except Exception:  # a bug: logged with its traceback, the server goes on
                log.exception("Cannot answer HTTP %s %s", request.method, request.path)
                answer = text_response(500, "Internal error; see the server's log\n")
            connection.since = self._clock()  # from here it waits on its client to take the answer
            await self._send(
                writer, answer, head_only=request.method == "HEAD", keep_alive=keep_alive
            )
            connection.since = self._clock()
            if not keep_alive:
                return

    async def _send(
        self,
        writer: asyncio.StreamWriter,
        response: Response,
        *,
        head_only: bool = False,
        keep_alive: bool = False,
    ) -> None:
        writer.write(encode(response, head_only=head_only, keep_alive=keep_alive))
        async with asyncio.timeout(self.write_timeout):
            await writer.drain()
