"""The collab ASGI app: routes on one port, and the lifespan that owns the rooms."""

from __future__ import annotations

import json
import logging
from typing import Any

import anyio

from collab.config import Config
from collab.connection import serve_yjs
from collab.metrics import Stats, render
from collab.rooms import Rooms
from storage import MemoryStore, Store

log = logging.getLogger("inkwire.app")

Scope = dict[str, Any]
Receive = Any
Send = Any

PLACEHOLDER_PAGE = b"""<!doctype html>
<html><head><meta charset="utf-8"><title>inkwire</title></head>
<body><h1>inkwire</h1>
<p>The collab server is running. Yjs clients connect to <code>ws://HOST/yjs/&lt;diagram&gt;</code>.</p>
</body></html>
"""


class CollabApp:
    def __init__(self, store: Store | None = None, config: Config | None = None) -> None:
        self.config = config or Config()
        self.store: Store = store if store is not None else MemoryStore()
        self.stats = Stats()
        self.rooms = Rooms(self.store, self.config, self.stats)
        self.ready = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            if scope["path"].startswith("/yjs/"):
                await serve_yjs(scope, receive, send, self.rooms)
            else:
                await receive()
                await send({"type": "websocket.close", "code": 4404, "reason": "no such route"})
        elif kind == "http":
            if scope["path"].startswith("/api/"):
                from collab import api  # api imports this module's helpers

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
            self.ready = True
            await send({"type": "lifespan.startup.complete"})
            message = await receive()
            self.ready = False
            self.rooms.close_all()
            tg.cancel_scope.cancel()
        await send({"type": "lifespan.shutdown.complete"})

    @property
    def max_message_size(self) -> int:
        return self.config.max_message_size

    def begin_shutdown(self) -> None:
        """Stop taking work and close every client with 1001 (going away)."""
        self.ready = False
        self.rooms.close_all(1001, "server shutting down")

    async def wait_all_closed(self) -> None:
        await self.rooms.wait_all_closed()

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if method not in ("GET", "HEAD"):
            await _respond(send, 405, b"method not allowed\n")
        elif path == "/health/live":
            await _respond_json(send, 200, {"status": "live"})
        elif path == "/health/ready":
            saving = self.store.healthy and not any(
                room.store_down for room in self.rooms.rooms.values()
            )
            ready = self.ready and saving
            body = {
                "status": "ready" if ready else "not ready",
                "rooms": len(self.rooms.rooms),
                "connections": len(self.rooms.connections),
                "storage": "ok" if saving else "failing",
            }
            await _respond_json(send, 200 if ready else 503, body)
        elif path == "/metrics":
            await _respond(
                send, 200, render(self.stats), "text/plain; version=0.0.4; charset=utf-8"
            )
        elif path == "/" or path.startswith("/d/"):
            await _respond(send, 200, PLACEHOLDER_PAGE, "text/html; charset=utf-8")
        else:
            await _respond(send, 404, b"not found\n")


async def _respond(
    send: Send, status: int, body: bytes, content_type: str = "text/plain; charset=utf-8"
) -> None:
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _respond_json(send: Send, status: int, body: Any) -> None:
    await _respond(send, status, json.dumps(body).encode(), "application/json")
