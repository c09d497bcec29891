"""The set of loaded rooms, and the task group their lifecycles run in."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
from anyio.abc import TaskGroup

from collab.config import Config
from collab.hooks import RoomHooks
from collab.metrics import Stats
from collab.persistence import PersistenceFactory, StorePersistence
from collab.room import Room
from net.hosting import connection_closed
from net.keepalive import Keepalives
from storage import Store

if TYPE_CHECKING:
    from collab.connection import Connection

log = logging.getLogger("inkwire.rooms")


class ServerFull(Exception):
    pass


class Rooms:
    """The loaded rooms, by diagram.

    ``hooks`` are the extensions every room calls; ``persistence`` makes each
    room's persistence (the single-node one, or a cluster's).
    """

    def __init__(
        self,
        store: Store,
        config: Config,
        stats: Stats,
        hooks: Sequence[RoomHooks] = (),
        persistence: PersistenceFactory = StorePersistence,
    ) -> None:
        self.store = store
        self.config = config
        self.stats = stats
        self.hooks = tuple(hooks)
        self.persistence = persistence
        self.rooms: dict[str, Room] = {}
        self.connections: set[Connection] = set()
        interval = config.keepalive_interval
        # one timer for every connection's quiet line (see net.keepalive)
        self.keepalives = Keepalives(interval) if interval else None
        self._tg: TaskGroup | None = None
        self._emptied: anyio.Event | None = None

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Own the rooms' tasks until cancelled; rooms then persist and close."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            task_status.started()
            await anyio.sleep_forever()

    async def acquire(self, name: str) -> Room:
        """The loaded, open room for a diagram (loading it first if needed)."""
        while True:
            room = self.rooms.get(name)
            if room is None or room.closing:
                if room is None and len(self.rooms) >= self.config.max_rooms:
                    raise ServerFull
                room = Room(
                    name,
                    self.store,
                    self.config,
                    self.stats,
                    previous=room,
                    hooks=self.hooks,
                    persistence=self.persistence,
                )
                self.rooms[name] = room
                assert self._tg is not None, "Rooms.run() is not running"
                self._tg.start_soon(self._run_room, room)
            if not room.loaded.is_set():  # (a loaded room's wait would still yield a turn)
                await room.loaded.wait()
            if room.load_error is not None:
                raise RuntimeError(f"diagram {name!r} could not be loaded") from room.load_error
            if not room.closing:
                return room

    async def _run_room(self, room: Room) -> None:
        self.stats.rooms += 1
        log.info("load room=%s", room.name)
        try:
            await room.run()
        finally:
            self.stats.rooms -= 1
            if self.rooms.get(room.name) is room:
                del self.rooms[room.name]
            log.info("unload room=%s", room.name)

    def opened(self, conn: Connection) -> None:
        self.connections.add(conn)
        self.stats.connections += 1
        self.stats.connections_total += 1
        if self.stats.websocket is not None:
            self.stats.websocket.connected()

    def closed(self, conn: Connection) -> None:
        self.connections.discard(conn)
        self.stats.connections -= 1
        connection_closed(len(self.connections))
        if not self.connections and self._emptied is not None:
            self._emptied.set()

    async def wait_all_closed(self) -> None:
        if self.connections:
            self._emptied = anyio.Event()
            await self._emptied.wait()

    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> None:
        for conn in list(self.connections):
            conn.fail(code, reason)
