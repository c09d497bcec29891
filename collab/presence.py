"""Reading awareness states: who someone is, their colour, pointer and selection.

Awareness states are whatever JSON the clients put there. The web app sends
``{"user": {"id", "name", "color"}, "pointer": {"x", "y"},
"selectedElementIds": {...}}``; other Excalidraw integrations put ``username``
or ``color`` at the top, or a selection list. These functions read any of
them and never fail on a state they do not understand (it reads as nobody).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from collab.awareness import RoomAwareness


@dataclass(slots=True)
class Presence:
    """Where one awareness client is: what the presence events report."""

    user_id: str
    pointer: tuple[float, float] | None = None
    selection: tuple[str, ...] = ()


def parse_state(text: str) -> dict[str, Any] | None:
    """An awareness state as a dict, or None (removed, empty, or not an object)."""
    try:
        state = json.loads(text)
    except ValueError:
        return None
    return state if isinstance(state, dict) and state else None


def present(awareness: RoomAwareness) -> dict[int, dict[str, Any]]:
    """The readable states of everyone present, by client id."""
    states = {}
    for client_id, entry in awareness.present():
        state = parse_state(entry.state)
        if state is not None:
            states[client_id] = state
    return states


def _user(state: Mapping[str, Any]) -> Mapping[str, Any]:
    user = state.get("user")
    return user if isinstance(user, dict) else {}


def name_of(state: Mapping[str, Any]) -> str | None:
    name = _user(state).get("name", state.get("username"))
    return name[:64] if isinstance(name, str) and name else None


def color_of(state: Mapping[str, Any]) -> str | None:
    color = _user(state).get("color", state.get("color"))
    if isinstance(color, dict):  # Excalidraw's {background, stroke}
        color = color.get("background", color.get("stroke"))
    return color if isinstance(color, str) else None


def presence_of(client_id: int, state: Mapping[str, Any]) -> Presence:
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
