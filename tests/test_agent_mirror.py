"""Edits computed off the event loop, against the document as it is when they are written.

Real parts: an inkwire server on a free loopback port, the agent's
DiagramClient and a person's DiagramClient in the room. A person's edit is
made to arrive *while* the agent's edit is computed in its worker thread (the
computation waits for it), and the tests show the stale result is dropped and
the edit computed again from the new state, so the person's change survives.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.from_thread
import pytest
from pycrdt import Map

from agents import edits
from agents.edits import Edit, EditError
from agents.elements import Clock
from agents.mirror import TRIES, ElementMirror, consistent_edit
from agents.session import revision_of
from clients import DiagramClient
from tests.conftest import RunningServer
from tests.diagram_checker import check_diagram
from tests.test_mcp_tools import inkwire, person, seeded, stored

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])]

Elements = dict[str, dict[str, Any]]


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with inkwire(tmp_path) as running_server:
        yield running_server


@contextlib.asynccontextmanager
async def seeded_pair(server: RunningServer) -> AsyncIterator[tuple[DiagramClient, DiagramClient]]:
    """Ada, who seeded the "plan" diagram, and the agent's client, which has the seed."""
    async with person(server, "plan") as ada, person(server, "plan") as agent:
        await seeded(ada)
        await agent.wait_for(lambda c: c.get_element("seed"))
        yield ada, agent


def write(client: DiagramClient, edit: Edit) -> None:
    """What the MCP server's write does with a computed edit: one transaction."""
    with client.doc.transaction(origin="agent:test"):
        for element_id, element in edit.changed.items():
            client.elements[element_id] = element


class Attempts:
    """A ``make`` for consistent_edit that records where each try ran and what it saw."""

    def __init__(
        self,
        compute: Callable[[Elements], Edit],
        meanwhile: Callable[[int], Any] | None = None,
    ) -> None:
        self.compute = compute
        self.meanwhile = meanwhile  # async, run on the loop while try n is computed
        self.threads: list[bool] = []  # True: ran in a worker thread
        self.seen: list[Elements] = []

    def __call__(self, elements: Elements) -> Edit:
        in_worker = threading.current_thread() is not threading.main_thread()
        self.threads.append(in_worker)
        self.seen.append(elements)
        if self.meanwhile is not None and in_worker:
            anyio.from_thread.run(self.meanwhile, len(self.threads))
        return self.compute(elements)


async def test_the_mirror_follows_every_change_of_the_map(server: RunningServer) -> None:
    async with seeded_pair(server) as (ada, agent):
        mirror = ElementMirror(agent.elements)
        assert mirror.snapshot() == stored(agent)
        before = mirror.generation
        ada.update_element("seed", x=50)
        ada.elements["junk"] = "not an element"
        ada.elements["nested"] = Map({"type": "rectangle"})  # a shared type, not JSON
        ada.add_element({"id": "more", "type": "ellipse", "x": 0, "y": 0})
        await ada.confirm()
        await agent.wait_for(lambda c: "more" in c.elements and "junk" in c.elements)
        assert mirror.generation > before
        assert mirror.snapshot() == stored(agent)
        assert mirror.snapshot()["seed"]["x"] == 50
        assert "junk" not in mirror.snapshot() and "nested" not in mirror.snapshot()
        del ada.elements["more"]  # a key removed (as the tombstone purge does)
        await ada.confirm()
        await agent.wait_for(lambda c: "more" not in c.elements)
        assert mirror.snapshot() == stored(agent)


async def test_a_mirror_converted_in_a_thread_keeps_the_changes_made_meanwhile(
    server: RunningServer,
) -> None:
    async with seeded_pair(server) as (ada, agent):
        loaded: list[ElementMirror] = []

        async def load() -> None:
            loaded.append(await ElementMirror.load(agent.elements))

        async with anyio.create_task_group() as tg:
            tg.start_soon(load)
            await anyio.wait_all_tasks_blocked()  # it copied the document and waits for its thread
            agent.update_element("seed", x=99)
            agent.add_element({"id": "late", "type": "ellipse", "x": 0, "y": 0})
            del agent.elements["late"]
            agent.add_element({"id": "later", "type": "diamond", "x": 0, "y": 0})
        mirror = loaded[0]
        assert mirror.snapshot() == stored(agent)
        assert mirror.snapshot()["seed"]["x"] == 99 and "later" in mirror.snapshot()
        ada.add_element({"id": "after", "type": "ellipse", "x": 9, "y": 9})  # and what follows
        await ada.confirm()
        await agent.wait_for(lambda c: c.get_element("after"))
        assert "after" in mirror.snapshot()
        assert mirror.snapshot() == stored(agent)


async def test_an_unchanged_document_computes_the_edit_once_in_a_worker_thread(
    server: RunningServer,
) -> None:
    async with seeded_pair(server) as (_, agent):
        mirror = ElementMirror(agent.elements)
        make = Attempts(lambda e: edits.update_elements(e, [{"id": "seed", "x": 7}], Clock()))
        edit, revision = await consistent_edit(mirror, make, lambda: revision_of(agent.doc))
        assert make.threads == [True]
        assert revision == revision_of(agent.doc)
        assert edit.changed["seed"]["x"] == 7


async def test_a_change_arriving_while_the_edit_is_computed_is_not_overwritten(
    server: RunningServer,
) -> None:
    async with seeded_pair(server) as (ada, agent):
        mirror = ElementMirror(agent.elements)

        async def ada_moves_it(attempt: int) -> None:
            if attempt == 1:
                ada.update_element("seed", y=345)
                await ada.confirm()
                await agent.wait_for(lambda c: c.get_element("seed")["y"] == 345)

        relabel = [{"id": "seed", "label": "the agent's"}]
        make = Attempts(lambda e: edits.update_elements(e, relabel, Clock()), ada_moves_it)
        edit, _ = await consistent_edit(mirror, make, lambda: revision_of(agent.doc))
        assert make.threads == [True, True]  # the first result was dropped
        assert make.seen[0]["seed"]["y"] == 0 and make.seen[1]["seed"]["y"] == 345
        write(agent, edit)
        await agent.confirm()
        after = await ada.wait_for(
            lambda c: c.get_element("seed")["version"] > 2 and len(stored(c)) == 2 and stored(c)
        )
        check_diagram(after)
        assert after["seed"]["y"] == 345  # Ada's move stands
        label = next(b["id"] for b in after["seed"]["boundElements"] if b["type"] == "text")
        assert after[label]["originalText"] == "the agent's"


async def test_a_refusal_for_what_changed_meanwhile_is_asked_again(
    server: RunningServer,
) -> None:
    """The element the agent connects to appears while its first try runs: that try
    refuses (no such element), the second sees it."""
    async with seeded_pair(server) as (ada, agent):
        mirror = ElementMirror(agent.elements)

        async def ada_draws_the_target(attempt: int) -> None:
            if attempt == 1:
                ada.add_element({**stored(ada)["seed"], "id": "target", "x": 400})
                await ada.confirm()
                await agent.wait_for(lambda c: c.get_element("target"))

        arrow = [{"type": "arrow", "id": "link", "from": "seed", "to": "target"}]
        make = Attempts(lambda e: edits.create_elements(e, arrow, Clock()), ada_draws_the_target)
        edit, _ = await consistent_edit(mirror, make, lambda: revision_of(agent.doc))
        assert make.threads == [True, True]
        assert edit.changed["link"]["endBinding"]["elementId"] == "target"

        # a refusal with nothing changed meanwhile is the answer
        again = Attempts(lambda e: edits.create_elements(e, arrow, Clock()))
        write(agent, edit)
        with pytest.raises(EditError, match="exists already"):
            await consistent_edit(mirror, again, lambda: revision_of(agent.doc))
        assert again.threads == [True]


async def test_a_document_that_keeps_changing_gets_the_last_try_on_the_loop(
    server: RunningServer,
) -> None:
    async with seeded_pair(server) as (ada, agent):
        mirror = ElementMirror(agent.elements)

        async def ada_moves_it_every_time(attempt: int) -> None:
            ada.update_element("seed", y=attempt * 10)
            await ada.confirm()
            await agent.wait_for(lambda c: c.get_element("seed")["y"] == attempt * 10)

        checked: list[int] = []
        relabel = [{"id": "seed", "label": "mine"}]
        make = Attempts(
            lambda e: edits.update_elements(e, relabel, Clock()), ada_moves_it_every_time
        )
        edit, revision = await consistent_edit(
            mirror, make, lambda: revision_of(agent.doc), checked.append
        )
        assert make.threads == [True] * (TRIES - 1) + [False]
        assert len(checked) == TRIES and checked[-1] == revision == revision_of(agent.doc)
        assert edit.changed["seed"]["y"] == (TRIES - 1) * 10  # computed on the latest state
