"""Interop with the stock JavaScript client: yjs + y-websocket running in Node.

Each Node peer is ``tests/interop/peer.mjs``, scripted over stdin/stdout with
one JSON command per line (see the top of that file). The Node packages are
pinned in ``tests/interop/package.json``; install them with ``make test`` or
``cd tests/interop && npm ci``. Without them (or without ``node``) these tests
skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from tests.node import INTEROP_DIR, NodeScript, require_node

pytestmark = pytest.mark.anyio

PEER_SCRIPT = INTEROP_DIR / "peer.mjs"
NODE_PACKAGES = ("yjs", "y-websocket", "y-protocols", "lib0", "ws")

# How long a departed peer may linger in the others' awareness.
AWARENESS_REMOVAL_LIMIT_S = 1.0


@pytest.fixture(autouse=True)
def _require_node() -> None:
    require_node("Node interop tests", NODE_PACKAGES)


class NodePeer(NodeScript):
    """One stock y-websocket client in a Node process (``peer.mjs``).

    Use ``async with NodePeer.spawn(PEER_SCRIPT, "a") as peer:``; on exit the
    peer first says goodbye to the room (``close``).
    """

    goodbye = "close"
    client_id: int | None = None

    async def connect(self, url: str, room: str) -> int:
        reply = await self.request("connect", url=url, room=room, clientName=self.name)
        assert reply["ok"] == "synced", reply
        self.client_id = int(reply["clientID"])
        return self.client_id

    async def dump(self) -> dict[str, Any]:
        elements: dict[str, Any] = (await self.request("dump"))["elements"]
        return elements

    async def peers(self) -> dict[int, Any]:
        return {int(k): v for k, v in (await self.request("peers"))["peers"].items()}


@asynccontextmanager
async def connected_peers(server: Any, room: str, *names: str) -> AsyncIterator[list[NodePeer]]:
    async with AsyncExitStack() as stack:
        peers = [await stack.enter_async_context(NodePeer.spawn(PEER_SCRIPT, n)) for n in names]
        for peer in peers:
            await peer.connect(server.yjs_url, room)
        yield peers


def new_room() -> str:
    return f"interop-{uuid.uuid4().hex[:12]}"


def element(
    eid: str,
    *,
    x: float,
    y: float,
    version: int = 1,
    nonce: int = 0,
    index: str = "a0",
    deleted: bool = False,
    kind: str = "rectangle",
) -> dict[str, Any]:
    """An Excalidraw-like element, stored whole as one Y.Map value."""
    return {
        "id": eid,
        "type": kind,
        "x": x,
        "y": y,
        "width": 120,
        "height": 80,
        "angle": 0,
        "strokeColor": "#1e1e1e",
        "backgroundColor": "transparent",
        "version": version,
        "versionNonce": nonce,
        "index": index,
        "isDeleted": deleted,
        "groupIds": [],
        "boundElements": None,
        "updated": 1_700_000_000_000 + version,
    }


async def test_concurrent_map_edits_converge(collab_server: Any) -> None:
    room = new_room()
    # key -> {peer name: the last value that peer wrote}. Whatever else happens,
    # each key must end as the last write of one of the peers, the same everywhere.
    last_writes: dict[str, dict[str, dict[str, Any]]] = {}

    def wrote(peer: NodePeer, entries: dict[str, dict[str, Any]]) -> None:
        for key, value in entries.items():
            last_writes.setdefault(key, {})[peer.name] = value

    with anyio.fail_after(60):
        async with connected_peers(collab_server, room, "a", "b") as (a, b):
            # 1. Both peers write at once: own keys plus the same keys, in one
            #    transaction each, commands sent to both before either is answered.
            batch: dict[NodePeer, dict[str, Any]] = {}
            for peer, dx in ((a, 0), (b, 1000)):
                entries = {
                    f"{peer.name}-{i}": element(
                        f"{peer.name}-{i}", x=dx + i * 10, y=i, index=f"a{i}", nonce=i
                    )
                    for i in range(10)
                }
                for i in range(3):
                    entries[f"shared-{i}"] = element(
                        f"shared-{i}", x=dx, y=i, version=2, nonce=dx + i, index=f"b{i}"
                    )
                batch[peer] = entries
            rids = [(peer, await peer.send("set_many", entries=e)) for peer, e in batch.items()]
            for peer, rid in rids:
                await peer.receive(rid)
            for peer, entries in batch.items():
                wrote(peer, entries)

            # 2. A burst of single edits of one hot key from both sides, interleaved.
            sends = []
            for version in range(3, 23):
                for peer, dx in ((a, 0), (b, 1000)):
                    value = element("hot", x=dx + version, y=version, version=version, nonce=dx)
                    wrote(peer, {"hot": value})
                    sends.append((peer, await peer.send("set", key="hot", value=value)))
            for peer, rid in sends:
                await peer.receive(rid)

            # 3. Certain concurrency on one key: a edits it offline while b edits it
            #    online; a also tombstones one of b's elements that b moves. a's
            #    offline edits reach the room only through the sync handshake when
            #    a reconnects (a answers the server's SyncStep1 with them).
            await a.request("disconnect")
            offline_a = {
                "offline": element("offline", x=1, y=1, version=5, nonce=1),
                "b-3": {**batch[b]["b-3"], "isDeleted": True, "version": 2, "versionNonce": 77},
                "a-only-offline": element("a-only-offline", x=5, y=5),
            }
            online_b = {
                "offline": element("offline", x=2, y=2, version=5, nonce=2),
                "b-3": {**batch[b]["b-3"], "x": 999, "version": 2, "versionNonce": 88},
            }
            await a.request("set_many", entries=offline_a)
            await b.request("set_many", entries=online_b)
            wrote(a, offline_a)
            wrote(b, online_b)
            await a.request("reconnect")

            # 4. Each peer's last write is a marker. Yjs integrates a client's
            #    updates in clock order, so seeing the other's marker means having
            #    everything that peer wrote before it.
            for peer in (a, b):
                marker = element(f"done-{peer.name}", x=0, y=0, index="z0")
                await peer.request("set", key=marker["id"], value=marker)
                wrote(peer, {marker["id"]: marker})
            await a.request("wait_key", key="done-b", timeout_ms=10_000)
            await b.request("wait_key", key="done-a", timeout_ms=10_000)

            dump_a, dump_b = await a.dump(), await b.dump()
            assert dump_a == dump_b, "the two peers did not converge"
            assert set(dump_a) == set(last_writes)
            for key, value in dump_a.items():
                candidates = list(last_writes[key].values())
                assert value in candidates, f"{key}: {value!r} is no peer's last write"
            assert dump_a["hot"]["version"] == 22
            assert dump_a["a-only-offline"] == offline_a["a-only-offline"]

            # The server's copy resolves the same way: a late joiner, whose state
            # comes from the server alone, sees that same map.
            async with connected_peers(collab_server, room, "c") as (c,):
                await c.request("wait_key", key="done-a", timeout_ms=5_000)
                await c.request("wait_key", key="done-b", timeout_ms=5_000)
                assert await c.dump() == dump_a


async def test_awareness_is_shared(collab_server: Any) -> None:
    room = new_room()
    with anyio.fail_after(30):
        async with connected_peers(collab_server, room, "a", "b") as (a, b):
            assert a.client_id is not None
            assert b.client_id is not None
            state_a = {
                "user": {"name": "Ada", "color": "#e03131"},
                "pointer": {"x": 10.5, "y": 20, "tool": "pointer"},
                "button": "up",
                "selectedElementIds": {"el-1": True},
            }
            await a.request("awareness", state=state_a)
            seen = await b.request("wait_peer", clientID=a.client_id, state=state_a)
            assert seen["peers"][str(a.client_id)] == state_a

            # Pointer moves propagate too, and the other way round.
            moved = {**state_a, "pointer": {"x": 300, "y": -42.25, "tool": "laser"}}
            await a.request("awareness", state=moved)
            await b.request("wait_peer", clientID=a.client_id, state={"pointer": moved["pointer"]})
            state_b = {"user": {"name": "Grace", "color": "#1971c2"}, "pointer": {"x": 1, "y": 2}}
            await b.request("awareness", state=state_b)
            await a.request("wait_peer", clientID=b.client_id, state=state_b)

            # A late joiner gets every current state on joining.
            async with connected_peers(collab_server, room, "c") as (c,):
                await c.request("wait_peer", clientID=a.client_id, state=moved, timeout_ms=2000)
                await c.request("wait_peer", clientID=b.client_id, state=state_b, timeout_ms=2000)


async def test_server_has_no_awareness_state_of_its_own(collab_server: Any) -> None:
    with anyio.fail_after(30):
        async with connected_peers(collab_server, new_room(), "a", "b") as (a, b):
            await a.request("awareness", state={"user": {"name": "Ada", "color": "#e03131"}})
            await b.request("awareness", state={"user": {"name": "Grace", "color": "#1971c2"}})
            await a.request("wait_peer", clientID=b.client_id)
            await b.request("wait_peer", clientID=a.client_id)
            await anyio.sleep(0.2)  # let anything else the server would announce arrive
            assert set(await a.peers()) == {b.client_id}
            assert set(await b.peers()) == {a.client_id}


@pytest.mark.parametrize("how", ["kill", "close"])
async def test_departed_peer_leaves_awareness_within_a_second(collab_server: Any, how: str) -> None:
    with anyio.fail_after(30):
        async with connected_peers(collab_server, new_room(), "a", "b", "c") as (a, b, c):
            state = {"user": {"name": "Ada", "color": "#e03131"}, "pointer": {"x": 1, "y": 1}}
            await a.request("awareness", state=state)
            await c.request("awareness", state={"user": {"name": "Cy", "color": "#2f9e44"}})
            await b.request("wait_peer", clientID=a.client_id, state=state)
            await b.request("wait_peer", clientID=c.client_id)

            # b starts watching before a goes, so the clock measures delivery only.
            rid = await b.send("wait_peer", clientID=a.client_id, present=False, timeout_ms=5000)
            await anyio.sleep(0.05)
            started = time.monotonic()
            if how == "kill":
                await a.kill()
            else:
                await a.request("close")
            await b.receive(rid, limit_s=10)
            elapsed = time.monotonic() - started
            assert elapsed < AWARENESS_REMOVAL_LIMIT_S, (
                f"{how}: peer still in awareness after {elapsed:.3f} s"
            )
            # Only a went away.
            assert c.client_id in await b.peers()
            await c.request("wait_peer", clientID=a.client_id, present=False, timeout_ms=1000)
