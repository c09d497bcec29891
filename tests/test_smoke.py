import pytest

from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio


async def test_two_peers_sync(collab_server) -> None:
    url = collab_server.yjs_url + "/smoke"
    async with peer(url, 1) as a, peer(url, 2) as b:
        await a.send_set("e1", {"id": "e1", "x": 1})
        await wait_until(lambda: b.snapshot() == {"e1": {"id": "e1", "x": 1}})
        await b.send_set("e2", {"id": "e2", "x": 2})
        await wait_until(lambda: a.snapshot() == b.snapshot() and len(a.snapshot()) == 2)
