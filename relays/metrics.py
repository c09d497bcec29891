"""Relay counters: plain ints on the hot path, exported to Prometheus on scrape.

Same approach as the collab server (a prometheus-client Counter takes a lock
per increment; the send loop runs per frame), kept separate because relays
do not depend on collab.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


@dataclass
class RelayStats:
    connections: int = 0
    connections_total: int = 0
    subscriptions: int = 0
    requests: int = 0
    events_published: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    slow_consumer_closes: int = 0
    errors: Counter[str] = field(default_factory=Counter)

    def error(self, code: str) -> None:
        self.errors[code] += 1


class _Collector:
    def __init__(self, stats: RelayStats, service: str) -> None:
        self.stats = stats
        self.service = service

    def collect(self) -> Iterator[Metric]:
        s, labels = self.stats, [self.service]
        gauges = {
            "connections": ("Open relay connections", s.connections),
            "subscriptions": ("Channel subscriptions held by open connections", s.subscriptions),
        }
        for name, (doc, value) in gauges.items():
            gauge = GaugeMetricFamily(f"inkwire_relay_{name}", doc, labels=["service"])
            gauge.add_metric(labels, value)
            yield gauge
        counters = {
            "connections_opened": ("Relay connections accepted", s.connections_total),
            "requests": ("Requests answered", s.requests),
            "events_published": ("Events published", s.events_published),
            "frames_out": ("WebSocket frames sent", s.frames_out),
            "bytes_out": ("Payload bytes sent", s.bytes_out),
            "slow_consumer_closes": ("Clients closed for not keeping up", s.slow_consumer_closes),
        }
        for name, (doc, value) in counters.items():
            counter = CounterMetricFamily(f"inkwire_relay_{name}", doc, labels=["service"])
            counter.add_metric(labels, value)
            yield counter
        errors = CounterMetricFamily(
            "inkwire_relay_errors", "Error replies sent, by code", labels=["service", "code"]
        )
        for code, count in sorted(s.errors.items()):
            errors.add_metric([self.service, code], count)
        yield errors


def render(stats: RelayStats, service: str) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(stats, service))
    return generate_latest(registry)
