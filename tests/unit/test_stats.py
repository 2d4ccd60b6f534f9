"""The server's counters, as samples and as STATS records."""

from __future__ import annotations

from filedock.server.stats import Kind, Sample, Statistics, stats_records


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
