"""What only the PostgreSQL store has: schema and migrations, connections, outages, secrets.

Everything the two stores share is tested against both (the ``backend``
fixture in tests/test_storage.py, test_store.py, test_durability.py...).
Here: the schema's version and ordered migrations, the refusal of newer or
foreign databases (named, password hidden), a connection cut mid-transaction,
a server of the test's own stopped mid-editing, trio, and the password kept
out of logs, ``/health``, errors and ``ps``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import psycopg
import pytest
from pycrdt import Doc, Map

from collab.app import CollabApp
from collab.config import Config
from storage import StorageError, postgres_schema
from storage.databases import open_store
from storage.postgres import PostgresStore
from storage.urls import password_of, redact, scrub
from tests.conftest import ROOT, free_port
from tests.databases import postgres_or_skip, scratch_database
from tests.postgres_server import PostgresServer
from tests.yclient import peer, wait_until

SECRET = "hunter2-Zq8"  # trust auth accepts any password: it only has to be kept hidden


@pytest.fixture
def pg() -> Iterator[str]:
    """The URL of a new, empty database on the machine's server; dropped after."""
    postgres_or_skip()
    with scratch_database() as url:
        yield url


def with_password(url: str, password: str = SECRET) -> str:
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")


def edits(doc: Doc[Any], *keys: str) -> list[bytes]:
    elements = doc.get("elements", type=Map)
    updates = []
    for key in keys:
        before = doc.get_state()
        elements[key] = {"id": key}
        updates.append(doc.get_update(before))
    return updates


def keys_of(state: bytes | None) -> set[str]:
    doc: Doc[Any] = Doc()
    if state:
        doc.apply_update(state)
    return set(doc.get("elements", type=Map).keys())


def sql(url: str, statement: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url) as conn:
        cursor = conn.execute(statement.encode(), params)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def inkwire(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collab.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


# --- URLs -------------------------------------------------------------------------


def test_urls_are_redacted_and_errors_scrubbed() -> None:
    assert redact("postgresql://ada:s%40cret@db:5432/ink") == "postgresql://ada:***@db:5432/ink"
    assert redact("postgres://ada@db/ink?password=x&sslmode=require") == (
        "postgres://ada@db/ink?password=***&sslmode=require"
    )
    assert redact("postgresql://db/ink") == "postgresql://db/ink"
    assert redact("inkwire.db") == "inkwire.db"
    assert password_of("postgresql://ada:s%40cret@db/ink") == "s@cret"
    assert password_of("postgresql://ada@db/ink") is None
    url = "postgresql://ada:s%40cret@db/ink"
    assert "cret" not in scrub("failed for s@cret and s%40cret; password=s@cret", url)


# --- schema and migrations --------------------------------------------------------


def test_an_empty_database_gets_the_current_schema(pg: str) -> None:
    store = PostgresStore(pg)
    store.close()
    version = sql(pg, "SELECT value FROM inkwire_meta WHERE key = 'schema_version'")
    assert version == [(str(postgres_schema.SCHEMA_VERSION),)]
    assert postgres_schema.migrate(pg) == (2, 2)  # opening again changes nothing


def test_a_schema_1_database_is_upgraded_in_place_with_its_data(pg: str) -> None:
    with psycopg.connect(pg) as conn:
        postgres_schema.apply(conn, 0, 1)
        conn.execute(
            "INSERT INTO diagrams (id, created, updated, last_seq, checkpoint_seq)"
            " VALUES ('old', 1, 100, 2, 0)"
        )
        doc: Doc[Any] = Doc()
        for seq, update in enumerate(edits(doc, "a", "b"), 1):
            conn.execute(
                "INSERT INTO updates (diagram, seq, first_seq, ts, origin, data)"
                " VALUES ('old', %s, %s, %s, 'ada', %s)",
                (seq, seq, 100.0 + seq, b"\x00" + update),
            )
    assert sql(pg, "SELECT value FROM inkwire_meta") == [("1",)]
    store = PostgresStore(pg)
    try:
        assert sql(pg, "SELECT value FROM inkwire_meta") == [(str(postgres_schema.SCHEMA_VERSION),)]
        assert keys_of(store.state_at("old")) == {"a", "b"}
        row = store.summaries("", 10)[0]
        assert (row.id, row.last_seq, row.summary_seq) == ("old", 2, None)  # counted later
        assert store.checkpoint("old") == 2
        assert store.summary("old") is not None and store.summary("old").live_elements == 2  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_failed_upgrade_leaves_the_database_as_it_was(pg: str) -> None:
    with psycopg.connect(pg) as conn:
        postgres_schema.apply(conn, 0, 1)
        conn.execute("CREATE INDEX diagrams_updated ON updates (ts)")  # migration 2 collides
    with pytest.raises(StorageError, match="could not upgrade the schema") as failed:
        PostgresStore(with_password(pg))
    assert redact(with_password(pg)) in str(failed.value) and SECRET not in str(failed.value)
    assert sql(pg, "SELECT value FROM inkwire_meta") == [("1",)]
    columns = sql(
        pg, "SELECT column_name FROM information_schema.columns WHERE table_name = 'diagrams'"
    )
    assert ("live_elements",) not in columns  # nothing half-done


def test_nodes_starting_together_upgrade_once(pg: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        try:
            open_store(pg).close()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=start) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    assert sql(pg, "SELECT value FROM inkwire_meta") == [(str(postgres_schema.SCHEMA_VERSION),)]


def test_a_foreign_database_is_refused(pg: str) -> None:
    sql(pg, "CREATE TABLE customers (id integer)")
    with pytest.raises(StorageError, match="not an inkwire database") as refused:
        PostgresStore(pg)
    assert redact(pg) in str(refused.value)


@pytest.mark.processes
def test_a_newer_schema_refuses_to_start_naming_the_database(pg: str) -> None:
    PostgresStore(pg).close()
    newer = str(postgres_schema.SCHEMA_VERSION + 1)
    sql(pg, "UPDATE inkwire_meta SET value = %s WHERE key = 'schema_version'", (newer,))
    with pytest.raises(StorageError, match="newer than this inkwire understands"):
        PostgresStore(pg)
    url = with_password(pg)
    for command in (["serve", "--port", "0"], ["list"], ["db", "upgrade"]):
        result = inkwire(*command, "--db", url)
        assert result.returncode in (1, 2), result.stderr
        assert f"{redact(url)}: schema version {newer} is newer" in result.stderr
        assert "Traceback" not in result.stderr and SECRET not in result.stderr
    assert sql(pg, "SELECT value FROM inkwire_meta") == [(newer,)]  # untouched


@pytest.mark.processes
def test_inkwire_db_upgrade_creates_then_reports_up_to_date(pg: str) -> None:
    first = inkwire("db", "upgrade", "--db", pg)
    assert first.returncode == 0, first.stderr
    assert f"schema version 0 -> {postgres_schema.SCHEMA_VERSION}" in first.stdout
    again = inkwire("db", "upgrade", "--db", pg)
    assert f"schema version {postgres_schema.SCHEMA_VERSION}, up to date" in again.stdout


@pytest.mark.processes
def test_an_unreachable_server_is_a_clear_startup_error() -> None:
    url = f"postgresql://postgres:{SECRET}@127.0.0.1:{free_port()}/nowhere"
    with pytest.raises(StorageError, match="cannot connect") as failed:
        open_store(url, timeout=2)
    assert SECRET not in str(failed.value)
    result = inkwire("serve", "--port", "0", "--db", url)
    assert result.returncode == 2
    assert redact(url) in result.stderr and "cannot connect" in result.stderr
    assert SECRET not in result.stderr and "Traceback" not in result.stderr


# --- connections --------------------------------------------------------------------


def test_a_connection_cut_mid_transaction_loses_nothing(pg: str) -> None:
    """The store's commit is stopped inside its transaction (waiting on a row lock) and
    its connection terminated: the append fails whole, and the retry saves everything."""

    async def run() -> None:
        store = PostgresStore(pg, timeout=2)
        doc: Doc[Any] = Doc()
        try:
            assert await store.append("d", edits(doc, "a", "b"), "ada") == 2
            with psycopg.connect(pg) as blocker:
                blocker.execute("SELECT 1 FROM diagrams WHERE id = 'd' FOR UPDATE")
                batch = edits(doc, "c", "d")
                result: list[BaseException | int] = []

                async def append() -> None:
                    try:
                        result.append(await store.append("d", batch, "ada"))
                    except StorageError as exc:
                        result.append(exc)

                async with anyio.create_task_group() as tg:
                    tg.start_soon(append)
                    waiting: list[tuple[Any, ...]] = []
                    with anyio.fail_after(10):
                        while not waiting:  # the commit is mid-transaction, waiting for the lock
                            await anyio.sleep(0.02)
                            waiting = sql(
                                pg,
                                "SELECT pid FROM pg_stat_activity WHERE application_name ="
                                " 'inkwire' AND wait_event_type = 'Lock'",
                            )
                    sql(pg, "SELECT pg_terminate_backend(%s)", (waiting[0][0],))
                blocker.rollback()
            assert isinstance(result[0], StorageError) and not store.healthy
            assert store.last_seq("d") == 2  # nothing of the cut batch
            assert await store.append("d", batch, "ada") == 4  # the room's retry
            assert store.healthy
            assert keys_of(await store.load("d")) == {"a", "b", "c", "d"}
            assert [seq for seq, *_ in store.updates("d")] == [1, 2, 3, 4]
        finally:
            store.close()

    anyio.run(run)


def test_the_store_works_under_trio(pg: str) -> None:
    """Embedded relays may run under trio: the store's worker-thread design serves both."""

    async def run() -> None:
        store = open_store(pg)
        try:
            doc: Doc[Any] = Doc()
            assert await store.append("t", edits(doc, "x", "y")) == 2
            assert keys_of(await store.load("t")) == {"x", "y"}
            await store.release("t")
            events = store.relay_events
            await anyio.to_thread.run_sync(
                lambda: events.save(
                    "svc",
                    [("ch", 1, "e", 1.0, "ev", "m1"), ("ch", 2, "e", 2.0, "ev", "m2")],
                    restarted=(),
                    keep_after={"ch": 1},
                    older_than=None,
                )
            )
            stored = await anyio.to_thread.run_sync(events.events, "svc")
            assert [(e.channel, e.offset, e.message) for e in stored] == [("ch", 2, "m2")]
        finally:
            store.close()

    anyio.run(run, backend="trio")


# --- a server of our own, stopped mid-editing ----------------------------------------


@pytest.mark.anyio
async def test_stopping_postgres_mid_editing_keeps_editing_and_catches_up(
    make_server: Any, postgres_server: PostgresServer
) -> None:
    store = PostgresStore(postgres_server.url(), timeout=1.0)
    app = CollabApp(store=store, config=Config(grace_period=0.2))
    try:
        async with make_server(app=app) as server, httpx.AsyncClient() as http:
            url = server.yjs_url + "/outage"
            async with peer(url, 1) as alice, peer(url, 2) as bob:
                await alice.send_set("before", {"id": "before"})
                await wait_until(lambda: "before" in bob.snapshot())
                await anyio.to_thread.run_sync(postgres_server.stop)  # the server is gone
                for i in range(5):
                    await alice.send_set(f"during{i}", {"id": f"during{i}"})
                await wait_until(lambda: "during4" in bob.snapshot())  # editing goes on
                with anyio.fail_after(10):
                    while (ready := await http.get(server.http_url + "/health/ready")).is_success:
                        await anyio.sleep(0.05)
                assert ready.status_code == 503 and ready.json()["storage"] == "failing"
                await anyio.to_thread.run_sync(postgres_server.start)  # back
                with anyio.fail_after(30):
                    while (await http.get(server.http_url + "/health/ready")).status_code != 200:
                        await anyio.sleep(0.1)
                await alice.send_set("after", {"id": "after"})
                await wait_until(lambda: "after" in bob.snapshot())
    finally:
        store.close()
    reopened = PostgresStore(postgres_server.url())
    try:
        saved = keys_of(reopened.state_at("outage"))
        assert saved == {"before", "after", *(f"during{i}" for i in range(5))}
    finally:
        reopened.close()


# --- secrets --------------------------------------------------------------------------


@pytest.mark.parametrize("postgres_server", [SECRET], indirect=True)
def test_the_password_comes_from_the_url_pgpassword_or_pgpass(
    postgres_server: PostgresServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that checks passwords (scram): each of libpq's sources works, and a
    refusal names the database, never a password."""
    url = postgres_server.url()
    monkeypatch.delenv("PGPASSWORD", raising=False)
    monkeypatch.setenv("PGPASSFILE", str(tmp_path / "none"))
    with pytest.raises(StorageError, match="cannot connect") as refused:
        open_store(url, timeout=3)
    assert redact(url) in str(refused.value)
    wrong = with_password(url, "not-the-Secret-9")
    with pytest.raises(StorageError, match="password authentication failed") as refused:
        open_store(wrong, timeout=3)
    assert "not-the-Secret-9" not in str(refused.value) and SECRET not in str(refused.value)

    def works(target: str) -> None:
        store = open_store(target, timeout=3)
        try:
            assert anyio.run(store.append, "d", edits(Doc(), "x")) >= 1
        finally:
            store.close()

    works(with_password(url))  # in the URL
    monkeypatch.setenv("PGPASSWORD", SECRET)
    works(url)  # from $PGPASSWORD
    monkeypatch.delenv("PGPASSWORD")
    pgpass = tmp_path / "pgpass"
    pgpass.write_text(f"127.0.0.1:{postgres_server.port}:*:postgres:{SECRET}\n")
    pgpass.chmod(0o600)
    monkeypatch.setenv("PGPASSFILE", str(pgpass))
    works(url)  # from a .pgpass file


@pytest.mark.anyio
async def test_the_password_stays_out_of_logs_health_errors_and_ps(
    server_process: Any, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    """A node given the password in its URL (warned: ps shows it) and one given it in
    $PGPASSWORD (ps shows nothing); an outage in between, so errors are logged too."""
    url = postgres_server.url()
    in_url = server_process("--db", with_password(url), "--grace", "0.2")
    os.environ["PGPASSWORD"] = SECRET
    try:
        in_env = server_process("--db", url, "--grace", "0.2")
    finally:
        del os.environ["PGPASSWORD"]
    cmdline = await anyio.Path(f"/proc/{in_env.process.pid}/cmdline").read_bytes()
    assert SECRET.encode() not in cmdline  # what ps shows
    bodies = []
    async with (
        httpx.AsyncClient() as http,
        peer(in_url.yjs_url + "/s", 1) as first,
        peer(in_env.yjs_url + "/s", 2) as second,
    ):
        for p in (first, second):
            await p.send_set("a", {"id": "a"})
        await anyio.to_thread.run_sync(postgres_server.stop)
        for node, p in ((in_url, first), (in_env, second)):
            await p.send_set("b", {"id": "b"})
            with anyio.fail_after(10):
                while (reply := await http.get(node.http_url + "/health/ready")).is_success:
                    await anyio.sleep(0.05)
            bodies.append(reply.text)
            bodies.append((await http.get(node.http_url + "/metrics")).text)
        await anyio.to_thread.run_sync(postgres_server.start)
    logs = "".join([await path.read_text() async for path in anyio.Path(tmp_path).glob("*.log")])
    assert "saving failed" in logs  # the outage was logged...
    assert "visible to every user" in logs  # ...and the password in the URL warned about
    assert redact(with_password(url)) in logs
    assert SECRET not in logs  # ...never with the password
    assert all(SECRET not in body for body in bodies)
    assert json.loads(bodies[0])["storage"] == "failing"
