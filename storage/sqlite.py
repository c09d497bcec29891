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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pycrdt import Doc

from storage.excalidraw import live_count
from storage.logstore import LogStore, Pending, frames, replayed
from storage.sqlite_relay import SEP, SQLiteRelayEvents
from storage.sqlite_schema import connect, decode_blob, encode_blob
from storage.store import DiagramDump, DiagramSummary, LoggedUpdate, RelayDump, StorageError
from storage.updates import merge_many

__all__ = ["SQLiteStore", "StorageError"]

_SUMMARY = "SELECT id, updated, last_seq, live_elements, state_bytes, summary_seq FROM diagrams"


class SQLiteStore(LogStore):
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
        super().__init__(
            compress=compress,
            checkpoint_every=checkpoint_every,
            retention=retention,
            frame_seconds=frame_seconds,
        )
        self.path = Path(path)
        self.name = str(self.path)
        self._lock = threading.Lock()  # one connection, used from one thread at a time
        self._conn = connect(self.path)
        self.relay_events = SQLiteRelayEvents(self._conn, self._lock)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _commit(self, batch: list[Pending]) -> None:
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
                self._committed(item.diagram, last, checkpoint)
                item.last_seq = last

    # --- reading and replay (synchronous; call from a thread) --------------

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
        return replayed(None if checkpoint is None else checkpoint[1], (row[0] for row in rows))

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
        removed = 0
        with self._lock, self._conn:
            for group in frames(rows, frame_seconds):
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

    # --- copying a whole database (inkwire db copy; see storage.copy) ------------------

    def diagram_ids(self) -> list[str]:
        with self._lock:
            rows = self._conn.execute("SELECT id FROM diagrams ORDER BY id").fetchall()
        return [str(row[0]) for row in rows]

    def dump(self, diagram: str) -> DiagramDump | None:
        with self._lock, self._conn:
            self._conn.execute("BEGIN")  # one snapshot of all four tables
            row = self._conn.execute(
                "SELECT created, updated, last_seq, checkpoint_seq, live_elements, state_bytes,"
                " summary_seq FROM diagrams WHERE id = ?",
                (diagram,),
            ).fetchone()
            if row is None:
                return None
            updates = self._conn.execute(
                "SELECT seq, first_seq, ts, origin, data FROM updates WHERE diagram = ?"
                " ORDER BY seq",
                (diagram,),
            ).fetchall()
            checkpoints = self._conn.execute(
                "SELECT seq, ts, state FROM checkpoints WHERE diagram = ? ORDER BY seq", (diagram,)
            ).fetchall()
            files = self._conn.execute(
                "SELECT file_id, mime, sha256, size, created, data FROM files WHERE diagram = ?"
                " ORDER BY file_id",
                (diagram,),
            ).fetchall()
        return DiagramDump(
            diagram,
            tuple(row),
            [(s, f or s, ts, o, bytes(d)) for s, f, ts, o, d in updates],
            [(s, ts, bytes(d)) for s, ts, d in checkpoints],
            [(i, m, h, n, c, bytes(d)) for i, m, h, n, c, d in files],
        )

    def restore(self, dump: DiagramDump) -> None:
        with self._lock, self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            for table, key in _DIAGRAM_TABLES:
                self._conn.execute(f"DELETE FROM {table} WHERE {key} = ?", (dump.id,))
            self._conn.execute(
                "INSERT INTO diagrams (id, created, updated, last_seq, checkpoint_seq,"
                " live_elements, state_bytes, summary_seq) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (dump.id, *dump.row),
            )
            self._conn.executemany(
                "INSERT INTO updates (diagram, seq, first_seq, ts, origin, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(dump.id, *update) for update in dump.updates],
            )
            self._conn.executemany(
                "INSERT INTO checkpoints (diagram, seq, ts, state) VALUES (?, ?, ?, ?)",
                [(dump.id, *checkpoint) for checkpoint in dump.checkpoints],
            )
            self._conn.executemany(
                "INSERT INTO files (diagram, file_id, mime, sha256, size, created, data)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                [(dump.id, *file) for file in dump.files],
            )
        self._last_seq.pop(dump.id, None)

    def relay_dump(self) -> RelayDump:
        with self._lock:
            events = self._conn.execute(
                "SELECT channel, offset, epoch, ts, event, data FROM relay_events"
                " ORDER BY channel, offset"
            ).fetchall()
            meta = self._conn.execute(
                "SELECT key, value FROM inkwire_meta WHERE key LIKE 'relay\\_%' ESCAPE '\\'"
                " ORDER BY key"
            ).fetchall()
        rows = []
        for key, offset, epoch, ts, event, data in events:
            service, _, channel = str(key).partition(SEP)
            rows.append((service, channel, int(offset), epoch, float(ts), event, data))
        return RelayDump(rows, [(str(k), str(v)) for k, v in meta])

    def relay_restore(self, dump: RelayDump) -> None:
        with self._lock, self._conn:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.execute("DELETE FROM relay_events")
            self._conn.execute("DELETE FROM inkwire_meta WHERE key LIKE 'relay\\_%' ESCAPE '\\'")
            self._conn.executemany(
                "INSERT INTO relay_events (channel, offset, epoch, ts, event, data)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(f"{s}{SEP}{c}", o, e, t, ev, d) for s, c, o, e, t, ev, d in dump.events],
            )
            self._conn.executemany("INSERT INTO inkwire_meta (key, value) VALUES (?, ?)", dump.meta)


_DIAGRAM_TABLES = (("diagrams", "id"), ("updates", "diagram"), ("checkpoints", "diagram"),
                   ("files", "diagram"))  # fmt: skip
