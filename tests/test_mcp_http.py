"""The MCP server over its real transports: ``/mcp`` on a running server, and ``inkwire mcp``.

- Streamable HTTP at ``/mcp`` of an in-process server on a free port (real
  sockets), with the SDK's HTTP client: a 2025-era client with a session (the
  agent's presence leaves when it ends the session) and a 2026-era stateless
  one; with auth on, the REST API's tokens bound what the tools may do.
- A stock Node ``y-websocket`` peer watches the agent's elements arrive, and
  edits concurrently with it.
- ``inkwire mcp`` as a subprocess on stdio, as a desktop agent runs it.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp import Client, StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

from agents.elements import Clock
from agents.server import ServerOptions, build_server
from agents.session import revision_of
from clients import DiagramClient
from net.tokens import make_token
from tests.conftest import ROOT, RunningServer
from tests.diagram_checker import check_diagram
from tests.node import require_node
from tests.test_interop_node import NODE_PACKAGES, PEER_SCRIPT, NodePeer
from tests.test_layers import fresh_python
from tests.test_mcp_tools import (
    FLOW,
    SECRET,
    call,
    inkwire,
    person,
    refused,
    seeded,
    stored,
    text_of,
)

pytestmark = pytest.mark.anyio
#: The server (hypercorn's asyncio or trio worker) and the agent, under both loops.
BOTH_LOOPS = pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[RunningServer]:
    async with inkwire(tmp_path) as running_server:
        yield running_server


@asynccontextmanager
async def http_agent(
    server: RunningServer, name: str = "claude", token: str | None = None, mode: str = "legacy"
) -> AsyncIterator[Client]:
    headers = {} if token is None else {"authorization": f"Bearer {token}"}
    async with httpx2.AsyncClient(headers=headers, timeout=30) as http:
        transport = streamable_http_client(f"{server.http_url}/mcp", http_client=http)
        info = Implementation(name=name, version="1.0")
        async with Client(transport, client_info=info, mode=mode) as client:
            yield client


def named(client: DiagramClient, name: str) -> dict[str, Any] | None:
    return next((s for s in client.peers().values() if s.get("user", {}).get("name") == name), None)


@BOTH_LOOPS
async def test_an_agent_over_http_draws_and_leaves_with_its_session(
    server: RunningServer,
) -> None:
    async with person(server, "plan") as ada:
        await seeded(ada)
        async with http_agent(server, "claude") as client:
            tools = {tool.name for tool in (await client.list_tools()).tools}
            assert {"create_elements", "describe_diagram", "lock"} <= tools
            await call(client, "create_elements", diagram="plan", elements=FLOW)
            check_diagram(await ada.wait_for(lambda c: c.get_element("q") and stored(c)))
            state = await ada.wait_for(lambda c: named(c, "claude"))
            assert state["user"]["color"]
        # ending the MCP session (the client's DELETE) takes the agent out of the room
        await ada.wait_for(lambda c: named(c, "claude") is None)


@BOTH_LOOPS
async def test_a_stateless_client_of_the_2026_protocol_works_too(server: RunningServer) -> None:
    async with person(server, "plan") as ada:
        await seeded(ada)
        async with http_agent(server, "gemini", mode="auto") as client:
            await call(client, "create_elements", diagram="plan", elements=FLOW)
            described = await call(client, "describe_diagram", diagram="plan")
            assert '"API gateway"' in described["text"]
        check_diagram(await ada.wait_for(lambda c: c.get_element("q") and stored(c)))
        assert named(ada, "gemini") is not None  # no session to end: it stays until idle


@BOTH_LOOPS
async def test_with_auth_mcp_takes_the_same_tokens_as_the_api(tmp_path: Path) -> None:
    reader = make_token(SECRET, sub="reader", channels=["diagram:*"], publish=False)
    writer = make_token(SECRET, sub="writer", channels=["diagram:plan"], publish=True)
    async with inkwire(tmp_path, SECRET) as server:
        async with httpx.AsyncClient() as http:
            hello = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {}}
            answer = await http.post(f"{server.http_url}/mcp", json=hello)
            assert answer.status_code == 401
            assert answer.headers["www-authenticate"].startswith("Bearer")
            bad = {"authorization": "Bearer not-a-token"}
            assert (
                await http.post(f"{server.http_url}/mcp", json=hello, headers=bad)
            ).status_code == 401
        async with person(server, "plan", token=writer) as ada:
            await seeded(ada)
            before = stored(ada)
            async with http_agent(server, "reader", token=reader) as client:
                assert "seed" in (await call(client, "describe_diagram", diagram="plan"))["text"]
                message = await refused(client, "create_elements", diagram="plan", elements=FLOW)
                assert "read-only" in message
                message = await refused(
                    client, "update_elements", diagram="plan", updates=[{"id": "seed", "x": 9}]
                )
                assert "read-only" in message
            assert stored(ada) == before
            async with http_agent(server, "writer", token=writer) as client:
                await call(client, "create_elements", diagram="plan", elements=FLOW)
                assert "does not cover" in await refused(
                    client, "describe_diagram", diagram="secret"
                )
            check_diagram(await ada.wait_for(lambda c: c.get_element("q") and stored(c)))


@BOTH_LOOPS
async def test_garbage_on_the_wire_is_refused_and_the_server_carries_on(
    server: RunningServer,
) -> None:
    url = f"{server.http_url}/mcp"
    headers = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    async with httpx.AsyncClient() as http:
        for body in (b"{not json", b"[]", b"\xff\xfe", json.dumps({"jsonrpc": "2.0"}).encode()):
            answer = await http.post(url, content=body, headers=headers)
            assert 400 <= answer.status_code < 500, (body, answer.status_code)
        assert (await http.get(f"{server.http_url}/health/ready")).status_code == 200
    async with person(server, "plan") as ada, http_agent(server) as client:
        await seeded(ada)
        await call(client, "describe_diagram", diagram="plan")


# --- a stock y-websocket peer in Node ------------------------------------------------------


@pytest.fixture
def _require_node() -> None:
    require_node("MCP interop tests", NODE_PACKAGES)


@asynccontextmanager
async def node_peer(server: RunningServer, room: str, name: str) -> AsyncIterator[NodePeer]:
    async with NodePeer.spawn(PEER_SCRIPT, name) as peer:
        await peer.connect(server.yjs_url, room)
        await peer.request("awareness", state={"user": {"name": name, "color": "#1971c2"}})
        yield peer


def bumped(element: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """A person's edit of an element, as Excalidraw makes it: a new version and nonce."""
    return {
        **element,
        **changes,
        "version": element["version"] + 1,
        "versionNonce": Clock().random.randrange(2**31),
    }


@pytest.mark.usefixtures("_require_node")
async def test_a_node_y_websocket_peer_sees_the_agent_draw_live(server: RunningServer) -> None:
    async with person(server, "live") as ada:
        await seeded(ada)
        async with node_peer(server, "live", "bob") as bob, http_agent(server, "claude") as client:
            await call(client, "create_elements", diagram="live", elements=FLOW)
            await bob.request("wait_key", key="q", timeout_ms=10_000)
            seen = await bob.dump()
            check_diagram(seen)
            assert seen["q"]["endBinding"]["elementId"] == "db"
            peers = await bob.peers()
            assert any(s.get("user", {}).get("name") == "claude" for s in peers.values())


@pytest.mark.usefixtures("_require_node")
async def test_concurrent_edits_of_a_person_and_the_agent_reconcile(
    server: RunningServer,
) -> None:
    """A person offline edits what the agent edits meanwhile; both reconnect and merge.

    In Excalidraw's model an element is the unit of change: a concurrent edit of
    the *same* element by two people reconciles to one whole version of it (the
    browsers keep the higher ``version``, then the lower ``versionNonce``, and
    write their winner back to the document), never a mix of the two. What
    survives is everything else: edits of different elements by both, made at
    the same time, are all kept. Here the person (a stock Node y-websocket
    peer, offline meanwhile) moves shape ``api`` with its label and recolours
    ``db``; the agent relabels ``api``'s neighbour and recolours ``db`` too.
    """
    async with person(server, "race") as ada:
        await seeded(ada)
        async with node_peer(server, "race", "bob") as bob, http_agent(server) as client:
            extra = {"type": "rectangle", "id": "cache", "x": 0, "y": 300, "label": "Cache"}
            await call(client, "create_elements", diagram="race", elements=[*FLOW, extra])
            await bob.request("wait_key", key="cache", timeout_ms=10_000)
            base = await bob.dump()
            label = next(b["id"] for b in base["api"]["boundElements"] if b["type"] == "text")

            await bob.request("disconnect")
            # the person, offline: moves api (and its label, as Excalidraw does) and
            # recolours db
            mine = {
                "api": bumped(base["api"], x=base["api"]["x"] + 40, y=base["api"]["y"] + 20),
                label: bumped(base[label], x=base[label]["x"] + 40, y=base[label]["y"] + 20),
                "db": bumped(base["db"], backgroundColor="#ffc9c9"),
            }
            await bob.request("set_many", entries=mine)
            # the agent, meanwhile: relabels cache and recolours db
            done = await call(
                client,
                "update_elements",
                diagram="race",
                updates=[{"id": "cache", "label": "Redis"}, {"id": "db", "strokeColor": "#2f9e44"}],
            )
            await bob.request("reconnect", timeout_ms=10_000)

            # everyone converges on one document
            def settled(c: DiagramClient) -> dict[str, Any] | None:
                now = stored(c)
                moved = now["api"]["x"] == mine["api"]["x"]
                return now if moved and revision_of(c.doc) > done["revision"] else None

            final = await ada.wait_for(settled, timeout=10)
            await bob.request("wait_key", key="api", value={"x": mine["api"]["x"]})
            assert await bob.dump() == final
            check_diagram(final)
            # different elements: both edits survive
            assert final["api"]["x"] == mine["api"]["x"] and final[label]["x"] == mine[label]["x"]
            cache_label = next(
                b["id"] for b in final["cache"]["boundElements"] if b["type"] == "text"
            )
            assert final[cache_label]["originalText"] == "Redis"
            # the same element: one whole version, the person's or the agent's, never a mix
            db = final["db"]
            assert db["version"] == base["db"]["version"] + 1
            persons = (db["backgroundColor"], db["strokeColor"]) == (
                "#ffc9c9",
                base["db"]["strokeColor"],
            )
            agents = (db["backgroundColor"], db["strokeColor"]) == (
                base["db"]["backgroundColor"],
                "#2f9e44",
            )
            assert persons != agents  # exactly one of them
            # and the agent sees what everyone sees
            got = await call(client, "get_elements", diagram="race", ids=["db", "api"])
            assert got["elements"] == [final["db"], final["api"]]


# --- stdio ------------------------------------------------------------------------------------


@pytest.mark.processes
async def test_inkwire_mcp_on_stdio(server: RunningServer) -> None:
    async with person(server, "desk") as ada:
        await seeded(ada)
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "collab.cli", "mcp", "--server", server.http_url, "--name", "desktop"],
            cwd=str(ROOT),
            env={"PYTHONPATH": str(ROOT)},
        )
        async with Client(params, mode="legacy") as client:
            await call(client, "create_elements", diagram="desk", elements=FLOW)
            check_diagram(await ada.wait_for(lambda c: c.get_element("q") and stored(c)))
            state = await ada.wait_for(lambda c: named(c, "desktop"))
            assert state["user"]["name"] == "desktop"
            versions = await call(client, "list_versions", diagram="desk")
            assert versions["versions"][0]["origin"] == "desktop"
        await ada.wait_for(lambda c: named(c, "desktop") is None)


@pytest.mark.processes
def test_inkwire_mcp_refuses_a_server_that_is_not_a_url() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "collab.cli", "mcp", "--server", "localhost:3042"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 2
    assert "--server must be an http:// or https:// URL" in result.stderr


def test_building_the_mcp_server_leaves_the_process_logging_alone() -> None:
    """The SDK's constructor calls logging.basicConfig; a collab server embedded in
    someone's program must not configure that program's logging."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    for handler in handlers:
        root.removeHandler(handler)
    try:
        build_server()
        assert root.handlers == [] and root.level == level
    finally:
        for handler in handlers:
            root.addHandler(handler)


async def test_the_agent_rides_out_a_server_restart(server_process: Any) -> None:
    first = server_process("--grace", "1")
    base = f"http://127.0.0.1:{first.port}"
    mcp = build_server(ServerOptions(server=base))
    async with Client(mcp, client_info=Implementation(name="claude", version="1")) as client:
        await call(client, "create_elements", diagram="plan", elements=FLOW, create_diagram=True)
        first.process.terminate()
        assert first.process.wait(timeout=10) == 0
        message = await refused(
            client, "update_elements", diagram="plan", updates=[{"id": "api", "x": 50}]
        )
        # refused before writing (the client knew), or written and never confirmed
        assert any(
            said in message for said in ("nothing changed", "unreachable", "may or may not")
        ), message
        server_process("--grace", "1", port=first.port)  # same port, same database
        # the agent does what the error says: tries again in a moment (describe_diagram
        # reads the agent's replica, so its success does not mean the client reconnected)
        update = {"diagram": "plan", "updates": [{"id": "api", "x": 50}]}
        with anyio.fail_after(15):
            while (result := await client.call_tool("update_elements", update)).is_error:
                said = text_of(result.content)
                assert "nothing changed" in said or "may or may not" in said, said
                await anyio.sleep(0.1)
        got = await call(client, "get_elements", diagram="plan", ids=["api", "q"])
        assert got["elements"][0]["x"] == 50
    async with httpx.AsyncClient() as http:
        scene = (await http.get(f"{base}/api/diagrams/plan")).json()
    saved = {e["id"]: e for e in scene["elements"]}
    assert saved["api"]["x"] == 50
    check_diagram(saved)


@pytest.mark.processes  # a fresh interpreter, to see what importing loads
def test_a_server_loads_the_mcp_sdk_only_when_mcp_is_asked_for() -> None:
    """The SDK and the element model cost 1.5 s and 40 MB to import: servers (and every
    worker of inkwire up) that never serve /mcp must not pay for them."""
    script = (
        "import sys, collab.app, service.run, collab.cli\n"
        "heavy = ('mcp', 'mcp_types', 'grandalf', 'agents.server', 'agents.edits')\n"
        "print(sorted(m for m in sys.modules if m in heavy or m.split('.')[0] == 'mcp'))\n"
    )
    assert fresh_python(script).strip() == "[]"


async def test_a_server_with_an_agent_connected_shuts_down_cleanly(
    server_process: Any, tmp_path: Path
) -> None:
    """SIGTERM ends the agents' sessions first: their streams close and their clients
    leave the rooms, rather than hypercorn cutting the streams when its grace runs out."""
    running = server_process("--grace", "1")
    base = f"http://127.0.0.1:{running.port}"
    async with httpx2.AsyncClient(timeout=30) as http:
        transport = streamable_http_client(f"{base}/mcp", http_client=http)
        info = Implementation(name="claude", version="1.0")
        async with Client(transport, client_info=info, mode="legacy") as client:
            await call(
                client, "create_elements", diagram="plan", elements=FLOW, create_diagram=True
            )
            running.process.terminate()
            code = await anyio.to_thread.run_sync(lambda: running.process.wait(timeout=10))
    assert code == 0
    log = (tmp_path / f"server-{running.port}.log").read_text()
    assert "Traceback" not in log and " ERROR " not in log, log[-2000:]
