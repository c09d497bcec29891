"""``inkwire db copy``: SQLite to PostgreSQL and back, everything kept, resumable, verified."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from pycrdt import Doc, Map

from storage import StorageError
from storage.copy import content, copy_database
from storage.databases import Database, open_store
from tests.conftest import ROOT
from tests.databases import postgres_or_skip, scratch_database

pytestmark = pytest.mark.processes


@pytest.fixture
def pg() -> Iterator[str]:
    postgres_or_skip()
    with scratch_database() as url:
        yield url


def fill(store: Database, diagrams: int = 3, edits: int = 12) -> None:
    """Diagrams with authors, compacted frames, checkpoints, summaries, files; relay history."""

    async def write() -> None:
        for d in range(diagrams):
            name = f"plan-{d:03d}"
            doc: Doc[Any] = Doc()
            elements = doc.get("elements", type=Map)
            for i in range(edits):
                before = doc.get_state()
                elements[f"e{i}"] = {"id": f"e{i}", "type": "rectangle", "x": i}
                await store.append(name, [doc.get_update(before)], f"user-{i % 3}")
            if d % 2 == 0:
                store.compact(name, older_than=time.time() + 1, frame_seconds=3600)
            store.checkpoint(name)
            store.put_file(name, f"img{d}", "image/png", b"\x89PNG" + bytes([d]) * 50,
                           sha256=f"sha{d}", created=1000.0 + d)  # fmt: skip

    anyio.run(write)
    events = store.relay_events
    events.save("dhruva", [("adapter:a1", n, "ep1", 100.0 + n, "ev", f"m{n}") for n in (1, 2, 3)],
                restarted=(), keep_after={}, older_than=None)  # fmt: skip
    events.set_epoch("dhruva", "ep1")
    events.set_ended_cleanly("dhruva", True)


def inkwire(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collab.cli", *args],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


def everything(target: str) -> tuple[Any, ...]:
    """All a database holds, as the stores read it."""
    store = open_store(target)
    try:
        ids = store.diagram_ids()
        return (
            [store.dump(d) for d in ids],
            [content(store.state_at(d)) for d in ids],
            [store.updates_before(d, None, 1000) for d in ids],
            [store.summary(d) for d in ids],
            store.relay_dump(),
            store.relay_events.epoch("dhruva"),
            store.relay_events.ended_cleanly("dhruva"),
        )
    finally:
        store.close()


def test_copy_to_postgresql_and_back_keeps_everything(tmp_path: Path, pg: str) -> None:
    source = str(tmp_path / "source.db")
    store = open_store(source)
    fill(store)
    store.close()
    original = everything(source)
    assert original[5] == "ep1" and len(original[0]) == 3
    assert any(u.first_seq < u.seq for u in original[2][0])  # compacted frames are copied too

    there = inkwire("db", "copy", "--from", source, "--to", pg)
    assert there.returncode == 0, there.stderr
    assert "copied 3 diagrams (0 already there) and 3 relay events" in there.stdout
    assert "verified" in there.stdout and "3/3 diagrams" in there.stderr  # the progress bar
    assert everything(pg) == original

    back = str(tmp_path / "back.db")
    again = inkwire("db", "copy", "--from", pg, "--to", back, "--quiet")
    assert again.returncode == 0, again.stderr
    assert again.stderr == ""
    assert everything(back) == original
    # the copy is a working database: a server would load and go on from it
    copied = open_store(back)
    try:
        doc: Doc[Any] = Doc()
        doc.apply_update(copied.state_at("plan-001") or b"")
        before = doc.get_state()
        doc.get("elements", type=Map)["more"] = {"id": "more"}
        assert anyio.run(copied.append, "plan-001", [doc.get_update(before)]) == 13
    finally:
        copied.close()


def test_an_interrupted_copy_resumes_and_verifies(tmp_path: Path, pg: str) -> None:
    source = str(tmp_path / "many.db")
    store = open_store(source)
    fill(store, diagrams=150, edits=3)
    store.close()
    process = subprocess.Popen(
        [sys.executable, "-m", "collab.cli", "db", "copy", "--from", source, "--to", pg],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stderr is not None
    deadline = time.monotonic() + 60
    for line in process.stderr:  # a line per 5%: kill it a quarter of the way in
        if "/150 diagrams" in line and int(line.split("]")[1].split("/")[0]) >= 30:
            break
        assert time.monotonic() < deadline
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)
    process.stderr.close()
    assert process.stdout is not None
    process.stdout.close()
    partial = open_store(pg)
    try:
        count = len(partial.diagram_ids())
    finally:
        partial.close()
    assert 30 <= count < 150

    resumed = inkwire("db", "copy", "--from", source, "--to", pg, "--quiet")
    assert resumed.returncode == 0, resumed.stderr
    assert f"({count} already there)" in resumed.stdout or f"({count - 1} already there)" in (
        resumed.stdout
    )  # the diagram being written when it died was rolled back, or had committed
    assert everything(pg) == everything(source)


def test_a_copy_that_differs_is_an_error(tmp_path: Path, pg: str) -> None:
    source = str(tmp_path / "s.db")
    store = open_store(source)
    fill(store, diagrams=2)
    store.close()
    target = open_store(pg)
    try:
        fill(target, diagrams=3)  # the target holds a diagram the source lacks
    finally:
        target.close()
    with pytest.raises(StorageError, match="the target has diagrams the source lacks"):
        copy_database(source, pg, progress=False)
    missing = inkwire("db", "copy", "--from", str(tmp_path / "none.db"), "--to", pg)
    assert missing.returncode == 1 and "no database at" in missing.stderr
