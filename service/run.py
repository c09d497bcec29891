"""Running servers from settings, in this process: ``inkwire serve``, ``inkwire relay``,
and each worker of ``inkwire up`` (which passes the socket it bound as ``fds``).

``stop`` is awaited for the shutdown: SIGINT or SIGTERM by default.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

import anyio

from collab.app import CollabApp
from collab.server import serve
from net.hosting import tune_gc
from relays.serve import host_relay
from service import build
from service.settings import Settings
from storage.databases import shown

if TYPE_CHECKING:
    from cluster.link import RedisLink

log = logging.getLogger("inkwire.service")

Stop = Callable[[], Awaitable[None]]


async def on_signal() -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("received %s, shutting down", signal.Signals(signum).name)
            return


def scheme(settings: Settings, websocket: bool) -> str:
    tls = settings.tls.certfile is not None
    return ("wss" if tls else "ws") if websocket else ("https" if tls else "http")


async def serve_collab(
    settings: Settings,
    fd: int | None = None,
    stop: Stop = on_signal,
    app: CollabApp | None = None,
) -> None:
    c = settings.collab
    app = app if app is not None else build.collab_app(settings)
    tune_gc()
    log.info("saving to %s", shown(c.db))
    log.info(
        "serving on %s://%s:%d%s",
        scheme(settings, websocket=False),
        c.host,
        c.port,
        " (auth on: tokens required)" if app.config.auth_secret else "",
    )
    await serve(app, c.host, c.port, shutdown_trigger=stop, listen=build.listen(settings, fd))


async def serve_relays(
    settings: Settings,
    names: list[str],
    fds: Mapping[str, int] | None = None,
    stop: Stop = on_signal,
) -> None:
    """Serve the named relays until ``stop`` returns (one history file, or one Redis
    link, for all)."""
    tune_gc()
    store = build.relay_store(settings)
    link: RedisLink | None = None
    if settings.redis is not None:
        from cluster.link import RedisLink

        link = RedisLink(settings.redis)
    try:
        apps = build.relay_apps(settings, names, store, link)
        sections = settings.relays.servers()
        stopped = anyio.Event()
        async with anyio.create_task_group() as node:
            if link is not None:
                await node.start(link.run)  # after every app registered what it listens to
            async with anyio.create_task_group() as tg:
                for app, name in zip(apps, names, strict=True):
                    section = sections[name]
                    fd = fds.get(name) if fds is not None else None
                    listen = build.listen(settings, fd)
                    tg.start_soon(host_relay, app, section.host, section.port, stopped.wait, listen)
                    log.info(
                        "relay %s on %s://%s:%d/",
                        name,
                        scheme(settings, websocket=True),
                        section.host,
                        section.port,
                    )
                await stop()
                stopped.set()
            node.cancel_scope.cancel()  # the link outlives the relays: the last publishes go out
    finally:
        if store is not None:
            store.close()
