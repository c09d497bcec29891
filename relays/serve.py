"""Running relays under hypercorn inside the caller's anyio loop (asyncio or trio).

``async with relays.serve(dhruva.catalog, port=8693) as relay:`` starts the
relay in a task of the caller's own loop and returns once it accepts
connections; leaving the block closes every client with 1001 and stops
hypercorn, bounded by a timeout. Nothing here imports collab: a service that
embeds a relay needs only ``relays``. With ``redis=URL`` the relay is one node
of a cluster (see :mod:`cluster.relays`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio

from relays.catalog import Catalog

if TYPE_CHECKING:  # `import relays` stays light: the server loads when a relay starts
    from net.hosting import Listen
    from relays.app import Handler, RelayApp, RelaySettings
    from relays.hub import Hub, Published
    from storage.databases import Database

log = logging.getLogger("inkwire.relay")

STARTUP_SECONDS = 10.0


async def wait_listening(host: str, port: int) -> None:
    """Return once ``host:port`` accepts TCP connections (hypercorn binds after startup)."""
    with anyio.fail_after(STARTUP_SECONDS):
        while True:
            try:
                stream = await anyio.connect_tcp(host, port)
            except OSError:
                await anyio.sleep(0.01)
                continue
            await stream.aclose()
            return


class Relay:
    """A running relay, as ``relays.serve`` hands it to the embedding service."""

    def __init__(self, app: RelayApp, host: str, port: int, tls: bool = False) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.tls = tls
        self.broadcast = app.broadcast  # await relay.broadcast.adapter_activated(...)

    @property
    def hub(self) -> Hub:
        return self.app.hub

    @property
    def url(self) -> str:
        return f"{'wss' if self.tls else 'ws'}://{self.host}:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def handle(self, name: str) -> Callable[[Handler], Handler]:
        return self.app.handle(name)

    async def publish(self, event: str, data: Mapping[str, Any]) -> list[Published]:
        """Validate and publish an event by name (clustered: RelayUnavailable without Redis)."""
        payload, channels = self.app.catalog.prepare(event, data)
        (placed,) = await self.app.publish_events([(event, channels, payload)])
        return placed


async def host_relay(
    app: RelayApp,
    host: str,
    port: int,
    shutdown_trigger: Callable[[], Awaitable[None]],
    listen: Listen | None = None,
) -> None:
    """Serve ``app`` and run its background tasks; they stop after the server, so
    the history writer commits every event published before shutdown.

    ``listen``: TLS, or a socket inherited from ``inkwire up`` (default: plain TCP).
    """
    from net.hosting import PLAIN, run_app

    async with anyio.create_task_group() as tg:
        tg.start_soon(app.background)
        await run_app(app, host, port, shutdown_trigger, listen or PLAIN)
        tg.cancel_scope.cancel()


@asynccontextmanager
async def serve(
    catalog: Catalog,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    settings: RelaySettings | None = None,
    app: RelayApp | None = None,
    redis: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    store: Database | None = None,
) -> AsyncIterator[Relay]:
    """Run a relay for ``catalog`` (default port: the catalog's) for the block's duration.

    ``redis``: the URL of a cluster's Redis (``settings.redis_url`` otherwise).
    ``certfile`` and ``keyfile`` (PEM): serve TLS only, ``wss://`` and ``https://``.
    ``store``: where history is kept (:func:`storage.databases.open_store`;
    the caller closes it), instead of ``settings.history_db``.
    """
    from net.hosting import Listen
    from relays.app import RelayApp, RelaySettings

    if (certfile is None) != (keyfile is None):
        raise ValueError("TLS needs both certfile and keyfile")
    listen = Listen(certfile=certfile, keyfile=keyfile)
    if redis is not None:
        settings = dataclasses.replace(settings or RelaySettings(), redis_url=redis)
    app = app if app is not None else RelayApp(catalog, settings, store=store)
    port = catalog.port if port is None else port
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(host_relay, app, host, port, stop.wait, listen)
        try:
            await wait_listening(host, port)
            log.info("relay %s listening on %s:%d", catalog.service, host, port)
            yield Relay(app, host, port, tls=listen.tls)
        finally:
            stop.set()
