"""Relays across nodes, in process: two relays on two ports sharing one private Redis.

The normal path: an event published on any node (broadcaster, ``POST /publish``,
a request that emits) reaches every node's subscribers in one order with one
numbering; ``since`` recovers on the other node; the projections agree; what
an embedding service queues while Redis is away goes out when it returns. The
faults, with ``inkwire relay --redis`` processes, are in test_cluster_relay_faults.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as aioredis

import relays
from cluster.link import RedisLink
from relays.catalog import Catalog
from relays.catalogs import BY_NAME
from relays.hub import HubSettings
from relays.protocol import RelayUnavailable
from tests.conftest import free_port
from tests.redis_server import RedisServer
from tests.relayclient import TIMEOUT, Client, client
from tests.yclient import wait_until

pytestmark = pytest.mark.anyio

dhruva = BY_NAME["dhruva"]
fastblocks = BY_NAME["fastblocks"]


@asynccontextmanager
async def node(url: str, catalog: Catalog = dhruva, **settings: Any) -> AsyncIterator[relays.Relay]:
    """One clustered relay on a free port, returned once its link is up."""
    config = relays.RelaySettings(**settings)
    port = free_port()
    async with relays.serve(catalog, "127.0.0.1", port, settings=config, redis=url) as running:
        await wait_until(lambda: link_up(running), timeout=TIMEOUT)
        yield running


@asynccontextmanager
async def nodes(url: str, count: int = 2, **settings: Any) -> AsyncIterator[list[relays.Relay]]:
    async with AsyncExitStack() as stack:
        yield [await stack.enter_async_context(node(url, **settings)) for _ in range(count)]


def link_up(running: relays.Relay) -> bool:
    return running.app.cluster is not None and running.app.cluster.link.up


def applied(running: relays.Relay) -> int:
    assert running.app.cluster is not None
    return running.app.cluster.applied


def positions(c: Client, channel: str) -> list[tuple[str, int, str]]:
    return [(e["id"], e["offset"], e["epoch"]) for e in c.events if e["room"] == channel]


async def post(running: relays.Relay, items: list[dict[str, Any]]) -> httpx.Response:
    async with httpx.AsyncClient(base_url=running.http_url, timeout=TIMEOUT) as http:
        return await http.post("/publish", json=items)


def activated(i: int, adapter: str = "a1") -> dict[str, Any]:
    return {
        "event": "adapter.activated",
        "data": {"adapter_id": adapter, "repo": "r", "version": str(i)},
    }


async def test_events_from_every_node_reach_every_node_in_one_order(
    redis_server: RedisServer,
) -> None:
    async with nodes(redis_server.url) as (one, two):
        async with client(one.url) as c1, client(two.url) as c2:
            for c in (c1, c2):
                for channel in ("adapter:a1", "lifecycle"):
                    await c.reply(await c.subscribe(channel))
            returned: list[Any] = []

            async def broadcast() -> None:
                for i in range(20):
                    placed = await one.broadcast.adapter_activated("a1", "r", {"version": str(i)})
                    returned.append(placed)

            async def publish() -> None:
                for i in range(0, 20, 2):
                    response = await post(two, [activated(100 + i), activated(101 + i)])
                    assert response.status_code == 202, response.text
                    returned.extend(item["offsets"] for item in response.json()["published"])

            async with anyio.create_task_group() as tg:
                tg.start_soon(broadcast)
                tg.start_soon(publish)
            await c1.events_count(80)
            await c2.events_count(80)

        for channel in ("adapter:a1", "lifecycle"):
            seen = positions(c1, channel)
            assert seen == positions(c2, channel)  # one order, the same ids and numbering
            assert [offset for _, offset, _ in seen] == list(range(1, 41))
            assert len({epoch for _, _, epoch in seen}) == 1
        # what each publisher was told is where its event landed
        told = sorted(
            (p.channel, p.offset)
            if isinstance(p, relays.hub.Published)
            else (p["channel"], p["offset"])
            for placed in returned
            for p in placed
        )
        assert told == sorted((e["room"], e["offset"]) for e in c1.events)


async def test_since_recovers_on_the_other_node(redis_server: RedisServer) -> None:
    async with nodes(redis_server.url, hub=HubSettings(history_size=5)) as (one, two):
        async with client(one.url) as c:
            await c.reply(await c.subscribe("adapter:a1"))
            for i in range(3):
                await one.broadcast.adapter_activated("a1", "r", {"version": str(i)})
            last = (await c.events_count(3))[-1]
        mark = {"offset": last["offset"], "epoch": last["epoch"]}
        for i in range(3, 6):
            await one.broadcast.adapter_activated("a1", "r", {"version": str(i)})

        async with client(two.url) as c:
            reply = await c.reply(await c.subscribe("adapter:a1", since=mark))
            assert reply["data"]["recovered"] is True
            assert reply["data"]["offset"] == 6 and reply["data"]["epoch"] == mark["epoch"]
            await c.events_count(3)
            await two.broadcast.adapter_activated("a1", "r", {"version": "live"})
            events = await c.events_count(4)
            assert [e["offset"] for e in events] == [4, 5, 6, 7]
            assert [e["data"]["version"] for e in events] == ["3", "4", "5", "live"]

        async with client(two.url) as c:
            # older than history holds (5 events): told so, nothing replayed
            reply = await c.reply(await c.subscribe("adapter:a1", since={**mark, "offset": 1}))
            assert reply["data"]["recovered"] is False and reply["data"]["offset"] == 7
            wrong = await c.request(
                "subscribe", {"channel": "lifecycle", "since": {"offset": 0, "epoch": "x"}}
            )
            assert (await c.reply(wrong))["data"]["recovered"] is False
            nothing_missed = {"offset": 7, "epoch": mark["epoch"]}
            again = await c.request("subscribe", {"channel": "adapter:a1", "since": nothing_missed})
            assert (await c.reply(again))["data"]["recovered"] is True
            await anyio.sleep(0.2)
            assert c.events == []


async def test_one_publish_over_several_channels_numbers_each_channel_on_its_own(
    redis_server: RedisServer,
) -> None:
    """The publish script numbers each channel of a mixed publish on its own (it reads and
    writes a channel's numbering once per publish), and the receiving node frames what the
    publishing node encoded: payloads, ids and times arrive as they were published."""
    channels = ("adapter:a1", "adapter:a2", "lifecycle")
    async with nodes(redis_server.url) as (one, two), client(two.url) as c:
        for channel in channels:
            await c.reply(await c.subscribe(channel))
        items = [activated(0, "a1"), activated(1, "a2"), activated(2, "a1")]
        first = await post(one, items)
        second = await post(one, [activated(3, "a2"), activated(4, "a1")])
        assert first.status_code == second.status_code == 202
        events = await c.events_count(10)
        assert {
            channel: [e["offset"] for e in events if e["room"] == channel] for channel in channels
        } == {
            "adapter:a1": [1, 2, 3],
            "adapter:a2": [1, 2],
            "lifecycle": [1, 2, 3, 4, 5],
        }
        on_lifecycle = [e for e in events if e["room"] == "lifecycle"]
        assert [e["data"]["version"] for e in on_lifecycle] == ["0", "1", "2", "3", "4"]
        assert [e["data"]["adapter_id"] for e in on_lifecycle] == ["a1", "a2", "a1", "a2", "a1"]
        for e in on_lifecycle:  # one event, framed on its two channels from one encoding
            twin = next(t for t in events if t["id"] == e["id"] and t["room"] != "lifecycle")
            assert (twin["data"], twin["timestamp"]) == (e["data"], e["timestamp"])
        # the projection of the node that did not publish folded the payloads it never encoded
        status = await c.reply(await c.request("get_adapter_status", {"adapter_id": "a2"}))
        assert status["data"]["data"]["version"] == "3"
        # recovery from Redis's history streams, on the publishing node
        async with client(one.url) as late:
            epoch = next(e["epoch"] for e in events if e["room"] == "adapter:a2")
            reply = await late.reply(
                await late.subscribe("adapter:a2", since={"offset": 0, "epoch": epoch})
            )
            assert reply["data"]["recovered"] is True
            replayed = await late.events_count(2)
            assert [(e["offset"], e["data"]["version"]) for e in replayed] == [(1, "1"), (2, "3")]


async def test_a_node_that_saw_nothing_answers_with_the_clusters_numbering_and_records(
    redis_server: RedisServer,
) -> None:
    async with node(redis_server.url) as one:
        for i in range(3):
            placed = await one.broadcast.adapter_activated("a1", "r", {"version": str(i)})
        epoch = placed[0].epoch
        async with node(redis_server.url) as late, client(late.url) as c:
            reply = await c.reply(await c.subscribe("adapter:a1"))
            assert (reply["data"]["offset"], reply["data"]["epoch"]) == (3, epoch)
            status = await c.reply(await c.request("get_adapter_status", {"adapter_id": "a1"}))
            assert status["data"]["data"]["version"] == "2"  # folded from the log at start
            # a channel nobody published on yet: one epoch for everyone from now on
            fresh = await c.reply(await c.subscribe("adapter:new"))
            async with client(one.url) as other:
                again = await other.reply(await other.subscribe("adapter:new"))
            assert again["data"]["epoch"] == fresh["data"]["epoch"] and fresh["data"]["offset"] == 0


async def test_projections_agree_across_nodes(redis_server: RedisServer) -> None:
    async with nodes(redis_server.url) as (one, two):

        async def churn(running: relays.Relay, start: int) -> None:
            for i in range(start, start + 30):
                adapter = f"a{i % 4}"
                if i % 3:
                    await running.broadcast.adapter_activated(adapter, "r", {"version": str(i)})
                else:
                    items = [
                        {
                            "event": "adapter.deactivated",
                            "data": {"adapter_id": adapter, "repo": "r", "reason": str(i)},
                        }
                    ]
                    assert (await post(running, items)).status_code == 202

        async with anyio.create_task_group() as tg:
            tg.start_soon(churn, one, 0)
            tg.start_soon(churn, two, 1000)
        await wait_until(lambda: applied(one) == applied(two) == 60, timeout=TIMEOUT)
        answers = []
        for running in (one, two):
            async with client(running.url) as c:
                listed = await c.reply(await c.request("list_adapters"))
                each = [
                    (await c.reply(await c.request("get_adapter_status", {"adapter_id": f"a{i}"})))[
                        "data"
                    ]
                    for i in range(4)
                ]
                answers.append((listed["data"], each))
        assert answers[0] == answers[1]


async def test_a_request_that_emits_is_published_cluster_wide(redis_server: RedisServer) -> None:
    async with node(redis_server.url, fastblocks) as one, node(redis_server.url, fastblocks) as two:
        async with client(one.url) as asker, client(two.url) as watcher:
            await watcher.reply(await watcher.subscribe("page:p1"))
            reply = await asker.reply(
                await asker.request("register_component", {"component_id": "c1", "page_id": "p1"})
            )
            assert reply["type"] == "response", reply
            [placed] = reply["data"]["published"]
            [event] = await watcher.events_count(1)
            assert (event["event"], event["offset"], event["epoch"]) == (
                "component.mounted",
                placed["offset"],
                placed["epoch"],
            )


async def ready(running: relays.Relay) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(base_url=running.http_url, timeout=TIMEOUT) as http:
        response = await http.get("/health/ready")
    return response.status_code, response.json()


async def test_without_redis_publishing_fails_loudly_and_queued_events_wait(
    redis_server: RedisServer,
) -> None:
    async with nodes(redis_server.url) as (one, two), client(two.url) as c:
        await c.reply(await c.subscribe("adapter:a1"))
        status, body = await ready(one)
        assert (status, body["redis"], body["status"]) == (200, "ok", "ready")
        one.app.publish(*activated(0).values())
        await c.events_count(1)

        redis_server.kill()
        await wait_until(lambda: not link_up(one), timeout=TIMEOUT)
        status, body = await ready(one)
        assert (status, body["redis"], body["status"]) == (503, "failing", "not ready")
        with pytest.raises(RelayUnavailable):
            await one.broadcast.adapter_activated("a1", "r", {"version": "refused"})
        response = await post(one, [activated(99)])
        assert response.status_code == 503 and response.json()["error_code"] == "UNAVAILABLE"
        for i in range(1, 4):  # an embedding service's synchronous publishes are queued
            assert one.app.publish(*activated(i).values()) == []

        redis_server.start()
        events = await c.events_count(4)
        assert [e["data"]["version"] for e in events] == ["0", "1", "2", "3"]
        assert [e["offset"] for e in events] == [1, 2, 3, 4]
        assert (await ready(one))[0] == 200


async def test_relays_of_one_process_share_its_link(redis_server: RedisServer) -> None:
    """As the collab server does: the node's one link, passed to each relay it embeds."""
    link = RedisLink(redis_server.url)
    apps = [relays.RelayApp(catalog, link=link) for catalog in (dhruva, fastblocks)]
    async with anyio.create_task_group() as tg, AsyncExitStack() as stack:
        await tg.start(link.run)
        running = [
            await stack.enter_async_context(
                relays.serve(app.catalog, "127.0.0.1", free_port(), app=app)
            )
            for app in apps
        ]
        async with node(redis_server.url, fastblocks) as other, client(other.url) as c:
            await c.reply(await c.subscribe("page:p1"))
            await running[0].broadcast.registry_updated("v1", {})
            placed = await running[1].broadcast.component_mounted("c1", "p1")
            [event] = await c.events_count(1)
            assert (event["offset"], event["epoch"]) == (placed[0].offset, placed[0].epoch)
        await stack.aclose()
        tg.cancel_scope.cancel()


async def test_a_cut_pubsub_link_misses_nothing(redis_server: RedisServer) -> None:
    """Both nodes lose their pub/sub connection; they reconnect and catch up, nobody is closed."""
    async with nodes(redis_server.url) as (one, two), client(one.url) as c:
        await c.reply(await c.subscribe("adapter:a1"))
        await two.broadcast.adapter_activated("a1", "r", {"version": "0"})
        await c.events_count(1)
        admin = aioredis.Redis.from_url(redis_server.url)
        try:
            assert await admin.client_kill_filter(_type="pubsub") == 2
        finally:
            await admin.aclose()
        published = 1
        with anyio.fail_after(TIMEOUT):
            while published < 5:  # publishing resumes as soon as the links are back
                try:
                    await two.broadcast.adapter_activated("a1", "r", {"version": str(published)})
                    published += 1
                except relays.protocol.RelayUnavailable:
                    await anyio.sleep(0.02)
        events = await c.events_count(5)
        assert [e["offset"] for e in events] == [1, 2, 3, 4, 5]
        assert c.others == []  # no close, no gap
