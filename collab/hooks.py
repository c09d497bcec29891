"""Room hooks: how features that are not the room's business follow what it does.

In the spirit of Hocuspocus's extensions, a feature that reacts to rooms (the
diagram events of :mod:`collab.diagram_events`, the tombstone purge of
:mod:`collab.tombstones`) subclasses :class:`RoomHooks`, overrides what it
needs, and is handed to :class:`~collab.rooms.Rooms`; the room calls every
extension at each of these points, in order, synchronously on the event loop.
An extension keeps its own per-room state (keyed by the room, dropped in
:meth:`RoomHooks.unloaded`); the room holds none of it.

The hooks run on the room's hot path: they must not block, and should cost
nothing for a room they do not care about.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from collab.protocol import AwarenessEntry

if TYPE_CHECKING:
    from collab.room import Room


class RoomHooks:
    """Extension points of a room; each does nothing unless overridden."""

    def loaded(self, room: Room) -> None:
        """The room's saved state is loaded; no client has been answered yet."""

    def applying(self, room: Room) -> None:
        """An update is about to be applied: the moment to start observing the document."""

    def applied(self, room: Room, origin: str | None, position: int) -> None:
        """An update was applied and logged up to log position ``position``.

        Nobody has been sent it yet: it becomes visible with the
        :meth:`published` call whose ``upto`` reaches ``position``. ``origin``
        is who made it, as the history records it.
        """

    def published(self, room: Room, upto: int, seq: int | None) -> None:
        """The room's log entries before ``upto`` are now being sent to its clients.

        ``seq`` is the saved version they were made durable with (an update
        is published only once durable), or None when no save came with them:
        nothing new needed saving, or the store is down and the room serves
        its edits unsaved until saving works again.
        """

    def awareness_changed(self, room: Room, entries: Sequence[AwarenessEntry]) -> None:
        """Awareness states changed (a coalesced broadcast, a departure, a held state)."""

    def quiet(self, room: Room) -> None:
        """Nothing was edited for ``checkpoint_quiet`` seconds; a checkpoint comes next.

        A good moment for housekeeping edits (:meth:`Room.apply_server`): what
        they change is saved before that checkpoint.
        """

    def unloaded(self, room: Room) -> None:
        """The room is closed: everything is saved and nobody is connected."""
