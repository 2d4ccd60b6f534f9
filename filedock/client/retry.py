"""Connecting again while the server is full or not up yet, as ``curl --retry`` does.

Only those two are worth waiting out: a ``FULL`` answer (a slot frees when
a client leaves) and a refused connection (nothing listens yet: the server
is starting). Anything else (a wrong token, a TLS mismatch, a host that
does not answer) fails at once, as without waiting.

The pause doubles from :data:`FIRST_PAUSE` up to :data:`LONGEST_PAUSE`, so a
slot that frees is taken within about a second, and a server that is not
up is asked a few times a second at first, then once every :data:`LONGEST_PAUSE`.
The clock and the sleep are arguments, so the schedule is tested with a
fake clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from ..errors import ConnectionLost, FiledockError, ServerFull, TimedOut

FIRST_PAUSE = 0.1
LONGEST_PAUSE = 1.0

_T = TypeVar("_T")


def worth_waiting(exc: FiledockError) -> bool:
    """Whether ``exc`` may pass by itself: the server full, or not listening yet."""
    if isinstance(exc, ServerFull):
        return True
    # The socket layer's ConnectionRefusedError stays the __context__ of the
    # ConnectionLost made from it (raised ``from None``, which only hides it).
    return (
        isinstance(exc, ConnectionLost)
        and not isinstance(exc, TimedOut)
        and isinstance(exc.__context__, ConnectionRefusedError)
    )


def connect_retrying(
    connect: Callable[[], _T],
    wait: float,
    *,
    waiting: Callable[[FiledockError, float], None] | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> _T:
    """``connect()``, again after a pause while it fails in a way :func:`worth_waiting`,
    for up to ``wait`` seconds; then what its last try raised.

    ``waiting(error, pause)`` is told before each pause (the first one tells
    a person why nothing happens yet). No pause goes past the deadline, and
    the last try comes at it.
    """
    deadline = clock() + wait
    pause = FIRST_PAUSE
    while True:
        try:
            return connect()
        except FiledockError as exc:
            left = deadline - clock()
            if not worth_waiting(exc) or left <= 0:
                raise
            step = min(pause, left)
            if waiting is not None:
                waiting(exc, step)
        sleep(step)
        pause = min(pause * 2, LONGEST_PAUSE)
