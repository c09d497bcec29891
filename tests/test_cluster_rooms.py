"""Rooms across nodes: two collab nodes in this process, one private Redis, one SQLite file.

Each node is a real server on its own port with its own store connection to
the shared file, as two `inkwire serve --redis` processes on one host are;
the peers are real y-websocket clients. (Killing a node is in
test_cluster_faults.py, with processes.)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

import anyio
import httpx
import pytest
import redis.asyncio as aioredis
from pycrdt import Doc, Map

from cluster.link import RedisLink
from cluster.rooms import SWEEP_SECONDS
from collab.app import CollabApp
from collab.config import Config
from storage.sqlite import SQLiteStore
from tests.conftest import RunningServer, running
from tests.redis_server import RedisServer
from tests.relayclient import client
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def nodes(
    redis: RedisServer, db: Path, count: int = 2, **config: float
) -> AsyncIterator[list[RunningServer]]:
    async with AsyncExitStack() as stack:
        servers = []
        for _ in range(count):
            app = CollabApp(
                store=SQLiteStore(db),
                config=Config(redis_url=redis.url, **{"grace_period": 1.0, **config}),
            )
            servers.append(await stack.enter_async_context(running(app)))
        for server in servers:
            assert server.app.link is not None
            await wait_until(lambda s=server: s.app.link.up, timeout=10)
        yield servers


async def ready(server: RunningServer) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(server.http_url + "/health/ready")


async def test_two_nodes_draw_together(redis_server: RedisServer, tmp_path: Path) -> None:
    async with nodes(redis_server, tmp_path / "shared.db") as (one, two):
        async with (
            peer(one.yjs_url + "/plan", 1) as alice,
            peer(two.yjs_url + "/plan", 2) as bob,
        ):
            await alice.send_set("a", {"id": "a", "by": "alice"})
            await wait_until(lambda: "a" in bob.snapshot())
            await bob.send_set("b", {"id": "b", "by": "bob"})
            await wait_until(lambda: "b" in alice.snapshot())
            for i in range(50):  # both at once
                await alice.send_set(f"a{i}", {"id": f"a{i}"})
                await bob.send_set(f"b{i}", {"id": f"b{i}"})
            await wait_until(lambda: len(alice.snapshot()) == len(bob.snapshot()) == 102)
            assert alice.snapshot() == bob.snapshot()
            # every node's document is the durable one
            for server in (one, two):
                room = server.app.rooms.rooms["plan"]
                await wait_until(lambda r=room: not r.persistence.holding)
        store = SQLiteStore(tmp_path / "shared.db")
        saved = store.state_at("plan")
        assert saved is not None
        from pycrdt import Map

        from storage.excalidraw import load_doc

        assert len(load_doc(saved).get("elements", type=Map)) == 102
        body = (await ready(one)).json()
        assert body["redis"] == "ok"


async def test_presence_crosses_nodes_and_leaves_with_the_socket(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with nodes(redis_server, tmp_path / "shared.db") as (one, two):
        async with peer(one.yjs_url + "/p", 1) as alice:
            await alice.set_awareness({"user": {"name": "Alice"}, "pointer": {"x": 1, "y": 2}})
            bus, redis = one.app.bus, one.app.link.redis
            assert bus is not None
            with anyio.fail_after(5):  # her node has recorded her presence in Redis
                while not await redis.hexists(bus.presence_key("p"), "1"):
                    await anyio.sleep(0.01)
            # a joiner on a node where the diagram was not even open sees her at once
            async with peer(two.yjs_url + "/p", 2) as bob:
                assert bob.awareness.get(1, {}).get("user") == {"name": "Alice"}
                await bob.set_awareness({"user": {"name": "Bob"}})
                await wait_until(lambda: alice.awareness.get(2) == {"user": {"name": "Bob"}})
            with anyio.fail_after(1.0):  # gone everywhere within a second of the socket closing
                while 2 in alice.awareness:
                    await anyio.sleep(0.01)


async def test_without_redis_each_node_serves_its_own_then_all_converge(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with nodes(redis_server, tmp_path / "shared.db") as (one, two):
        async with (
            peer(one.yjs_url + "/o", 1) as alice,
            peer(two.yjs_url + "/o", 2) as bob,
            peer(one.yjs_url + "/o", 3) as carol,
        ):
            await alice.send_set("before", {"id": "before"})
            await wait_until(lambda: "before" in bob.snapshot())
            redis_server.kill()
            await wait_until(lambda: not one.app.link.up and not two.app.link.up, timeout=10)
            response = await ready(one)
            assert response.status_code == 503 and response.json()["redis"] == "failing"
            await alice.send_set("during-1", {"id": "during-1"})
            await bob.send_set("during-2", {"id": "during-2"})
            await wait_until(lambda: "during-1" in carol.snapshot())  # the node goes on
            redis_server.start()
            with anyio.fail_after(5 + 3):  # converged within 5 s of the link being back
                await wait_until(lambda: one.app.link.up and two.app.link.up, timeout=8)
            await wait_until(lambda: {"during-1", "during-2"} <= set(bob.snapshot()), timeout=5)
            await wait_until(lambda: {"during-1", "during-2"} <= set(alice.snapshot()), timeout=5)
            assert alice.snapshot() == bob.snapshot() == carol.snapshot()
            assert (await ready(two)).status_code == 200


async def test_redis_losing_its_data_loses_nothing_of_the_diagrams(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    async with nodes(redis_server, tmp_path / "shared.db") as (one, two):
        async with (
            peer(one.yjs_url + "/w", 1) as alice,
            peer(two.yjs_url + "/w", 2) as bob,
        ):
            await alice.send_set("x", {"id": "x"})
            await wait_until(lambda: "x" in bob.snapshot())
            redis_server.kill()
            redis_server.start(wipe=True)
            await wait_until(lambda: one.app.link.up and two.app.link.up, timeout=10)
            await bob.send_set("y", {"id": "y"})
            await wait_until(lambda: "y" in alice.snapshot())
            assert alice.snapshot() == bob.snapshot()


async def test_a_client_that_moves_to_another_node_keeps_its_presence(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Its old node's record of it does not lock it out (the node died, or it reconnected)."""
    async with nodes(redis_server, tmp_path / "shared.db") as (one, two):
        async with peer(two.yjs_url + "/m", 9) as watcher:
            async with peer(one.yjs_url + "/m", 5) as before:
                await before.set_awareness({"user": {"name": "Mo"}})
                await wait_until(lambda: 5 in watcher.awareness)
                room_two = two.app.rooms.rooms["m"]
                # the same client id shows up on node two with a newer clock (the y-websocket
                # client keeps its id across reconnections)
                async with peer(two.yjs_url + "/m", 5) as after:
                    after._clock = 10
                    await after.set_awareness({"user": {"name": "Mo, moved"}})
                    await wait_until(
                        lambda: watcher.awareness.get(5) == {"user": {"name": "Mo, moved"}}
                    )
                    record = room_two.awareness.records[5]
                    assert not isinstance(record.owner, str)  # this node's connection owns it now


async def test_a_node_nobody_heard_from_is_still_found_gone(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """A node that committed a batch and died before publishing it, having never said
    anything on the rooms channel: the registry of nodes makes the others look for it,
    and its batch (in the store, never sent to anyone) reaches everyone once it is gone."""
    db = tmp_path / "shared.db"
    async with nodes(redis_server, db, count=1) as (one,), peer(one.yjs_url + "/q", 1) as alice:
        await alice.send_set("seen", {"id": "seen"})
        await wait_until(lambda: not one.app.rooms.rooms["q"].persistence.holding)
        silent = RedisLink(redis_server.url)  # a node: heartbeat, registry, nothing said
        async with anyio.create_task_group() as tg:
            await tg.start(silent.run)
            await wait_until(lambda: silent.up, timeout=10)
            stranded = Doc(client_id=77)
            stranded.get("elements", type=Map)["stranded"] = "committed, never published"
            await SQLiteStore(db).append("q", [stranded.get_update()], "x")
            tg.cancel_scope.cancel()  # the node dies: its key expires (here: at once)
        async with aioredis.Redis.from_url(redis_server.url) as redis:
            await redis.delete(silent.node_key(silent.node))
        await wait_until(lambda: "stranded" in alice.snapshot(), timeout=SWEEP_SECONDS + 5)
        assert set(alice.snapshot()) == {"seen", "stranded"}


async def test_diagram_events_reach_every_node_once(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """/events is one relay across nodes: an edit on node one is one event on node two."""
    async with (
        nodes(redis_server, tmp_path / "shared.db") as (one, two),
        client(f"ws://127.0.0.1:{two.port}/events") as watcher,
    ):
        reply = await watcher.reply(await watcher.subscribe("diagram:ev"))
        assert reply["type"] == "response", reply
        # node one hears that someone follows the diagram (on node two): it publishes its events
        await wait_until(lambda: one.app.events.watches("ev"))
        assert not one.app.events.watches("nobody-follows-this")
        async with (
            peer(one.yjs_url + "/ev", 1) as alice,
            peer(two.yjs_url + "/ev", 2) as bob,  # the room is open on both nodes
        ):
            await alice.send_set("e1", {"id": "e1", "type": "rectangle", "version": 1})
            await wait_until(lambda: "e1" in bob.snapshot())
            await watcher.wait(lambda: any(e["event"] == "diagram.saved" for e in watcher.events))
            await anyio.sleep(0.3)  # time for a duplicate to show up, if there were one
        added = [e for e in watcher.events if e["event"] == "element.added"]
        assert [e["data"]["element_id"] for e in added] == ["e1"]
        offsets = [e["offset"] for e in watcher.events]
        assert offsets == sorted(set(offsets))  # one numbering, nothing twice


async def test_no_follower_anywhere_no_events_work(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    """Rooms nobody follows on any node turn nothing into events (it costs on every update)."""
    async with nodes(redis_server, tmp_path / "shared.db") as (one, two):
        async with peer(one.yjs_url + "/calm", 1) as alice, peer(two.yjs_url + "/calm", 2) as bob:
            await alice.send_set("e1", {"id": "e1"})
            await wait_until(lambda: "e1" in bob.snapshot())
            for server in (one, two):
                assert not server.app.events.watching(server.app.rooms.rooms["calm"])
        async with client(f"ws://127.0.0.1:{two.port}/events") as watcher:
            await watcher.reply(await watcher.subscribe("cursor"))  # concerns every room
            await wait_until(lambda: one.app.events.watches("calm"))
