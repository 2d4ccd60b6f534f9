"""Access tokens: the token file, constant-time checks, and slowing down guessers;
and the server's TLS context.

A guess costs the guesser real time: once a source has failed, every answer
to a token from it, right or wrong, waits a delay that doubles per failure in
a row (:class:`FailureDelay`; the longest past a per-minute limit), the
connection keeping its place in the pending pool meanwhile, and
:class:`AuthGuard` lets a source have only a few answers to wrong tokens in
progress at once, queuing the rest. So a guess tells nothing before its delay, and the token
holder, from the same source as a guesser, is only slowed, never refused.
"""

from __future__ import annotations

import asyncio
import hmac
import secrets
import ssl
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Generic, TypeVar

from ..protocol.messages import TOKEN_PREFIX

T = TypeVar("T")


# 32 random bytes: 256 bits, shown as 43 URL-safe base64 characters.
TOKEN_BYTES = 32


def server_context(cert_file: str, key_file: str) -> ssl.SSLContext:
    """A TLS server context: TLS 1.2 at least, the system's recommended ciphers."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(cert_file, key_file)
    except ssl.SSLError as exc:
        # OpenSSL's own words ("[SSL] PEM lib (_ssl.c:3905)") name neither file.
        raise ValueError(
            f"--tls-cert {cert_file} and --tls-key {key_file} are not a certificate and "
            f"its private key in PEM (swapped, or not the pair?): {exc.reason or exc}"
        ) from None
    except OSError as exc:  # not there, a folder, unreadable: which one is not said
        raise ValueError(
            f"--tls-cert {cert_file} / --tls-key {key_file}: {exc.strerror or exc}"
        ) from None
    return context


def generate_token() -> str:
    """A new access token with ``TOKEN_BYTES * 8`` bits of entropy."""
    return secrets.token_urlsafe(TOKEN_BYTES)


# What a token may do. Every token reads; WRITE adds uploads (when the server
# takes them at all: --allow-upload).
READ = "read"
WRITE = "write"
RIGHTS = frozenset({READ, WRITE})


def read_token_rights(path: str) -> dict[str, frozenset[str]]:
    """Tokens of a file and what each may do: one a line, ``<token>`` or
    ``<token> <rights>`` with rights separated by commas (``read``,
    ``read,write``); a token with no rights named reads only. Blank lines
    and ``#`` comments are skipped.

    Raises ``OSError`` when the file cannot be read and ``ValueError`` when it
    holds no token, or names a right there is not.
    """
    tokens: dict[str, frozenset[str]] = {}
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            token, _, named = line.strip().partition(" ")
            if not token or token.startswith("#"):
                continue
            rights = frozenset(r.strip() for r in named.split(",") if r.strip()) or RIGHTS - {WRITE}
            unknown = rights - RIGHTS
            if unknown:
                raise ValueError(
                    f"{path} line {number}: unknown right {sorted(unknown)[0]!r} "
                    f"(rights: {', '.join(sorted(RIGHTS))})"
                )
            tokens[token] = rights | {READ}
    if not tokens:
        raise ValueError(f"no token in {path}")
    return tokens


def read_token_file(path: str) -> list[str]:
    """The tokens of a token file (see :func:`read_token_rights`), without their rights."""
    return list(read_token_rights(path))


def token_from_greeting(words: str) -> str | None:
    """The ``token=…`` word of a greeting's words, if any."""
    for word in words.split():
        if word.startswith(TOKEN_PREFIX):
            return word[len(TOKEN_PREFIX) :]
    return None


class TokenChecker:
    """Whether a token is one of the accepted ones, and what it may do, in time
    independent of which. ``tokens`` without rights read only."""

    def __init__(self, tokens: list[str] | dict[str, frozenset[str]]) -> None:
        if not isinstance(tokens, dict):
            tokens = dict.fromkeys(tokens, frozenset({READ}))
        self._tokens = [
            (token.encode("utf-8"), WRITE in rights) for token, rights in tokens.items()
        ]

    def accepts(self, token: str | None) -> bool:
        return self.check(token)[0]

    def check(self, token: str | None) -> tuple[bool, bool]:
        """Whether ``token`` is accepted, and whether it may write."""
        candidate = (token or "").encode("utf-8", "surrogateescape")
        matched = writes = False
        for accepted, may_write in self._tokens:  # every one compared: no early exit
            same = hmac.compare_digest(candidate, accepted)
            matched |= same
            writes |= same & may_write
        return matched and token is not None, writes and token is not None


class FailureDelay:
    """A growing delay for addresses that keep failing to authenticate.

    The n-th failure in a row from one address waits ``base * 2**(n-1)``
    seconds (at most ``cap``) before its answer; an address that has not
    failed for ``forget_after`` seconds starts again from zero. At most
    ``max_addresses`` are remembered, the least recent dropped first.
    """

    def __init__(
        self,
        *,
        base: float = 0.25,
        cap: float = 8.0,
        forget_after: float = 300.0,
        max_addresses: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.base = base
        self.cap = cap
        self.forget_after = forget_after
        self.max_addresses = max_addresses
        self._clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()

    def record_failure(self, host: str) -> float:
        """Count a failure from ``host``; the delay before answering it, in seconds."""
        now = self._clock()
        count, last = self._failures.pop(host, (0, now))
        if now - last > self.forget_after:
            count = 0
        count += 1
        self._failures[host] = (count, now)
        while len(self._failures) > self.max_addresses:
            self._failures.popitem(last=False)
        return float(min(self.base * 2 ** (count - 1), self.cap))

    def current(self, host: str) -> float:
        """The delay ``host`` has now: that of its last failure, 0 if none (or forgotten)."""
        count, last = self._failures.get(host, (0, 0.0))
        if count == 0 or self._clock() - last > self.forget_after:
            return 0.0
        return float(min(self.base * 2 ** (count - 1), self.cap))

    def record_success(self, host: str) -> None:
        self._failures.pop(host, None)


class AuthGuard(Generic[T]):
    """Token answers per source: their delay, and how many may wait at once.

    While a source has a failure delay (it failed lately, see
    :class:`FailureDelay`; the longest one past ``per_minute`` failures in any
    60 s), every answer to a token from it waits that delay, right or wrong:
    the answer's timing tells a guesser nothing before the delay is over. A
    source may have ``at_once`` answers to wrong tokens in progress; more wait
    their turn in order (:meth:`queue`), each holding its place in the pending
    pool, so a guesser's places come free only ``at_once`` per delay however
    many it opens. A right token never waits behind wrong ones: the token
    holder, from the same source as a guesser, waits one delay at most. At
    most ``max_sources`` sources' failures are remembered, the least recent
    dropped first; what is in progress is bounded by the pending pool.
    """

    WINDOW = 60.0

    def __init__(
        self,
        *,
        at_once: int = 2,
        per_minute: int = 10,
        delay: FailureDelay | None = None,
        max_sources: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.at_once = at_once
        self.per_minute = per_minute
        self.delay = delay or FailureDelay(clock=clock, max_addresses=max_sources)
        self.max_sources = max_sources
        self._clock = clock
        self._in_progress: dict[str, int] = {}
        self._queued: dict[str, deque[T]] = {}
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()

    def try_start(self, source: str) -> bool:
        """Start a wrong token's answer for ``source`` if it may have one more in
        progress (and none is queued before it); else the caller queues it."""
        if self._in_progress.get(source, 0) >= self.at_once or source in self._queued:
            return False
        self._in_progress[source] = self._in_progress.get(source, 0) + 1
        return True

    def queue(self, source: str, ticket: T) -> None:
        self._queued.setdefault(source, deque()).append(ticket)

    def withdraw(self, source: str, ticket: T) -> None:
        """Take back a queued ticket whose connection is gone."""
        queued = self._queued.get(source)
        if queued is not None and ticket in queued:
            queued.remove(ticket)
            if not queued:
                del self._queued[source]

    def finish(self, source: str) -> T | None:
        """An answer in progress was sent (or its connection is gone); the next
        queued ticket of ``source``, now started, if any."""
        left = self._in_progress.pop(source, 1) - 1
        if left > 0:
            self._in_progress[source] = left
        queued = self._queued.get(source)
        if not queued:
            return None
        ticket = queued.popleft()
        if not queued:
            del self._queued[source]
        self._in_progress[source] = left + 1
        return ticket

    def answer_delay(self, source: str) -> float:
        """How long the answer to a token from ``source`` waits now, right or wrong."""
        recent = self._recent.get(source)
        if recent and len(recent) >= self.per_minute and self._clock() - recent[0] < self.WINDOW:
            return self.delay.cap  # over the per-minute limit
        return self.delay.current(source)

    def failed(self, source: str) -> None:
        """Count a wrong token from ``source``: the delays of later answers grow."""
        now = self._clock()
        recent = self._recent.pop(source, None) or deque(maxlen=self.per_minute)
        recent.append(now)
        self._recent[source] = recent
        while len(self._recent) > self.max_sources:
            self._recent.popitem(last=False)
        self.delay.record_failure(source)

    def succeeded(self, source: str) -> None:
        """A right token: the delay starts again from zero (the per-minute count stays)."""
        self.delay.record_success(source)


def pass_turn(guard: AuthGuard[asyncio.Future[None]], source: str) -> None:
    """An answer to ``source`` is done: start its next one queued (the line
    protocol's greetings and the HTTP side's requests share the guard)."""
    turn = guard.finish(source)
    while turn is not None and turn.done():  # its connection went meanwhile
        turn = guard.finish(source)
    if turn is not None:
        turn.set_result(None)
