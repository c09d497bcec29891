"""SQLite persistence: the update log, checkpoints, the list's summaries, files.

The file's schema is :mod:`storage.sqlite_schema`; relay history, on the
same connection, :mod:`storage.sqlite_relay`. All the SQL of the store is
in these three modules.

One database file in WAL mode. Every update a room applies is appended to
the ``updates`` log, and :meth:`SQLiteStore.append` returns only after the
transaction holding it has committed, so an update is on disk before any
other client is sent it. Appends that arrive while a commit is running are
committed together by whichever caller runs next (group commit), in one
worker thread, never on the event loop.

Loading is the latest checkpoint (the full state at some seq) plus the
updates after it. A checkpoint is written every ``checkpoint_every``
updates; old updates are kept for replay.

:meth:`SQLiteStore.checkpoint` (a room going quiet or unloading) also
records, in the diagram's ``diagrams`` row, what the list of diagrams shows:
the live element count and the state's size, with the seq they describe
(``summary_seq``), so listing reads one table instead of replaying every
diagram. The checkpoints :meth:`SQLiteStore.maintain` writes while a room is
being edited do not: counting would decode the whole state, holding the GIL
mid-session; the next quiet moment records it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
from pycrdt import Doc

from storage.cards import Card
from storage.excalidraw import live_count
from storage.sqlite_relay import SQLiteRelayEvents
from storage.sqlite_schema import connect, decode_blob, encode_blob
from storage.store import DiagramSummary, LoggedUpdate, StorageError
from storage.thumbnail import render_doc
from storage.updates import merge_many

__all__ = ["SQLiteStore", "StorageError"]

_SUMMARY = "SELECT id, updated, last_seq, live_elements, state_bytes, summary_seq FROM diagrams"


@dataclass
class _Pending:
    diagram: str
    updates: list[bytes]
    origins: list[str | None]
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None
    last_seq: int = 0  # the diagram's, once committed


class SQLiteStore:
    """The durable store behind rooms, the REST API and the CLI.

    A :class:`storage.store.DiagramArchive` (so also a ``Store`` and a
    ``FileStore``); ``relay_events``, on the same connection, is the
    :class:`storage.store.RelayEventLog`.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        compress: bool = False,
        checkpoint_every: int = 500,
        retention: float = 7 * 86400.0,
        frame_seconds: float = 60.0,
    ) -> None:
        self.path = Path(path)
        self.compress = compress
        self.checkpoint_every = checkpoint_every
        self.retention = retention  # full-resolution history kept this long, then merged
        self.frame_seconds = frame_seconds
        self._lock = threading.Lock()  # one connection, used from one thread at a time
        self._conn = connect(self.path)
        self.relay_events = SQLiteRelayEvents(self._conn, self._lock)
        self._queue: list[_Pending] = []
        self._due: set[str] = set()  # diagrams owed a checkpoint (see maintain)
        self._last_seq: dict[str, int] = {}  # as of the last commit
        self._committing = False
        self._round: anyio.Event | None = None  # set when a commit round ends
        self.healthy = True  # False while saving fails
        self.last_error: str | None = None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- the Store interface -------------------------------------------------

    async def load(self, diagram: str) -> bytes | None:
        return await anyio.to_thread.run_sync(self.state_at, diagram, None)

    async def append(
        self,
        diagram: str,
        updates: Sequence[bytes],
        origins: str | Sequence[str | None] | None = None,
    ) -> int:
        """Return once committed, with the diagram's seq; appends in flight commit together.

        ``origins`` names who made the updates: one name for all, or one each.
        """
        if origins is None or isinstance(origins, str):
            origins = [origins] * len(updates)
        pending = _Pending(diagram, list(updates), list(origins))
        self._queue.append(pending)
        while not pending.done.is_set():
            if self._committing:
                if self._round is None:
                    self._round = anyio.Event()
                await self._round.wait()  # a commit is running; ours may be in the next
                continue
            self._committing = True
            batch, self._queue = self._queue, []
            try:
                await anyio.to_thread.run_sync(self._commit, batch)
            except Exception as exc:
                for item in batch:
                    item.error = exc
                self.healthy = False
                self.last_error = str(exc)
            finally:
                self._committing = False
                for item in batch:
                    item.done.set()
                finished, self._round = self._round, None
                if finished is not None:
                    finished.set()
        if pending.error is not None:
            raise StorageError(f"could not save to {self.path}: {pending.error}") from (
                pending.error
            )
        return pending.last_seq

    async def maintain(
        self, diagram: str, saved_state: Callable[[], bytes | None] | None = None
    ) -> None:
        """Write a checkpoint the log made due, apart from commits so they never wait.

        ``saved_state``, from a room, returns its live document's state when
        that is exactly what has been saved (nothing pending), sparing the
        replay of the log since the last checkpoint; else None, and the
        checkpoint waits for a moment when it is (the room calls again after
        its next save, when it goes quiet, and when it unloads). It records
        no summary: :meth:`checkpoint`, when the room goes quiet, does.
        """
        if diagram not in self._due:
            return
        self._due.discard(diagram)
        seq = self._last_seq.get(diagram)
        state = saved_state() if saved_state is not None else None
        if state is None or seq is None:
            # mid-burst: replaying the log here would compete with the burst;
            # the next quiet moment (or unload) writes it from the live document
            self._due.add(diagram)
            return
        await anyio.to_thread.run_sync(self._write_checkpoint, diagram, seq, state)

    async def release(self, diagram: str) -> None:
        """On unload: checkpoint (loading is then one read) and compact old history."""

        def work() -> None:
            self.checkpoint(diagram)
            self.compact(
                diagram,
                older_than=time.time() - self.retention,
                frame_seconds=self.frame_seconds,
            )

        await anyio.to_thread.run_sync(work)

    def _commit(self, batch: list[_Pending]) -> None:
        now = time.time()
        with self._lock, self._conn:
            # the write lock before reading last_seq: nodes sharing the file number one log
            self._conn.execute("BEGIN IMMEDIATE")
            for item in batch:
                row = self._conn.execute(
                    "SELECT last_seq, checkpoint_seq FROM diagrams WHERE id = ?", (item.diagram,)
                ).fetchone()
                if row is None:
                    self._conn.execute(
                        "INSERT INTO diagrams (id, created, updated, last_seq, checkpoint_seq)"
                        " VALUES (?, ?, ?, 0, 0)",
                        (item.diagram, now, now),
                    )
                    last, checkpoint = 0, 0
                else:
                    last, checkpoint = row
                rows = []
                for update, origin in zip(item.updates, item.origins, strict=True):
                    last += 1
                    rows.append(
                        (
                            item.diagram,
                            last,
                            last,
                            now,
                            origin,
                            encode_blob(update, self.compress),
                        )
                    )
                self._conn.executemany(
                    "INSERT INTO updates (diagram, seq, first_seq, ts, origin, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    rows,
                )
                self._conn.execute(
                    "UPDATE diagrams SET updated = ?, last_seq = ? WHERE id = ?",
                    (now, last, item.diagram),
                )
                if last - checkpoint >= self.checkpoint_every:
                    self._due.add(item.diagram)
                self._last_seq[item.diagram] = last
                item.last_seq = last
        self.healthy = True
        self.last_error = None

    # --- reading and replay (synchronous; call from a thread) --------------

    def state_at(self, diagram: str, seq: int | None = None) -> bytes | None:
        """The full state after update ``seq`` (default: the latest), or None."""
        doc = self._doc_at(diagram, seq)
        return None if doc is None else doc.get_update()

    def _doc_at(self, diagram: str, seq: int | None = None) -> Doc[Any] | None:
        with self._lock:
            if seq is None:
                row = self._conn.execute(
                    "SELECT last_seq FROM diagrams WHERE id = ?", (diagram,)
                ).fetchone()
                if row is None:
                    return None
                seq = int(row[0])
            checkpoint = self._conn.execute(
                "SELECT seq, state FROM checkpoints WHERE diagram = ? AND seq <= ?"
                " ORDER BY seq DESC LIMIT 1",
                (diagram, seq),
            ).fetchone()
            start = 0 if checkpoint is None else int(checkpoint[0])
            rows = self._conn.execute(
                "SELECT data FROM updates WHERE diagram = ? AND seq > ? AND seq <= ? ORDER BY seq",
                (diagram, start, seq),
            ).fetchall()
        if checkpoint is None and not rows:
            return None
        # the CRDT work happens outside the lock: commits need not wait for it
        doc: Doc[Any] = Doc()
        if checkpoint is not None:
            doc.apply_update(decode_blob(checkpoint[1]))
        for (blob,) in rows:
            doc.apply_update(decode_blob(blob))
        return doc

    def checkpoint(self, diagram: str) -> int | None:
        """Write the full state at the latest seq (and its summary); return that seq."""
        with self._lock:
            row = self._conn.execute(
                "SELECT last_seq, checkpoint_seq, summary_seq FROM diagrams WHERE id = ?",
                (diagram,),
            ).fetchone()
        if row is None:
            return None
        seq = int(row[0])
        if seq == row[1] and seq == row[2]:
            return seq  # nothing new since the last checkpoint
        doc = self._doc_at(diagram, seq)
        if doc is None:
            return None
        state = doc.get_update()
        if seq == row[1]:  # checkpointed before summaries were recorded (schema 1)
            self._write_summary(diagram, seq, live_count(doc), len(state))
        else:
            self._write_checkpoint(diagram, seq, state, doc)
        return seq

    def _write_checkpoint(
        self, diagram: str, seq: int, state: bytes, doc: Doc[Any] | None = None
    ) -> None:
        """Store ``state`` as the checkpoint at ``seq``; with its summary if ``doc`` is given.

        ``doc`` is the state, decoded: the caller's, counted here (never
        decoded here for the count alone).
        """
        live = None if doc is None else live_count(doc)
        thumbnail = None if doc is None else render_doc(doc)
        blob = encode_blob(state, True)  # always compressed: large, rare, read once per load
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO checkpoints (diagram, seq, ts, state) VALUES (?, ?, ?, ?)",
                (diagram, seq, time.time(), blob),
            )
            self._conn.execute(
                "UPDATE diagrams SET checkpoint_seq = ? WHERE id = ? AND checkpoint_seq < ?",
                (seq, diagram, seq),
            )
            if live is not None:
                self._summarize(diagram, seq, live, len(state))
            if thumbnail is not None:
                self._conn.execute(
                    "INSERT INTO thumbnails (diagram, seq, svg) VALUES (?, ?, ?)"
                    " ON CONFLICT (diagram) DO UPDATE SET seq = excluded.seq, svg = excluded.svg"
                    " WHERE excluded.seq >= thumbnails.seq",
                    (diagram, seq, thumbnail),
                )

    def _write_summary(self, diagram: str, seq: int, live: int, size: int) -> None:
        with self._lock, self._conn:
            self._summarize(diagram, seq, live, size)

    def _summarize(self, diagram: str, seq: int, live: int, size: int) -> None:
        # never replaces a summary of a later seq (checkpoints may be written concurrently)
        self._conn.execute(
            "UPDATE diagrams SET live_elements = ?, state_bytes = ?, summary_seq = ?"
            " WHERE id = ? AND (summary_seq IS NULL OR summary_seq <= ?)",
            (live, size, seq, diagram, seq),
        )

    def compact(self, diagram: str, *, older_than: float, frame_seconds: float = 60.0) -> int:
        """Merge updates logged before ``older_than`` into one frame per time slot.

        Lossless: a merged Yjs update holds everything its parts held, and a
        frame keeps the seq range and time of its last part, so the timeline
        stays replayable at frame granularity. Returns the rows removed.
        """
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, first_seq, ts, origin, data FROM updates"
                " WHERE diagram = ? AND ts < ? ORDER BY seq",
                (diagram, older_than),
            ).fetchall()
        groups: list[list[tuple[int, int, float, str | None, bytes]]] = []
        last_slot: float | None = None
        for row in rows:
            slot = row[2] // frame_seconds if frame_seconds > 0 else row[0]
            if groups and slot == last_slot:
                groups[-1].append(row)
            else:
                groups.append([row])
            last_slot = slot
        removed = 0
        with self._lock, self._conn:
            for group in groups:
                if len(group) < 2:
                    continue
                merged = merge_many([decode_blob(row[4]) for row in group])
                origins = {row[3] for row in group}
                last = group[-1]
                self._conn.execute(
                    "DELETE FROM updates WHERE diagram = ? AND seq >= ? AND seq <= ?",
                    (diagram, group[0][1], last[0]),
                )
                self._conn.execute(
                    "INSERT INTO updates (diagram, seq, first_seq, ts, origin, data)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        diagram,
                        last[0],
                        group[0][1],
                        last[2],
                        origins.pop() if len(origins) == 1 else None,
                        encode_blob(merged, self.compress),
                    ),
                )
                removed += len(group) - 1
        return removed

    def updates(
        self, diagram: str, after: int = 0
    ) -> Iterator[tuple[int, float, str | None, bytes]]:
        """The logged updates after seq ``after``: (seq, time, origin, update)."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, ts, origin, data FROM updates WHERE diagram = ? AND seq > ?"
                " ORDER BY seq",
                (diagram, after),
            ).fetchall()
        for seq, ts, origin, blob in rows:
            yield int(seq), float(ts), origin, decode_blob(blob)

    def updates_before(self, diagram: str, before: int | None, limit: int) -> list[LoggedUpdate]:
        bound = before if before is not None else 2**62
        with self._lock:
            rows = self._conn.execute(
                "SELECT seq, first_seq, ts, origin, data FROM updates"
                " WHERE diagram = ? AND seq < ? ORDER BY seq DESC LIMIT ?",
                (diagram, bound, limit),
            ).fetchall()
        return [
            LoggedUpdate(int(seq), int(first or seq), float(ts), origin, decode_blob(blob))
            for seq, first, ts, origin, blob in rows
        ]

    def last_seq(self, diagram: str) -> int | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT last_seq FROM diagrams WHERE id = ?", (diagram,)
            ).fetchone()
        return None if row is None else int(row[0])

    def seq_at_time(self, diagram: str, millis: int) -> int | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT max(seq) FROM updates"
                " WHERE diagram = ? AND CAST(ts * 1000 AS INTEGER) <= ?",
                (diagram, millis),
            ).fetchone()
        return None if row[0] is None else int(row[0])

    # --- the list of diagrams ----------------------------------------------------------

    def summaries(
        self, prefix: str, limit: int, after: tuple[float, str] | None = None
    ) -> list[DiagramSummary]:
        with self._lock:
            if after is None:
                rows = self._conn.execute(
                    f"{_SUMMARY} WHERE substr(id, 1, ?) = ? ORDER BY updated DESC, id LIMIT ?",
                    (len(prefix), prefix, limit),
                ).fetchall()
            else:
                updated, diagram = after
                rows = self._conn.execute(
                    f"{_SUMMARY} WHERE substr(id, 1, ?) = ?"
                    " AND (updated < ? OR (updated = ? AND id > ?))"
                    " ORDER BY updated DESC, id LIMIT ?",
                    (len(prefix), prefix, updated, updated, diagram, limit),
                ).fetchall()
        return [DiagramSummary._make(row) for row in rows]

    def summary(self, diagram: str) -> DiagramSummary | None:
        with self._lock:
            row = self._conn.execute(f"{_SUMMARY} WHERE id = ?", (diagram,)).fetchone()
        return None if row is None else DiagramSummary._make(row)

    # --- the landing page's cards (storage.cards) --------------------------------------

    def cards(self, diagrams: Sequence[str]) -> dict[str, Card]:
        """Title, deleted time, last author and thumbnail seq of each diagram that exists."""
        found: dict[str, Card] = {}
        with self._lock:
            for diagram in diagrams:
                row = self._conn.execute(
                    "SELECT d.title, d.deleted, t.seq,"
                    " (SELECT origin FROM updates u WHERE u.diagram = d.id"
                    "  ORDER BY u.seq DESC LIMIT 1)"
                    " FROM diagrams d LEFT JOIN thumbnails t ON t.diagram = d.id WHERE d.id = ?",
                    (diagram,),
                ).fetchone()
                if row is not None:
                    found[diagram] = Card(*row)
        return found

    def titles(self) -> dict[str, str]:
        with self._lock:
            rows = self._conn.execute("SELECT id, title FROM diagrams WHERE title IS NOT NULL")
            return dict(rows.fetchall())

    def deleted(self) -> dict[str, float]:
        with self._lock:
            rows = self._conn.execute("SELECT id, deleted FROM diagrams WHERE deleted IS NOT NULL")
            return dict(rows.fetchall())

    def set_title(self, diagram: str, title: str | None) -> bool:
        return self._set(diagram, "title", title)

    def set_deleted(self, diagram: str, deleted: float | None) -> bool:
        return self._set(diagram, "deleted", deleted)

    def _set(self, diagram: str, column: str, value: object) -> bool:
        with self._lock, self._conn:
            cursor = self._conn.execute(
                f"UPDATE diagrams SET {column} = ? WHERE id = ?", (value, diagram)
            )
            return cursor.rowcount > 0

    def thumbnail(self, diagram: str) -> tuple[int, str] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT seq, svg FROM thumbnails WHERE diagram = ?", (diagram,)
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def purge(self, diagram: str) -> None:
        """Forget the diagram entirely: its log, checkpoints, files, thumbnail and row."""
        with self._lock, self._conn:
            for table, column in (
                ("updates", "diagram"),
                ("checkpoints", "diagram"),
                ("files", "diagram"),
                ("thumbnails", "diagram"),
                ("diagrams", "id"),
            ):
                self._conn.execute(f"DELETE FROM {table} WHERE {column} = ?", (diagram,))

    # --- image files -------------------------------------------------------------------

    def put_file(
        self, diagram: str, file_id: str, mime: str, data: bytes, *, sha256: str, created: float
    ) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO files (diagram, file_id, mime, sha256, size, created, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (diagram, file_id, mime, sha256, len(data), created, data),
            )

    def get_file(self, diagram: str, file_id: str) -> tuple[str, bytes] | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT mime, data FROM files WHERE diagram = ? AND file_id = ?", (diagram, file_id)
            ).fetchone()
        return None if row is None else (str(row[0]), bytes(row[1]))
