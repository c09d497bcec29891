"""An agent draws in the real editor: Chromium with the web app open, the agent over ``/mcp``.

What Excalidraw 0.18 itself makes of the agent's elements is the test: its
labels are real bound text, its arrow is really bound (dragging the shape
with the mouse moves the label and re-routes the arrow, in the browser's own
code), and the agent shows as a collaborator with its name and pointer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

from tests.browser import Peer, wait_for
from tests.test_mcp_tools import FLOW
from tests.test_web_app import ALICE, in_thread, open_peer, server, url

__all__ = ["open_peer", "server"]  # fixtures, used by name

ELEMENTS_JS = """() => Object.fromEntries(window.inkwire.api.getSceneElements().map((e) => [e.id, {
  type: e.type, x: e.x, y: e.y, width: e.width, height: e.height, text: e.text ?? null,
  containerId: e.containerId ?? null, boundElements: e.boundElements ?? null,
  startBinding: e.startBinding ?? null, endBinding: e.endBinding ?? null,
  points: e.points ?? null}]))"""


def elements(peer: Peer) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = peer.page.evaluate(ELEMENTS_JS)
    return found


def agent_calls(base: str, *calls: tuple[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Tool calls from a 2026-era (stateless) MCP client; the agent stays in the room
    after it (no session ends), as such an agent does until its idle timeout."""

    async def run() -> list[dict[str, Any]]:
        results = []
        async with httpx2.AsyncClient(timeout=30) as http:
            transport = streamable_http_client(f"{base}/mcp", http_client=http)
            info = Implementation(name="claude", version="1.0")
            async with Client(transport, client_info=info, mode="auto") as client:
                for tool, arguments in calls:
                    result = await client.call_tool(tool, arguments)
                    assert not result.is_error, result.content
                    assert result.structured_content is not None
                    results.append(result.structured_content)
        return results

    found: list[dict[str, Any]] = in_thread(run)
    return found


def scene_when(
    peer: Peer, check: Callable[[dict[str, dict[str, Any]]], bool], what: str
) -> dict[str, dict[str, Any]]:
    found = wait_for(lambda: (scene,) if check(scene := elements(peer)) else None, 5, what)
    return found[0]


def label_of(scene: dict[str, dict[str, Any]], shape: str) -> dict[str, Any]:
    bound = scene[shape]["boundElements"] or []
    text_id = next(b["id"] for b in bound if b["type"] == "text")
    return scene[text_id]


def test_the_agents_shapes_labels_and_arrow_are_real_in_the_editor(
    server: Any, open_peer: Callable[..., Peer]
) -> None:
    base = url(server)
    created = agent_calls(
        base, ("create_elements", {"diagram": "agentic", "elements": FLOW, "create_diagram": True})
    )[0]
    alice = open_peer(base, ALICE).open("agentic")
    scene = scene_when(
        alice, lambda s: {"api", "db", "q"} <= set(s), "the agent's drawing is on Alice's canvas"
    )
    label = label_of(scene, "api")
    assert label["containerId"] == "api" and label["text"] == "API gateway"
    assert label_of(scene, "db")["text"] == "Database"
    arrow = scene["q"]
    assert arrow["startBinding"]["elementId"] == "api"
    assert arrow["endBinding"]["elementId"] == "db"
    assert set(created["created"]) >= {"api", "db", "q"}

    # the agent is a collaborator: its name, and its pointer on what it drew
    seen = wait_for(
        lambda: next(
            (c for c in alice.collaborators() if c["name"] == "claude" and c["pointer"]), None
        ),
        5,
        "Alice sees the agent by name, with a pointer",
    )
    assert -100 < seen["pointer"]["x"] < 700 and -100 < seen["pointer"]["y"] < 200
    assert {"api", "db", "q"} <= set(seen["selected"])  # outlined as the agent's selection

    # Alice drags the agent's rectangle: Excalidraw moves its label and re-routes the arrow
    api = scene["api"]
    start = alice.canvas_point(api["x"] + 20, api["y"] + 15)  # inside, off the label
    alice.page.mouse.click(*alice.canvas_point(api["x"] - 150, api["y"] + 400))  # focus, off
    alice.page.mouse.move(*start)
    alice.page.mouse.down()
    alice.page.mouse.move(start[0] + 60, start[1] + 100, steps=6)
    alice.page.mouse.move(start[0] + 120, start[1] + 200, steps=6)
    alice.page.mouse.up()
    moved = scene_when(
        alice, lambda s: s["api"]["y"] > api["y"] + 100, "the rectangle moved under Alice's mouse"
    )
    dx, dy = moved["api"]["x"] - api["x"], moved["api"]["y"] - api["y"]
    new_label = label_of(moved, "api")
    assert (
        abs(new_label["x"] - (label["x"] + dx)) < 1 and abs(new_label["y"] - (label["y"] + dy)) < 1
    )
    # the arrow still starts at the rectangle, now lower: its start moved with it
    new_arrow = moved["q"]
    assert new_arrow["startBinding"]["elementId"] == "api"
    assert new_arrow["y"] > arrow["y"] + 50 or new_arrow["points"] != arrow["points"]
    end = (new_arrow["x"] + new_arrow["points"][-1][0], new_arrow["y"] + new_arrow["points"][-1][1])
    db = moved["db"]
    assert db["x"] - 10 <= end[0] <= db["x"] + db["width"] + 10  # still ends at the database

    # the agent reads back what Alice did: the document holds the browser's edit
    read = agent_calls(base, ("get_elements", {"diagram": "agentic", "ids": ["api", "q"]}))[0]
    by_id = {e["id"]: e for e in read["elements"]}
    assert abs(by_id["api"]["y"] - moved["api"]["y"]) < 1
    assert by_id["q"]["startBinding"]["elementId"] == "api"
