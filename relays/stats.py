"""The relays' counters, exported on ``/metrics`` by :func:`net.metrics.render`."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from net.metrics import counter, gauge, labelled


@dataclass
class RelayStats:
    connections: int = gauge("Open relay connections")
    subscriptions: int = gauge("Channel subscriptions held by open connections")
    connections_total: int = counter("Relay connections accepted", name="connections_opened")
    requests: int = counter("Requests answered")
    events_published: int = counter("Events published")
    frames_out: int = counter("WebSocket frames sent")
    bytes_out: int = counter("Payload bytes sent")
    slow_consumer_closes: int = counter("Clients closed for not keeping up")
    errors: Counter[str] = labelled("Error replies sent, by code", "code")

    def error(self, code: str) -> None:
        self.errors[code] += 1
