"""Replay of saved diagrams: list, export (now or then), history, restore, import.

One function per operation, used by both the REST API and the CLI, so the
two cannot drift. They read through :class:`storage.store.DiagramArchive`;
reads are synchronous database work (run them in a worker thread from
async code). The edits (:func:`restore_update`, and for an import
:func:`storage.excalidraw.forward_edit` to the scene :func:`parse_import`
returns) only *compute* a Yjs update against a given current state and
leave applying it to the caller: the API applies it through the live room
(saved, then sent to every client), the CLI appends it to the database
when no server runs.

The state at any seq is the latest checkpoint at or before it plus the
updates after it (``DiagramArchive.state_at``), so the cost of an export
does not grow with the length of the history.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio.to_thread
from pycrdt import Map

from storage.excalidraw import (
    Scene,
    forward_edit,
    load_doc,
    parse_excalidraw,
    scene_of,
    to_excalidraw,
)
from storage.files import save_file
from storage.names import NAME_PREFIX

if TYPE_CHECKING:
    from storage.store import DiagramArchive, DiagramSummary, FileStore, LoggedUpdate

EMPTY = b"\x00\x00"  # the Yjs update that changes nothing
HISTORY_PAGE = 50
HISTORY_MAX_PAGE = 1000
LIST_PAGE = 100
LIST_MAX_PAGE = 1000


class NotFound(LookupError):
    """No such diagram, or no version at that point."""


class BadRequest(ValueError):
    """An argument that cannot be understood (a malformed ``at``...)."""


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds")


# --- "at": a seq or a moment ----------------------------------------------------


def parse_at(text: str | int) -> int | datetime:
    """An ``at`` argument: a non-negative seq, or an ISO-8601 time (UTC if no offset)."""
    if isinstance(text, int):
        if text < 0:
            raise BadRequest("at: a seq must be >= 0")
        return text
    text = text.strip()
    if text.isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"at: {text!r} is neither a seq nor an ISO-8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def resolve_at(store: DiagramArchive, diagram: str, at: str | int) -> int:
    """The seq ``at`` names: itself, or the latest seq saved at or before that time."""
    when = parse_at(at)
    last = last_seq(store, diagram)
    if isinstance(when, int):
        if when > last:
            raise NotFound(f"diagram {diagram!r} has no seq {when} (latest is {last})")
        return when
    # at millisecond precision, the precision history shows times in
    seq = store.seq_at_time(diagram, math.floor(when.timestamp() * 1000 + 1e-6))
    if seq is None:
        raise NotFound(f"diagram {diagram!r} has no version at or before {when.isoformat()}")
    return seq


def last_seq(store: DiagramArchive, diagram: str) -> int:
    seq = store.last_seq(diagram)
    if seq is None:
        raise NotFound(f"no diagram {diagram!r}")
    return seq


# --- list and export ------------------------------------------------------------


def list_limit(limit: int, prefix: str) -> int:
    """``limit`` within 1..LIST_MAX_PAGE, once ``prefix`` is known to be a start of a name."""
    if not NAME_PREFIX.fullmatch(prefix):
        raise BadRequest("prefix must be up to 128 characters of [A-Za-z0-9._-]")
    return max(1, min(limit, LIST_MAX_PAGE))


def list_diagrams(
    store: DiagramArchive,
    *,
    limit: int = LIST_PAGE,
    prefix: str = "",
    include: Callable[[str], bool] | None = None,
) -> list[dict[str, Any]]:
    """Saved diagrams, last edited first: at most ``limit``, ids starting with ``prefix``.

    ``include`` (an auth token's scope) leaves out the ids it answers False
    for, before the limit: the list holds up to ``limit`` included diagrams.

    Each: id, live element count, last edit, state size, last seq, and
    ``elements_seq``, the seq the count and size describe. They are the
    summary recorded with the diagram's latest checkpoint (read as the
    store's summaries, nothing replayed), so ``elements_seq`` is below
    ``seq`` while edits since are not checkpointed yet: a room checkpoints
    every ``checkpoint_every`` updates, after ``checkpoint_quiet`` seconds
    without edits and when it unloads. A diagram with no summary yet (never
    checkpointed, or saved by an older inkwire) is checkpointed here, once,
    which records its summary.
    """
    limit = list_limit(limit, prefix)
    if include is None:
        rows = store.summaries(prefix, limit)
    else:
        rows = _included_rows(store, limit, prefix, include)
    result = []
    for row in rows:
        if row.summary_seq is None and store.checkpoint(row.id) is not None:
            row = store.summary(row.id) or row
        result.append(
            {
                "id": row.id,
                "elements": int(row.live_elements or 0),
                "last_edit": iso(float(row.updated)),
                "size": int(row.state_bytes or 0),
                "seq": int(row.last_seq),
                "elements_seq": int(
                    row.summary_seq if row.summary_seq is not None else row.last_seq
                ),
            }
        )
    return result


def _included_rows(
    store: DiagramArchive, limit: int, prefix: str, include: Callable[[str], bool]
) -> list[DiagramSummary]:
    """The first ``limit`` rows whose id is included, read a page at a time (keyset)."""
    rows: list[DiagramSummary] = []
    page = store.summaries(prefix, LIST_MAX_PAGE)
    while True:
        rows += [row for row in page if include(row.id)]
        if len(rows) >= limit or len(page) < LIST_MAX_PAGE:
            return rows[:limit]
        page = store.summaries(prefix, LIST_MAX_PAGE, after=(page[-1].updated, page[-1].id))


def export(store: DiagramArchive, diagram: str, at: str | int | None = None) -> dict[str, Any]:
    """The diagram (now, or at ``at``) as a ``.excalidraw`` dict."""
    seq = last_seq(store, diagram) if at is None else resolve_at(store, diagram, at)
    return export_state(store, diagram, store.state_at(diagram, seq))


def export_state(store: FileStore | None, diagram: str, state: bytes | None) -> dict[str, Any]:
    """A ``.excalidraw`` dict of a given state, files inlined from the store."""
    if store is None:
        return to_excalidraw(state)
    return to_excalidraw(state, lambda file_id: store.get_file(diagram, file_id))


# --- history ----------------------------------------------------------------------


def history(
    store: DiagramArchive, diagram: str, *, limit: int = HISTORY_PAGE, before: int | None = None
) -> dict[str, Any]:
    """One page of versions, newest first, with what each changed in ``elements``.

    Only the page is computed: the state just before its oldest version is
    loaded (checkpoint + tail) and the page's updates are replayed on it,
    observing which element keys each one touched. ``next_before`` pages on.
    """
    limit = max(1, min(limit, HISTORY_MAX_PAGE))
    last_seq(store, diagram)  # NotFound for an unknown diagram
    rows = store.updates_before(diagram, before, limit)
    rows.reverse()
    versions: list[dict[str, Any]] = []
    if rows:
        doc = load_doc(store.state_at(diagram, rows[0].first_seq - 1))
        elements = doc.get("elements", type=Map)
        touched: dict[str, dict[str, Any]] = {}
        subscription = elements.observe(lambda event: touched.update(event.keys))
        for row in rows:
            touched.clear()
            doc.apply_update(row.data)
            versions.append(_version(row, touched))
        elements.unobserve(subscription)
    versions.reverse()
    more = len(rows) == limit and rows[0].first_seq > 1
    return {
        "diagram": diagram,
        "versions": versions,
        "next_before": rows[0].seq if more else None,
    }


def _version(row: LoggedUpdate, touched: dict[str, dict[str, Any]]) -> dict[str, Any]:
    added, changed, removed = [], [], []
    for eid, change in sorted(touched.items()):
        old, new = change.get("oldValue"), change.get("newValue")
        was = isinstance(old, dict) and not old.get("isDeleted")
        now = isinstance(new, dict) and not new.get("isDeleted")
        if now and not was:
            added.append(eid)
        elif was and not now:
            removed.append(eid)
        elif now:
            changed.append(eid)
    return {
        "seq": row.seq,
        "time": iso(row.ts),
        "origin": row.origin,
        "added": added,
        "changed": changed,
        "removed": removed,
    }


# --- edits: computed here, applied by the caller -----------------------------------


def restore_update(old: bytes | None, current: bytes | None) -> bytes:
    """The forward edit that makes ``current`` show the content of state ``old``."""
    return forward_edit(current, scene_of(load_doc(old)))


def parse_import(raw: bytes | str | Any) -> tuple[Scene, dict[str, tuple[str, bytes]]]:
    """Validate an ``.excalidraw`` file (``InvalidDiagram`` says why not).

    The scene is what the diagram will show: elements the file does not have
    become tombstones in :func:`forward_edit` (the file *becomes* the
    diagram, as an edit). The images (id -> (mime, bytes)) are for the
    caller to store before applying the edit.
    """
    return parse_excalidraw(raw)


def set_file_update(current: bytes | None, file_id: str, info: dict[str, Any]) -> bytes:
    """The edit that records an image's metadata in the doc's ``files`` map."""
    return _set_update(current, "files", file_id, info)


def set_locked_update(current: bytes | None, locked: bool) -> bytes:
    """The edit that locks (or unlocks) a diagram: ``meta["locked"]``."""
    return _set_update(current, "meta", "locked", locked)


def _set_update(current: bytes | None, map_name: str, key: str, value: Any) -> bytes:
    doc = load_doc(current)
    before = doc.get_state()
    doc.get(map_name, type=Map)[key] = value
    return doc.get_update(before)


# --- the same edits on the database file, when no server runs ----------------------


async def restore_in_store(store: DiagramArchive, diagram: str, at: str | int) -> dict[str, Any]:
    """Restore ``at`` as a new update appended to the log (origin ``restore``)."""

    def compute() -> tuple[int, bytes]:
        seq = resolve_at(store, diagram, at)
        return seq, restore_update(store.state_at(diagram, seq), store.state_at(diagram))

    seq, update = await anyio.to_thread.run_sync(compute)
    if update != EMPTY:
        await store.append(diagram, [update], "restore")
        await anyio.to_thread.run_sync(store.checkpoint, diagram)  # as an unloading room would
    return {"diagram": diagram, "restored": seq, "changed": update != EMPTY}


async def import_in_store(store: DiagramArchive, diagram: str, raw: bytes) -> dict[str, Any]:
    """Make an ``.excalidraw`` file the diagram's content, appended (origin ``import``)."""
    scene, blobs = parse_import(raw)
    for file_id, (mime, data) in blobs.items():
        await anyio.to_thread.run_sync(
            save_file, store, diagram, file_id, mime, data, scene.files[file_id]
        )
    current = await anyio.to_thread.run_sync(store.state_at, diagram, None)
    update = forward_edit(current, scene)
    if update != EMPTY:
        await store.append(diagram, [update], "import")
        await anyio.to_thread.run_sync(store.checkpoint, diagram)  # as an unloading room would
    return {"diagram": diagram, "elements": len(scene.elements), "files": len(blobs)}
