"""The relays' counters, exported on ``/metrics``, and the ``/stats`` snapshot.

``/stats`` is what the live dashboard (``/dashboard`` on the collab server,
see :mod:`collab.dashboard`) shows of a relay: the counters of ``/metrics``
as JSON, plus the busiest channels, which ``/metrics`` leaves out (a label
per channel would grow Prometheus' series without bound). With auth on it
needs a token, and lists only the channels the token covers.
"""

from __future__ import annotations

import heapq
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from net.metrics import counter, gauge, labelled
from net.tokens import Grant

if TYPE_CHECKING:
    from relays.app import RelayApp

BUSIEST = 10  # channels listed by followers, and as many by events


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


def snapshot(app: RelayApp, grant: Grant) -> dict[str, Any]:
    """The relay's numbers now, and its busiest channels that ``grant`` covers.

    Busiest: the channels with the most followers, and those with the most
    events in their current numbering (the offset); the dashboard turns the
    offsets of two snapshots into rates. ``heapq.nlargest`` keeps this one
    pass over the channels however many there are.
    """
    hub, stats = app.hub, app.stats
    by_followers = heapq.nlargest(
        BUSIEST,
        (item for item in hub.followed.items() if grant.allows(item[0])),
        key=lambda item: item[1],
    )
    by_events = heapq.nlargest(
        BUSIEST,
        ((name, state.offset) for name, state in hub.channels.items() if grant.allows(name)),
        key=lambda item: item[1],
    )
    names = dict.fromkeys([name for name, _ in by_followers] + [name for name, _ in by_events])
    channels = []
    for name in names:
        state = hub.channels.get(name)
        channels.append(
            {
                "channel": name,
                "followers": hub.followers(name),
                "events": state.offset if state is not None else 0,
            }
        )
    return {
        "service": app.catalog.service,
        "ready": app.ready,
        "connections": len(app.connections),
        "subscriptions": hub.subscriptions,
        "channels": len(hub.channels),
        "events_published": hub.events_published,
        "requests": stats.requests,
        "frames_out": stats.frames_out,
        "bytes_out": stats.bytes_out,
        "slow_consumer_closes": stats.slow_consumer_closes,
        "busiest": channels,
    }
