"""One relay WebSocket: a reader that answers requests, a writer that drains the hub.

Everything a client receives goes through its one writer (the one every
:class:`net.connection.FanoutConnection` has): replies and replayed history
are queued in its outbox (ordered against the log, see
:meth:`FanoutLog.send_direct`), live events are read from the shared log at
its cursor. So a reply never overtakes nor interleaves with an event, and the
reader never blocks on a slow socket.

Every request gets exactly one reply: the dispatcher either queues its
response, or raises and the reader queues the error (a :class:`ProtocolError`
as is, anything else as INTERNAL_ERROR, logged here and never sent). The
exceptions are authentication failures, answered by closing with 4001 so a
client cannot probe for a valid token: a bad ``auth`` token, and a token that
has expired. Expiry is enforced on the connection, not only when the token is
presented: the connection closes with 4001 ("token expired") when its token's
``exp`` passes, even if the client sends nothing (it must not go on receiving
events), and any message that arrives after it (a clock that jumped) is not
handled. A new ``auth`` request before then replaces the token, and its expiry;
subscriptions the new token does not cover end with it (the reply lists them
as ``unsubscribed``), so a narrower token cannot keep a wider one's channels.

Requests are bounded by the token's channels as subscriptions are (FORBIDDEN,
the connection kept), whoever answers them: see :mod:`relays.scope`.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping, Sequence
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel

from net.asgi import Receive
from net.connection import FanoutConnection
from net.fanout import FanoutLog
from net.keepalive import Keepalives
from net.limits import ALLOWED, DROPPED, RateLimiter, TimeSlice, message_queue
from net.tokens import OPEN, UNAUTHORIZED, AuthError, Grant, wait_expired
from net.wire import Frame
from relays.hub import Entry, published_body
from relays.protocol import (
    ErrorCode,
    Ping,
    ProtocolError,
    Request,
    encode_error,
    encode_failure,
    encode_ping,
    encode_pong,
    encode_protocol_error,
    encode_response,
    parse_client_message,
)
from relays.scope import RecordFilter
from relays.stats import RelayStats

if TYPE_CHECKING:
    from relays.app import RelayApp

log = logging.getLogger("inkwire.relay")

# Seconds a relay reader may hold the loop before it yields (the /yjs reader's is
# net.limits.BUDGET, 1 ms). A quiet channel's event passes ~5 loop turns on its way in
# (hypercorn's read, its wait_for, the queue, our reader), and a flooder back with a full
# bucket takes a slice in each of them, plus hypercorn refilling the app queue with as
# many frames as the slice took: at 1 ms a turn was ~2 ms and the quiet p99 5-15 ms. A
# request is its own unit (no coalescing to lose), so a small slice costs only a
# checkpoint per few requests (docs/capacity.md, "Relay fairness: what held the loop").
SLICE = 0.0002


class RelayConnection(FanoutConnection[Entry]):
    stats: RelayStats

    def __init__(
        self, app: RelayApp, peer: str, *, batch: bool, grant: Grant | None = None
    ) -> None:
        member = app.hub.join(self._overflow)
        super().__init__(app.stats, member.subscriber)
        self.id = secrets.token_hex(8)
        # None: auth is on and no token came with the handshake; an ``auth`` request must
        self.grant = grant
        self.app = app
        self.hub = app.hub
        self.peer = peer
        self.batch = batch
        self.member = member
        self._limiter = RateLimiter(app.settings.rate_limit, app.settings.rate_burst)
        # set when an ``auth`` request replaces the grant (only with auth on: an Event is
        # ~0.5 KiB of every idle connection, see docs/capacity.md)
        self._regranted: anyio.Event | None = anyio.Event() if app.auth is not None else None

    def queue(self, text: str, *, after: int = 0) -> None:
        """Send ``text`` through the writer, after log position ``after``."""
        self.hub.log.send_direct(
            self.member.subscriber, Frame(text.encode(), text=True), after=after
        )

    def queue_frames(self, frames: Sequence[Frame], *, after: int) -> None:
        if not frames:
            return
        if self.batch:
            frames = [_joined(frames)]
        for frame in frames:
            self.hub.log.send_direct(self.member.subscriber, frame, after=after)

    def _start_tasks(self) -> None:
        if self.grant is None:
            self._spawn(self._auth_deadline)
        if self.app.auth is not None:
            self._spawn(self._expire)

    @property
    def keepalives(self) -> Keepalives | None:
        return self.app.keepalives

    def send_keepalive(self) -> None:
        """A server ``ping`` on a quiet line (existing clients dispatch only events).

        Our clients answer with a ``pong``; nobody has to. A client is never
        closed for staying silent: existing clients send nothing after their
        subscribes, so a dead peer is left to TCP, which these pings give
        something to fail on.
        """
        self.queue(encode_ping())

    async def _auth_deadline(self) -> None:
        await anyio.sleep(self.app.settings.auth_timeout)
        if self.grant is None:
            self.fail(UNAUTHORIZED, "no auth request in time")

    async def _expire(self) -> None:
        """Close with 4001 once the grant in force expires (a new ``auth`` may replace it)."""
        while True:
            grant = self.grant
            regranted = self._regranted
            assert regranted is not None  # this task runs only with auth on
            if grant is None:
                await regranted.wait()
                continue
            if await wait_expired(grant, regranted) and self.grant is grant:
                self.stats.error("UNAUTHORIZED")
                self.fail(UNAUTHORIZED, "token expired")
                return

    # --- reading ----------------------------------------------------------------

    async def read(self, receive: Receive) -> None:
        limit = self.app.settings.max_message_size
        max_outbox = self.hub.settings.max_outbox
        slice_: TimeSlice | None = None
        queue = message_queue(receive)
        while True:
            if queue is not None and not queue.qsize():
                # this receive() waits: a new turn of the loop begins after it, and with
                # it a new slice (an idle reader holds none, nor a float: ~0.1 KiB)
                slice_ = None
                started = 0.0
                message = await receive()
                started = perf_counter()
            else:
                # the slice counts from before receive(): handing over a queued message
                # is hypercorn's work done in this reader's turn
                started = perf_counter()
                message = await receive()
            if message["type"] == "websocket.disconnect":
                self._closed_by_peer(message)
                return
            text = message.get("text")
            size = len(text.encode()) if text is not None else len(message.get("bytes") or b"")
            del message  # an idle connection keeps nothing of its last message, nor its size
            if size > limit:
                self.fail(1009, f"message over {limit} bytes")
                return
            del size
            if len(self.member.subscriber.outbox) > max_outbox:
                self._overflow()  # it sends requests but does not read the replies
                return
            if self.grant is not None and self.grant.expired():
                self.stats.error("UNAUTHORIZED")
                self.fail(UNAUTHORIZED, "token expired")
                return
            verdict = self._limiter.take(perf_counter())
            if verdict != ALLOWED:
                if verdict == DROPPED:
                    self._error(ErrorCode.RATE_LIMITED, "too many messages: slow down")
                    # reading paused until a token is due: a flood costs at most the rate
                    await anyio.sleep(self._limiter.due())
                    continue
                self.fail(4008, "rate limit exceeded")
                return
            if text is None:
                self._error(ErrorCode.BAD_REQUEST, "binary frames are not part of the protocol")
                continue
            await self._handle(text)
            del text
            if slice_ is None:
                slice_ = TimeSlice(SLICE)
            if slice_.spent(perf_counter() - started):
                # hypercorn hands over a client's queued messages without a suspension in
                # between: a burst (a flooder back with a full bucket) must not hold the loop
                await anyio.lowlevel.checkpoint()

    def _error(self, code: ErrorCode, message: str) -> None:
        self.stats.error(code.value)
        self.queue(encode_error(code, message))

    async def _handle(self, text: str) -> None:
        try:
            message = parse_client_message(text)
        except ProtocolError as exc:
            self.stats.error(exc.code.value)
            self.queue(encode_protocol_error(exc))
            return
        if isinstance(message, Ping):
            self.queue(encode_pong(message))
        elif isinstance(message, Request):
            self.stats.requests += 1
            if message.event == "auth" or self.grant is None:
                self._authenticate(message)
                return
            try:
                await self._dispatch(message)
            except Exception as exc:
                if isinstance(exc, ProtocolError):
                    self.stats.error(exc.code.value)
                else:
                    self.stats.error(ErrorCode.INTERNAL_ERROR.value)
                    log.exception("request %r failed (connection %s)", message.event, self.id)
                self.queue(encode_failure(exc, message))
        # a Pong needs no answer

    def _authenticate(self, request: Request) -> None:
        """An ``auth`` request (any other first request on an unauthenticated connection fails).

        A bad token ends the connection with 4001 instead of answering, as a bad
        token in the handshake does: a client cannot probe for a valid one.
        """
        auth = self.app.auth
        if request.event != "auth":
            self.stats.error("UNAUTHORIZED")
            self.fail(UNAUTHORIZED, "authenticate first")
            return
        if auth is None:  # auth is off: nothing to check, everything allowed
            self.queue(encode_response(request, OPEN.describe()))
            return
        try:
            self.grant = auth.check(request.data.get("token"))
        except AuthError:
            self.stats.error("UNAUTHORIZED")
            self.fail(UNAUTHORIZED, "bad token")
            return
        if self._regranted is not None:
            self._regranted.set()
        self._regranted = anyio.Event()
        grant = self.grant
        dropped = sorted(c for c in self.member.channels if not grant.allows(c))
        for channel in dropped:
            self.hub.unsubscribe(self.member, channel)
        self.queue(encode_response(request, {**grant.describe(), "unsubscribed": dropped}))

    def _allow(self, channels: Sequence[str]) -> None:
        """FORBIDDEN unless the connection's token covers every channel."""
        grant = self.grant
        for channel in channels:
            if grant is None or not grant.allows(channel):
                raise ProtocolError(ErrorCode.FORBIDDEN, f"this token does not allow {channel}")

    def _in_scope(
        self, name: str, params: Mapping[str, Any], *, projection: bool = False
    ) -> RecordFilter | None:
        """FORBIDDEN unless the token covers what the request reads (see :mod:`relays.scope`)."""
        grant = self.grant
        if grant is None:  # never: requests are dispatched once authenticated
            raise ProtocolError(ErrorCode.FORBIDDEN, "authenticate first")
        return self.app.scopes.check(grant, name, params, projection=projection)

    async def _dispatch(self, request: Request) -> None:
        """Answer one request: hub requests, registered handlers, the projection, emits."""
        app, hub, name = self.app, self.hub, request.event
        handler = app.handlers.get(name)
        spec = app.catalog.request_index.get(name)
        data: dict[str, Any]
        if handler is None and name == "subscribe":
            channel = request.data.get("channel")
            self._allow([app.catalog.validate_channel(channel)])
            data, replay = await app.subscribe(self.member, channel, request.data.get("since"))
            head = hub.log.head
            self.queue(encode_response(request, data), after=head)
            self.queue_frames(replay, after=head)
            return
        if handler is None and name == "unsubscribe":
            data = hub.unsubscribe(self.member, request.data.get("channel"))
        elif handler is None and name == "publish":
            data = await self._publish(request.data)
        elif handler is not None:
            params = spec.validate(request.data) if spec is not None else request.data
            self._in_scope(name, params)
            data = dict(await handler(params) or {})
        elif spec is not None and hub.projection.answers(name):
            params = spec.validate(request.data)
            visible = self._in_scope(name, params, projection=True)
            data = hub.projection.answer(name, params, visible)
        elif spec is not None and spec.emits is not None:
            self._in_scope(name, request.data)
            payload, channels = app.catalog.prepare(spec.emits, request.data)
            self._allow(channels)
            (published,) = await app.publish_events([(spec.emits, channels, payload)])
            data = {
                "event": spec.emits,
                "published": [
                    {"channel": p.channel, "offset": p.offset, "epoch": p.epoch} for p in published
                ],
            }
        else:
            app.catalog.request_spec(name)  # UNKNOWN_REQUEST if the catalog has no such request
            raise ProtocolError(ErrorCode.UNKNOWN_REQUEST, f"{name} has no handler on this relay")
        self.queue(encode_response(request, data))

    async def _publish(self, data: Mapping[str, Any]) -> dict[str, Any]:
        """The ``publish`` request: ``POST /publish`` over this WebSocket.

        ``data`` is one event (``{"event", "data"}``) or ``{"events": [...]}``,
        checked whole before any is sent, with the same rights (a token with
        ``publish`` when auth is on) and the same answer. A service publishing at a
        steady rate saves an HTTP request per event: one frame in, one reply out.
        """
        app, grant = self.app, self.grant
        if grant is None or (app.auth is not None and not grant.publish):
            raise ProtocolError(ErrorCode.FORBIDDEN, "this token may not publish")
        items = data.get("events", [data]) if "events" in data or "event" in data else None
        if not isinstance(items, list):
            raise ProtocolError(
                ErrorCode.INVALID_PAYLOAD,
                'publish: data must be {"event", "data"} or {"events": [...]}',
            )
        checked = app.check_publish(items, grant)
        return published_body(checked, await app.publish_events(checked, read_own=False))

    # --- writing: net.connection's writer drains the hub's log from this client's cursor

    @property
    def log(self) -> FanoutLog[Entry]:
        return self.hub.log

    def _frames(self, start: int, entries: Sequence[Entry]) -> list[Frame]:
        frames = self.member.frames(start, entries)
        if self.batch and len(frames) > 1:
            return [_joined(frames)]
        return frames


def _joined(frames: Sequence[Frame]) -> Frame:
    """Several messages in one newline-delimited text frame (opt-in batching)."""
    if len(frames) == 1:
        return frames[0]
    return Frame(b"\n".join(frame.payload for frame in frames), text=True)
