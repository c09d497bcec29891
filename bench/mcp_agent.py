"""From an agent's ``create_elements`` call to the shapes in a connected peer.

What it measures
----------------
An ``inkwire serve`` subprocess (SQLite in a temp dir, as shipped: every edit
saved before anyone is sent it) has a diagram open in a watching peer: a
``clients.DiagramClient`` whose document observer notes the moment its
``elements`` map holds all the shapes (with their bound labels) of the call.
Each round, an agent calls ``create_elements`` with ``--shapes`` labelled
rectangles (default 50: 100 elements with their bound text) on a fresh part of
the diagram, and the bench records

- **seen**: from just before the call to the peer holding every shape and label;
- **call**: from just before the call to its result (the agent's edit confirmed
  saved by the server: ``DiagramClient.confirm``).

Transports (``--transports``, default both):

- ``memory``: the MCP server in this process (the SDK's in-memory client), its
  DiagramClient a y-websocket peer of the server, as ``inkwire mcp`` on stdio is;
- ``http``: the SDK's streamable HTTP client against ``/mcp`` of the server itself
  (a stateful session), whose tools run inside the server process.

The first call of each transport opens the agent's client of the diagram (its
sync) and is not counted (``--warmup``). Reported: median, min and max in ms.

Then, unless ``--stall-rounds 0``: how long a big call over ``/mcp`` holds up
the server's other rooms. The diagram is grown to ``--stall-diagram``
elements (default 5 000), and while an agent creates ``--stall-shapes``
labelled rectangles (default 500: 1 000 elements) in it over ``/mcp``, a
client of *another* room does sync round trips back to back
(``DiagramClient.confirm``: each needs the server's event loop). Reported:
the longest round trip during each call (the loop's longest stall, give or
take a round trip), and the median round trip when nothing else runs.

Run
---
    .venv/bin/python bench/mcp_agent.py [--rounds 15] [--shapes 50] [--transports memory,http]
        [--stall-rounds 3] [--stall-diagram 5000] [--stall-shapes 500]

Everything is on 127.0.0.1; the server is stopped on exit, also on failure.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.types import Implementation

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agents import edits  # noqa: E402
from agents.elements import Clock  # noqa: E402
from agents.server import ServerOptions, build_server  # noqa: E402
from clients import DiagramClient  # noqa: E402

DIAGRAM = "bench-mcp"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@asynccontextmanager
async def inkwire_serve(db: Path) -> AsyncIterator[str]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = await anyio.open_process(
        [sys.executable, "-m", "collab.cli", "serve", "--port", str(port), "--db", str(db)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        with anyio.fail_after(20):
            async with httpx.AsyncClient() as http:
                while True:
                    try:
                        if (await http.get(f"{url}/health/ready")).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.05)
        yield url
    finally:
        process.terminate()
        with anyio.move_on_after(10, shield=True) as waited:
            await process.wait()
        if waited.cancelled_caught:
            process.kill()
            with anyio.move_on_after(5, shield=True):
                await process.wait()


@asynccontextmanager
async def agent(transport: str, url: str) -> AsyncIterator[Client]:
    info = Implementation(name="bench-agent", version="1.0")
    if transport == "memory":
        async with Client(build_server(ServerOptions(server=url)), client_info=info) as client:
            yield client
    else:
        async with httpx2.AsyncClient(timeout=60) as http:
            streams = streamable_http_client(f"{url}/mcp", http_client=http)
            async with Client(streams, client_info=info, mode="legacy") as client:
                yield client


def shapes(round_no: int, count: int, tag: str) -> list[dict[str, Any]]:
    return [
        {
            "type": "rectangle",
            "id": f"{tag}-{round_no}-{i}",
            "x": (i % 10) * 200,
            "y": round_no * 1500 + (i // 10) * 120,
            "label": f"step {i} of round {round_no}",
        }
        for i in range(count)
    ]


async def one_round(
    client: Client, peer: DiagramClient, specs: list[dict[str, Any]]
) -> tuple[float, float]:
    ids = [spec["id"] for spec in specs]
    seen_at: list[float] = []

    def complete(_: Any) -> None:
        if seen_at:
            return
        for eid in ids:
            shape = peer.elements.get(eid)
            if not isinstance(shape, dict):
                return
            labels = [b["id"] for b in shape.get("boundElements") or [] if b["type"] == "text"]
            if not labels or not isinstance(peer.elements.get(labels[0]), dict):
                return
        seen_at.append(time.perf_counter())

    subscription = peer.elements.observe(complete)
    try:
        start = time.perf_counter()
        result = await client.call_tool("create_elements", {"diagram": DIAGRAM, "elements": specs})
        returned = time.perf_counter()
        if result.is_error:
            raise RuntimeError(f"create_elements failed: {result.content}")
        await peer.wait_for(lambda _: bool(seen_at), timeout=30)
    finally:
        peer.elements.unobserve(subscription)
    return (seen_at[0] - start) * 1000, (returned - start) * 1000


async def bench(
    transport: str, url: str, peer: DiagramClient, rounds: int, warmup: int, count: int
) -> dict[str, list[float]]:
    seen: list[float] = []
    calls: list[float] = []
    async with agent(transport, url) as client:
        for n in range(warmup + rounds):
            seen_ms, call_ms = await one_round(client, peer, shapes(n, count, transport))
            if n >= warmup:
                seen.append(seen_ms)
                calls.append(call_ms)
    return {"seen": seen, "call": calls}


async def grow(peer: DiagramClient, size: int) -> None:
    """Add labelled rectangles (far from the rounds' shapes) until the diagram has ``size``."""
    while (have := len(peer.elements)) < size:
        count = max(1, min(500, (size - have) // 2))
        current = {k: dict(v) for k, v in peer.elements.items() if isinstance(v, dict)}
        specs = [
            {"type": "rectangle", "x": (i % 50) * 200, "y": -50_000 - have * 10 - i * 100}
            | {"label": f"filler {have + i}"}
            for i in range(count)
        ]
        edit = edits.create_elements(current, specs, Clock())
        with peer.doc.transaction():
            for element_id, element in edit.changed.items():
                peer.elements[element_id] = element
        await peer.confirm(60)


async def stall(url: str, peer: DiagramClient, rounds: int, count: int) -> dict[str, list[float]]:
    """The longest sync round trip of another room while a big /mcp call runs."""
    worst: list[float] = []
    idle: list[float] = []
    ws = f"{url.replace('http', 'ws', 1)}/yjs"
    async with DiagramClient(ws, "bench-probe") as probe, agent("http", url) as client:
        for _ in range(20):
            start = time.perf_counter()
            await probe.confirm(30)
            idle.append((time.perf_counter() - start) * 1000)
        await client.call_tool("describe_diagram", {"diagram": DIAGRAM})  # joins the room
        for n in range(rounds):
            trips: list[float] = []
            done = anyio.Event()

            async def probing(trips: list[float] = trips, done: anyio.Event = done) -> None:
                while not done.is_set():
                    start = time.perf_counter()
                    await probe.confirm(30)
                    trips.append((time.perf_counter() - start) * 1000)

            async with anyio.create_task_group() as tg:
                tg.start_soon(probing)
                await anyio.sleep(0.05)
                result = await client.call_tool(
                    "create_elements",
                    {"diagram": DIAGRAM, "elements": shapes(100 + n, count, "stall")},
                )
                done.set()
            if result.is_error:
                raise RuntimeError(f"create_elements failed: {result.content}")
            worst.append(max(trips))
    return {"worst": worst, "idle": idle}


def summary(values: list[float]) -> str:
    return (
        f"median {statistics.median(values):7.1f} ms   "
        f"min {min(values):7.1f}   max {max(values):7.1f}   (n={len(values)})"
    )


async def main(args: argparse.Namespace) -> None:
    results: dict[str, dict[str, list[float]]] = {}
    stalls: dict[str, list[float]] = {}
    size = 0
    with tempfile.TemporaryDirectory() as tmp:
        async with (
            inkwire_serve(Path(tmp) / "bench.db") as url,
            DiagramClient(f"{url.replace('http', 'ws', 1)}/yjs", DIAGRAM) as peer,
        ):
            peer.add_element({"id": "origin", "type": "rectangle", "x": 0, "y": -200})
            await peer.confirm()
            for transport in args.transports.split(","):
                results[transport] = await bench(
                    transport, url, peer, args.rounds, args.warmup, args.shapes
                )
            if args.stall_rounds:
                await grow(peer, args.stall_diagram)
                size = len(peer.elements)
                stalls = await stall(url, peer, args.stall_rounds, args.stall_shapes)
    print(
        f"create_elements of {args.shapes} labelled rectangles ({2 * args.shapes} elements) "
        "to their appearance in a connected peer, inkwire serve with SQLite on 127.0.0.1"
    )
    for transport, found in results.items():
        print(f"  {transport:6} seen  {summary(found['seen'])}")
        print(f"  {transport:6} call  {summary(found['call'])}")
    if args.stall_rounds:
        print(
            f"another room's longest sync round trip while /mcp creates {args.stall_shapes} "
            f"labelled rectangles ({2 * args.stall_shapes} elements) in a diagram of {size}"
        )
        print(f"  during the call  {summary(stalls['worst'])}")
        print(f"  idle round trip  {summary(stalls['idle'])}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--shapes", type=int, default=50)
    parser.add_argument("--transports", default="memory,http")
    parser.add_argument("--stall-rounds", type=int, default=3)
    parser.add_argument("--stall-diagram", type=int, default=5000)
    parser.add_argument("--stall-shapes", type=int, default=500)
    anyio.run(main, parser.parse_args())
