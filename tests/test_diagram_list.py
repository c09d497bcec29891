"""The list of saved diagrams: counts kept with checkpoints, newest first, limit and prefix.

``list_diagrams`` reads the summary (live elements, state size, the seq they
describe) that each checkpoint records, instead of replaying every diagram;
these tests hold it to the real live count of the saved state, through
edits, tombstones, restores, imports and compaction, and check that a file
written by schema 1 is upgraded in place.
"""

from __future__ import annotations

import json
import sqlite3
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
from storage import StorageError, replay
from storage.databases import Database
from storage.sqlite import SQLiteStore
from storage.sqlite_schema import SCHEMA_VERSION, encode_blob
from tests import sqlite_file
from tests.databases import Backend
from tests.test_replay_cli import inkwire
from tests.yclient import peer, wait_until


def element(eid: str, version: int = 1, **extra: Any) -> dict[str, Any]:
    return {"id": eid, "type": "rectangle", "index": "a0", "version": version, **extra}


def true_count(store: Database, diagram: str, seq: int) -> int:
    """Live elements of the saved state at ``seq``, the slow way (replay + export)."""
    return len(replay.export(store, diagram, seq)["elements"])


def edit(store: Database, diagram: str, change: Any, origin: str = "test") -> None:
    """One client edit against the saved state, appended as a room would."""
    doc: Doc[Any] = Doc()
    state = store.state_at(diagram)
    if state:
        doc.apply_update(state)
    before = doc.get_state()
    change(doc.get("elements", type=Map))
    anyio.run(store.append, diagram, [doc.get_update(before)], origin)


def listed(store: Database, **kwargs: Any) -> dict[str, dict[str, Any]]:
    return {d["id"]: d for d in replay.list_diagrams(store, **kwargs)}


def check_summary(store: Database, diagram: str) -> dict[str, Any]:
    entry = listed(store, prefix=diagram)[diagram]
    seq, counted = entry["seq"], entry["elements_seq"]
    assert counted <= seq
    assert entry["elements"] == true_count(store, diagram, counted)
    assert entry["size"] == len(store.state_at(diagram, counted) or b"")
    return entry


# --- correctness of the counts ----------------------------------------------------

step = st.one_of(
    st.tuples(st.just("set"), st.sampled_from("abcde"), st.integers(1, 9)),
    st.tuples(st.just("tombstone"), st.sampled_from("abcde"), st.just(0)),
    st.tuples(st.just("remove"), st.sampled_from("abcde"), st.just(0)),
    st.tuples(st.just("junk"), st.sampled_from("abcde"), st.just(0)),
    st.tuples(st.sampled_from(["maintain", "release", "list"]), st.just(""), st.just(0)),
    st.tuples(st.just("restore"), st.just(""), st.integers(0, 100)),
)


@pytest.mark.slow  # Hypothesis, many examples
@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(steps=st.lists(step, min_size=1, max_size=25))
def test_listed_count_is_the_live_count_at_its_seq(
    backend: Backend, steps: list[tuple[str, str, int]]
) -> None:
    store = backend.open(checkpoint_every=2, compress=True)
    d = f"d-{uuid.uuid4().hex}"  # one database per test: a diagram per example
    try:
        for kind, key, n in steps:
            if kind == "set":
                edit(store, d, lambda e, key=key, n=n: e.__setitem__(key, element(key, n)))
            elif kind == "tombstone":  # Excalidraw's delete: a tombstone, not counted
                edit(
                    store,
                    d,
                    lambda e, key=key: e.__setitem__(key, element(key, 99, isDeleted=True)),
                )
            elif kind == "remove":
                edit(store, d, lambda e, key=key: key in e and e.pop(key))
            elif kind == "junk":  # a peer's junk that is no element
                edit(store, d, lambda e, key=key: e.__setitem__(key, "not an element"))
            elif kind == "maintain":  # a room after a save, its document all saved
                anyio.run(store.maintain, d, lambda: store.state_at(d))
            elif kind == "release":  # a room unloading: checkpoint and compact everything
                store.checkpoint(d)
                store.compact(d, older_than=time.time() + 1, frame_seconds=3600)
            elif kind == "restore":
                last = store.last_seq(d)
                if last is not None:
                    anyio.run(replay.restore_in_store, store, d, last * n // 100)
            if kind == "list" and store.last_seq(d) is not None:
                check_summary(store, d)
        if store.last_seq(d) is not None:
            check_summary(store, d)
            store.checkpoint(d)  # as on unload: then the count is current
            entry = check_summary(store, d)
            assert entry["elements_seq"] == entry["seq"]
            assert entry["elements"] == len(replay.export(store, d)["elements"])
    finally:
        store.close()


def test_counts_follow_edits_deletes_restores_imports_and_compaction(backend: Backend) -> None:
    store = backend.open(checkpoint_every=10**9)
    edit(store, "d", lambda e: [e.__setitem__(k, element(k)) for k in "abc"])
    store.checkpoint("d")
    assert (listed(store)["d"]["elements"], listed(store)["d"]["elements_seq"]) == (3, 1)

    edit(store, "d", lambda e: e.__setitem__("b", element("b", 2, isDeleted=True)))
    stale = listed(store)["d"]  # not checkpointed yet: the count says which seq it is of
    assert (stale["elements"], stale["elements_seq"], stale["seq"]) == (3, 1, 2)
    store.checkpoint("d")
    assert (listed(store)["d"]["elements"], listed(store)["d"]["elements_seq"]) == (2, 2)

    anyio.run(replay.restore_in_store, store, "d", 1)  # b comes back, as an edit
    assert (listed(store)["d"]["elements"], listed(store)["d"]["elements_seq"]) == (3, 3)

    scene = {"type": "excalidraw", "elements": [{"id": "z", "type": "ellipse"}]}
    anyio.run(replay.import_in_store, store, "d", json.dumps(scene).encode())
    assert (listed(store)["d"]["elements"], listed(store)["d"]["elements_seq"]) == (1, 4)

    store.compact("d", older_than=time.time() + 1, frame_seconds=3600)
    assert backend.rows("SELECT count(*) FROM updates")[0][0] == 1
    assert check_summary(store, "d")["elements"] == 1

    # mid-session checkpoints (maintain) record no count; the quiet one (release) does
    store.checkpoint_every = 1
    edit(store, "d", lambda e: e.__setitem__("y", element("y")))
    anyio.run(store.maintain, "d", lambda: store.state_at("d"))
    assert backend.rows("SELECT max(seq) FROM checkpoints") == [(5,)]
    assert (listed(store)["d"]["elements"], listed(store)["d"]["elements_seq"]) == (1, 4)
    anyio.run(store.release, "d")
    assert (listed(store)["d"]["elements"], listed(store)["d"]["elements_seq"]) == (2, 5)
    store.close()
    reopened = backend.open()
    assert listed(reopened)["d"]["elements"] == 2


def test_a_diagram_never_checkpointed_is_counted_once_and_remembered(
    backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = backend.open(checkpoint_every=10**9)
    edit(store, "d", lambda e: [e.__setitem__(k, element(k)) for k in "ab"])
    edit(store, "d", lambda e: e.__setitem__("c", element("c")))
    assert backend.rows("SELECT count(*) FROM checkpoints")[0][0] == 0
    entry = listed(store)["d"]
    assert (entry["elements"], entry["elements_seq"], entry["seq"]) == (3, 2, 2)
    # the count was computed by checkpointing: remembered, and the next load is one read
    assert backend.rows("SELECT seq FROM checkpoints") == [(2,)]
    summary = backend.rows("SELECT live_elements, summary_seq FROM diagrams")
    assert summary == [(3, 2)]
    calls: list[str] = []
    monkeypatch.setattr(store, "checkpoint", calls.append)
    assert listed(store)["d"]["elements"] == 3 and calls == []


# --- order, limit, prefix -----------------------------------------------------------


def test_newest_edit_first_with_limit_and_prefix(backend: Backend) -> None:
    store = backend.open()
    names = ["plan-a", "plan-b", "notes", "plan-c", "pla"]
    for name in names:
        edit(store, name, lambda e, name=name: e.__setitem__(name, element(name)))
    for i, name in enumerate(names):  # edit times: plan-a oldest ... pla newest; one tie
        backend.execute("UPDATE diagrams SET updated = ? WHERE id = ?", (1000.0 + min(i, 3), name))
    ids = [d["id"] for d in replay.list_diagrams(store)]
    assert ids == ["pla", "plan-c", "notes", "plan-b", "plan-a"]  # the tie by name
    assert [d["id"] for d in replay.list_diagrams(store, limit=2)] == ["pla", "plan-c"]
    assert [d["id"] for d in replay.list_diagrams(store, prefix="plan-")] == [
        "plan-c",
        "plan-b",
        "plan-a",
    ]
    assert [d["id"] for d in replay.list_diagrams(store, prefix="pla", limit=2)] == [
        "pla",
        "plan-c",
    ]
    assert replay.list_diagrams(store, prefix="Plan") == []  # case matters, as in names
    assert replay.list_diagrams(store, prefix="plan-c")[0]["elements"] == 1
    assert len(replay.list_diagrams(store, limit=0)) == 1  # at least one
    assert replay.list_diagrams(store)[0]["last_edit"] == replay.iso(1003.0)
    for bad in ("a b", "%", "x" * 129, "plan/"):
        with pytest.raises(replay.BadRequest, match="prefix"):
            replay.list_diagrams(store, prefix=bad)


# --- schema 1 files -----------------------------------------------------------------

V1_SCHEMA = """
CREATE TABLE "inkwire_meta" ("key" TEXT PRIMARY KEY, "value" TEXT);
CREATE TABLE "diagrams" ("id" TEXT PRIMARY KEY, "created" REAL, "updated" REAL,
    "last_seq" INTEGER, "checkpoint_seq" INTEGER);
CREATE TABLE "updates" ("diagram" TEXT, "seq" INTEGER, "first_seq" INTEGER, "ts" REAL,
    "origin" TEXT, "data" BLOB, PRIMARY KEY ("diagram", "seq"));
CREATE TABLE "checkpoints" ("diagram" TEXT, "seq" INTEGER, "ts" REAL, "state" BLOB,
    PRIMARY KEY ("diagram", "seq"));
CREATE TABLE "files" ("diagram" TEXT, "file_id" TEXT, "mime" TEXT, "sha256" TEXT,
    "size" INTEGER, "created" REAL, "data" BLOB, PRIMARY KEY ("diagram", "file_id"));
CREATE TABLE "relay_events" ("channel" TEXT, "offset" INTEGER, "epoch" TEXT, "ts" REAL,
    "event" TEXT, "data" TEXT, PRIMARY KEY ("channel", "offset"));
INSERT INTO inkwire_meta VALUES ('schema_version', '1');
"""


def write_v1_file(path: Path) -> dict[str, bytes]:
    """A database as inkwire with schema 1 left it; returns each diagram's final state.

    ``full``: checkpointed at its last seq; ``tail``: a checkpoint, then two
    more updates; ``fresh``: never checkpointed (the server was killed).
    """
    states = {}
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA)
        for n, (name, checkpoint_at) in enumerate((("full", 3), ("tail", 1), ("fresh", 0))):
            doc: Doc[Any] = Doc()
            elements = doc.get("elements", type=Map)
            updates = []
            for change in (
                {k: element(k) for k in "abc"},
                {"b": element("b", 2, isDeleted=True)},
                {f"{name}-x": element(f"{name}-x")},
            ):
                before = doc.get_state()
                with doc.transaction():
                    for key, value in change.items():
                        elements[key] = value
                updates.append(doc.get_update(before))
                seq = len(updates)
                conn.execute(
                    "INSERT INTO updates VALUES (?, ?, ?, ?, ?, ?)",
                    (name, seq, seq, 100.0 + seq, "ada", encode_blob(updates[-1], False)),
                )
                if seq == checkpoint_at:
                    conn.execute(
                        "INSERT INTO checkpoints VALUES (?, ?, ?, ?)",
                        (name, seq, 100.0 + seq, encode_blob(doc.get_update(), True)),
                    )
            conn.execute(
                "INSERT INTO diagrams VALUES (?, 100.0, ?, 3, ?)", (name, 200.0 + n, checkpoint_at)
            )
            states[name] = doc.get_update()
    return states


def test_a_schema_1_file_is_upgraded_in_place(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    states = write_v1_file(path)
    store = SQLiteStore(path)
    assert SCHEMA_VERSION == 2
    version = sqlite_file.rows(path, "SELECT value FROM inkwire_meta WHERE key = 'schema_version'")
    assert version == [("2",)]
    columns = {row[1] for row in sqlite_file.rows(path, "PRAGMA table_info(diagrams)")}
    assert {"live_elements", "state_bytes", "summary_seq"} <= columns
    assert ("diagrams_updated",) in sqlite_file.rows(path, "SELECT name FROM sqlite_master")
    for name, state in states.items():  # the history reads as before
        doc: Doc[Any] = Doc()
        doc.apply_update(store.state_at(name) or b"")
        expected: Doc[Any] = Doc()
        expected.apply_update(state)
        assert doc.get("elements", type=Map).to_py() == expected.get("elements", type=Map).to_py()
    summaries = sqlite_file.rows(path, "SELECT summary_seq FROM diagrams")
    assert [row[0] for row in summaries] == [None] * 3

    listing = replay.list_diagrams(store)  # counted once, each, and remembered
    assert [(d["id"], d["elements"], d["elements_seq"]) for d in listing] == [
        ("fresh", 3, 3),
        ("tail", 3, 3),
        ("full", 3, 3),
    ]
    assert sqlite_file.rows(path, "SELECT diagram, seq FROM checkpoints ORDER BY diagram, seq") == [
        ("fresh", 3),
        ("full", 3),  # already current: only its summary was written
        ("tail", 1),
        ("tail", 3),
    ]
    store.close()
    again = SQLiteStore(path)  # opening an upgraded file changes nothing
    assert replay.list_diagrams(again) == listing
    again.close()


def test_a_failed_upgrade_leaves_the_file_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    write_v1_file(path)
    with sqlite3.connect(path) as conn:  # a file the upgrade cannot apply to
        conn.execute("CREATE TABLE diagrams_updated (x)")
    with pytest.raises(StorageError, match="diagrams_updated"):
        SQLiteStore(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT value FROM inkwire_meta").fetchone() == ("1",)
        columns = {row[1] for row in conn.execute("PRAGMA table_info(diagrams)")}
        assert "live_elements" not in columns  # no half-upgraded schema


@pytest.mark.processes
def test_the_cli_lists_with_limit_and_prefix(backend: Backend) -> None:
    db = backend.target
    store = backend.open(checkpoint_every=10**9)
    for name in ("plan-a", "plan-b", "notes"):
        edit(store, name, lambda e, name=name: e.__setitem__(name, element(name)))
    store.checkpoint("plan-a")
    edit(store, "plan-a", lambda e: e.__setitem__("more", element("more")))  # not counted yet
    store.close()
    out = json.loads(inkwire("list", "--json", "--db", str(db), "--prefix", "plan").stdout)
    assert [(d["id"], d["elements"]) for d in out] == [("plan-a", 1), ("plan-b", 1)]
    assert out[0]["elements_seq"] == 1 and out[0]["seq"] == 2
    text = inkwire("list", "--db", str(db), "--prefix", "plan-a", "--limit", "1").stdout
    assert "~1" in text and "later edits are not counted yet" in text
    bad = inkwire("list", "--db", str(db), "--prefix", "no/such", check=False)
    assert bad.returncode == 1 and "prefix" in bad.stderr


# --- the REST API -------------------------------------------------------------------


@pytest.mark.anyio
async def test_api_lists_newest_first_and_counts_catch_up_with_checkpoints(
    make_server: Any, backend: Backend
) -> None:
    store = backend.open(checkpoint_every=10**9)
    app = CollabApp(store=store, config=Config(checkpoint_quiet=0.3, grace_period=5))
    async with make_server(app=app) as server, httpx.AsyncClient(base_url=server.http_url) as http:

        async def listing(**params: Any) -> list[dict[str, Any]]:
            reply = await http.get("/api/diagrams", params=params)
            assert reply.status_code == 200, reply.text
            body: list[dict[str, Any]] = reply.json()
            return body

        for name in ("plan-a", "notes", "plan-b"):
            async with peer(f"{server.yjs_url}/{name}", 3) as p:
                await p.send_set("x", element("x"))
                await wait_until(lambda name=name: store.last_seq(name) is not None)
            await anyio.sleep(0.02)
        assert [d["id"] for d in await listing()] == ["plan-b", "notes", "plan-a"]
        assert [d["id"] for d in await listing(limit=2)] == ["plan-b", "notes"]
        assert [d["id"] for d in await listing(prefix="plan")] == ["plan-b", "plan-a"]
        assert {d["elements"] for d in await listing()} == {1}
        for query in ("limit=-1", "limit=ten", "prefix=a%20b", "prefix=%2F"):
            reply = await http.get(f"/api/diagrams?{query}")
            assert reply.status_code == 400 and "error" in reply.json()

        async with peer(f"{server.yjs_url}/plan-a", 4) as p:
            with p.doc.transaction():
                p.set("y", element("y"))
                p.set("z", element("z"))
                p.set("x", element("x", 2, isDeleted=True))
            await p.flush()

            async def current() -> bool:
                top = (await listing(limit=1))[0]
                return top["id"] == "plan-a" and top["elements_seq"] == top["seq"]

            with anyio.fail_after(5):  # the room checkpoints once quiet: the count catches up
                while not await current():
                    await anyio.sleep(0.05)
            assert (await listing(limit=1))[0]["elements"] == 2
            reply = await http.post("/api/diagrams/plan-a/restore", json={"at": 1})
            assert reply.status_code == 200
            await wait_until(lambda: p.snapshot()["x"].get("isDeleted") is not True)
            with anyio.fail_after(5):
                while not (await current() and (await listing(limit=1))[0]["elements"] == 1):
                    await anyio.sleep(0.05)


@pytest.mark.anyio
async def test_memory_store_lists_with_limit_and_prefix(collab_server: Any) -> None:
    async with httpx.AsyncClient(base_url=collab_server.http_url) as http:
        for name in ("m-b", "m-a", "other"):
            async with peer(f"{collab_server.yjs_url}/{name}", 5) as p:
                await p.send_set("a", element("a"))
                await anyio.sleep(0.05)
        reply = (await http.get("/api/diagrams", params={"prefix": "m-", "limit": 1})).json()
        assert [(d["id"], d["elements"]) for d in reply] == [("m-a", 1)]
        assert (await http.get("/api/diagrams?prefix=a%20b")).status_code == 400
