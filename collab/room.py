"""A room: one diagram, live. Its document, the clients editing it, and the order of things.

The room is the small core that applies updates and decides when clients see
them; the rest is in parts it composes:

- the fan-out log (:mod:`net.fanout`) every client's writer reads, rendered
  into frames once per run (:mod:`collab.frames`);
- awareness, with ownership of client ids (:mod:`collab.awareness`);
- persistence (:mod:`collab.persistence`): what is applied is published only
  once durable, in :meth:`Room.publish`;
- the lock (:mod:`collab.lock`);
- extensions (:mod:`collab.hooks`): diagram events, the tombstone purge.

Everything here runs on the event loop without awaiting between reading a
client's message and appending its effect to the log, so the order in which
updates are applied, logged and answered (a joiner's sync reply) is one
order. The room's own tasks (persistence) live in its task group.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from time import perf_counter
from typing import TYPE_CHECKING, Any

import anyio
import anyio.lowlevel
from anyio.abc import TaskGroup
from pycrdt import Doc, TransactionEvent

from collab.awareness import RoomAwareness
from collab.config import Config
from collab.frames import SERVER, RoomEntry, RunFrames, SyncReplies
from collab.hooks import RoomHooks
from collab.lock import DiagramLock
from collab.metrics import Stats
from collab.persistence import MAX_UNSAVED, Persistence, PersistenceFactory, StorePersistence
from collab.protocol import (
    AwarenessEntry,
    MalformedMessage,
    has_new_structs,
    permission_denied,
    sync_step1,
)
from net.fanout import FanoutLog
from net.wire import Frame
from storage import Store

if TYPE_CHECKING:
    from collab.connection import Connection

log = logging.getLogger("inkwire.room")

EMPTY_UPDATE = b"\x00\x00"


class Latch:
    """A one-way event whose :class:`anyio.Event` exists only while someone waits.

    A room's ``loaded`` and ``closed`` are set once and waited for by few (the
    clients that arrive during the load; the next room of the same diagram),
    so the room does not keep an event (~0.9 KiB) for its whole life.
    """

    __slots__ = ("_event", "_set")

    def __init__(self) -> None:
        self._set = False
        self._event: anyio.Event | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        event, self._event = self._event, None
        if event is not None:
            event.set()

    async def wait(self) -> None:
        if self._set:
            await anyio.lowlevel.checkpoint()  # as anyio.Event.wait: always a checkpoint
            return
        if self._event is None:
            self._event = anyio.Event()
        await self._event.wait()


class RoomFull(Exception):
    pass


@contextmanager
def _client_bytes() -> Iterator[None]:
    """The CRDT refusing a client's bytes (pyo3 panics included) is a MalformedMessage."""
    try:
        yield
    except Exception as exc:
        raise MalformedMessage("update rejected by the CRDT") from exc
    except BaseException as exc:  # pyo3 panics derive from BaseException
        if type(exc).__name__ != "PanicException":
            raise
        raise MalformedMessage("update rejected by the CRDT") from exc


class Room:
    """One diagram's live document, its clients, and the parts that serve them.

    Created by :class:`~collab.rooms.Rooms`, which runs :meth:`run` in its
    task group: the room loads, serves until it has been empty for the grace
    period, saves what is left and unloads. ``previous`` is the room of the
    same diagram that is still closing: this one loads after its last save.
    """

    def __init__(
        self,
        name: str,
        store: Store,
        config: Config,
        stats: Stats,
        previous: Room | None = None,
        hooks: Sequence[RoomHooks] = (),
        persistence: PersistenceFactory = StorePersistence,
    ) -> None:
        self.name = name
        self.config = config
        self.stats = stats
        self.hooks = tuple(hooks)
        self.doc: Doc[Any] = Doc()
        self.log: FanoutLog[RoomEntry] = FanoutLog(
            max_lag=config.max_lag, max_lag_bytes=config.max_lag_bytes
        )
        self.frames = RunFrames(stats)
        self.awareness = RoomAwareness()
        self.persistence: Persistence = persistence(self, store)
        self.connections: set[Connection] = set()
        self.loaded = Latch()
        self.closed = Latch()
        self.closing = False
        self.load_error: BaseException | None = None
        self._big_sends: anyio.Semaphore | None = None
        self._store = store
        self._previous = previous
        self._lock: DiagramLock | None = None  # once loaded
        self._sync_replies = SyncReplies(stats)
        self._changes: list[bytes] = []  # what the transaction being applied changed
        self._occupancy: anyio.Event | None = None
        # its connections' own tasks (their writers) run here while it is loaded: a
        # connection keeps the room occupied, so this outlives it (net.connection)
        self.tasks: TaskGroup | None = None
        self.updates = 0  # document updates applied (with changes), for the dashboard

    @property
    def big_sends(self) -> anyio.Semaphore:
        """Held while a large frame is sent: two in flight at most, each holds a copy.

        Made at the first large frame: like the two latches, it would otherwise
        be ~0.9 KiB of every room (each asyncio waiter queue is a 752-byte deque),
        most of which never sends one (docs/capacity.md).
        """
        if self._big_sends is None:
            self._big_sends = anyio.Semaphore(2)
        return self._big_sends

    # --- lifecycle ----------------------------------------------------------

    async def run(self) -> None:
        """Load, serve until empty for the grace period, persist, unload."""
        try:
            if self._previous is not None:
                await self._previous.closed.wait()  # its last saves come first
                self._previous = None
            try:
                with anyio.fail_after(self.config.load_timeout):
                    state = await self._store.load(self.name)
                if state:
                    self.doc.apply_update(state)
                self.doc.observe(self._on_transaction)
                self._lock = DiagramLock(self.doc)
            except Exception as exc:
                log.exception("room=%s load failed", self.name)
                self.load_error = exc
                self.closing = True
                return
            for hook in self.hooks:
                hook.loaded(self)
            try:
                async with anyio.create_task_group() as tg:
                    await tg.start(self.persistence.run)
                    self.tasks = tg
                    self.loaded.set()
                    await self._wait_until_idle()
                    self.closing = True
                    self.tasks = None
                    tg.cancel_scope.cancel()
                with anyio.CancelScope(shield=True):
                    await self.persistence.finish()
            finally:
                for hook in self.hooks:
                    hook.unloaded(self)
        finally:
            self.closing = True
            self.loaded.set()  # nobody waits for a room that failed or stopped loading
            self.closed.set()

    async def _wait_until_idle(self) -> None:
        while True:
            if self.occupied:
                await self._occupancy_changed()
                continue
            with anyio.move_on_after(self.config.grace_period):
                while not self.occupied:
                    await self._occupancy_changed()
            if not self.occupied:
                return

    @property
    def occupied(self) -> bool:
        """Clients, or presence the server holds for JSON clients, keep a room loaded."""
        return bool(self.connections or self.awareness.held)

    async def _occupancy_changed(self) -> None:
        event = self._occupancy = anyio.Event()
        await event.wait()

    def _notify_occupancy(self) -> None:
        if self._occupancy is not None:
            self._occupancy.set()
            self._occupancy = None

    @property
    def locked(self) -> bool:
        """Whether the diagram takes no edits from clients (see :mod:`collab.lock`)."""
        return self._lock is not None and self._lock.locked

    def went_quiet(self) -> None:
        """Called by the persistence after a quiet spell, before it checkpoints."""
        for hook in self.hooks:
            hook.quiet(self)

    # --- publishing: nothing is visible before it is durable -----------------

    def publish(self, upto: int, seq: int | None) -> None:
        """Let clients see the log before ``upto``: durable as of ``seq``, or served unsaved.

        Only the persistence calls this with an ``upto`` past what it has
        saved, and only when saving is down (``seq`` None); otherwise the
        room itself publishes only while nothing waits to be durable
        (:meth:`_publish_unless_held`). The hooks hear of it after the
        clients' writers are woken, so an event never announces an edit its
        Yjs peers cannot have yet. A run that makes anything visible is timed
        for ``websocket_broadcast_duration_seconds``.
        """
        metrics = self.stats.websocket
        if metrics is not None and upto > self.log.published:
            start = perf_counter()
            self.log.publish(upto)
            metrics.broadcast(perf_counter() - start)
        else:
            self.log.publish(upto)
        for hook in self.hooks:
            hook.published(self, upto, seq)

    def _publish_unless_held(self) -> None:
        """Publish what was just logged, unless updates before it wait to be durable."""
        if not self.persistence.holding:
            self.publish(self.log.head, None)

    def _log_awareness(
        self, author: int, entries: Sequence[AwarenessEntry], size: int, *, local: bool = True
    ) -> None:
        """Send presence changes to the clients; the hooks hear of this node's own only."""
        self.log.append(RoomEntry(author, awareness=entries), size)
        if self.stats.websocket is not None:
            self.stats.websocket.sent("awareness", self._recipients(author))
        self._publish_unless_held()
        if local:
            for hook in self.hooks:
                hook.awareness_changed(self, entries)

    # --- connections --------------------------------------------------------

    def join(self, conn: Connection) -> None:
        if len(self.connections) >= self.config.max_users:
            raise RoomFull
        self.connections.add(conn)
        self.log.add(conn.subscriber)
        self._notify_occupancy()
        self.log.send_direct(conn.subscriber, Frame(sync_step1(self.doc.get_state())))
        snapshot = self.awareness.snapshot()
        if snapshot is not None:
            self.log.send_direct(conn.subscriber, snapshot)

    def leave(self, conn: Connection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self.log.remove(conn.subscriber)
        removed = self.awareness.remove(conn)
        if removed:
            self._log_awareness(SERVER, removed, 16 * len(removed))
        self._notify_occupancy()

    def send_direct(self, conn: Connection, frame: Frame, *, after: int = 0) -> None:
        if len(conn.subscriber.outbox) >= self.config.max_outbox:
            conn.fail(4009, "slow consumer", "slow_consumer")
            return
        self.log.send_direct(conn.subscriber, frame, after=after)

    # --- sync ---------------------------------------------------------------

    def sync_reply(self, conn: Connection, state_vector: bytes) -> None:
        """Answer SyncStep1 with the diff, then stream the log from this point."""
        head = self.log.head
        self.send_direct(conn, self._sync_replies.reply(self.doc, head, state_vector), after=head)
        self.log.attach(conn.subscriber, head)
        if self.stats.websocket is not None:
            self.stats.websocket.sent("sync", 1)

    def _recipients(self, author: int) -> int:
        """How many clients an entry by ``author`` goes to: all but its author."""
        return len(self.connections) - (author != SERVER)

    # --- applying updates ----------------------------------------------------

    def apply_update(self, conn: Connection, update: bytes) -> None:
        """Apply a client's update; log what it changed, as the CRDT encodes it.

        Forwarding the CRDT's own encoding of the transaction, not the
        client's bytes, means peers never receive trailing garbage a lenient
        decoder let through, and an update that changes nothing (a duplicate)
        is neither stored nor sent.
        """
        if update == EMPTY_UPDATE:
            return
        if conn.read_only:
            self._refuse(conn, update, "read-only token", "read_only")
            return
        if self.locked:
            self._refuse(conn, update, "the diagram is locked", "locked")
            return
        with _client_bytes():
            self._apply(conn.id, conn.origin, update)
        self.stats.updates_in += 1

    def _refuse(self, conn: Connection, update: bytes, reason: str, counter: str) -> None:
        """Drop a client's update unapplied; tell it when the update had anything new.

        The client stays connected (it may still sync and show presence). A
        sync step 2 with nothing new is dropped silently: clients send one on
        every connect.
        """
        self.stats.reject(counter)
        with _client_bytes():
            new = has_new_structs(update, self.doc.get_state())
        if new:
            self.send_direct(conn, Frame(permission_denied(reason)))

    def apply_server(self, update: bytes, origin: str) -> None:
        """Apply an edit the server makes itself; saved and sent to every client."""
        self._apply(SERVER, origin, update)

    async def apply_local(self, update: bytes, origin: str = "server") -> None:
        """Apply a server edit (REST restore, import, file metadata) and wait until it is saved.

        It takes a client update's path (logged as the CRDT encodes it, saved,
        then fanned out) but has no sender, so every client receives it.
        Returns once it is saved (or the store is down and it is served unsaved).
        """
        self.apply_server(update, origin)
        await self.persistence.wait_saved(0)

    async def wait_until_saved_enough(self) -> None:
        """Backpressure: a reader pauses while too much is applied but unsaved."""
        await self.persistence.wait_saved(MAX_UNSAVED)

    def _apply(self, author: int, origin: str | None, update: bytes) -> None:
        hooks = self.hooks
        for hook in hooks:
            hook.applying(self)
        for changes in self._apply_and_log(author, update):
            self.persistence.add(changes, origin)
        for hook in hooks:
            hook.applied(self, origin, self.log.head)
        self._publish_unless_held()

    def _apply_and_log(self, author: int, update: bytes) -> list[bytes]:
        """Apply an update; log what each of its transactions changed; return those changes."""
        self._changes.clear()
        self.doc.apply_update(update)
        for changes in self._changes:
            self.log.append(RoomEntry(author, update=changes), len(changes))
        if self._changes:
            self.updates += len(self._changes)
            if self.stats.websocket is not None:
                self.stats.websocket.sent("update", len(self._changes) * self._recipients(author))
        return self._changes

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._changes.append(event.update)

    # --- awareness ----------------------------------------------------------

    def update_awareness(
        self, conn: Connection, entries: Sequence[AwarenessEntry]
    ) -> list[AwarenessEntry]:
        """Record the states this connection may set; return those that changed."""
        return self.awareness.update(conn, entries)

    def broadcast_awareness(self, conn: Connection, entries: Sequence[AwarenessEntry]) -> None:
        self._log_awareness(conn.id, entries, 32 * len(entries))

    def hold_awareness(self, client_id: int, state: str | None) -> None:
        """Set (or with None, remove) a presence the server holds for a JSON client.

        It goes the way a connection's awareness goes (broadcast to every
        client) but no connection owns it, so no peer can overwrite it; the
        caller removes it when its client leaves. It keeps the room loaded.
        """
        entry = self.awareness.hold(client_id, state)
        if entry is not None:
            self._log_awareness(SERVER, [entry], 32)
            self._notify_occupancy()

    def awareness_snapshot(self) -> Frame | None:
        return self.awareness.snapshot()

    # --- other nodes of a cluster (see cluster.rooms) ----------------------------

    def apply_remote(self, update: bytes) -> None:
        """Apply an update another node made durable: every client here receives it.

        It is neither saved again nor reported to the ``applying``/``applied``
        hooks: its own node did both. What it changes is logged as the CRDT
        encodes it, as for any update, so a duplicate sends nothing.
        """
        self._apply_and_log(SERVER, update)
        self._publish_unless_held()

    def remote_awareness(self, node: str, entries: Sequence[AwarenessEntry]) -> None:
        """Presence of another node's clients (not reported to hooks: their node does)."""
        accepted = self.awareness.update_remote(node, entries)
        if accepted:
            self._log_awareness(SERVER, accepted, 32 * len(accepted), local=False)

    def forget_node(self, node: str) -> None:
        """Another node is gone: its clients' presence goes too."""
        removed = self.awareness.remove_node(node)
        if removed:
            self._log_awareness(SERVER, removed, 16 * len(removed), local=False)
