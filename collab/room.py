"""A room: one diagram's document, its awareness and its fan-out log.

Everything here runs on the event loop without awaiting between reading a
client's message and appending its effect to the log, so the order in which
updates are applied, logged and answered (a joiner's sync reply) is one
order. The room's own tasks, persisting and unloading, live in its task group.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
from pycrdt import Doc, Map, MapEvent, TransactionEvent

from collab.config import Config
from collab.metrics import Stats
from collab.protocol import (
    AwarenessEntry,
    ProtocolError,
    awareness_message,
    encode_awareness_update,
    has_new_structs,
    permission_denied,
    sync_step1,
    sync_step2,
    sync_update,
)
from net.fanout import FanoutLog
from net.wire import Frame
from storage import Store
from storage.excalidraw import purge_tombstones, stale_tombstones
from storage.updates import merge_many

if TYPE_CHECKING:
    from collab.connection import Connection
    from collab.events import DiagramEvents, HeldEvent, RoomWatch

log = logging.getLogger("inkwire.room")

EMPTY_UPDATE = b"\x00\x00"
PURGE_SCAN_INTERVAL = 3600.0  # seconds between two scans of a room for stale tombstones
SERVER = 0  # author id of entries the room itself writes
STORE_RETRY_SECONDS = 0.5
MAX_UNSAVED = 2000  # updates applied but not yet saved before readers pause
NOBODY = -1  # the variant of a flush that leaves out no author


class RoomFull(Exception):
    pass


@dataclass(slots=True)
class Entry:
    """One log entry: a Yjs update, or awareness changes, and who sent it."""

    author: int
    update: bytes | None = None
    awareness: Sequence[AwarenessEntry] = ()


@dataclass(slots=True)
class AwarenessRecord:
    entry: AwarenessEntry
    owner: Connection | None


class Flush:
    """The frames for one run of log entries, computed once and shared.

    Every client whose writer reads the same run gets the same bytes; a
    client that wrote some of the run gets its own variant without them.
    """

    __slots__ = ("authors", "entries", "stats", "variants")

    def __init__(self, entries: Sequence[Entry], stats: Stats) -> None:
        self.entries = entries
        self.stats = stats
        self.authors = {entry.author for entry in entries}
        self.variants: dict[int, list[Frame]] = {}

    def frames(self, exclude: int) -> list[Frame]:
        frames = self.variants.get(exclude)
        if frames is None:
            frames = self.variants[exclude] = self._render(exclude)
        return frames

    def _render(self, exclude: int) -> list[Frame]:
        self.stats.fanout_renders += 1
        updates: list[bytes] = []
        states: dict[int, AwarenessEntry] = {}
        for entry in self.entries:
            if entry.author == exclude:
                continue
            if entry.update is not None:
                updates.append(entry.update)
            for state in entry.awareness:
                states[state.client_id] = state
        frames = []
        if updates:
            frames.append(Frame(sync_update(merge_many(updates))))
        if states:
            update = encode_awareness_update(list(states.values()))
            frames.append(Frame(awareness_message(update)))
        return frames


@contextmanager
def _client_bytes() -> Iterator[None]:
    """The CRDT refusing a client's bytes (pyo3 panics included) is a ProtocolError."""
    try:
        yield
    except Exception as exc:
        raise ProtocolError("update rejected by the CRDT") from exc
    except BaseException as exc:  # pyo3 panics derive from BaseException
        if type(exc).__name__ != "PanicException":
            raise
        raise ProtocolError("update rejected by the CRDT") from exc


class Room:
    def __init__(
        self,
        name: str,
        store: Store,
        config: Config,
        stats: Stats,
        previous: Room | None = None,
        events: DiagramEvents | None = None,
    ) -> None:
        self.name = name
        self.store = store
        self.config = config
        self.stats = stats
        self.doc: Doc[Any] = Doc()
        self._changes: list[bytes] = []  # what the transaction being applied changed
        self.log: FanoutLog[Entry] = FanoutLog(
            max_lag=config.max_lag, max_lag_bytes=config.max_lag_bytes
        )
        self.connections: set[Connection] = set()
        self.awareness: dict[int, AwarenessRecord] = {}
        self.loaded = anyio.Event()
        self.closed = anyio.Event()
        self.closing = False
        self.load_error: BaseException | None = None
        self._previous = previous
        self._pending: list[bytes] = []  # applied, not yet durable
        self._pending_origins: list[str | None] = []  # who made each pending update
        self.store_down = False
        self._saved: anyio.Event | None = None
        self._maintenance: anyio.Event | None = None
        self._persist_wakeup: anyio.Event | None = None
        self._occupancy: anyio.Event | None = None
        self._flushes: dict[tuple[int, int], Flush] = {}
        self._flushes_end = 0
        self._sync_cache: dict[bytes, Frame] = {}
        self._sync_cache_head = -1
        self._snapshot: Frame | None = None
        self.big_sends = anyio.Semaphore(2)  # large frames in flight: each holds a copy
        # diagram events for JSON consumers (collab.events): nothing is computed
        # until a consumer follows this room, then element changes are held
        # until saved, as Yjs peers only see an update once it is durable
        self.events = events
        # a locked diagram (meta "locked": true) takes no edits from clients,
        # only the server's own (the REST unlock among them)
        self.locked = False
        self._next_purge_scan = 0.0  # time.monotonic() before which no tombstone scan runs
        self.watch: RoomWatch | None = None
        self.guests: set[int] = set()  # awareness client ids the server holds for JSON clients
        self._elements: Map[Any] | None = None  # observed while watched
        self._element_changes: list[dict[str, Any]] = []
        self._held: list[tuple[int, list[HeldEvent]]] = []  # (log position, events)
        self._saving_upto = 0

    # --- lifecycle ----------------------------------------------------------

    async def run(self) -> None:
        """Load, serve until empty for the grace period, persist, unload."""
        try:
            if self._previous is not None:
                await self._previous.closed.wait()  # its last saves come first
                self._previous = None
            try:
                with anyio.fail_after(self.config.load_timeout):
                    state = await self.store.load(self.name)
                if state:
                    self.doc.apply_update(state)
                self.doc.observe(self._on_transaction)
                meta = self.doc.get("meta", type=Map)
                self.locked = meta.get("locked") is True
                meta.observe(self._on_meta)
            except Exception as exc:
                log.exception("room=%s load failed", self.name)
                self.load_error = exc
                self.closing = True
                return
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._persist_loop)
                tg.start_soon(self._maintain_loop)
                self.loaded.set()
                await self._wait_until_idle()
                self.closing = True
                tg.cancel_scope.cancel()
            with anyio.CancelScope(shield=True):
                await self._persist_pending()
                await self._release()
        finally:
            self.closing = True
            self.loaded.set()  # nobody waits for a room that failed or stopped loading
            self.closed.set()

    def _purge_tombstones(self) -> bool:
        """Drop tombstones past their retention as a server edit; True if there were any.

        Done when the room has been quiet for ``checkpoint_quiet`` (just before
        that checkpoint), at most once an hour, so the scan of every element is
        off the paths that load, sync and save; the live document is only read,
        and copied only when there is something to purge. The edit reaches
        connected clients like any other.
        """
        retention = self.config.tombstone_retention
        if retention is None or self.store_down or time.monotonic() < self._next_purge_scan:
            return False
        # a tombstone needs a day to go stale: scanning every quiet spell would redo
        # the same walk over every element for nothing
        self._next_purge_scan = time.monotonic() + min(retention, PURGE_SCAN_INTERVAL)
        cutoff = (time.time() - retention) * 1000
        try:
            if not stale_tombstones(self.doc, cutoff):  # read the live doc; copy only to edit
                return False
            update, purged = purge_tombstones(self.doc.get_update(), cutoff)
            if purged:
                log.info(
                    "room=%s purging %d tombstones older than %gs", self.name, purged, retention
                )
                self._apply(SERVER, "purge", update)
        except Exception:  # served with its tombstones, as before
            log.exception("room=%s tombstone purge failed", self.name)
            return False
        return bool(purged)

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
        """Clients, or JSON collaborators the browsers see, keep a room loaded."""
        return bool(self.connections or self.guests)

    async def _occupancy_changed(self) -> None:
        event = self._occupancy = anyio.Event()
        await event.wait()

    def _notify_occupancy(self) -> None:
        if self._occupancy is not None:
            self._occupancy.set()
            self._occupancy = None

    # --- persistence: nothing is visible before it is durable ---------------

    async def _persist_loop(self) -> None:
        """Save pending updates as they come; after a quiet spell, checkpoint."""
        saved_since_release = False
        while True:
            if not self._pending:
                event = self._persist_wakeup = anyio.Event()
                if not saved_since_release:
                    await event.wait()
                else:
                    with anyio.move_on_after(self.config.checkpoint_quiet) as quiet:
                        await event.wait()
                    if quiet.cancelled_caught:
                        self._persist_wakeup = None
                        if self._purge_tombstones():
                            await self._persist_pending()
                        await self._release()
                        saved_since_release = False
                        continue
            await self._persist_pending()
            saved_since_release = True

    async def _maintain_loop(self) -> None:
        """After saves, let the store do what they made due, without holding saves up."""
        while True:
            event = self._maintenance = anyio.Event()
            await event.wait()
            try:
                await self.store.maintain(self.name, self._saved_state)
            except Exception:
                log.exception("room=%s store maintenance failed", self.name)

    def _saved_state(self) -> bytes | None:
        """The document's state if all of it is saved (then it is the saved state)."""
        return None if self._pending or self.store_down else self.doc.get_update()

    async def _release(self) -> None:
        try:
            await self.store.release(self.name)
        except Exception:
            log.exception("room=%s checkpoint/compaction failed", self.name)

    async def _persist_pending(self) -> None:
        """Commit what is pending, then let clients see it.

        If the store fails, live editing goes on (entries are published
        without waiting, the room reports the outage) and the same batch is
        retried until it is saved: nothing is dropped, only delayed.
        """
        upto = self._saving_upto = self.log.head
        count = len(self._pending)
        if count:
            try:
                await self.store.append(
                    self.name, self._pending[:count], self._pending_origins[:count]
                )
            except Exception:
                if not self.store_down:
                    log.exception("room=%s saving failed; serving unsaved, retrying", self.name)
                self.store_down = True
                self.log.publish()
                self.release_events(self.log.head)
                await anyio.sleep(STORE_RETRY_SECONDS)
                return
            del self._pending[:count]
            del self._pending_origins[:count]
            if self._maintenance is not None:
                self._maintenance.set()
                self._maintenance = None
            if self._saved is not None:
                self._saved.set()
                self._saved = None
            if self.store_down:
                log.warning("room=%s saving works again", self.name)
                self.store_down = False
        self.log.publish(upto)
        self.release_events(upto)

    async def wait_until_saved_enough(self) -> None:
        """Backpressure: a reader pauses while too much is applied but unsaved.

        Pausing the read lets TCP slow the writing client down, instead of
        holding an unbounded backlog in memory while the store catches up.
        """
        await self._wait_saved(MAX_UNSAVED)

    async def _wait_saved(self, most: int) -> None:
        while len(self._pending) > most and not self.store_down:
            if self._saved is None:
                self._saved = anyio.Event()
            await self._saved.wait()

    def _append(self, entry: Entry, size: int, origin: str | None = None) -> None:
        self.log.append(entry, size)
        if entry.update is not None:
            self._pending.append(entry.update)
            self._pending_origins.append(origin)
        if self._pending and not self.store_down:
            if self._persist_wakeup is not None:
                self._persist_wakeup.set()
                self._persist_wakeup = None
        else:
            self.log.publish()
            if self._held:
                self.release_events(self.log.head)

    # --- connections --------------------------------------------------------

    def join(self, conn: Connection) -> None:
        if len(self.connections) >= self.config.max_users:
            raise RoomFull
        self.connections.add(conn)
        self.log.add(conn.subscriber)
        self._notify_occupancy()
        self.log.send_direct(conn.subscriber, Frame(sync_step1(self.doc.get_state())))
        snapshot = self.awareness_snapshot()
        if snapshot is not None:
            self.log.send_direct(conn.subscriber, snapshot)

    def leave(self, conn: Connection) -> None:
        if conn not in self.connections:
            return
        self.connections.discard(conn)
        self.log.remove(conn.subscriber)
        removed = []
        for client_id in conn.client_ids:
            record = self.awareness.pop(client_id, None)
            if record is not None and not record.entry.removed:
                removed.append(AwarenessEntry(client_id, record.entry.clock + 1, "null"))
        if removed:
            self._snapshot = None
            self._append(Entry(SERVER, awareness=removed), 16 * len(removed))
            self._awareness_changed(removed)
        self._notify_occupancy()

    def frames_for(self, start: int, entries: Sequence[Entry], conn_id: int) -> list[Frame]:
        end = start + len(entries)
        flush = self._flushes.get((start, end))
        if flush is None:
            if end > self._flushes_end:
                # writers always read up to the newest position: older runs are done
                self._flushes.clear()
                self._flushes_end = end
            flush = self._flushes[(start, end)] = Flush(entries, self.stats)
        return flush.frames(conn_id if conn_id in flush.authors else NOBODY)

    def send_direct(self, conn: Connection, frame: Frame, *, after: int = 0) -> None:
        if len(conn.subscriber.outbox) >= self.config.max_outbox:
            conn.fail(4009, "slow consumer", "slow_consumer")
            return
        self.log.send_direct(conn.subscriber, frame, after=after)

    # --- sync ---------------------------------------------------------------

    def sync_reply(self, conn: Connection, state_vector: bytes) -> None:
        """Answer SyncStep1 with the diff, then stream the log from this point.

        The diff is encoded once per (document state, state vector): twenty
        clients joining a large diagram at once share one encoded reply.
        """
        head = self.log.head
        if self._sync_cache_head != head:
            self._sync_cache = {}
            self._sync_cache_head = head
        frame = self._sync_cache.get(state_vector)
        if frame is None:
            try:
                diff = self.doc.get_update(state_vector)
            except Exception as exc:
                raise ProtocolError("invalid state vector") from exc
            frame = self._sync_cache[state_vector] = Frame(sync_step2(diff))
            self.stats.sync_encodes += 1
        self.send_direct(conn, frame, after=head)
        self.log.attach(conn.subscriber, head)

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
            self._refuse(conn, update, "read-only token")
            return
        if self.locked:
            self._refuse(conn, update, "the diagram is locked")
            return
        with _client_bytes():
            self._apply(conn.id, conn.origin, update)
        self.stats.updates_in += 1

    def _refuse(self, conn: Connection, update: bytes, reason: str) -> None:
        """Drop a client's update unapplied; tell it when the update had anything new.

        The client stays connected (it may still sync and show presence). A
        sync step 2 with nothing new is dropped silently: clients send one on
        every connect.
        """
        self.stats.reject("read_only")
        with _client_bytes():
            new = has_new_structs(update, self.doc.get_state())
        if new:
            self.send_direct(conn, Frame(permission_denied(reason)))

    def _on_meta(self, event: MapEvent) -> None:
        change = event.keys.get("locked")  # type: ignore[attr-defined]
        if change is not None:  # {"action", "oldValue", "newValue"}; no newValue when deleted
            self.locked = change.get("newValue") is True

    def _apply(self, author: int, origin: str | None, update: bytes) -> None:
        watched = self.events is not None and self._watching()
        self._changes.clear()
        self._element_changes.clear()
        self.doc.apply_update(update)
        for changes in self._changes:
            self._append(Entry(author, update=changes), len(changes), origin)
        if watched and self._element_changes:
            assert self.events is not None
            events = self.events.element_events(self.name, self._element_changes, origin)
            self._element_changes.clear()
            if events:
                self._held.append((self.log.head, events))
                if not self._pending or self.store_down:
                    self.release_events(self.log.head)

    async def apply_local(self, update: bytes, origin: str = "server") -> None:
        """Apply an edit the server makes itself (REST restore, import, file metadata).

        It takes a client update's path (logged as the CRDT encodes it, saved,
        then fanned out) but has no sender, so every client receives it.
        Returns once it is saved (or the store is down and it is served unsaved).
        """
        self._apply(SERVER, origin, update)
        await self._wait_saved(0)

    def _on_transaction(self, event: TransactionEvent) -> None:
        self._changes.append(event.update)

    # --- diagram events for JSON consumers (collab.events) -------------------

    def _watching(self, arriving: Sequence[AwarenessEntry] = ()) -> bool:
        """Whether to turn this room's changes into events; starts observing when it does.

        ``arriving`` are the awareness entries being reported now: they are
        recorded already, but must not count as known when watching starts.
        """
        if self.watch is not None:
            return True
        if self.events is None or not self.events.watches(self.name):
            return False
        self.watch = self.events.watch(self, skip={entry.client_id for entry in arriving})
        self._elements = self.doc.get("elements", type=Map)
        self._elements.observe(self._on_elements)
        return True

    def _on_elements(self, event: MapEvent) -> None:
        self._element_changes.append(event.keys)  # type: ignore[attr-defined]

    def release_events(self, upto: int | None = None) -> None:
        """Publish held element events whose updates are saved (up to log position ``upto``)."""
        if not self._held or self.events is None:
            return
        if upto is None:
            upto = self._saving_upto
        ready = 0
        for position, _ in self._held:
            if position > upto:
                break
            ready += 1
        if ready:
            released, self._held = self._held[:ready], self._held[ready:]
            for _, events in released:
                self.events.publish_held(events)

    def _awareness_changed(self, entries: Sequence[AwarenessEntry]) -> None:
        if self.events is not None and self._watching(entries):
            assert self.watch is not None
            self.events.awareness_changed(self, self.watch, entries)

    def set_guest(self, client_id: int, state: str | None) -> None:
        """Set (or with None, remove) an awareness state the server holds for a JSON client.

        It goes the way a connection's awareness goes (recorded, snapshot
        invalidated, broadcast to every client) but no connection owns it, so
        no peer can overwrite it; the caller removes it when its client leaves.
        """
        record = self.awareness.get(client_id)
        if record is not None and record.owner is not None:
            return  # a connection's client id: never the server's to change
        clock = record.entry.clock + 1 if record is not None else 0
        if state is None:
            if record is None:
                return
            entry = AwarenessEntry(client_id, clock, "null")
            del self.awareness[client_id]
            self.guests.discard(client_id)
        else:
            entry = AwarenessEntry(client_id, clock, state)
            self.awareness[client_id] = AwarenessRecord(entry, None)
            self.guests.add(client_id)
        self._snapshot = None
        self._append(Entry(SERVER, awareness=[entry]), 32)
        self._awareness_changed([entry])
        self._notify_occupancy()

    # --- awareness ----------------------------------------------------------

    def update_awareness(
        self, conn: Connection, entries: Sequence[AwarenessEntry]
    ) -> list[AwarenessEntry]:
        """Record the states this connection may set; return those that changed."""
        accepted = []
        for entry in entries:
            record = self.awareness.get(entry.client_id)
            if record is None:
                if entry.removed:
                    continue
            elif record.owner is not conn:
                continue  # a client id belongs to the connection that set it first
            elif not (
                entry.clock > record.entry.clock
                or (
                    entry.clock == record.entry.clock and entry.removed and not record.entry.removed
                )
            ):
                continue
            self.awareness[entry.client_id] = AwarenessRecord(entry, conn)
            conn.client_ids.add(entry.client_id)
            accepted.append(entry)
        if accepted:
            self._snapshot = None
        return accepted

    def broadcast_awareness(self, conn: Connection, entries: Sequence[AwarenessEntry]) -> None:
        self._append(Entry(conn.id, awareness=entries), 32 * len(entries))
        self._awareness_changed(entries)

    def awareness_snapshot(self) -> Frame | None:
        if self._snapshot is None:
            states = [r.entry for r in self.awareness.values() if not r.entry.removed]
            if not states:
                return None
            self._snapshot = Frame(awareness_message(encode_awareness_update(states)))
        return self._snapshot
