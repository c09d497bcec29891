"""Across nodes, everything works as on one: the stock Node y-websocket client, and the REST API.

Two collab nodes in this process (each a real server on its own port, each
with its own connection to one SQLite file) and a private Redis.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest

from tests.redis_server import RedisServer
from tests.test_cluster_rooms import nodes
from tests.test_interop_node import PEER_SCRIPT, NodePeer
from tests.test_interop_node import _require_node as _require_node
from tests.yclient import peer, wait_until

pytestmark = [pytest.mark.anyio, pytest.mark.node]


async def test_stock_clients_on_two_nodes_edit_and_see_each_other(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with nodes(redis_server, tmp_path / "shared.db") as (one, two):
        with anyio.fail_after(30):
            async with (
                NodePeer.spawn(PEER_SCRIPT, "a") as a,
                NodePeer.spawn(PEER_SCRIPT, "b") as b,
            ):
                await a.connect(one.yjs_url, "nodes")
                await b.connect(two.yjs_url, "nodes")
                await a.request("set", key="k1", value={"id": "k1", "by": "a"})
                await b.request("wait_key", key="k1", value={"by": "a"})
                await b.request("set", key="k2", value={"id": "k2", "by": "b"})
                await a.request("wait_key", key="k2", value={"by": "b"})
                state = {"user": {"name": "Ada"}, "pointer": {"x": 3, "y": 4}}
                await a.request("awareness", state=state)
                await b.request("wait_peer", clientID=a.client_id, state=state)
                assert await a.dump() == await b.dump()


async def test_export_and_restore_through_the_other_node(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with (
        nodes(redis_server, tmp_path / "shared.db") as (one, two),
        httpx.AsyncClient(base_url=two.http_url) as via_two,
        peer(one.yjs_url + "/r", 1) as alice,
    ):
        saved = one.app.events.last_saved  # diagram -> (seq, time), after each save
        await alice.send_set("e1", {"id": "e1", "type": "rectangle", "version": 1})
        await wait_until(lambda: saved.get("r", (0,))[0] == 1)
        response = await via_two.get("/api/diagrams/r")
        assert response.status_code == 200, response.text
        exported = response.json()
        assert [e["id"] for e in exported["elements"]] == ["e1"]
        await alice.send_set("e2", {"id": "e2", "type": "rectangle", "version": 1})
        await wait_until(lambda: saved.get("r", (0,))[0] == 2)
        reply = await via_two.post("/api/diagrams/r/restore", json={"at": 1})
        assert reply.status_code == 200, reply.text
        # the restore, made through node two, reaches the client of node one
        await wait_until(
            lambda: "e2" not in alice.snapshot() or alice.snapshot()["e2"].get("isDeleted")
        )
