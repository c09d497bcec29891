"""``RelayClient``: an async client of inkwire's JSON event relays (asyncio or trio).

It speaks the relay protocol directly (docs/relay-protocol.md) and imports
nothing from the server packages, so a script or service can use it against
any relay, ours or one written to the same protocol::

    async with RelayClient("ws://127.0.0.1:8693/") as client:
        await client.subscribe("adapter:a1")
        status = await client.request("get_adapter_status", {"adapter_id": "a1"})
        async for item in client:
            if isinstance(item, Gap):
                ...  # events on item.channel were lost; reload state
            else:
                print(item.event, item.data)

Why it is built this way:

- **One task group, owned by the context manager.** A supervisor task holds
  the WebSocket (httpx-ws sessions must be entered and left in one task),
  reads every frame in order and reconnects; everything else (``request``,
  ``subscribe``) only sends and waits. Leaving the block cancels it all.
- **Nothing missed across reconnects.** The client remembers, per
  subscribed channel, the last ``(offset, epoch)`` it delivered (or the
  channel's head when it subscribed). After a reconnect (exponential
  backoff with jitter, so a restarted relay is not stampeded) it
  resubscribes with ``since`` and the relay replays what was missed before
  live events. Replays overlapping what was delivered are dropped by offset,
  so each event is yielded exactly once.
- **Loss is reported, never silent.** When the relay answers
  ``recovered: false`` (history exceeded, relay restarted), a :class:`Gap`
  item is put in the event stream *before* the channel's next event: the
  consumer sees where the hole is, in order, without a callback racing the
  iteration.
- **Bounded.** Events wait in a bounded buffer; a consumer that stops
  reading stops the reader, the relay eventually closes the connection as a
  slow consumer, and the reconnect recovers from history. Every wait
  (connect, welcome, request) has a timeout.
"""

from __future__ import annotations

import itertools
import json
import logging
import random
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any, Self

import anyio
import anyio.abc
import httpx
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from httpx_ws import (
    AsyncWebSocketSession,
    HTTPXWSException,
    WebSocketDisconnect,
    WebSocketUpgradeError,
    aconnect_ws,
)

log = logging.getLogger("inkwire.client")

BATCH_SUBPROTOCOL = "inkwire.batch"
WELCOME_EVENT = "session.created"
UNAUTHORIZED = 4001  # the relay refused our credentials: retrying cannot help
STABLE_SECONDS = 5.0  # a connection that lasted this long resets the backoff


class RelayError(Exception):
    """An error reply from the relay (``error_code``/``error_message``), e.g. NOT_FOUND."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class RelayConnectionError(RelayError):
    """The connection is gone (and will not come back, or a request was cut by it)."""

    def __init__(self, message: str) -> None:
        super().__init__("CONNECTION", message)


@dataclass(frozen=True, slots=True)
class Event:
    """One event as the relay sent it; ``raw`` is the whole envelope."""

    event: str
    room: str | None
    data: dict[str, Any]
    offset: int | None
    epoch: str | None
    timestamp: str | None
    id: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, slots=True)
class Gap:
    """Events on ``channel`` after ``(since_offset, since_epoch)`` are lost.

    The relay could not replay them (its history no longer holds them, or it
    restarted with a new epoch). Events from ``offset`` + 1 of ``epoch`` on
    are delivered as usual; a consumer keeping derived state should reload it.
    """

    channel: str
    since_offset: int
    since_epoch: str
    offset: int
    epoch: str


Item = Event | Gap


@dataclass(eq=False)
class _Subscription:
    """What the client remembers of one channel across connections."""

    channel: str
    offset: int | None = None  # last delivered offset (or the head when we subscribed)
    epoch: str | None = None
    sent_on: object = None  # the connection a subscribe was sent on
    confirmed_on: object = None  # the connection that confirmed it
    error: RelayError | None = None
    changed: anyio.Event = field(default_factory=anyio.Event)

    @property
    def since(self) -> dict[str, Any] | None:
        if self.offset is None or self.epoch is None:
            return None
        return {"offset": self.offset, "epoch": self.epoch}

    def notify(self) -> None:
        """Wake ``subscribe`` calls waiting on this channel (confirmed, refused, or cut)."""
        self.changed.set()
        self.changed = anyio.Event()


OnReply = Callable[[dict[str, Any]], Awaitable[None]]


@dataclass(eq=False)
class _Pending:
    """A request waiting for its one reply; ``on_reply`` runs in the reader, in order."""

    done: anyio.Event = field(default_factory=anyio.Event)
    reply: dict[str, Any] | None = None
    lost: bool = False
    on_reply: OnReply | None = None


class RelayClient(anyio.AsyncContextManagerMixin):
    """A relay connection that reconnects and resubscribes by itself (see the module doc).

    ``token`` is sent as ``Authorization: Bearer``. ``batch`` asks the relay
    for several newline-delimited messages per frame (fewer frames under
    load; the client splits them). ``backoff`` is ``(first, max)`` seconds
    between reconnect attempts, doubled after each connection that failed or
    lasted under 5 s, with jitter. ``max_attempts`` bounds such attempts in a
    row (``None``: forever). A token the relay refuses (close 4001) ends the
    client at once: retrying cannot fix it.
    """

    def __init__(
        self,
        url: str,
        *,
        token: str | None = None,
        batch: bool = False,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 5.0),
        max_attempts: int | None = None,
        connect_timeout: float = 10.0,
        ping_interval: float | None = 20.0,
        buffer: int = 1000,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self.url = url
        self.verify = verify  # for wss://: httpx's verify (a CA file, an SSLContext, True)
        self.token = token
        self.batch = batch
        self.reconnect = reconnect
        self.backoff = backoff
        self.max_attempts = max_attempts
        self.connect_timeout = connect_timeout
        self.ping_interval = ping_interval
        self.buffer = buffer
        self.session: dict[str, Any] = {}  # the welcome's data (connection_id, limits, ...)
        self.connections = 0  # how many times a welcome was received
        self._ids = itertools.count(1)
        self._subs: dict[str, _Subscription] = {}
        self._pending: dict[str, _Pending] = {}
        self._ws: AsyncWebSocketSession | None = None
        self._connected = anyio.Event()
        self._failure: RelayConnectionError | None = None
        self._closing = False
        self._send: MemoryObjectSendStream[Item]
        self._receive: MemoryObjectReceiveStream[Item]

    # --- lifetime ------------------------------------------------------------------

    @asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[Self]:
        self._send, self._receive = anyio.create_memory_object_stream[Item](self.buffer)
        try:
            async with self._send, self._receive, anyio.create_task_group() as tg:
                await tg.start(self._supervise)
                try:
                    yield self
                finally:
                    self._closing = True
                    tg.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            raise _single(group) from None

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def _supervise(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        """Connect, read until the connection ends, reconnect; the first connect must work."""
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        attempts = 0
        started = False
        async with httpx.AsyncClient(
            headers=headers, timeout=self.connect_timeout, verify=self.verify
        ) as http:
            while True:
                began = anyio.current_time()
                try:
                    await self._connection(http, task_status if not started else None)
                except _Fatal as exc:
                    self._fail(str(exc))
                    if not started:
                        raise RelayConnectionError(str(exc)) from None
                    return
                except (
                    OSError,
                    HTTPXWSException,
                    httpx.HTTPError,
                    TimeoutError,
                    RelayConnectionError,
                ) as exc:
                    reason = _describe(exc)
                    if not started:
                        raise RelayConnectionError(
                            f"cannot connect to {self.url}: {reason}"
                        ) from None
                    log.info("relay connection failed: %s", reason)
                finally:
                    started = started or self.connections > 0
                    self._lost()
                if not started:  # closed by the relay before its welcome (e.g. a wrong path)
                    raise RelayConnectionError(f"cannot connect to {self.url}: closed at once")
                # failures in a row; only a connection that lasted resets it, so a relay
                # that welcomes and drops every client is not hammered either
                lasted = anyio.current_time() - began >= STABLE_SECONDS
                attempts = 0 if lasted else attempts + 1
                if not self.reconnect:
                    self._fail("connection closed")
                    return
                if self.max_attempts is not None and attempts >= self.max_attempts:
                    self._fail(f"gave up after {attempts} failed reconnects")
                    return
                await anyio.sleep(self._delay(attempts))

    def _delay(self, attempts: int) -> float:
        """Exponential backoff with jitter: about ``first * 2**n``, capped, times 0.5 to 1."""
        first, cap = self.backoff
        delay: float = min(cap, first * 2.0 ** min(attempts, 32))
        return delay * random.uniform(0.5, 1.0)

    async def _connection(
        self, http: httpx.AsyncClient, task_status: anyio.abc.TaskStatus[None] | None
    ) -> None:
        """One connection's life: handshake, welcome, resubscribe, then read it to the end.

        The handshake is bounded by the HTTP client's timeout, the welcome by
        ``connect_timeout``.
        """
        protocols = [BATCH_SUBPROTOCOL] if self.batch else None
        try:
            async with aconnect_ws(
                self.url,
                http,
                subprotocols=protocols,
                keepalive_ping_interval_seconds=self.ping_interval,
                keepalive_ping_timeout_seconds=self.ping_interval,
                max_message_size_bytes=1 << 20,
                session_class=AsyncWebSocketSession,
            ) as ws:
                try:
                    await self._session(ws, task_status)
                except WebSocketDisconnect as exc:
                    if exc.code == UNAUTHORIZED:
                        raise _Fatal(f"unauthorized: {exc.reason or 'token refused'}") from None
                    if self._ws is None:
                        raise  # refused before the welcome: a failed attempt
                    log.info("relay closed the connection: %s %s", exc.code, exc.reason or "")
                finally:
                    self._ws = None
        except BaseExceptionGroup as group:  # httpx-ws wraps what leaves its task group
            raise _single(group) from None

    async def _session(
        self, ws: AsyncWebSocketSession, task_status: anyio.abc.TaskStatus[None] | None
    ) -> None:
        with anyio.fail_after(self.connect_timeout):
            text = await ws.receive_text()
        try:
            welcome = json.loads(text)
        except ValueError:
            welcome = None
        if (
            not isinstance(welcome, dict)
            or welcome.get("type") != "event"
            or welcome.get("event") != WELCOME_EVENT
        ):
            raise _Fatal(f"{self.url} is not an inkwire relay (no welcome)")
        self.session = dict(welcome.get("data") or {})
        self.connections += 1
        self._ws = ws
        for sub in list(self._subs.values()):
            if sub.sent_on is not ws:
                await self._send_subscribe(ws, sub)
        self._connected.set()
        if task_status is not None:
            task_status.started()
        await self._read(ws)

    def _lost(self) -> None:
        """The connection ended: requests in flight fail, later ones wait for the next one."""
        self._ws = None
        if self._connected.is_set():
            self._connected = anyio.Event()
        for pending in self._pending.values():
            pending.lost = True
            pending.done.set()
        self._pending.clear()
        for sub in self._subs.values():
            sub.notify()

    def _fail(self, reason: str) -> None:
        """No more connections: waiters and the event stream end with this reason."""
        self._failure = RelayConnectionError(reason)
        self._connected.set()  # wake requests waiting for a connection; they see the failure
        for sub in self._subs.values():
            sub.notify()
        self._send.close()

    # --- reading ---------------------------------------------------------------------

    async def _read(self, ws: AsyncWebSocketSession) -> None:
        while True:
            frame = await ws.receive_text()
            for line in frame.split("\n"):  # batched frames: one message per line
                if not line.strip():
                    continue
                try:
                    message = json.loads(line)
                except ValueError:
                    log.warning("relay sent a frame that is not JSON; ignored")
                    continue
                if isinstance(message, dict):
                    await self._dispatch(ws, message)

    async def _dispatch(self, ws: AsyncWebSocketSession, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "event":
            await self._event(message)
        elif kind in ("response", "error", "pong"):
            pending = self._pending.pop(str(message.get("correlation_id")), None)
            if pending is None:
                if kind == "error":
                    log.warning(
                        "relay error: %s %s",
                        message.get("error_code"),
                        message.get("error_message"),
                    )
                return
            pending.reply = message
            if pending.on_reply is not None:
                await pending.on_reply(message)
            pending.done.set()
        elif kind == "ping":
            pong: dict[str, Any] = {"type": "pong", "correlation_id": message.get("id"), "data": {}}
            await ws.send_text(json.dumps(pong))

    async def _event(self, message: dict[str, Any]) -> None:
        room, offset, epoch = message.get("room"), message.get("offset"), message.get("epoch")
        sub = self._subs.get(room) if isinstance(room, str) else None
        if sub is not None and isinstance(offset, int) and isinstance(epoch, str):
            if sub.epoch == epoch and sub.offset is not None and offset <= sub.offset:
                return  # already delivered (a replay overlapping what we had)
            sub.offset, sub.epoch = offset, epoch
        data = message.get("data")
        await self._send.send(
            Event(
                event=str(message.get("event")),
                room=room if isinstance(room, str) else None,
                data=data if isinstance(data, dict) else {},
                offset=offset if isinstance(offset, int) else None,
                epoch=epoch if isinstance(epoch, str) else None,
                timestamp=message.get("timestamp"),
                id=message.get("id"),
                raw=message,
            )
        )

    # --- requests ----------------------------------------------------------------------

    async def _send_request(
        self,
        ws: AsyncWebSocketSession,
        event: str,
        data: dict[str, Any],
        on_reply: OnReply | None = None,
        kind: str = "request",
    ) -> _Pending:
        message_id = f"c{next(self._ids)}"
        pending = self._pending[message_id] = _Pending(on_reply=on_reply)
        message = {"type": kind, "event": event, "data": data, "id": message_id}
        try:
            await ws.send_text(json.dumps(message))
        except (HTTPXWSException, OSError, RuntimeError):  # the socket went as we wrote
            self._pending.pop(message_id, None)
            raise RelayConnectionError("connection lost before the request was sent") from None
        return pending

    async def _connection_now(self) -> AsyncWebSocketSession:
        while True:
            if self._failure is not None:
                raise self._failure
            if self._ws is not None:
                return self._ws
            await self._connected.wait()

    async def request(
        self,
        event: str,
        data: dict[str, Any] | None = None,
        timeout: float = 5,  # noqa: ASYNC109 -- the protocol's per-request deadline
    ) -> Any:
        """Send a request and return the response's ``data``.

        Raises :class:`RelayError` for an error reply, :class:`RelayConnectionError`
        if the connection dropped before the reply (the request may or may not
        have been handled: it is not resent), ``TimeoutError`` after ``timeout``.
        """
        with anyio.fail_after(timeout):
            ws = await self._connection_now()
            pending = await self._send_request(ws, event, data or {})
            await pending.done.wait()
        return _result(pending)

    async def ping(self, timeout: float = 5) -> float:  # noqa: ASYNC109
        """A protocol-level ping; returns the round trip in seconds."""
        with anyio.fail_after(timeout):
            start = anyio.current_time()
            ws = await self._connection_now()
            pending = await self._send_request(ws, "ping", {}, kind="ping")
            await pending.done.wait()
        _result(pending)
        return anyio.current_time() - start

    async def subscribe(
        self,
        channel: str,
        *,
        since: tuple[int, str] | None = None,
        timeout: float = 5,  # noqa: ASYNC109 -- includes waiting out a reconnect
    ) -> None:
        """Follow ``channel`` from now (or from ``since = (offset, epoch)``), across reconnects.

        Returns once the relay confirmed it; an invalid or forbidden channel
        raises :class:`RelayError` and is forgotten. If the connection drops
        meanwhile, the reconnect subscribes it and this call still returns.
        """
        sub = self._subs.get(channel)
        if sub is None:
            sub = self._subs[channel] = _Subscription(channel)
            if since is not None:  # a followed channel already knows where it is
                sub.offset, sub.epoch = since
        with anyio.fail_after(timeout):
            while True:
                ws = await self._connection_now()
                if sub.error is not None:
                    raise sub.error
                if sub.confirmed_on is ws:
                    return
                changed = sub.changed
                if sub.sent_on is not ws:
                    # if the socket is going, the reconnect subscribes it; ``changed`` fires
                    with suppress(RelayConnectionError):
                        await self._send_subscribe(ws, sub)
                await changed.wait()

    async def _send_subscribe(self, ws: AsyncWebSocketSession, sub: _Subscription) -> _Pending:
        data: dict[str, Any] = {"channel": sub.channel}
        since = sub.since
        if since is not None:
            data["since"] = since
        sub.sent_on = ws

        async def on_reply(reply: dict[str, Any]) -> None:
            """Runs in the reader before any event that follows the reply."""
            if reply.get("type") != "response":
                if self._subs.get(sub.channel) is sub:
                    del self._subs[sub.channel]
                sub.error = RelayError(
                    str(reply.get("error_code")), str(reply.get("error_message"))
                )
                sub.notify()
                return
            answer = reply.get("data") or {}
            offset, epoch = answer.get("offset"), answer.get("epoch")
            if since is not None and answer.get("recovered") is False:
                gap = Gap(
                    sub.channel, since["offset"], since["epoch"], int(offset or 0), str(epoch)
                )
                await self._send.send(gap)
                sub.offset, sub.epoch = offset, epoch
            elif since is None:
                sub.offset, sub.epoch = offset, epoch
            sub.confirmed_on = ws
            sub.notify()

        return await self._send_request(ws, "subscribe", data, on_reply)

    async def unsubscribe(self, channel: str, timeout: float = 5) -> None:  # noqa: ASYNC109
        """Stop following ``channel`` (also after reconnects)."""
        if self._subs.pop(channel, None) is None:
            return
        with anyio.fail_after(timeout):
            ws = await self._connection_now()
            pending = await self._send_request(ws, "unsubscribe", {"channel": channel})
            await pending.done.wait()
        if not pending.lost:
            _result(pending)

    @property
    def channels(self) -> dict[str, tuple[int | None, str | None]]:
        """Each followed channel's last delivered ``(offset, epoch)``: persist it to resume."""
        return {name: (sub.offset, sub.epoch) for name, sub in self._subs.items()}

    # --- events ------------------------------------------------------------------------

    def events(self) -> AsyncIterator[Item]:
        """Events (and :class:`Gap` markers) in arrival order; ends only if the client gives up.

        Raises :class:`RelayConnectionError` once the connection is gone for
        good (``reconnect=False``, ``max_attempts`` reached, or unauthorized).
        One consumer: items are handed out once, whichever iterator asks.
        Breaking out of a loop and iterating again later loses nothing.
        """
        return _Items(self)

    def __aiter__(self) -> AsyncIterator[Item]:
        return _Items(self)


class _Items:
    """An iterator over the client's stream (a plain class: nothing to finalize on ``break``)."""

    def __init__(self, client: RelayClient) -> None:
        self.client = client

    def __aiter__(self) -> _Items:
        return self

    async def __anext__(self) -> Item:
        client = self.client
        try:
            return await client._receive.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            if client._failure is not None and not client._closing:
                raise client._failure from None
            raise StopAsyncIteration from None


class _Fatal(Exception):
    """A failure that reconnecting cannot fix."""


def _result(pending: _Pending) -> Any:
    if pending.lost or pending.reply is None:
        raise RelayConnectionError("connection lost before the reply")
    reply = pending.reply
    if reply.get("type") == "error":
        raise RelayError(str(reply.get("error_code")), str(reply.get("error_message")))
    return reply.get("data")


def _describe(exc: BaseException) -> str:
    if isinstance(exc, WebSocketDisconnect):
        return f"closed with {exc.code} {exc.reason or ''}".strip()
    if isinstance(exc, RelayConnectionError):
        return exc.message
    if isinstance(exc, WebSocketUpgradeError):
        return f"refused with HTTP {exc.response.status_code}"
    if isinstance(exc, TimeoutError):
        return "timed out"
    return str(exc) or type(exc).__name__


def _single(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a task group wrapped (callers expect theirs, not a group)."""
    leaves = list(_leaves(group))
    return leaves[0] if len(leaves) == 1 else group


def _leaves(exc: BaseException) -> Any:
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _leaves(inner)
    else:
        yield exc
