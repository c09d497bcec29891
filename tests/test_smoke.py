"""Both send paths: frames written to hypercorn's socket, and plain ASGI sends."""

import pytest

from clients import DiagramClient
from collab.app import CollabApp
from collab.config import Config
from tests.conftest import running
from tests.yclient import peer, wait_until


@pytest.mark.anyio
@pytest.mark.parametrize("compression", [None, "deflate"])
async def test_two_peers_sync_on_the_raw_path(collab_server, compression) -> None:
    """Under asyncio, frames go straight to the socket, uncompressed even with deflate."""
    url = collab_server.yjs_url + "/smoke"
    async with (
        peer(url, 1, compression=compression) as a,
        peer(url, 2, compression=compression) as b,
    ):
        await a.send_set("e1", {"id": "e1", "x": 1})
        await wait_until(lambda: b.snapshot() == {"e1": {"id": "e1", "x": 1}})
        await b.send_set("e2", {"id": "e2", "x": 2, "text": "y" * 70_000})  # 64-bit length
        await wait_until(lambda: a.snapshot() == b.snapshot() and len(a.snapshot()) == 2)
        await a.send_set("e3", {"id": "e3", "text": "z" * 300})  # 16-bit length
        await wait_until(lambda: "e3" in b.snapshot())
        assert {c.raw_path for c in collab_server.app.rooms.connections} == {True}


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_server_under_trio_uses_the_asgi_path(anyio_backend) -> None:
    app = CollabApp(config=Config(grace_period=0.1))
    async with running(app) as server:
        async with (
            DiagramClient(server.yjs_url, "trio") as a,
            DiagramClient(server.yjs_url, "trio") as b,
        ):
            a.add_element({"id": "r1", "type": "rectangle", "x": 1, "y": 2})
            await b.wait_for(lambda c: c.get_element("r1") is not None, timeout=5)
            assert {c.raw_path for c in app.rooms.connections} == {False}
