"""Capacity: what an idle connection holds (no compression context, no keepalive task)."""

from __future__ import annotations

import json

import anyio
import pytest
from pycrdt import Doc
from websockets.asyncio.client import connect

from collab.protocol import sync_step1
from net.keepalive import Keepalives
from relays.catalogs import BY_NAME
from tests.relayclient import relay

pytestmark = pytest.mark.anyio


async def test_yjs_declines_permessage_deflate_and_still_syncs(make_server) -> None:
    async with make_server() as server:
        url = server.yjs_url + "/squeezed"
        async with connect(url, compression="deflate") as ws:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            await ws.send(sync_step1(Doc().get_state()))
            with anyio.fail_after(5):
                reply = await ws.recv()
            assert isinstance(reply, bytes) and reply[0] == 0  # a sync message


async def test_relay_declines_permessage_deflate_and_still_answers() -> None:
    async with relay(BY_NAME["dhruva"]) as running:
        async with connect(running.url, compression="deflate") as ws:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            with anyio.fail_after(5):
                welcome = json.loads(await ws.recv())
            assert welcome["event"] == "session.created"


class Line:
    """A connection as the keepalive timer sees it."""

    def __init__(self, last_sent: float = 0.0) -> None:
        self.last_sent = last_sent
        self.keepalives = 0

    def send_keepalive(self) -> None:
        self.keepalives += 1


def test_only_quiet_lines_get_a_keepalive_and_one_per_interval() -> None:
    now = [100.0]
    timer = Keepalives(10.0, clock=lambda: now[0])
    quiet, busy = Line(last_sent=85.0), Line(last_sent=99.0)
    timer._members = {quiet: None, busy: None}  # type: ignore[dict-item]  # check() alone
    assert timer.check() == 1
    assert (quiet.keepalives, busy.keepalives) == (1, 0)
    now[0] = 105.0  # the keepalive is still unsent (a stalled writer): no second one
    assert timer.check() == 0
    now[0] = 110.5
    assert timer.check() == 2  # a whole interval later both are quiet
    with pytest.raises(ValueError, match="positive"):
        Keepalives(0)


async def test_one_timer_moves_to_the_next_connection_when_its_host_ends() -> None:
    timer = Keepalives(0.05)
    first, second = Line(), Line()
    first_done = anyio.Event()

    async def connection(line: Line, done: anyio.Event) -> None:
        try:
            async with anyio.create_task_group() as tg:
                timer.add(line, tg)
                await done.wait()
                tg.cancel_scope.cancel()
        finally:
            timer.remove(line)

    async with anyio.create_task_group() as tg:
        tg.start_soon(connection, first, first_done)
        second_done = anyio.Event()
        tg.start_soon(connection, second, second_done)
        with anyio.fail_after(5):
            while first.keepalives < 1 or second.keepalives < 1:
                await anyio.sleep(0.01)
            first_done.set()  # the timer ran in first's task group: it must move on
            before = second.keepalives
            while second.keepalives < before + 2:
                await anyio.sleep(0.01)
        assert len(timer) == 1
        second_done.set()
    assert len(timer) == 0 and timer._host is None
