"""The live dashboard's data: ``GET /api/servers``, for ``/dashboard`` in the web app;
and ``GET /api/rooms``, every loaded room, for the operators' tools (``agents.operations``).

One request answers for every server the dashboard shows: this collab server
(read from its own state) and each relay it was told about
(``Config.dashboard_relays``, ``inkwire serve --dashboard-relay URL``), whose
``/health/ready`` and ``/stats`` this server fetches itself. So the page
talks to its own origin only: the relays need no CORS headers, and a relay
reachable from the collab server but not from the browser still shows (only
the live tail of its events connects to it directly, over its WebSocket).

A relay that does not answer within :data:`TIMEOUT` (both requests within
:data:`RELAY_DEADLINE`) is ``up: false`` with the reason; it keeps the name
it last reported, so a stopped relay shows as down under its own name, and as
up again once it answers.

The page turns the counters of two answers into rates (messages and bytes
per second, events or updates per channel and room), so nothing here keeps
history. With auth on, the request needs a token like the rest of ``/api``
(401 without a valid one); the rooms and channels listed are those it
covers, and it is passed on to the relays as a bearer token.

``GET /api/rooms`` lists every loaded room the token covers (most
connections first, at most ``?limit=``, 1000 by default), with its
connections, the updates it applied and whether it is locked, and when this
server started: the whole list, where the dashboard shows the busiest ten.
"""

from __future__ import annotations

import heapq
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx

from collab.auth import diagram_channel
from net.asgi import Scope, Send, respond_json
from net.tokens import OPEN, AuthError, Grant, token_from_scope

if TYPE_CHECKING:
    from collab.app import CollabApp

TIMEOUT = 1.0  # seconds a relay has to answer one request of the dashboard
RELAY_DEADLINE = 2.0  # seconds for both of a relay's requests, however it stalls
BUSIEST = 10  # rooms listed
ROOMS_LIMIT, ROOMS_MAX = 1000, 10_000  # GET /api/rooms: listed by default, at most


def relay_url(text: str) -> str:
    """A relay's base URL (``http(s)://host:port[/path]``, no query), without a final ``/``.

    ValueError, naming what is wrong, for anything else.
    """
    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"relay URL {text!r}: expected http://HOST:PORT (or https://)")
    if not parts.hostname:
        raise ValueError(f"relay URL {text!r}: no host")
    try:
        parts.port  # noqa: B018 (raises for a port that is not a number in range)
    except ValueError as exc:
        raise ValueError(f"relay URL {text!r}: {exc}") from None
    if parts.query or parts.fragment:
        raise ValueError(f"relay URL {text!r}: no query or fragment expected")
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"


def websocket_url(base: str) -> str:
    """The relay's WebSocket URL for a base URL (``http`` becomes ``ws``)."""
    return "ws" + base[len("http") :] + "/"


class Dashboard:
    """Answers ``GET /api/servers``; :meth:`run` owns the HTTP client for the relays."""

    def __init__(self, app: CollabApp, relays: tuple[str, ...]) -> None:
        self.app = app
        self.relays = tuple(relay_url(url) for url in relays)
        self._names: dict[str, str] = {}  # relay URL -> the service it last reported
        self._client: httpx.AsyncClient | None = None
        self.started: float | None = None  # when the server started (Unix time)

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep one HTTP client (its connection pool) until cancelled."""
        self.started = time.time()
        async with httpx.AsyncClient(timeout=TIMEOUT) as client:
            self._client = client
            task_status.started()
            try:
                await anyio.sleep_forever()
            finally:
                self._client = None

    async def _grant(self, scope: Scope, send: Send) -> tuple[Grant, str | None] | None:
        """What the request's token grants (everything with auth off), and the token;
        None once it has been answered 401."""
        if self.app.auth is None:
            return OPEN, None
        token = token_from_scope(scope)
        try:
            return self.app.auth.check(token), token
        except AuthError:
            await respond_json(send, 401, {"error": "a valid bearer token is required"})
            return None

    async def serve(self, scope: Scope, send: Send) -> None:
        granted = await self._grant(scope, send)
        if granted is None:
            return
        grant, token = granted
        servers: list[dict[str, Any]] = [self.collab(grant)]
        relays: list[dict[str, Any]] = [{} for _ in self.relays]
        async with anyio.create_task_group() as tg:
            for index, url in enumerate(self.relays):
                tg.start_soon(self._fill, relays, index, url, token)
        await respond_json(send, 200, {"time": time.time(), "servers": servers + relays})

    async def serve_rooms(self, scope: Scope, send: Send) -> None:
        """``GET /api/rooms``: the loaded rooms the token covers, most connections first."""
        granted = await self._grant(scope, send)
        if granted is None:
            return
        query = parse_qs(scope.get("query_string", b"").decode(errors="replace"))
        raw = query.get("limit", [str(ROOMS_LIMIT)])[-1]
        if not raw.isdigit() or not 1 <= int(raw) <= ROOMS_MAX:
            await respond_json(send, 400, {"error": f"limit must be 1..{ROOMS_MAX}"})
            return
        rooms = [
            room
            for room in self.app.rooms.rooms.values()
            if granted[0].allows(diagram_channel(room.name))
        ]
        listed = heapq.nsmallest(
            int(raw), rooms, key=lambda room: (-len(room.connections), room.name)
        )
        now = time.time()
        await respond_json(
            send,
            200,
            {
                "time": now,
                "started": self.started,
                "uptime": None if self.started is None else now - self.started,
                "total": len(rooms),
                "rooms": [
                    {
                        "name": room.name,
                        "connections": len(room.connections),
                        "updates": room.updates,
                        "locked": room.locked,
                    }
                    for room in listed
                ],
            },
        )

    def collab(self, grant: Grant) -> dict[str, Any]:
        """This server: health, counters and its busiest rooms (those ``grant`` covers)."""
        app = self.app
        ready, health = app.health()
        stats = app.stats
        rooms = [
            room for room in app.rooms.rooms.values() if grant.allows(diagram_channel(room.name))
        ]
        busiest = heapq.nlargest(
            BUSIEST, rooms, key=lambda room: (len(room.connections), room.updates)
        )
        return {
            "name": app.relay.catalog.service,
            "kind": "collab",
            "url": None,
            "ws_url": None,  # the page's own origin, /events
            "up": True,
            "ready": ready,
            "status": health["status"],
            "storage": health["storage"],
            "redis": health.get("redis"),
            "connections": stats.connections,
            "rooms": stats.rooms,
            "messages_in": stats.updates_in,
            "frames_out": stats.frames_out,
            "bytes_out": stats.bytes_out,
            "busiest": [
                {"name": room.name, "connections": len(room.connections), "count": room.updates}
                for room in busiest
            ],
        }

    async def _fill(
        self, out: list[dict[str, Any]], index: int, url: str, token: str | None
    ) -> None:
        out[index] = await self.relay(url, token)

    async def relay(self, url: str, token: str | None) -> dict[str, Any]:
        """One relay, as its ``/health/ready`` and ``/stats`` describe it, or down."""
        entry: dict[str, Any] = {
            "name": self._names.get(url, urlsplit(url).netloc),
            "kind": "relay",
            "url": url,
            "ws_url": websocket_url(url),
            "up": False,
            "ready": False,
        }
        client = self._client
        if client is None:
            entry["error"] = "the server is starting or stopping"
            return entry
        headers = {"authorization": f"Bearer {token}"} if token else {}
        try:
            with anyio.fail_after(RELAY_DEADLINE):  # httpx's timeout bounds each phase only
                health = await client.get(f"{url}/health/ready")
                stats = await client.get(f"{url}/stats", headers=headers)
        except TimeoutError:
            entry["error"] = f"no answer within {RELAY_DEADLINE:g} s"
            return entry
        except httpx.HTTPError as exc:
            entry["error"] = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            return entry
        entry["up"] = True
        entry["ready"] = health.status_code == 200
        body = json_object(health)
        entry["status"] = body.get("status", f"HTTP {health.status_code}")
        if "redis" in body:
            entry["redis"] = body["redis"]
        if isinstance(body.get("service"), str):
            entry["name"] = self._names[url] = body["service"]
        if stats.status_code != 200:
            reason = json_object(stats).get("error", "")
            entry["error"] = f"/stats: HTTP {stats.status_code} {reason}"
            return entry
        numbers = json_object(stats)
        entry.update(
            connections=numbers.get("connections"),
            channels=numbers.get("channels"),
            subscriptions=numbers.get("subscriptions"),
            messages_in=numbers.get("events_published"),
            frames_out=numbers.get("frames_out"),
            bytes_out=numbers.get("bytes_out"),
            busiest=[
                {
                    "name": c.get("channel"),
                    "connections": c.get("followers"),
                    "count": c.get("events"),
                }
                for c in numbers.get("busiest") or []
                if isinstance(c, dict)
            ],
        )
        return entry


def json_object(response: httpx.Response) -> dict[str, Any]:
    """A response's JSON object, or {} (a proxy's HTML error page, say)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
