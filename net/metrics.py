"""Metrics: inkwire's own counters, and the names existing WebSocket dashboards chart.

inkwire's own are plain ints on the hot path, exported to Prometheus on
scrape: incrementing a prometheus-client Counter takes a lock, and the send
loops run per frame, so they bump dataclass attributes and a collector reads
them only when ``/metrics`` is scraped. A stats dataclass declares each metric
with :func:`counter`, :func:`gauge` or :func:`labelled`.

:class:`WebSocketMetrics` adds the names the deployments inkwire replaces
already chart (``websocket_connections_total{service}``,
``websocket_messages_sent_total{service,event_type}``,
``websocket_broadcast_duration_seconds``), as real prometheus-client
metrics. They are updated once per connection and once per fan-out run or
published event, never per delivery: a run reaching a thousand clients costs
one histogram observation and one counter increment per event type.

Each app has its own :class:`~prometheus_client.CollectorRegistry` (made by
:func:`registry`), so several apps in one process (the six relays of
``inkwire relay all``, the tests' servers) never mix their numbers.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import field, fields
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# seconds; a fan-out run is tens of microseconds to a few milliseconds (idle clients written
# to synchronously), a slow one tens of milliseconds
BROADCAST_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    1.0,
)


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


def registry(stats: Any, prefix: str, labels: Mapping[str, str] | None = None) -> CollectorRegistry:
    """An app's registry, holding its stats dataclass (read on scrape)."""
    found = CollectorRegistry(auto_describe=False)
    found.register(StatsCollector(stats, prefix, labels or {}))
    return found


def render(stats: Any, prefix: str, labels: Mapping[str, str] | None = None) -> bytes:
    return generate_latest(registry(stats, prefix, labels))


class WebSocketMetrics:
    """The dashboards' WebSocket metrics for one service, in ``registry``.

    ``connected()`` per accepted connection; ``sent(event_type, count)`` for
    ``count`` messages of one type fanned out (a published event times the
    clients it goes to); ``broadcast(seconds)`` once per fan-out run.
    """

    def __init__(self, registry: CollectorRegistry, service: str) -> None:
        self.service = service
        connections = prometheus_client.Counter(
            "websocket_connections",
            "WebSocket connections accepted",
            ["service"],
            registry=registry,
        )
        self._connections = connections.labels(service)
        self._messages = prometheus_client.Counter(
            "websocket_messages_sent",
            "Messages sent to WebSocket clients, by event type (an event fanned out to N "
            "clients counts N)",
            ["service", "event_type"],
            registry=registry,
        )
        self._by_type: dict[str, Any] = {}
        duration = prometheus_client.Histogram(
            "websocket_broadcast_duration_seconds",
            "Seconds one fan-out run took the publisher (appending to the shared log and "
            "writing to the clients that could take it at once)",
            ["service"],
            buckets=BROADCAST_BUCKETS,
            registry=registry,
        )
        self._duration = duration.labels(service)

    def connected(self) -> None:
        self._connections.inc()

    def sent(self, event_type: str, count: int) -> None:
        if count <= 0:
            return
        child = self._by_type.get(event_type)
        if child is None:
            child = self._by_type[event_type] = self._messages.labels(self.service, event_type)
        child.inc(count)

    def broadcast(self, seconds: float) -> None:
        self._duration.observe(seconds)
