"""``ping -c N``: a series of PINGs and their round trips, as ping(8) shows them.

A plain ``ping`` prints the assignment's ``[SERVER] PONG`` and nothing more
(its walk-through pins that screen); ``ping -c N`` sends N, one after the
other's answer, prints each with its round trip and ends with the fastest,
mean and slowest.
"""

from __future__ import annotations

import re

from ..client.client import Client
from .screen import Screen

# The most a series may ask for: ping(8) has no bound, but a typo (-c 1000000000) should not
# hold a server's slot for hours.
MAX_COUNT = 100_000

_COUNT_OPTION = re.compile(r"-c\s*(\d+)|--count[ =](\d+)", re.ASCII)


def count_option(rest: str) -> int | None:
    """N, when what follows ``ping`` at the prompt is ``-c N`` (else None: a message)."""
    match = _COUNT_OPTION.fullmatch(rest.strip())
    if match is None:
        return None
    return int(match.group(1) or match.group(2))


def check_count(count: int) -> int:
    """``count`` if it is a number of pings a series may have; ValueError if not."""
    if not 1 <= count <= MAX_COUNT:
        raise ValueError(f"ping -c takes 1 to {MAX_COUNT}, not {count}")
    return count


def run_pings(client: Client, count: int, screen: Screen) -> None:
    """Send ``count`` PINGs, printing each round trip, then the summary."""
    round_trips = []
    for _ in range(count):
        round_trips.append(client.ping())
        screen.pong(round_trips[-1])
    screen.ping_summary(round_trips)
