"""Counters kept as plain ints on the hot path, exported to Prometheus on scrape.

Incrementing a prometheus-client Counter takes a lock; the send loop runs
per frame, so it bumps attributes here and a custom collector reads them
only when ``/metrics`` is scraped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric


@dataclass
class Stats:
    connections: int = 0
    rooms: int = 0
    connections_total: int = 0
    updates_in: int = 0
    frames_out: int = 0
    bytes_out: int = 0
    slow_consumer_closes: int = 0
    sync_encodes: int = 0
    fanout_renders: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1


class StatsCollector:
    def __init__(self, stats: Stats) -> None:
        self.stats = stats

    def collect(self) -> Iterator[Metric]:
        s = self.stats
        yield GaugeMetricFamily("inkwire_connections", "Open Yjs connections", s.connections)
        yield GaugeMetricFamily("inkwire_rooms", "Loaded rooms", s.rooms)
        counters = {
            "connections_opened": ("Yjs connections accepted", s.connections_total),
            "updates_in": ("Document updates applied", s.updates_in),
            "frames_out": ("WebSocket frames sent", s.frames_out),
            "bytes_out": ("Payload bytes sent", s.bytes_out),
            "slow_consumer_closes": ("Clients closed for not keeping up", s.slow_consumer_closes),
            "sync_encodes": ("Document diffs encoded for joiners", s.sync_encodes),
            "fanout_renders": ("Coalesced frames encoded for fan-out", s.fanout_renders),
        }
        for name, (doc, value) in counters.items():
            yield CounterMetricFamily(f"inkwire_{name}", doc, value)
        rejected = CounterMetricFamily(
            "inkwire_rejected_messages", "Messages refused, by reason", labels=["reason"]
        )
        for reason, count in sorted(s.rejected.items()):
            rejected.add_metric([reason], count)
        yield rejected


def render(stats: Stats) -> bytes:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StatsCollector(stats))
    return generate_latest(registry)
