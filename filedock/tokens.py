"""Access tokens: the token file, constant-time checks, and slowing down guessers."""

from __future__ import annotations

import hmac
import time
from collections import OrderedDict
from collections.abc import Callable

TOKEN_PREFIX = "token="


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
