"""The operators' tools (agents.operations) against a real collab server, a real relay and a
port nobody listens on; and ``GET /api/rooms``, the collab route they list rooms from."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

import relays
from agents.operations import (
    Server,
    get_metrics,
    get_status,
    health_check,
    list_rooms,
    servers_for,
)
from collab.config import Config
from relays.auth import make_token
from relays.catalogs import BY_NAME
from tests.conftest import RunningServer, free_port
from tests.relayclient import client
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio

SECRET = "operations-secret-long-enough-for-hs256-keys"
ELEMENT = {"id": "r", "type": "rectangle", "x": 0, "y": 0, "width": 10, "height": 10}


@asynccontextmanager
async def deployment(
    make_server: Any, **relay_settings: Any
) -> AsyncIterator[tuple[RunningServer, relays.Relay, list[Server]]]:
    """A collab server with two rooms (busy: 2 clients and an edit; quiet: 1), a dhruva relay
    with a follower of ``adapter:a1`` and one event, and a URL where nothing listens."""
    config = Config(grace_period=1.0, auth_secret=relay_settings.get("auth_secret"))
    settings = relays.RelaySettings(**relay_settings)
    token = make_token(SECRET, sub="ops", channels=["*"], publish=True)
    query = f"?token={token}" if "auth_secret" in relay_settings else ""
    async with (
        relays.serve(BY_NAME["dhruva"], "127.0.0.1", free_port(), settings=settings) as relay,
        make_server(config) as server,
        peer(f"{server.yjs_url}/busy{query}", 1) as writer,
        peer(f"{server.yjs_url}/busy{query}", 2),
        peer(f"{server.yjs_url}/quiet{query}", 3),
        client(relay.url + query) as follower,
    ):
        await writer.send_set("r", ELEMENT)
        await wait_until(lambda: server.app.rooms.rooms["busy"].updates == 1)
        await follower.reply(await follower.subscribe("adapter:a1"))
        await relay.broadcast.adapter_activated("a1", "org/repo", {"version": "1"})
        with_token = token if "auth_secret" in relay_settings else None
        servers = [
            Server.collab(server.http_url, token=with_token),
            Server.relay(f"http://127.0.0.1:{relay.port}/", token=with_token),
            Server.relay(f"http://127.0.0.1:{free_port()}", name="gone"),
        ]
        yield server, relay, servers


async def test_health_check_says_who_is_up_and_ready(make_server: Any) -> None:
    async with deployment(make_server) as (_, relay, servers), httpx.AsyncClient() as http:
        report = await health_check(http, servers)
    collab, dhruva, gone = report.servers
    assert not report.all_ready  # one is down
    assert collab.up and collab.ready and collab.status_code == 200 and collab.error is None
    assert collab.body == {"status": "ready", "rooms": 2, "connections": 3, "storage": "ok"}
    assert collab.latency_ms is not None and collab.latency_ms > 0
    assert dhruva.name == f"127.0.0.1:{relay.port}" and dhruva.url.endswith(str(relay.port))
    assert dhruva.ready and dhruva.body is not None and dhruva.body["service"] == "dhruva"
    assert gone.name == "gone" and not gone.up and not gone.ready
    assert gone.error is not None and "Connect" in gone.error
    assert gone.status_code is None and gone.latency_ms is None


async def test_get_status_reads_connections_rooms_storage_and_uptime(make_server: Any) -> None:
    async with deployment(make_server) as (*_, servers), httpx.AsyncClient() as http:
        report = await get_status(http, servers)
    collab, dhruva, gone = report.servers
    assert collab.error is None and collab.ready and collab.status == "ready"
    assert (collab.connections, collab.rooms, collab.storage) == (3, 2, "ok")
    assert collab.uptime_seconds is not None and collab.uptime_seconds >= 0
    assert collab.redis is None and collab.service == "excalidraw"
    assert dhruva.error is None and dhruva.service == "dhruva" and dhruva.connections == 1
    assert dhruva.subscriptions == 1 and dhruva.events_published == 1
    assert dhruva.channels is not None and dhruva.channels >= 1
    assert not gone.up and gone.error
    dumped = report.model_dump()
    assert "token" not in dumped["servers"][0]


async def test_list_rooms_lists_rooms_and_channels_with_their_clients(make_server: Any) -> None:
    async with deployment(make_server) as (*_, servers), httpx.AsyncClient() as http:
        report = await list_rooms(http, servers)
        capped = await list_rooms(http, servers[:1], limit=1)
    collab, dhruva, gone = report.servers
    assert [(r.name, r.connections, r.count, r.locked) for r in collab.rooms] == [
        ("busy", 2, 1, False),
        ("quiet", 1, 0, False),
    ]
    assert collab.total == 2 and collab.complete
    assert ("adapter:a1", 1, 1) in [(r.name, r.connections, r.count) for r in dhruva.rooms]
    assert dhruva.total == len(dhruva.rooms) and dhruva.complete
    assert gone.rooms == [] and gone.error
    only = capped.servers[0]
    assert [r.name for r in only.rooms] == ["busy"] and only.total == 2 and not only.complete


async def test_get_metrics_parses_the_websocket_and_inkwire_series(make_server: Any) -> None:
    async with deployment(make_server) as (server, _, servers), httpx.AsyncClient() as http:
        report = await get_metrics(http, servers)
        mounted = await get_metrics(http, [Server.relay(f"{server.http_url}/events")])
        narrow = await get_metrics(http, servers[:2], prefix="websocket_connections")
        buckets = await get_metrics(http, servers[:1], prefix="websocket_broadcast", buckets=True)
    collab, dhruva, gone = report.servers

    def value(samples: Any, name: str, **labels: str) -> float | None:
        for sample in samples:
            if sample.name == name and labels.items() <= sample.labels.items():
                return float(sample.value)
        return None

    assert value(collab.samples, "websocket_connections_total", service="excalidraw") == 3
    assert value(collab.samples, "inkwire_rooms") == 2
    assert value(collab.samples, "inkwire_updates_in_total") == 1
    assert value(collab.samples, "websocket_broadcast_duration_seconds_count") is not None
    names = {s.name for s in collab.samples + dhruva.samples}
    assert not any(n.endswith(("_bucket", "_created")) for n in names)
    assert all(n.startswith(("websocket_", "inkwire_")) for n in names)  # no python_gc_*, say
    assert value(dhruva.samples, "websocket_connections_total", service="dhruva") == 1
    assert value(dhruva.samples, "inkwire_relay_events_published_total") == 1
    assert gone.samples == [] and gone.error
    events = mounted.servers[0]  # the collab server's /events relay, at /events/metrics
    assert events.error is None and value(events.samples, "inkwire_relay_connections") == 0
    assert {s.name for r in narrow.servers for s in r.samples} == {"websocket_connections_total"}
    assert any(s.name.endswith("_bucket") for s in buckets.servers[0].samples)


async def test_with_auth_the_token_is_sent_and_a_missing_one_is_an_error(
    make_server: Any,
) -> None:
    async with (
        deployment(make_server, auth_secret=SECRET) as (_, _, servers),
        httpx.AsyncClient() as http,
    ):
        with_token = await list_rooms(http, servers[:2])
        without = [Server.collab(servers[0].url), Server.relay(servers[1].url)]
        refused = await list_rooms(http, without)
        status = await get_status(http, without)
    assert [len(s.rooms) for s in with_token.servers] == [2, len(with_token.servers[1].rooms)]
    assert all(s.error is None for s in with_token.servers)
    assert [s.error for s in refused.servers] == [
        "/api/rooms: HTTP 401 a valid bearer token is required",
        "/stats: HTTP 401 a valid bearer token is required",
    ]
    collab = status.servers[0]  # what needs no token is still there, with why the rest is not
    assert collab.ready and collab.connections == 3 and collab.error is not None


async def test_a_server_that_never_answers_is_an_error_in_bounded_time() -> None:
    async def hold(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep(30)  # reads nothing, answers nothing

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hold)
        async with httpx.AsyncClient(timeout=60) as http:  # the tools' deadline, not httpx's
            with anyio.fail_after(10):
                stalled = [Server.relay(f"http://127.0.0.1:{port}")]
                report = await health_check(http, stalled, deadline=0.5)
        tg.cancel_scope.cancel()
    assert report.servers[0].error == "no answer within 0.5 s"
    assert not report.servers[0].up


async def test_something_else_on_the_port_is_an_error_not_an_exception(
    make_server: Any,
) -> None:
    async with make_server() as server, httpx.AsyncClient() as http:
        # the collab server is no relay: /stats is its web app's 404
        report = await list_rooms(http, [Server.relay(server.http_url)])
        metrics = await get_metrics(http, [Server.relay(server.http_url + "/assets")])
    assert report.servers[0].error == "/stats: HTTP 404 Not Found"
    assert metrics.servers[0].error is not None


def test_server_urls_are_checked() -> None:
    assert Server.collab("http://127.0.0.1:3042/").url == "http://127.0.0.1:3042"
    collab, relay = servers_for("http://127.0.0.1:3042", ["http://127.0.0.1:8693/"], token="s3cr3t")
    assert (collab.kind, collab.name, relay.kind, relay.name) == (
        "collab",
        "collab",
        "relay",
        "127.0.0.1:8693",
    )
    assert relay.token == "s3cr3t" and "s3cr3t" not in repr(relay)
    with pytest.raises(ValueError, match="expected http"):
        Server.relay("ws://127.0.0.1:8693")


# --- GET /api/rooms ---------------------------------------------------------------------


async def test_api_rooms_lists_the_loaded_rooms_it_may_show(make_server: Any) -> None:
    config = Config(grace_period=1.0, auth_secret=SECRET)
    everything = make_token(SECRET, sub="ops", channels=["*"], publish=True)
    only_b = make_token(SECRET, sub="ops", channels=["diagram:b"])
    async with make_server(config) as server, httpx.AsyncClient() as http:
        async with (
            peer(f"{server.yjs_url}/a?token={everything}", 1),
            peer(f"{server.yjs_url}/b?token={everything}", 2),
            peer(f"{server.yjs_url}/b?token={everything}", 3),
        ):
            url = f"{server.http_url}/api/rooms"
            assert (await http.get(url)).status_code == 401
            auth = {"authorization": f"Bearer {everything}"}
            full = (await http.get(url, headers=auth)).json()
            first = (await http.get(url, params={"limit": 1}, headers=auth)).json()
            narrow = (await http.get(url, headers={"authorization": f"Bearer {only_b}"})).json()
            for bad in ("0", "x", "10001", "-1"):
                answer = await http.get(url, params={"limit": bad}, headers=auth)
                assert answer.status_code == 400 and "limit" in answer.json()["error"]
    assert full["rooms"] == [
        {"name": "b", "connections": 2, "updates": 0, "locked": False},
        {"name": "a", "connections": 1, "updates": 0, "locked": False},
    ]
    assert full["total"] == 2 and full["uptime"] >= 0 and full["started"] <= full["time"]
    assert [r["name"] for r in first["rooms"]] == ["b"] and first["total"] == 2
    assert [r["name"] for r in narrow["rooms"]] == ["b"] and narrow["total"] == 1
