"""Relay history in a database (``--db``): recovery across a restart, bounds, unclean ends.

Each test runs against SQLite and PostgreSQL (the ``backend`` fixture).

Relays run on free ports (``relays.serve`` in-process, and ``inkwire relay``
subprocesses for the restart by signal); clients are plain ``websockets``
connections written the way existing clients are.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

import relays
from relays.catalogs import BY_NAME
from relays.history import RelayHistory
from relays.hub import Hub, HubSettings
from tests.conftest import ROOT, free_port
from tests.databases import Backend
from tests.relayclient import TIMEOUT, client

pytestmark = pytest.mark.anyio

dhruva = BY_NAME["dhruva"]
CHANNEL = "adapter:a1"


async def publish(running: relays.Relay, start: int, count: int) -> None:
    for i in range(start, start + count):
        await running.broadcast.adapter_activated("a1", "org/repo", {"version": str(i)})


async def test_recovery_across_a_restart_with_db(backend: Backend) -> None:
    db = backend.target
    port = free_port()
    settings = relays.RelaySettings(history_db=db)
    async with relays.serve(dhruva, "127.0.0.1", port, settings=settings) as running:
        async with client(running.url) as c:
            reply = await c.reply(await c.subscribe(CHANNEL))
            epoch = reply["data"]["epoch"]
            await publish(running, 0, 5)
            await c.events_count(5)
            seen = c.events[-1]["offset"]
        await publish(running, 5, 100)  # missed by the client
        status = running.hub.projection.answer("get_adapter_status", {"adapter_id": "a1"})
    assert seen == 5

    async with relays.serve(dhruva, "127.0.0.1", port, settings=settings) as running:
        async with client(running.url) as c:
            sub = await c.subscribe(CHANNEL, since={"offset": seen, "epoch": epoch})
            reply = await c.reply(sub)
            assert reply["data"]["recovered"] is True
            assert reply["data"]["epoch"] == epoch and reply["data"]["offset"] == 105
            await c.events_count(100)
            assert [e["offset"] for e in c.events] == list(range(6, 106))
            assert [e["data"]["version"] for e in c.events] == [str(i) for i in range(5, 105)]
            assert {e["epoch"] for e in c.events} == {epoch}
            # requests answer from the projection refolded from the stored events
            asked = await c.reply(await c.request("get_adapter_status", {"adapter_id": "a1"}))
            assert asked["type"] == "response" and asked["data"] == status
            assert status["data"]["version"] == "104"
            # then live ones, numbered on from there
            await publish(running, 105, 1)
            await c.events_count(101)
            assert c.events[-1]["offset"] == 106 and c.events[-1]["epoch"] == epoch
            await anyio.sleep(0.05)
            assert len(c.events) == 101  # nothing twice


async def test_history_exceeded_after_restart_is_not_recovered(backend: Backend) -> None:
    db = backend.target
    port = free_port()
    settings = relays.RelaySettings(history_db=db, hub=HubSettings(history_size=10))
    async with relays.serve(dhruva, "127.0.0.1", port, settings=settings) as running:
        epoch = running.hub.epoch
        await publish(running, 0, 30)
    if backend.kind == "sqlite":
        where = ("channel = ?", [f"dhruva|{CHANNEL}"])
    else:
        where = ("service = ? AND channel = ?", ["dhruva", CHANNEL])
    rows = backend.rows(f"SELECT count(*) FROM relay_events WHERE {where[0]}", where[1])
    assert rows[0][0] == 10  # pruned to history_size in the database too
    async with relays.serve(dhruva, "127.0.0.1", port, settings=settings) as running:
        async with client(running.url) as c:
            lost = await c.reply(await c.subscribe(CHANNEL, since={"offset": 5, "epoch": epoch}))
            assert lost["data"]["recovered"] is False and lost["data"]["offset"] == 30
            await anyio.sleep(0.05)
            assert c.events == []  # never a partial replay
            await c.send(
                {
                    "type": "request",
                    "event": "subscribe",
                    "data": {"channel": CHANNEL, "since": {"offset": 20, "epoch": epoch}},
                    "id": "again",
                }
            )
            ok = await c.reply("again")
            assert ok["data"]["recovered"] is True
            await c.events_count(10)
            assert [e["offset"] for e in c.events] == list(range(21, 31))


async def test_history_age_bounds_recovery_after_restart(backend: Backend) -> None:
    db = backend.target
    port = free_port()
    settings = relays.RelaySettings(history_db=db)
    async with relays.serve(dhruva, "127.0.0.1", port, settings=settings) as running:
        epoch = running.hub.epoch
        await publish(running, 0, 3)
    backend.execute("UPDATE relay_events SET ts = ts - 7200")  # two hours ago
    async with relays.serve(dhruva, "127.0.0.1", port, settings=settings) as running:
        async with client(running.url) as c:
            reply = await c.reply(await c.subscribe(CHANNEL, since={"offset": 1, "epoch": epoch}))
            assert reply["data"]["recovered"] is False
            # caught up is still caught up: nothing missed needs no history
            await c.send(
                {
                    "type": "request",
                    "event": "subscribe",
                    "data": {"channel": CHANNEL, "since": {"offset": 3, "epoch": epoch}},
                    "id": "again",
                }
            )
            assert (await c.reply("again"))["data"]["recovered"] is True


async def test_without_db_a_restart_loses_history(tmp_path: Path) -> None:
    port = free_port()
    async with relays.serve(dhruva, "127.0.0.1", port) as running:
        epoch = running.hub.epoch
        await publish(running, 0, 3)
    async with relays.serve(dhruva, "127.0.0.1", port) as running:
        assert running.hub.epoch != epoch
        async with client(running.url) as c:
            reply = await c.reply(await c.subscribe(CHANNEL, since={"offset": 1, "epoch": epoch}))
            assert reply["data"]["recovered"] is False


async def test_a_channel_renumbered_after_eviction_replaces_its_stored_rows(
    backend: Backend,
) -> None:
    store = backend.open()
    hub = Hub(dhruva, HubSettings(max_channels=2))
    history = RelayHistory(store.relay_events, "dhruva")
    history.attach(hub)
    for adapter in ("a1", "a1", "a2", "a1"):  # a2 evicts a1; a1 comes back at offset 1
        hub.publish("adapter.activated", {"adapter_id": adapter, "repo": "r", "version": "1"})
    await history.flush()
    stored = [e for e in store.relay_events.events("dhruva") if e.channel == "adapter:a1"]
    assert [e.offset for e in stored] == [1]
    assert stored[0].epoch == hub.channels["adapter:a1"].epoch != hub.epoch
    store.close()


async def test_an_embedded_relay_keeps_history_in_the_store_it_is_given(
    backend: Backend,
) -> None:
    """``relays.serve(store=...)``: the embedding service opens the database (open_store)."""
    store = backend.open()
    port = free_port()
    async with relays.serve(dhruva, "127.0.0.1", port, store=store) as running:
        epoch = running.hub.epoch
        await publish(running, 0, 3)
    stored = [e.offset for e in store.relay_events.events("dhruva") if e.channel == CHANNEL]
    assert stored == [1, 2, 3]
    assert store.relay_events.epoch("dhruva") == epoch
    assert store.relay_events.ended_cleanly("dhruva")
    async with relays.serve(dhruva, "127.0.0.1", port, store=store) as running:
        async with client(running.url) as c:
            reply = await c.reply(await c.subscribe(CHANNEL, since={"offset": 1, "epoch": epoch}))
            assert reply["data"]["recovered"] is True
            await c.events_count(2)


# --- inkwire relay --db as a process ---------------------------------------------------


def start_relay(db: Path | str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("INKWIRE_RELAY_SECRET", None)
    command = [sys.executable, "-m", "collab.cli", "relay", "dhruva", "--port", str(port)]
    return subprocess.Popen(
        [*command, "--db", str(db), "--log-level", "WARNING"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


async def wait_up(port: int) -> None:
    with anyio.fail_after(TIMEOUT):
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/health/ready")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await anyio.sleep(0.05)


async def post(port: int, items: list[dict[str, Any]]) -> dict[str, Any]:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"http://127.0.0.1:{port}/publish", json=items)
    assert response.status_code == 202, response.text
    return dict(response.json())


def items(start: int, count: int) -> list[dict[str, Any]]:
    return [
        {"event": "adapter.activated", "data": {"adapter_id": "a1", "repo": "r", "version": str(i)}}
        for i in range(start, start + count)
    ]


def stop(process: subprocess.Popen[bytes], sig: int) -> None:
    process.send_signal(sig)
    try:
        process.wait(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.processes
async def test_inkwire_relay_db_recovers_after_sigterm_and_not_after_sigkill(
    backend: Backend,
) -> None:
    db, port = backend.target, free_port()
    url = f"ws://127.0.0.1:{port}/"
    process = start_relay(db, port)
    try:
        await wait_up(port)
        first = await post(port, items(0, 4))
        epoch = first["published"][0]["offsets"][0]["epoch"]
        await post(port, items(4, 6))
    finally:
        stop(process, signal.SIGTERM)

    process = start_relay(db, port)
    try:
        await wait_up(port)
        async with client(url) as c:
            reply = await c.reply(await c.subscribe(CHANNEL, since={"offset": 4, "epoch": epoch}))
            assert reply["data"]["recovered"] is True
            await c.events_count(6)
            assert [e["data"]["version"] for e in c.events] == [str(i) for i in range(4, 10)]
    finally:
        # killed: the last batch may never reach the database
        stop(process, signal.SIGKILL)

    process = start_relay(db, port)
    try:
        await wait_up(port)
        async with client(url) as c:
            reply = await c.reply(await c.subscribe(CHANNEL, since={"offset": 10, "epoch": epoch}))
            # a new epoch: offsets sent but never saved can never be mistaken for new ones
            assert reply["data"]["recovered"] is False
            assert reply["data"]["epoch"] != epoch and reply["data"]["offset"] == 10
    finally:
        stop(process, signal.SIGTERM)
