"""Embedding a relay (asyncio and trio), the standalone CLI, Hypothesis frames, slow consumers."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
from anyio.from_thread import start_blocking_portal
from httpx_ws import aconnect_ws
from hypercorn.asyncio import serve as hypercorn_asyncio_serve
from hypercorn.trio import serve as hypercorn_trio_serve
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection as SyncConnection
from websockets.sync.client import connect as sync_connect

import relays
from net.hosting import hypercorn_config
from relays.catalogs import BY_NAME, SERVICES
from relays.hub import HubSettings
from relays.serve import wait_listening
from tests.conftest import ROOT, free_port
from tests.relayclient import TIMEOUT, client, relay

dhruva = BY_NAME["dhruva"]


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_embedded_relay_under_asyncio_and_trio(anyio_backend: str) -> None:
    """A service's own loop runs the relay; its clients (httpx-ws: either loop) get events."""
    port = free_port()
    async with relays.serve(BY_NAME["fastblocks"], "127.0.0.1", port) as relay_:

        @relay_.handle("trigger_render")
        async def trigger_render(data: dict[str, Any]) -> dict[str, Any]:
            await anyio.lowlevel.checkpoint()
            return {"rendering": data["component_id"]}

        async with httpx.AsyncClient() as http, aconnect_ws(relay_.url, http) as ws:
            with anyio.fail_after(TIMEOUT):
                welcome = json.loads(await ws.receive_text())
                assert welcome["event"] == "session.created"
                await ws.send_json(
                    {
                        "type": "request",
                        "event": "subscribe",
                        "data": {"channel": "page:p1"},
                        "id": 1,
                    }
                )
                assert json.loads(await ws.receive_text())["correlation_id"] == 1
                await relay_.broadcast.page_rendered("p1", 12.5, 3)
                event = json.loads(await ws.receive_text())
                assert event["event"] == "page.rendered" and event["room"] == "page:p1"
                await ws.send_json(
                    {
                        "type": "request",
                        "event": "trigger_render",
                        "data": {"component_id": "c"},
                        "id": 2,
                    }
                )
                assert json.loads(await ws.receive_text())["data"] == {"rendering": "c"}


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_relay_whose_lifespan_nobody_runs_still_serves(anyio_backend: str) -> None:
    """Mounted where no lifespan event reaches it, a connection runs its writer in a task
    group of its own (net.connection): replies and events still arrive, in order."""
    app = relays.RelayApp(dhruva)

    async def host(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":  # the host's own, never forwarded to the relay
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
        else:
            await app(scope, receive, send)

    port = free_port()
    config = hypercorn_config(app, "127.0.0.1", port)
    serve = hypercorn_trio_serve if anyio_backend == "trio" else hypercorn_asyncio_serve
    stop = anyio.Event()
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(serve, host, config, shutdown_trigger=stop.wait))
        await wait_listening("127.0.0.1", port)
        async with httpx.AsyncClient() as http, aconnect_ws(f"ws://127.0.0.1:{port}/", http) as ws:
            with anyio.fail_after(TIMEOUT):
                assert json.loads(await ws.receive_text())["event"] == "session.created"
                request = {"type": "request", "event": "subscribe", "id": 1}
                await ws.send_json({**request, "data": {"channel": "registry"}})
                assert json.loads(await ws.receive_text())["correlation_id"] == 1
                app.publish("registry.updated", {"version": "v1"})
                assert json.loads(await ws.receive_text())["event"] == "registry.updated"
        stop.set()


# --- Hypothesis: arbitrary frames get one error each, the connection stays usable ----------


@pytest.fixture(scope="module")
def portal_relay() -> Iterator[relays.Relay]:
    with start_blocking_portal() as portal:
        settings_ = relays.RelaySettings(max_message_size=1 << 16)
        cm = relays.serve(dhruva, "127.0.0.1", free_port(), settings=settings_)
        with portal.wrap_async_context_manager(cm) as running:
            yield running


@pytest.fixture(scope="module")
def sync_ws(portal_relay: relays.Relay) -> Iterator[SyncConnection]:
    with sync_connect(portal_relay.url, open_timeout=TIMEOUT) as ws:
        assert json.loads(ws.recv(timeout=TIMEOUT))["event"] == "session.created"
        yield ws


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=10,
)
envelopes = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["request", "ping", "pong", "event", "response", "x"])
        | json_values,
        "event": st.sampled_from(
            ["subscribe", "unsubscribe", "list_adapters", "get_adapter_status"]
        )
        | json_values,
        "data": st.fixed_dictionaries(
            {}, optional={"channel": st.text() | json_values, "since": json_values}
        )
        | json_values,
        "id": json_values,
        "correlation_id": json_values,
    },
)
frames = st.text(max_size=200) | envelopes.map(json.dumps) | json_values.map(json.dumps)


@pytest.mark.slow  # Hypothesis, many examples over sockets
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(frame=frames)
def test_arbitrary_frames_get_a_reply_or_nothing_and_never_break_the_connection(
    sync_ws: SyncConnection, frame: str
) -> None:
    sync_ws.send(frame)
    sync_ws.send(json.dumps({"type": "ping", "id": "probe"}))
    while True:  # whatever the frame caused, the probe's pong comes after it
        message = json.loads(sync_ws.recv(timeout=TIMEOUT))
        assert message["type"] in ("response", "error", "pong"), message
        if message["type"] == "error":
            assert message["error_code"] != "INTERNAL_ERROR", (frame, message)
        if message["type"] == "pong" and message["correlation_id"] == "probe":
            break


# --- slow consumers ------------------------------------------------------------------------


def stuck_socket(port: int) -> socket.socket:
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    sock.setblocking(False)
    return sock


@pytest.mark.anyio
async def test_a_client_that_stops_reading_is_closed_with_4009_and_others_get_everything() -> None:
    from websockets.asyncio.client import connect

    hub = HubSettings(max_lag=1000, max_lag_bytes=4 << 20)
    async with relay(dhruva, hub=hub) as running, client(running.url) as healthy:
        async with connect(
            running.url, sock=stuck_socket(running.port), max_queue=1, max_size=None
        ) as stuck:
            await stuck.recv()  # the welcome
            await stuck.send(
                json.dumps(
                    {"type": "request", "event": "subscribe", "data": {"channel": "registry"}}
                )
            )
            await healthy.reply(await healthy.subscribe("registry"))
            await anyio.sleep(0.1)
            big = ["x" * 2000]
            for i in range(5000):
                await running.broadcast.registry_updated(f"v{i}", {"added": big})
                if i % 50 == 0:
                    await anyio.sleep(0.001)  # the healthy reader shares this loop
            await healthy.events_count(5000)
            assert [e["offset"] for e in healthy.events] == list(range(1, 5001))
            with anyio.fail_after(30):
                try:
                    while True:
                        await stuck.recv()
                except ConnectionClosed:
                    pass
            assert stuck.close_code == 4009
        assert running.app.stats.slow_consumer_closes == 1
        assert healthy.ws.close_code is None


# --- inkwire relay all ---------------------------------------------------------------------


def _free_offset() -> int:
    """An offset that puts all six default ports on free loopback ports."""
    for _ in range(50):
        offset = free_port() % 20000 + 20000
        try:
            for catalog in SERVICES:
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", catalog.port + offset))
        except OSError:
            continue
        return offset
    raise RuntimeError("no free port range")


@pytest.mark.processes
def test_inkwire_relay_all_starts_six_relays(tmp_path: Any) -> None:
    offset = _free_offset()
    log = open(tmp_path / "relay.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "collab.cli", "relay", "all", "--port-offset", str(offset)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        for catalog in SERVICES:
            url = f"http://127.0.0.1:{catalog.port + offset}/health/ready"
            deadline = time.monotonic() + 15
            while True:
                assert process.poll() is None, (tmp_path / "relay.log").read_text()
                try:
                    body = httpx.get(url, timeout=1).json()
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "relay did not start"
                    time.sleep(0.05)
            assert body["service"] == catalog.service and body["status"] == "ready"
            with sync_connect(f"ws://127.0.0.1:{catalog.port + offset}/", open_timeout=5) as ws:
                assert json.loads(ws.recv(timeout=5))["data"]["server"] == catalog.service
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=10)
        log.close()
