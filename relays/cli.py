"""``inkwire relay NAME|all``: standalone relays, registered by collab's CLI."""

from __future__ import annotations

import argparse
import logging
import signal
from typing import TYPE_CHECKING, Any

import anyio

from cluster import add_redis_option
from relays.app import RelayApp, RelaySettings
from relays.auth import SECRET_ENV, secret_from_env
from relays.catalog import Catalog
from relays.catalogs import BY_NAME, SERVICES
from relays.hub import HubSettings
from relays.serve import host_relay

if TYPE_CHECKING:
    from cluster.link import RedisLink
    from storage.databases import Database

log = logging.getLogger("inkwire.relay")


def add_commands(commands: Any) -> None:
    """Add the ``relay`` subcommand to an argparse subparsers object."""
    relay = commands.add_parser("relay", help="run a service's event relay (or all six)")
    relay.add_argument("name", choices=[*BY_NAME, "all"], help="catalog name, or 'all'")
    relay.add_argument("--host", default="127.0.0.1")
    relay.add_argument("--port", type=int, help="default: the catalog's port")
    relay.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="added to every catalog's default port (run several sets side by side)",
    )
    relay.add_argument(
        "--auth-secret",
        help=f"require client tokens (HS256 JWTs) signed with this secret (or ${SECRET_ENV})",
    )
    relay.add_argument(
        "--db",
        help="keep history in this SQLite file or postgresql:// database, so recovery"
        " survives a restart (one database may serve all six relays)",
    )
    add_redis_option(relay, "channels, offsets and history")
    relay.add_argument("--history-size", type=int, help="events kept per channel (1000)")
    relay.add_argument("--history-age", type=float, help="seconds an event is kept (3600)")
    relay.add_argument(
        "--keepalive",
        type=float,
        default=RelaySettings.keepalive_interval,
        help="seconds of silence before a client gets a 'ping' message (0: never)",
    )
    relay.add_argument("--log-level", default="INFO")


def run(args: argparse.Namespace) -> int:
    catalogs = SERVICES if args.name == "all" else (BY_NAME[args.name],)
    if args.port is not None and len(catalogs) > 1:
        log.error("--port names one port; with 'all' use --port-offset")
        return 2
    if args.redis and args.db:
        log.error("--redis keeps history in Redis: leave out --db")
        return 2
    ports = [
        args.port if args.port is not None else catalog.port + args.port_offset
        for catalog in catalogs
    ]
    hub: dict[str, Any] = {}
    if args.history_size is not None:
        hub["history_size"] = args.history_size
    if args.history_age is not None:
        hub["history_age"] = args.history_age
    settings = RelaySettings(
        hub=HubSettings(**hub),
        auth_secret=args.auth_secret or secret_from_env(),
        keepalive_interval=args.keepalive or None,
    )
    store = None
    if args.db:
        from storage.databases import open_store
        from storage.store import StorageError
        from storage.urls import warn_if_password_in_argv

        warn_if_password_in_argv(args.db)
        try:
            store = open_store(args.db)
        except StorageError as exc:
            log.error("%s", exc)
            return 2
    link = None
    if args.redis:
        from cluster.link import RedisLink

        link = RedisLink(args.redis)
    try:
        anyio.run(serve_all, catalogs, args.host, ports, settings, store, link)
    finally:
        if store is not None:
            store.close()
    return 0


async def serve_all(
    catalogs: tuple[Catalog, ...],
    host: str,
    ports: list[int],
    settings: RelaySettings | None = None,
    store: Database | None = None,
    link: RedisLink | None = None,
) -> None:
    """Serve each catalog on its port until SIGINT or SIGTERM (one database, or one
    Redis link, for all)."""
    stop = anyio.Event()
    apps = [RelayApp(catalog, settings, store=store, link=link) for catalog in catalogs]
    async with anyio.create_task_group() as node:
        if link is not None:
            await node.start(link.run)  # after every app registered what it listens to
        async with anyio.create_task_group() as tg:
            for app, catalog, port in zip(apps, catalogs, ports, strict=True):
                tg.start_soon(host_relay, app, host, port, stop.wait)
                log.info("relay %s on ws://%s:%d/", catalog.service, host, port)
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    break
            stop.set()
        node.cancel_scope.cancel()  # the link outlives the relays: the last publishes go out
