"""One y-websocket connection: a reader, a writer and an awareness throttle.

The skeleton is :class:`net.connection.FanoutConnection`'s, the writer
included; this module reads the y-websocket messages into the room, says
which frames a run of the room's log makes for this client, and throttles
its awareness. Its tasks share one task group: the reader and the writer;
an awareness throttle only while awareness is held back; a task that closes
it with 4001 when its token expires. Any of them, or the room (a
slow consumer), or the server (shutdown) may end the connection with
:meth:`Connection.fail`, which records the close code and cancels the group;
the handler then closes it with :func:`net.hosting.close_websocket`,
bounded by a timeout because a client that stopped reading may never take
the close frame.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Sequence
from functools import partial
from time import perf_counter

import anyio
import anyio.lowlevel

from collab.auth import FORBIDDEN, diagram_channel
from collab.frames import RoomEntry
from collab.metrics import Stats
from collab.protocol import (
    AwarenessEntry,
    AwarenessMessage,
    MalformedMessage,
    QueryAwarenessMessage,
    SyncMessage,
    SyncType,
    parse_awareness_update,
    parse_message,
)
from collab.room import Room, RoomFull
from collab.rooms import Rooms, ServerFull
from net.asgi import Receive, Scope, Send
from net.connection import ConnectionSubscriber, FanoutConnection
from net.fanout import FanoutLog
from net.hosting import accept_websocket, close_websocket, release_headers
from net.keepalive import Keepalives
from net.limits import Pacer, TimeSlice, message_queue
from net.tokens import (
    OPEN,
    UNAUTHORIZED,
    Authenticator,
    AuthError,
    Grant,
    token_from_scope,
    wait_expired,
)
from net.wire import Frame
from storage.names import DIAGRAM_NAME, DIAGRAM_NAME_RULE

log = logging.getLogger("inkwire.connection")

_ids = itertools.count(1)
RATE_LIMITED = 4008  # a client that kept sending past its rate limit (as on the relays)
KEEPALIVE = Frame(b"\x01\x01\x00")  # an awareness update with no entries
BIG_FRAME = 1 << 20  # frames this large go out a few at a time (see Room.big_sends)
NO_CLIENTS: frozenset[int] = frozenset()


class Connection(FanoutConnection[RoomEntry]):
    stats: Stats
    big_frame = BIG_FRAME

    def __init__(
        self,
        room: Room,
        client: tuple[str, int],
        grant: Grant = OPEN,
        keepalives: Keepalives | None = None,
    ) -> None:
        super().__init__(room.stats, ConnectionSubscriber(self))
        self._keepalives = keepalives
        self.id = next(_ids)
        self.room = room
        self._client = client  # the scope's (host, port): the peer string only when logged
        self.grant = grant  # OPEN when auth is off
        # a token without publish: syncs and shares awareness, its updates are refused
        self.read_only = not grant.publish
        self.config = room.config
        # the awareness client ids it set: a set once there is one (most idle clients
        # that never send awareness, like bench/connections.py's, need none)
        self.client_ids: set[int] | frozenset[int] = NO_CLIENTS
        # held-back awareness: a dict only while there is some (an empty one is ~64 bytes
        # an idle connection need not hold, docs/capacity.md)
        self._awareness_pending: dict[int, AwarenessEntry] | None = None
        self._awareness_next = 0.0
        self._throttling = False  # a _throttle_awareness task is running
        self.user_name: str | None = None  # from its awareness state, for the history
        rate = self.config.rate_limit
        self._pacer = Pacer(rate, self.config.rate_burst) if rate else None

    def fail(self, code: int, reason: str, counter: str | None = None) -> bool:
        """End this connection with a close code, counting ``counter`` as the rejection."""
        ended = super().fail(code, reason)
        if ended and counter is not None:
            self.stats.reject(counter)
        return ended

    def _start_tasks(self) -> None:
        if self.grant.expires is not None:
            self._spawn(self._expire)

    @property
    def keepalives(self) -> Keepalives | None:
        return self._keepalives

    def send_keepalive(self) -> None:
        # this server does not echo a client's own awareness back (as the
        # Node server does), so a lone client would otherwise hear nothing
        self.room.send_direct(self, KEEPALIVE)

    async def _expire(self) -> None:
        """Close with 4001 when the token's ``exp`` passes, even if the client is silent."""
        await wait_expired(self.grant)
        self.fail(UNAUTHORIZED, "token expired", "unauthorized")

    @property
    def peer(self) -> str:
        """The client's address, for the logs: made when one is written, not kept (a
        string per idle connection is ~64 bytes, docs/capacity.md)."""
        host, port = self._client
        return f"{host}:{port}"

    def left(self, rooms: Rooms) -> None:
        """The connection ended: out of its room and the server's count."""
        self.flush_awareness()
        room = self.room
        room.leave(self)
        rooms.closed(self)
        log.info(
            "close room=%s client=%d peer=%s code=%d reason=%r",
            room.name,
            self.id,
            self.peer,
            self.close_code,
            self.close_reason,
        )

    async def close_socket(self, receive: Receive, send: Send, grace: float) -> None:
        """Close the WebSocket with the connection's close code, unless the client did."""
        if not self.peer_closed:
            await close_websocket(
                receive,
                send,
                self.close_code,
                self.close_reason,
                grace=grace,
                flooding=self.close_code == RATE_LIMITED,
            )

    # --- reading ------------------------------------------------------------

    async def read(self, receive: Receive) -> None:
        room = self.room
        limit = self.config.max_message_size
        pacer = self._pacer
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
            if pacer is not None:  # before any work on the message
                wait = pacer.take(perf_counter())
                if wait is None:
                    self.fail(RATE_LIMITED, "rate limit exceeded: slow down", "rate_limited")
                    return
                if wait:
                    self.stats.rate_limited_waits += 1
                    await anyio.sleep(wait)  # reading paused: TCP slows the client down
                    started = perf_counter()
            data = message.get("bytes")
            del message  # an idle connection keeps nothing of its last message
            if data is None:
                self.fail(1003, "text frames are not part of the y-websocket protocol", "text")
                return
            if len(data) > limit:
                self.fail(1009, f"message over {limit} bytes", "too_big")
                return
            if self.grant.expires is not None and self.grant.expired():
                # nothing is handled after expiry, even before _expire wakes (a clock jump)
                self.fail(UNAUTHORIZED, "token expired", "unauthorized")
                return
            try:
                parsed = parse_message(data)
                if isinstance(parsed, SyncMessage):
                    if parsed.kind is SyncType.STEP1:
                        room.sync_reply(self, parsed.payload)
                    else:
                        room.apply_update(self, parsed.payload)
                        await room.wait_until_saved_enough()
                elif isinstance(parsed, AwarenessMessage):
                    self._receive_awareness(parse_awareness_update(parsed.update))
                elif isinstance(parsed, QueryAwarenessMessage):
                    snapshot = room.awareness_snapshot()
                    if snapshot is not None:
                        room.send_direct(self, snapshot)
            except MalformedMessage as exc:
                log.warning(
                    "rejected room=%s client=%d peer=%s reason=%r",
                    room.name,
                    self.id,
                    self.peer,
                    str(exc),
                )
                self.fail(1007, f"malformed message: {exc}", "malformed")
                return
            del data, parsed
            if slice_ is None:
                slice_ = TimeSlice()
            if slice_.spent(perf_counter() - started):
                await anyio.lowlevel.checkpoint()  # a burst must not hold every other room

    # --- writing: net.connection's writer drains the room's log from this client's cursor

    @property
    def log(self) -> FanoutLog[RoomEntry]:
        return self.room.log

    def _frames(self, start: int, entries: Sequence[RoomEntry]) -> list[Frame]:
        return self.room.frames.frames_for(start, entries, self.id)

    @property
    def big_sends(self) -> anyio.Semaphore:
        return self.room.big_sends

    # --- awareness: at most one broadcast per client per interval ------------

    @property
    def origin(self) -> str:
        """Who made this connection's edits, as the history shows it."""
        return self.user_name or f"client-{self.id}"

    def _receive_awareness(self, entries: list[AwarenessEntry]) -> None:
        accepted = self.room.update_awareness(self, entries)
        if not accepted:
            return
        if self.user_name is None:
            self.user_name = _user_name(accepted)
        pending = self._awareness_pending
        if pending is None:
            pending = self._awareness_pending = {}
        for entry in accepted:
            pending[entry.client_id] = entry
        if not self._throttling and self._spawn(self._throttle_awareness):
            self._throttling = True

    def flush_awareness(self) -> None:
        """Broadcast held-back awareness now (a goodbye's null state must not be lost)."""
        pending = self._awareness_pending
        if pending:
            self._awareness_pending = None
            self.room.broadcast_awareness(self, list(pending.values()))

    async def _throttle_awareness(self) -> None:
        """Flush held awareness, at most once per interval, while there is any.

        It exists only while awareness is pending (started by
        :meth:`_receive_awareness`), not for the life of an idle connection.
        """
        interval = self.config.awareness_interval
        try:
            while self._awareness_pending:
                delay = self._awareness_next - anyio.current_time()
                if delay > 0:
                    await anyio.sleep(delay)
                self.flush_awareness()
                self._awareness_next = anyio.current_time() + interval
        finally:
            self._throttling = False


def _user_name(entries: list[AwarenessEntry]) -> str | None:
    for entry in entries:
        state = json.loads(entry.state)
        user = state.get("user") if isinstance(state, dict) else None
        name = user.get("name") if isinstance(user, dict) else None
        if isinstance(name, str) and name:
            return name[:64]
    return None


async def join_yjs(
    scope: Scope,
    receive: Receive,
    send: Send,
    rooms: Rooms,
    auth: Authenticator | None = None,
) -> Connection | None:
    """The first half of ``WS /yjs/{diagram}`` (``auth``: None when auth is off): accept,
    check, join the room; None: refused (and closed) or gone.

    The ASGI app itself then reads the connection (see ``CollabApp.__call__``,
    and :meth:`Connection.left`, :meth:`Connection.close_socket` after it):
    no handler coroutine of its own stays suspended for the connection's life,
    one frame (~0.35 KiB) fewer per idle connection (docs/capacity.md).
    """
    if (await receive())["type"] != "websocket.connect":
        return None
    diagram = scope["path"][len("/yjs/") :]
    client = scope.get("client") or ("?", 0)
    # accepted first so a refusal is a close code the client can read, not an HTTP 403
    await accept_websocket(send)
    close = partial(close_websocket, receive, send, grace=rooms.config.close_timeout)
    grant = OPEN
    if auth is not None:  # checked before anything else: no room is loaded for a stranger
        token = token_from_scope(scope)
        try:
            grant = auth.check(token)
        except AuthError:
            rooms.stats.reject("unauthorized")
            await close(UNAUTHORIZED, "token required" if token is None else "bad token")
            return None
    if not DIAGRAM_NAME.fullmatch(diagram):
        rooms.stats.reject("bad_name")
        await close(4400, f"diagram name must be {DIAGRAM_NAME_RULE}")
        return None
    if not grant.allows(diagram_channel(diagram)):
        rooms.stats.reject("forbidden")
        await close(FORBIDDEN, f"forbidden: the token does not cover {diagram_channel(diagram)}")
        return None
    if len(rooms.connections) >= rooms.config.max_connections:
        rooms.stats.reject("server_full")
        await close(1013, "server full: too many connections")
        return None
    try:
        room = await rooms.acquire(diagram)
    except ServerFull:
        await close(1013, "server full: too many rooms")
        return None
    except Exception:
        await close(1011, "diagram could not be loaded")
        return None
    conn = Connection(room, client, grant, rooms.keepalives)
    try:
        room.join(conn)
    except RoomFull:
        rooms.stats.reject("room_full")
        await close(4429, "room full")
        return None
    rooms.opened(conn)
    release_headers(scope)
    if grant.authenticated:
        log.info(
            "open room=%s client=%d peer=%s sub=%s%s",
            diagram,
            conn.id,
            conn.peer,
            grant.sub,
            " read-only" if conn.read_only else "",
        )
    else:
        log.info("open room=%s client=%d peer=%s", diagram, conn.id, conn.peer)
    return conn
