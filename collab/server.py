"""Run an ASGI app under hypercorn with a clean, bounded shutdown."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable

import anyio
import sniffio
from hypercorn.asyncio import serve as hypercorn_serve
from hypercorn.config import Config as HypercornConfig

from collab.app import CollabApp

log = logging.getLogger("inkwire.server")

SHUTDOWN_SECONDS = 1.5  # for clients to take their 1001 close before hypercorn stops


def hypercorn_config(app: CollabApp, host: str, port: int) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.backlog = 1024
    # let the app read ahead (the default of 10 queued messages caps coalescing),
    # but not too far: the queue counts messages, each up to the size limit
    config.max_app_queue_size = 128
    # our own check closes with a reason; hypercorn's is the hard stop above it
    config.websocket_max_message_size = app.config.max_message_size + (1 << 20)
    # hypercorn's ping task outlives a closed socket by up to one interval and
    # then holds shutdown; the connection's own keepalive replaces it
    config.websocket_ping_interval = None
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def serve(
    app: CollabApp,
    host: str,
    port: int,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
) -> None:
    """Serve until the trigger returns (default: SIGINT or SIGTERM)."""

    async def trigger() -> None:
        if shutdown_trigger is not None:
            await shutdown_trigger()
        else:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for signum in signals:
                    log.info("received %s, shutting down", signal.Signals(signum).name)
                    break
        app.begin_shutdown()
        with anyio.move_on_after(SHUTDOWN_SECONDS):
            await app.rooms.wait_all_closed()

    config = hypercorn_config(app, host, port)
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as trio_serve

        await trio_serve(app, config, shutdown_trigger=trigger)  # type: ignore[arg-type]
    else:
        await hypercorn_serve(app, config, shutdown_trigger=trigger)  # type: ignore[arg-type]
