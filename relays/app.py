"""The relay as a pure ASGI app, one per catalog.

Routes: ``WS /`` and ``/ws`` (the relay protocol), ``POST /publish`` (events
from other processes), ``GET /health/live``, ``/health/ready``, ``/metrics``,
and ``/stats`` (the live dashboard's numbers, see :mod:`relays.stats`).
The app owns its :class:`~relays.hub.Hub`; an embedding service publishes
through :attr:`RelayApp.broadcast` and may answer requests itself with
:meth:`RelayApp.handle`. Being plain ASGI, it can be mounted into a service's
own hypercorn app as well as served by :func:`relays.serve`.

Auth is off by default (the welcome says ``authenticated: false``); with
``auth_secret`` set, a token (``Authorization: Bearer``, ``?token=`` or a first
``auth`` request) is required, see :mod:`relays.auth`. With ``history_db``
(or a store passed in) history is kept in SQLite or PostgreSQL, see :mod:`relays.history`;
whoever hosts the app must then run :meth:`RelayApp.background`, as
:func:`relays.serve` and ``inkwire relay`` do.

Given a Redis link (``link=``, or ``redis_url`` for a link of its own) the
relay is one node of a cluster: events are numbered and ordered by Redis and
reach the subscribers of every node, see :mod:`cluster.relays` (imported only
then). Publishing then awaits Redis, so the embedding service publishes
through the broadcaster or :meth:`RelayApp.publish_events`; the synchronous
:meth:`RelayApp.publish` queues.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import anyio
from anyio.abc import TaskGroup
from prometheus_client import generate_latest

from net.asgi import Receive, Scope, Send, read_body, respond, respond_json
from net.hosting import accept_websocket, close_websocket, connection_closed, release_headers
from net.keepalive import Keepalives
from net.metrics import CONTENT_TYPE, WebSocketMetrics, registry
from net.tokens import OPEN, UNAUTHORIZED, Authenticator, AuthError, Grant, token_from_scope
from relays.broadcaster import Broadcaster
from relays.catalog import Catalog
from relays.connection import RelayConnection
from relays.history import RelayHistory
from relays.hub import Hub, HubSettings, Published, published_body
from relays.protocol import (
    BATCH_SUBPROTOCOL,
    ErrorCode,
    ProtocolError,
    RelayUnavailable,
    Welcome,
)
from relays.scope import Scopes
from relays.stats import RelayStats, snapshot

if TYPE_CHECKING:
    from cluster.link import RedisLink
    from cluster.relays import RelayCluster
    from net.wire import Frame
    from relays.hub import Member
    from storage.databases import Database

log = logging.getLogger("inkwire.relay")

Handler = Callable[[dict[str, Any]], Awaitable[Mapping[str, Any] | None]]

WS_PATHS = frozenset(("/", "/ws"))
RESUBSCRIBE = 4010  # clustered: events on a followed channel may be missing; reconnect with since

Validated = tuple[str, Sequence[str], Mapping[str, Any]]  # (event, channels, payload)


@dataclass(frozen=True)
class RelaySettings:
    hub: HubSettings = field(default_factory=HubSettings)
    max_message_size: int = 1 << 20  # a bigger client frame closes with 1009
    max_publish_body: int = 8 << 20  # bytes of one POST /publish
    close_timeout: float = 1.0  # for the closing handshake a stuck client may never finish
    auth_secret: str | None = None  # HS256 secret of client tokens; None: auth off
    auth_timeout: float = 10.0  # seconds to send an ``auth`` request when no token came
    history_db: str | None = None  # SQLite file or PostgreSQL URL for history (restarts)
    max_connections: int = 10_000  # more are refused with 1013 (server full)
    rate_limit: float = 200.0  # messages per second a connection may send, sustained
    rate_burst: int = 400  # ... and at once; past that RATE_LIMITED, then close 4008
    keepalive_interval: float | None = 25.0  # a ``ping`` after this many quiet seconds; None: off
    redis_url: str | None = None  # a cluster's Redis (redis://host:port/db); None: one node


class RelayApp:
    """One catalog's relay: hub, connections, handlers, HTTP endpoints."""

    def __init__(
        self,
        catalog: Catalog,
        settings: RelaySettings | None = None,
        *,
        store: Database | None = None,
        link: RedisLink | None = None,
        websocket_metrics: WebSocketMetrics | None = None,
    ) -> None:
        """``websocket_metrics``: where the dashboards' ``websocket_*`` metrics go (an app
        that mounts the relay shares its own); by default this relay's registry."""
        self.catalog = catalog
        self.settings = settings or RelaySettings()
        self.hub = Hub(catalog, self.settings.hub)
        secret = self.settings.auth_secret
        self.auth = Authenticator(secret) if secret else None
        self._own_store = store is None and self.settings.history_db is not None
        if store is None and self.settings.history_db is not None:
            from storage.databases import open_store  # only relays with --db need pycrdt & co

            store = open_store(self.settings.history_db)
        self.store = store
        self.history = (
            RelayHistory(store.relay_events, catalog.service) if store is not None else None
        )
        if self.history is not None:
            self.history.attach(self.hub)
        self._own_link = link is None and self.settings.redis_url is not None
        if link is None and self.settings.redis_url is not None:
            from cluster.link import RedisLink

            link = RedisLink(self.settings.redis_url)
        self.cluster: RelayCluster | None = None
        if link is not None:
            if self.history is not None:
                raise ValueError("a clustered relay keeps its history in Redis, not in a database")
            from cluster.relays import RelayCluster

            self.cluster = RelayCluster(self.hub, link, self._resubscribe_followers)
        self.stats = RelayStats()
        self.registry = registry(self.stats, "inkwire_relay", {"service": catalog.service})
        self.websocket_metrics = websocket_metrics or WebSocketMetrics(
            self.registry, catalog.service
        )
        self.hub.metrics = self.websocket_metrics
        self.handlers: dict[str, Handler] = {}
        self.connections: set[RelayConnection] = set()
        interval = self.settings.keepalive_interval
        # one timer for every connection's quiet line (see net.keepalive)
        self.keepalives = Keepalives(interval) if interval else None
        self.ready = True  # also when mounted in an app that sends no lifespan events
        self._closed: anyio.Event | None = None  # set when the last connection ends
        self._tasks: TaskGroup | None = None  # while the lifespan runs
        self.broadcast = Broadcaster(catalog, self._broadcast)
        self.scopes = Scopes(catalog)  # what a token lets each request read
        # every connection's first message, encoded once but for its ids and time
        self.welcome = Welcome(
            server=catalog.service,
            limits={
                "max_message_size": self.settings.max_message_size,
                "max_subscriptions": self.settings.hub.max_subscriptions,
                "history_size": self.settings.hub.history_size,
                "history_age": self.settings.hub.history_age,
                "keepalive_interval": self.settings.keepalive_interval,
            },
        )

    async def _broadcast(
        self, event: str, channels: list[str], payload: dict[str, Any]
    ) -> list[Published]:
        return (await self.publish_events([(event, channels, payload)]))[0]

    def publish(self, event: str, data: object) -> list[Published]:
        """Validate and publish an event by name (INVALID_PAYLOAD if refused).

        Clustered, the event is queued and published in order by
        :meth:`background` once Redis has numbered it, so nothing is returned
        (``[]``); await :meth:`publish_events` to learn where it lands.
        """
        if self.cluster is None:
            return self.hub.publish(event, data)
        payload, channels = self.catalog.prepare(event, data)
        self.cluster.publish_later(event, channels, payload)
        return []

    async def publish_events(
        self, events: Sequence[Validated], *, read_own: bool = True
    ) -> list[list[Published]]:
        """Publish validated events as one run; RelayUnavailable if clustered and Redis is away.

        Clustered, this returns once Redis has numbered the events and, with
        ``read_own``, once this node has applied them too (its clients and
        projection have them: a service reads its own writes).
        """
        if self.cluster is None:
            return self.hub.publish_many(events)
        return await self.cluster.publish(events, read_own=read_own)

    async def subscribe(
        self, member: Member, channel: object, since: object
    ) -> tuple[dict[str, Any], list[Frame]]:
        """The subscribe request: the response data and the frames to replay first."""
        if self.cluster is None:
            return self.hub.subscribe(member, channel, since)
        return await self.cluster.subscribe(member, channel, since)

    def _resubscribe_followers(self) -> None:
        """This node may have missed events: its followers reconnect and recover."""
        for conn in list(self.connections):
            if conn.member.channels:
                conn.fail(RESUBSCRIBE, "events may be missing: resubscribe with since")

    def handle(self, name: str) -> Callable[[Handler], Handler]:
        """``@relay.handle("trigger_render")``: answer a request from the service's state.

        The handler gets the request's data (validated against the catalog's
        params when the catalog knows the request) and returns the response
        data; raising :class:`ProtocolError` answers with that error.
        """

        def register(handler: Handler) -> Handler:
            self.handlers[name] = handler
            return handler

        return register

    async def background(self) -> None:
        """The app's own tasks, until cancelled: the history writer (then a last flush);
        clustered, the publisher of queued events and the Redis link if the app made it."""
        try:
            async with anyio.create_task_group() as tg:
                if self.cluster is not None:
                    if self._own_link:
                        await tg.start(self.cluster.link.run)
                    tg.start_soon(self.cluster.run)
                if self.history is not None:
                    tg.start_soon(self.history.run)
        finally:
            if self._own_store and self.store is not None:
                self.store.close()

    # --- ASGI --------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "websocket":
            if scope["path"] in WS_PATHS or scope["path"] == self.catalog.path:
                # the handler: _join, then the connection is read in this very frame, so an
                # idle one holds no handler coroutine besides it (docs/capacity.md)
                conn = await self._join(scope, receive, send)
                if conn is None:
                    return
                try:
                    async with conn.serving(send, self._tasks):
                        await conn.read(receive)
                finally:
                    self._left(conn)
                if not conn.peer_closed:
                    await close_websocket(
                        receive,
                        send,
                        conn.close_code,
                        conn.close_reason,
                        grace=self.settings.close_timeout,
                        flooding=conn.close_code == 4008,
                    )
            else:
                await receive()
                await send({"type": "websocket.close", "code": 4404, "reason": "no such route"})
        elif kind == "http":
            await self._http(scope, receive, send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        # the connections' own tasks (their writers) run in the lifespan's task group
        # (see net.connection); without a lifespan each connection has a group of its own
        async with anyio.create_task_group() as tg:
            self._tasks = tg
            try:
                while True:
                    message = await receive()
                    if message["type"] == "lifespan.startup":
                        self.ready = True
                        await send({"type": "lifespan.startup.complete"})
                    elif message["type"] == "lifespan.shutdown":
                        self.begin_shutdown()
                        await send({"type": "lifespan.shutdown.complete"})
                        return
            finally:
                self._tasks = None
                tg.cancel_scope.cancel()  # what is left: connections the server gave up on

    @property
    def max_message_size(self) -> int:
        return self.settings.max_message_size

    def begin_shutdown(self) -> None:
        """Stop taking work and close every client with 1001 (going away)."""
        self.ready = False
        for conn in list(self.connections):
            conn.fail(1001, "server shutting down")

    async def wait_all_closed(self) -> None:
        while self.connections:
            self._closed = anyio.Event()
            await self._closed.wait()

    async def _join(self, scope: Scope, receive: Receive, send: Send) -> RelayConnection | None:
        """Accept a WebSocket and add its connection; None: refused (and closed) or gone.

        ``__call__`` then reads it in its own frame (see there).
        """
        if (await receive())["type"] != "websocket.connect":
            return None
        negotiated = BATCH_SUBPROTOCOL in (scope.get("subprotocols") or [])
        batch = negotiated or _batch_query(scope.get("query_string", b""))
        await accept_websocket(send, BATCH_SUBPROTOCOL if negotiated else None)
        close = partial(close_websocket, receive, send, grace=self.settings.close_timeout)
        if not self.ready:
            await close(1001, "shutting down")
            return None
        if len(self.connections) >= self.settings.max_connections:
            self.stats.error("SERVER_FULL")
            await close(1013, "server full")
            return None
        # accepted first so a refusal is a 4001 close the client can read, not an HTTP 403
        grant: Grant | None = OPEN
        if self.auth is not None:
            token = token_from_scope(scope)
            try:
                grant = self.auth.check(token) if token is not None else None
            except AuthError:
                self.stats.error("UNAUTHORIZED")
                await close(UNAUTHORIZED, "bad token")
                return None
        client = scope.get("client") or ("?", 0)
        conn = RelayConnection(self, f"{client[0]}:{client[1]}", batch=batch, grant=grant)
        self.connections.add(conn)
        stats = self.stats
        stats.connections += 1
        stats.connections_total += 1
        self.websocket_metrics.connected()
        conn.queue(
            self.welcome.encode(conn.id, authenticated=grant is not None and grant.authenticated)
        )
        release_headers(scope)
        return conn

    def _left(self, conn: RelayConnection) -> None:
        self.hub.leave(conn.member)
        self.connections.discard(conn)
        if not self.connections and self._closed is not None:
            self._closed.set()
        self.stats.connections -= 1
        connection_closed(len(self.connections))

    # --- HTTP ----------------------------------------------------------------------

    async def _http(self, scope: Scope, receive: Receive, send: Send) -> None:
        path, method = scope["path"], scope["method"]
        if path == "/publish":
            if method != "POST":
                await respond_json(send, 405, {"error": "use POST"})
            else:
                await self._publish(scope, receive, send)
        elif method not in ("GET", "HEAD"):
            await respond_json(send, 405, {"error": "method not allowed"})
        elif path == "/health/live":
            await respond_json(send, 200, {"status": "live"})
        elif path == "/health/ready":
            ready = self.ready
            body: dict[str, Any] = {
                "status": "",
                "service": self.catalog.service,
                "connections": len(self.connections),
            }
            if self.cluster is not None:  # a node that cannot publish is not ready
                body["redis"] = "ok" if self.cluster.link.up else "failing"
                ready = ready and self.cluster.link.up
            body["status"] = "ready" if ready else "not ready"
            await respond_json(send, 200 if ready else 503, body)
        elif path == "/metrics":
            self.stats.events_published = self.hub.events_published
            self.stats.subscriptions = self.hub.subscriptions
            await respond(send, 200, generate_latest(self.registry), CONTENT_TYPE)
        elif path == "/stats":
            grant = await self._http_grant(scope, send)
            if grant is not None:
                await respond_json(send, 200, snapshot(self, grant))
        else:
            await respond_json(send, 404, {"error": "not found"})

    async def _http_grant(self, scope: Scope, send: Send) -> Grant | None:
        """What an HTTP request's bearer token grants (everything with auth off); None
        once it has been answered 401."""
        if self.auth is None:
            return OPEN
        try:
            return self.auth.check(token_from_scope(scope))
        except AuthError:
            await respond_json(send, 401, {"error": "a valid bearer token is required"})
            return None

    async def _publish(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /publish``: ``{"event", "data"}`` or a list; all validated before any is sent.

        With auth on: 401 without a valid token, 403 without publish rights or
        for an event landing on a channel the token does not cover.
        """
        grant = await self._http_grant(scope, send)
        if grant is None:
            return
        if self.auth is not None and not grant.publish:
            await respond_json(send, 403, {"error": "this token may not publish"})
            return
        body = await read_body(receive, self.settings.max_publish_body)
        if body is None:
            await respond_json(send, 413, {"error": "body too large"})
            return
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):
            await respond_json(send, 400, {"error": "body is not valid JSON"})
            return
        try:
            checked = self.check_publish(parsed if isinstance(parsed, list) else [parsed], grant)
        except ProtocolError as exc:
            if exc.code is ErrorCode.BAD_REQUEST:
                await respond_json(send, 400, {"error": exc.message})
            else:
                status = 403 if exc.code is ErrorCode.FORBIDDEN else 422
                await respond_json(
                    send, status, {"error": exc.message, "error_code": exc.code.value}
                )
            return
        try:
            # 202 Accepted: numbered (and durable) in Redis; applied here a moment later
            published = await self.publish_events(checked, read_own=False)
        except RelayUnavailable as exc:
            await respond_json(send, 503, {"error": exc.message, "error_code": exc.code.value})
            return
        await respond_json(send, 202, published_body(checked, published))

    def check_publish(self, items: Sequence[object], grant: Grant) -> list[Validated]:
        """Events to publish (``{"event", "data"}`` each) validated whole, for ``POST
        /publish`` and the ``publish`` request alike; ProtocolError naming the item:
        BAD_REQUEST (not such an object), the catalog's refusal, or FORBIDDEN (a
        channel the token does not cover)."""
        checked: list[Validated] = []
        for index, item in enumerate(items):
            if not isinstance(item, dict) or not isinstance(item.get("event"), str):
                raise ProtocolError(
                    ErrorCode.BAD_REQUEST,
                    f"item {index}: expected an object with 'event' (string) and 'data'",
                )
            try:
                payload, channels = self.catalog.prepare(item["event"], item.get("data"))
            except ProtocolError as exc:
                raise ProtocolError(exc.code, f"item {index}: {exc.message}") from None
            denied = [channel for channel in channels if not grant.allows(channel)]
            if denied:
                raise ProtocolError(
                    ErrorCode.FORBIDDEN, f"item {index}: this token may not publish on {denied[0]}"
                )
            checked.append((item["event"], channels, payload))
        return checked


def _batch_query(query_string: bytes) -> bool:
    """``?batch=1`` (or ``true``): newline-delimited batches without the subprotocol."""
    if not query_string:  # most clients: nothing to parse
        return False
    query = parse_qs(query_string.decode("latin-1"))
    return query.get("batch", [""])[0] in ("1", "true")
