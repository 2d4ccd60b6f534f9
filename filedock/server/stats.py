"""The server's counters: one object, updated on the paths that already exist,
read by ``STATS``, the metrics endpoint, the status page and ``Server.statistics()``.

Every counter is a plain attribute or a dict entry made up front, so counting
costs an integer add and nothing else (a ``PING`` is counted with one). The
readers never see this object's fields: they take :meth:`Statistics.samples`,
a list of :class:`Sample`, and render it (``STATS`` records, Prometheus text,
the page's JSON). Names are lowercase with ``_``; a labelled counter is one
sample per label value (Prometheus), and ``STATS`` gives its sum under the
bare name and each value as ``<name>_<value>``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import Enum


class Kind(Enum):
    COUNTER = "counter"  # only ever grows (Prometheus names it ..._total)
    GAUGE = "gauge"  # goes up and down


@dataclass(frozen=True, slots=True)
class Sample:
    """One figure at one moment: ``name`` (no prefix, no ``_total``), its labels."""

    name: str
    value: int | float
    kind: Kind
    help: str
    labels: tuple[tuple[str, str], ...] = ()


# The label values each labelled counter has from the start (a Prometheus
# series should exist at 0 before its first event, not appear from nowhere).
REJECT_REASONS = ("full", "per-address", "token", "registry")
TIMEOUT_KINDS = ("handshake", "idle", "send")
DIRECTIONS = ("download", "upload")
# Uploads off, a token without the write right, then the ERR codes an upload
# can end with (before its body, or after it: its digest, its name taken).
UPLOAD_REFUSALS = (
    *("disabled", "read-only", "forbidden", "bad-request", "exists", "too-large", "no-space"),
    *("integrity", "internal"),
)


class Statistics:
    """What one server has done since it started: counters its paths add to.

    The gauges (clients connected, and whatever else is read rather than
    counted) come from ``gauges``, called at each read.

    Requests: the line loop adds how many events it answered to ``lines``,
    once per batch (a local add per line: all a pipelined ``PING`` costs),
    and every other event is counted in ``events`` by its handler, keyed by
    its type. So ``derived`` (``PING``) is not counted on its own: it is
    ``lines`` less every other event. Every type but that one is a key from
    the start (``verbs`` and ``others``); those in ``verbs`` are reported, by
    verb. (A reader between two batches sees them agree: ``STATS`` is
    answered from a task for that reason.)
    """

    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        *,
        verbs: Mapping[type, str] | None = None,
        others: Iterable[type] = (),
        derived: type | None = None,
    ) -> None:
        self._clock = clock
        self.started = clock()
        self.gauges: Callable[[], Iterable[Sample]] = lambda: ()
        self.connections_received = 0
        self.connections_rejected = dict.fromkeys(REJECT_REASONS, 0)
        self.timeouts = dict.fromkeys(TIMEOUT_KINDS, 0)
        self.protocol_errors = 0
        self.verbs: dict[type, str] = dict(verbs or {})  # request type -> lowercase verb
        self.lines = 0  # every event the line loop answered
        self.derived = derived  # the one type counted as lines less the others
        kinds = [kind for kind in (*self.verbs, *others) if kind is not derived]
        self.events: dict[type, int] = dict.fromkeys(kinds, 0)
        self.bytes_sent = 0
        self.bytes_received = 0
        self.transfers_completed = dict.fromkeys(DIRECTIONS, 0)
        self.transfers_failed = dict.fromkeys(DIRECTIONS, 0)
        self.transfers_resumed = dict.fromkeys(DIRECTIONS, 0)
        self.digest_cache_hits = 0
        self.digest_cache_misses = 0
        self.bytes_hashed = 0
        self.uploads_refused = dict.fromkeys(UPLOAD_REFUSALS, 0)

    def uptime(self) -> float:
        return self._clock() - self.started

    def restart_clock(self) -> None:
        """Count the uptime from now (a server's start, after it was made)."""
        self.started = self._clock()

    @property
    def requests(self) -> dict[str, int]:
        """Requests answered so far, by verb (every verb, from 0)."""
        counted = self.events
        rest = self.lines - sum(counted.values())
        return {
            verb: rest if kind is self.derived else counted[kind]
            for kind, verb in self.verbs.items()
        }

    def samples(self) -> list[Sample]:
        """Every figure now, counters then gauges, in a stable order."""
        out = [Sample("uptime_seconds", round(self.uptime(), 3), Kind.GAUGE, "Seconds since start")]
        out += _one("connections_received", self.connections_received, "Connections accepted")
        out += _labelled(
            "connections_rejected", "reason", self.connections_rejected, "Connections turned away"
        )
        out += _labelled("timeouts", "kind", self.timeouts, "Connections ended by a deadline")
        out += _one("protocol_errors", self.protocol_errors, "Lines the protocol refused")
        out += _labelled("requests", "verb", self.requests, "Requests answered, by verb")
        out += _one("bytes_sent", self.bytes_sent, "Bytes of file bodies sent")
        out += _one("bytes_received", self.bytes_received, "Bytes of upload bodies received")
        for outcome, counts in (
            ("completed", self.transfers_completed),
            ("failed", self.transfers_failed),
            ("resumed", self.transfers_resumed),
        ):
            out += _labelled(f"transfers_{outcome}", "direction", counts, f"Transfers {outcome}")
        out += _one("digest_cache_hits", self.digest_cache_hits, "Digests from the cache")
        out += _one("digest_cache_misses", self.digest_cache_misses, "Files hashed anew")
        out += _one("bytes_hashed", self.bytes_hashed, "Bytes read and hashed")
        out += _labelled("uploads_refused", "reason", self.uploads_refused, "Uploads refused")
        out += self.gauges()
        return out


def _one(name: str, value: int, help: str) -> list[Sample]:
    return [Sample(name, value, Kind.COUNTER, help)]


def _labelled(name: str, label: str, counts: dict[str, int], help: str) -> list[Sample]:
    return [
        Sample(name, value, Kind.COUNTER, help, ((label, key),)) for key, value in counts.items()
    ]


def stats_records(samples: Iterable[Sample]) -> list[tuple[str, int | float]]:
    """``STATS`` records: a labelled counter's sum under its name, then each value's
    as ``<name>_<value>`` (``-`` as ``_``); the rest as they are."""
    records: list[tuple[str, int | float]] = []
    sums: dict[str, int | float] = {}
    for sample in samples:
        if not sample.labels:
            records.append((sample.name, sample.value))
            continue
        if sample.name not in sums:
            sums[sample.name] = 0
            records.append((sample.name, 0))  # filled in below, in its place
        sums[sample.name] += sample.value
        value = "_".join(v for _, v in sample.labels).lower().replace("-", "_")
        records.append((f"{sample.name}_{value}", sample.value))
    return [(name, sums.get(name, value)) for name, value in records]
