"""Purging deleted elements' tombstones once they are past their retention.

Excalidraw keeps a deleted element as a tombstone (``isDeleted: true``) so a
peer that was offline learns of the deletion instead of resurrecting the
element; after a day that peer would have reconciled long ago (Excalidraw's
own window), and a tombstone is only weight. This extension removes such
tombstones as a server edit when a room goes quiet, just before its
checkpoint: the edit is saved and reaches connected clients like any other,
and the history keeps the tombstones.

The scan reads every element, so it runs off the paths that load, sync and
save, at most once an hour per room, and copies the document only when there
is something to purge.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from collab.hooks import RoomHooks
from storage.excalidraw import purge_tombstones, stale_tombstones

if TYPE_CHECKING:
    from collab.room import Room

log = logging.getLogger("inkwire.tombstones")

SCAN_INTERVAL = 3600.0  # seconds between two scans of a room for stale tombstones


class TombstonePurge(RoomHooks):
    """Drops tombstones older than ``retention`` seconds (None: keeps them forever)."""

    def __init__(self, retention: float | None) -> None:
        self.retention = retention
        self._next_scan: dict[Room, float] = {}  # time.monotonic() before which none runs

    def quiet(self, room: Room) -> None:
        retention = self.retention
        if retention is None or room.persistence.down:
            return
        now = time.monotonic()
        if now < self._next_scan.get(room, 0.0):
            return
        # a tombstone needs a day to go stale: scanning every quiet spell would redo
        # the same walk over every element for nothing
        self._next_scan[room] = now + min(retention, SCAN_INTERVAL)
        cutoff = (time.time() - retention) * 1000
        try:
            if not stale_tombstones(room.doc, cutoff):  # read the live doc; copy only to edit
                return
            update, purged = purge_tombstones(room.doc.get_update(), cutoff)
            if purged:
                log.info(
                    "room=%s purging %d tombstones older than %gs", room.name, purged, retention
                )
                room.apply_server(update, "purge")
        except Exception:  # served with its tombstones, as before
            log.exception("room=%s tombstone purge failed", room.name)

    def unloaded(self, room: Room) -> None:
        self._next_scan.pop(room, None)
