"""Access tokens: the token file, constant-time checks, and slowing down guessers.

A guess costs the guesser real time: each failure from a source is answered
after a delay that doubles per failure in a row (:class:`FailureDelay`), the
connection keeps its place in the pending pool meanwhile, and
:class:`AuthGuard` caps the failures a source may have waiting at once and
per minute. Past either cap the token is not even compared, so a guess made
then tells nothing, and a right token is refused like a wrong one.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable

TOKEN_PREFIX = "token="

# 32 random bytes: 256 bits, shown as 43 URL-safe base64 characters.
TOKEN_BYTES = 32


def generate_token() -> str:
    """A new access token with ``TOKEN_BYTES * 8`` bits of entropy."""
    return secrets.token_urlsafe(TOKEN_BYTES)


def read_token_file(path: str) -> list[str]:
    """Tokens of a file: one a line; blank lines and ``#`` comments are skipped.

    Raises ``OSError`` when the file cannot be read and ``ValueError`` when it
    holds no token.
    """
    with open(path, encoding="utf-8") as lines:
        tokens = [line.strip() for line in lines]
    tokens = [token for token in tokens if token and not token.startswith("#")]
    if not tokens:
        raise ValueError(f"no token in {path}")
    return tokens


def token_from_greeting(words: str) -> str | None:
    """The ``token=…`` word of a greeting's words, if any."""
    for word in words.split():
        if word.startswith(TOKEN_PREFIX):
            return word[len(TOKEN_PREFIX) :]
    return None


class TokenChecker:
    """Whether a token is one of the accepted ones, in time independent of which."""

    def __init__(self, tokens: list[str]) -> None:
        self._tokens = [token.encode("utf-8") for token in tokens]

    def accepts(self, token: str | None) -> bool:
        candidate = (token or "").encode("utf-8", "surrogateescape")
        matched = False
        for accepted in self._tokens:  # every one compared: no early exit
            matched |= hmac.compare_digest(candidate, accepted)
        return matched and token is not None


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

    def record_success(self, host: str) -> None:
        self._failures.pop(host, None)


class AuthGuard:
    """Failed access tokens per source: their delay, and how many may happen.

    A source may have ``at_once`` failures waiting for their delayed answer,
    and ``per_minute`` failures in any 60 s; past that :meth:`may_try` is
    false and the server refuses without looking at the token. At most
    ``max_sources`` sources are remembered, the least recent dropped first.
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
        self._waiting: dict[str, int] = {}  # bounded by the pending pool's size
        self._recent: OrderedDict[str, deque[float]] = OrderedDict()

    def may_try(self, source: str) -> bool:
        """Whether a token from ``source`` may be compared now."""
        if self._waiting.get(source, 0) >= self.at_once:
            return False
        recent = self._recent.get(source)
        if recent is None or len(recent) < self.per_minute:
            return True
        return bool(self._clock() - recent[0] >= self.WINDOW)

    def failed(self, source: str) -> float:
        """Count a wrong token from ``source``; the delay before its answer, in seconds.

        Call :meth:`answered` once that answer is sent (or its connection gone).
        """
        now = self._clock()
        recent = self._recent.pop(source, None) or deque(maxlen=self.per_minute)
        recent.append(now)
        self._recent[source] = recent
        while len(self._recent) > self.max_sources:
            self._recent.popitem(last=False)
        self._waiting[source] = self._waiting.get(source, 0) + 1
        return self.delay.record_failure(source)

    def refused(self, source: str) -> float:
        """The delay for a greeting refused without a comparison: the longest one.

        Call :meth:`answered` after it too.
        """
        self._waiting[source] = self._waiting.get(source, 0) + 1
        return self.delay.cap

    def answered(self, source: str) -> None:
        left = self._waiting.pop(source, 1) - 1
        if left > 0:
            self._waiting[source] = left

    def succeeded(self, source: str) -> None:
        """A right token: the delay starts again from its base (the per-minute count stays)."""
        self.delay.record_success(source)
