"""The collab server's counters (exported by net.metrics, as the relays' are).

``websocket`` is where the dashboards' ``websocket_*`` metrics go (set by the
app; None in rooms built bare, as some tests do): the rooms report each update
and presence change with the number of clients it goes to, and time each
fan-out run (see :meth:`collab.room.Room.publish`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from net.metrics import WebSocketMetrics, counter, gauge, labelled
from net.metrics import render as render_stats


@dataclass
class Stats:
    connections: int = gauge("Open Yjs connections")
    rooms: int = gauge("Loaded rooms")
    connections_total: int = counter("Yjs connections accepted", name="connections_opened")
    updates_in: int = counter("Document updates applied")
    frames_out: int = counter("WebSocket frames sent")
    bytes_out: int = counter("Payload bytes sent")
    slow_consumer_closes: int = counter("Clients closed for not keeping up")
    rate_limited_waits: int = counter(
        "Client messages whose reading was paused by the rate limit", name="rate_limited_waits"
    )
    sync_encodes: int = counter("Document diffs encoded for joiners")
    fanout_renders: int = counter("Coalesced frames encoded for fan-out")
    rejected: Counter[str] = labelled(
        "Messages refused, by reason", "reason", name="rejected_messages"
    )
    websocket: WebSocketMetrics | None = None  # not a metric of ours: no metadata

    def reject(self, reason: str) -> None:
        self.rejected[reason] += 1


def render(stats: Stats) -> bytes:
    return render_stats(stats, "inkwire")
