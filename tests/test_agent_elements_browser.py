"""Excalidraw 0.18 itself takes the elements the agents' operations make, unrepaired.

A real ``inkwire serve``, the elements written into the diagram's Yjs
document by a Python peer (as the MCP server will), and real Chromium
running the web app: the scene must hold every element with the fields we
wrote (``restoreElements`` changed nothing, so no version moved), labels
inside their shapes and bound both ways, arrows bound to both shapes; and
when a person drags a shape, its label and its arrows follow, as they do
for shapes drawn by hand.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import anyio
import httpx
from pycrdt import Map

from agents import edits
from agents.elements import Clock, bound_text_id
from clients import DiagramClient
from tests.browser import Peer, wait_for
from tests.diagram_checker import check_diagram
from tests.test_web_app import ALICE, in_thread, open_peer, server, server_elements, url

__all__ = ["open_peer", "server"]  # fixtures, used by name

SCENE_JS = """() => window.inkwire.api.getSceneElementsIncludingDeleted()
  .map((e) => JSON.parse(JSON.stringify(e)))"""
#: What the browser measures with the real font (ours is an approximation of it).
MEASURED = {"x", "y", "width", "height", "text"}
#: The widest line of a text as the editor measures it (Excalifont, canvas advance widths).
MEASURE_JS = """async ([text, size]) => { await document.fonts.load(`${size}px Excalifont`);
  const context = document.createElement("canvas").getContext("2d");
  context.font = `${size}px Excalifont, Xiaolai, Segoe UI Emoji`;
  return Math.max(...text.split("\\n").map((line) => context.measureText(line).width)); }"""


def made_by_the_operations() -> dict[str, dict[str, Any]]:
    clock = Clock(random.Random(7))
    drawn = edits.layout(
        {},
        [
            {"id": "start", "label": "Start", "type": "ellipse", "backgroundColor": "#b2f2bb"},
            {"id": "check", "label": "Valid?", "type": "diamond", "backgroundColor": "#ffec99"},
            {"id": "save", "label": "Save the order", "backgroundColor": "#a5d8ff"},
        ],
        [
            {"from": "start", "to": "check", "label": "submit"},
            {"from": "check", "to": "save", "label": "yes"},
            {"from": "start", "to": "save"},
        ],
        clock,
        direction="LR",
        origin=(120, 160),
    )
    elements = dict(drawn.changed)
    more = edits.create_elements(
        elements,
        [
            {"type": "frame", "id": "zone", "x": 120, "y": 480, "width": 360, "height": 180},
            {"type": "rectangle", "id": "inner", "x": 150, "y": 520, "frame": "zone"},
            {"type": "text", "id": "note", "x": 520, "y": 520, "text": "a free note\non two lines"},
            {"type": "line", "id": "rule", "x": 520, "y": 620, "points": [[0, 0], [200, 0]]},
        ],
        clock,
    )
    elements.update(more.changed)
    check_diagram(elements)
    return elements


def write(server: Any, diagram: str, elements: dict[str, dict[str, Any]]) -> None:
    """Write the elements in one transaction; wait until stored."""
    edit_live(server, diagram, lambda _current: elements)


def edit_live(
    server: Any,
    diagram: str,
    operation: Callable[[dict[str, dict[str, Any]]], dict[str, dict[str, Any]]],
) -> None:
    """As the MCP server will: read the doc's map, run an operation, write what it
    changed in one transaction, and wait until the server stored it."""

    async def put() -> None:
        async with DiagramClient(f"ws://127.0.0.1:{server.port}/yjs", diagram) as client:
            await client.wait_for(lambda c: c.status == "connected", timeout=10)
            shared = client.doc.get("elements", type=Map)
            current = {k: dict(v) for k, v in shared.items() if isinstance(v, dict)}
            elements = operation(current)
            with client.doc.transaction():
                for eid, element in elements.items():
                    shared[eid] = element
            async with httpx.AsyncClient() as http:
                with anyio.fail_after(10):
                    while True:
                        reply = await http.get(f"{url(server)}/api/diagrams/{diagram}")
                        stored = {e["id"]: e for e in reply.json()["elements"]}
                        if all(
                            stored.get(k, {}).get("version") == v["version"]
                            for k, v in elements.items()
                            if not v["isDeleted"]
                        ):
                            return
                        await anyio.sleep(0.05)

    in_thread(put)


def scene(peer: Peer) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in peer.page.evaluate(SCENE_JS)}


def test_excalidraw_takes_the_elements_as_written_and_they_follow_a_drag(
    server: Any, open_peer: Any
) -> None:
    written = made_by_the_operations()
    write(server, "agents", written)
    alice = open_peer(url(server), ALICE).open("agents")
    seen = wait_for(
        lambda: (s,) if set(written) <= set(s := scene(alice)) else None,
        10,
        "every element is on the canvas",
    )[0]

    # restoreElements repaired nothing: every field as written, no version bumped
    for eid, mine in written.items():
        theirs = seen[eid]
        for key, value in mine.items():
            if mine["type"] == "text" and key in MEASURED:
                continue
            if isinstance(value, float):
                assert abs(theirs[key] - value) < 1e-6, f"{eid}.{key}: {theirs[key]} != {value}"
            else:
                assert theirs[key] == value, f"{eid}.{key}: {theirs[key]!r} != {value!r}"
        assert set(theirs) - set(mine) <= {"customData"}, f"{eid}: {set(theirs) - set(mine)}"

    # our measure of each text is within a few percent of the editor's
    for eid, mine in written.items():
        if mine["type"] == "text":
            real = alice.page.evaluate(MEASURE_JS, [mine["text"], mine["fontSize"]])
            assert abs(mine["width"] - real) <= 0.03 * real + 1, f"{eid}: {mine['width']} vs {real}"

    # labels are in their shapes and the arrows bound, in the browser's own terms
    live = {k: v for k, v in seen.items() if not v["isDeleted"]}
    check_diagram(live)
    arrows = [e for e in live.values() if e["type"] == "arrow"]
    assert len(arrows) == 3 and all(a["startBinding"] and a["endBinding"] for a in arrows)

    # a person drags "save": its label and both arrows ending there follow
    save = live["save"]
    label_id = bound_text_id(save)
    assert label_id is not None
    before_label = live[label_id]
    into_save = [a["id"] for a in arrows if a["endBinding"]["elementId"] == "save"]
    ends_before = {a: end_point(live[a]) for a in into_save}
    grab = alice.canvas_point(save["x"] + 12, save["y"] + save["height"] / 2)
    alice.page.mouse.move(*grab)
    alice.page.mouse.down()
    alice.page.mouse.move(grab[0] + 40, grab[1] + 60, steps=5)
    alice.page.mouse.move(grab[0] + 80, grab[1] + 120, steps=5)
    alice.page.mouse.up()

    def followed() -> dict[str, dict[str, Any]] | None:
        now = {k: v for k, v in scene(alice).items() if not v["isDeleted"]}
        moved = now["save"]["y"] - save["y"] > 100 and now["save"]["x"] - save["x"] > 60
        return now if moved else None

    after = wait_for(followed, 5, "the shape moved")
    dx, dy = after["save"]["x"] - save["x"], after["save"]["y"] - save["y"]
    assert abs(after[label_id]["x"] - before_label["x"] - dx) < 1
    assert abs(after[label_id]["y"] - before_label["y"] - dy) < 1
    for arrow in into_save:
        _, ey = end_point(after[arrow])
        assert ey - ends_before[arrow][1] > 60, f"arrow {arrow}'s end did not follow"
        assert after[arrow]["endBinding"]["elementId"] == "save"
    check_diagram(after)

    # and the server's copy agrees: the browser wrote the drag back through the doc
    stored = wait_for(
        lambda: (
            (s,)
            if abs((s := server_elements(server, "agents"))["save"]["y"] - after["save"]["y"])
            < 1e-6
            else None
        ),
        5,
        "the drag reached the server",
    )[0]
    check_diagram(stored)

    # an agent edits what the browser wrote: relabel and move "check", delete "start"
    def relabel_and_delete(current: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        clock = Clock(random.Random(11))
        changed = edits.update_elements(
            current, [{"id": "check", "label": "Is the order valid?", "y": 420}], clock
        ).changed
        current = {**current, **changed}
        return {**changed, **edits.delete_elements(current, ["start"], clock).changed}

    edit_live(server, "agents", relabel_and_delete)

    def edited() -> dict[str, dict[str, Any]] | None:
        now = {k: v for k, v in scene(alice).items() if not v["isDeleted"]}
        return now if "start" not in now and now["check"]["y"] == 420 else None

    final = wait_for(edited, 5, "the agent's edit is on the canvas")
    relabelled = final[bound_text_id(final["check"]) or ""]
    assert relabelled["originalText"] == "Is the order valid?"
    assert [a for a in final.values() if a["type"] == "arrow" and a["startBinding"] is None]
    check_diagram(final)


def end_point(arrow: dict[str, Any]) -> tuple[float, float]:
    last = arrow["points"][-1]
    return arrow["x"] + last[0], arrow["y"] + last[1]
