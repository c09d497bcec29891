"""Room extensions (collab.hooks) over a real server: what they hear, and in which order.

The durability rule as an extension sees it: an update is ``applied`` at
once, but ``published`` (with the seq it was saved as) only after the
store's append returned, and no peer receives it before that.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from collab.app import CollabApp
from collab.config import Config
from collab.hooks import RoomHooks
from collab.protocol import AwarenessEntry
from collab.room import Room
from storage import MemoryStore
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio


class Recorder(RoomHooks):
    """An extension that writes down every hook call, for the rooms it sees."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def names(self) -> list[str]:
        return [call[0] for call in self.calls]

    def loaded(self, room: Room) -> None:
        self.calls.append(("loaded", room.name))

    def applying(self, room: Room) -> None:
        self.calls.append(("applying", room.name))

    def applied(self, room: Room, origin: str | None, position: int) -> None:
        self.calls.append(("applied", room.name, origin, position))

    def published(self, room: Room, upto: int, seq: int | None) -> None:
        self.calls.append(("published", room.name, upto, seq))

    def awareness_changed(self, room: Room, entries: Sequence[AwarenessEntry]) -> None:
        self.calls.append(("awareness_changed", room.name, [e.client_id for e in entries]))

    def quiet(self, room: Room) -> None:
        self.calls.append(("quiet", room.name))

    def unloaded(self, room: Room) -> None:
        self.calls.append(("unloaded", room.name))


class GatedStore(MemoryStore):
    """A real in-process store whose appends wait until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = anyio.Event()
        self.gate.set()

    async def append(self, *args: Any, **kwargs: Any) -> int:
        await self.gate.wait()
        return await super().append(*args, **kwargs)


async def test_published_only_after_the_store_made_it_durable(make_server) -> None:
    store, recorder = GatedStore(), Recorder()
    app = CollabApp(store=store, config=Config(grace_period=0.2), extensions=[recorder])
    async with make_server(app=app) as server:
        url = server.yjs_url + "/hooked"
        async with peer(url, 1) as alice, peer(url, 2) as bob:
            await wait_until(lambda: "loaded" in recorder.names())
            store.gate = anyio.Event()  # saving stalls from here on
            await alice.send_set("e1", {"id": "e1"})
            await wait_until(lambda: "applied" in recorder.names())
            _, _, origin, position = next(c for c in recorder.calls if c[0] == "applied")
            assert origin is not None and origin.startswith("client-")  # who made it
            await anyio.sleep(0.3)
            assert not any(c[0] == "published" and c[2] >= position for c in recorder.calls)
            assert "e1" not in bob.snapshot()  # nobody has it before it is durable
            store.gate.set()
            await wait_until(lambda: "e1" in bob.snapshot())
            published = [c for c in recorder.calls if c[0] == "published" and c[2] >= position]
            assert published and published[0][3] == 1  # the seq the store saved it as
            applied_at = recorder.calls.index(next(c for c in recorder.calls if c[0] == "applied"))
            assert recorder.calls.index(published[0]) > applied_at
            await bob.set_awareness({"user": {"name": "Bob"}})
            await wait_until(lambda: "awareness_changed" in recorder.names())
        await wait_until(lambda: "unloaded" in recorder.names(), timeout=5)
    names = recorder.names()
    assert names[0] == "loaded" and names[-1] == "unloaded"
    assert names.index("applying") < names.index("applied")


async def test_quiet_comes_after_the_edits_stop(make_server) -> None:
    recorder = Recorder()
    config = Config(grace_period=5.0, checkpoint_quiet=0.2)
    async with make_server(app=CollabApp(config=config, extensions=[recorder])) as server:
        async with peer(server.yjs_url + "/calm", 1) as p:
            await p.send_set("e1", {"id": "e1"})
            await wait_until(lambda: "quiet" in recorder.names(), timeout=5)
            assert recorder.names().index("quiet") > recorder.names().index("published")
