"""Tombstones past their retention are purged when a room goes quiet."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import anyio
import pytest
from pycrdt import Doc, Map

from clients import DiagramClient
from collab.app import CollabApp
from collab.config import Config
from storage import replay
from storage.excalidraw import load_doc, purge_tombstones
from storage.sqlite import SQLiteStore
from tests.conftest import running

DAY_MS = 86_400_000


def diagram(**elements: dict[str, Any]) -> bytes:
    doc: Doc[Any] = Doc()
    doc["elements"] = target = Map()
    with doc.transaction():
        for eid, element in elements.items():
            target[eid] = {"id": eid, "type": "rectangle", "version": 2, **element}
    return doc.get_update()


NOW = time.time() * 1000
STATE = diagram(
    live={"isDeleted": False, "updated": NOW - 9 * DAY_MS},  # old but alive: kept
    old={"isDeleted": True, "updated": NOW - 2 * DAY_MS},
    fresh={"isDeleted": True, "updated": NOW - 1000},
    ageless={"isDeleted": True},  # no 'updated': its age is unknown
    odd={"isDeleted": "yes", "updated": 0},  # not a tombstone by Excalidraw's rules
)


def element_ids(state: bytes) -> set[str]:
    return set(load_doc(state).get("elements", type=Map).keys())


def test_only_tombstones_older_than_the_cutoff_go() -> None:
    update, purged = purge_tombstones(STATE, NOW - DAY_MS)
    assert purged == 1
    after = load_doc(STATE)
    after.apply_update(update)
    assert set(after.get("elements", type=Map).keys()) == {"live", "fresh", "ageless", "odd"}
    assert purge_tombstones(STATE, NOW - 30 * DAY_MS) == (b"\x00\x00", 0)


@pytest.mark.anyio
async def test_a_quiet_room_purges_and_saves_it_as_an_edit_clients_see(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "t.db")
    await store.append("d", [STATE], ["import"])
    config = Config(grace_period=0.1, checkpoint_quiet=0.2, tombstone_retention=DAY_MS / 1000)
    async with (
        running(CollabApp(store=store, config=config)) as server,
        DiagramClient(server.yjs_url, "d") as client,
    ):
        assert "old" in client.elements  # served as saved until the room goes quiet
        client.add_element({"id": "new", "type": "ellipse"})
        await client.wait_for(lambda c: "old" not in c.elements, timeout=5)
        assert set(client.elements.keys()) == {"live", "fresh", "ageless", "odd", "new"}
    saved = store.state_at("d", None)
    assert element_ids(saved) == {"live", "fresh", "ageless", "odd", "new"}
    origins = [v["origin"] for v in replay.history(store, "d")["versions"]]
    assert "purge" in origins
    # history keeps what was purged: the first version still has it
    assert "old" in element_ids(store.state_at("d", 1))


@pytest.mark.anyio
async def test_retention_none_keeps_every_tombstone(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "k.db")
    await store.append("d", [STATE], ["import"])
    config = Config(grace_period=0.1, checkpoint_quiet=0.1, tombstone_retention=None)
    async with (
        running(CollabApp(store=store, config=config)) as server,
        DiagramClient(server.yjs_url, "d") as client,
    ):
        client.add_element({"id": "new", "type": "ellipse"})
        with anyio.fail_after(5):
            while "new" not in store_ids(store):
                await anyio.sleep(0.02)
        await anyio.sleep(0.5)  # quiet spells pass: nothing is purged
        assert "old" in client.elements
    assert "old" in element_ids(store.state_at("d", None))


def store_ids(store: SQLiteStore) -> set[str]:
    return element_ids(store.state_at("d", None))
