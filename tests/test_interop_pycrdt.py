"""Interop with pycrdt's stock client: ``pycrdt.Provider`` over httpx-ws.

pycrdt-websocket's client (``Provider`` + ``HttpxWebsocket``) has no awareness,
so these tests are about the document: edits flow both ways through our
server, between a Provider and a DiagramClient and between two Providers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from httpx_ws import aconnect_ws
from pycrdt import Doc, Map, Provider
from pycrdt.websocket.websocket import HttpxWebsocket

from clients import DiagramClient

pytestmark = pytest.mark.anyio


def room() -> str:
    return f"interop-{uuid.uuid4().hex[:10]}"


@asynccontextmanager
async def provider(url: str, name: str) -> AsyncIterator[Map[Any]]:
    """A synced stock Provider on ``url/name``; yields its ``elements`` map."""
    doc: Doc[Any] = Doc()
    elements: Map[Any] = doc.get("elements", type=Map)
    async with aconnect_ws(f"{url}/{name}") as ws, Provider(doc, HttpxWebsocket(ws, name)) as p:
        with anyio.fail_after(5):
            await p.synced.wait()
        yield elements


async def until(predicate: Callable[[], object]) -> None:
    # Provider has no change notification of its own: poll, bounded.
    with anyio.fail_after(5):
        while not predicate():
            await anyio.sleep(0.01)


async def test_provider_and_diagram_client_sync_both_ways(collab_server: Any) -> None:
    name = room()
    with anyio.fail_after(20):
        async with (
            DiagramClient(collab_server.yjs_url, name) as client,
            provider(collab_server.yjs_url, name) as elements,
        ):
            client.add_element({"id": "from-client", "type": "rectangle", "x": 1})
            await until(lambda: "from-client" in elements)
            assert elements["from-client"]["type"] == "rectangle"
            assert elements["from-client"]["version"] == 1

            elements["from-provider"] = {"id": "from-provider", "type": "text", "version": 1}
            seen = await client.wait_for(lambda c: c.get_element("from-provider"))
            assert seen["type"] == "text"

            client.delete_element("from-provider")
            await until(lambda: elements["from-provider"].get("isDeleted") is True)
            assert elements["from-provider"]["version"] == 2
            assert elements.to_py() == client.elements.to_py()


async def test_provider_joining_late_gets_the_client_state(collab_server: Any) -> None:
    name = room()
    with anyio.fail_after(20):
        async with DiagramClient(collab_server.yjs_url, name) as client:
            for i in range(20):
                client.add_element({"id": f"e{i}", "type": "line", "x": i})
            # Let the server have them before the provider asks.
            async with DiagramClient(collab_server.yjs_url, name) as probe:
                await probe.wait_for(lambda c: len(c.elements) == 20)
            async with provider(collab_server.yjs_url, name) as elements:
                assert len(elements) == 20
                assert elements.to_py() == client.elements.to_py()


async def test_two_providers_sync_through_our_server(collab_server: Any) -> None:
    name = room()
    with anyio.fail_after(20):
        async with (
            provider(collab_server.yjs_url, name) as one,
            provider(collab_server.yjs_url, name) as two,
        ):
            one["a"] = {"id": "a", "x": 1}
            await until(lambda: "a" in two)
            two["b"] = {"id": "b", "x": 2}
            await until(lambda: "b" in one)
            assert (
                one.to_py() == two.to_py() == {"a": {"id": "a", "x": 1}, "b": {"id": "b", "x": 2}}
            )
