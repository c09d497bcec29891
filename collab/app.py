"""The collab ASGI app: routes on one port, and the lifespan that owns the rooms.

``WS /events`` (and ``POST /events/publish``) is the excalidraw catalog's
relay, mounted here rather than on a port of its own so a JSON consumer
reaches a diagram's events where its browsers reach the diagram; see
:mod:`collab.diagram_events` for how the rooms feed it.

With ``Config.auth_secret`` set, ``/yjs``, ``/api`` and ``/events`` need a
token (see :mod:`collab.auth`); health, metrics and the web app stay open.

``/metrics`` holds inkwire's own counters and the ``websocket_*`` metrics
existing dashboards chart, for the Yjs rooms and ``/events`` together
(service ``excalidraw``, see :mod:`net.metrics`); ``GET /api/servers`` feeds
the live dashboard and ``GET /api/rooms`` lists the loaded rooms
(:mod:`collab.dashboard`).

``/mcp`` is the MCP server for AI agents (:mod:`agents`) over streamable
HTTP, loaded on its first request (:mod:`collab.mcp`): a client of this
server like a browser, reached at the address the request came in on, with
the request's token (checked here first when auth is on: 401 without a
valid one).
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyio
from prometheus_client import generate_latest

from collab import api
from collab.collaborators import Collaborators
from collab.config import Config
from collab.connection import join_yjs
from collab.dashboard import Dashboard
from collab.diagram_events import DiagramEvents
from collab.hooks import RoomHooks
from collab.mcp import McpMount
from collab.metrics import Stats
from collab.persistence import PersistenceFactory, StorePersistence
from collab.rooms import Rooms
from collab.tombstones import TombstonePurge
from collab.web import WebApp
from net.asgi import Receive, Scope, Send, respond, respond_json
from net.metrics import CONTENT_TYPE, WebSocketMetrics, registry
from net.tokens import Authenticator, AuthError, token_from_scope
from relays.app import RelayApp, RelaySettings
from relays.catalogs.excalidraw import catalog as excalidraw_catalog
from storage import MemoryStore, Store

if TYPE_CHECKING:
    from cluster.link import RedisLink
    from cluster.rooms import RoomBus

log = logging.getLogger("inkwire.app")

EVENTS_PATH = "/events"


class CollabApp:
    """The collab server as one ASGI app.

    ``extensions`` are room hooks (:class:`~collab.hooks.RoomHooks`) every
    room calls, after the built-in ones (diagram events, the tombstone purge).
    """

    def __init__(
        self,
        store: Store | None = None,
        config: Config | None = None,
        relay_settings: RelaySettings | None = None,
        web_root: Path | None = None,
        extensions: Sequence[RoomHooks] = (),
    ) -> None:
        self.config = config or Config()
        self.store: Store = store if store is not None else MemoryStore()
        self.stats = Stats()
        self.registry = registry(self.stats, "inkwire")
        # /yjs and /events count as one service, the one the deployments knew on this port
        self.stats.websocket = WebSocketMetrics(self.registry, excalidraw_catalog.service)
        secret = self.config.auth_secret
        self.auth = Authenticator(secret) if secret else None
        settings = relay_settings or RelaySettings()
        if secret and settings.auth_secret is None:
            # /events takes the same tokens as /yjs and /api (a relay secret given
            # explicitly in relay_settings wins, for whoever needs them to differ)
            settings = dataclasses.replace(settings, auth_secret=secret)
        # a node of a cluster: one Redis link for its rooms and its /events relay
        self.link: RedisLink | None = None
        if self.config.redis_url is not None:
            from cluster.link import RedisLink  # imported only then

            self.link = RedisLink(self.config.redis_url)
        self.relay = RelayApp(
            excalidraw_catalog, settings, link=self.link, websocket_metrics=self.stats.websocket
        )
        self.events = DiagramEvents(self.relay, cluster=self.link is not None)
        builtin: list[RoomHooks] = [self.events, TombstonePurge(self.config.tombstone_retention)]
        persistence: PersistenceFactory = StorePersistence
        self.bus: RoomBus | None = None
        if self.link is not None:
            from cluster.rooms import RoomBus

            self.bus = RoomBus(self.link)
            self.bus.share_follows(self.relay.hub, self.events.following)
            builtin.append(self.bus)
            persistence = self.bus.persistence
        self.rooms = Rooms(
            self.store,
            self.config,
            self.stats,
            hooks=[*builtin, *extensions],
            persistence=persistence,
        )
        self.collaborators = Collaborators(self.rooms, self.relay, self.store, self.events)
        self.web = WebApp(web_root)
        self.dashboard = Dashboard(self, self.config.dashboard_relays)
        self.mcp = McpMount(self.config.dashboard_relays)
        self.ready = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        path = scope.get("path", "")
        if kind == "websocket":
            if path.startswith("/yjs/"):
                # the handler: join_yjs, then the connection is read in this very frame, so an
                # idle one holds no handler coroutine besides it (docs/capacity.md)
                conn = await join_yjs(scope, receive, send, self.rooms, self.auth)
                if conn is None:
                    return
                try:
                    async with conn.serving(send, conn.room.tasks):
                        await conn.read(receive)
                finally:
                    conn.left(self.rooms)
                await conn.close_socket(receive, send, self.rooms.config.close_timeout)
            elif path in (EVENTS_PATH, EVENTS_PATH + "/"):
                await self.collaborators.serve(scope, receive, send)
            else:
                await receive()
                await send({"type": "websocket.close", "code": 4404, "reason": "no such route"})
        elif kind == "http":
            if path.startswith(EVENTS_PATH + "/"):
                # the relay's own HTTP routes (POST /publish, health) under /events
                sub = {**scope, "path": path[len(EVENTS_PATH) :]}
                sub["root_path"] = scope.get("root_path", "") + EVENTS_PATH
                await self.relay(sub, receive, send)
            elif self.mcp.serves(path):
                await self._mcp(scope, receive, send)
            elif path == "/api/servers" and scope["method"] == "GET":
                await self.dashboard.serve(scope, send)
            elif path == "/api/rooms" and scope["method"] == "GET":
                await self.dashboard.serve_rooms(scope, send)
            elif path.startswith("/api/"):
                await api.handle(self, scope, receive, send)
            else:
                await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        message = await receive()
        assert message["type"] == "lifespan.startup"
        async with anyio.create_task_group() as tg:
            await tg.start(self.rooms.run)
            await tg.start(self.dashboard.run)
            if self.link is not None and self.bus is not None:
                await tg.start(self.link.run)
                tg.start_soon(self.bus.run)
            await tg.start(self.mcp.run)
            async with _mounted(self.relay):
                self.ready = True
                await send({"type": "lifespan.startup.complete"})
                message = await receive()
                self.ready = False
                self.rooms.close_all()
            tg.cancel_scope.cancel()
        await send({"type": "lifespan.shutdown.complete"})

    async def _mcp(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``/mcp``: with auth on, only with a valid token (the tools then act with it)."""
        if self.auth is not None:
            token = token_from_scope(scope)
            try:
                self.auth.check(token)
            except AuthError:
                message = (
                    "a token is required" if token is None else "the token is invalid or expired"
                )
                headers = [(b"www-authenticate", b'Bearer realm="inkwire"')]
                body = json.dumps({"error": message}).encode()
                await respond(send, 401, body, "application/json", headers)
                return
        await self.mcp(scope, receive, send)

    @property
    def max_message_size(self) -> int:
        return self.config.max_message_size

    def begin_shutdown(self) -> None:
        """Stop taking work and close every client with 1001 (going away)."""
        self.ready = False
        self.rooms.close_all(1001, "server shutting down")
        self.relay.begin_shutdown()
        self.mcp.stop()

    async def wait_all_closed(self) -> None:
        await self.mcp.wait_stopped()
        await self.rooms.wait_all_closed()
        await self.relay.wait_all_closed()

    def health(self) -> tuple[bool, dict[str, Any]]:
        """Whether this server is ready, and ``/health/ready``'s body saying why."""
        saving = self.store.healthy and not any(
            room.persistence.down for room in self.rooms.rooms.values()
        )
        ready = self.ready and saving
        body: dict[str, Any] = {
            "status": "ready" if ready else "not ready",
            "rooms": len(self.rooms.rooms),
            "connections": len(self.rooms.connections),
            "storage": "ok" if saving else "failing",
        }
        if self.link is not None:
            body["redis"] = "ok" if self.link.up else "failing"
            ready = ready and self.link.up
            if not ready:
                body["status"] = "not ready"
        return ready, body

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            await respond(send, 405, b"method not allowed\n")
        elif path == "/health/live":
            await respond_json(send, 200, {"status": "live"})
        elif path == "/health/ready":
            ready, body = self.health()
            await respond_json(send, 200 if ready else 503, body)
        elif path == "/metrics":
            await respond(send, 200, generate_latest(self.registry), CONTENT_TYPE)
        elif not await self.web.serve(path, method, scope.get("headers", []), send):
            await respond(send, 404, b"not found\n")


@asynccontextmanager
async def _mounted(app: Any) -> AsyncIterator[None]:
    """Run a mounted ASGI app's lifespan (and background tasks, if it has any) inside ours.

    The relay is driven through the ASGI lifespan protocol, as a server would
    drive it, so whatever it does at startup and shutdown happens here too.
    """
    to_app, app_receive = anyio.create_memory_object_stream[dict[str, Any]](2)
    app_send, from_app = anyio.create_memory_object_stream[dict[str, Any]](2)
    scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
    async with anyio.create_task_group() as tg, to_app, from_app:
        tg.start_soon(app, scope, app_receive.receive, app_send.send)
        background = getattr(app, "background", None)
        if background is not None:
            tg.start_soon(background)
        await to_app.send({"type": "lifespan.startup"})
        started = await from_app.receive()
        if started["type"] != "lifespan.startup.complete":
            raise RuntimeError(f"mounted app failed to start: {started.get('message', '')}")
        try:
            yield
        finally:
            with anyio.move_on_after(5, shield=True):
                await to_app.send({"type": "lifespan.shutdown"})
                await from_app.receive()
            tg.cancel_scope.cancel()
