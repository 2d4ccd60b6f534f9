"""The server's counters, as samples and as STATS records."""

from __future__ import annotations

import pytest

from filedock.server.stats import Kind, Sample, Statistics, stats_records


class _Ping:
    pass


class _Get:
    pass


class _Hello:
    pass


def test_uptime_comes_from_the_clock() -> None:
    now = [100.0]
    stats = Statistics(clock=lambda: now[0])
    now[0] = 142.5
    [uptime] = [s for s in stats.samples() if s.name == "uptime_seconds"]
    assert (uptime.value, uptime.kind) == (42.5, Kind.GAUGE)


def test_a_labelled_counter_is_a_sample_per_value_from_zero() -> None:
    stats = Statistics()
    stats.connections_rejected["per-address"] += 2
    rejected = {s.labels: s.value for s in stats.samples() if s.name == "connections_rejected"}
    assert rejected == {
        (("reason", "full"),): 0,
        (("reason", "per-address"),): 2,
        (("reason", "token"),): 0,
        (("reason", "registry"),): 0,
    }


def test_stats_records_sum_a_labelled_counter_and_name_each_value() -> None:
    stats = Statistics(clock=lambda: 0.0)
    stats.connections_received = 7
    stats.connections_rejected["full"] = 3
    stats.connections_rejected["per-address"] = 1
    stats.gauges = lambda: [Sample("clients_connected", 2, Kind.GAUGE, "Clients")]
    records = dict(stats_records(stats.samples()))
    assert records["connections_received"] == 7
    assert records["connections_rejected"] == 4
    assert records["connections_rejected_full"] == 3
    assert records["connections_rejected_per_address"] == 1
    assert records["clients_connected"] == 2
    names = [name for name, _ in stats_records(stats.samples())]
    assert names.index("connections_rejected") < names.index("connections_rejected_full")
    assert len(names) == len(set(names))


def test_requests_are_counted_by_type_and_the_derived_one_is_the_rest() -> None:
    stats = Statistics(verbs={_Get: "get", _Ping: "ping"}, others=[_Hello], derived=_Ping)
    assert _Ping not in stats.events  # never counted on its own: no key to add to
    assert stats.requests == {"get": 0, "ping": 0}
    stats.lines += 5  # a batch: HELLO, GET, three PINGs
    stats.events[_Hello] += 1
    stats.events[_Get] += 1
    assert stats.requests == {"get": 1, "ping": 3}
    requests = {s.labels: s.value for s in stats.samples() if s.name == "requests"}
    assert requests == {(("verb", "get"),): 1, (("verb", "ping"),): 3}
    assert dict(stats_records(stats.samples()))["requests"] == 4  # the HELLO is no request


def test_the_uptime_counts_from_a_restart_of_the_clock() -> None:
    now = [10.0]
    stats = Statistics(clock=lambda: now[0])
    now[0] = 50.0
    stats.restart_clock()
    now[0] = 52.0
    assert stats.uptime() == pytest.approx(2.0)


def test_every_counter_is_there_from_zero_and_gauges_come_last() -> None:
    stats = Statistics(clock=lambda: 0.0)
    stats.gauges = lambda: [Sample("clients_connected", 0, Kind.GAUGE, "Clients")]
    samples = stats.samples()
    kinds = [s.kind for s in samples[1:]]  # (uptime first: a gauge)
    assert kinds == sorted(kinds, key=lambda kind: kind is Kind.GAUGE)
    names = {s.name for s in samples}  # (requests: one per verb the server gives it)
    for name in (
        "connections_received", "connections_rejected", "timeouts", "protocol_errors",
        "bytes_sent", "bytes_received", "transfers_completed",
        "transfers_failed", "transfers_resumed", "digest_cache_hits",
        "digest_cache_misses", "bytes_hashed", "uploads_refused",
    ):  # fmt: skip
        assert name in names, name
    assert all(s.value == 0 for s in samples if s.kind is Kind.COUNTER)
