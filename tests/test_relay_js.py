"""The browser relay client (``clients/js/relay-client.js``) against a real relay, in Node.

Two Node scripts in ``tests/interop``:

- ``relay_client.mjs`` runs our client with the ``ws`` package's WebSocket and
  is scripted over stdin/stdout, one JSON command per line (see its header);
- ``relay_compat.mjs`` is a browser-style client written without our library,
  the way the services' existing JS clients are: read the welcome, subscribe
  without waiting, dispatch the messages whose ``type`` is ``"event"``.

The relay is the real one (``relays.serve`` on a free port, in this test's
loop). The Node packages are pinned in ``tests/interop/package.json``
(``make test`` or ``cd tests/interop && npm ci``). Without ``node`` or them
these tests skip, except under CI (``CI`` set), where they fail.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import AsyncIterator, Awaitable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest

import relays
from relays.auth import make_token
from relays.catalogs import BY_NAME
from tests.conftest import free_port
from tests.node import INTEROP_DIR, NodeScript, require_node

pytestmark = pytest.mark.anyio

CLIENT_SCRIPT = INTEROP_DIR / "relay_client.mjs"
COMPAT_SCRIPT = INTEROP_DIR / "relay_compat.mjs"
LIMIT_S = 15.0  # any one exchange with a Node process
FAST_BACKOFF = {"initial": 50, "max": 400, "factor": 2, "jitter": 0.5}

dhruva = BY_NAME["dhruva"]


@pytest.fixture(autouse=True)
def _require_node() -> None:
    require_node("JS relay client tests", ("ws",))


class JsClient(NodeScript):
    """``relay_client.mjs``: our JS RelayClient in a Node process, driven by JSON lines."""

    margin_s = LIMIT_S

    async def connect(self, url: str, **kw: Any) -> dict[str, Any]:
        return await self.request("connect", url=url, **{"backoff": FAST_BACKOFF, **kw})

    async def subscribe(self, channel: str) -> dict[str, Any]:
        reply = await self.request("subscribe", channel=channel)
        assert reply["ok"], reply
        data: dict[str, Any] = reply["data"]
        return data

    async def events(self, count: int, timeout_ms: int = 5000) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = (
            await self.request("wait_events", count=count, timeout_ms=timeout_ms)
        )["events"]
        return events

    async def state(self) -> dict[str, Any]:
        return await self.request("state")


def js_client() -> AbstractAsyncContextManager[JsClient]:
    return JsClient.spawn(CLIENT_SCRIPT, "relay_client.mjs")


@asynccontextmanager
async def relay_on(port: int, app: relays.RelayApp | None = None) -> AsyncIterator[relays.Relay]:
    """A dhruva relay on ``port``; pass ``app`` to serve the same hub (history) again."""
    async with relays.serve(dhruva, "127.0.0.1", port, app=app) as running:
        yield running


async def subscribers_of(running: relays.Relay, channel: str, count: int = 1) -> None:
    """Wait until ``count`` connections follow ``channel`` (seen from the relay's side)."""
    with anyio.fail_after(LIMIT_S):
        while running.hub.followers(channel) < count:
            await anyio.sleep(0.01)


async def closed(js: JsClient, count: int = 1) -> None:
    """Wait until the JS client has seen ``count`` closes (so it knows it is disconnected)."""
    with anyio.fail_after(LIMIT_S):
        while len((await js.state())["closes"]) < count:
            await anyio.sleep(0.02)


async def _into(target: dict[str, Any], awaitable: Awaitable[dict[str, Any]]) -> None:
    target.update(await awaitable)


# --- our client ---------------------------------------------------------------------


async def test_connect_request_subscribe_and_receive() -> None:
    async with relay_on(free_port()) as running, js_client() as js:
        hello = await js.connect(running.url)
        assert hello["welcome"]["server"] == "dhruva"
        assert hello["protocol"] == ""  # no batching unless asked

        answer = await js.subscribe("adapter:a1")
        assert answer["channel"] == "adapter:a1" and answer["subscribed"] is True

        await running.broadcast.adapter_activated("a1", "org/repo", {"version": "1.2"})
        [event] = await js.events(1)
        assert event["type"] == "event" and event["event"] == "adapter.activated"
        assert event["room"] == "adapter:a1" and event["offset"] == 1
        assert event["data"]["adapter_id"] == "a1" and event["data"]["version"] == "1.2"

        # requests answer from the projection the event fed
        status = await js.request("request", event="get_adapter_status", data={"adapter_id": "a1"})
        assert status["ok"], status
        assert status["data"] == running.hub.projection.answer(
            "get_adapter_status", {"adapter_id": "a1"}
        )

        # error replies reject with the relay's code, and the connection stays usable
        missing = await js.request("request", event="get_adapter_status", data={"adapter_id": "zz"})
        assert missing["ok"] is False and missing["code"] == "NOT_FOUND"
        unknown = await js.request("request", event="no_such_request", data={})
        assert unknown["ok"] is False and unknown["code"] == "UNKNOWN_REQUEST"
        bad = await js.request("subscribe", channel="")
        assert bad["ok"] is False and bad["code"] == "INVALID_CHANNEL"

        # async iteration sees the events that arrive after it starts, in order
        result: dict[str, Any] = {}

        async def iterate() -> None:
            result.update(await js.request("iterate", count=2, timeout_ms=5000))

        async with anyio.create_task_group() as tg:
            tg.start_soon(iterate)
            await anyio.sleep(0.2)  # the loop has started
            await running.broadcast.adapter_activated("a1", "org/repo", {"version": "1.3"})
            await running.broadcast.adapter_deactivated("a1", "org/repo", "retired")
        assert [e["event"] for e in result["events"]] == [
            "adapter.activated",
            "adapter.deactivated",
        ]
        assert [e["offset"] for e in result["events"]] == [2, 3]

        # after unsubscribing, nothing more arrives
        assert (await js.request("unsubscribe", channel="adapter:a1"))["ok"]
        await running.broadcast.adapter_activated("a1", "org/repo", {"version": "1.4"})
        await js.request("request", event="list_adapters", data={})  # a round trip after it
        assert len((await js.state())["events"]) == 3


async def test_reconnects_after_relay_restart_and_recovers_missed_events() -> None:
    port = free_port()
    app = relays.RelayApp(dhruva)
    async with js_client() as js:
        async with relay_on(port, app) as running:
            await js.connect(running.url)
            await js.subscribe("adapter:a1")
            await running.broadcast.adapter_activated("a1", "r", {"version": "0"})
            await js.events(1)
        # the relay is down (the client was closed with 1001 and is retrying);
        # the service keeps publishing into the same hub meanwhile
        for i in range(1, 51):
            await app.broadcast.adapter_activated("a1", "r", {"version": str(i)})
        await closed(js)
        async with anyio.create_task_group() as tg:
            # subscribing while away resolves once the client is back
            late: dict[str, Any] = {}
            tg.start_soon(lambda: _into(late, js.subscribe("lifecycle")))
            async with relay_on(port, app) as running:
                await js.request("wait_opens", count=2, timeout_ms=10_000)
                events = await js.events(51, timeout_ms=10_000)
                await subscribers_of(running, "lifecycle")
                # then live ones, here on both channels of adapter.deactivated
                await running.broadcast.adapter_deactivated("a1", "r", "done")
                events = await js.events(53)
        assert late["channel"] == "lifecycle" and late["subscribed"] is True
        mine = [e for e in events if e["room"] == "adapter:a1"]
        assert [e["offset"] for e in mine] == list(range(1, 53))
        assert [e["data"].get("version") for e in mine[:51]] == [str(i) for i in range(51)]
        assert mine[-1]["event"] == "adapter.deactivated"
        # the new subscription is live from now on: no lifecycle history replayed
        assert [e["event"] for e in events if e["room"] == "lifecycle"] == ["adapter.deactivated"]
        state = await js.state()
        assert state["gaps"] == []
        assert state["closes"][0]["code"] == 1001 and state["closes"][0]["willReconnect"]
        assert state["reconnecting"], "the client retried while the relay was down"


async def test_reconnects_after_server_closes_socket_batched() -> None:
    """The relay drops the connection; the replay after reconnecting comes batched."""
    async with relay_on(free_port()) as running, js_client() as js:
        # a slower first retry, so that the events below are published while it is away
        slow = {**FAST_BACKOFF, "initial": 600, "jitter": 0.2}
        hello = await js.connect(running.url, batch=True, backoff=slow)
        assert hello["protocol"] == "inkwire.batch"
        await js.subscribe("registry")
        await js.subscribe("lifecycle")
        await running.broadcast.registry_updated("v0", {})
        await js.events(1)

        for conn in list(running.app.connections):
            conn.fail(1012, "service restart")
        with anyio.fail_after(LIMIT_S):
            while running.app.connections:  # gone, so what follows can only come by replay
                await anyio.sleep(0.01)
        for i in range(1, 31):
            await running.broadcast.registry_updated(f"v{i}", {})
        await running.broadcast.lifecycle_changed("adapter", "a1", "idle", "active")

        await js.request("wait_opens", count=2, timeout_ms=10_000)
        events = await js.events(32, timeout_ms=10_000)
        registry = [e for e in events if e["room"] == "registry"]
        assert [e["data"]["version"] for e in registry] == [f"v{i}" for i in range(31)]
        assert [e["offset"] for e in registry] == list(range(1, 32))
        assert [e["room"] for e in events if e["room"] != "registry"] == ["lifecycle"]
        state = await js.state()
        assert state["gaps"] == [] and state["closes"][0]["code"] == 1012
        assert state["batchedFrames"] >= 1, "the replay came as several messages per frame"
        # two welcomes, four subscribe answers, the first event, one replay frame per channel
        assert state["frames"] <= 2 + 4 + 1 + 2


async def test_backoff_grows_while_every_connection_is_dropped_at_once() -> None:
    """Connections that do not last count as failures: the delays grow instead of
    the client hammering a relay that welcomes and drops it in a loop."""
    async with relay_on(free_port()) as running, js_client() as js:
        await js.connect(running.url)
        await js.subscribe("registry")
        with anyio.move_on_after(1.5):
            while True:
                for conn in list(running.app.connections):
                    conn.fail(1011, "going wrong")
                await anyio.sleep(0.005)
        state = await js.state()
        attempts = [r["attempt"] for r in state["reconnecting"]]
        assert attempts == list(range(1, len(attempts) + 1)) and len(attempts) >= 4, attempts
        assert state["reconnecting"][3]["delay"] > state["reconnecting"][0]["delay"]
        # once the relay lets it stay, it is back and misses nothing
        await running.broadcast.registry_updated("v1", {})
        [event] = await js.events(1, timeout_ms=10_000)
        assert event["data"]["version"] == "v1"


async def test_recovers_across_a_new_relay_on_the_same_sqlite_history(tmp_path: Path) -> None:
    """A restarted relay (a new RelayApp, as a new process would be) on the same --db."""
    port = free_port()
    settings = relays.RelaySettings(history_db=str(tmp_path / "relay.db"))
    async with js_client() as js:
        async with relay_on(port, relays.RelayApp(dhruva, settings)) as running:
            await js.connect(running.url)
            await js.subscribe("registry")
            await running.broadcast.registry_updated("before", {})
            await js.events(1)
        app = relays.RelayApp(dhruva, settings)
        for i in range(100):
            await app.broadcast.registry_updated(f"missed-{i}", {})
        async with relay_on(port, app):
            events = await js.events(101, timeout_ms=10_000)
        assert [e["data"]["version"] for e in events[1:]] == [f"missed-{i}" for i in range(100)]
        assert [e["offset"] for e in events] == list(range(1, 102))
        assert (await js.state())["gaps"] == []


async def test_token_is_sent_and_a_refused_one_is_reported() -> None:
    secret = "test-secret-of-at-least-32-bytes!!"
    app = relays.RelayApp(dhruva, relays.RelaySettings(auth_secret=secret))
    async with relay_on(free_port(), app) as running:
        async with js_client() as js:
            token = make_token(secret, channels=["registry"])
            hello = await js.connect(running.url, token=token)
            assert hello["welcome"]["authenticated"] is True
            assert (await js.request("subscribe", channel="registry"))["ok"]
            forbidden = await js.request("subscribe", channel="adapter:a1")
            assert forbidden["ok"] is False and forbidden["code"] == "FORBIDDEN"
        async with js_client() as js:
            refused = await js.connect(running.url, token="not-a-token")
            assert refused["ok"] is False and refused["closeCode"] == 4001, refused


async def test_reports_gap_when_relay_restarts_without_history() -> None:
    port = free_port()
    async with js_client() as js:
        async with relay_on(port) as running:
            await js.connect(running.url)
            await js.subscribe("registry")
            await running.broadcast.registry_updated("v1", {})
            [first] = await js.events(1)
        async with relay_on(port) as running:  # a new hub: new epoch, no history
            await js.request("wait_opens", count=2, timeout_ms=10_000)
            await subscribers_of(running, "registry")
            state = await js.state()
            [gap] = state["gaps"]
            assert gap["channel"] == "registry"
            assert gap["since"] == {"offset": 1, "epoch": first["epoch"]}
            assert gap["epoch"] == running.hub.epoch != first["epoch"]
            # live again from the new relay's numbering
            await running.broadcast.registry_updated("v2", {})
            events = await js.events(2)
            assert events[1]["data"]["version"] == "v2" and events[1]["offset"] == 1


# --- a browser-style client without our library ---------------------------------------


async def test_browser_style_client_receives_adapter_activated() -> None:
    async with relay_on(free_port()) as running:
        process = await anyio.open_process(
            ["node", str(COMPAT_SCRIPT), running.url, "adapter:a1", "1", "10000"],
            stdout=subprocess.PIPE,
            stderr=None,  # inherited: pytest shows it with a failing test
            cwd=INTEROP_DIR,
        )
        out = b""
        try:
            await subscribers_of(running, "adapter:a1")
            await running.broadcast.adapter_activated("a1", "org/repo", {"version": "1.2"})
            assert process.stdout is not None
            with anyio.fail_after(LIMIT_S):
                async for chunk in process.stdout:  # until the script exits
                    out += chunk
                await process.wait()
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.move_on_after(5):
                    await process.wait()
            await process.aclose()
        lines = [json.loads(line) for line in out.decode().splitlines()]
        assert process.returncode == 0, lines
        welcome, activated = lines
        assert welcome["welcome"]["type"] == "event"
        assert welcome["welcome"]["event"] == "session.created"
        assert activated["event"] == "adapter.activated" and activated["room"] == "adapter:a1"
        assert activated["data"]["adapter_id"] == "a1" and activated["data"]["version"] == "1.2"
