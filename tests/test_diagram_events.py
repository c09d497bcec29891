"""Diagram events on ``WS /events``: JSON consumers see what Yjs peers do, and take part.

Real servers: a JSON client written the way existing relay clients are
(``tests.relayclient``) on ``/events``, bare y-websocket peers on ``/yjs``.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from collab.app import CollabApp
from collab.config import Config
from collab.diagram_events import DiagramEvents
from relays.app import RelayApp
from relays.catalogs.excalidraw import catalog as excalidraw_catalog
from storage.sqlite import SQLiteStore
from tests.conftest import RunningServer
from tests.relayclient import Client, client
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio

MakeServer = Callable[..., AbstractAsyncContextManager[RunningServer]]


def events_url(server: RunningServer) -> str:
    return f"ws://127.0.0.1:{server.port}/events"


async def subscribed(c: Client, *channels: str) -> None:
    """Subscribe and wait for the replies, so later edits are certainly followed."""
    ids = [await c.subscribe(channel) for channel in channels]
    for message_id in ids:
        reply = await c.reply(message_id)
        assert reply["type"] == "response", reply


async def ask(c: Client, event: str, data: dict[str, Any]) -> dict[str, Any]:
    reply = await c.reply(await c.request(event, data))
    return reply


def named(c: Client, *names: str, room: str | None = None) -> list[dict[str, Any]]:
    return [e for e in c.events if e["event"] in names and (room is None or e["room"] == room)]


def elements(c: Client) -> list[dict[str, Any]]:
    """The element events a client received (saves are announced on the same channel)."""
    return named(c, "element.added", "element.updated", "element.deleted")


def element(eid: str, version: int, **fields: Any) -> dict[str, Any]:
    return {"id": eid, "type": "rectangle", "version": version, "x": 0, "y": 0, **fields}


async def test_element_events_reach_the_diagram_and_element_channels(
    collab_server: RunningServer,
) -> None:
    async with (
        client(events_url(collab_server)) as watcher,
        client(events_url(collab_server)) as one,
    ):
        assert watcher.welcome["event"] == "session.created"
        assert watcher.welcome["data"]["server"] == "excalidraw"
        await subscribed(watcher, "diagram:d1")
        await subscribed(one, "element:e1")
        async with peer(f"{collab_server.yjs_url}/d1", 11) as alice:
            await alice.send_set("e1", element("e1", 1))
            await alice.send_set("e2", element("e2", 1))
            await alice.send_set("e1", element("e1", 2, x=40))
            await alice.send_set("e1", element("e1", 3, x=40, isDeleted=True))
            await watcher.wait(lambda: len(elements(watcher)) >= 4)

        kinds = [(e["event"], e["data"]["element_id"]) for e in elements(watcher)]
        assert kinds == [
            ("element.added", "e1"),
            ("element.added", "e2"),
            ("element.updated", "e1"),
            ("element.deleted", "e1"),
        ]
        added, _, updated, deleted = elements(watcher)
        assert added["room"] == "diagram:d1"
        assert added["data"]["diagram_id"] == "d1"
        assert added["data"]["type"] == "rectangle"
        assert added["data"]["props"] == element("e1", 1)  # Yjs floats back as JSON ints
        assert updated["data"]["changes"] == {"version": 2, "x": 40}
        assert deleted["data"]["element_id"] == "e1"
        assert all(e["data"]["user_id"] for e in elements(watcher))  # who made the edit
        # every save is announced too (the in-memory store reports durability as well)
        assert named(watcher, "diagram.saved", room="diagram:d1")

        await one.wait(lambda: len(one.events) >= 3)
        assert [e["event"] for e in one.events] == [
            "element.added",
            "element.updated",
            "element.deleted",
        ]
        assert {e["room"] for e in one.events} == {"element:e1"}


async def test_a_concurrent_peer_edit_is_one_event_per_key(collab_server: RunningServer) -> None:
    """Only keys a transaction touched are looked at: an unrelated key stays silent."""
    async with client(events_url(collab_server)) as watcher:
        await subscribed(watcher, "diagram:d2")
        async with (
            peer(f"{collab_server.yjs_url}/d2", 21) as a,
            peer(f"{collab_server.yjs_url}/d2", 22) as b,
        ):
            await a.send_set("a", element("a", 1))
            await wait_until(lambda: "a" in b.snapshot())
            await b.send_set("b", element("b", 1))
            await b.send_set("b", element("b", 1))  # the same value again: no change
            await watcher.wait(lambda: len(elements(watcher)) >= 2)
            await wait_until(lambda: "b" in a.snapshot())
        assert [(e["event"], e["data"]["element_id"]) for e in elements(watcher)] == [
            ("element.added", "a"),
            ("element.added", "b"),
        ]


async def test_presence_events_on_the_collaboration_channel(
    collab_server: RunningServer,
) -> None:
    async with (
        client(events_url(collab_server)) as watcher,
        client(events_url(collab_server)) as cursors,
    ):
        await subscribed(watcher, "collaboration:d1")
        await subscribed(cursors, "cursor", "selection")
        async with peer(f"{collab_server.yjs_url}/d1", 31) as alice:
            ada = {"user": {"name": "Ada", "color": "#e03131"}, "pointer": {"x": 1, "y": 2}}
            await alice.set_awareness(ada)
            await watcher.wait(lambda: len(named(watcher, "cursor.moved")) >= 1)
            joined = named(watcher, "user.joined")[0]
            assert joined["room"] == "collaboration:d1"
            data = joined["data"]
            assert (data["room_id"], data["user_id"], data["name"], data["color"]) == (
                "d1",
                "31",
                "Ada",
                "#e03131",
            )
            moved = named(watcher, "cursor.moved")[0]["data"]
            assert (moved["user_id"], moved["x"], moved["y"]) == ("31", 1, 2)

            await alice.set_awareness({**ada, "selectedElementIds": {"e1": True, "e2": True}})
            await watcher.wait(lambda: len(named(watcher, "selection.changed")) >= 1)
            selection = named(watcher, "selection.changed")[0]["data"]
            assert selection["element_ids"] == ["e1", "e2"]
            assert len(named(watcher, "cursor.moved")) == 1  # the pointer did not move

            await alice.set_awareness(None)
            await watcher.wait(lambda: len(named(watcher, "user.left")) >= 1)
            assert named(watcher, "user.left")[0]["data"]["user_id"] == "31"

            # the global channels carry the same cursor and selection events
            await cursors.wait(lambda: len(cursors.events) >= 2)
            assert {e["room"] for e in cursors.events} == {"cursor", "selection"}

            # a peer that just goes away leaves too (the room removes its states)
            async with peer(f"{collab_server.yjs_url}/d1", 32) as bob:
                await bob.set_awareness({"user": {"name": "Bob", "id": "bob@example"}})
                await watcher.wait(lambda: len(named(watcher, "user.joined")) >= 2)
            await watcher.wait(lambda: len(named(watcher, "user.left")) >= 2)
            left = named(watcher, "user.left")[1]["data"]
            assert left["user_id"] == "bob@example"  # the state's own user id wins


async def test_diagram_saved_after_the_edits_it_covers(
    make_server: MakeServer, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "events.db")
    app = CollabApp(store=store, config=Config(grace_period=1.0))
    try:
        async with make_server(app=app) as server, client(events_url(server)) as watcher:
            await subscribed(watcher, "diagram:d1")
            async with peer(f"{server.yjs_url}/d1", 41) as alice:
                await alice.send_set("e1", element("e1", 1))
                await watcher.wait(lambda: len(named(watcher, "diagram.saved")) >= 1)
            first = [e["event"] for e in watcher.events][:2]
            assert first == ["element.added", "diagram.saved"]
            saved = named(watcher, "diagram.saved")[0]["data"]
            assert saved["diagram_id"] == "d1"
            assert saved["seq"] >= 1
            assert saved["storage_key"] == f"d1@{saved['seq']}"
            assert saved["timestamp"].endswith("+00:00")

            status = (await ask(watcher, "get_diagram_status", {"diagram_id": "d1"}))["data"]
            assert status["elements"] == 1
            assert status["last_saved_seq"] == saved["seq"]
    finally:
        store.close()


async def test_status_and_active_users_from_the_live_room(collab_server: RunningServer) -> None:
    async with client(events_url(collab_server)) as c:
        missing = await ask(c, "get_diagram_status", {"diagram_id": "nowhere"})
        assert missing["type"] == "error"
        assert missing["error_code"] == "NOT_FOUND"
        bad = await ask(c, "get_active_users", {"room_id": "no such/room"})
        assert bad["error_code"] == "INVALID_PAYLOAD"

        async with (
            peer(f"{collab_server.yjs_url}/d5", 51) as a,
            peer(f"{collab_server.yjs_url}/d5", 52) as b,
        ):
            await a.send_set("e1", element("e1", 1))
            await a.send_set("e2", element("e2", 1))
            await a.send_set("e2", element("e2", 2, isDeleted=True))
            await a.set_awareness({"user": {"name": "Ada"}, "pointer": {"x": 5, "y": 6}})
            await b.set_awareness({"user": {"name": "Bob"}, "selectedElementIds": {"e1": True}})
            await wait_until(lambda: len(a.awareness) >= 1 and len(b.awareness) >= 1)

            status = (await ask(c, "get_diagram_status", {"diagram_id": "d5"}))["data"]
            assert status["diagram_id"] == "d5"
            assert status["loaded"] is True
            assert (status["elements"], status["deleted"]) == (1, 1)
            assert (status["users"], status["connections"]) == (2, 2)

            users = (await ask(c, "get_active_users", {"room_id": "d5"}))["data"]
            assert users["count"] == 2
            by_name = {u["name"]: u for u in users["users"]}
            assert (by_name["Ada"]["x"], by_name["Ada"]["y"]) == (5, 6)
            assert by_name["Ada"]["client_id"] == 51
            assert by_name["Bob"]["selected"] == ["e1"]

        empty = (await ask(c, "get_active_users", {"room_id": "d-empty"}))["data"]
        assert empty == {"room_id": "d-empty", "users": [], "count": 0}


async def test_a_json_client_is_a_collaborator_in_the_browsers(
    collab_server: RunningServer,
) -> None:
    async with (
        peer(f"{collab_server.yjs_url}/d6", 61) as browser,
        client(events_url(collab_server)) as watcher,
    ):
        await subscribed(watcher, "collaboration:d6")
        async with client(events_url(collab_server)) as bot:
            early = await ask(bot, "broadcast_cursor", {"room_id": "d6", "x": 1, "y": 1})
            assert early["error_code"] == "BAD_REQUEST"  # join first

            joined = await ask(
                bot,
                "join_collaboration",
                {"room_id": "d6", "user_id": "bot-1", "name": "Bot", "color": "#1971c2"},
            )
            assert joined["type"] == "response", joined
            client_id = joined["data"]["client_id"]
            await wait_until(lambda: client_id in browser.awareness)
            assert browser.awareness[client_id]["user"] == {
                "id": "bot-1",
                "name": "Bot",
                "color": "#1971c2",
            }

            moved = await ask(bot, "broadcast_cursor", {"room_id": "d6", "x": 12.5, "y": -3})
            assert moved["type"] == "response", moved
            await wait_until(
                lambda: browser.awareness.get(client_id, {}).get("pointer", {}).get("x") == 12.5
            )
            assert browser.awareness[client_id]["pointer"]["y"] == -3

            # JSON consumers see it like any other collaborator
            await watcher.wait(lambda: len(named(watcher, "cursor.moved")) >= 1)
            assert named(watcher, "user.joined")[0]["data"]["user_id"] == "bot-1"
            users = (await ask(bot, "get_active_users", {"room_id": "d6"}))["data"]
            assert [u["user_id"] for u in users["users"]] == ["bot-1"]

            left = await ask(bot, "leave_collaboration", {"room_id": "d6"})
            assert left["data"] == {"room_id": "d6", "left": True}
            await wait_until(lambda: client_id not in browser.awareness)
            await watcher.wait(lambda: len(named(watcher, "user.left")) >= 1)

            # joining again, then disconnecting without leaving, removes it too
            again = await ask(bot, "join_collaboration", {"room_id": "d6", "user_id": "bot-1"})
            second = again["data"]["client_id"]
            await wait_until(lambda: second in browser.awareness)
        await wait_until(lambda: second not in browser.awareness)
        # a peer cannot take over the server's client id
        assert second not in collab_server.app.rooms.rooms["d6"].awareness


async def test_a_joined_json_client_keeps_the_room_loaded(make_server: MakeServer) -> None:
    async with make_server(Config(grace_period=0.05)) as server, client(events_url(server)) as bot:
        await ask(bot, "join_collaboration", {"room_id": "d7", "user_id": "bot"})
        async with peer(f"{server.yjs_url}/d7", 71) as browser:
            await browser.send_set("e1", element("e1", 1))
        await wait_until(lambda: "d7" in server.app.rooms.rooms)
        await anyio.sleep(0.3)
        room = server.app.rooms.rooms.get("d7")
        assert room is not None and not room.closing
        await ask(bot, "leave_collaboration", {"room_id": "d7"})
        await wait_until(lambda: "d7" not in server.app.rooms.rooms)


async def test_no_consumer_no_work(collab_server: RunningServer) -> None:
    """Edits in a room nobody follows publish nothing and start no observation."""
    app = collab_server.app
    async with client(events_url(collab_server)) as other:
        await subscribed(other, "diagram:elsewhere")
        async with peer(f"{collab_server.yjs_url}/quiet", 81) as a:
            await a.send_set("e1", element("e1", 1))
            await a.set_awareness({"user": {"name": "Ada"}, "pointer": {"x": 1, "y": 1}})
            await wait_until(lambda: app.rooms.rooms["quiet"].awareness)
            await wait_until(lambda: not app.rooms.rooms["quiet"].persistence.holding)
            room = app.rooms.rooms["quiet"]
            assert not app.events.watching(room)
            assert app.relay.hub.events_published == 0
            assert "quiet" not in app.events.watched


async def test_watching_follows_what_the_hub_reports() -> None:
    """Which rooms publish, from the hub's follower reports (no sockets needed)."""
    relay = RelayApp(excalidraw_catalog)
    events = DiagramEvents(relay)
    hub = relay.hub
    member = hub.join(lambda: None)
    assert not events.watches("a")
    hub.subscribe(member, "diagram:a")
    hub.subscribe(member, "collaboration:a")
    hub.unsubscribe(member, "diagram:a")  # collaboration:a still followed
    assert events.watches("a") and not events.watches("b")
    hub.unsubscribe(member, "collaboration:a")
    assert events.watches("a")  # once watched, for the server's life
    for everywhere in ("element:e1", "cursor", "selection"):
        hub.subscribe(member, everywhere)
        assert events.watches(f"room-{everywhere}")
        hub.unsubscribe(member, everywhere)
        assert not events.watches(f"later-{everywhere}")
    hub.subscribe(member, "element:e2")
    hub.leave(member)
    assert not events.watches("c")


async def test_post_publish_under_events(collab_server: RunningServer) -> None:
    async with client(events_url(collab_server)) as watcher:
        await subscribed(watcher, "diagram:ext")
        body = {
            "event": "diagram.locked",
            "data": {"diagram_id": "ext", "user_id": "u", "reason": "review"},
        }
        async with httpx.AsyncClient() as http:
            response = await http.post(f"{collab_server.http_url}/events/publish", json=body)
        assert response.status_code == 202, response.text
        await watcher.wait(lambda: len(watcher.events) >= 1)
        assert watcher.events[0]["event"] == "diagram.locked"
