"""The MCP tools through the SDK's in-memory client, under asyncio and trio.

The MCP server runs in the test's own process, but everything behind it is
real: an inkwire server on a free loopback port (SQLite, so history works),
the agent's DiagramClient in the room, and a person's DiagramClient watching
what the agent does. Every diagram a test produces goes through the shared
checker (``tests/diagram_checker.py``).
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.types import ImageContent, Implementation, TextContent

import relays
from agents import edits
from agents.elements import Clock
from agents.server import ServerOptions, build_server
from agents.session import revision_of
from clients import DiagramClient
from collab.app import CollabApp
from collab.config import Config
from net.tokens import make_token
from relays.catalogs import BY_NAME
from storage.sqlite import SQLiteStore
from tests.conftest import RunningServer, free_port, running
from tests.diagram_checker import check_diagram, check_edit
from tests.png import png_dimensions

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])]

ADA = {"id": "u-ada", "name": "Ada", "color": "#e03131"}
SECRET = "mcp-test-secret-long-enough-for-hs256-0123456789"
FLOW = [
    {"type": "rectangle", "id": "api", "x": 0, "y": 0, "label": "API gateway"},
    {"type": "ellipse", "id": "db", "x": 400, "y": 0, "label": "Database"},
    {"type": "arrow", "id": "q", "from": "api", "to": "db", "label": "queries"},
]


@asynccontextmanager
async def inkwire(tmp_path: Path, secret: str | None = None) -> AsyncIterator[RunningServer]:
    config = Config(grace_period=1.0, auth_secret=secret)
    store = SQLiteStore(tmp_path / "mcp.db")
    async with running(CollabApp(store, config)) as server:
        yield server
    store.close()


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with inkwire(tmp_path) as running_server:
        yield running_server


@asynccontextmanager
async def agent(
    server: RunningServer, name: str = "claude", **options: Any
) -> AsyncIterator[Client]:
    mcp = build_server(ServerOptions(server=server.http_url, **options))
    async with Client(mcp, client_info=Implementation(name=name, version="1.0")) as client:
        yield client


@asynccontextmanager
async def person(
    server: RunningServer, diagram: str, token: str | None = None
) -> AsyncIterator[DiagramClient]:
    async with DiagramClient(server.yjs_url, diagram, user=ADA, token=token) as client:
        yield client


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, text_of(result.content)
    assert result.structured_content is not None
    return result.structured_content


async def refused(client: Client, tool: str, **arguments: Any) -> str:
    result = await client.call_tool(tool, arguments)
    assert result.is_error, result.structured_content
    return text_of(result.content)


def text_of(content: list[Any]) -> str:
    return " ".join(part.text for part in content if isinstance(part, TextContent))


def stored(client: DiagramClient) -> dict[str, dict[str, Any]]:
    return {k: dict(v) for k, v in client.elements.items() if isinstance(v, dict)}


async def seeded(client: DiagramClient, element_id: str = "seed") -> None:
    """Make the diagram exist: a person's rectangle (every field Excalidraw writes), saved."""
    spec = {"type": "rectangle", "id": element_id, "x": -300, "y": 0, "width": 100, "height": 60}
    edit = edits.create_elements(stored(client), [spec], Clock())
    with client.doc.transaction():
        for element_id, element in edit.changed.items():
            client.elements[element_id] = element
    await client.confirm()


async def test_every_tool_has_typed_arguments_an_output_schema_and_annotations(
    server: RunningServer,
) -> None:
    async with agent(server) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    assert {
        "list_diagrams",
        "describe_diagram",
        "get_elements",
        "create_elements",
        "update_elements",
        "delete_elements",
        "group",
        "ungroup",
        "align",
        "distribute",
        "layout",
        "export_diagram",
        "list_versions",
        "restore_version",
        "lock",
        "unlock",
        "websocket_health_check",
        "websocket_get_status",
        "websocket_list_rooms",
        "websocket_get_metrics",
    } <= set(tools)
    for tool in tools.values():
        assert tool.description, tool.name
        assert tool.annotations is not None, tool.name
        assert tool.input_schema["type"] == "object"
    for name in ("list_diagrams", "describe_diagram", "get_elements", "list_versions"):
        assert tools[name].annotations.read_only_hint is True
        assert tools[name].output_schema is not None
    for name in ("create_elements", "update_elements", "layout"):
        assert tools[name].annotations.read_only_hint is False
        assert tools[name].annotations.destructive_hint is False
        assert tools[name].output_schema is not None
    assert tools["delete_elements"].annotations.destructive_hint is True
    assert tools["restore_version"].annotations.destructive_hint is True
    assert tools["lock"].annotations.idempotent_hint is True
    shape = tools["create_elements"].input_schema
    assert "elements" in shape["required"]


async def test_the_agent_draws_labelled_shapes_and_a_bound_arrow_as_a_collaborator(
    server: RunningServer,
) -> None:
    async with person(server, "plan") as ada:
        await seeded(ada)
        async with agent(server, "claude") as client:
            result = await call(client, "create_elements", diagram="plan", elements=FLOW)
            assert {"api", "db", "q"} <= set(result["created"])
            after = await ada.wait_for(lambda c: c.get_element("q") and stored(c))
            check_diagram(after)
            api, db, arrow = after["api"], after["db"], after["q"]
            label = after[next(b["id"] for b in api["boundElements"] if b["type"] == "text")]
            assert label["containerId"] == "api" and label["originalText"] == "API gateway"
            assert arrow["startBinding"]["elementId"] == "api"
            assert arrow["endBinding"]["elementId"] == "db"
            assert {"id": "q", "type": "arrow"} in db["boundElements"]
            assert after["seed"] == ada.get_element("seed")  # the person's element is untouched

            # the agent is a collaborator: its name, colour and a pointer on what it drew
            state = await ada.wait_for(
                lambda c: next(
                    (
                        s
                        for s in c.peers().values()
                        if s.get("user", {}).get("name") == "claude"
                        and s.get("pointer", {}).get("x", 0) > 0
                    ),
                    None,
                )
            )
            assert state["user"]["color"].startswith("#")
            assert 0 < state["pointer"]["x"] < 600
            assert {"api", "db", "q"} <= set(state["selectedElementIds"])

            described = await call(client, "describe_diagram", diagram="plan")
            assert described["revision"] == revision_of(ada.doc) == result["revision"]
            assert '"API gateway"' in described["text"] and "queries" in described["text"]
            around_db = {"x": db["x"] - 5, "y": db["y"] - 5, "width": 50, "height": 50}
            part = await call(client, "describe_diagram", diagram="plan", area=around_db)
            listed = {line.split()[0] for line in part["text"].splitlines()[1:]}
            assert "db" in listed and "api" not in listed  # (the arrow reaching db is in it)
            got = await call(client, "get_elements", diagram="plan", ids=["api", "q"])
            assert [e["id"] for e in got["elements"]] == ["api", "q"]
            assert got["elements"][0] == after["api"]

        # the session ended: the agent's presence is gone from the room
        await ada.wait_for(
            lambda c: not any(s.get("user", {}).get("name") == "claude" for s in c.peers().values())
        )


async def test_updates_move_labels_and_arrows_and_deletes_unbind(server: RunningServer) -> None:
    async with person(server, "plan") as ada, agent(server) as client:
        await seeded(ada)
        await call(client, "create_elements", diagram="plan", elements=FLOW)
        before = await ada.wait_for(lambda c: c.get_element("q") and stored(c))

        moved = await call(
            client,
            "update_elements",
            diagram="plan",
            updates=[{"id": "api", "x": 0, "y": 300}, {"id": "db", "label": "Postgres"}],
        )
        after = await ada.wait_for(lambda c: c.get_element("api")["y"] == 300 and stored(c))
        check_diagram(after)
        check_edit(before, after, moved["changed"])
        label_id = next(b["id"] for b in after["api"]["boundElements"] if b["type"] == "text")
        assert after[label_id]["y"] > 300  # the label went with its shape
        assert after["q"]["y"] != before["q"]["y"]  # the arrow was re-routed

        gone = await call(client, "delete_elements", diagram="plan", ids=["db"])
        final = await ada.wait_for(lambda c: c.get_element("db")["isDeleted"] and stored(c))
        check_diagram(final)
        check_edit(after, final, gone["changed"])
        assert "db" in gone["deleted"]
        assert final["q"]["endBinding"] is None  # the arrow stays, unbound
        assert not final["q"]["isDeleted"]


async def test_group_align_distribute_and_layout(server: RunningServer) -> None:
    async with person(server, "plan") as ada, agent(server) as client:
        await seeded(ada)
        boxes = [
            {"type": "rectangle", "id": f"b{i}", "x": i * 200, "y": i * 37, "label": f"box {i}"}
            for i in range(4)
        ]
        await call(client, "create_elements", diagram="plan", elements=boxes)
        ids = [f"b{i}" for i in range(4)]
        for tool, extra in (
            ("align", {"edge": "top"}),
            ("distribute", {"axis": "horizontal"}),
            ("group", {}),
            ("ungroup", {}),
        ):
            before = stored(ada)
            result = await call(client, tool, diagram="plan", ids=ids, **extra)
            after = await ada.wait_for(
                lambda c, r=result: revision_of(c.doc) >= r["revision"] and stored(c)
            )
            check_diagram(after)
            check_edit(before, after, result["changed"])
        assert len({ada.get_element(i)["y"] for i in ids}) == 1  # aligned on their tops

        graph = await call(
            client,
            "layout",
            diagram="plan",
            nodes=[{"id": n, "label": n.upper()} for n in ("web", "api", "db", "cache")],
            edges=[
                {"from": "web", "to": "api"},
                {"from": "api", "to": "db", "label": "SQL"},
                {"from": "api", "to": "cache"},
            ],
            x=0,
            y=500,
        )
        after = await ada.wait_for(lambda c: c.get_element("cache") and stored(c))
        check_diagram(after)
        assert after["web"]["y"] < after["api"]["y"] < after["db"]["y"]  # layered, top down
        assert len(graph["created"]) >= 4 + 3


async def test_if_revision_refuses_a_stale_edit(server: RunningServer) -> None:
    async with person(server, "plan") as ada, agent(server) as client:
        await seeded(ada)
        read = await call(client, "describe_diagram", diagram="plan")
        ada.update_element("seed", x=50)  # a person edits meanwhile
        await ada.confirm()
        await ada.wait_for(lambda c: revision_of(c.doc) > read["revision"])
        # the agent's peer hears the edit; then its write is refused against the old revision
        before = await ada.wait_for(lambda c: stored(c))
        message = await refused(
            client,
            "update_elements",
            diagram="plan",
            updates=[{"id": "seed", "label": "mine"}],
            if_revision=read["revision"],
        )
        assert "changed since you read it" in message
        assert stored(ada) == before
        fresh = await call(client, "describe_diagram", diagram="plan")
        await call(
            client,
            "update_elements",
            diagram="plan",
            updates=[{"id": "seed", "label": "mine"}],
            if_revision=fresh["revision"],
        )


async def test_history_restore_and_lock(server: RunningServer) -> None:
    async with person(server, "plan") as ada, agent(server, "claude") as client:
        await seeded(ada)
        first = await call(client, "list_versions", diagram="plan")
        await call(client, "create_elements", diagram="plan", elements=FLOW)
        versions = (await call(client, "list_versions", diagram="plan"))["versions"]
        newest = versions[0]
        assert newest["origin"] == "claude"  # the server attributes the edit to the agent
        assert {"api", "db", "q"} <= set(newest["added"])

        restored = await call(
            client, "restore_version", diagram="plan", at=first["versions"][0]["seq"]
        )
        assert restored["changed"] is True
        await ada.wait_for(lambda c: c.get_element("api")["isDeleted"])
        check_diagram(stored(ada))

        assert (await call(client, "lock", diagram="plan", reason="review"))["locked"] is True
        await ada.wait_for(lambda c: c.meta.get("locked") is True)
        before = stored(ada)
        message = await refused(client, "create_elements", diagram="plan", elements=FLOW[:1])
        assert "locked" in message
        assert stored(ada) == before
        assert (await call(client, "unlock", diagram="plan"))["locked"] is False
        again = [{**FLOW[0], "id": "api2"}]  # a deleted element's id stays taken
        await call(client, "create_elements", diagram="plan", elements=again)
        check_diagram(await ada.wait_for(lambda c: c.get_element("api2") and stored(c)))


async def test_list_diagrams_shows_who_is_in_them(server: RunningServer) -> None:
    async with person(server, "alpha") as ada, agent(server) as client:
        await seeded(ada)
        listed = await call(client, "list_diagrams")
        row = next(d for d in listed["diagrams"] if d["id"] == "alpha")
        assert "Ada" in row["people"]
        assert (await call(client, "list_diagrams", prefix="zzz"))["diagrams"] == []


async def test_a_new_diagram_only_on_purpose(server: RunningServer) -> None:
    async with agent(server) as client:
        message = await refused(client, "create_elements", diagram="fresh", elements=FLOW)
        assert "no diagram 'fresh'" in message
        await call(client, "create_elements", diagram="fresh", elements=FLOW, create_diagram=True)
        async with person(server, "fresh") as ada:
            check_diagram(await ada.wait_for(lambda c: c.get_element("q") and stored(c)))


BAD_INPUT = {
    "unknown ids": ("update_elements", {"updates": [{"id": "ghost", "x": 1}]}, "ghost"),
    "unknown ids to delete": ("delete_elements", {"ids": ["seed", "ghost"]}, "ghost"),
    "unknown ids to read": ("get_elements", {"ids": ["ghost"]}, "ghost"),
    "wrong types": (
        "create_elements",
        {"elements": [{"type": "rectangle", "x": "left", "y": 0}]},
        "elements.0.x",
    ),
    "an unknown type": ("create_elements", {"elements": [{"type": "hexagon"}]}, "hexagon"),
    "a label on a line": (
        "create_elements",
        {"elements": [{"type": "line", "points": [[0, 0], [100, 0]], "label": "no"}]},
        "cannot have a label",
    ),
    "an arrow to nowhere": (
        "create_elements",
        {"elements": [{"type": "arrow", "from": "seed", "to": "ghost"}]},
        "ghost",
    ),
    "10 000 elements in one call": (
        "create_elements",
        {"elements": [{"type": "rectangle", "x": i, "y": 0} for i in range(10_000)]},
        "1000",
    ),
    "garbage JSON": ("create_elements", {"elements": "{[not json"}, "elements"),
    "garbage JSON in a list": ("update_elements", {"updates": ["}{", 7]}, "updates"),
    "an unknown diagram": ("describe_diagram", {"diagram": "nobody-made-this"}, "no diagram"),
    "an impossible diagram name": ("describe_diagram", {"diagram": "../etc/passwd"}, "diagram"),
    "an unknown alignment": ("align", {"ids": ["seed"], "edge": "diagonal"}, "edge"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
async def test_bad_input_is_a_clear_tool_error_and_changes_nothing(
    server: RunningServer, case: str
) -> None:
    tool, arguments, named = BAD_INPUT[case]
    async with person(server, "plan") as ada, agent(server) as client:
        await seeded(ada)
        await call(client, "create_elements", diagram="plan", elements=FLOW)
        before = await ada.wait_for(lambda c: c.get_element("q") and stored(c))
        revision = revision_of(ada.doc)
        message = await refused(client, tool, **{"diagram": "plan", **arguments})
        assert named in message, message
        assert len(message) < 4000  # an agent reads it: no wall of echoed input
        # the diagram is unchanged, and the session still works
        described = await call(client, "describe_diagram", diagram="plan")
        assert described["revision"] == revision
        assert stored(ada) == before


async def test_a_read_only_token_reads_but_cannot_edit(tmp_path: Path) -> None:
    reader = make_token(SECRET, sub="reader", channels=["diagram:*"], publish=False)
    writer = make_token(SECRET, sub="writer", channels=["diagram:plan"], publish=True)
    async with inkwire(tmp_path, SECRET) as server:
        async with person(server, "plan", token=writer) as ada:
            await seeded(ada)
            before = stored(ada)
            async with agent(server, "reader", token=reader) as client:
                assert "seed" in (await call(client, "describe_diagram", diagram="plan"))["text"]
                message = await refused(client, "create_elements", diagram="plan", elements=FLOW)
                assert "refused" in message and "read-only" in message
                # refused whole; the agent's next read is the server's state, not its own
                described = await call(client, "describe_diagram", diagram="plan")
                assert "api" not in described["text"]
                message = await refused(client, "lock", diagram="plan")
                assert "403" in message
            assert stored(ada) == before

            async with agent(server, "writer", token=writer) as client:
                await call(client, "create_elements", diagram="plan", elements=FLOW)
                check_diagram(await ada.wait_for(lambda c: c.get_element("q") and stored(c)))
                message = await refused(client, "describe_diagram", diagram="other")
                assert "does not cover" in message
            async with agent(server, "nobody") as client:
                message = await refused(client, "list_diagrams")
                assert "401" in message


async def test_results_are_json_text_as_well(server: RunningServer) -> None:
    """Clients that ignore structured content get the same result as text."""
    async with person(server, "plan") as ada, agent(server) as client:
        await seeded(ada)
        result = await client.call_tool("describe_diagram", {"diagram": "plan"})
        assert json.loads(text_of(result.content)) == result.structured_content


async def test_export_draws_the_diagram_on_the_server(server: RunningServer) -> None:
    async with person(server, "plan") as ada, agent(server) as client:
        await seeded(ada)
        await call(client, "create_elements", diagram="plan", elements=FLOW)

        png = await client.call_tool("export_diagram", {"diagram": "plan"})
        assert not png.is_error
        image = png.content[0]
        assert isinstance(image, ImageContent) and image.mime_type == "image/png"
        data = base64.b64decode(image.data)
        info = png.structured_content
        assert info is not None and info["format"] == "png" and info["size"] == len(data)
        assert png_dimensions(data) == (info["width"], info["height"])
        assert info["width"] > 500  # seed to database: the whole drawing

        svg = await client.call_tool("export_diagram", {"diagram": "plan", "format": "svg"})
        assert "<svg" in text_of(svg.content[:1]) and "API gateway" in text_of(svg.content[:1])

        file = await client.call_tool("export_diagram", {"diagram": "plan", "format": "excalidraw"})
        scene = json.loads(text_of(file.content[:1]))
        assert {"api", "db", "q", "seed"} <= {e["id"] for e in scene["elements"]}

        message = await refused(client, "export_diagram", diagram="plan", format="gif")
        assert "format" in message


async def test_the_operations_tools_ask_the_server_and_its_relays(server: RunningServer) -> None:
    settings = relays.RelaySettings()
    async with relays.serve(
        BY_NAME["dhruva"], "127.0.0.1", free_port(), settings=settings
    ) as relay:
        gone = f"http://127.0.0.1:{free_port()}"
        relay_urls = [f"http://127.0.0.1:{relay.port}", gone]
        async with person(server, "busy") as ada, agent(server, relays=relay_urls) as client:
            await seeded(ada)
            await call(client, "describe_diagram", diagram="busy")  # the agent joins too
            health = await call(client, "websocket_health_check")
            by_url = {s["url"]: s for s in health["servers"]}
            assert (
                by_url[server.http_url]["ready"] is True
                and by_url[server.http_url]["kind"] == "collab"
            )
            assert by_url[relay_urls[0]]["ready"] is True
            assert by_url[gone]["up"] is False and by_url[gone]["error"]
            assert health["all_ready"] is False

            status = await call(client, "websocket_get_status")
            collab = next(s for s in status["servers"] if s["kind"] == "collab")
            assert collab["rooms"] >= 1 and collab["connections"] >= 2  # Ada and the agent

            rooms = await call(client, "websocket_list_rooms")
            collab_rooms = next(s for s in rooms["servers"] if s["kind"] == "collab")
            busy = next(r for r in collab_rooms["rooms"] if r["name"] == "busy")
            assert busy["connections"] == 2

            metrics = await call(client, "websocket_get_metrics", prefix="websocket_")
            names = {
                sample["name"]
                for s in metrics["servers"]
                if s["kind"] == "collab"
                for sample in s["samples"]
            }
            assert any(name.startswith("websocket_connections") for name in names), names


async def test_an_idle_agent_leaves_the_diagram_and_comes_back_on_its_next_call(
    server: RunningServer,
) -> None:
    def present(c: DiagramClient) -> bool:
        return any(s.get("user", {}).get("name") == "claude" for s in c.peers().values())

    async with person(server, "plan") as ada, agent(server, idle_timeout=0.3) as client:
        await seeded(ada)
        await call(client, "describe_diagram", diagram="plan")
        await ada.wait_for(present)
        await ada.wait_for(lambda c: not present(c))  # a third of a second without a call
        await call(client, "create_elements", diagram="plan", elements=FLOW)
        await ada.wait_for(present)
        check_diagram(await ada.wait_for(lambda c: c.get_element("q") and stored(c)))


async def test_an_element_a_peer_wrote_badly_is_a_clear_error_not_a_crash(
    server: RunningServer,
) -> None:
    """Peers are not trusted: a y-websocket client may write any JSON under a key."""
    async with person(server, "plan") as ada, agent(server) as client:
        await seeded(ada)
        ada.elements["junk"] = {"id": "junk", "type": "ellipse", "x": "left", "version": 1}
        await ada.confirm()
        before = stored(ada)
        # reading it: either the model skips what it cannot read, or says so
        described = await client.call_tool("describe_diagram", {"diagram": "plan"})
        if described.is_error:
            assert "not valid Excalidraw" in text_of(described.content)
        else:
            assert described.structured_content is not None
            assert "seed" in described.structured_content["text"]
        message = await refused(
            client, "update_elements", diagram="plan", updates=[{"id": "junk", "x": 5}]
        )
        assert "junk" in message or "not valid Excalidraw" in message, message
        assert stored(ada) == before
        got = await call(client, "get_elements", diagram="plan", ids=["junk"])
        assert got["elements"][0]["x"] == "left"


async def test_an_expired_token_ends_the_agents_access(tmp_path: Path) -> None:
    async with inkwire(tmp_path, SECRET) as server:
        brief = make_token(SECRET, sub="brief", channels=["diagram:*"], publish=True, ttl=3.0)
        expires = time.time() + 3.0
        async with agent(server, token=brief) as client:
            await call(
                client, "create_elements", diagram="plan", elements=FLOW, create_diagram=True
            )
            # past its exp: the room closes the agent's connection (4001), the API says 401
            await anyio.sleep(max(0.0, expires - time.time()) + 0.5)
            message = await refused(
                client, "update_elements", diagram="plan", updates=[{"id": "api", "x": 9}]
            )
            assert "expired" in message or "4001" in message, message
