"""The counters in Prometheus text exposition format 0.0.4, for ``/metrics``.

Rendered from :meth:`Statistics.samples` at each scrape: names get the
``filedock_`` prefix, counters end in ``_total``, and the samples of one name
(one per label value) stay together under one ``HELP`` and ``TYPE``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from .stats import Kind, Sample

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
PREFIX = "filedock_"


def metric_name(sample: Sample) -> str:
    suffix = "_total" if sample.kind is Kind.COUNTER else ""
    return f"{PREFIX}{sample.name}{suffix}"


def render(samples: Iterable[Sample]) -> str:
    """The exposition text of ``samples``, one family per name in first-seen order."""
    families: dict[str, list[Sample]] = {}
    for sample in samples:
        families.setdefault(metric_name(sample), []).append(sample)
    lines: list[str] = []
    for name, members in families.items():
        first = members[0]
        lines.append(f"# HELP {name} {_escape_help(first.help)}")
        lines.append(f"# TYPE {name} {first.kind.value}")
        lines.extend(f"{name}{_labels(s.labels)} {_value(s.value)}" for s in members)
    return "\n".join(lines) + "\n"


def _labels(labels: tuple[tuple[str, str], ...]) -> str:
    if not labels:
        return ""
    return "{" + ",".join(f'{key}="{_escape_label(value)}"' for key, value in labels) + "}"


def _escape_help(text: str) -> str:
    return text.replace("\\", "\\\\").replace("\n", "\\n")


def _escape_label(text: str) -> str:
    return text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _value(value: int | float) -> str:
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)
