"""Server settings, with the defaults a deployment starts from."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Config:
    grace_period: float = 30.0  # seconds a room stays loaded after its last client leaves
    max_users: int = 50  # connections per room
    max_rooms: int = 10_000
    max_connections: int = 10_000  # Yjs connections in all; more are refused with 1013
    max_message_size: int = 16 << 20  # bytes in one incoming frame
    awareness_interval: float = 0.05  # at most one awareness broadcast per client per interval
    max_lag: int = 10_000  # entries a client may fall behind before it is cut off
    max_lag_bytes: int = 64 << 20  # bytes a client may fall behind
    # messages a connection may send per second, sustained, and at once (a token bucket
    # checked before any work on a message): past it reading pauses (the client is
    # slowed); a client that keeps the bucket empty for rate_burst messages is closed 4008.
    # A person dragging fast sends ~60-120 a second (see docs/capacity.md). None: no limit
    rate_limit: float | None = 300.0
    rate_burst: int = 600
    max_outbox: int = 256  # direct frames (sync replies...) waiting for one client
    checkpoint_quiet: float = 10.0  # seconds without edits before a room checkpoints
    load_timeout: float = 30.0  # seconds to load a room from the store
    close_timeout: float = 1.0  # seconds for the closing handshake before the socket is cut
    keepalive_interval: float | None = 10.0  # seconds of silence before a keepalive message
    max_file_bytes: int = 4 << 20  # one image PUT to /api/diagrams/{id}/files/{file_id}
    # seconds a deleted element's tombstone is kept (purged when its room goes quiet); None: forever
    tombstone_retention: float | None = 24 * 3600.0
    # Redis of a cluster of nodes sharing rooms (see the cluster package); None: one node
    redis_url: str | None = None
    # HS256 secret of client tokens (see collab.auth); None: auth off, everything open
    auth_secret: str | None = field(default=None, repr=False)
    # the relays /dashboard shows besides this server: base URLs, http://HOST:PORT
    # (see collab.dashboard); the server fetches their /health/ready and /stats itself
    dashboard_relays: tuple[str, ...] = ()
