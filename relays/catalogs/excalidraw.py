"""excalidraw: collab's diagram events for JSON consumers (port 3042, path /events).

A collaboration room id is the diagram id. The collab server publishes these
from its Yjs rooms and answers the collaboration requests itself.
"""

from relays.catalog import Catalog, Collect, From, Get, Table, Update, event, method, request

catalog = Catalog(
    service="excalidraw",
    port=3042,
    path="/events",
    description="Diagram edits, cursors, selections and presence, from collab's Yjs rooms.",
    events=(
        event(
            "element.added",
            "diagram:{diagram_id}",
            "diagram_id element_id type props:object user_id?",
            also_on=("element:{element_id}",),
            method=method(
                "element_added",
                "diagram_id element user_id?",
                element_id=From("element", "id"),
                type=From("element", "type"),
                props="element",
            ),
        ),
        event(
            "element.updated",
            "diagram:{diagram_id}",
            "diagram_id element_id changes:object user_id?",
            also_on=("element:{element_id}",),
        ),
        event(
            "element.deleted",
            "diagram:{diagram_id}",
            "diagram_id element_id user_id?",
            also_on=("element:{element_id}",),
        ),
        event(
            "cursor.moved",
            "collaboration:{room_id}",
            "room_id user_id x:number y:number color?",
            also_on=("cursor",),
            method=method(
                "cursor_moved",
                "room_id user_id position",
                x=From("position", "x"),
                y=From("position", "y"),
                color=From("position", "color"),
            ),
        ),
        event(
            "selection.changed",
            "collaboration:{room_id}",
            "room_id user_id element_ids:array",
            also_on=("selection",),
            method=method(
                "selection_changed",
                "room_id user_id selected_elements",
                element_ids="selected_elements",
            ),
        ),
        event("user.joined", "collaboration:{room_id}", "room_id user_id name color?"),
        event("user.left", "collaboration:{room_id}", "room_id user_id"),
        event("diagram.saved", "diagram:{diagram_id}", "diagram_id storage_key timestamp"),
        event("diagram.locked", "diagram:{diagram_id}", "diagram_id user_id reason"),
    ),
    extra_channels=("global",),
    tables=(
        Table(
            "diagrams",
            key="diagram_id",
            updates=(
                Update(
                    "element.added",
                    "diagram_id",
                    "keep",
                    count_as="added",
                    collect=Collect("elements", "element_id"),
                ),
                Update("element.updated", "diagram_id", "keep", count_as="updated"),
                Update(
                    "element.deleted",
                    "diagram_id",
                    "keep",
                    count_as="deleted",
                    collect=Collect("elements", "element_id", remove=True),
                ),
                Update("diagram.saved", "diagram_id", status="saved"),
                Update("diagram.locked", "diagram_id", status="locked", flags={"locked": True}),
            ),
        ),
        Table(
            "rooms",
            key="room_id",
            updates=(
                Update("user.joined", "room_id", "keep", collect=Collect("users", "user_id", "*")),
                Update(
                    "user.left", "room_id", "keep", collect=Collect("users", "user_id", remove=True)
                ),
            ),
        ),
    ),
    requests=(
        request(
            "join_collaboration",
            "room_id user_id name? color?",
            emits="user.joined",
            doc="appear as a collaborator in the browsers",
        ),
        request("leave_collaboration", "room_id", emits="user.left"),
        request("broadcast_cursor", "room_id x:number y:number", emits="cursor.moved"),
        request("get_diagram_status", "diagram_id", Get("diagrams", "diagram_id")),
        request("get_active_users", "room_id", Get("rooms", "room_id")),
    ),
    settings={"max_users_per_room": 50, "cursor_throttle_ms": 50},
)
