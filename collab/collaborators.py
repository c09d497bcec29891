"""JSON clients as collaborators, and the ``/events`` requests answered from the live rooms.

``join_collaboration`` / ``broadcast_cursor`` / ``leave_collaboration`` give
a JSON client on ``WS /events`` an awareness client id held by the server in
the room (:meth:`~collab.room.Room.hold_awareness`), so the browsers see it
as one more peer, with a name, a colour and a pointer. What it joined is
left when its connection ends, however it ends.

``get_diagram_status`` and ``get_active_users`` answer from the live rooms
(and the store, for a diagram nobody has open), not from the relay's
projection of past events.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
from pycrdt import Map

from collab.diagram_events import DiagramEvents
from collab.presence import color_of, name_of, presence_of, present
from relays.app import RelayApp
from relays.protocol import ErrorCode, ProtocolError
from storage import Store
from storage.excalidraw import load_doc
from storage.names import DIAGRAM_NAME, DIAGRAM_NAME_RULE

if TYPE_CHECKING:
    from collab.room import Room
    from collab.rooms import Rooms

log = logging.getLogger("inkwire.collaborators")


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


class Collaborators:
    """The excalidraw relay's collaboration requests, answered from the rooms."""

    def __init__(
        self,
        rooms: Rooms,
        relay: RelayApp,
        store: Store,
        events: DiagramEvents,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.rooms = rooms
        self.relay = relay
        self.store = store
        self.events = events
        self.clock = clock
        self.cursor_interval = relay.catalog.settings.get("cursor_throttle_ms", 50) / 1000
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
                guest.room.hold_awareness(guest.client_id, None)
            session.guests.clear()

    # --- request handlers ----------------------------------------------------------

    async def get_diagram_status(self, params: dict[str, Any]) -> dict[str, Any]:
        """Elements, users and the last save of a diagram, live if its room is loaded."""
        diagram = _diagram(params.get("diagram_id"), "diagram_id")
        saved = self.events.last_saved.get(diagram)
        room = self.rooms.rooms.get(diagram)
        status: dict[str, Any] = {"diagram_id": diagram, "loaded": room is not None}
        if room is not None:
            values = list(room.doc.get("elements", type=Map).values())
            users = len(present(room.awareness))
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
        for client_id, state in (present(room.awareness) if room is not None else {}).items():
            presence = presence_of(client_id, state)
            user: dict[str, Any] = {
                "user_id": presence.user_id,
                "client_id": client_id,
                "name": name_of(state) or presence.user_id,
                "color": color_of(state),
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
            if len(room.connections) + len(room.awareness.held) >= room.config.max_users:
                raise ProtocolError(ErrorCode.RATE_LIMITED, "room full")
            guest = session.guests[name] = Guest(room, _new_client_id(room), user)
        guest.user = user
        guest.room.hold_awareness(guest.client_id, guest.state())
        return {"room_id": name, "user_id": user["id"], "client_id": guest.client_id}

    async def leave_collaboration(self, params: dict[str, Any]) -> dict[str, Any]:
        session = _current()
        name = _diagram(params.get("room_id"), "room_id")
        guest = session.guests.pop(name, None)
        if guest is not None:
            guest.room.hold_awareness(guest.client_id, None)
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
        guest.room.hold_awareness(guest.client_id, guest.state())
        return {"room_id": name, "client_id": guest.client_id, "x": params["x"], "y": params["y"]}


def _current() -> Session:
    session = _session.get()
    if session is None:  # the relay app served without Collaborators.serve
        raise ProtocolError(ErrorCode.BAD_REQUEST, "collaboration needs a /events connection")
    return session


def _diagram(value: object, name: str) -> str:
    if not isinstance(value, str) or not DIAGRAM_NAME.fullmatch(value):
        raise ProtocolError(ErrorCode.INVALID_PAYLOAD, f"{name} must be {DIAGRAM_NAME_RULE}")
    return value


def _new_client_id(room: Room) -> int:
    """A fresh awareness client id, in the uint32 range y-protocols uses."""
    while True:
        client_id = secrets.randbelow(1 << 31) + 1
        if client_id not in room.awareness:
            return client_id


def _elements_and_lock(state: bytes | None) -> tuple[list[Any], bool]:
    doc = load_doc(state)
    locked = doc.get("meta", type=Map).get("locked") is True
    return list(doc.get("elements", type=Map).values()), locked
