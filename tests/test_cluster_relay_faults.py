"""Clustered relays when Redis fails: ``inkwire relay --redis`` processes and a private Redis.

Each test runs two relay nodes as real processes on free ports, sharing the
``redis_server`` fixture's Redis (append-only file, ``appendfsync always``),
and does to Redis what production does: SIGKILL and a restart on its file,
SIGSTOP for 10 s, a restart without its data, and a node too slow for its
pub/sub buffer. Clients are ``clients.RelayClient`` (reconnects, reports
gaps) and the tests' plain client (never reconnects, so a close shows).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import redis.asyncio as aioredis

from clients.relay import Event, Gap, Item, RelayClient
from tests.conftest import ROOT, free_port
from tests.redis_server import RedisServer
from tests.relayclient import TIMEOUT, client

pytestmark = pytest.mark.anyio

CHANNEL = "adapter:a1"
StartNode = Callable[[], "Node"]


class Node:
    """One ``inkwire relay dhruva --redis`` process."""

    def __init__(self, process: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.process = process
        self.port = port
        self.log = log

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture
def start_node(tmp_path: Path, redis_server: RedisServer) -> Iterator[StartNode]:
    started: list[Node] = []

    def start() -> Node:
        port = free_port()
        log = tmp_path / f"relay-{port}.log"
        env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"}
        env.pop("INKWIRE_RELAY_SECRET", None)
        command = [sys.executable, "-m", "collab.cli", "relay", "dhruva", "--port", str(port)]
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [*command, "--redis", redis_server.url, "--log-level", "INFO"],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        node = Node(process, port, log)
        started.append(node)
        deadline = time.monotonic() + 15
        while not _ready(node):
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        return node

    yield start
    for node in started:
        node.process.kill()
        node.process.wait(timeout=10)


def _ready(node: Node) -> bool:
    try:
        return httpx.get(f"{node.http}/health/ready", timeout=1).status_code == 200
    except httpx.TransportError:
        return False


async def ready(node: Node) -> tuple[int, dict[str, Any]]:
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        response = await http.get(f"{node.http}/health/ready")
    return response.status_code, response.json()


async def until_ready(node: Node, expected: int, timeout: float = TIMEOUT) -> dict[str, Any]:
    with anyio.fail_after(timeout):
        while True:
            status, body = await ready(node)
            if status == expected:
                return body
            await anyio.sleep(0.05)


async def publish(
    node: Node, *versions: str, config: dict[str, Any] | None = None, timeout: float = TIMEOUT
) -> httpx.Response:
    data = {"adapter_id": "a1", "repo": "r"} | ({"config": config} if config else {})
    items = [{"event": "adapter.activated", "data": {**data, "version": v}} for v in versions]
    async with httpx.AsyncClient(timeout=timeout) as http:
        return await http.post(f"{node.http}/publish", json=items)


async def published(
    node: Node, *versions: str, config: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    response = await publish(node, *versions, config=config)
    assert response.status_code == 202, response.text
    return [item["offsets"][0] for item in response.json()["published"]]


async def take(relay_client: RelayClient, count: int) -> list[Item]:
    items: list[Item] = []
    with anyio.fail_after(TIMEOUT):
        async for item in relay_client:
            items.append(item)
            if len(items) == count:
                return items
    raise AssertionError("the client ended")


def versions(items: list[Item]) -> list[Any]:
    return [item.data["version"] if isinstance(item, Event) else item for item in items]


async def test_redis_killed_and_restarted_on_its_file(
    redis_server: RedisServer, start_node: StartNode
) -> None:
    one, two = start_node(), start_node()
    async with RelayClient(one.url) as follower, client(two.url) as plain:
        await follower.subscribe(CHANNEL)
        await plain.reply(await plain.subscribe(CHANNEL))
        [first, *_] = await published(one, "0", "1", "2")
        await take(follower, 3)

        redis_server.kill()
        for node in (one, two):
            body = await until_ready(node, 503)
            assert body["redis"] == "failing" and body["status"] == "not ready"
        response = await publish(two, "lost")  # fails loudly, rather than vanishing
        assert response.status_code == 503 and response.json()["error_code"] == "UNAVAILABLE"

        redis_server.start()  # on its append-only file
        for node in (one, two):
            assert (await until_ready(node, 200))["redis"] == "ok"
        later = await published(two, "3", "4")
        assert [(p["offset"], p["epoch"]) for p in later] == [
            (4, first["epoch"]),
            (5, first["epoch"]),
        ]
        assert versions(await take(follower, 2)) == ["3", "4"]  # no gap, no close
        events = await plain.events_count(5)
        assert [e["offset"] for e in events] == [1, 2, 3, 4, 5]
        assert plain.ws.close_code is None

    async with client(one.url) as late:
        mark = {"offset": 2, "epoch": first["epoch"]}
        reply = await late.reply(await late.subscribe(CHANNEL, since=mark))
        assert reply["data"]["recovered"] is True
        assert [e["data"]["version"] for e in await late.events_count(3)] == ["2", "3", "4"]


@pytest.mark.slow
async def test_a_frozen_redis_fails_publishes_in_time_and_duplicates_nothing(
    redis_server: RedisServer, start_node: StartNode
) -> None:
    one, two = start_node(), start_node()
    async with RelayClient(one.url) as follower, client(two.url) as plain:
        await follower.subscribe(CHANNEL)
        await plain.reply(await plain.subscribe(CHANNEL))
        await published(one, "0")

        redis_server.pause()
        paused = time.monotonic()
        try:
            for node in (one, two):
                began = time.monotonic()
                response = await publish(node, "refused")
                assert response.status_code == 503
                assert time.monotonic() - began < 4  # the command timeout (2 s), not a hang
            assert (await until_ready(one, 503))["redis"] == "failing"
            assert await follower.ping() < 1  # clients stay connected and answered
            await anyio.sleep(max(0.0, 10 - (time.monotonic() - paused)))
        finally:
            redis_server.resume()

        for node in (one, two):
            await until_ready(node, 200)
        await published(two, "1")
        # the publishes that timed out were refused when Redis woke, not carried out late
        assert versions(await take(follower, 2)) == ["0", "1"]
        events = await plain.events_count(2)
        await anyio.sleep(0.5)
        assert [(e["offset"], e["data"]["version"]) for e in plain.events] == [(1, "0"), (2, "1")]
        assert len({e["id"] for e in events}) == 2


async def test_redis_restarted_empty_tells_followers_they_lost_events(
    redis_server: RedisServer, start_node: StartNode
) -> None:
    one, two = start_node(), start_node()
    async with RelayClient(one.url) as follower, client(two.url) as plain:
        await follower.subscribe(CHANNEL)
        await plain.reply(await plain.subscribe(CHANNEL))
        [first, *_] = await published(one, "0", "1", "2")
        await take(follower, 3)
        await plain.events_count(3)

        redis_server.kill()
        redis_server.start(wipe=True)
        for node in (one, two):
            await until_ready(node, 200)
        # followers were closed so they resubscribe with since; Redis cannot vouch for it
        await plain.wait(lambda: plain.ws.close_code is not None)
        assert plain.ws.close_code == 4010
        [gap] = await take(follower, 1)
        assert isinstance(gap, Gap) and (gap.since_offset, gap.since_epoch) == (3, first["epoch"])
        assert gap.epoch != first["epoch"]

        [after] = await published(two, "3")
        assert (after["offset"], after["epoch"]) == (1, gap.epoch)
        [event] = await take(follower, 1)
        assert isinstance(event, Event) and (event.offset, event.epoch) == (1, gap.epoch)

    async with client(two.url) as late:
        reply = await late.reply(
            await late.subscribe(CHANNEL, since={"offset": 1, "epoch": first["epoch"]})
        )
        assert reply["data"]["recovered"] is False  # never a replay of another numbering


async def test_a_node_dropped_by_redis_for_lagging_catches_up_from_the_log(
    redis_server: RedisServer, start_node: StartNode
) -> None:
    """A stopped node's pub/sub buffer overflows, Redis drops it; it resumes with nothing missed."""
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await admin.config_set("client-output-buffer-limit", "pubsub 256kb 0 0")
        one, two = start_node(), start_node()
        async with client(one.url) as plain:
            await plain.reply(await plain.subscribe(CHANNEL))
            await published(two, "0")
            await plain.events_count(1)

            one.process.send_signal(signal.SIGSTOP)  # the node reads nothing meanwhile
            try:
                # more than the sockets' kernel buffers hold, so Redis's own buffer fills
                blob = {"blob": "x" * 100_000}
                for i in range(1, 101):
                    await published(two, str(i), config=blob)
                clients = await admin.client_list(_type="pubsub")
                assert len(clients) == 1  # Redis dropped the stopped node's subscription
            finally:
                one.process.send_signal(signal.SIGCONT)

            events = await plain.events_count(101)
            assert [e["offset"] for e in events] == list(range(1, 102))
            assert [e["data"]["version"] for e in events] == [str(i) for i in range(101)]
            assert plain.ws.close_code is None  # caught up from the log: nobody was closed
    finally:
        await admin.aclose()
