"""Run the collab app under hypercorn until SIGINT/SIGTERM (or a trigger)."""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable

import anyio

from collab.app import CollabApp
from net.hosting import PLAIN, Listen, run_app

log = logging.getLogger("inkwire.server")


async def serve(
    app: CollabApp,
    host: str,
    port: int,
    *,
    shutdown_trigger: Callable[[], Awaitable[None]] | None = None,
    listen: Listen = PLAIN,
) -> None:
    """Serve until the trigger returns (default: SIGINT or SIGTERM); ``listen``: TLS,
    or a socket inherited from ``inkwire up``."""

    async def on_signal() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for signum in signals:
                log.info("received %s, shutting down", signal.Signals(signum).name)
                return

    await run_app(app, host, port, shutdown_trigger or on_signal, listen)
