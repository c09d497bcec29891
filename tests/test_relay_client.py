"""clients.RelayClient against real relays on free ports, under asyncio and trio.

The reconnect tests cut the connection the ways it happens in practice: the
relay process restarting on the same port (here: the same RelayApp, so the
same hub and history, served again) and the relay closing one connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest

import relays
from clients import Event, Gap, RelayClient, RelayConnectionError, RelayError
from relays.app import RelayApp
from relays.catalogs import BY_NAME
from relays.hub import HubSettings
from tests.conftest import free_port

pytestmark = [pytest.mark.anyio, pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])]

dhruva = BY_NAME["dhruva"]
TIMEOUT = 10.0
FAST = (0.02, 0.2)  # reconnect backoff for tests


@asynccontextmanager
async def relay(
    app: RelayApp | None = None, port: int | None = None
) -> AsyncIterator[relays.Relay]:
    app = app or RelayApp(dhruva)
    async with relays.serve(dhruva, "127.0.0.1", port or free_port(), app=app) as running:
        yield running


async def take(client: RelayClient, n: int) -> list[Event | Gap]:
    """The next ``n`` items of the client's stream (bounded wait)."""
    items: list[Event | Gap] = []
    with anyio.fail_after(TIMEOUT):
        async for item in client:
            items.append(item)
            if len(items) == n:
                break
    return items


def versions(items: list[Event | Gap]) -> list[str]:
    return [item.data["version"] for item in items if isinstance(item, Event)]


async def test_welcome_and_request_response(anyio_backend: str) -> None:
    async with relay() as running, RelayClient(running.url) as client:
        assert client.session["server"] == "dhruva" and client.session["connection_id"]
        with pytest.raises(RelayError) as missing:
            await client.request("get_adapter_status", {"adapter_id": "a1"})
        assert missing.value.code == "NOT_FOUND"
        with pytest.raises(RelayError) as unknown:
            await client.request("no_such_request", {})
        assert unknown.value.code == "UNKNOWN_REQUEST"
        await running.broadcast.adapter_activated("a1", "repo", {"version": "2"})
        status: dict[str, Any] = await client.request("get_adapter_status", {"adapter_id": "a1"})
        assert status["status"] == "active" and status["data"]["version"] == "2"
        # requests in flight at once are matched to their replies by id
        async with anyio.create_task_group() as tg:
            results: dict[int, Any] = {}

            async def ask(i: int) -> None:
                results[i] = await client.request("list_adapters", {})

            for i in range(20):
                tg.start_soon(ask, i)
        assert len(results) == 20
        assert await client.ping() < TIMEOUT


async def test_subscribe_and_receive_broadcasts(anyio_backend: str) -> None:
    async with relay() as running, RelayClient(running.url) as client:
        await client.subscribe("adapter:a1")
        await client.subscribe("registry")
        with pytest.raises(RelayError) as bad:
            await client.subscribe("not a channel")
        assert bad.value.code == "INVALID_CHANNEL"
        assert set(client.channels) == {"adapter:a1", "registry"}
        await running.broadcast.adapter_activated("a1", "repo", {"version": "1"})
        await running.broadcast.adapter_activated("a2", "repo", {"version": "1"})  # not ours
        await running.broadcast.registry_updated("v1", {})
        first, second = await take(client, 2)
        assert isinstance(first, Event) and isinstance(second, Event)
        assert (first.event, first.room, first.offset) == ("adapter.activated", "adapter:a1", 1)
        assert first.data["adapter_id"] == "a1" and first.epoch == running.hub.epoch
        assert first.timestamp is not None and first.timestamp.endswith("+00:00")
        assert (second.event, second.room) == ("registry.updated", "registry")
        await client.unsubscribe("registry")
        await running.broadcast.registry_updated("v2", {})
        await running.broadcast.adapter_activated("a1", "repo", {"version": "2"})
        [third] = await take(client, 1)
        assert isinstance(third, Event) and third.room == "adapter:a1" and third.offset == 2


class Restartable:
    """One RelayApp (hub and history kept) served on one port, stopped and started at will."""

    def __init__(self, tg: anyio.abc.TaskGroup, app: RelayApp | None = None) -> None:
        self.tg = tg
        self.app = app or RelayApp(dhruva)
        self.port = free_port()
        self.url = f"ws://127.0.0.1:{self.port}/"
        self._stop = anyio.Event()
        self._stopped = anyio.Event()

    async def start(self) -> None:
        self._stop, self._stopped = anyio.Event(), anyio.Event()
        await self.tg.start(self._serve)

    async def stop(self) -> None:
        self._stop.set()
        with anyio.fail_after(TIMEOUT):
            await self._stopped.wait()

    async def _serve(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            async with relay(self.app, self.port):
                task_status.started()
                await self._stop.wait()
        finally:
            self._stopped.set()


async def test_reconnect_after_restart_delivers_missed_events_exactly_once(
    anyio_backend: str,
) -> None:
    """The relay goes away; 100 events are published meanwhile; all arrive once, then live."""
    async with anyio.create_task_group() as tg:
        server = Restartable(tg)
        await server.start()
        broadcast = server.app.broadcast
        async with RelayClient(server.url, backoff=FAST) as client:
            await client.subscribe("registry")
            for i in range(3):
                await broadcast.registry_updated(f"before-{i}", {})
            assert versions(await take(client, 3)) == [f"before-{i}" for i in range(3)]
            await server.stop()
            for i in range(100):
                await broadcast.registry_updated(f"missed-{i}", {})
            await server.start()
            items = await take(client, 100)
            assert all(isinstance(item, Event) for item in items)  # no Gap: nothing lost
            assert versions(items) == [f"missed-{i}" for i in range(100)]
            assert [item.offset for item in items if isinstance(item, Event)] == list(range(4, 104))
            await broadcast.registry_updated("live", {})
            assert versions(await take(client, 1)) == ["live"]
            assert client.connections == 2
            await server.stop()


async def test_cut_connections_while_publishing_lose_and_duplicate_nothing(
    anyio_backend: str,
) -> None:
    """The relay closes the client's connection again and again under a steady stream."""
    async with relay() as running, RelayClient(running.url, backoff=FAST) as client:
        await client.subscribe("registry")
        total = 300

        async def publish() -> None:
            for i in range(total):
                await running.broadcast.registry_updated(f"v{i}", {})
                if i % 50 == 25:
                    for conn in list(running.app.connections):
                        conn.fail(1012, "restarting")
                await anyio.sleep(0.001)

        async with anyio.create_task_group() as tg:
            tg.start_soon(publish)
            items = await take(client, total)
        assert versions(items) == [f"v{i}" for i in range(total)]
        assert client.connections > 3


async def test_loss_beyond_history_is_reported_as_a_gap(anyio_backend: str) -> None:
    app = RelayApp(dhruva, relays.RelaySettings(hub=HubSettings(history_size=50)))
    async with anyio.create_task_group() as tg:
        server = Restartable(tg, app)
        await server.start()
        async with RelayClient(server.url, backoff=FAST) as client:
            await client.subscribe("registry")
            await app.broadcast.registry_updated("seen", {})
            await take(client, 1)
            await server.stop()
            for i in range(100):
                await app.broadcast.registry_updated(f"missed-{i}", {})
            await server.start()
            [gap] = await take(client, 1)
            assert gap == Gap("registry", 1, app.hub.epoch, 101, app.hub.epoch)
            await app.broadcast.registry_updated("live", {})
            [live] = await take(client, 1)
            assert isinstance(live, Event) and live.data["version"] == "live"
            assert live.offset == 102
            assert client.channels["registry"] == (102, app.hub.epoch)
            await server.stop()


async def test_batching_is_negotiated_and_split(anyio_backend: str) -> None:
    async with relay() as running:
        for i in range(20):
            await running.broadcast.registry_updated(f"v{i}", {})
        async with RelayClient(running.url, batch=True) as client:
            assert [conn.batch for conn in running.app.connections] == [True]
            await client.subscribe("registry", since=(0, running.hub.epoch))
            items = await take(client, 20)  # the replay comes as one newline-delimited frame
            assert versions(items) == [f"v{i}" for i in range(20)]
            await running.broadcast.registry_updated("live", {})
            assert versions(await take(client, 1)) == ["live"]
            assert running.app.stats.frames_out < 10


async def test_without_reconnect_the_stream_ends_with_an_error(anyio_backend: str) -> None:
    async with anyio.create_task_group() as tg:
        server = Restartable(tg)
        await server.start()
        async with RelayClient(server.url, reconnect=False) as client:
            await client.subscribe("registry")
            await server.stop()
            with anyio.fail_after(TIMEOUT), pytest.raises(RelayConnectionError):
                async for _ in client:
                    pass
            with pytest.raises(RelayConnectionError):
                await client.request("list_adapters", {})


async def test_unreachable_relay_fails_fast(anyio_backend: str) -> None:
    with anyio.fail_after(TIMEOUT), pytest.raises(RelayConnectionError, match="cannot connect"):
        async with RelayClient(f"ws://127.0.0.1:{free_port()}/"):
            pass


async def test_requests_wait_out_a_reconnect(anyio_backend: str) -> None:
    """A request made while the relay is away is sent once it is back (within its timeout)."""
    async with anyio.create_task_group() as tg:
        server = Restartable(tg)
        await server.start()
        async with RelayClient(server.url, backoff=FAST) as client:
            await server.stop()
            with anyio.fail_after(TIMEOUT):
                while client.connected:
                    await anyio.sleep(0.01)
            async with anyio.create_task_group() as inner:
                inner.start_soon(server.start)
                assert await client.request("list_adapters", {}, timeout=TIMEOUT) is not None
            await server.stop()


async def test_a_consumer_that_reads_late_loses_nothing(anyio_backend: str) -> None:
    """The client's buffer is bounded: when it is full the client stops reading the socket
    (backpressure) instead of dropping events or growing; a reconnect, if the relay cuts it
    off as a slow consumer, replays from history. Either way every event arrives once."""
    settings = relays.RelaySettings(hub=HubSettings(max_lag=100, history_size=10_000))
    app = RelayApp(dhruva, settings)
    total = 2000
    async with relay(app) as running, RelayClient(running.url, backoff=FAST, buffer=10) as client:
        await client.subscribe("registry")
        for i in range(total):
            await running.broadcast.registry_updated(f"v{i}", {"added": ["x" * 200]})
            if i % 100 == 0:
                await anyio.sleep(0.001)  # let the writer fill the socket
        items = await take(client, total)
        assert versions(items) == [f"v{i}" for i in range(total)]


async def test_a_refused_connection_says_why(anyio_backend: str) -> None:
    async with relay() as running:
        with (
            anyio.fail_after(TIMEOUT),
            pytest.raises(RelayConnectionError, match="refused with HTTP 403"),
        ):
            async with RelayClient(running.url + "no/such/path"):
                pass


def test_backoff_grows_with_jitter_up_to_its_cap(anyio_backend: str) -> None:
    client = RelayClient("ws://127.0.0.1:1/", backoff=(0.1, 5.0))
    for attempts, nominal in [(0, 0.1), (1, 0.2), (3, 0.8), (10, 5.0), (1000, 5.0)]:
        delays = {client._delay(attempts) for _ in range(50)}
        assert all(nominal / 2 <= d <= nominal for d in delays)
        assert len(delays) > 1  # jittered: clients of a restarted relay do not come back at once


async def test_collab_diagram_events_reach_a_relay_client(
    anyio_backend: str, make_server: Any
) -> None:
    """The same client follows a diagram on collab's ``/events`` while a script edits it."""
    from clients import DiagramClient
    from relays.cli_clients import publish_url

    async with make_server() as server:
        events_url = f"ws://127.0.0.1:{server.port}/events"
        assert publish_url(events_url) == f"{server.http_url}/events/publish"
        async with RelayClient(events_url) as client:
            assert client.session["server"] == "excalidraw"
            await client.subscribe("diagram:plan")
            async with DiagramClient(server.yjs_url, "plan", user={"name": "bot"}) as diagram:
                diagram.add_element({"id": "box", "type": "rectangle", "x": 0, "y": 0})
                with anyio.fail_after(TIMEOUT):
                    async for item in client:
                        if isinstance(item, Event) and item.event == "element.added":
                            break
                assert isinstance(item, Event) and item.room == "diagram:plan"


async def test_token_is_sent_and_a_refused_one_ends_the_client(anyio_backend: str) -> None:
    from relays.auth import make_token

    secret = "test-secret-of-at-least-32-bytes!!"
    app = RelayApp(dhruva, relays.RelaySettings(auth_secret=secret))
    async with relay(app) as running:
        token = make_token(secret, channels=["registry"])
        async with RelayClient(running.url, token=token) as client:
            assert client.session["authenticated"] is True
            await client.subscribe("registry")
            with pytest.raises(RelayError) as forbidden:
                await client.subscribe("adapter:a1")
            assert forbidden.value.code == "FORBIDDEN"
            assert list(client.channels) == ["registry"]
        with anyio.fail_after(TIMEOUT), pytest.raises(RelayConnectionError, match="unauthorized"):
            async with RelayClient(running.url, token="not-a-token"):
                pass


async def test_recovery_across_a_real_restart_with_a_history_db(
    anyio_backend: str, tmp_path: Any
) -> None:
    """A new relay process (here: a new RelayApp) on the same SQLite history recovers too."""
    settings = relays.RelaySettings(history_db=str(tmp_path / "relay.db"))
    async with anyio.create_task_group() as tg:
        server = Restartable(tg, RelayApp(dhruva, settings))
        await server.start()
        async with RelayClient(server.url, backoff=FAST) as client:
            await client.subscribe("registry")
            await server.app.broadcast.registry_updated("before", {})
            await take(client, 1)
            await server.stop()
            server.app = RelayApp(dhruva, settings)  # the restarted relay
            for i in range(100):
                await server.app.broadcast.registry_updated(f"missed-{i}", {})
            await server.start()
            items = await take(client, 100)
            assert all(isinstance(item, Event) for item in items)
            assert versions(items) == [f"missed-{i}" for i in range(100)]
            await server.stop()
