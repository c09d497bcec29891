"""Diagram events: what the rooms do, published on the excalidraw relay for JSON consumers.

The collab server mounts the excalidraw catalog's :class:`~relays.app.RelayApp`
at ``WS /events`` (see :mod:`collab.collaborators` for the requests it
answers). :class:`DiagramEvents` is a room extension (:mod:`collab.hooks`)
that turns what rooms do into that relay's events:

- ``element.added`` / ``element.updated`` / ``element.deleted``: from the
  ``elements`` map's own change events (only the keys a transaction touched),
  held until the update is durable and published with it, as Yjs peers only
  see an update once it is durable;
- ``user.joined`` / ``user.left`` / ``cursor.moved`` / ``selection.changed``:
  from the rooms' coalesced awareness broadcasts, changes only;
- ``diagram.saved``: after each save, once the element events it covers are out.

Publishing costs nothing while no JSON consumer follows a room: before each
transaction the room's hook asks :meth:`DiagramEvents.watches`, which answers
from what the hub reported through :meth:`~relays.hub.Hub.on_follow` (the rooms
whose ``diagram:`` or ``collaboration:`` channel is followed now, and whether
any ``element:``, ``cursor`` or ``selection`` channel is, which concern every
room), a few set lookups; in a cluster, the same reports for every node
(:mod:`cluster.rooms` gathers them). Once a room has been followed it stays
*watched* for the life of the server, even with nobody subscribed: a consumer
that reconnects with ``since`` must get either every event it missed or
``recovered: false``, never a gap the hub cannot see.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pycrdt import Map, MapEvent, Subscription

from collab.auth import diagram_channel
from collab.hooks import RoomHooks
from collab.presence import Presence, color_of, name_of, parse_state, presence_of, present
from collab.protocol import AwarenessEntry
from relays.app import RelayApp
from relays.protocol import ProtocolError
from storage.excalidraw import plain

if TYPE_CHECKING:
    from collab.room import Room

log = logging.getLogger("inkwire.events")

GLOBAL_CHANNELS = ("cursor", "selection")
Event = tuple[str, dict[str, Any]]  # (event name, payload)


@dataclass(eq=False)
class RoomWatch:
    """What the events of one watched room need: presence so far, element changes held."""

    elements: Map[Any]
    subscription: Subscription
    presence: dict[int, Presence] = field(default_factory=dict)
    changes: list[Mapping[str, Any]] = field(default_factory=list)  # of the update applying
    held: list[tuple[int, list[Event]]] = field(default_factory=list)  # (log position, events)


class DiagramEvents(RoomHooks):
    """Publishes the rooms' changes through the excalidraw relay."""

    def __init__(self, relay: RelayApp, *, cluster: bool = False) -> None:
        self.relay = relay
        self.watched: set[str] = set()  # diagrams once followed (see the module docstring)
        self.last_saved: dict[str, tuple[int, float]] = {}  # diagram -> (seq, unix time)
        self._watches: dict[Room, RoomWatch] = {}
        # followed now, from the hub's reports: rooms (by diagram, with how many of
        # their two channels) and the channels that concern every room
        self._rooms_followed: dict[str, int] = {}
        self._every_room_followed: set[str] = set()
        if not cluster:  # else the cluster reports what any node follows (cluster.rooms)
            relay.hub.on_follow(self.following)

    # --- who is watching ---------------------------------------------------------

    def watches(self, diagram: str) -> bool:
        """Whether a room's changes are worth turning into events (see the module docstring)."""
        if diagram in self.watched:
            return True
        if self._every_room_followed or diagram in self._rooms_followed:
            self.watched.add(diagram)
            return True
        channels = self.relay.hub.channels
        if channels and diagram_channel(diagram) in channels:
            self.watched.add(diagram)  # numbered already (history restored from a db)
            return True
        return False

    def watching(self, room: Room) -> bool:
        """Whether this room's changes are being turned into events now."""
        return room in self._watches

    def following(self, channel: str, followed: bool) -> None:
        """The hub's report: ``channel`` got its first follower, or lost its last."""
        kind, _, name = channel.partition(":")
        if kind == "element" or channel in GLOBAL_CHANNELS:
            if followed:
                self._every_room_followed.add(channel)
            else:
                self._every_room_followed.discard(channel)
        elif kind in ("diagram", "collaboration"):
            count = self._rooms_followed.get(name, 0) + (1 if followed else -1)
            if count:
                self._rooms_followed[name] = count
            else:
                del self._rooms_followed[name]

    def _watch(self, room: Room, arriving: Sequence[AwarenessEntry] = ()) -> RoomWatch | None:
        """The room's watch, started if its changes became worth watching; else None.

        Who is present already when watching starts has joined (no events for
        them), except ``arriving``: the awareness entries being reported now,
        recorded in the room already.
        """
        watch = self._watches.get(room)
        if watch is not None or not self.watches(room.name):
            return watch
        elements = room.doc.get("elements", type=Map)
        changes: list[Mapping[str, Any]] = []

        def on_elements(event: MapEvent) -> None:
            changes.append(event.keys)  # type: ignore[attr-defined]

        watch = RoomWatch(elements, elements.observe(on_elements), changes=changes)
        skip = {entry.client_id for entry in arriving}
        for client_id, state in present(room.awareness).items():
            if client_id not in skip:
                watch.presence[client_id] = presence_of(client_id, state)
        self._watches[room] = watch
        return watch

    # --- the room's hooks ----------------------------------------------------------

    def applying(self, room: Room) -> None:
        watch = self._watch(room)
        if watch is not None:
            watch.changes.clear()

    def applied(self, room: Room, origin: str | None, position: int) -> None:
        watch = self._watches.get(room)
        if watch is None or not watch.changes:
            return
        events = self.element_events(room.name, watch.changes, origin)
        watch.changes.clear()
        if events:
            watch.held.append((position, events))

    def published(self, room: Room, upto: int, seq: int | None) -> None:
        """Release the element events now durable; then, after a save, ``diagram.saved``.

        The element events of the batch just saved go out first, so a consumer
        never sees ``diagram.saved`` before the edits it covers.
        """
        watch = self._watches.get(room)
        if watch is not None and watch.held:
            held = watch.held
            ready = 0
            while ready < len(held) and held[ready][0] <= upto:
                ready += 1
            if ready:
                released, watch.held = held[:ready], held[ready:]
                for _, events in released:
                    for name, data in events:
                        self.publish(name, data)
        if seq is None:
            return
        now = time.time()
        self.last_saved[room.name] = (seq, now)
        if room.name in self.watched:
            self.publish(
                "diagram.saved",
                {
                    "diagram_id": room.name,
                    "storage_key": f"{room.name}@{seq}",
                    "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
                    "seq": seq,
                },
            )

    def awareness_changed(self, room: Room, entries: Sequence[AwarenessEntry]) -> None:
        watch = self._watch(room, entries)
        if watch is not None:
            self.presence_events(room.name, watch, entries)

    def unloaded(self, room: Room) -> None:
        watch = self._watches.pop(room, None)
        if watch is not None:
            watch.elements.unobserve(watch.subscription)

    # --- the events ------------------------------------------------------------------

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Publish one event; one the catalog refuses (an odd element id) is dropped."""
        try:
            self.relay.publish(event, data)
        except ProtocolError as exc:
            log.debug("dropped %s: %s", event, exc.message)

    def element_events(
        self, diagram: str, changes: Sequence[Mapping[str, Any]], origin: str | None
    ) -> list[Event]:
        """The element events of one applied update, from its map change events.

        A key that appears is ``added`` (unless it arrives as a tombstone), one
        whose ``isDeleted`` turns true is ``deleted`` (and back: ``added``),
        any other change is ``updated`` with the fields that differ.
        """
        out: list[Event] = []
        for keys in changes:
            for element_id, change in keys.items():
                was = _live(change.get("oldValue"))  # None: absent, or a tombstone
                now = _live(change.get("newValue"))
                base: dict[str, Any] = {"diagram_id": diagram, "element_id": str(element_id)}
                if origin is not None:
                    base["user_id"] = origin
                if now is not None and was is None:
                    element = plain(now)
                    kind = element.get("type")
                    base.update(type=kind if isinstance(kind, str) else "unknown", props=element)
                    out.append(("element.added", base))
                elif was is not None and now is None:
                    out.append(("element.deleted", base))
                elif was is not None and now is not None:
                    old, new = was, now
                    diff = {k: plain(v) for k, v in new.items() if old.get(k) != v}
                    diff.update((k, None) for k in old if k not in new)
                    if diff:
                        out.append(("element.updated", {**base, "changes": diff}))
        return out

    def presence_events(
        self, name: str, watch: RoomWatch, entries: Sequence[AwarenessEntry]
    ) -> None:
        """Presence events from one coalesced awareness broadcast (or removals)."""
        for entry in entries:
            before = watch.presence.get(entry.client_id)
            if entry.removed:
                if before is not None:
                    del watch.presence[entry.client_id]
                    self.publish("user.left", {"room_id": name, "user_id": before.user_id})
                continue
            state = parse_state(entry.state)
            if state is None:
                continue
            now = presence_of(entry.client_id, state)
            watch.presence[entry.client_id] = now
            color = color_of(state)
            if before is None:
                joined: dict[str, Any] = {
                    "room_id": name,
                    "user_id": now.user_id,
                    "name": name_of(state) or now.user_id,
                }
                if color is not None:
                    joined["color"] = color
                self.publish("user.joined", joined)
                before = Presence(now.user_id)
            if now.pointer is not None and now.pointer != before.pointer:
                moved: dict[str, Any] = {
                    "room_id": name,
                    "user_id": now.user_id,
                    "x": now.pointer[0],
                    "y": now.pointer[1],
                }
                if color is not None:
                    moved["color"] = color
                self.publish("cursor.moved", moved)
            if now.selection != before.selection:
                self.publish(
                    "selection.changed",
                    {"room_id": name, "user_id": now.user_id, "element_ids": list(now.selection)},
                )


def _live(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) and not value.get("isDeleted") else None
