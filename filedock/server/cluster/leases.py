"""When this node must give its clients up: its own deadline, on its own clock.

Redis ends a slot's lease ``lease`` seconds after the call that set it ran
(on Redis's clock). The node counts from when it *sent* that call (earlier,
on its monotonic clock) and gives up a tenth of a lease sooner still: so it
has closed a client before any other node can be given that slot, and two
nodes never both believe they hold more than the cap.
"""

from __future__ import annotations

# The share of the lease after which a node closes the clients whose lease it
# could not renew (see the module's docstring).
DEADLINE_SHARE = 0.9


class Leases:
    """The slots this node holds, by number, each with when its lease was last
    confirmed (the monotonic time the confirming call was sent)."""

    def __init__(self, lease: float) -> None:
        self.margin = lease * DEADLINE_SHARE
        self._confirmed: dict[int, float] = {}

    def __len__(self) -> int:
        return len(self._confirmed)

    def __contains__(self, number: object) -> bool:
        return number in self._confirmed

    def hold(self, number: int, sent: float) -> None:
        self._confirmed[number] = sent

    def drop(self, number: int) -> None:
        self._confirmed.pop(number, None)

    def confirm(self, numbers: list[int], sent: float) -> None:
        """A renewal sent at ``sent`` renewed ``numbers`` (those still held)."""
        confirmed = self._confirmed
        for number in numbers:
            if number in confirmed and confirmed[number] < sent:
                confirmed[number] = sent

    def deadline(self) -> float | None:
        """When the first held slot is to be given up, or ``None`` if none is held."""
        if not self._confirmed:
            return None
        return min(self._confirmed.values()) + self.margin

    def overdue(self, now: float) -> list[int]:
        """The slots whose deadline is ``now`` or past: to be closed now."""
        limit = now - self.margin
        return [number for number, sent in self._confirmed.items() if sent <= limit]
