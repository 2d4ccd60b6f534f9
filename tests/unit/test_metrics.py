"""The Prometheus text of /metrics, read back by prometheus_client's own parser."""

from __future__ import annotations

import math

from prometheus_client.parser import text_string_to_metric_families

from filedock.server.metrics import render
from filedock.server.stats import Kind, Sample, Statistics


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    return {
        family.name: [(s.name, s.labels, s.value) for s in family.samples]
        for family in text_string_to_metric_families(text)
    }


def test_every_statistic_is_a_prefixed_family_and_counters_end_in_total() -> None:
    stats = Statistics()
    stats.bytes_sent = 1234
    stats.timeouts["idle"] = 2
    text = render(stats.samples())
    parsed = families(text)
    assert parsed["filedock_bytes_sent"] == [("filedock_bytes_sent_total", {}, 1234)]
    assert ("filedock_timeouts_total", {"kind": "idle"}, 2) in parsed["filedock_timeouts"]
    assert parsed["filedock_uptime_seconds"][0][0] == "filedock_uptime_seconds"  # a gauge
    assert "# TYPE filedock_bytes_sent_total counter\n" in text
    assert "# TYPE filedock_uptime_seconds gauge\n" in text
    assert all(name.startswith("filedock_") for name in parsed)
    # One HELP and one TYPE a family, however many label values it has.
    assert text.count("# TYPE filedock_timeouts_total ") == 1


def test_help_and_label_values_are_escaped() -> None:
    odd = 'a "quoted"\\ back\nslash'
    samples = [
        Sample("odd", 1, Kind.COUNTER, "first line\nsecond \\ line", (("why", odd),)),
        Sample("odd", 2, Kind.COUNTER, "first line\nsecond \\ line", (("why", "plain"),)),
    ]
    text = render(samples)
    assert text.count("\n") == 4  # HELP, TYPE, two samples: no raw newline got through
    (family,) = text_string_to_metric_families(text)
    assert family.documentation == "first line\nsecond \\ line"
    assert [(s.labels["why"], s.value) for s in family.samples] == [(odd, 1), ("plain", 2)]


def test_odd_floats_are_spelled_as_prometheus_does() -> None:
    text = render(
        [
            Sample("up", math.inf, Kind.GAUGE, "infinite"),
            Sample("down", -math.inf, Kind.GAUGE, "minus"),
            Sample("unknown", math.nan, Kind.GAUGE, "nan"),
            Sample("ratio", 0.25, Kind.GAUGE, "plain"),
        ]
    )
    assert "filedock_up +Inf\n" in text
    assert "filedock_down -Inf\n" in text
    assert "filedock_unknown NaN\n" in text
    assert "filedock_ratio 0.25\n" in text
    parsed = families(text)
    assert math.isnan(parsed["filedock_unknown"][0][2])
