"""Storage benchmarks: autosave overhead, load time with/without checkpoints, export-at-time.

Every part runs against each database store (``--stores sqlite,postgres``, the
default): a SQLite file, and a PostgreSQL database created for the part on the
server at ``$INKWIRE_BENCH_PG`` (default postgresql://postgres@127.0.0.1:5432/postgres,
the machine's; dropped at the end). Where the text below says SQLite, read
"each store"; PostgreSQL's autosave target is >= 0.8x the memory store.

What it measures
----------------
1. Autosave overhead. The Yjs fan-out scenario of bench/yjs_fanout.py (one writer, N=100
   receivers, a burst of M=2000 `Y.Map` sets written back to back, then 150 updates paced
   at 50/s; same load generator, same pinning: server on core 0, this process on core 1)
   against `inkwire serve --db FILE` (SQLite: every update committed before anyone is sent
   it) and `inkwire serve --db :memory:` (in-memory store). Each round (7 by default) starts
   a fresh server (and a fresh database file) per store; rounds alternate the order (memory
   first, then SQLite first, ...) so drift on a shared machine hits both. Reported per run: burst
   deliveries/s, p50/p99 latency, server CPU µs per delivery, paced p50/p99, the updates the
   SQLite file holds afterwards (read after the server stopped), and the file's size;
   then the medians over rounds and the ratios SQLite/memory (target: burst deliveries/s
   >= 0.9x at N=100).

2. Load time of a long history. In this process, a pycrdt Doc makes H=100 000 small
   element edits (one `elements[id] = {...}` per transaction: the first 1 000 create
   rectangle-like elements of ~20 fields, the rest move a random one of them and bump its
   version; seeded). The updates are appended with `SQLiteStore.append` in batches of 64
   to two fresh files: `checkpoint_every=500` (the default) and `checkpoint_every=10**9`
   (no checkpoint ever). Then, on a freshly opened store each time, `await store.load(id)`
   (latest checkpoint + the updates after it, applied to a pycrdt Doc in a worker thread)
   is timed: median and min over a few repetitions. The loaded content is checked against
   the generating Doc (`elements` as Python values). The files were just written, so the OS
   page cache is warm: this is CPU time, not disk time.

3. Export-at-time latency. `store.state_at(id, seq)` at random seqs in 1..H (seeded),
   synchronous, as an export would call it from a thread: median / p95 / max on the
   checkpointed file (target < 300 ms at an arbitrary point), and a few of the same seqs
   on the file without checkpoints for contrast. The full export path at the same seqs is
   timed too when it exists: a `storage.replay` function named in EXPORT_NAMES, called as
   `fn(store, diagram, seq)`, else `storage.excalidraw.to_excalidraw(state_at(...))` plus
   `json.dumps` (the `.excalidraw` file as text). The header line says whether the working
   tree had uncommitted changes under collab/ or storage/ (the servers and this process
   run the working tree).

4. Listing D=1 000 saved diagrams (`GET /api/diagrams`, `inkwire list`). Each diagram gets
   the same history of L=300 element edits over E=100 elements (generated as in 2, appended
   in batches of 64) and is checkpointed as an unloading room would; one in ten then gets
   20 more edits, not checkpointed (a room still editing, or killed). Timed on a freshly
   opened store: "before", the replay approach `list_diagrams` used until schema 2 (every
   diagram's state = latest checkpoint + tail, decoded to count its live elements;
   reproduced here as `replay_list`), against `storage.replay.list_diagrams` with
   limit=1000 (everything) and limit=100 (the landing page), which read the counts each
   checkpoint recorded. Then the one-time cost on a file whose diagrams have no counts yet
   (one written by schema 1, upgraded): the summary columns are emptied, and the first
   list (which counts, and checkpoints the diagrams with a tail) and the second are timed.
   Counts are checked equal to the replayed ones wherever the list says they are current.

Run
---
    .venv/bin/python bench/storage_bench.py [--rounds 7] [--n 100] [--history 100000]
                                            [--samples 50] [--quick] [--only 1,2,3,4]
                                            [--list-diagrams 1000] [--list-history 300]
                                            [--tmpdir DIR] [--stores sqlite,postgres]

`--quick` is a smoke run (1 round, 10 000 updates of history, fewer samples). Database
files live in a temporary directory (default: the system's, ext4 here; `--tmpdir` to
choose) that is deleted on exit; servers listen on 127.0.0.1 only, each phase has a
timeout, server logs go to bench/results/inkwire-{sqlite,memory}.log (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import importlib
import inspect
import json
import os
import random
import sqlite3
import statistics
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import psutil
from common import started
from pycrdt import Doc, Map
from yjs_fanout import (
    HOST,
    INKWIRE,
    LOADGEN_CORE,
    SERVER_CORE,
    FanoutResult,
    PhaseStats,
    Plan,
    ServerProcess,
    ServerSpec,
    free_port,
    inkwire_options,
    pin_self,
    run_fanout,
    say,
    table,
)

from storage import replay
from storage.databases import Database, open_store
from storage.excalidraw import live, load_doc, scene_of

BENCH_DIR = Path(__file__).resolve().parent
PG_ADMIN = os.environ.get("INKWIRE_BENCH_PG", "postgresql://postgres@127.0.0.1:5432/postgres")
STORE_NAMES = {"sqlite": "SQLite", "postgres": "PostgreSQL", "memory": "memory"}
AUTOSAVE_TARGETS = {"sqlite": 0.9, "postgres": 0.8}  # burst deliveries/s, x the memory store
DIAGRAM = "bench-history"
BATCH = 64  # updates per append() while building the history
POOL = 1_000  # distinct elements in the history
NO_CHECKPOINTS = 10**9
EXPORT_TARGET_MS = 300.0
EXPORT_NAMES = ("export_excalidraw", "export")  # in storage.replay: fn(store, diagram, seq)


# ---------------------------------------------------------------------------------------
# The databases: SQLite files, PostgreSQL databases
# ---------------------------------------------------------------------------------------


def pg_admin(statement: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5) as conn:
        conn.execute(statement.encode())


class Databases:
    """Where the bench's databases live: files in the temporary directory, and databases
    created on the PostgreSQL server (all dropped by :meth:`drop_all`)."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.created: list[str] = []

    def target(self, kind: str, name: str) -> str:
        """A new, empty database of ``kind``: its --db."""
        if kind == "sqlite":
            return str(self.tmp / f"{name}.db")
        database = f"inkwire_bench_{name.replace('-', '_')}_{os.getpid()}"
        pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        pg_admin(f'CREATE DATABASE "{database}"')
        self.created.append(database)
        return f"{PG_ADMIN.rsplit('/', 1)[0]}/{database}"

    def drop_all(self) -> None:
        for database in self.created:
            with contextlib.suppress(Exception):
                pg_admin(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def kind_of(target: str) -> str:
    return "postgres" if target.startswith("postgresql://") else "sqlite"


def rows(target: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """A query on a database directly (``?`` placeholders), as the bench reads its numbers."""
    if kind_of(target) == "sqlite":
        with contextlib.closing(sqlite3.connect(target)) as conn, conn:
            return list(conn.execute(sql, params).fetchall())
    import psycopg

    with psycopg.connect(target, connect_timeout=5) as conn:
        cursor = conn.execute(sql.replace("?", "%s").encode(), params)
        return [tuple(row) for row in cursor.fetchall()] if cursor.description else []


def size_of(target: str) -> int:
    """Bytes on disk: the file and its WAL, or the PostgreSQL database."""
    if kind_of(target) == "sqlite":
        path = Path(target)
        return sum(p.stat().st_size for p in path.parent.glob(path.name + "*"))
    return int(rows(target, "SELECT pg_database_size(current_database())")[0][0])


# ---------------------------------------------------------------------------------------
# 1. Autosave overhead: the fan-out scenario with SQLite on and off
# ---------------------------------------------------------------------------------------


@dataclass
class AutosaveRun:
    store: str  # "sqlite", "postgres" or "memory"
    round: int
    fanout: FanoutResult
    saved_updates: int | None = None  # rows in `updates` after the run (SQLite only)
    checkpoints: int | None = None
    db_bytes: int | None = None


def inkwire_spec(store: str, port: int, db: str) -> ServerSpec:
    argv = [str(INKWIRE), "serve", "--host", HOST, "--port", str(port), *inkwire_options()]
    return ServerSpec(
        f"inkwire-{store}",
        f"inkwire --db {db}",
        [*argv, "--db", db],
        missing=None if INKWIRE.exists() else f"{INKWIRE} not found",
    )


@contextlib.asynccontextmanager
async def inkwire_server(store: str, db: str) -> AsyncIterator[ServerProcess]:
    port = free_port()
    spec = inkwire_spec(store, port, db)
    if spec.missing:
        raise RuntimeError(spec.missing)
    async with started(spec, port) as server:
        yield server


def db_stats(target: str) -> tuple[int, int, int]:
    """(updates saved, checkpoints, bytes on disk) of a database no server uses any more."""
    updates = rows(target, "SELECT count(*) FROM updates")[0][0]
    checkpoints = rows(target, "SELECT count(*) FROM checkpoints")[0][0]
    return int(updates), int(checkpoints), size_of(target)


async def autosave_runs(
    n: int, rounds: int, plan: Plan, dbs: Databases, stores: list[str]
) -> list[AutosaveRun]:
    runs = []
    kinds = ["memory", *stores]
    for r in range(1, rounds + 1):
        shift = (r - 1) % len(kinds)  # each store goes first in turn: drift hits them all
        for store in kinds[shift:] + kinds[:shift]:
            db = ":memory:" if store == "memory" else dbs.target(store, f"autosave-{r}")
            say(f"  autosave round {r}/{rounds}: {store}, N={n} ...")
            try:
                async with asyncio.timeout(240), inkwire_server(store, db) as server:
                    fanout = await run_fanout(server, n, plan)
            except (RuntimeError, TimeoutError) as exc:
                fanout = FanoutResult(n, error=f"{type(exc).__name__}: {exc}")
            run = AutosaveRun(store, r, fanout)
            if store == "postgres" or (store == "sqlite" and os.path.exists(db)):  # noqa: ASYNC240
                run.saved_updates, run.checkpoints, run.db_bytes = db_stats(db)
            runs.append(run)
    return runs


def median_of(runs: list[AutosaveRun], get: Callable[[FanoutResult], float | None]) -> float | None:
    """The median of a metric over the runs where it was measured (its phase completed)."""
    values = [v for run in runs if (v := get(run.fanout)) is not None]
    return statistics.median(values) if values else None


def complete(phase: PhaseStats | None) -> PhaseStats | None:
    return phase if phase is not None and phase.complete else None


def burst_rate(fan: FanoutResult) -> float | None:
    b = complete(fan.burst)
    return b.deliveries_per_s if b else None


def burst_p(q: int) -> Callable[[FanoutResult], float | None]:
    return lambda fan: b.latencies_ms[q] if (b := complete(fan.burst)) else None


def paced_p(q: int) -> Callable[[FanoutResult], float | None]:
    return lambda fan: p.latencies_ms[q] if (p := complete(fan.paced)) else None


def burst_us(fan: FanoutResult) -> float | None:
    b = complete(fan.burst)
    return b.server_us_per_delivery if b else None


def ms_pair(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{a:.1f} / {b:.1f}"


def report_autosave(runs: list[AutosaveRun], n: int, plan: Plan, stores: list[str]) -> str:
    names = " and ".join(STORE_NAMES[s] for s in stores)
    out = [
        f"\n== 1. autosave overhead: fan-out N={n}, burst M={plan.burst(n)}, "
        f"paced {plan.paced} at {plan.paced_rate:.0f}/s; {names} vs :memory: ==",
    ]
    header = [
        "store",
        "round",
        "burst s",
        "deliveries/s",
        "burst p50 / p99 ms",
        "µs/deliv",
        "server",
        "upd/frame",
        "paced p50 / p99 ms",
        "saved",
        "ckpts",
        "db",
    ]
    rows = []
    for run in runs:
        b, p = run.fanout.burst, run.fanout.paced
        rows.append(
            [
                run.store,
                str(run.round),
                f"{b.seconds:.2f}" if b else "-",
                f"{b.deliveries_per_s / 1000:.1f} k" if b else "-",
                ms_pair(*b.latencies_ms) if b else "-",
                f"{b.server_us_per_delivery:.2f}" if b else "-",
                f"{b.server_pct:.0f} %" if b else "-",
                f"{b.updates_per_frame:.1f}" if b else "-",
                ms_pair(*p.latencies_ms) if p else "-",
                "-" if run.saved_updates is None else str(run.saved_updates),
                "-" if run.checkpoints is None else str(run.checkpoints),
                "-" if run.db_bytes is None else f"{run.db_bytes / 2**20:.1f} MB",
            ]
        )
    out.append(table(header, rows))
    errors = [
        f"{run.store} round {run.round}: {run.fanout.error}" for run in runs if run.fanout.error
    ]
    out += errors
    sent = 1 + plan.burst(n) + plan.paced
    out.append(
        f"(saved = rows in the database's `updates` table after the run; the writer sent {sent}"
        " updates; the room may merge several into one row)"
    )

    by = {s: [r for r in runs if r.store == s] for s in ("memory", *stores)}
    metrics: list[tuple[str, Callable[[FanoutResult], float | None], bool]] = [
        ("burst deliveries/s", burst_rate, True),
        ("burst p50 ms", burst_p(0), False),
        ("burst p99 ms", burst_p(1), False),
        ("burst server µs/delivery", burst_us, False),
        ("paced p50 ms", paced_p(0), False),
        ("paced p99 ms", paced_p(1), False),
    ]
    lines = []
    for label, get, higher_better in metrics:
        off = median_of(by["memory"], get)
        cells = [label + ("" if higher_better else " (lower=better)")]
        ratios = []
        for store in stores:
            on = median_of(by[store], get)
            cells.append(fmt_num(on, label))
            ratio = f"{on / off:.3g}x" if on is not None and off else "n/a"
            if get is burst_rate and on is not None and off:
                target = AUTOSAVE_TARGETS[store]
                ratio += f" (>= {target}x: {'met' if on / off >= target else 'MISSED'})"
            ratios.append(ratio)
        lines.append([*cells, fmt_num(off, label), *ratios])
    out.append(f"\nmedians over {len(by['memory'])} rounds; ratio = store / memory")
    header = ["metric", *(STORE_NAMES[s] for s in stores), "memory"]
    header += [f"{STORE_NAMES[s]} ratio" for s in stores]
    out.append(table(header, lines))
    for store in stores:
        pairs = [
            f"{a / b:.3g}x"
            for ra, rb in zip(by[store], by["memory"], strict=False)
            if (a := burst_rate(ra.fanout)) and (b := burst_rate(rb.fanout))
        ]
        if pairs:
            out.append(
                f"{STORE_NAMES[store]} burst deliveries/s ratio per round: {', '.join(pairs)}"
            )
    return "\n".join(out)


def fmt_num(value: float | None, label: str) -> str:
    if value is None:
        return "-"
    if "deliveries/s" in label:
        return f"{value / 1000:.1f} k"
    return f"{value:.2f}"


# ---------------------------------------------------------------------------------------
# 2 and 3. A long history: load time and state at an arbitrary seq
# ---------------------------------------------------------------------------------------


def make_history(count: int, seed: int = 1, pool: int = POOL) -> tuple[list[bytes], dict[str, Any]]:
    """`count` small element edits, one Yjs update each; and the final `elements` content.

    The first `pool` edits create elements, the rest move one of them."""
    rng = random.Random(seed)
    doc: Doc[Any] = Doc()
    elements = doc.get("elements", type=Map)
    current: dict[str, dict[str, Any]] = {}
    updates: list[bytes] = []
    sub = doc.observe(lambda event: updates.append(event.update))
    for i in range(count):
        if i < pool:
            key = f"el{i:05d}"
            value = rectangle(key, i)
        else:
            key = f"el{rng.randrange(min(pool, count)):05d}"
            old = current[key]
            value = {
                **old,
                "x": old["x"] + rng.randint(-20, 20),
                "y": old["y"] + rng.randint(-20, 20),
                "version": old["version"] + 1,
                "versionNonce": rng.randrange(2**31),
                "updated": 1_700_000_000_000 + i,
            }
        current[key] = value
        elements[key] = value
    doc.unobserve(sub)
    return updates, elements.to_py()


def rectangle(key: str, i: int) -> dict[str, Any]:
    return {
        "id": key,
        "type": "rectangle",
        "x": (i % 40) * 30,
        "y": (i // 40) * 30,
        "width": 25,
        "height": 25,
        "angle": 0,
        "strokeColor": "#1e1e1e",
        "backgroundColor": "transparent",
        "fillStyle": "solid",
        "strokeWidth": 2,
        "roughness": 1,
        "opacity": 100,
        "groupIds": [],
        "index": f"a{i:05d}",
        "seed": 1000 + i,
        "version": 1,
        "versionNonce": 2000 + i,
        "isDeleted": False,
        "updated": 1_700_000_000_000 + i,
    }


@dataclass
class HistoryDb:
    label: str
    checkpoint_every: int
    target: str  # the --db
    build_s: float = 0.0
    append_ms: list[float] = field(default_factory=list)  # each append() of BATCH updates
    db_bytes: int = 0
    checkpoints: int = 0
    last_checkpoint: int = 0
    load_ms: list[float] = field(default_factory=list)
    state_bytes: int = 0
    content_ok: bool = False
    at_ms: list[float] = field(default_factory=list)  # state_at at the random seqs
    export_ms: list[float] = field(default_factory=list)
    export_error: str | None = None


async def build(db: HistoryDb, updates: list[bytes]) -> None:
    store = open_store(db.target, checkpoint_every=db.checkpoint_every)
    live: Doc[Any] = Doc()  # the room's document: checkpoints are written from it
    try:
        t0 = time.perf_counter()
        for first in range(0, len(updates), BATCH):
            t1 = time.perf_counter()
            batch = updates[first : first + BATCH]
            for update in batch:
                live.apply_update(update)
            await store.append(DIAGRAM, batch)
            await store.maintain(DIAGRAM, live.get_update)  # as a room does after a save
            db.append_ms.append(1000 * (time.perf_counter() - t1))
        db.build_s = time.perf_counter() - t0
    finally:
        store.close()
    db.db_bytes = size_of(db.target)
    count, last = rows(
        db.target,
        "SELECT count(*), coalesce(max(seq), 0) FROM checkpoints WHERE diagram = ?",
        (DIAGRAM,),
    )[0]
    db.checkpoints, db.last_checkpoint = int(count), int(last)


async def time_load(db: HistoryDb, repeat: int, expected: dict[str, Any]) -> None:
    for _ in range(repeat):
        store = open_store(db.target, checkpoint_every=db.checkpoint_every)
        try:
            t0 = time.perf_counter()
            state = await store.load(DIAGRAM)
            db.load_ms.append(1000 * (time.perf_counter() - t0))
        finally:
            store.close()
    assert state is not None
    db.state_bytes = len(state)
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    db.content_ok = doc.get("elements", type=Map).to_py() == expected


def find_export() -> tuple[str, Callable[[Database, int], Any]] | None:
    """The export path to time, if one exists yet (other engineers' work):
    `storage.replay.<EXPORT_NAMES>(store, diagram, seq)`, else
    `json.dumps(storage.excalidraw.to_excalidraw(store.state_at(diagram, seq)))`."""
    with contextlib.suppress(ImportError):
        replay = importlib.import_module("storage.replay")
        for name in EXPORT_NAMES:
            fn = getattr(replay, name, None)
            if callable(fn) and getattr(fn, "__module__", "") == replay.__name__:
                label = f"replay.{name} + json.dumps{uncommitted('storage/replay.py')}"
                return label, functools.partial(call_replay, fn)
    with contextlib.suppress(ImportError):
        excalidraw = importlib.import_module("storage.excalidraw")
        to_excalidraw = getattr(excalidraw, "to_excalidraw", None)
        if callable(to_excalidraw):

            def export(store: Database, seq: int) -> str:
                return json.dumps(to_excalidraw(store.state_at(DIAGRAM, seq)))

            label = f"to_excalidraw + json.dumps{uncommitted('storage/excalidraw.py')}"
            return label, export
    return None


def call_replay(fn: Callable[..., Any], store: Database, seq: int) -> str:
    """Export at `seq` (awaited if need be) and serialise it: the `.excalidraw` file's text."""
    result = fn(store, DIAGRAM, seq)
    if inspect.isawaitable(result):
        result = asyncio.run(result)  # type: ignore[arg-type]
    return result if isinstance(result, str | bytes) else json.dumps(result)


def uncommitted(path: str) -> str:
    return "" if git("ls-files", "--", path) else " (uncommitted)"


def time_state_at(
    db: HistoryDb,
    seqs: list[int],
    budget_s: float,
    export: Callable[[Database, int], Any] | None,
) -> None:
    store = open_store(db.target, checkpoint_every=db.checkpoint_every)
    deadline = time.monotonic() + budget_s
    try:
        for seq in seqs:
            if time.monotonic() > deadline:
                break
            t0 = time.perf_counter()
            state = store.state_at(DIAGRAM, seq)
            db.at_ms.append(1000 * (time.perf_counter() - t0))
            assert state is not None
            if export is not None and db.export_error is None:
                t0 = time.perf_counter()
                try:
                    export(store, seq)
                except Exception as exc:  # another engineer's work in progress: report it
                    db.export_error = f"{type(exc).__name__}: {exc}"
                    continue
                db.export_ms.append(1000 * (time.perf_counter() - t0))
    finally:
        store.close()


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def stats_cells(values: list[float]) -> list[str]:
    if not values:
        return ["-", "-", "-", "0"]
    return [
        f"{statistics.median(values):.1f}",
        f"{pct(values, 0.95):.1f}",
        f"{max(values):.1f}",
        str(len(values)),
    ]


def report_history(
    dbs: list[HistoryDb], history: int, gen_s: float, export_name: str | None
) -> str:
    ck = dbs[0]
    out = [
        f"\n== 2. load a diagram with {history} updates of history "
        f"({POOL} elements, appended in batches of {BATCH}; generated in {gen_s:.1f} s) =="
    ]
    header = ["db", "build s", "appends/s", "append p50/p99/max ms", "file", "ckpts"]
    header += ["last ckpt", "after it"]
    header += ["load median ms", "min ms", "runs", "state", "content"]
    rows = []
    for db in dbs:
        rows.append(
            [
                db.label,
                f"{db.build_s:.1f}",
                f"{history / db.build_s / 1000:.1f} k" if db.build_s else "-",
                " / ".join(f"{pct(db.append_ms, q):.1f}" for q in (0.5, 0.99, 1.0)),
                f"{db.db_bytes / 2**20:.1f} MB",
                str(db.checkpoints),
                str(db.last_checkpoint) if db.checkpoints else "-",
                str(history - db.last_checkpoint),
                f"{statistics.median(db.load_ms):.1f}" if db.load_ms else "-",
                f"{min(db.load_ms):.1f}" if db.load_ms else "-",
                str(len(db.load_ms)),
                f"{db.state_bytes / 1024:.0f} KB",
                "equal" if db.content_ok else "DIFFERENT",
            ]
        )
    out.append(table(header, rows))
    out.append(
        "(load = `await store.load()` on a freshly opened store: latest checkpoint +"
        " updates after it, applied in a worker thread; appends/s = updates per second of"
        f" wall time while building, checkpoints included; append ms = one append() of {BATCH}"
        " updates, which also waits for a checkpoint it makes due; content = `elements` equals"
        " the generating Doc's)"
    )
    for ck, none in zip(dbs[::2], dbs[1::2], strict=True):
        if ck.load_ms and none.load_ms:
            speedup = statistics.median(none.load_ms) / statistics.median(ck.load_ms)
            out.append(f"{ck.label}: load time ratio no checkpoints / checkpoints: {speedup:.3g}x")

    out.append(f"\n== 3. state at a random seq in 1..{history} (`state_at(diagram, seq)`) ==")
    header = ["db", "what", "median ms", "p95 ms", "max ms", "samples", "target", "status"]
    rows = []
    checkpointed = dbs[::2]
    for db in dbs:
        target, status = "", ""
        if db in checkpointed:
            target = f"< {EXPORT_TARGET_MS:.0f} ms (p95)"
            status = "met" if db.at_ms and pct(db.at_ms, 0.95) < EXPORT_TARGET_MS else "MISSED"
        rows.append([db.label, "state_at", *stats_cells(db.at_ms), target, status])
        if db.export_ms:
            status = "met" if pct(db.export_ms, 0.95) < EXPORT_TARGET_MS else "MISSED"
            name = export_name or "export"
            rows.append([db.label, name, *stats_cells(db.export_ms), target, status])
    out.append(table(header, rows))
    for ck, none in zip(dbs[::2], dbs[1::2], strict=True):
        if ck.at_ms and none.at_ms:
            k = len(none.at_ms)
            ratio = statistics.median(none.at_ms) / statistics.median(ck.at_ms[:k])
            out.append(
                f"{ck.label}: state_at ratio no checkpoints / checkpoints, same {k} seqs"
                f" (medians): {ratio:.3g}x"
            )
    if ck.export_error:
        out.append(f"full export path ({export_name}) failed: {ck.export_error}")
    if export_name is None:
        out.append("full export path: not timed (no storage.replay export, no storage.excalidraw)")
    return "\n".join(out)


async def history_bench(
    history: int, samples: int, contrast: int, places: Databases, stores: list[str], seed: int
) -> tuple[list[HistoryDb], float, str | None]:
    say(f"  generating {history} element edits ...")
    t0 = time.perf_counter()
    updates, expected = make_history(history, seed)
    gen_s = time.perf_counter() - t0
    dbs = []  # per store: checkpointed, then without checkpoints
    for kind in stores:
        name = STORE_NAMES[kind]
        dbs += [
            HistoryDb(f"{name}, checkpoint_every=500", 500, places.target(kind, "history-ckpt")),
            HistoryDb(
                f"{name}, no checkpoints", NO_CHECKPOINTS, places.target(kind, "history-none")
            ),
        ]
    for db in dbs:
        say(f"  building {db.label} ...")
        await build(db, updates)
    del updates
    for db, repeat in zip(dbs, (9, 3) * len(stores), strict=True):
        say(f"  loading {db.label} x{repeat} ...")
        await time_load(db, repeat, expected)
    rng = random.Random(seed + 1)
    seqs = [rng.randint(1, history) for _ in range(samples)]
    found = find_export()
    export_name, export = found if found else (None, None)
    for ck, none in zip(dbs[::2], dbs[1::2], strict=True):
        say(f"  {ck.label}: state_at at {samples} random seqs ...")
        await anyio.to_thread.run_sync(time_state_at, ck, seqs, 120.0, export)
        say(f"  {none.label}: state_at at {contrast} of them ...")
        await anyio.to_thread.run_sync(time_state_at, none, seqs[:contrast], 90.0, None)
    return dbs, gen_s, export_name


# ---------------------------------------------------------------------------------------
# 4. Listing many diagrams
# ---------------------------------------------------------------------------------------

LIST_ELEMENTS = 100
LIST_TAIL = 20  # edits after the last checkpoint, in one diagram of LIST_TAIL_EVERY
LIST_TAIL_EVERY = 10


def replay_list(store: Database) -> list[dict[str, Any]]:
    """`storage.replay.list_diagrams` as it was before schema 2: every diagram replayed."""
    rows = sorted(store.summaries("", 2**31 - 1))  # every diagram, by id
    result = []
    for diagram, updated, seq, *_ in rows:
        state = store.state_at(diagram, int(seq)) or b""
        elements = scene_of(load_doc(state)).elements
        result.append(
            {
                "id": diagram,
                "elements": len(live(elements)),
                "last_edit": replay.iso(float(updated)),
                "size": len(state),
                "seq": int(seq),
            }
        )
    return result


@dataclass
class ListBench:
    kind: str
    diagrams: int
    history: int
    build_s: float = 0.0
    db_bytes: int = 0
    state_bytes: int = 0
    timings: dict[str, list[float]] = field(default_factory=dict)  # label -> ms per call
    checked: int = 0  # diagrams whose count was compared with the replayed one
    mismatches: int = 0


async def build_list_db(bench: ListBench, target: str, updates: list[bytes]) -> None:
    store = open_store(target, checkpoint_every=NO_CHECKPOINTS)
    try:
        t0 = time.perf_counter()
        for i in range(bench.diagrams):
            diagram = f"diagram-{i:05d}"
            for first in range(0, bench.history, BATCH):
                await store.append(diagram, updates[first : min(first + BATCH, bench.history)])
            store.checkpoint(diagram)  # the room unloads
            if i % LIST_TAIL_EVERY == 0:
                await store.append(diagram, updates[bench.history :])
        bench.build_s = time.perf_counter() - t0
    finally:
        store.close()
    bench.db_bytes = size_of(target)


def timed(bench: ListBench, label: str, target: str, repeat: int, fn: Callable[..., Any]) -> Any:
    result = None
    for _ in range(repeat):
        store = open_store(target)
        try:
            t0 = time.perf_counter()
            result = fn(store)
            bench.timings.setdefault(label, []).append(1000 * (time.perf_counter() - t0))
        finally:
            store.close()
    return result


def list_bench(kind: str, diagrams: int, history: int, places: Databases, seed: int) -> ListBench:
    bench = ListBench(kind, diagrams, history)
    say(f"  generating {history} + {LIST_TAIL} edits over {LIST_ELEMENTS} elements ...")
    updates, _ = make_history(history + LIST_TAIL, seed, pool=LIST_ELEMENTS)
    path = places.target(kind, "list")
    say(f"  building {diagrams} diagrams in {STORE_NAMES[kind]} ...")
    anyio.run(build_list_db, bench, path, updates)
    everything = functools.partial(replay.list_diagrams, limit=replay.LIST_MAX_PAGE)
    say("  listing: replayed (before) ...")
    before = timed(bench, "before: replay every diagram", path, 3, replay_list)
    say("  listing: recorded counts (after) ...")
    after = timed(bench, "after: list_diagrams limit=1000", path, 20, everything)
    timed(bench, "after: list_diagrams limit=100", path, 20, replay.list_diagrams)
    bench.state_bytes = int(statistics.mean(d["size"] for d in before))
    replayed = {d["id"]: d for d in before}
    for d in after:
        if d["elements_seq"] == d["seq"]:
            bench.checked += 1
            old = replayed[d["id"]]
            bench.mismatches += (d["elements"], d["size"]) != (old["elements"], old["size"])
    bench.mismatches += len(after) != len(before)
    say("  listing a file with no counts yet (upgraded from schema 1) ...")
    rows(path, "UPDATE diagrams SET live_elements = NULL, state_bytes = NULL, summary_seq = NULL")
    timed(bench, "no counts yet: first list, limit=1000", path, 1, everything)
    timed(bench, "no counts yet: second list, limit=1000", path, 1, everything)
    return bench


def report_list(bench: ListBench) -> str:
    tails = len(range(0, bench.diagrams, LIST_TAIL_EVERY))
    out = [
        f"\n== 4. {STORE_NAMES[bench.kind]}: list {bench.diagrams} diagrams"
        f" ({bench.history} edits over {LIST_ELEMENTS}"
        f" elements each, checkpointed; {tails} with {LIST_TAIL} edits after it;"
        f" state {bench.state_bytes / 1024:.0f} KB each, file"
        f" {bench.db_bytes / 2**20:.0f} MB, built in {bench.build_s:.0f} s) =="
    ]
    rows = []
    for label, values in bench.timings.items():
        rows.append(
            [
                label,
                f"{statistics.median(values):.1f}",
                f"{min(values):.1f}",
                f"{max(values):.1f}",
                str(len(values)),
            ]
        )
    out.append(table(["what", "median ms", "min ms", "max ms", "runs"], rows))
    before = bench.timings.get("before: replay every diagram")
    for label in ("after: list_diagrams limit=1000", "after: list_diagrams limit=100"):
        after = bench.timings.get(label)
        if before and after:
            speedup = statistics.median(before) / statistics.median(after)
            out.append(f"before / {label.removeprefix('after: ')}: {speedup:.0f}x")
    status = "equal" if bench.mismatches == 0 else f"{bench.mismatches} DIFFERENT"
    out.append(
        f"counts and sizes vs replayed, for the {bench.checked} diagrams listed as current: "
        f"{status} (the {tails} with a tail are listed as of their checkpoint)"
    )
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def git(*args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(BENCH_DIR.parent), *args], capture_output=True, text=True, check=False
    ).stdout.strip()


def machine_note() -> str:
    load = os.getloadavg()
    dirty = git("status", "--short", "--", "collab", "storage").splitlines()
    tree = (
        f"; working tree differs from it in {len(dirty)} files under collab/ storage/"
        f" ({', '.join(line.split()[-1] for line in dirty)}): results reflect the working tree"
        if dirty
        else ""
    )
    return (
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f};"
        f" commit {git('rev-parse', '--short', 'HEAD')}{tree}"
    )


class OtherLoad:
    """CPU that processes other than this one and its children used while the bench ran."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.busy0 = self.busy()
        self.mine0 = self.mine()

    @staticmethod
    def busy() -> float:
        times = psutil.cpu_times()
        return sum(times) - times.idle - getattr(times, "iowait", 0.0)

    @staticmethod
    def mine() -> float:
        times = os.times()
        return times.user + times.system + times.children_user + times.children_system

    def note(self) -> str:
        wall = time.monotonic() - self.t0
        other = (self.busy() - self.busy0) - (self.mine() - self.mine0)
        cores = psutil.cpu_count() or 1
        return (
            f"other processes used {100 * max(other, 0.0) / wall:.0f} % of one core on average"
            f" during the {wall:.0f} s run (machine: {cores} cores = {100 * cores} %)"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="receivers (default 100)")
    parser.add_argument("--rounds", type=int, help="SQLite/memory pairs (default 7)")
    parser.add_argument("--history", type=int, help="updates of history (default 100000)")
    parser.add_argument("--samples", type=int, help="random seqs for state_at (default 50)")
    parser.add_argument(
        "--only", default="1,2,3,4", help="which parts: 1 autosave, 2,3 history, 4 list"
    )
    parser.add_argument("--list-diagrams", type=int, help="diagrams to list (default 1000)")
    parser.add_argument("--list-history", type=int, help="edits per diagram (default 300)")
    parser.add_argument("--quick", action="store_true", help="smoke run: smaller everything")
    parser.add_argument("--tmpdir", type=Path, help="where the database files go")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--stores", default="sqlite,postgres", help="database stores to measure (and memory)"
    )
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 7)
    args.history = args.history or (10_000 if args.quick else 100_000)
    args.samples = args.samples or (10 if args.quick else 50)
    args.list_diagrams = args.list_diagrams or (200 if args.quick else 1_000)
    args.list_history = args.list_history or (LIST_ELEMENTS if args.quick else 300)
    args.parts = {x.strip() for x in args.only.split(",")}
    args.stores = [x.strip() for x in args.stores.split(",") if x.strip()]
    unknown = set(args.stores) - set(AUTOSAVE_TARGETS)
    if unknown:
        parser.error(f"--stores: unknown {sorted(unknown)} (sqlite, postgres)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    note = machine_note()
    plan = Plan(ns=[args.n], quick=args.quick)
    pin_self()
    others = OtherLoad()
    print(
        f"inkwire storage benchmarks: servers on core {SERVER_CORE}, this process (load"
        f" generator, history builder) on core {LOADGEN_CORE}; {note}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="inkwire-bench-", dir=args.tmpdir) as name:
        places = Databases(Path(name))
        try:
            if "1" in args.parts:
                say("autosave overhead:")
                runs = asyncio.run(autosave_runs(args.n, args.rounds, plan, places, args.stores))
                print(report_autosave(runs, args.n, plan, args.stores), flush=True)
            if args.parts & {"2", "3"}:
                say("history:")
                dbs, gen_s, export_name = anyio.run(
                    history_bench, args.history, args.samples, 5, places, args.stores, args.seed
                )
                print(report_history(dbs, args.history, gen_s, export_name), flush=True)
            if "4" in args.parts:
                say("list:")
                for kind in args.stores:
                    bench = list_bench(
                        kind, args.list_diagrams, args.list_history, places, args.seed
                    )
                    print(report_list(bench), flush=True)
        finally:
            places.drop_all()
    print(f"\n{others.note()}")


if __name__ == "__main__":
    main()
