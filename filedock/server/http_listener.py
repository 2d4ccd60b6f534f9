"""A small HTTP/1.1 listener on the server's event loop: ``GET`` and ``HEAD`` only.

No framework: the request line and headers are parsed here under strict
limits, and a request never has a body. A slow or hostile HTTP client can
hold at most one of ``max_connections`` connections, with at most
``MAX_HEAD`` bytes buffered, for at most ``head_timeout`` seconds per request
(also the keep-alive idle time) and ``write_timeout`` seconds per answer; past
``max_connections`` a newcomer is answered 503 at once. The line protocol's
clients never wait on any of it: nothing here blocks the loop.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

log = logging.getLogger("filedock.server")

MAX_CONNECTIONS = 16
MAX_HEAD = 8 * 1024  # the request line and every header, in bytes
MAX_HEADERS = 32
HEAD_TIMEOUT = 10.0  # seconds for a request's head to arrive, from the connect or the last answer
WRITE_TIMEOUT = 10.0  # seconds for an answer to be taken by the client
MAX_REQUESTS = 1000  # per connection, then it is closed (a page polls on one connection)

_END_OF_HEAD = b"\r\n\r\n"
_METHODS = ("GET", "HEAD")
_VERSIONS = ("HTTP/1.1", "HTTP/1.0")
# RFC 9110's token characters: what a method and a header's name are made of.
_TOKEN = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


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
    if len(lines) - 1 > MAX_HEADERS:
        raise HeadError(431, f"More than {MAX_HEADERS} headers")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, colon, value = line.partition(":")
        if not colon or not name or not set(name) <= _TOKEN:  # no space before the colon either
            raise HeadError(400, "Bad header line")
        key, value = name.lower(), value.strip(" \t")
        headers[key] = f"{headers[key]}, {value}" if key in headers else value
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


Handler = Callable[[Request], Response]


class HttpListener:
    """Serves ``handler``'s answers over HTTP/1.1 until :meth:`aclose`."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        # Read when made, not when imported: a test may lower them.
        self.max_connections = MAX_CONNECTIONS
        self.head_timeout = HEAD_TIMEOUT
        self.write_timeout = WRITE_TIMEOUT
        self._server: asyncio.base_events.Server | None = None
        self._connections: set[asyncio.StreamWriter] = set()

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
        if self._server is None:
            return
        self._server.close()
        for writer in list(self._connections):
            writer.transport.abort()
        await self._server.wait_closed()
        self._server = None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(self._connections) >= self.max_connections:
            busy = text_response(503, "Too many HTTP connections; try again shortly\n")
            writer.write(encode(busy, head_only=False, keep_alive=False))
            writer.close()  # the answer is small: the transport sends it, then closes
            return
        self._connections.add(writer)
        # drain() then waits until an answer is all with the kernel: the write
        # timeout bounds the whole answer, not just its last 64 KiB.
        writer.transport.set_write_buffer_limits(high=0)
        try:
            await self._requests(reader, writer)
            writer.close()
            async with asyncio.timeout(self.write_timeout):
                await writer.wait_closed()
        except (ConnectionError, TimeoutError):
            pass  # the client went away, or did not take its answer in time
        finally:
            self._connections.discard(writer)
            writer.transport.abort()  # a no-op once closed; else nothing more is sent

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for left in range(MAX_REQUESTS - 1, -1, -1):
            try:
                async with asyncio.timeout(self.head_timeout):
                    head = await reader.readuntil(_END_OF_HEAD)
            except asyncio.LimitOverrunError:
                await self._send(writer, HeadError(431, "Request head too large").response)
                return
            except (asyncio.IncompleteReadError, TimeoutError):
                return  # closed, or silent: no answer owed
            try:
                request = parse_head(head)
            except HeadError as refused:
                await self._send(writer, refused.response)
                return
            keep_alive = left > 0 and keeps_alive(request)
            try:
                answer = self.handler(request)
            except Exception:  # a bug: logged with its traceback, the server goes on
                log.exception("Cannot answer HTTP %s %s", request.method, request.path)
                answer = text_response(500, "Internal error; see the server's log\n")
            await self._send(
                writer, answer, head_only=request.method == "HEAD", keep_alive=keep_alive
            )
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
