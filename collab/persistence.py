"""How a room makes what it applied durable, and when it may publish it.

The durability contract: no client is sent an update before it is durable.
A room applies an update at once (so the order of updates, replies and
joins is one order) and appends it to its fan-out log unpublished; it hands
the update to its :class:`Persistence` and publishes the log only as far as
the persistence reports durable, through :meth:`Room.publish
<collab.room.Room.publish>`, the one place that rule is carried out.

:class:`StorePersistence` is the single-node implementation, over a
:class:`~storage.Store`:

- **Group commit.** Updates applied while a save runs go in the next one.
- **Store outage.** If saving fails, live editing goes on: the room publishes
  what it applied unsaved (readiness reports the outage) and the same batch is
  retried until it is saved; nothing is dropped, only delayed.
- **Backpressure.** A reader pauses while too much is applied but unsaved,
  so TCP slows the writing client down instead of memory growing.
- **Checkpoints.** After saves, the store may write a checkpoint it made due
  (from the live document when all of it is saved); after a quiet spell the
  room's ``quiet`` hooks run, then the store checkpoints and compacts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

import anyio
from anyio.abc import TaskStatus

from storage import Store

if TYPE_CHECKING:
    from collab.room import Room

log = logging.getLogger("inkwire.persistence")

STORE_RETRY_SECONDS = 0.5
MAX_UNSAVED = 2000  # updates applied but not yet saved before readers pause


class Persistence(Protocol):
    """What a room needs to make its updates durable (one per room)."""

    @property
    def holding(self) -> bool:
        """Whether updates are waiting to be durable (the room holds its log back)."""
        ...

    @property
    def down(self) -> bool:
        """Whether saving fails now (the room then serves its edits unsaved)."""
        ...

    def add(self, update: bytes, origin: str | None) -> None:
        """An update the room applied (and logged): make it durable, then publish."""
        ...

    async def wait_saved(self, most: int) -> None:
        """Return once at most ``most`` updates wait to be durable (or saving is down)."""
        ...

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Save as updates come, until cancelled (the room's task group owns it).

        The room answers clients once this has reported ``started``.
        """
        ...

    async def finish(self) -> None:
        """The room is closing: save and publish what is left, then checkpoint."""
        ...


PersistenceFactory = Callable[["Room", Store], Persistence]  # makes a room's persistence


class StorePersistence:
    """A room's updates saved through a :class:`~storage.Store` (the single-node way)."""

    # the store may checkpoint from the live document after saves (when all of it is saved)
    live_checkpoints = True

    def __init__(self, room: Room, store: Store) -> None:
        self.room = room
        self.store = store
        self._pending: list[bytes] = []  # applied, not yet durable
        self._origins: list[str | None] = []  # who made each pending update
        self._down = False
        self._wakeup: anyio.Event | None = None  # set when an update arrives
        self._saved: anyio.Event | None = None  # set after each save
        self._maintenance: anyio.Event | None = None  # set after each save, for maintain

    @property
    def holding(self) -> bool:
        return bool(self._pending) and not self._down

    @property
    def down(self) -> bool:
        return self._down

    def add(self, update: bytes, origin: str | None) -> None:
        self._pending.append(update)
        self._origins.append(origin)
        if self._wakeup is not None:
            self._wakeup.set()
            self._wakeup = None

    async def wait_saved(self, most: int) -> None:
        while len(self._pending) > most and not self._down:
            if self._saved is None:
                self._saved = anyio.Event()
            await self._saved.wait()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        async with anyio.create_task_group() as tg:
            if self.live_checkpoints:
                tg.start_soon(self._maintain_loop)
            task_status.started()
            await self._save_loop()

    async def finish(self) -> None:
        await self._save()
        await self._release()

    async def _save_loop(self) -> None:
        """Save pending updates as they come; after a quiet spell, checkpoint."""
        saved_since_release = False
        while True:
            if not self._pending:
                event = self._wakeup = anyio.Event()
                if not saved_since_release:
                    await event.wait()
                else:
                    with anyio.move_on_after(self.room.config.checkpoint_quiet) as quiet:
                        await event.wait()
                    if quiet.cancelled_caught:
                        self._wakeup = None
                        self.room.went_quiet()  # its hooks may make a last edit
                        if self._pending:
                            await self._save()
                        await self._release()
                        saved_since_release = False
                        continue
            await self._save()
            saved_since_release = True

    async def _save(self) -> None:
        """Commit what is pending, then let the room publish it.

        If the store fails, the room publishes unsaved, and the same batch is
        retried (after a pause) by the next call.
        """
        room = self.room
        upto = room.log.head  # what is logged now is covered by this save
        count = len(self._pending)
        seq = None
        if count:
            try:
                batch = self._pending[:count]
                seq = await self.store.append(room.name, batch, self._origins[:count])
            except Exception:
                if not self._down:
                    log.exception("room=%s saving failed; serving unsaved, retrying", room.name)
                self._down = True
                room.publish(room.log.head, None)
                await anyio.sleep(STORE_RETRY_SECONDS)
                return
            self._durable(batch)
            del self._pending[:count]
            del self._origins[:count]
            for event in (self._maintenance, self._saved):
                if event is not None:
                    event.set()
            self._maintenance = self._saved = None
            if self._down:
                log.warning("room=%s saving works again", room.name)
                self._down = False
        if not self._pending:
            # what was logged during the save (presence, other nodes' updates) waits for
            # nothing now; entries behind updates still pending wait for the next save
            upto = room.log.head
        room.publish(upto, seq)

    def _durable(self, updates: list[bytes]) -> None:
        """These updates were just saved (a cluster tells the other nodes here)."""

    async def _maintain_loop(self) -> None:
        """After saves, let the store do what they made due, without holding saves up."""
        while True:
            event = self._maintenance = anyio.Event()
            await event.wait()
            try:
                await self.store.maintain(self.room.name, self._saved_state)
            except Exception:
                log.exception("room=%s store maintenance failed", self.room.name)

    def _saved_state(self) -> bytes | None:
        """The document's state if all of it is saved (then it is the saved state)."""
        return None if self._pending or self._down else self.room.doc.get_update()

    async def _release(self) -> None:
        try:
            await self.store.release(self.room.name)
        except Exception:
            log.exception("room=%s checkpoint/compaction failed", self.room.name)
