"""The Store contract, held against every store: append returns the durable seq.

A room publishes an update only after the ``append`` holding it returned;
the seq it returns is the diagram's version once the batch is durable, so
it must count each diagram's updates, batch after batch, whatever commits
together, and survive reopening (for the in-process store: its lifetime).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from pycrdt import Doc, Map

from storage import MemoryStore, Store
from storage.memory import COMPACT_AFTER
from tests.databases import KINDS, Backend, backend_for

pytestmark = pytest.mark.anyio

Opener = Callable[[], Store]


@pytest.fixture(params=["memory", *KINDS])
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Opener]:
    """Opens the store under test; opened again, it is the same data (reopened, for databases)."""
    if request.param == "memory":
        memory = MemoryStore()

        def open_memory() -> Store:
            return memory

        yield open_memory
        return
    with backend_for(request.param, tmp_path) as backend:
        yield backend.open


def edits(doc: Doc[Any], *keys: str) -> list[bytes]:
    """One update per key set on ``doc``'s elements."""
    elements = doc.get("elements", type=Map)
    updates = []
    for key in keys:
        before = doc.get_state()
        elements[key] = {"id": key}
        updates.append(doc.get_update(before))
    return updates


def saved_keys(state: bytes | None) -> set[str]:
    doc: Doc[Any] = Doc()
    if state:
        doc.apply_update(state)
    return set(doc.get("elements", type=Map).keys())


async def test_append_returns_each_diagrams_seq_after_the_batch(open_store: Opener) -> None:
    store = open_store()
    a: Doc[Any] = Doc()
    b: Doc[Any] = Doc()
    assert await store.append("a", edits(a, "a1", "a2"), "ada") == 2
    assert await store.append("b", edits(b, "b1"), ["bob"]) == 1  # counted per diagram
    assert await store.append("a", edits(a, "a3"), None) == 3
    assert await store.append("a", edits(a, "a4", "a5", "a6")) == 6
    assert await store.append("a", []) == 6  # nothing new: the same version
    # returned means durable: loading (after reopening) has all of it, and counts on
    again = open_store()
    assert saved_keys(await again.load("a")) == {"a1", "a2", "a3", "a4", "a5", "a6"}
    assert await again.append("a", edits(a, "a7")) == 7
    assert await again.append("b", edits(b, "b2")) == 2


async def test_appends_in_flight_together_get_distinct_increasing_seqs(
    open_store: Opener,
) -> None:
    store = open_store()
    doc: Doc[Any] = Doc()
    batches = [edits(doc, *(f"k{i}-{j}" for j in range(i % 3 + 1))) for i in range(12)]
    returned: dict[int, int] = {}

    async def append(i: int) -> None:
        returned[i] = await store.append("d", batches[i], f"client-{i}")

    async with anyio.create_task_group() as tg:
        for i in range(len(batches)):
            tg.start_soon(append, i)
    # batches take seqs in the order they were appended, each the next ones
    ends = [returned[i] for i in range(len(batches))]
    sizes = [len(batch) for batch in batches]
    assert ends == [sum(sizes[: i + 1]) for i in range(len(batches))]
    keys = {f"k{i}-{j}" for i in range(12) for j in range(i % 3 + 1)}
    assert saved_keys(await store.load("d")) == keys


async def test_nodes_sharing_a_database_number_one_log(backend: Backend) -> None:
    """Two stores on one database (two nodes) appending to one diagram at once:
    every update saved, each seq taken once, each store's batches in its order."""
    nodes = [backend.open(), backend.open()]
    docs: list[Doc[Any]] = [Doc(), Doc()]
    returned: dict[tuple[int, int], int] = {}

    async def node(n: int) -> None:
        for i in range(30):
            returned[(n, i)] = await nodes[n].append("d", edits(docs[n], f"n{n}-{i}"), f"n{n}")

    async with anyio.create_task_group() as tg:
        for n in range(2):
            tg.start_soon(node, n)
    assert sorted(returned.values()) == list(range(1, 61))
    for n in range(2):
        assert [returned[(n, i)] for i in range(30)] == sorted(returned[(n, i)] for i in range(30))
    keys = {f"n{n}-{i}" for n in range(2) for i in range(30)}
    assert saved_keys(await nodes[0].load("d")) == keys
    assert saved_keys(await nodes[1].load("d")) == keys


async def test_memory_store_folds_a_long_tail_a_chunk_per_turn() -> None:
    """Folding a thousand updates into the base takes milliseconds: the memory store
    lets other tasks run between chunks (a flooded diagram stalled every other room),
    and a load in the middle of a fold, or an append, still sees every update."""
    store = MemoryStore()
    doc: Doc[Any] = Doc()
    keys = [f"k{i}" for i in range(COMPACT_AFTER + 5)]
    updates = edits(doc, *keys)
    turns: list[str] = []
    loaded: list[bytes | None] = []

    async def meanwhile() -> None:
        await anyio.lowlevel.checkpoint()  # the fold has begun
        turns.append("other")
        loaded.append(await store.load("busy"))  # compacts at once, in the middle
        await store.append("busy", edits(doc, "late"))

    await store.append("busy", updates[:5])
    async with anyio.create_task_group() as tg:
        tg.start_soon(meanwhile)
        await store.append("busy", updates[5:])  # reaches COMPACT_AFTER: a fold
        turns.append("appended")
    assert turns == ["other", "appended"]  # the other task ran during the fold
    assert saved_keys(loaded[0]) == set(keys)
    assert saved_keys(await store.load("busy")) == {*keys, "late"}
    await store.release("busy")
    assert saved_keys(await store.load("busy")) == {*keys, "late"}
