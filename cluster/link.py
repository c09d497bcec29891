"""One node's link to Redis: commands, one pub/sub connection, a heartbeat, health.

Redis is where nodes meet, never where a node waits: a node serves its own
clients whatever Redis does. So the link starts without Redis, reconnects by
itself with a capped backoff, and says whether it is up (``/health/ready``
reports it). Every command has a timeout below anything a client would
notice as a hang, and a heartbeat notices a Redis that stopped answering
(SIGSTOP, a network partition) even while nothing is being published: the
pub/sub read alone cannot tell silence from a frozen server.

Each time the link comes up (the first time included), the ``on_up``
callbacks run once its subscriptions are confirmed: whatever was published
while the link was down is gone, so users of the link catch up then (rooms
reload from the store, see :mod:`cluster.rooms`).

The heartbeat also keeps ``{prefix}:node:{id}`` alive with a TTL: other nodes
read it to tell whether this node is still there (its clients' presence is
removed once it is gone). And it stamps the node in ``{prefix}:nodes``, a
sorted set by last heartbeat, so that a node that dies is looked for even if
nobody ever heard from it: one that only committed to the store before dying
would otherwise leave its batch unseen until the room reloads for another
reason. Entries older than ``REGISTRY_SECONDS`` are trimmed by the sweeps.
"""

from __future__ import annotations

import contextlib
import logging
import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import anyio.abc
import redis.asyncio as aioredis
from redis.exceptions import RedisError

log = logging.getLogger("inkwire.cluster")

COMMAND_TIMEOUT = 2.0  # seconds for one command (and to connect)
HEARTBEAT_SECONDS = 1.0
NODE_TTL_SECONDS = 10  # a node whose key is this old is gone
READ_TIMEOUT = 1.0  # a pub/sub read returns this often with nothing, to check on the link
MAX_BACKOFF = 1.0  # seconds between reconnection attempts, at most
REGISTRY_SECONDS = 3600  # a node silent this long is forgotten by the registry

Handler = Callable[[bytes], None]
UpCallback = Callable[[], Awaitable[None]]


class RedisLink:
    """A node's connection to Redis, shared by everything on the node that needs it."""

    def __init__(self, url: str, *, prefix: str = "inkwire") -> None:
        self.url = url
        self.prefix = prefix
        self.node = secrets.token_hex(6)  # this process, as other nodes know it
        self.redis: aioredis.Redis = aioredis.Redis.from_url(
            url, socket_timeout=COMMAND_TIMEOUT, socket_connect_timeout=COMMAND_TIMEOUT
        )
        self.up = False
        self.last_error: str | None = None
        self._handlers: dict[bytes, Handler] = {}
        self._on_up: list[UpCallback] = []
        self._reconnect: anyio.Event | None = None  # set to drop the connection and start over

    def key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    def node_key(self, node: str) -> str:
        return self.key("node", node)

    def listen(self, channel: str, handler: Handler) -> None:
        """Call ``handler`` with each message published on ``channel`` (register before run)."""
        self._handlers[channel.encode()] = handler

    def on_up(self, callback: UpCallback) -> None:
        self._on_up.append(callback)

    def failed(self, exc: BaseException) -> None:
        """A command failed: the link is down until it has reconnected (and users caught up)."""
        if self.up:
            log.warning("redis %s: %s; reconnecting", self.url, exc)
        self.up = False
        self.last_error = str(exc) or type(exc).__name__
        if self._reconnect is not None:
            self._reconnect.set()

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Keep the link up until cancelled; starting does not wait for Redis."""
        task_status.started()
        backoff = 0.05
        try:
            while True:
                try:
                    await self._connected()
                    backoff = 0.05
                except (RedisError, OSError) as exc:
                    self.failed(exc)
                await anyio.sleep(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            self.up = False
            with anyio.CancelScope(shield=True), anyio.move_on_after(1):
                await self.redis.aclose()

    async def _connected(self) -> None:
        """One connection's life: subscribe, catch up, read until it fails."""
        pubsub = self.redis.pubsub()
        reconnect = self._reconnect = anyio.Event()
        try:
            if self._handlers:
                await pubsub.subscribe(*self._handlers)
                pending = len(self._handlers)
                with anyio.fail_after(COMMAND_TIMEOUT):
                    while pending:
                        message = await pubsub.get_message(timeout=READ_TIMEOUT)
                        if message is not None and message["type"] == "subscribe":
                            pending -= 1
            await self._beat()
            log.info("redis %s: connected as node %s", self.url, self.node)
            # up before the callbacks: what users publish while they catch up must go out
            self.up = True
            self.last_error = None
            for callback in self._on_up:
                await callback()
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._heartbeat)
                if self._handlers:
                    tg.start_soon(self._read, pubsub)
                await reconnect.wait()
                tg.cancel_scope.cancel()
        except TimeoutError as exc:
            raise RedisError("redis did not answer in time") from exc
        finally:
            self._reconnect = None
            shielded = anyio.CancelScope(shield=True)
            with shielded, anyio.move_on_after(1), contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()  # type: ignore[no-untyped-call]

    async def _read(self, pubsub: Any) -> None:
        handlers = self._handlers
        try:
            while True:
                message = await pubsub.get_message(
                    ignore_subscribe_messages=True, timeout=READ_TIMEOUT
                )
                if message is None or message["type"] != "message":
                    continue
                handler = handlers.get(message["channel"])
                if handler is not None:
                    try:
                        handler(message["data"])
                    except Exception:
                        log.exception("redis: handling a message on %r failed", message["channel"])
        except (RedisError, OSError) as exc:
            self.failed(exc)

    async def _heartbeat(self) -> None:
        try:
            while True:
                await anyio.sleep(HEARTBEAT_SECONDS)
                await self._beat()
        except (RedisError, OSError) as exc:
            self.failed(exc)

    async def _beat(self) -> None:
        """This node is alive: its key, and its stamp in the registry."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self.node_key(self.node), "1", ex=NODE_TTL_SECONDS)
            pipe.zadd(self.key("nodes"), {self.node: time.time()})
            await pipe.execute()

    async def registered_nodes(self, since: float) -> set[str]:
        """Every node that beat at or after ``since`` (a time), this one included (and the
        registry trimmed of nodes silent for ``REGISTRY_SECONDS``)."""
        key = self.key("nodes")
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, "-inf", time.time() - REGISTRY_SECONDS)
            pipe.zrangebyscore(key, since, "+inf")
            _, members = await pipe.execute()
        return {m.decode() if isinstance(m, bytes) else str(m) for m in members}

    async def nodes_alive(self, nodes: set[str]) -> set[str]:
        """Which of these nodes still have their key (raises when Redis cannot say)."""
        ordered = sorted(nodes)
        if not ordered:
            return set()
        values = await self.redis.mget([self.node_key(n) for n in ordered])
        return {node for node, value in zip(ordered, values, strict=True) if value is not None}
