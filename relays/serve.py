"""Running relays under hypercorn inside the caller's anyio loop (asyncio or trio).

``async with relays.serve(dhruva.catalog, port=8693) as relay:`` starts the
relay in a task of the caller's own loop and returns once it accepts
connections; leaving the block closes every client with 1001 and stops
hypercorn, bounded by a timeout. Nothing here imports collab: a service that
embeds a relay needs only ``relays``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import sniffio
from hypercorn.config import Config as HypercornConfig

from relays.app import Handler, RelayApp, RelaySettings
from relays.catalog import Catalog
from relays.hub import Hub, Published

log = logging.getLogger("inkwire.relay")

SHUTDOWN_SECONDS = 1.5  # for clients to take their 1001 close before hypercorn stops
STARTUP_SECONDS = 10.0


def hypercorn_config(app: RelayApp, host: str, port: int) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.backlog = 1024
    config.max_app_queue_size = 128  # see DESIGN.md: the default of 10 throttles readers
    # our own check closes with 1009 and a reason; hypercorn's is the hard stop above it
    config.websocket_max_message_size = app.settings.max_message_size + (1 << 20)
    config.websocket_ping_interval = None
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def run_app(
    app: RelayApp, host: str, port: int, shutdown_trigger: Callable[[], Awaitable[None]]
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns, then close clients (bounded)."""

    async def trigger() -> None:
        await shutdown_trigger()
        app.begin_shutdown()
        with anyio.move_on_after(SHUTDOWN_SECONDS):
            await app.wait_all_closed()

    config = hypercorn_config(app, host, port)
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as trio_serve

        await trio_serve(app, config, shutdown_trigger=trigger)  # type: ignore[arg-type]
    else:
        from hypercorn.asyncio import serve as asyncio_serve

        await asyncio_serve(app, config, shutdown_trigger=trigger)  # type: ignore[arg-type]


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

    def __init__(self, app: RelayApp, host: str, port: int) -> None:
        self.app = app
        self.host = host
        self.port = port
        self.broadcast = app.broadcast  # await relay.broadcast.adapter_activated(...)

    @property
    def hub(self) -> Hub:
        return self.app.hub

    @property
    def url(self) -> str:
        return f"ws://{self.host}:{self.port}/"

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def handle(self, name: str) -> Callable[[Handler], Handler]:
        return self.app.handle(name)

    async def publish(self, event: str, data: Mapping[str, Any]) -> list[Published]:
        return self.app.publish(event, data)


@asynccontextmanager
async def serve(
    catalog: Catalog,
    host: str = "127.0.0.1",
    port: int | None = None,
    *,
    settings: RelaySettings | None = None,
    app: RelayApp | None = None,
) -> AsyncIterator[Relay]:
    """Run a relay for ``catalog`` (default port: the catalog's) for the block's duration."""
    app = app if app is not None else RelayApp(catalog, settings)
    port = catalog.port if port is None else port
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_app, app, host, port, stop.wait)
        try:
            await wait_listening(host, port)
            log.info("relay %s listening on %s:%d", catalog.service, host, port)
            yield Relay(app, host, port)
        finally:
            stop.set()
