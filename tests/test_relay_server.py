"""The relay over real sockets: hypercorn on free ports, JSON clients as existing ones are."""

from __future__ import annotations

import json
from contextlib import AsyncExitStack
from typing import Any

import anyio
import httpx
import pytest

import relays
from relays.catalog import Catalog
from relays.catalogs import ALL, BY_NAME
from relays.hub import HubSettings
from relays.protocol import BATCH_SUBPROTOCOL
from tests.relayclient import TIMEOUT, client, relay
from tests.test_relay_catalogs import sample_arguments, sample_params

pytestmark = pytest.mark.anyio

dhruva = BY_NAME["dhruva"]


async def test_existing_client_receives_adapter_activated() -> None:
    async with relay(dhruva) as running, client(running.url) as c:
        assert c.welcome["type"] == "event" and c.welcome["event"] == "session.created"
        assert c.welcome["data"]["server"] == "dhruva"
        sub = await c.subscribe("adapter:a1")
        reply = await c.reply(sub)
        assert reply["type"] == "response" and reply["data"]["subscribed"] is True
        await running.broadcast.adapter_activated("a1", "org/repo", {"version": "1.2"})
        [event] = await c.events_count(1)
        assert event["event"] == "adapter.activated" and event["room"] == "adapter:a1"
        assert event["data"]["adapter_id"] == "a1" and event["data"]["version"] == "1.2"
        assert event["offset"] == 1 and event["epoch"] == reply["data"]["epoch"]
        assert event["timestamp"].endswith("+00:00")


@pytest.mark.parametrize("catalog", ALL, ids=[c.service for c in ALL])
async def test_every_event_reaches_exactly_its_channels(catalog: Catalog) -> None:
    published = []
    for spec in catalog.events:
        _, channels = catalog.prepare(spec.name, _payload(catalog, spec))
        published.append((spec, channels))
    channels = sorted({ch for _, chs in published for ch in chs})
    async with relay(catalog) as running, AsyncExitStack() as stack:
        clients = {ch: await stack.enter_async_context(client(running.url)) for ch in channels}
        for ch, c in clients.items():
            await c.reply(await c.subscribe(ch))
        for spec, _ in published:
            await getattr(running.broadcast, spec.method.name)(**sample_arguments(spec))
        for ch, c in clients.items():
            expected = [spec.name for spec, chs in published if ch in chs]
            await c.events_count(len(expected))
            await anyio.sleep(0.05)  # nothing more arrives
            assert [e["event"] for e in c.events] == expected
            assert {e["room"] for e in c.events} == {ch}
            assert [e["offset"] for e in c.events] == list(range(1, len(expected) + 1))

        # requests answer from the projection the events fed
        asker = next(iter(clients.values()))
        for spec in catalog.requests:
            if not running.hub.projection.answers(spec.name):
                continue
            params = sample_params(catalog, spec.name)
            reply = await asker.reply(await asker.request(spec.name, params))
            assert reply["type"] == "response", reply
            assert reply["data"] == running.hub.projection.answer(spec.name, params)


def _payload(catalog: Catalog, spec: Any) -> dict[str, Any]:
    """The payload the broadcaster builds from the sample arguments."""
    seen: list[dict[str, Any]] = []
    broadcaster = relays.app.Broadcaster(catalog, lambda _e, _c, p: seen.append(p))
    getattr(broadcaster, spec.method.name)(**sample_arguments(spec))
    return seen[0]


async def test_request_answers_and_errors() -> None:
    async with relay(dhruva) as running, client(running.url) as c:
        await running.broadcast.adapter_activated("a1", "org/repo", {"version": "1"})
        reply = await c.reply(await c.request("get_adapter_status", {"adapter_id": "a1"}, "q1"))
        assert reply["correlation_id"] == "q1" and reply["data"]["status"] == "active"
        await c.send(
            {"type": "request", "event": "list_adapters", "id": "x", "correlation_id": "c-7"}
        )
        reply = await c.reply("c-7")
        assert [a["adapter_id"] for a in reply["data"]["adapters"]] == ["a1"]
        missing = await c.reply(await c.request("get_adapter_status", {"adapter_id": "zz"}))
        assert missing["type"] == "error" and missing["error_code"] == "NOT_FOUND"


async def test_embedding_service_handler_answers_its_requests() -> None:
    fastblocks = BY_NAME["fastblocks"]
    async with relay(fastblocks) as running, client(running.url) as c:
        calls: list[dict[str, Any]] = []

        @running.handle("trigger_render")
        async def trigger_render(data: dict[str, Any]) -> dict[str, Any]:
            calls.append(data)
            return {"queued": data["component_id"]}

        reply = await c.reply(await c.request("trigger_render", {"component_id": "btn"}))
        assert reply["type"] == "response" and reply["data"] == {"queued": "btn"}
        assert calls == [{"component_id": "btn"}]
        bad = await c.reply(await c.request("trigger_render", {}))
        assert bad["error_code"] == "INVALID_PAYLOAD" and len(calls) == 1

        @running.handle("register_component")
        async def broken(data: dict[str, Any]) -> dict[str, Any]:
            raise RuntimeError("secret internals")

        crash = await c.reply(await c.request("register_component", {"component_id": "b"}))
        assert crash["error_code"] == "INTERNAL_ERROR" and "secret" not in json.dumps(crash)


BAD_FRAMES: list[tuple[str, str]] = [
    ("not json", "BAD_REQUEST"),
    ("[1, 2]", "BAD_REQUEST"),
    ('"a string"', "BAD_REQUEST"),
    ('{"type": 5}', "BAD_REQUEST"),
    ('{"type": "request", "event": "subscribe", "data": 5, "id": "w"}', "BAD_REQUEST"),
    ('{"type": "request", "event": "subscribe", "id": []}', "BAD_REQUEST"),
    ('{"type": "telepathy"}', "BAD_REQUEST"),
    ('{"type": "event", "event": "adapter.activated"}', "BAD_REQUEST"),
    ('{"type": "request", "event": "no_such_thing", "id": 1}', "UNKNOWN_REQUEST"),
    ('{"type": "request", "event": "subscribe", "id": 2}', "INVALID_CHANNEL"),
    ('{"type": "request", "event": "subscribe", "data": {"channel": "nope:x"}}', "INVALID_CHANNEL"),
    (
        '{"type": "request", "event": "subscribe", "data": {"channel": "adapter:"}}',
        "INVALID_CHANNEL",
    ),
    ('{"type": "request", "event": "subscribe", "data": {"channel": 7}}', "INVALID_CHANNEL"),
    (
        '{"type": "request", "event": "subscribe", "data": {"channel": "registry", "since": 3}}',
        "INVALID_PAYLOAD",
    ),
    ('{"type": "request", "event": "get_adapter_status", "data": {}}', "INVALID_PAYLOAD"),
]


async def test_bad_input_gets_clear_errors_and_harms_nobody() -> None:
    async with (
        relay(dhruva, max_message_size=64 << 10) as running,
        client(running.url) as bystander,
        client(running.url) as attacker,
    ):
        await bystander.reply(await bystander.subscribe("registry"))
        for frame, code in BAD_FRAMES:
            before = len(attacker.others) + len(attacker.replies)
            await attacker.ws.send(frame)
            await attacker.wait(lambda b=before: len(attacker.others) + len(attacker.replies) > b)
            errors = [*attacker.others, *attacker.replies.values()]
            latest = max(errors, key=lambda m: m["timestamp"])
            assert latest["type"] == "error" and latest["error_code"] == code, (frame, latest)
            assert latest["error_message"] and "Traceback" not in latest["error_message"]
            attacker.others.clear()
            attacker.replies.clear()
        await attacker.ws.send(b"\x00binary")
        await attacker.wait(lambda: attacker.others)
        assert attacker.others[0]["error_code"] == "BAD_REQUEST"
        await attacker.send({"type": "ping", "id": "p1"})
        pong = await attacker.reply("p1")
        assert pong["type"] == "pong"

        await attacker.ws.send("x" * (65 << 10))  # over the limit: closed with 1009
        with anyio.fail_after(TIMEOUT):
            await attacker.ws.wait_closed()
        assert attacker.ws.close_code == 1009

        await running.broadcast.registry_updated("7", {"added": ["a"]})
        [event] = await bystander.events_count(1)
        assert event["data"]["version"] == "7"
        assert bystander.ws.close_code is None


async def test_a_quiet_connection_gets_pings_that_existing_clients_ignore() -> None:
    async with relay(dhruva, keepalive_interval=0.1) as running, client(running.url) as c:
        assert c.welcome["data"]["limits"]["keepalive_interval"] == 0.1
        await c.reply(await c.subscribe("registry"))
        await c.wait(lambda: len(c.others) >= 3)  # then it sends nothing, as existing clients do
        assert {m["type"] for m in c.others} == {"ping"}
        assert all(m["id"] and m["timestamp"].endswith("+00:00") for m in c.others)
        assert c.events == []  # dispatching type == "event" only, a client never sees them
        await c.send({"type": "pong", "correlation_id": c.others[0]["id"]})  # allowed, not needed
        await running.broadcast.registry_updated("9", {"added": ["c"]})
        [event] = await c.events_count(1)
        assert event["data"]["version"] == "9" and c.ws.close_code is None


async def test_subscriptions_per_connection_are_capped() -> None:
    # 10 000 requests at once: lift the rate limit, which is tested on its own
    async with relay(dhruva, rate_burst=100_000) as running, client(running.url) as c:
        cap = c.welcome["data"]["limits"]["max_subscriptions"]
        assert cap == HubSettings().max_subscriptions
        for i in range(10_000):
            await c.request("subscribe", {"channel": f"adapter:a{i}"}, i)
        await c.wait(lambda: len(c.replies) == 10_000, timeout=30)
        ok = [i for i, r in c.replies.items() if r["type"] == "response"]
        refused = {r["error_code"] for r in c.replies.values() if r["type"] == "error"}
        assert len(ok) == cap and refused == {"RATE_LIMITED"}
        await running.broadcast.adapter_activated("a5", "r", {"version": "1"})
        await c.events_count(1)
        assert c.ws.close_code is None


async def test_recovery_replays_exactly_what_was_missed_then_live() -> None:
    async with relay(dhruva) as running:
        async with client(running.url) as c:
            reply = await c.reply(await c.subscribe("registry"))
            epoch = reply["data"]["epoch"]
            for i in range(3):
                await running.broadcast.registry_updated(f"v{i}", {})
            events = await c.events_count(3)
            last = events[-1]["offset"]
        for i in range(100):
            await running.broadcast.registry_updated(f"missed-{i}", {})
        async with client(running.url) as c:
            reply = await c.reply(
                await c.subscribe("registry", since={"offset": last, "epoch": epoch})
            )
            assert reply["data"]["recovered"] is True
            events = await c.events_count(100)
            assert [e["data"]["version"] for e in events] == [f"missed-{i}" for i in range(100)]
            assert [e["offset"] for e in events] == list(range(last + 1, last + 101))
            await running.broadcast.registry_updated("live", {})
            events = await c.events_count(101)
            assert len(events) == 101 and events[-1]["data"]["version"] == "live"


async def test_recovery_beyond_history_says_so() -> None:
    async with relay(dhruva, hub=HubSettings(history_size=50)) as running:
        async with client(running.url) as c:
            epoch = (await c.reply(await c.subscribe("registry")))["data"]["epoch"]
        for i in range(100):
            await running.broadcast.registry_updated(f"v{i}", {})
        async with client(running.url) as c:
            reply = await c.reply(
                await c.subscribe("registry", since={"offset": 0, "epoch": epoch})
            )
            assert reply["data"]["recovered"] is False
            assert reply["data"]["offset"] == 100 and reply["data"]["epoch"] == epoch
            stale = await c.reply(
                await c.request(
                    "subscribe", {"channel": "registry", "since": {"offset": 1, "epoch": "old"}}
                )
            )
            assert stale["data"]["recovered"] is False
            await running.broadcast.registry_updated("live", {})
            [event] = await c.events_count(1)  # no partial replay: only the live one
            assert event["data"]["version"] == "live" and event["offset"] == 101


@pytest.mark.parametrize("how", ["subprotocol", "query"])
async def test_batching_is_opt_in(how: str) -> None:
    async with relay(dhruva) as running:
        for i in range(20):
            await running.broadcast.registry_updated(f"v{i}", {})
        epoch = running.hub.epoch
        url = running.url + ("?batch=1" if how == "query" else "")
        protocols = [BATCH_SUBPROTOCOL] if how == "subprotocol" else None
        async with client(url, subprotocols=protocols) as c:
            if how == "subprotocol":
                assert c.ws.subprotocol == BATCH_SUBPROTOCOL
            await c.subscribe("registry", since={"offset": 0, "epoch": epoch})
            events = await c.events_count(20)
            assert [e["offset"] for e in events] == list(range(1, 21))
            assert c.frames <= 3  # the welcome, the response, the replay in one frame
        async with client(running.url) as plain:
            await plain.subscribe("registry", since={"offset": 0, "epoch": epoch})
            await plain.events_count(20)
            assert plain.frames == 21  # one message per frame for clients that did not ask


async def test_http_publish() -> None:
    async with relay(dhruva) as running, client(running.url) as c:
        await c.reply(await c.subscribe("lifecycle"))
        async with httpx.AsyncClient(base_url=running.http_url, timeout=TIMEOUT) as http:
            one = {
                "event": "adapter.deactivated",
                "data": {"adapter_id": "a", "repo": "r", "reason": "x"},
            }
            response = await http.post("/publish", json=one)
            assert response.status_code == 202
            [result] = response.json()["published"]
            assert [o["channel"] for o in result["offsets"]] == ["adapter:a", "lifecycle"]
            assert all(o["offset"] == 1 for o in result["offsets"])
            response = await http.post("/publish", json=[one, one])
            assert response.status_code == 202 and len(response.json()["published"]) == 2
            missing = {"event": "adapter.deactivated", "data": {"adapter_id": "a", "repo": "r"}}
            response = await http.post("/publish", json=[one, missing])
            assert response.status_code == 422 and "reason" in response.json()["error"]
            response = await http.post("/publish", json={"event": "nope", "data": {}})
            assert response.status_code == 422
            response = await http.post("/publish", content=b"{not json")
            assert response.status_code == 400
            response = await http.post("/publish", json={"data": {}})
            assert response.status_code == 400
            assert (await http.get("/health/live")).status_code == 200
            assert (await http.get("/health/ready")).json()["connections"] == 1
            metrics = (await http.get("/metrics")).text
            assert 'inkwire_relay_events_published_total{service="dhruva"} 3.0' in metrics
        events = await c.events_count(3)
        assert len(events) == 3  # the refused batch published nothing


async def test_publish_request_over_the_websocket() -> None:
    """``publish`` is POST /publish over the connection: same checks, same answer."""
    one = {"event": "adapter.deactivated", "data": {"adapter_id": "a", "repo": "r", "reason": "x"}}
    async with relay(dhruva) as running, client(running.url) as sub, client(running.url) as pub:
        await sub.reply(await sub.subscribe("lifecycle"))
        reply = await pub.reply(await pub.request("publish", one))
        assert reply["type"] == "response"
        [result] = reply["data"]["published"]
        assert result["event"] == "adapter.deactivated"
        assert [o["channel"] for o in result["offsets"]] == ["adapter:a", "lifecycle"]
        reply = await pub.reply(await pub.request("publish", {"events": [one, one]}))
        assert [o["offsets"][1]["offset"] for o in reply["data"]["published"]] == [2, 3]
        missing = {"event": "adapter.deactivated", "data": {"adapter_id": "a", "repo": "r"}}
        for data, code in [
            ({"events": [one, missing]}, "INVALID_PAYLOAD"),  # checked whole: nothing sent
            ({"event": "nope", "data": {}}, "INVALID_PAYLOAD"),
            ({"events": "not a list"}, "INVALID_PAYLOAD"),
            ({"channel": "lifecycle"}, "INVALID_PAYLOAD"),
            ({"events": [{"data": {}}]}, "BAD_REQUEST"),
        ]:
            error = await pub.reply(await pub.request("publish", data))
            assert error["type"] == "error" and error["error_code"] == code, (data, error)
        assert "reason" in (await pub.reply("publish-2"))["error_message"]
        events = await sub.events_count(3)
        assert [e["offset"] for e in events] == [1, 2, 3]
        # the connection is still served: one more publish goes through
        reply = await pub.reply(await pub.request("publish", one, message_id="last"))
        assert reply["data"]["published"][0]["offsets"][1]["offset"] == 4
        assert [e["offset"] for e in await sub.events_count(4)] == [1, 2, 3, 4]


async def test_replies_keep_their_order() -> None:
    """Replies written at once by the reader (a waiting writer) and replies the writer
    queues arrive in the order of their requests, interleaved with live events."""
    one = {"event": "adapter.deactivated", "data": {"adapter_id": "a", "repo": "r", "reason": "x"}}
    async with relay(dhruva) as running, client(running.url) as c:
        await c.reply(await c.subscribe("lifecycle"))
        for i in range(150):  # 300 messages: within the rate limit's burst
            await c.send({"type": "ping", "id": f"p{i}"})
            await c.request("publish", one, message_id=f"m{i}")
        await c.wait(lambda: len(c.replies) >= 301 and len(c.events) >= 150)
        expected = [key for i in range(150) for key in (f"p{i}", f"m{i}")]
        assert list(c.replies) == ["sub_lifecycle", *expected]
        assert [e["offset"] for e in c.events] == list(range(1, 151))


async def test_server_full_is_refused_with_1013() -> None:
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosed

    async def read_until_closed(ws: Any) -> None:
        with anyio.fail_after(TIMEOUT):
            try:
                while True:
                    await ws.recv()
            except ConnectionClosed:
                return

    async with relay(dhruva, max_connections=2) as running:
        async with client(running.url), client(running.url), connect(running.url) as third:
            await read_until_closed(third)
            assert third.close_code == 1013
            assert third.close_reason == "server full"
