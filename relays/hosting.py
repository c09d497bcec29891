"""Running an ASGI app under hypercorn in the caller's anyio loop, one way for all.

Both the collab server and the relays serve this way: settings measured for
fan-out (a deep listen backlog, reading ahead, our own ping-free keepalive),
hypercorn's asyncio or trio worker to match the running loop, and a shutdown
that first closes every client with 1001 and waits for them, bounded, so
hypercorn has no open connection left to cancel noisily.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import anyio
import sniffio
from hypercorn.config import Config as HypercornConfig

SHUTDOWN_SECONDS = 1.5  # for clients to take their 1001 close before hypercorn stops


class HostedApp(Protocol):
    """What an app offers to be hosted: its frame limit and a way to wind down."""

    @property
    def max_message_size(self) -> int: ...

    def begin_shutdown(self) -> None: ...

    async def wait_all_closed(self) -> None: ...

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


def hypercorn_config(app: HostedApp, host: str, port: int) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"{host}:{port}"]
    config.backlog = 1024
    # let the app read ahead (the default of 10 queued messages caps coalescing),
    # but not too far: the queue counts messages, each up to the size limit
    config.max_app_queue_size = 128
    # the app's own check closes with a reason; hypercorn's is the hard stop above it
    config.websocket_max_message_size = app.max_message_size + (1 << 20)
    # hypercorn's ping task outlives a closed socket by up to one interval and
    # then holds shutdown; the apps keep connections alive themselves
    config.websocket_ping_interval = None
    config.graceful_timeout = 1.0
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


async def run_app(
    app: HostedApp, host: str, port: int, shutdown_trigger: Callable[[], Awaitable[None]]
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

        await trio_serve(app, config, shutdown_trigger=trigger)
    else:
        from hypercorn.asyncio import serve as asyncio_serve

        await asyncio_serve(app, config, shutdown_trigger=trigger)
