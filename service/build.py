"""Settings into the servers' own objects: the one place each key meets what it drives.

docs/configuration.md's table says the same in words; a key whose description
says "no equivalent" is deliberately not read here.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from collab.app import CollabApp
from collab.config import Config
from net.hosting import Listen
from relays.app import RelayApp, RelaySettings
from relays.catalogs import BY_NAME
from relays.hub import HubSettings
from service.settings import CollabServer, RelayServer, Settings
from storage import MemoryStore, Store
from storage.databases import Database, open_store
from storage.urls import warn_if_password_in_argv

if TYPE_CHECKING:
    from cluster.link import RedisLink


def _secret(value: object) -> str | None:
    get = getattr(value, "get_secret_value", None)
    return get() if get is not None else None


def _keepalive(seconds: float | None) -> float | None:
    return seconds or None  # 0 and null both mean never


def _burst(rate: float) -> int:
    return max(1, int(rate * 2))


def collab_config(settings: Settings) -> Config:
    c = settings.collab
    return Config(
        grace_period=c.grace,
        max_users=c.collaboration.max_users_per_room,
        max_rooms=c.max_rooms,
        max_connections=c.max_connections,
        max_message_size=c.max_message_size,
        awareness_interval=c.collaboration.cursor_throttle_ms / 1000,
        max_lag=c.broadcast_queue_size,
        close_timeout=c.close_timeout,
        keepalive_interval=_keepalive(c.ping_interval),
        rate_limit=c.yjs_message_rate_limit,
        rate_burst=_burst(c.yjs_message_rate_limit or 1.0),
        max_file_bytes=c.max_file_bytes,
        tombstone_retention=c.tombstone_retention,
        redis_url=settings.redis,
        auth_secret=_secret(c.auth_secret),
        dashboard_relays=tuple(c.dashboard_relays or ()),
    )


def events_relay_settings(collab: CollabServer) -> RelaySettings:
    """The settings of collab's own ``/events`` relay (its secret is collab's; see CollabApp)."""
    return RelaySettings(
        hub=HubSettings(max_lag=collab.broadcast_queue_size),
        max_connections=collab.max_connections,
        rate_limit=collab.message_rate_limit,
        rate_burst=_burst(collab.message_rate_limit),
        close_timeout=collab.close_timeout,
    )


def collab_store(settings: Settings) -> Store:
    """The diagrams' store: a SQLite file or a PostgreSQL URL (:func:`open_store`; raises
    StorageError when it is unusable)."""
    c = settings.collab
    if c.db == ":memory:":
        return MemoryStore()
    warn_if_password_in_argv(c.db)
    return open_store(
        c.db, compress=c.compress, checkpoint_every=c.checkpoint_every, retention=c.retention
    )


def relay_store(settings: Settings) -> Database | None:
    """The relays' history database, if any (raises StorageError when it is unusable)."""
    db = settings.relays.db
    if db is None:
        return None
    warn_if_password_in_argv(db)
    return open_store(db)


def collab_app(settings: Settings) -> CollabApp:
    web_root = settings.collab.web_root
    return CollabApp(
        store=collab_store(settings),
        config=collab_config(settings),
        relay_settings=events_relay_settings(settings.collab),
        web_root=Path(web_root) if web_root is not None else None,
    )


def relay_settings(settings: Settings, relay: RelayServer) -> RelaySettings:
    r = settings.relays
    return RelaySettings(
        hub=HubSettings(
            history_size=r.history_size,
            history_age=r.history_age,
            max_lag=relay.broadcast_queue_size,
        ),
        max_message_size=r.max_message_size,
        close_timeout=relay.close_timeout,
        auth_secret=_secret(r.auth_secret),
        max_connections=relay.max_connections,
        rate_limit=relay.message_rate_limit,
        rate_burst=_burst(relay.message_rate_limit),
        keepalive_interval=_keepalive(relay.ping_interval),
    )


def relay_apps(
    settings: Settings, names: list[str], store: Database | None, link: RedisLink | None
) -> list[RelayApp]:
    """One app per named relay, sharing one history store or one Redis link."""
    sections = settings.relays.servers()
    return [
        RelayApp(BY_NAME[name], relay_settings(settings, sections[name]), store=store, link=link)
        for name in names
    ]


def listen(settings: Settings, fd: int | None = None) -> Listen:
    return Listen(certfile=settings.tls.certfile, keyfile=settings.tls.keyfile, fd=fd)
