"""The dashboards' metrics and the live dashboard's data, from real servers over real sockets.

``websocket_*`` are the names existing deployments chart (net.metrics); a
relay's ``/stats`` and the collab server's ``GET /api/servers`` feed
``/dashboard`` (collab.dashboard). The Grafana dashboard in deploy/grafana
queries only metrics these servers export.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import relays
from collab.app import CollabApp
from collab.cli import main as cli_main
from collab.config import Config
from collab.dashboard import relay_url, websocket_url
from relays.auth import make_token
from relays.catalogs import BY_NAME
from tests.conftest import ROOT, free_port
from tests.relayclient import client
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio

dhruva = BY_NAME["dhruva"]
GRAFANA = ROOT / "deploy" / "grafana" / "inkwire.json"
SECRET = "metrics-secret-long-enough-for-hs256-keys"


SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


class Samples(dict[tuple[str, frozenset[tuple[str, str]]], float]):
    """``/metrics`` of a server, as {(sample name, labels): value}, and the series names
    it declares (a labelled counter nothing has counted yet has none of its samples)."""

    names: set[str]
    labelled: set[tuple[str, str]]  # (sample name, label name) of every sample


async def scrape(url: str) -> Samples:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = Samples()
    samples.names, samples.labelled = set(), set()
    for family in text_string_to_metric_families(response.text):
        samples.names.update(family.name + suffix for suffix in SUFFIXES.get(family.type, ("",)))
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
            samples.names.add(sample.name)
            samples.labelled.update((sample.name, label) for label in sample.labels)
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


@asynccontextmanager
async def dhruva_relay(**settings: Any) -> AsyncIterator[relays.Relay]:
    config = relays.RelaySettings(**settings)
    async with relays.serve(dhruva, "127.0.0.1", free_port(), settings=config) as relay:
        yield relay


# --- the dashboards' metric names -------------------------------------------------------


async def test_a_relay_exports_the_dashboards_websocket_metrics() -> None:
    async with dhruva_relay() as relay:
        async with client(relay.url) as a, client(relay.url) as b, client(relay.url) as c:
            for each in (a, b):
                await each.reply(await each.subscribe("adapter:a1"))
            await c.reply(await c.subscribe("adapter:a2"))
            await relay.broadcast.adapter_activated("a1", "org/repo", {"version": "1"})
            await relay.broadcast.adapter_activated("a1", "org/repo", {"version": "2"})
            await a.events_count(2)
            await b.events_count(2)
            samples = await scrape(relay.http_url)
    service = {"service": "dhruva"}
    assert value(samples, "websocket_connections_total", **service) == 3
    # two events, each fanned out to the two followers of adapter:a1: four messages
    sent = value(
        samples, "websocket_messages_sent_total", event_type="adapter.activated", **service
    )
    assert sent == 4
    # one observation per fan-out run, not per delivery
    assert value(samples, "websocket_broadcast_duration_seconds_count", **service) == 2
    assert value(samples, "websocket_broadcast_duration_seconds_sum", **service) > 0
    # inkwire's own are still there, beside them
    assert value(samples, "inkwire_relay_events_published_total", **service) == 2
    assert value(samples, "inkwire_relay_connections_opened_total", **service) == 3


async def test_collab_exports_the_dashboards_websocket_metrics(
    collab_server: Any,
) -> None:
    async with (
        peer(f"{collab_server.yjs_url}/plan", 1) as alice,
        peer(f"{collab_server.yjs_url}/plan", 2) as bob,
        peer(f"{collab_server.yjs_url}/plan", 3) as carol,
    ):
        await alice.send_set("e1", {"id": "e1", "x": 1})
        await wait_until(lambda: "e1" in bob.snapshot() and "e1" in carol.snapshot())
        await alice.set_awareness({"user": {"name": "Alice"}})
        await wait_until(lambda: 1 in bob.awareness and 1 in carol.awareness)
        samples = await scrape(collab_server.http_url)
    service = {"service": "excalidraw"}
    assert value(samples, "websocket_connections_total", **service) == 3
    assert value(samples, "websocket_messages_sent_total", event_type="sync", **service) == 3
    # Alice's update reached Bob and Carol; so did her presence
    assert value(samples, "websocket_messages_sent_total", event_type="update", **service) == 2
    assert value(samples, "websocket_messages_sent_total", event_type="awareness", **service) >= 2
    assert value(samples, "websocket_broadcast_duration_seconds_count", **service) >= 2
    assert value(samples, "inkwire_updates_in_total") == 1


def grafana_queries() -> list[str]:
    board = json.loads(GRAFANA.read_text())
    queries = []
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            queries.append(target["expr"])
    assert queries, "the dashboard queries nothing"
    return queries


def queried_metrics(query: str) -> set[str]:
    """The series a PromQL query reads: identifiers not followed by '(' that name ours."""
    names = set(re.findall(r"\b([a-z_][a-z0-9_]*)\b(?!\s*\()", query))
    return {n for n in names if n.startswith(("websocket_", "inkwire_"))}


async def test_every_metric_the_grafana_dashboard_queries_is_exported(
    collab_server: Any,
) -> None:
    async with dhruva_relay() as relay:
        async with client(relay.url) as c:
            await c.reply(await c.subscribe("adapter:a1"))
            await relay.broadcast.adapter_activated("a1", "org/repo", {"version": "1"})
            await c.events_count(1)
            relay_samples = await scrape(relay.http_url)
    async with (
        peer(f"{collab_server.yjs_url}/g", 1) as alice,
        peer(f"{collab_server.yjs_url}/g", 2) as bob,
    ):
        await alice.send_set("e1", {"id": "e1"})
        await wait_until(lambda: "e1" in bob.snapshot())
        collab_samples = await scrape(collab_server.http_url)
    exported = relay_samples.names | collab_samples.names
    queried = set().union(*(queried_metrics(q) for q in grafana_queries()))
    assert {
        "websocket_connections_total",
        "websocket_messages_sent_total",
        "websocket_broadcast_duration_seconds_bucket",
    } <= queried
    assert queried - exported == set(), (
        f"queried but exported by neither server: {queried - exported}"
    )
    # the three names every deployment charts come from both kinds of server
    for name in ("websocket_connections_total", "websocket_messages_sent_total"):
        assert (name, "service") in relay_samples.labelled and name in collab_samples.names


# --- a relay's /stats ----------------------------------------------------------------


async def test_relay_stats_lists_the_busiest_channels() -> None:
    async with dhruva_relay() as relay, client(relay.url) as a, client(relay.url) as b:
        for channel in ("adapter:a1", "adapter:a2"):
            await a.reply(await a.subscribe(channel))
        await b.reply(await b.subscribe("adapter:a1"))
        for _ in range(3):
            await relay.broadcast.adapter_activated("a2", "org/repo", {"version": "1"})
        async with httpx.AsyncClient() as http:
            stats = (await http.get(f"http://127.0.0.1:{relay.port}/stats")).json()
    assert stats["service"] == "dhruva" and stats["ready"] is True
    assert stats["connections"] == 2 and stats["subscriptions"] == 3
    assert stats["events_published"] == 3
    busiest = {c["channel"]: c for c in stats["busiest"]}
    assert busiest["adapter:a1"] == {"channel": "adapter:a1", "followers": 2, "events": 0}
    assert busiest["adapter:a2"] == {"channel": "adapter:a2", "followers": 1, "events": 3}


async def test_relay_stats_with_auth_needs_a_token_and_lists_what_it_covers() -> None:
    async with dhruva_relay(auth_secret=SECRET) as relay:
        for adapter in ("a1", "a2"):
            await relay.broadcast.adapter_activated(adapter, "org/repo", {"version": "1"})
        url = f"http://127.0.0.1:{relay.port}/stats"
        narrow = make_token(SECRET, sub="ops", channels=["adapter:a1"])
        async with httpx.AsyncClient() as http:
            assert (await http.get(url)).status_code == 401
            bad = await http.get(url, headers={"authorization": "Bearer nope"})
            assert bad.status_code == 401
            seen = await http.get(url, headers={"authorization": f"Bearer {narrow}"})
    assert seen.status_code == 200
    assert [c["channel"] for c in seen.json()["busiest"]] == ["adapter:a1"]


# --- GET /api/servers -----------------------------------------------------------------


async def test_api_servers_shows_collab_and_its_relays_and_a_dead_one_as_down(
    make_server: Any,
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    async with dhruva_relay() as relay:
        live = f"http://127.0.0.1:{relay.port}"
        config = Config(grace_period=1.0, dashboard_relays=(live + "/", dead))
        async with make_server(config) as server:
            async with peer(f"{server.yjs_url}/busy", 1), peer(f"{server.yjs_url}/busy", 2):
                async with peer(f"{server.yjs_url}/quiet", 3), client(relay.url) as c:
                    await c.reply(await c.subscribe("adapter:a9"))
                    await relay.broadcast.adapter_activated("a9", "org/repo", {"version": "1"})
                    async with httpx.AsyncClient() as http:
                        response = await http.get(f"{server.http_url}/api/servers")
    assert response.status_code == 200
    collab, dhruva_entry, down = response.json()["servers"]
    assert collab["kind"] == "collab" and collab["name"] == "excalidraw"
    assert collab["up"] and collab["ready"] and collab["storage"] == "ok"
    assert collab["connections"] == 3 and collab["rooms"] == 2
    assert [(r["name"], r["connections"]) for r in collab["busiest"]] == [("busy", 2), ("quiet", 1)]
    assert dhruva_entry["name"] == "dhruva" and dhruva_entry["url"] == live
    assert dhruva_entry["ws_url"] == f"ws://127.0.0.1:{relay.port}/"
    assert dhruva_entry["up"] and dhruva_entry["ready"]
    assert dhruva_entry["connections"] == 1 and dhruva_entry["messages_in"] == 1
    assert dhruva_entry["busiest"] == [
        {"name": "adapter:a9", "connections": 1, "count": 1},
        {"name": "lifecycle", "connections": 0, "count": 1},  # where it also went
    ]
    assert down["up"] is False and down["ready"] is False and down["url"] == dead
    assert down["error"]  # why, for the page to show


async def test_a_relay_that_accepts_but_never_answers_shows_as_down_in_time(
    make_server: Any,
) -> None:
    async def hold(stream: anyio.abc.SocketStream) -> None:
        async with stream:
            await anyio.sleep(30)  # reads nothing, answers nothing

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, hold)
        config = Config(grace_period=1.0, dashboard_relays=(f"http://127.0.0.1:{port}",))
        async with make_server(config) as server, httpx.AsyncClient(timeout=10) as http:
            started = anyio.current_time()
            response = await http.get(f"{server.http_url}/api/servers")
            took = anyio.current_time() - started
        tg.cancel_scope.cancel()
    stalled = response.json()["servers"][1]
    assert stalled["up"] is False and stalled["error"]
    assert took < 3.5  # bounded, whatever the relay does


async def test_api_servers_with_auth_needs_a_token_and_filters_rooms(make_server: Any) -> None:
    config = Config(grace_period=1.0, auth_secret=SECRET)
    async with make_server(config) as server:
        everything = make_token(SECRET, sub="ops", channels=["*"], publish=True)
        only_a = make_token(SECRET, sub="ops", channels=["diagram:a"])
        async with (
            peer(f"{server.yjs_url}/a?token={everything}", 1),
            peer(f"{server.yjs_url}/b?token={everything}", 2),
            httpx.AsyncClient() as http,
        ):
            url = f"{server.http_url}/api/servers"
            assert (await http.get(url)).status_code == 401
            answer = await http.get(url, headers={"authorization": f"Bearer {only_a}"})
            query = await http.get(f"{url}?token={only_a}")
    assert answer.status_code == 200 and query.status_code == 200
    assert [r["name"] for r in answer.json()["servers"][0]["busiest"]] == ["a"]


def test_relay_urls_are_checked() -> None:
    assert relay_url(" http://127.0.0.1:8693/ ") == "http://127.0.0.1:8693"
    assert relay_url("https://relays.example/dhruva/") == "https://relays.example/dhruva"
    assert websocket_url("https://relays.example/dhruva") == "wss://relays.example/dhruva/"
    for bad, why in [
        ("ws://127.0.0.1:8693", "expected http"),
        ("127.0.0.1:8693", "expected http"),
        ("http://:8693", "no host"),
        ("http://127.0.0.1:99999", "Port out of range"),
        ("http://127.0.0.1:8693/?x=1", "no query"),
    ]:
        with pytest.raises(ValueError, match=why):
            relay_url(bad)
    with pytest.raises(ValueError, match="expected http"):
        CollabApp(config=Config(dashboard_relays=("ftp://x",)))


def test_serve_refuses_a_bad_dashboard_relay(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        cli_main(["serve", "--dashboard-relay", "localhost:8693"])
    assert exited.value.code == 2
    assert "expected http://HOST:PORT" in capsys.readouterr().err


def test_the_grafana_dashboard_is_valid_json_with_panels() -> None:
    board = json.loads(Path(GRAFANA).read_text())
    assert board["title"] and board["panels"]
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert queried_metrics(target["expr"]), f"{panel['title']}: queries none of ours"


async def test_the_dashboard_page_is_served(collab_server: Any) -> None:
    async with httpx.AsyncClient() as http:
        page = await http.get(f"{collab_server.http_url}/dashboard")
    if "not built" in page.text:
        pytest.skip("the web app is not built: run `make web`")
    assert page.status_code == 200 and '<div id="root">' in page.text
