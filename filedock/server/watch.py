"""Watching the server over HTTP (``--http``): the status page, ``/metrics``,
``/healthz`` and ``/status.json``, on the server's own event loop.

Every route only reads the server's state (it runs on the loop, so without
locks); none reads a file of the repository or changes anything. With a
token file, every request needs ``Authorization: Bearer <token>``, one of the
file's tokens, and a guess costs what it costs on the line protocol: the
answer to a token waits the delay its source has earned there (one
:class:`~.auth.AuthGuard` for both), so HTTP is no faster way to guess one.
Without one (loopback only, or ``--http-insecure``) a loopback
listener answers only requests whose ``Host`` is an address or
``localhost``: a web page elsewhere cannot reach it through a DNS name it
controls (DNS rebinding) and read who is connected.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import logging
import re
from collections.abc import Callable

from . import metrics
from .addresses import is_loopback_host
from .auth import AuthGuard, pass_turn
from .context import ServerContext
from .http_listener import HttpListener, Request, Response, text_response
from .status_page import Rates, load_page, status_document
from .throughput import Throughput

log = logging.getLogger("filedock.server")

SAMPLE_EVERY = 1.0  # seconds between two figures of the chart (status.json's rate.interval)

_JSON = "application/json; charset=utf-8"
_HTML = "text/html; charset=utf-8"
_CHALLENGE = ("WWW-Authenticate", 'Bearer realm="filedock"')
# A Host header: a name or an IPv4 address, or an IPv6 one in brackets; then
# perhaps a port, digits only (``localhost:80@evil.example`` is no host of ours).
_HOST = re.compile(
    r"(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)(?:%25[\w.~-]+)?\]|(?P<name>[^:\[\]]+))(?::\d*)?", re.ASCII
)


class Watch:
    """The HTTP side of one server: :meth:`start` it on the server's loop, then :meth:`aclose`."""

    def __init__(self, context: ServerContext, stopping: Callable[[], bool]) -> None:
        self.context = context
        self.stopping = stopping
        self.throughput = Throughput()
        self.rates = Rates()
        self.page = load_page(token_required=context.tokens is not None)
        self.listener = HttpListener(self.answer, source_of=context.source_of)
        self._sampler: asyncio.Task[None] | None = None
        self._loopback = True  # where it listens: set by start()
        self._routes: dict[str, Callable[[], Response]] = {
            "/": self._page,
            "/metrics": self._metrics,
            "/healthz": self._health,
            "/status.json": self._status,
        }

    async def start(self, host: str, port: int) -> None:
        """Listen on ``host``:``port`` and sample the byte counters each second."""
        await self.listener.start(host, port)
        self._loopback = is_loopback_host(self.address[0])
        self._sampler = asyncio.get_running_loop().create_task(self._sample())

    def announce(self) -> None:
        """The log line that names the page (after the Starting line, once all listen)."""
        shown, port = self.address
        log.info(
            "Status page on http://%s:%d/ (and /metrics, /healthz, /status.json)",
            f"[{shown}]" if ":" in shown else shown,
            port,
        )

    @property
    def address(self) -> tuple[str, int]:
        return self.listener.address

    async def aclose(self) -> None:
        if self._sampler is not None:
            self._sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sampler
            self._sampler = None
        await self.listener.aclose()

    async def _sample(self) -> None:
        stats = self.context.stats
        failed = False
        while True:
            try:
                self.throughput.tick(stats.bytes_sent + stats.bytes_received)
            except Exception:  # a bug: that second is missed, the chart goes on
                if not failed:  # once, not each second
                    log.exception("Cannot sample the bytes moved for the status page")
                failed = True
            await asyncio.sleep(SAMPLE_EVERY)

    # -- answering -----------------------------------------------------------

    async def answer(self, request: Request, peer: str) -> Response:
        """The answer to ``request`` from the host ``peer``."""
        tokens = self.context.tokens
        if tokens is None and not self._host_allowed(request.headers.get("host", "")):
            return text_response(403, "Reach this page by an address, or as localhost\n")
        if tokens is not None and not await self._authorized(request, peer):
            if request.path == "/":  # the page, to show its login form
                return Response(401, self.page.html, _HTML, (_CHALLENGE, *self._page_policy()))
            return text_response(401, "Send Authorization: Bearer <token>\n", _CHALLENGE)
        route = self._routes.get(request.path)
        if route is None:
            return text_response(404, "Not found: /, /metrics, /healthz, /status.json\n")
        return route()

    async def _authorized(self, request: Request, peer: str) -> bool:
        """Whether the request's token is accepted, said after the delay its source
        has earned (as a greeting's token is: see greeting.py)."""
        assert self.context.tokens is not None
        token = _bearer(request)
        if token is None:
            return False  # no guess at all: it reveals nothing, so answered at once
        guard = self.context.auth_guard
        source = self.context.source_of(peer)
        delay = guard.answer_delay(source)  # decided before the comparison
        if self.context.tokens.accepts(token):
            await asyncio.sleep(delay)
            guard.succeeded(source)
            return True
        guard.failed(source)
        self.context.warn(
            "auth",
            "Unauthorized: HTTP %s %s from %s gave no valid token (answer delayed %g s or more)",
            request.method,
            request.path[:64],
            peer,
            delay,
            source=source,
        )  # never the token itself
        await _turn_of(guard, source)
        try:
            await asyncio.sleep(delay)
        finally:
            pass_turn(guard, source)
        return False

    def _host_allowed(self, host: str) -> bool:
        if not host or not self._loopback:
            return True  # no browser leaves Host out; beyond loopback, names are expected
        parsed = _HOST.fullmatch(host)
        if parsed is None:
            return False
        name = parsed["ipv6"] or parsed["name"]
        if name.lower() == "localhost":
            return True
        try:
            ipaddress.ip_address(name)
        except ValueError:
            return False
        return True

    def _page_policy(self) -> tuple[tuple[str, str], ...]:
        return (("Content-Security-Policy", self.page.policy), ("Referrer-Policy", "no-referrer"))

    def _page(self) -> Response:
        return Response(200, self.page.html, _HTML, self._page_policy())

    def _metrics(self) -> Response:
        body = metrics.render(self.context.stats.samples()).encode("utf-8")
        return Response(200, body, metrics.CONTENT_TYPE)

    def _health(self) -> Response:
        if self.stopping():
            return text_response(503, "stopping\n")
        return text_response(200, "ok\n")

    def _status(self) -> Response:
        document = status_document(
            self.context, self.throughput, self.rates, stopping=self.stopping()
        )
        body = json.dumps(document, separators=(",", ":")).encode("utf-8")
        return Response(200, body, _JSON)


async def _turn_of(guard: AuthGuard[asyncio.Future[None]], source: str) -> None:
    """Wait until a wrong token's answer of ``source`` may start (see AuthGuard)."""
    if guard.try_start(source):
        return
    turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    guard.queue(source, turn)
    try:
        await turn
    except asyncio.CancelledError:
        if turn.cancelled():
            guard.withdraw(source, turn)
        else:  # its turn came as it was cancelled: it is passed on
            pass_turn(guard, source)
        raise


def _bearer(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    token = token.strip(" \t")
    if scheme.lower() != "bearer" or not token:
        return None
    # Headers are read as latin-1: the token's own bytes, as UTF-8 (a token file is
    # UTF-8), and bytes that are not UTF-8 kept as they are, to compare as bytes.
    return token.encode("latin-1").decode("utf-8", "surrogateescape")
