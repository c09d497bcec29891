"""Locked diagrams (``meta.locked``): clients may sync and show presence,
their edits are refused and never applied; the REST API locks and unlocks.

Real in-process servers on a real SQLite file; clients are ``DiagramClient``s
(whose edits are plain y-websocket updates) and bare y-websocket peers.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from pycrdt import Map

from clients import DiagramClient
from collab.app import CollabApp
from collab.config import Config
from storage.databases import Database
from storage.excalidraw import load_doc
from tests.conftest import RunningServer, running
from tests.databases import Backend
from tests.relayclient import client
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def server(backend: Backend) -> AsyncIterator[tuple[RunningServer, Database]]:
    """A server saving to the test's database (each test runs on SQLite and PostgreSQL)."""
    store = backend.open()
    try:
        async with running(CollabApp(store=store, config=Config(grace_period=0.5))) as s:
            yield s, store
    finally:
        store.close()


async def lock(http: httpx.AsyncClient, diagram: str, locked: bool, **extra: Any) -> Any:
    reply = await http.post(f"/api/diagrams/{diagram}/lock", json={"locked": locked, **extra})
    assert reply.status_code == 200, reply.text
    return reply.json()


def rect(eid: str) -> dict[str, Any]:
    return {"id": eid, "type": "rectangle", "x": 0, "y": 0}


async def test_a_locked_diagram_refuses_edits_but_syncs_and_shares_presence(
    backend: Backend,
) -> None:
    async with (
        server(backend) as (s, store),
        httpx.AsyncClient(base_url=s.http_url) as http,
        DiagramClient(s.yjs_url, "plan", user={"name": "Alice"}) as alice,
        DiagramClient(s.yjs_url, "plan", user={"name": "Bob"}) as bob,
    ):
        alice.add_element(rect("before"))
        await bob.wait_for(lambda c: c.get_element("before") is not None)
        assert await lock(http, "plan", True, user_id="carol", reason="review") == {
            "diagram": "plan",
            "locked": True,
        }
        await alice.wait_for(lambda c: c.meta.get("locked") is True)

        alice.add_element(rect("refused"))
        await alice.wait_for(lambda c: c.permission_denied is not None)
        assert "locked" in (alice.permission_denied or "")
        alice.set_presence(pointer=(10, 20))  # presence still flows
        await bob.wait_for(
            lambda c: any(p.get("pointer", {}).get("x") == 10 for p in c.peers().values())
        )
        assert bob.get_element("refused") is None
        late = DiagramClient(s.yjs_url, "plan")
        async with late:  # joins, syncs, and is not told off for its empty sync step 2
            assert late.get_element("before") is not None
            assert late.get_element("refused") is None
            await anyio.sleep(0.2)
            assert late.permission_denied is None
        export = (await http.get("/api/diagrams/plan")).json()
        assert [e["id"] for e in export["elements"]] == ["before"]

        assert (await lock(http, "plan", False))["locked"] is False
        await bob.wait_for(lambda c: c.meta.get("locked") is False)
        bob.add_element(rect("after"))
        await alice.wait_for(lambda c: c.get_element("after") is not None)  # seen: saved
        state = store.state_at("plan", None)
        assert state is not None
        assert set(load_doc(state).get("elements", type=Map).keys()) == {"before", "after"}


async def test_a_raw_y_websocket_peer_gets_the_permission_denied_message(
    backend: Backend,
) -> None:
    async with (
        server(backend) as (s, _),
        httpx.AsyncClient(base_url=s.http_url) as http,
        peer(f"{s.yjs_url}/raw", 7) as writer,
        peer(f"{s.yjs_url}/raw", 8) as reader,
    ):
        await lock(http, "raw", True)
        await writer.send_set("e1", {"id": "e1"})
        await wait_until(lambda: any(f.startswith(b"\x02\x00") for f in writer.frames))
        await anyio.sleep(0.2)
        assert "e1" not in reader.snapshot()


async def test_the_lock_is_saved_and_rest_edits_get_423(backend: Backend) -> None:
    png = bytes.fromhex("89504e470d0a1a0a")
    async with server(backend) as (s, store), httpx.AsyncClient(base_url=s.http_url) as http:
        await lock(http, "kept", True)
        state = store.state_at("kept", None)
        assert state is not None and load_doc(state).get("meta", type=Map)["locked"] is True
        scene = {"type": "excalidraw", "version": 2, "elements": [rect("x")]}
        attempts = [
            http.post("/api/diagrams/kept/restore", json={"at": 1}),
            http.post("/api/diagrams/kept/import", content=json.dumps(scene)),
            http.put(
                "/api/diagrams/kept/files/f1", content=png, headers={"content-type": "image/png"}
            ),
        ]
        for attempt in attempts:
            reply = await attempt
            assert reply.status_code == 423 and "locked" in reply.json()["error"]
        bad = await http.post("/api/diagrams/kept/lock", json={"locked": "yes"})
        assert bad.status_code == 400
        assert (await http.get("/api/diagrams/kept/lock")).status_code == 405


async def test_locking_publishes_diagram_locked_on_events(backend: Backend) -> None:
    async with (
        server(backend) as (s, _),
        httpx.AsyncClient(base_url=s.http_url) as http,
        client(f"ws://127.0.0.1:{s.port}/events") as watcher,
    ):
        reply = await watcher.reply(await watcher.subscribe("diagram:ev"))
        assert reply["type"] == "response"
        await lock(http, "ev", True, user_id="carol", reason="frozen for review")
        await watcher.wait(lambda: any(e["event"] == "diagram.locked" for e in watcher.events))
        event = next(e for e in watcher.events if e["event"] == "diagram.locked")
        status = await watcher.reply(
            await watcher.request("get_diagram_status", {"diagram_id": "ev"})
        )
        assert status["data"]["locked"] is True
        assert event["room"] == "diagram:ev"
        assert event["data"]["user_id"] == "carol"
        assert event["data"]["reason"] == "frozen for review"
