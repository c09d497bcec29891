"""Diagram events for JSON consumers: the rooms, seen through the excalidraw relay.

The collab server mounts the excalidraw catalog's :class:`~relays.app.RelayApp`
at ``WS /events``. This module is the bridge between it and the Yjs rooms:

- **Publishing.** A room reports what its transactions did to the ``elements``
  map (only the keys a transaction touched, from the map's own change event)
  and what its coalesced awareness broadcasts changed; this turns them into
  ``element.*``, ``user.*``, ``cursor.moved`` and ``selection.changed``, and
  the store's ``on_saved`` hook into ``diagram.saved``.
- **Answering.** ``get_diagram_status`` and ``get_active_users`` answer from
  the live rooms, not from the relay's projection, and ``join_collaboration``
  / ``broadcast_cursor`` / ``leave_collaboration`` give a JSON client an
  awareness client id owned by the server, so browsers see it as a peer.

Publishing costs nothing while no JSON consumer follows a room: a room asks
:meth:`DiagramEvents.watches` before each transaction, which answers from
what the hub reported through :meth:`~relays.hub.Hub.on_follow` (the rooms
whose ``diagram:`` or ``collaboration:`` channel is followed now, and whether
any ``element:``, ``cursor`` or ``selection`` channel is, which concern every
room), a few set lookups. Once a room has been followed it stays *watched*
for the life of the server, even with nobody subscribed: a consumer that
reconnects with ``since`` must get either every event it missed or
``recovered: false``, never a gap the hub cannot see.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable, Collection, Mapping, Sequence
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from pycrdt import Map

from collab.protocol import AwarenessEntry
from relays.app import RelayApp
from relays.protocol import ErrorCode, ProtocolError
from storage import Store
from storage.excalidraw import load_doc, plain

if TYPE_CHECKING:
    from collab.room import Room
    from collab.rooms import Rooms

log = logging.getLogger("inkwire.events")

DIAGRAM_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
GLOBAL_CHANNELS = ("cursor", "selection")
HeldEvent = tuple[str, dict[str, Any]]  # (event name, payload), published once saved


@dataclass(slots=True)
class Presence:
    """What the events last said about one awareness client, to publish only changes."""

    user_id: str
    pointer: tuple[float, float] | None = None
    selection: tuple[str, ...] = ()


@dataclass(eq=False)
class RoomWatch:
    """A watched room's event state: the presence of each awareness client."""

    presence: dict[int, Presence] = field(default_factory=dict)


@dataclass(eq=False)
class Guest:
    """A JSON client shown to the browsers as a collaborator in one room."""

    room: Room
    client_id: int
    user: dict[str, Any]
    pointer: dict[str, Any] | None = None
    last_cursor: float = float("-inf")

    def state(self) -> str:
        state: dict[str, Any] = {"user": self.user}
        if self.pointer is not None:
            state["pointer"] = self.pointer
        return json.dumps(state)


@dataclass(eq=False)
class Session:
    """One ``/events`` connection's collaborator identities, by room."""

    guests: dict[str, Guest] = field(default_factory=dict)


_session: ContextVar[Session | None] = ContextVar("inkwire_events_session", default=None)


class DiagramEvents:
    """Publishes the rooms' changes through the relay and answers its collaboration requests."""

    def __init__(
        self,
        rooms: Rooms,
        relay: RelayApp,
        store: Store,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rooms = rooms
        self.relay = relay
        self.store = store
        self.clock = clock
        self.watched: set[str] = set()  # diagrams once followed (see the module docstring)
        self.last_saved: dict[str, tuple[int, float]] = {}  # diagram -> (seq, unix time)
        self.cursor_interval = relay.catalog.settings.get("cursor_throttle_ms", 50) / 1000
        # followed now, from the hub's reports: rooms (by diagram, with how many of
        # their two channels) and the channels that concern every room
        self._rooms_followed: dict[str, int] = {}
        self._every_room_followed: set[str] = set()
        relay.hub.on_follow(self._following)
        for name, handler in (
            ("get_diagram_status", self.get_diagram_status),
            ("get_active_users", self.get_active_users),
            ("join_collaboration", self.join_collaboration),
            ("leave_collaboration", self.leave_collaboration),
            ("broadcast_cursor", self.broadcast_cursor),
        ):
            relay.handle(name)(handler)

    # --- the /events endpoint ------------------------------------------------

    async def serve(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """``WS /events``: the relay protocol, with this connection's collaborator session.

        The session travels in a context variable: the relay runs request
        handlers in the connection's own task, so they see it without the
        relay knowing about collaborators, and whatever the connection joined
        is left when it ends, however it ends.
        """
        async with self.session():
            await self.relay({**scope, "path": "/"}, receive, send)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[Session]:
        session = Session()
        token = _session.set(session)
        try:
            yield session
        finally:
            _session.reset(token)
            for guest in list(session.guests.values()):
                guest.room.set_guest(guest.client_id, None)
            session.guests.clear()

    # --- who is watching -------------------------------------------------------

    def watches(self, diagram: str) -> bool:
        """Whether a room's changes are worth turning into events (see the module docstring)."""
        if diagram in self.watched:
            return True
        if self._every_room_followed or diagram in self._rooms_followed:
            self.watched.add(diagram)
            return True
        channels = self.relay.hub.channels
        if channels and f"diagram:{diagram}" in channels:
            self.watched.add(diagram)  # numbered already (history restored from a db)
            return True
        return False

    def _following(self, channel: str, followed: bool) -> None:
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

    def watch(self, room: Room, skip: Collection[int] = ()) -> RoomWatch:
        """Start watching a room: who is there already has joined (no events for them)."""
        watch = RoomWatch()
        for client_id, record in room.awareness.items():
            if not record.entry.removed and client_id not in skip:
                state = _state(record.entry.state)
                if state is not None:
                    watch.presence[client_id] = _presence(client_id, state)
        return watch

    # --- publishing --------------------------------------------------------------

    def publish(self, event: str, data: dict[str, Any]) -> None:
        """Publish one event; one the catalog refuses (an odd element id) is dropped."""
        try:
            self.relay.publish(event, data)
        except ProtocolError as exc:
            log.debug("dropped %s: %s", event, exc.message)

    def element_events(
        self, diagram: str, changes: Sequence[Mapping[str, Any]], origin: str | None
    ) -> list[HeldEvent]:
        """The element events of one applied update, from its map change events.

        A key that appears is ``added`` (unless it arrives as a tombstone), one
        whose ``isDeleted`` turns true is ``deleted`` (and back: ``added``),
        any other change is ``updated`` with the fields that differ.
        """
        out: list[HeldEvent] = []
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

    def publish_held(self, events: Sequence[HeldEvent]) -> None:
        for event, data in events:
            self.publish(event, data)

    def awareness_changed(
        self, room: Room, watch: RoomWatch, entries: Sequence[AwarenessEntry]
    ) -> None:
        """Presence events from one coalesced awareness broadcast (or removals)."""
        name = room.name
        for entry in entries:
            before = watch.presence.get(entry.client_id)
            if entry.removed:
                if before is not None:
                    del watch.presence[entry.client_id]
                    self.publish("user.left", {"room_id": name, "user_id": before.user_id})
                continue
            state = _state(entry.state)
            if state is None:
                continue
            now = _presence(entry.client_id, state)
            watch.presence[entry.client_id] = now
            color = _color(state)
            if before is None:
                joined: dict[str, Any] = {
                    "room_id": name,
                    "user_id": now.user_id,
                    "name": _name(state) or now.user_id,
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

    def saved(self, diagram: str, seq: int) -> None:
        """The store's ``on_saved`` hook: remember the seq; announce it if anyone watches.

        The room's element events of the batch just committed go out first, so
        a consumer never sees ``diagram.saved`` before the edits it covers.
        """
        now = time.time()
        self.last_saved[diagram] = (seq, now)
        if diagram not in self.watched:
            return
        room = self.rooms.rooms.get(diagram)
        if room is not None:
            room.release_events()
        self.publish(
            "diagram.saved",
            {
                "diagram_id": diagram,
                "storage_key": f"{diagram}@{seq}",
                "timestamp": datetime.fromtimestamp(now, UTC).isoformat(),
                "seq": seq,
            },
        )

    # --- request handlers ----------------------------------------------------------

    async def get_diagram_status(self, params: dict[str, Any]) -> dict[str, Any]:
        """Elements, users and the last save of a diagram, live if its room is loaded."""
        diagram = _diagram(params.get("diagram_id"), "diagram_id")
        saved = self.last_saved.get(diagram)
        room = self.rooms.rooms.get(diagram)
        status: dict[str, Any] = {"diagram_id": diagram, "loaded": room is not None}
        if room is not None:
            values = list(room.doc.get("elements", type=Map).values())
            users = len(_present(room))
            connections = len(room.connections)
            locked = room.locked
        else:
            state = await self.store.load(diagram)
            if state is None and saved is None:
                raise ProtocolError(ErrorCode.NOT_FOUND, f"no diagram {diagram!r}")
            values, locked = await anyio.to_thread.run_sync(_elements_and_lock, state)
            users = connections = 0
        live = sum(1 for v in values if isinstance(v, dict) and not v.get("isDeleted"))
        status.update(
            elements=live,
            deleted=len(values) - live,
            users=users,
            connections=connections,
            locked=locked,
            last_saved_seq=saved[0] if saved else None,
            last_saved_at=(datetime.fromtimestamp(saved[1], UTC).isoformat() if saved else None),
        )
        return status

    async def get_active_users(self, params: dict[str, Any]) -> dict[str, Any]:
        """The room's awareness states as users (none if the room is not loaded)."""
        name = _diagram(params.get("room_id"), "room_id")
        room = self.rooms.rooms.get(name)
        users = []
        for client_id, state in (_present(room) if room is not None else {}).items():
            presence = _presence(client_id, state)
            user: dict[str, Any] = {
                "user_id": presence.user_id,
                "client_id": client_id,
                "name": _name(state) or presence.user_id,
                "color": _color(state),
                "selected": list(presence.selection),
            }
            if presence.pointer is not None:
                user["x"], user["y"] = presence.pointer
            users.append(user)
        return {"room_id": name, "users": users, "count": len(users)}

    async def join_collaboration(self, params: dict[str, Any]) -> dict[str, Any]:
        """Appear in the room's awareness, as the browsers show any other peer."""
        session = _current()
        name = _diagram(params.get("room_id"), "room_id")
        user = {"id": params["user_id"], "name": params.get("name") or params["user_id"]}
        if isinstance(params.get("color"), str):
            user["color"] = params["color"]
        guest = session.guests.get(name)
        if guest is None or guest.room.closing:
            try:
                room = await self.rooms.acquire(name)
            except Exception as exc:
                log.warning("join_collaboration: room %s unavailable: %s", name, exc)
                raise ProtocolError(ErrorCode.INTERNAL_ERROR, "diagram unavailable") from exc
            if len(room.connections) + len(room.guests) >= room.config.max_users:
                raise ProtocolError(ErrorCode.RATE_LIMITED, "room full")
            guest = session.guests[name] = Guest(room, _new_client_id(room), user)
        guest.user = user
        guest.room.set_guest(guest.client_id, guest.state())
        return {"room_id": name, "user_id": user["id"], "client_id": guest.client_id}

    async def leave_collaboration(self, params: dict[str, Any]) -> dict[str, Any]:
        session = _current()
        name = _diagram(params.get("room_id"), "room_id")
        guest = session.guests.pop(name, None)
        if guest is not None:
            guest.room.set_guest(guest.client_id, None)
        return {"room_id": name, "left": guest is not None}

    async def broadcast_cursor(self, params: dict[str, Any]) -> dict[str, Any]:
        """Move this client's pointer in the room, at most once per cursor interval.

        A faster client waits (its next request is read later): the same
        bound the browsers' awareness gets from the room's coalescing.
        """
        session = _current()
        name = _diagram(params.get("room_id"), "room_id")
        guest = session.guests.get(name)
        if guest is None:
            raise ProtocolError(ErrorCode.BAD_REQUEST, "join_collaboration first")
        wait = guest.last_cursor + self.cursor_interval - self.clock()
        if wait > 0:
            await anyio.sleep(wait)
        guest.last_cursor = self.clock()
        guest.pointer = {"x": params["x"], "y": params["y"], "tool": "pointer"}
        guest.room.set_guest(guest.client_id, guest.state())
        return {"room_id": name, "client_id": guest.client_id, "x": params["x"], "y": params["y"]}


# --- helpers ---------------------------------------------------------------------------


def _current() -> Session:
    session = _session.get()
    if session is None:  # the relay app served without DiagramEvents.serve
        raise ProtocolError(ErrorCode.BAD_REQUEST, "collaboration needs a /events connection")
    return session


def _diagram(value: object, name: str) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= 128
        or not DIAGRAM_CHARS.issuperset(value)
    ):
        raise ProtocolError(
            ErrorCode.INVALID_PAYLOAD, f"{name} must be 1-128 characters of [A-Za-z0-9._-]"
        )
    return value


def _new_client_id(room: Room) -> int:
    """A fresh awareness client id, in the uint32 range y-protocols uses."""
    while True:
        client_id = secrets.randbelow(1 << 31) + 1
        if client_id not in room.awareness:
            return client_id


def _state(text: str) -> dict[str, Any] | None:
    try:
        state = json.loads(text)
    except ValueError:
        return None
    return state if isinstance(state, dict) and state else None


def _present(room: Room) -> dict[int, dict[str, Any]]:
    present = {}
    for client_id, record in room.awareness.items():
        if not record.entry.removed:
            state = _state(record.entry.state)
            if state is not None:
                present[client_id] = state
    return present


def _user(state: Mapping[str, Any]) -> Mapping[str, Any]:
    user = state.get("user")
    return user if isinstance(user, dict) else {}


def _name(state: Mapping[str, Any]) -> str | None:
    name = _user(state).get("name", state.get("username"))
    return name[:64] if isinstance(name, str) and name else None


def _color(state: Mapping[str, Any]) -> str | None:
    color = _user(state).get("color", state.get("color"))
    if isinstance(color, dict):  # Excalidraw's {background, stroke}
        color = color.get("background", color.get("stroke"))
    return color if isinstance(color, str) else None


def _presence(client_id: int, state: Mapping[str, Any]) -> Presence:
    uid = _user(state).get("id")
    user_id = uid if isinstance(uid, str) and uid else str(client_id)
    pointer = state.get("pointer")
    position = None
    if isinstance(pointer, dict):
        x, y = pointer.get("x"), pointer.get("y")
        if isinstance(x, int | float) and isinstance(y, int | float):
            position = (float(x), float(y))
    selected = state.get("selectedElementIds")
    if isinstance(selected, dict):
        selection = tuple(sorted(str(k) for k, v in selected.items() if v))
    elif isinstance(selected, list):
        selection = tuple(sorted(str(k) for k in selected))
    else:
        selection = ()
    return Presence(user_id, position, selection)


def _live(value: object) -> dict[str, Any] | None:
    return value if isinstance(value, dict) and not value.get("isDeleted") else None


def _elements_and_lock(state: bytes | None) -> tuple[list[Any], bool]:
    doc = load_doc(state)
    locked = doc.get("meta", type=Map).get("locked") is True
    return list(doc.get("elements", type=Map).values()), locked
