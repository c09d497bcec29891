"""The database stores: lossless compaction, clear errors for bad files, surviving outages.

Each test that takes ``backend`` runs against SQLite and PostgreSQL alike
(tests/databases.py); the file errors are SQLite's own (PostgreSQL's
schema and connection errors: tests/test_postgres.py).
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from collab.app import CollabApp
from collab.config import Config
from storage import StorageError
from storage.sqlite import SQLiteStore
from storage.sqlite_schema import SCHEMA_VERSION
from tests.conftest import ROOT
from tests.databases import Backend
from tests.yclient import peer, wait_until

EXAMPLES = int(os.environ.get("INKWIRE_COMPACTION_EXAMPLES", "200"))

# one step of a history: a client edits, or the store checkpoints or compacts
edit = st.tuples(
    st.just("edit"),
    st.integers(0, 2),  # client
    st.sampled_from(["a", "b", "c", "d", "e"]),  # element id
    st.one_of(st.none(), st.integers(0, 99)),  # None deletes the key
)
maintenance = st.tuples(
    st.sampled_from(["checkpoint", "compact"]), st.floats(0.0, 2.0), st.none(), st.none()
)


def elements_of(state: bytes | None) -> dict[str, Any]:
    doc: Doc[Any] = Doc()
    if state:
        doc.apply_update(state)
    return dict(doc.get("elements", type=Map).items())


@pytest.mark.slow  # Hypothesis, many examples
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    steps=st.lists(st.one_of(edit, maintenance), min_size=1, max_size=40), compress=st.booleans()
)
def test_reload_after_checkpoints_and_compaction_equals_the_live_document(
    backend: Backend, steps: list[tuple[Any, ...]], compress: bool
) -> None:
    diagram = f"d-{uuid.uuid4().hex}"  # one database per test: a diagram per example
    clients: list[Doc[Any]] = [Doc() for _ in range(3)]
    reference: Doc[Any] = Doc()  # the document that received every update

    async def run() -> None:
        store = backend.open(compress=compress, checkpoint_every=7)
        for kind, a, b, c in steps:
            if kind == "edit":
                client = clients[a]
                updates: list[bytes] = []
                subscription = client.observe(lambda event, sink=updates: sink.append(event.update))
                elements = client.get("elements", type=Map)
                if c is None:
                    if b in elements:
                        del elements[b]
                else:
                    elements[b] = {"id": b, "x": c, "by": a}
                client.unobserve(subscription)
                for update in updates:
                    reference.apply_update(update)
                    for other in clients:
                        other.apply_update(update)  # clients stay in sync, like a room
                await store.append(diagram, updates, f"client-{a}")
                # checkpoints every 7 updates, from the live state as a room would
                await store.maintain(diagram, reference.get_update)
            elif kind == "checkpoint":
                store.checkpoint(diagram)
            else:  # compact everything older than now, in slots of `a` seconds
                store.compact(diagram, older_than=time.time() + 1, frame_seconds=a)
        reloaded = await store.load(diagram)
        expected = dict(reference.get("elements", type=Map).items())
        assert elements_of(reloaded) == expected
        store.close()
        reopened = backend.open(compress=compress)
        assert elements_of(reopened.state_at(diagram)) == expected
        reopened.close()

    anyio.run(run)


def test_compaction_keeps_the_timeline_at_frame_granularity(backend: Backend) -> None:
    async def run() -> None:
        store = backend.open(checkpoint_every=10**9)
        doc: Doc[Any] = Doc()
        elements = doc.get("elements", type=Map)
        states = {}
        for i in range(30):
            updates: list[bytes] = []
            subscription = doc.observe(lambda event, sink=updates: sink.append(event.update))
            elements[f"k{i}"] = i
            doc.unobserve(subscription)
            await store.append("d", updates)
            states[i + 1] = dict(elements.items())
        removed = store.compact("d", older_than=time.time() + 1, frame_seconds=3600)
        assert removed == 29
        assert elements_of(store.state_at("d")) == states[30]
        assert elements_of(store.state_at("d", 30)) == states[30]
        assert [seq for seq, *_ in store.updates("d")] == [30]

    anyio.run(run)


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collab.cli", "serve", "--port", "0", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )


@pytest.mark.processes
def test_corrupt_database_is_a_clear_startup_error(tmp_path: Path) -> None:
    bad = tmp_path / "corrupt.db"
    bad.write_bytes(b"this is not sqlite" * 100)
    result = run_serve("--db", str(bad))
    assert result.returncode == 2
    assert str(bad) in result.stderr
    assert "not a usable SQLite database" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.processes
def test_truncated_database_is_a_clear_startup_error(tmp_path: Path) -> None:
    path = tmp_path / "truncated.db"
    SQLiteStore(path).close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])
    result = run_serve("--db", str(path))
    assert result.returncode == 2
    assert str(path) in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.processes
def test_newer_schema_is_refused_not_reset(tmp_path: Path) -> None:
    path = tmp_path / "future.db"
    SQLiteStore(path).close()
    with sqlite3.connect(path) as conn:
        conn.execute(
            "UPDATE inkwire_meta SET value = ? WHERE key = 'schema_version'",
            (str(SCHEMA_VERSION + 1),),
        )
    with pytest.raises(StorageError, match="newer than this inkwire understands"):
        SQLiteStore(path)
    result = run_serve("--db", str(path))
    assert result.returncode == 2
    assert "newer" in result.stderr
    with sqlite3.connect(path) as conn:  # untouched
        assert conn.execute("SELECT value FROM inkwire_meta").fetchone()[0] == str(
            SCHEMA_VERSION + 1
        )


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(StorageError, match="not an inkwire database"):
        SQLiteStore(path)


@pytest.mark.anyio
async def test_unwritable_database_keeps_live_editing_and_catches_up(
    make_server, backend: Backend
) -> None:
    store = backend.open(timeout=1.0)
    app = CollabApp(store=store, config=Config(grace_period=0.2))
    async with make_server(app=app) as server, httpx.AsyncClient() as http:
        url = server.yjs_url + "/outage"
        async with peer(url, 1) as alice, peer(url, 2) as bob:
            await alice.send_set("before", {"id": "before"})
            await wait_until(lambda: "before" in bob.snapshot())
            with backend.refusing_writes(store):  # every write fails (the server is gone)
                await alice.send_set("during", {"id": "during"})
                await wait_until(lambda: "during" in bob.snapshot())  # live editing goes on
                with anyio.fail_after(5):
                    while (ready := await http.get(server.http_url + "/health/ready")).is_success:
                        await anyio.sleep(0.05)
                assert ready.status_code == 503
                assert ready.json()["storage"] == "failing"
            with anyio.fail_after(15):  # the disk (server) is back
                while (await http.get(server.http_url + "/health/ready")).status_code != 200:
                    await anyio.sleep(0.05)
            await alice.send_set("after", {"id": "after"})
            await wait_until(lambda: "after" in bob.snapshot())
    reopened = backend.open()
    assert set(elements_of(reopened.state_at("outage"))) == {"before", "during", "after"}


@pytest.mark.anyio
async def test_quiet_room_checkpoints_and_saves_are_reported(make_server, backend: Backend) -> None:
    store = backend.open(checkpoint_every=10**9)
    app = CollabApp(store=store, config=Config(checkpoint_quiet=0.2, grace_period=5))
    saved = app.events.last_saved  # fed by the rooms' published hook, with the durable seq
    async with make_server(app=app) as server, peer(server.yjs_url + "/quiet", 1) as alice:
        for i in range(3):
            await alice.send_set(f"k{i}", {"id": f"k{i}"})
        await wait_until(lambda: "quiet" in saved and saved["quiet"][0] == 3)
        assert set(saved) == {"quiet"}

        def checkpoints() -> list[int]:
            return [row[0] for row in backend.rows("SELECT seq FROM checkpoints")]

        await wait_until(lambda: checkpoints() == [3], timeout=10)


@pytest.mark.anyio
async def test_live_room_checkpoints_every_k_updates(make_server, backend: Backend) -> None:
    store = backend.open(checkpoint_every=5)
    app = CollabApp(store=store, config=Config(checkpoint_quiet=60, grace_period=5))
    async with make_server(app=app) as server, peer(server.yjs_url + "/k", 1) as alice:
        for i in range(12):
            await alice.send_set(f"k{i}", {"id": f"k{i}"})
            await anyio.sleep(0.01)

        def checkpoints() -> list[int]:
            rows = backend.rows("SELECT seq FROM checkpoints ORDER BY seq")
            return [row[0] for row in rows]

        await wait_until(lambda: len(checkpoints()) >= 2, timeout=10)
        assert all(seq >= 5 for seq in checkpoints())
        reloaded = backend.open()
        assert len(elements_of(reloaded.state_at("k"))) == 12
