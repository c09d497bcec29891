"""The Redis link on its own, against a private redis-server: up, down, and up again."""

from __future__ import annotations

import time

import anyio
import pytest

from cluster.link import RedisLink
from tests.redis_server import RedisServer
from tests.yclient import wait_until

pytestmark = pytest.mark.anyio


async def test_messages_and_catching_up_after_redis_comes_back(redis_server: RedisServer) -> None:
    link = RedisLink(redis_server.url, prefix="t")
    received: list[bytes] = []
    ups = 0

    async def up() -> None:
        nonlocal ups
        ups += 1

    link.listen(link.key("ch"), received.append)
    link.on_up(up)
    async with anyio.create_task_group() as tg:
        await tg.start(link.run)
        await wait_until(lambda: link.up)
        await link.redis.publish(link.key("ch"), b"one")
        await wait_until(lambda: received == [b"one"])
        assert ups == 1
        assert await link.nodes_alive({link.node, "gone"}) == {link.node}

        redis_server.kill()
        await wait_until(lambda: not link.up, timeout=5)
        assert link.last_error
        redis_server.start()
        await wait_until(lambda: link.up, timeout=10)
        assert ups == 2  # users of the link catch up after every reconnection
        await link.redis.publish(link.key("ch"), b"two")
        await wait_until(lambda: received == [b"one", b"two"])
        tg.cancel_scope.cancel()


async def test_a_frozen_redis_is_noticed_and_a_node_starts_without_redis(
    redis_server: RedisServer,
) -> None:
    redis_server.stop()
    link = RedisLink(redis_server.url, prefix="t")
    async with anyio.create_task_group() as tg:
        await tg.start(link.run)  # returns at once: a node serves without Redis
        await anyio.sleep(0.3)
        assert not link.up
        redis_server.start()
        await wait_until(lambda: link.up, timeout=10)
        redis_server.pause()
        try:
            await wait_until(lambda: not link.up, timeout=8)  # the heartbeat times out
        finally:
            redis_server.resume()
        await wait_until(lambda: link.up, timeout=10)
        tg.cancel_scope.cancel()


async def test_the_registry_names_the_nodes_that_beat_since_a_time(
    redis_server: RedisServer,
) -> None:
    """What a sweep looks at: nodes alive since it started (one silent since before
    cannot have committed anything its rooms lack), and never those silent for an hour."""
    link = RedisLink(redis_server.url)
    async with anyio.create_task_group() as tg:
        await tg.start(link.run)
        await wait_until(lambda: link.up, timeout=10)
        now = time.time()
        await link.redis.zadd(
            link.key("nodes"), {"before-start": now - 60, "forgotten": now - 2 * 3600}
        )
        assert await link.registered_nodes(now - 120) == {link.node, "before-start"}
        assert await link.registered_nodes(now - 10) == {link.node}
        assert "forgotten" not in await link.registered_nodes(0)  # trimmed after an hour
        tg.cancel_scope.cancel()
