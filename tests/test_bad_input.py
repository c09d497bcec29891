"""Hostile and malformed frames close only the sender; the room goes on untouched."""

from __future__ import annotations

import itertools

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Map
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from collab.config import Config
from collab.protocol import sync_step1, sync_update
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio

EXAMPLES = itertools.count()
BAD_FRAMES = {
    "truncated varuint": b"\x00\x00\xff",
    "truncated payload": b"\x00\x02\x05\x01\x02",
    "overlong varuint": b"\x00\x02" + b"\xff" * 12,
    "unknown message type": b"\x07\x00",
    "auth from a client": b"\x02\x00",
    "unknown sync type": b"\x00\x09\x00",
    "rejected update": sync_update(b"\x05\x00\x00\x00"),
    "bad state vector": sync_step1(b"\xff\xff"),
    "awareness not json": b"\x01\x06\x01\x05\x01\x02{x",
    "trailing bytes": sync_step1(b"\x00") + b"\x00",
    "empty frame": b"",
}


async def send_and_get_close(url: str, frame: bytes | str) -> tuple[int | None, str]:
    async with connect(url, max_size=None) as ws:
        await ws.send(frame)
        with anyio.fail_after(5):
            try:
                while True:
                    await ws.recv()
            except ConnectionClosed:
                pass
        return ws.close_code, ws.close_reason or ""


@pytest.mark.parametrize("name", sorted(BAD_FRAMES))
async def test_malformed_frame_closes_only_its_sender(collab_server, name) -> None:
    url = collab_server.yjs_url + "/hostile"
    stats = collab_server.app.stats
    async with peer(url, 1) as alice, peer(url, 2) as bob:
        await alice.send_set("a", {"id": "a", "v": 1})
        await wait_until(lambda: "a" in bob.snapshot())
        room = collab_server.app.rooms.rooms["hostile"]
        state_before = room.doc.get_state()
        rejected_before = sum(stats.rejected.values())

        code, reason = await send_and_get_close(url, BAD_FRAMES[name])

        assert code == 1007, (code, reason)
        assert reason.startswith("malformed message")
        assert room.doc.get_state() == state_before
        assert sum(stats.rejected.values()) == rejected_before + 1
        await alice.send_set("b", {"id": "b"})  # everyone else carries on
        await wait_until(lambda: "b" in bob.snapshot())
        assert alice.ws.close_code is None and bob.ws.close_code is None


async def test_text_frame_is_refused(collab_server) -> None:
    code, reason = await send_and_get_close(collab_server.yjs_url + "/t", "hello")
    assert code == 1003
    assert "text frames" in reason


async def test_a_client_still_sending_when_closed_gets_its_close(collab_server) -> None:
    # hundreds of frames queued behind the one that closes it: the server must
    # read them away to finish the closing handshake (close_timeout past the
    # test's bound, so the client cannot end it itself)
    url = collab_server.yjs_url + "/flood"
    async with connect(url, close_timeout=20) as ws:
        with anyio.fail_after(10):
            try:
                for _ in range(2000):
                    await ws.send("not binary")
                while True:
                    await ws.recv()
            except ConnectionClosed:
                pass
            await ws.wait_closed()
    assert ws.close_code == 1003


async def test_frame_over_the_default_limit_is_refused(collab_server) -> None:
    url = collab_server.yjs_url + "/big-frame"
    async with peer(url, 1) as alice:
        code, reason = await send_and_get_close(url, sync_update(b"\x00" * (16 << 20)))
        assert code == 1009
        assert "message over" in reason
        await alice.send_set("x", {"id": "x"})
        assert alice.ws.close_code is None
    assert collab_server.app.stats.rejected["too_big"] == 1


async def test_configured_size_limit(make_server) -> None:
    async with make_server(Config(max_message_size=1000)) as server:
        code, _ = await send_and_get_close(server.yjs_url + "/s", sync_update(b"\x00" * 1001))
        assert code == 1009


@pytest.mark.slow  # Hypothesis, many examples over sockets
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(frame=st.binary(max_size=64) | st.builds(lambda b: b"\x00\x02" + b, st.binary(max_size=64)))
async def test_garbage_never_hurts_the_room(collab_server, frame: bytes) -> None:
    url = collab_server.yjs_url + "/fuzz"
    async with peer(url, 1) as alice, peer(url, 2) as bob:
        await alice.send_set("anchor", {"id": "anchor"})
        await wait_until(lambda: "anchor" in bob.snapshot())
        room = collab_server.app.rooms.rooms["fuzz"]
        elements_before = dict(room.doc.get("elements", type=Map).items())
        async with connect(url, max_size=None) as ws:
            await ws.send(frame)
            await anyio.sleep(0.01)
        key = f"k{next(EXAMPLES)}"
        await alice.send_set(key, {"id": key})
        await wait_until(lambda: key in bob.snapshot())
        elements_after = dict(room.doc.get("elements", type=Map).items())
        assert elements_after == {**elements_before, key: {"id": key}}
        assert alice.ws.close_code is None and bob.ws.close_code is None
