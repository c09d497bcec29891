"""Counters kept as plain ints on the hot path, exported to Prometheus on scrape.

Incrementing a prometheus-client Counter takes a lock; the send loops run per
frame, so they bump dataclass attributes and a collector reads them only when
``/metrics`` is scraped. A stats dataclass declares each metric with
:func:`counter`, :func:`gauge` or :func:`labelled`; the collab server and the
relays both export theirs through :func:`render`.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import field, fields
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


def counter(help: str, name: str | None = None) -> Any:
    return field(default=0, metadata={"help": help, "kind": "counter", "name": name})


def gauge(help: str) -> Any:
    return field(default=0, metadata={"help": help, "kind": "gauge", "name": None})


def labelled(help: str, label: str, name: str | None = None) -> Any:
    """A counter per label value, kept in a ``collections.Counter``."""
    metadata = {"help": help, "kind": "counter", "name": name, "label": label}
    return field(default_factory=Counter, metadata=metadata)


class StatsCollector:
    def __init__(self, stats: Any, prefix: str, labels: Mapping[str, str]) -> None:
        self.stats = stats
        self.prefix = prefix
        self.label_names = list(labels)
        self.label_values = list(labels.values())

    def collect(self) -> Iterator[Metric]:
        names, values = self.label_names, self.label_values
        for spec in fields(self.stats):
            meta = spec.metadata
            if "kind" not in meta:
                continue
            name = f"{self.prefix}_{meta['name'] or spec.name}"
            value = getattr(self.stats, spec.name)
            family: CounterMetricFamily | GaugeMetricFamily
            if "label" in meta:
                family = CounterMetricFamily(name, meta["help"], labels=[*names, meta["label"]])
                for key, count in sorted(value.items()):
                    family.add_metric([*values, key], count)
            elif meta["kind"] == "gauge":
                family = GaugeMetricFamily(name, meta["help"], labels=names)
                family.add_metric(values, value)
            else:
                family = CounterMetricFamily(name, meta["help"], labels=names)
                family.add_metric(values, value)
            yield family


def render(stats: Any, prefix: str, labels: Mapping[str, str] | None = None) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats, prefix, labels or {}))
    return generate_latest(registry)
