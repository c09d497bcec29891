"""Capacity and fairness: what an idle connection holds; a flooder is slowed, then closed."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import json
import resource

import anyio
import anyio.abc
import pytest
from pycrdt import Doc
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from collab.config import Config
from collab.protocol import sync_step1
from net.asgi import Message, Receive, Send
from net.hosting import (
    APP_QUEUE,
    CLOSED_PER_FULL_GC,
    FULL_GC_EVERY,
    UPGRADE_SECONDS,
    accept_websocket,
    close_websocket,
    connection_closed,
    hypercorn_config,
    run_app,
    tune_gc,
)
from net.keepalive import Keepalives
from net.limits import Pacer, TimeSlice, message_queue
from relays.app import RelayApp
from relays.catalogs import BY_NAME
from tests.conftest import free_port
from tests.relayclient import relay
from tests.yclient import Peer, peer, wait_until

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


def test_pacer_never_touches_a_client_under_the_rate() -> None:
    pacer = Pacer(rate=100, burst=200)
    for i in range(10_000):  # 90 messages a second for 111 s
        assert pacer.take(i / 90) == 0.0


def test_pacer_slows_a_flood_then_gives_up_on_it() -> None:
    pacer = Pacer(rate=100, burst=200, patience=50)
    now = 0.0
    assert all(pacer.take(now) == 0.0 for _ in range(200))  # the burst passes at once
    waits = []
    while (wait := pacer.take(now)) is not None:
        assert wait > 0
        waits.append(wait)
        now += wait / 2  # a reader that waits only half: still flooding
    assert len(waits) == 50  # patience messages slowed, then close


def test_pacer_forgives_a_client_that_calmed_down() -> None:
    pacer = Pacer(rate=100, burst=200, patience=10)
    for _ in range(208):  # 8 of them wait
        assert pacer.take(0.0) is not None
    for _ in range(208):  # 8 more: together past the patience, but it refilled in between
        assert pacer.take(3.0) is not None


QUERY_AWARENESS = b"\x03"  # the cheapest valid y-websocket message


async def flood(target: Peer, stop: anyio.Event) -> int:
    """Send element updates as fast as the socket takes them, until closed or told to stop."""
    sent = 0
    with contextlib.suppress(ConnectionClosed):
        while not stop.is_set() and not target.closed.is_set():
            await target.send_set(f"f{sent % 50}", {"id": f"f{sent % 50}", "x": sent})
            sent += 1
    return sent


async def test_a_flooding_yjs_client_is_slowed_then_closed_with_4008(make_server) -> None:
    config = Config(grace_period=1.0, rate_limit=100, rate_burst=50)
    async with make_server(config) as server:
        async with peer(server.yjs_url + "/flooded", 1) as flooder:
            with anyio.fail_after(20):
                sent = await flood(flooder, anyio.Event())
                await flooder.closed.wait()
        stats = server.app.stats
        assert flooder.close_code == 4008
        assert flooder.close_reason == "rate limit exceeded: slow down"
        assert stats.rate_limited_waits >= 50  # slowed first: patience (the burst) messages
        assert stats.rejected["rate_limited"] == 1
        assert sent > 100


async def test_a_client_under_the_rate_is_never_slowed(make_server) -> None:
    config = Config(grace_period=1.0, rate_limit=200, rate_burst=100)
    async with make_server(config) as server:
        url = server.yjs_url + "/dragging"
        async with peer(url, 1) as drawer, peer(url, 2) as watcher:
            for i in range(150):  # a drag: one element moved 150 times, ~50 updates a second
                await drawer.send_set("r", {"id": "r", "x": i})
                await drawer.set_awareness({"pointer": {"x": i, "y": 0}})
                await anyio.sleep(0.02)
            await wait_until(lambda: watcher.snapshot().get("r", {}).get("x") == 149)
            assert not drawer.closed.is_set()
        assert server.app.stats.rate_limited_waits == 0
        assert server.app.stats.rejected["rate_limited"] == 0


async def test_a_quiet_diagram_keeps_its_updates_while_a_neighbour_floods(make_server) -> None:
    config = Config(grace_period=1.0, rate_limit=200, rate_burst=100)
    async with make_server(config) as server:
        quiet_url = server.yjs_url + "/quiet"
        stop = anyio.Event()
        closed_flooders = 0

        async def keep_flooding() -> None:  # closed with 4008, it comes straight back
            nonlocal closed_flooders
            while not stop.is_set():
                async with peer(server.yjs_url + "/noisy", 9) as flooder:
                    await flood(flooder, stop)
                    closed_flooders += flooder.close_code == 4008

        async with (
            peer(quiet_url, 1) as alice,
            peer(quiet_url, 2) as bob,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(keep_flooding)
            await wait_until(lambda: server.app.stats.rate_limited_waits > 0, timeout=20)
            for i in range(20):
                await alice.send_set(f"k{i}", {"id": f"k{i}"})
                await wait_until(lambda i=i: f"k{i}" in bob.snapshot(), timeout=10)
            await wait_until(lambda: closed_flooders >= 1, timeout=20)
            stop.set()
            assert not (alice.closed.is_set() or bob.closed.is_set())
        assert server.app.stats.rejected["rate_limited"] >= 1


def enough_files(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < needed:
        if hard != resource.RLIM_INFINITY and hard < needed:
            pytest.skip(f"needs {needed} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def dropped(stream: anyio.abc.SocketStream) -> bytes:
    """What the server sent until it closed the connection (waits for the close)."""
    received = b""
    with contextlib.suppress(anyio.EndOfStream, anyio.BrokenResourceError, OSError):
        while True:
            received += await stream.receive()
    return received


async def test_a_thousand_trickling_upgrades_are_dropped_and_block_nobody(make_server) -> None:
    enough_files(4096)
    async with make_server() as server:
        tricklers = []
        for _ in range(1000):  # each opens TCP and starts an upgrade it never finishes
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            await stream.send(b"GET /yjs/slow HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            tricklers.append(stream)

        async def trickle() -> None:  # a byte a second each: it must not extend the deadline
            while True:
                for stream in tricklers:
                    with contextlib.suppress(anyio.BrokenResourceError, OSError):
                        await stream.send(b"X")
                await anyio.sleep(1)

        async with anyio.create_task_group() as tg:
            tg.start_soon(trickle)
            # meanwhile someone else connects and syncs as usual
            async with peer(server.yjs_url + "/fine", 1) as fine:
                await fine.send_set("k", {"id": "k"})
                assert fine.synced.is_set() and not fine.closed.is_set()
            with anyio.fail_after(UPGRADE_SECONDS * 4 + 10):  # dropped, not held forever
                for stream in tricklers:
                    assert await dropped(stream) == b""  # no response: cut off
            tg.cancel_scope.cancel()
        for stream in tricklers:
            await stream.aclose()
        assert server.app.rooms.connections == set()


def client_frame(opcode: int, payload: bytes) -> bytes:
    mask = b"\x01\x02\x03\x04"
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


async def test_clients_that_never_answer_the_close_are_cut_off(make_server) -> None:
    enough_files(4096)
    config = Config(grace_period=1.0, close_timeout=1.0)
    async with make_server(config) as server:
        stuck = []
        key = base64.b64encode(b"0123456789abcdef")
        for i in range(200):  # 20 per diagram (a room takes 50)
            stream = await anyio.connect_tcp("127.0.0.1", server.port)
            await stream.send(
                b"GET /yjs/stuck%d HTTP/1.1"
                % (i // 20)
                + b"\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            stuck.append(stream)
        for stream in stuck:
            response = b""
            while b"\r\n\r\n" not in response:
                response += await stream.receive()
            assert response.startswith(b"HTTP/1.1 101")
            await stream.send(client_frame(0x1, b"text"))  # closed 1003 (the protocol is binary)
        async with peer(server.yjs_url + "/fine", 1) as fine:  # unaffected meanwhile
            assert fine.synced.is_set()
        with anyio.fail_after(20):
            for stream in stuck:
                received = await dropped(stream)  # we never answer the close frame
                assert b"\x88" in received  # the close frame came, then the TCP close
        for stream in stuck:
            await stream.aclose()


def test_a_reader_yields_once_its_handling_passes_the_budget() -> None:
    slice_ = TimeSlice(budget=0.005)
    assert [slice_.spent(0.002) for _ in range(5)] == [False, False, True, False, False]
    assert slice_.spent(0.010)  # one long message: yield right after it


def test_hypercorn_parses_a_bounded_run_of_frames_in_one_turn() -> None:
    """hypercorn parses a client's frames into the app queue in one turn of the loop
    until the queue is full: its size bounds that turn, whatever the app's time slice.
    At 128 a flooder's turn held the loop 2-3 ms (docs/capacity.md)."""
    config = hypercorn_config(RelayApp(BY_NAME["dhruva"]), "127.0.0.1", 0)
    assert config.max_app_queue_size == APP_QUEUE <= 32


def test_a_reader_holds_the_loop_for_at_most_a_millisecond_by_default() -> None:
    """A quiet diagram's update waits for whatever holds the loop when it arrives: with
    5 ms slices a flooder's burst kept the quiet p99 at ~12 ms (docs/capacity.md)."""
    slice_ = TimeSlice()
    assert not slice_.spent(0.0006)
    assert slice_.spent(0.0006)


class ClosesAFlooder:
    """A bare app on our hosting: accepts one WebSocket, reads its first message, then,
    once told, closes it as a flooder (4008) with close_websocket, counting what it
    had to drain before hypercorn reported the disconnect."""

    max_message_size = 1 << 16

    def __init__(self) -> None:
        self.close_now = anyio.Event()
        self.drained: int | None = None
        self.first_message = anyio.Event()
        self.closed = anyio.Event()

    def begin_shutdown(self) -> None:
        pass

    async def wait_all_closed(self) -> None:
        pass

    async def __call__(self, scope: Message, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        await receive()  # websocket.connect
        await accept_websocket(send)
        await receive()
        self.first_message.set()
        await self.close_now.wait()
        drained = 0

        async def counted() -> Message:
            nonlocal drained
            drained += 1
            return await receive()

        await close_websocket(counted, send, 4008, "rate limit exceeded", 5.0, flooding=True)
        self.drained = drained
        self.closed.set()


async def test_a_flooders_close_discards_what_hypercorn_read_ahead() -> None:
    """Closed with 4008, a flooder's socket is closed unread; what hypercorn had already
    read from it (wsproto's buffer and its stream reader's: ~3 400 requests here before
    this) is dropped too, not parsed 32 frames a turn on the way to the
    disconnect (~50 ms of CPU after each 4008, docs/capacity.md). Only what was
    queued for the app is drained."""
    app = ClosesAFlooder()
    port = free_port()
    stop = anyio.Event()
    request = json.dumps({"type": "request", "event": "get_adapter_status", "id": "f"})
    flood = client_frame(0x1, request.encode()) * 40_000  # ~4 MiB
    async with anyio.create_task_group() as tg:
        tg.start_soon(run_app, app, "127.0.0.1", port, stop.wait)
        with anyio.fail_after(20):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                    break
                except OSError:
                    await anyio.sleep(0.05)
            key = base64.b64encode(b"0123456789abcdef")
            await stream.send(
                b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Key: " + key + b"\r\n"
                b"Sec-WebSocket-Version: 13\r\n\r\n"
            )
            response = b""
            while b"\r\n\r\n" not in response:
                response += await stream.receive()
            assert response.startswith(b"HTTP/1.1 101")
            sent = anyio.Event()

            async def send_flood() -> None:  # until the server stops reading (or closes)
                with contextlib.suppress(anyio.BrokenResourceError, OSError):
                    await stream.send(flood[: 1 << 20])
                    sent.set()
                    await stream.send(flood[1 << 20 :])

            tg.start_soon(send_flood)
            await app.first_message.wait()
            await sent.wait()  # 1 MiB sent: hypercorn has had its fill of reading ahead
            await anyio.sleep(0.2)
            app.close_now.set()
            received = await dropped(stream)
            await app.closed.wait()
        assert b"\x88" in received  # the close frame came, then the TCP close
        assert app.drained is not None and app.drained <= APP_QUEUE + 2, (
            app.drained
        )  # the queue, hypercorn's one, the end
        await stream.aclose()
        stop.set()


async def test_a_reader_can_tell_a_receive_that_will_wait() -> None:
    """hypercorn's ``receive`` is its app queue's ``get``: a reader whose queue is empty
    knows the next ``receive()`` waits, so a new turn begins after it and the time
    slice counts from there (a joining client's first messages cost no extra turn)."""
    queue: asyncio.Queue[dict[str, str]] = asyncio.Queue(APP_QUEUE)
    assert message_queue(queue.get) is queue
    assert queue.qsize() == 0  # what the reader asks before its receive()
    queue.put_nowait({"type": "websocket.receive"})
    assert queue.qsize() == 1

    async def receive() -> dict[str, str]:  # another server's: it cannot tell
        return {}

    assert message_queue(receive) is None


def test_our_server_processes_run_full_collections_ten_times_rarer() -> None:
    """While connections pour in, CPython's default (a full pass considered after every 10
    young collections) walked every open connection's objects again and again: ~40 % of
    the server's CPU per accepted connection (docs/capacity.md)."""
    before = gc.get_threshold()
    try:
        tune_gc()
        assert gc.get_threshold() == (before[0], before[1], FULL_GC_EVERY)
        assert FULL_GC_EVERY == 10 * 10  # CPython's default: 10
        # ... but closed connections (cyclic garbage) still get a full pass per batch
        passes = gc.get_stats()[2]["collections"]
        for _ in range(CLOSED_PER_FULL_GC):
            connection_closed(still_open=10)
        assert gc.get_stats()[2]["collections"] > passes
    finally:
        gc.set_threshold(*before)
