"""Rooms across nodes: the same diagram open on several nodes, edited as one.

**The durable store is the source of truth; Redis is how nodes hear of it.**
Every node saves its own clients' updates to the shared store (one SQLite
file for nodes on one host, PostgreSQL across hosts) exactly as a single
node does, and publishes each saved batch on one Redis pub/sub channel; every
other node that has the diagram open applies it and sends it to its clients
at once. So the durability contract holds cluster-wide without Redis
holding anything for rooms: an update is committed before any client, on
any node, is sent it; a node or Redis can die without losing anything any
client was sent.

Pub/sub can lose messages (a node cut off from Redis, a Redis restart); a
node catches up from the store instead of a replay log. Whenever its link
comes (back) up, a node reloads every open room from the store (the CRDT
merges what it missed, and sends only that to its clients) and publishes
``RESYNC`` for them, so the others reload too and pick up what it saved
while it was cut off. A node that falls behind (stopped, slow) is
disconnected by Redis's output-buffer limit and goes through the same path.
The others never wait for it. A node that dies may have committed a batch
it never published (its clients died with it, so nobody was sent it): when
the others find it gone (below), they reload their open rooms too.

A room that is loading buffers what arrives and applies it once loaded: an
update committed after the load began may have been published before the
room could apply it (the order "commit, then publish" makes the buffer
enough: anything published earlier was committed earlier, so it is loaded).

**Presence** travels the same channel. Each node also keeps its clients'
states in one Redis hash per diagram (``presence:{diagram}``), so a node
opening a diagram shows everyone at once; a client's removal is published
when its socket closes; states of a node whose heartbeat key expired (it
died) are removed by the others within ``SWEEP_SECONDS`` plus the key's TTL.
The nodes looked for are those with clients present, those heard on the
channel, and every node in the link's registry (:mod:`cluster.link`): a
node nobody heard from may still have committed a batch before it died.

**Who follows diagram events.** A room turns its changes into ``/events``
events only while someone follows them (see :mod:`collab.diagram_events`);
in a cluster the follower may be on another node, so nodes tell each other
which channels gained their first follower or lost their last (``FOLLOW``),
and a node that (re)joins asks for everyone's (``HELLO``).

**Checkpoints and compaction** rewrite a diagram's history, so one node at a
time does them: the one that takes the diagram's lease (``SET NX PX``) when
its room goes quiet or unloads; a checkpoint replays the store's log, never a
live document (which may lack an update another node committed and is still
publishing). Without Redis nobody takes the lease and the work waits.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream
from redis.exceptions import RedisError

from cluster.link import NODE_TTL_SECONDS, RedisLink
from cluster.messages import BadMessage, Kind, RoomMessage, decode, encode
from collab.hooks import RoomHooks
from collab.persistence import StorePersistence
from collab.protocol import AwarenessEntry, encode_awareness_update, parse_awareness_update
from storage import Store
from storage.updates import merge_many

if TYPE_CHECKING:
    from collab.room import Room
    from relays.hub import Hub

log = logging.getLogger("inkwire.cluster.rooms")

PRESENCE_WAIT = 1.0  # seconds a loading room waits for the other nodes' presence, at most
SWEEP_SECONDS = 5.0  # how often a node looks for other nodes that died
LEASE_MS = 60_000  # a checkpoint or compaction longer than this could overlap another node's
PRESENCE_TTL = 86_400  # seconds a diagram's presence hash outlives its last write
SEND_QUEUE = 10_000  # messages waiting to be published before the node resyncs instead
INBOX_LIMIT = 1000  # messages a loading room keeps; past that it reloads from the store
GONE_REMEMBERED = 10_000  # dead nodes remembered, so each is dealt with once

# deletes the lease only if it is still ours (it may have expired and passed on)
RELEASE_LEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""

Outgoing = tuple[bytes, str, dict[str, str | None]]  # (message, diagram, presence fields)


class RoomBus(RoomHooks):
    """This node's side of the rooms channel: what it publishes, what it hears, who is alive.

    A room extension (it publishes its rooms' local presence) and the factory
    of their persistence (:meth:`persistence`).
    """

    def __init__(self, link: RedisLink) -> None:
        self.link = link
        self.channel = link.key("rooms")
        self._rooms: dict[str, ClusterPersistence] = {}
        self._heard: set[str] = set()  # other nodes heard on the channel, until found gone
        self._gone: dict[str, None] = {}  # nodes found dead (and dealt with), oldest first
        self._started = time.time()
        self._followers: dict[str, set[str]] = {}  # channel -> nodes following it
        self._report_follow: Callable[[str, bool], None] | None = None
        self._send: MemoryObjectSendStream[Outgoing]
        self._outbox: MemoryObjectReceiveStream[Outgoing]
        self._send, self._outbox = anyio.create_memory_object_stream[Outgoing](SEND_QUEUE)
        link.listen(self.channel, self._received)
        link.on_up(self._caught_up)

    def persistence(self, room: Room, store: Store) -> ClusterPersistence:
        """A room's persistence, registered from the start so it misses nothing."""
        persistence = ClusterPersistence(room, store, self)
        self._rooms[room.name] = persistence
        return persistence

    def _forget(self, persistence: ClusterPersistence) -> None:
        if self._rooms.get(persistence.room.name) is persistence:
            del self._rooms[persistence.room.name]

    def share_follows(self, hub: Hub, report: Callable[[str, bool], None]) -> None:
        """Report to ``report`` what the whole cluster follows, as ``hub.on_follow`` would."""
        self._report_follow = report
        hub.on_follow(self._follow_here)

    def _follow_here(self, channel: str, followed: bool) -> None:
        self._follow(self.link.node, channel, followed)
        self.send(Kind.FOLLOW, channel, b"1" if followed else b"0")

    def _follow(self, node: str, channel: str, followed: bool) -> None:
        """Record one node's report; pass on the cluster's first follower and its last."""
        nodes = self._followers.setdefault(channel, set())
        before = bool(nodes)
        if followed:
            nodes.add(node)
        else:
            nodes.discard(node)
        if not nodes:
            del self._followers[channel]
        if before != bool(nodes) and self._report_follow is not None:
            self._report_follow(channel, bool(nodes))

    def _tell_follows(self) -> None:
        here = self.link.node
        for channel in sorted(c for c, nodes in self._followers.items() if here in nodes):
            self.send(Kind.FOLLOW, channel, b"1")

    def presence_key(self, diagram: str) -> str:
        return self.link.key("presence", diagram)

    async def run(self) -> None:
        """Publish what the rooms send and look for dead nodes, until cancelled."""
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._publish_loop)
            tg.start_soon(self._sweep_loop)

    # --- outgoing ---------------------------------------------------------------

    def send(self, kind: Kind, diagram: str, payload: bytes = b"", **presence: str | None) -> None:
        """Publish a message (and update this diagram's presence hash) without waiting.

        While the link is down nothing is queued: coming back up resyncs
        everything. A queue that overflows means Redis cannot keep up: the
        link is dropped, which ends in the same resync.
        """
        if not self.link.up:
            return
        try:
            message = encode(RoomMessage(kind, self.link.node, diagram, payload))
        except ValueError:  # a name past the format's 255 bytes (a very long /events channel)
            log.warning("rooms channel: %r is too long to tell the other nodes", diagram)
            return
        try:
            self._send.send_nowait((message, diagram, presence))
        except anyio.WouldBlock:
            self.link.failed(RuntimeError("rooms channel backlog: resyncing"))

    async def _publish_loop(self) -> None:
        redis = self.link.redis
        while True:
            batch = [await self._outbox.receive()]
            while len(batch) < 512:
                try:
                    batch.append(self._outbox.receive_nowait())
                except anyio.WouldBlock:
                    break
            if not self.link.up:
                continue  # dropped: the resync after reconnecting covers it
            pipe = redis.pipeline(transaction=False)
            touched: set[str] = set()  # presence hashes written in this batch
            for message, diagram, fields in batch:
                if fields:
                    key = self.presence_key(diagram)
                    touched.add(key)
                    present = {f: v for f, v in fields.items() if v is not None}
                    gone = [f for f, v in fields.items() if v is None]
                    if present:
                        pipe.hset(key, mapping=present)  # type: ignore[arg-type]
                    if gone:
                        pipe.hdel(key, *gone)
                pipe.publish(self.channel, message)
            for key in touched:
                pipe.expire(key, PRESENCE_TTL)
            try:
                await pipe.execute()
            except (RedisError, OSError) as exc:
                self.link.failed(exc)

    def awareness_changed(self, room: Room, entries: Any) -> None:
        """Local presence changed: tell the other nodes, and record it for late openers."""
        self.send(
            Kind.AWARENESS,
            room.name,
            encode_awareness_update(list(entries)),
            **{str(e.client_id): None if e.removed else self._record(e) for e in entries},
        )

    def _record(self, entry: AwarenessEntry) -> str:
        return json.dumps({"node": self.link.node, "clock": entry.clock, "state": entry.state})

    # --- incoming ---------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        try:
            message = decode(data)
        except BadMessage as exc:
            log.warning("rooms channel: ignoring a message that is not ours (%s)", exc)
            return
        if message.node == self.link.node:
            return
        self._heard.add(message.node)
        self._gone.pop(message.node, None)
        if message.kind is Kind.FOLLOW:
            self._follow(message.node, message.diagram, message.payload == b"1")
            return
        if message.kind is Kind.HELLO:
            self._tell_follows()
            return
        persistence = self._rooms.get(message.diagram)
        if persistence is None:
            return
        if persistence.room.closed.is_set():  # it never loaded (a failed load): nobody to tell
            self._forget(persistence)
            return
        persistence.received(message)

    async def _caught_up(self) -> None:
        """The link is (back) up: what was published meanwhile is lost, both ways."""
        node = self.link.node
        pipe = self.link.redis.pipeline(transaction=False)  # one round trip for all rooms
        pipe.publish(self.channel, encode(RoomMessage(Kind.HELLO, node, "*")))
        for diagram, persistence in list(self._rooms.items()):
            persistence.resync()
            local = persistence.room.awareness.local()
            if local:
                key = self.presence_key(diagram)
                pipe.hset(key, mapping={str(e.client_id): self._record(e) for e in local})
                pipe.expire(key, PRESENCE_TTL)
                update = encode_awareness_update(local)
                pipe.publish(
                    self.channel, encode(RoomMessage(Kind.AWARENESS, node, diagram, update))
                )
            pipe.publish(self.channel, encode(RoomMessage(Kind.RESYNC, node, diagram)))
        await pipe.execute()
        self._tell_follows()

    async def remote_presence(self, diagram: str) -> dict[str, list[AwarenessEntry]]:
        """The presence other live nodes recorded for a diagram, by node."""
        rows = await self.link.redis.hgetall(self.presence_key(diagram))
        by_node: dict[str, list[AwarenessEntry]] = {}
        for field, value in rows.items():
            try:
                record = json.loads(value)
                entry = AwarenessEntry(int(field), int(record["clock"]), str(record["state"]))
                node = str(record["node"])
            except (ValueError, KeyError, TypeError):
                continue
            if node != self.link.node:
                by_node.setdefault(node, []).append(entry)
        alive = await self.link.nodes_alive(set(by_node))
        return {node: entries for node, entries in by_node.items() if node in alive}

    async def _sweep_loop(self) -> None:
        while True:
            await anyio.sleep(SWEEP_SECONDS)
            if not self.link.up:
                continue
            try:
                await self._sweep()
            except (RedisError, OSError) as exc:
                self.link.failed(exc)

    async def _sweep(self) -> None:
        """Deal with the nodes that died: those heard from, those whose clients are
        present here, and those in the registry; each once, until it is seen alive."""
        # a node already silent when this one started committed nothing our rooms lack
        # (they loaded after it): only those alive since (give or take clocks) matter
        since = self._started - NODE_TTL_SECONDS
        nodes = self._heard | await self.link.registered_nodes(since)
        for persistence in self._rooms.values():
            nodes |= persistence.room.awareness.nodes()
        nodes.discard(self.link.node)
        if not nodes:
            return
        alive = await self.link.nodes_alive(nodes)
        for node in alive:
            self._gone.pop(node, None)  # found dead while it was only stopped
        for node in nodes - alive - self._gone.keys():
            log.info("node %s is gone: removing its clients' presence, reloading rooms", node)
            self._heard.discard(node)
            self._gone[node] = None
            while len(self._gone) > GONE_REMEMBERED:
                del self._gone[next(iter(self._gone))]
            for channel in [c for c, nodes in self._followers.items() if node in nodes]:
                self._follow(node, channel, False)
            for persistence in list(self._rooms.values()):
                persistence.room.forget_node(node)
                persistence.resync()  # what it saved but never published is in the store


class ClusterPersistence(StorePersistence):
    """A room's persistence on a cluster node: saved as on one node, then told to the others."""

    # a live document may lack what another node committed: never checkpoint it
    live_checkpoints = False

    def __init__(self, room: Room, store: Store, bus: RoomBus) -> None:
        super().__init__(room, store)
        self.bus = bus
        self._inbox: list[RoomMessage] | None = []  # until the room has loaded
        self._resync_wanted: anyio.Event | None = None
        self._resync_due = False

    # --- what other nodes say -------------------------------------------------

    def received(self, message: RoomMessage) -> None:
        if self._inbox is not None:
            if len(self._inbox) < INBOX_LIMIT:
                self._inbox.append(message)
            else:  # a long load under heavy traffic: the store will have it all
                self._inbox.clear()
                self._resync_due = True
            return
        room = self.room
        try:
            if message.kind is Kind.UPDATE:
                room.apply_remote(message.payload)
            elif message.kind is Kind.AWARENESS:
                room.remote_awareness(message.node, parse_awareness_update(message.payload))
            else:
                self.resync()
        except Exception:
            log.exception("room=%s: a message from node %s failed", room.name, message.node)
            self.resync()  # the store has what that node saved

    def resync(self) -> None:
        """Reload from the store soon (coalesced): what other nodes saved reaches us there."""
        self._resync_due = True
        if self._resync_wanted is not None:
            self._resync_wanted.set()

    async def _resync_loop(self) -> None:
        while True:
            if not self._resync_due:
                event = self._resync_wanted = anyio.Event()
                await event.wait()
            self._resync_due = False
            try:
                state = await self.store.load(self.room.name)
                if state:
                    self.room.apply_remote(state)
            except Exception:
                log.exception("room=%s: reloading from the store failed", self.room.name)
                await anyio.sleep(1.0)
                self._resync_due = True

    # --- the room's persistence -------------------------------------------------

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Apply what arrived while loading, show who is on other nodes, then save as usual.

        The room answers its first client after this has started, so a joiner
        gets everyone's presence in its first snapshot.
        """
        inbox, self._inbox = self._inbox or [], None
        for message in inbox:
            self.received(message)
        with anyio.move_on_after(PRESENCE_WAIT):
            await self._show_remote_presence()
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._resync_loop)
            await tg.start(super().run)
            task_status.started()

    async def finish(self) -> None:
        try:
            await super().finish()
        finally:
            self.bus._forget(self)

    def _durable(self, updates: list[bytes]) -> None:
        self.bus.send(Kind.UPDATE, self.room.name, merge_many(updates))

    async def _release(self) -> None:
        """Checkpoint and compact, if this node takes the diagram's lease."""
        link = self.bus.link
        key = link.key("lease", self.room.name)
        try:
            taken = await link.redis.set(key, link.node, nx=True, px=LEASE_MS)
        except (RedisError, OSError) as exc:
            link.failed(exc)
            return
        if not taken:
            return  # another node is at it
        try:
            await super()._release()
        finally:
            try:
                await link.redis.eval(RELEASE_LEASE, 1, key, link.node)
            except (RedisError, OSError) as exc:
                link.failed(exc)  # it expires by itself

    async def _show_remote_presence(self) -> None:
        if not self.bus.link.up:
            return  # the link's catch-up brings it when it is back
        try:
            by_node = await self.bus.remote_presence(self.room.name)
        except (RedisError, OSError) as exc:
            self.bus.link.failed(exc)
            return
        for node, entries in by_node.items():
            self.room.remote_awareness(node, entries)
