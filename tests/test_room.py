"""The collab room over real sockets: joining, loading, fan-out, awareness, limits, routes."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack

import anyio
import httpx
import pytest
from pycrdt import Doc, Map

from collab.app import CollabApp
from collab.config import Config
from collab.room import Latch
from storage import MemoryStore
from tests.yclient import Peer, peer, wait_until

pytestmark = pytest.mark.anyio


# many clients joining a cold room ------------------------------------------------


async def test_fifty_clients_join_a_cold_room_at_once(collab_server) -> None:
    url = collab_server.yjs_url + "/cold"
    synced = 0

    async def join(i: int) -> None:
        nonlocal synced
        async with peer(url, 1000 + i):
            synced += 1

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for i in range(50):
                tg.start_soon(join, i)
    assert synced == 50


# loading and unloading a room ----------------------------------------------------


class GatedStore(MemoryStore):
    """A store whose loads wait for the test to open the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()
        self.loads = 0

    async def load(self, diagram: str) -> bytes | None:
        self.loads += 1
        await self.gate.wait()
        return await super().load(diagram)


async def test_room_answers_nobody_before_its_state_is_loaded(make_server) -> None:
    store = GatedStore()
    saved = Doc()
    saved.get("elements", type=Map)["old"] = {"id": "old"}
    await store.append("slow", [saved.get_update()])
    app = CollabApp(store=store, config=Config(grace_period=0.2))
    async with make_server(app=app) as server, anyio.create_task_group() as tg:
        peers: list[Peer] = []

        async def join() -> None:
            async with peer(server.yjs_url + "/slow", 7) as p:
                peers.append(p)
                await anyio.sleep_forever()

        tg.start_soon(join)
        await wait_until(lambda: store.loads == 1)
        await anyio.sleep(0.2)
        assert peers == []  # still waiting: no sync before the load
        store.gate.set()
        await wait_until(lambda: len(peers) == 1)
        assert peers[0].snapshot() == {"old": {"id": "old"}}
        assert store.loads == 1
        tg.cancel_scope.cancel()


async def test_room_stays_open_for_the_grace_period_then_unloads(make_server) -> None:
    async with make_server(Config(grace_period=0.5)) as server:
        rooms = server.app.rooms.rooms
        async with peer(server.yjs_url + "/grace", 1) as p:
            await p.send_set("a", {"id": "a"})
        await anyio.sleep(0.2)
        assert "grace" in rooms  # still within the grace period
        async with peer(server.yjs_url + "/grace", 2) as q:  # rejoin cancels unloading
            assert q.snapshot() == {"a": {"id": "a"}}
            await anyio.sleep(0.6)
            assert "grace" in rooms
        await wait_until(lambda: "grace" not in rooms, timeout=3)
        async with peer(server.yjs_url + "/grace", 3) as r:  # reloaded from the store
            assert r.snapshot() == {"a": {"id": "a"}}


# fan-out: every update reaches the others once, encoded once ---------------------


async def test_update_reaches_others_once_never_the_sender_encoded_once(collab_server) -> None:
    url = collab_server.yjs_url + "/echo"
    stats = collab_server.app.stats
    async with peer(url, 1) as sender:
        async with AsyncExitStack() as stack:
            receivers = [await stack.enter_async_context(peer(url, 10 + i)) for i in range(10)]
            await anyio.sleep(0.1)
            before_frames = len(sender.frames)
            renders_before = stats.fanout_renders
            await sender.send_set("e", {"id": "e", "v": 1})
            await wait_until(lambda: all(r.snapshot().get("e") for r in receivers))
            await anyio.sleep(0.1)
            assert len(sender.frames) == before_frames  # nothing echoed
            # one encoding for all ten receivers (plus the sender's empty variant)
            assert stats.fanout_renders - renders_before <= 2
            for r in receivers:
                updates = [f for f in r.frames if f[:2] == b"\x00\x02"]
                assert len(updates) == 1
            assert stats.updates_in >= 1


# a reader that fell behind gets merged frames ------------------------------------


async def test_pending_updates_are_merged_into_one_frame(collab_server) -> None:
    url = collab_server.yjs_url + "/merge"
    async with peer(url, 1) as writer, peer(url, 2, read=False) as slow:
        from collab.protocol import sync_step1

        for i in range(300):
            writer.set(f"k{i}", {"id": f"k{i}", "i": i})
        await writer.flush()
        await slow.ws.send(sync_step1(b"\x00"))  # join late: then read everything at once
        await anyio.sleep(0.3)
        for i in range(300, 600):
            writer.set(f"k{i}", {"id": f"k{i}", "i": i})
        await writer.flush()
        await anyio.sleep(0.3)  # let updates pile up while slow reads nothing
        async with anyio.create_task_group() as tg:
            tg.start_soon(slow.reader)
            await wait_until(lambda: len(slow.snapshot()) == 600)
            tg.cancel_scope.cancel()
        assert slow.snapshot() == writer.snapshot()
        update_frames = [f for f in slow.frames if f[:2] in (b"\x00\x01", b"\x00\x02")]
        # 600 updates arrived in merged frames, not one each: hypercorn hands the reader
        # at most APP_QUEUE (32) of them per turn, and the room publishes between turns
        # (36-40 frames here; < 20 with a queue of 128, see docs/capacity.md)
        assert len(update_frames) < 60


# awareness (presence) ------------------------------------------------------------


async def test_awareness_join_leave_and_no_server_state(collab_server) -> None:
    url = collab_server.yjs_url + "/aware"
    async with peer(url, 1) as alice:
        await alice.set_awareness({"user": {"name": "alice"}})
        await anyio.sleep(0.1)
        async with peer(url, 2) as bob:
            # the joiner has alice's state from its first messages, and no server state
            assert bob.awareness == {1: {"user": {"name": "alice"}}}
            assert [e.client_id for e in bob.awareness_seen] == [1]
            await bob.set_awareness({"user": {"name": "bob"}})
            await wait_until(lambda: 2 in alice.awareness)
        t0 = anyio.current_time()
        await wait_until(lambda: 2 not in alice.awareness, timeout=1.0)
        assert anyio.current_time() - t0 < 1.0
        assert alice.awareness == {}  # bob is gone; alice's own state is not echoed
        assert {e.client_id for e in alice.awareness_seen} == {2}  # no state of the server's


async def test_awareness_is_coalesced_latest_wins(make_server) -> None:
    async with make_server(Config(awareness_interval=0.2)) as server:
        url = server.yjs_url + "/coalesce"
        async with peer(url, 1) as alice, peer(url, 2) as bob:
            await alice.set_awareness({"pointer": {"x": -1}})
            await wait_until(lambda: 1 in bob.awareness)
            start = len(bob.frames)
            for x in range(30):
                await alice.set_awareness({"pointer": {"x": x}})
            await wait_until(lambda: bob.awareness.get(1) == {"pointer": {"x": 29}})
            await anyio.sleep(0.3)
            awareness_frames = [f for f in bob.frames[start:] if f[:1] == b"\x01"]
            assert len(awareness_frames) <= 2
            assert bob.awareness[1] == {"pointer": {"x": 29}}


async def test_goodbye_null_state_held_by_the_throttle_is_still_sent(make_server) -> None:
    async with make_server(Config(awareness_interval=0.5)) as server:
        url = server.yjs_url + "/goodbye"
        async with peer(url, 1) as alice:
            async with peer(url, 2) as bob:
                await bob.set_awareness({"user": {"name": "bob"}})
                await wait_until(lambda: 2 in alice.awareness)
                await bob.set_awareness(None)  # within the throttle window, then close
            await wait_until(lambda: 2 not in alice.awareness, timeout=0.4)


async def test_client_cannot_control_another_clients_awareness(collab_server) -> None:
    url = collab_server.yjs_url + "/spoof"
    async with peer(url, 1) as alice, peer(url, 2) as mallory:
        await alice.set_awareness({"user": {"name": "alice"}})
        await wait_until(lambda: 1 in mallory.awareness)
        mallory.client_id = 1
        mallory._clock = 99
        await mallory.set_awareness(None)  # try to remove alice
        await mallory.set_awareness({"user": {"name": "not alice"}})
        await anyio.sleep(0.2)
        async with peer(url, 3) as carol:
            assert carol.awareness == {1: {"user": {"name": "alice"}}}
        assert mallory.ws.close_code is None


# room capacity -------------------------------------------------------------------


async def test_room_full(make_server) -> None:
    async with make_server(Config(max_users=3)) as server:
        url = server.yjs_url + "/full"
        async with peer(url, 1), peer(url, 2), peer(url, 3):
            async with peer(url, 4, sync=False) as fourth:
                with anyio.fail_after(5):
                    await fourth.closed.wait()
            assert fourth.close_code == 4429
            assert fourth.close_reason == "room full"
        async with peer(url, 5) as later:  # room has space again
            assert later.ws.close_code is None


# big documents: one encoding for simultaneous joiners ----------------------------


@pytest.mark.slow  # a 5 MB document, 20 joiners
async def test_big_document_is_encoded_once_for_simultaneous_joiners(collab_server) -> None:
    url = collab_server.yjs_url + "/big"
    stats = collab_server.app.stats
    async with peer(url, 1) as writer:
        with writer.doc.transaction():
            for i in range(10_000):
                writer.elements[f"el{i}"] = {"id": f"el{i}", "type": "rectangle", "text": "x" * 500}
        await writer.flush()
        await wait_until(lambda: stats.updates_in >= 1)
        await anyio.sleep(0.5)
        size = len(writer.doc.get_update())
        assert size > 5_000_000
        encodes_before = stats.sync_encodes
        done = 0

        async def join(i: int) -> None:
            nonlocal done
            async with peer(url, 100 + i) as p:
                assert len(p.snapshot()) == 10_000
                done += 1

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                for i in range(20):
                    tg.start_soon(join, i)
        assert done == 20
        assert stats.sync_encodes - encodes_before == 1


# routes --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["", "a b", "x" * 129, "bad/slash", "é"])
async def test_bad_diagram_name_is_refused(collab_server, name) -> None:
    from urllib.parse import quote

    async with peer(collab_server.yjs_url + "/" + quote(name), 1, sync=False) as p:
        with anyio.fail_after(5):
            await p.closed.wait()
    assert p.close_code == 4400


async def test_health_and_metrics(collab_server) -> None:
    async with peer(collab_server.yjs_url + "/m", 1) as p:
        await p.send_set("a", {"id": "a"})
        async with httpx.AsyncClient(base_url=collab_server.http_url) as http:
            assert (await http.get("/health/live")).json() == {"status": "live"}
            ready = (await http.get("/health/ready")).json()
            assert ready == {"status": "ready", "rooms": 1, "connections": 1, "storage": "ok"}
            await wait_until(lambda: collab_server.app.stats.updates_in == 1)
            metrics = (await http.get("/metrics")).text
    for name in (
        "inkwire_connections 1.0",
        "inkwire_rooms 1.0",
        "inkwire_updates_in_total 1.0",
        "inkwire_frames_out_total",
        "inkwire_bytes_out_total",
        "inkwire_slow_consumer_closes_total 0.0",
        "inkwire_rejected_messages",
    ):
        assert name in metrics
    assert json.loads(json.dumps(ready))


async def test_a_latch_wakes_its_waiters_once_set_and_never_blocks_after() -> None:
    """A room's ``loaded`` and ``closed`` (collab.room.Latch): an event made only for waiters."""
    latch = Latch()
    woken: list[int] = []

    async def waiter(i: int) -> None:
        await latch.wait()
        woken.append(i)

    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            for i in range(3):
                tg.start_soon(waiter, i)
            await anyio.wait_all_tasks_blocked()
            assert woken == [] and not latch.is_set()
            latch.set()
        assert sorted(woken) == [0, 1, 2] and latch.is_set()
        await latch.wait()  # set: returns at once
