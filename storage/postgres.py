"""PostgreSQL persistence: the update log, checkpoints, the list's summaries, files.

The same store as :mod:`storage.sqlite` (the database-independent half is
:class:`storage.logstore.LogStore`: group commit, checkpoint timing), in a
PostgreSQL database that several nodes on several machines share. Its
schema is :mod:`storage.postgres_schema`; relay history, on the same pool,
:mod:`storage.postgres_relay`. All the store's SQL is in these three modules.

**Driver.** psycopg 3, synchronous, with a ``psycopg_pool.ConnectionPool``,
used from worker threads exactly as the SQLite store uses its connection:
one code path under asyncio (the room server) and trio (embedded relays),
no event-loop-specific driver. The commit of a group is one transaction on
one connection; reads (loads, exports, the list) take other connections of
the pool, so they never wait behind a commit.

**Several nodes.** A commit takes each diagram's seqs with one upsert of its
row (``INSERT ... ON CONFLICT DO UPDATE SET last_seq = last_seq + n
RETURNING``), which locks the row until the commit (diagrams in id order, so
two nodes never deadlock): concurrent nodes number one log, without gaps or
reordering. The same statement logs the batch's updates under those seqs
(a data-modifying CTE over ``unnest`` of the batch), and BEGIN, the
statements and COMMIT go in one pipeline: a commit is one round trip (and
the server's WAL flush) whatever its size. Compaction takes a
transaction-scoped advisory lock per diagram, so two compactions of one
diagram never interleave even without
the Redis lease that normally keeps them apart (:mod:`cluster.rooms`).

**Outages.** A statement fails (a pooled connection the server dropped fails
its first use and is discarded), or no connection can be had within
``timeout`` seconds: the append raises :class:`StorageError`, nothing of the
batch is kept (the transaction rolls back, on the server if the connection
died), and the room retries the same batch. A commit whose acknowledgement
is lost with the connection may have committed: the retry then logs the
same updates again under new seqs, which is harmless (applying a Yjs update
twice changes nothing), so nothing is lost either way.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout
from pycrdt import Doc

from storage import postgres_schema
from storage.excalidraw import live_count
from storage.logstore import LogStore, Pending, Row, frames, replayed
from storage.postgres_relay import PostgresRelayEvents
from storage.sqlite_schema import decode_blob, encode_blob
from storage.store import DiagramDump, DiagramSummary, LoggedUpdate, RelayDump, StorageError
from storage.updates import merge_many
from storage.urls import redact, scrub

__all__ = ["PostgresStore", "StorageError"]

Conn = psycopg.Connection[tuple[Any, ...]]

_SUMMARY = "SELECT id, updated, last_seq, live_elements, state_bytes, summary_seq FROM diagrams"
# One diagram's part of a commit, one statement: its row created or its last_seq
# advanced by the batch's size (which locks the row until the commit), and the batch's
# updates logged under the seqs taken; returns the diagram's last seq and checkpoint seq.
# The updates go as a binary bytea[] (%b): in text they would be hex-escaped, tripling
# the commit's CPU for a big batch.
_COMMIT_DIAGRAM = (
    "WITH taken AS ("
    " INSERT INTO diagrams AS d (id, created, updated, last_seq, checkpoint_seq)"
    " VALUES (%(id)s, %(now)s, %(now)s, %(n)s, 0) ON CONFLICT (id) DO UPDATE"
    " SET last_seq = d.last_seq + excluded.last_seq, updated = excluded.updated"
    " RETURNING last_seq, checkpoint_seq"
    "), logged AS ("
    " INSERT INTO updates (diagram, seq, first_seq, ts, origin, data)"
    " SELECT %(id)s, taken.last_seq - %(n)s + batch.i, taken.last_seq - %(n)s + batch.i,"
    " %(now)s, batch.origin, batch.data FROM taken,"
    " unnest(%(origins)s::text[], %(data)b::bytea[]) WITH ORDINALITY AS batch (origin, data, i)"
    ") SELECT last_seq, checkpoint_seq FROM taken"
)
_COMPACT_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended('inkwire.compact:' || %s, 0))"


class PostgresStore(LogStore):
    """A :class:`storage.store.DiagramArchive` in PostgreSQL; ``relay_events`` on the same pool.

    ``url`` is a libpq URL (``postgresql://USER@HOST:PORT/DBNAME``); the
    password may be in it, in ``$PGPASSWORD`` or in a ``.pgpass`` file.
    ``upgrade`` False refuses a database whose schema is not current
    instead of migrating it.
    """

    def __init__(
        self,
        url: str,
        *,
        compress: bool = False,
        checkpoint_every: int = 500,
        retention: float = 7 * 86400.0,
        frame_seconds: float = 60.0,
        pool_size: int = 4,
        timeout: float = 5.0,
        upgrade: bool = True,
    ) -> None:
        super().__init__(
            compress=compress,
            checkpoint_every=checkpoint_every,
            retention=retention,
            frame_seconds=frame_seconds,
        )
        self._url = url  # with its password, if any: never printed
        self.name = redact(url)  # how messages name it: never with the password
        self.timeout = timeout
        postgres_schema.migrate(url, timeout, upgrade=upgrade)
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=1,
            max_size=max(2, pool_size),
            timeout=timeout,
            kwargs={"application_name": "inkwire", "connect_timeout": max(1, int(timeout))},
            reconnect_timeout=max(timeout, 30.0),
            name="inkwire",
            open=False,
        )
        try:
            self._pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            self._pool.close()
            raise StorageError(f"{self.name}: cannot connect") from None
        self.relay_events = PostgresRelayEvents(self._pool, self._error)

    def close(self) -> None:
        self._pool.close()

    def _error(self, exc: Exception) -> StorageError:
        """A driver or pool error as a StorageError naming the database, password masked."""
        if isinstance(exc, PoolTimeout):
            return StorageError(f"{self.name}: no connection within {self.timeout:g}s")
        return StorageError(f"{self.name}: {scrub(str(exc), self._url)}")

    def _run(self, work: Any, *args: Any) -> Any:
        """``work(conn, *args)`` in one transaction on a pooled connection (committed on return)."""
        try:
            with self._pool.connection() as conn:
                return work(conn, *args)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(exc) from None

    # --- writing -----------------------------------------------------------------------

    def _commit(self, batch: list[Pending]) -> None:
        now = time.time()
        # rows locked in id order: two nodes committing the same diagrams never deadlock
        ordered = sorted(batch, key=lambda pending: pending.diagram)

        def work(conn: Conn) -> list[tuple[Any, ...] | None]:
            # BEGIN, a statement per diagram and COMMIT in one round trip
            with conn.pipeline(), conn.transaction():
                cursors = [
                    conn.execute(
                        _COMMIT_DIAGRAM,
                        {
                            "id": item.diagram,
                            "now": now,
                            "n": len(item.updates),
                            "origins": item.origins,
                            "data": [encode_blob(u, self.compress) for u in item.updates],
                        },
                    )
                    for item in ordered
                ]
            return [cursor.fetchone() for cursor in cursors]

        rows = self._run(work)
        for item, row in zip(ordered, rows, strict=True):  # committed: the seqs are real
            assert row is not None
            last, checkpoint = int(row[0]), int(row[1])
            self._committed(item.diagram, last, checkpoint)
            item.last_seq = last

    def checkpoint(self, diagram: str) -> int | None:
        """Write the full state at the latest seq (and its summary); return that seq."""
        row = self._one(
            "SELECT last_seq, checkpoint_seq, summary_seq FROM diagrams WHERE id = %s", (diagram,)
        )
        if row is None:
            return None
        seq = int(row[0])
        if seq == row[1] and seq == row[2]:
            return seq  # nothing new since the last checkpoint
        doc = self._doc_at(diagram, seq)
        if doc is None:
            return None
        state = doc.get_update()
        if seq == row[1]:
            self._run(self._summarize, diagram, seq, live_count(doc), len(state))
        else:
            self._write_checkpoint(diagram, seq, state, doc)
        return seq

    def _write_checkpoint(
        self, diagram: str, seq: int, state: bytes, doc: Doc[Any] | None = None
    ) -> None:
        """Store ``state`` as the checkpoint at ``seq``; with its summary if ``doc`` is given."""
        live = None if doc is None else live_count(doc)
        blob = encode_blob(state, True)  # always compressed: large, rare, read once per load

        def work(conn: Conn) -> None:
            conn.execute(
                "INSERT INTO checkpoints (diagram, seq, ts, state) VALUES (%s, %s, %s, %s)"
                " ON CONFLICT (diagram, seq)"
                " DO UPDATE SET ts = excluded.ts, state = excluded.state",
                (diagram, seq, time.time(), blob),
            )
            conn.execute(
                "UPDATE diagrams SET checkpoint_seq = %s WHERE id = %s AND checkpoint_seq < %s",
                (seq, diagram, seq),
            )
            if live is not None:
                self._summarize(conn, diagram, seq, live, len(state))

        self._run(work)

    @staticmethod
    def _summarize(conn: Conn, diagram: str, seq: int, live: int, size: int) -> None:
        # never replaces a summary of a later seq (checkpoints may be written concurrently)
        conn.execute(
            "UPDATE diagrams SET live_elements = %s, state_bytes = %s, summary_seq = %s"
            " WHERE id = %s AND (summary_seq IS NULL OR summary_seq <= %s)",
            (live, size, seq, diagram, seq),
        )

    def compact(self, diagram: str, *, older_than: float, frame_seconds: float = 60.0) -> int:
        """Merge updates logged before ``older_than`` into one frame per time slot (lossless).

        One transaction, under the diagram's compaction lock: rows read are
        the rows replaced.
        """

        def work(conn: Conn) -> int:
            conn.execute(_COMPACT_LOCK, (diagram,))
            rows: list[Row] = [
                (int(seq), int(first), float(ts), origin, bytes(blob))
                for seq, first, ts, origin, blob in conn.execute(
                    "SELECT seq, first_seq, ts, origin, data FROM updates"
                    " WHERE diagram = %s AND ts < %s ORDER BY seq",
                    (diagram, older_than),
                ).fetchall()
            ]
            removed = 0
            for group in frames(rows, frame_seconds):
                merged = merge_many([decode_blob(row[4]) for row in group])
                origins = {row[3] for row in group}
                last = group[-1]
                conn.execute(
                    "DELETE FROM updates WHERE diagram = %s AND seq >= %s AND seq <= %s",
                    (diagram, group[0][1], last[0]),
                )
                conn.execute(
                    "INSERT INTO updates (diagram, seq, first_seq, ts, origin, data)"
                    " VALUES (%s, %s, %s, %s, %s, %s)",
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

        return int(self._run(work))

    # --- reading and replay (synchronous; call from a thread) --------------

    def _one(self, sql: str, params: tuple[Any, ...]) -> tuple[Any, ...] | None:
        row: tuple[Any, ...] | None = self._run(lambda conn: conn.execute(sql, params).fetchone())
        return row

    def _all(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        rows: list[tuple[Any, ...]] = self._run(lambda conn: conn.execute(sql, params).fetchall())
        return rows

    def _doc_at(self, diagram: str, seq: int | None = None) -> Doc[Any] | None:
        def read(conn: Conn, seq: int | None) -> tuple[bytes | None, list[bytes]] | None:
            if seq is None:
                row = conn.execute(
                    "SELECT last_seq FROM diagrams WHERE id = %s", (diagram,)
                ).fetchone()
                if row is None:
                    return None
                seq = int(row[0])
            checkpoint = conn.execute(
                "SELECT seq, state FROM checkpoints WHERE diagram = %s AND seq <= %s"
                " ORDER BY seq DESC LIMIT 1",
                (diagram, seq),
            ).fetchone()
            start = 0 if checkpoint is None else int(checkpoint[0])
            rows = conn.execute(
                "SELECT data FROM updates WHERE diagram = %s AND seq > %s AND seq <= %s"
                " ORDER BY seq",
                (diagram, start, seq),
            ).fetchall()
            if checkpoint is None and not rows:
                return None
            return (None if checkpoint is None else checkpoint[1]), [row[0] for row in rows]

        found = self._run(read, seq)
        if found is None:
            return None
        # the CRDT work happens with the connection back in the pool
        return replayed(found[0], found[1])

    def updates(
        self, diagram: str, after: int = 0
    ) -> Iterator[tuple[int, float, str | None, bytes]]:
        """The logged updates after seq ``after``: (seq, time, origin, update)."""
        rows = self._all(
            "SELECT seq, ts, origin, data FROM updates WHERE diagram = %s AND seq > %s"
            " ORDER BY seq",
            (diagram, after),
        )
        for seq, ts, origin, blob in rows:
            yield int(seq), float(ts), origin, decode_blob(bytes(blob))

    def updates_before(self, diagram: str, before: int | None, limit: int) -> list[LoggedUpdate]:
        bound = before if before is not None else 2**62
        rows = self._all(
            "SELECT seq, first_seq, ts, origin, data FROM updates"
            " WHERE diagram = %s AND seq < %s ORDER BY seq DESC LIMIT %s",
            (diagram, bound, limit),
        )
        return [
            LoggedUpdate(int(seq), int(first or seq), float(ts), origin, decode_blob(bytes(blob)))
            for seq, first, ts, origin, blob in rows
        ]

    def last_seq(self, diagram: str) -> int | None:
        row = self._one("SELECT last_seq FROM diagrams WHERE id = %s", (diagram,))
        return None if row is None else int(row[0])

    def seq_at_time(self, diagram: str, millis: int) -> int | None:
        # trunc, as SQLite's CAST truncates: times compare at millisecond precision
        row = self._one(
            "SELECT max(seq) FROM updates WHERE diagram = %s AND trunc(ts * 1000) <= %s",
            (diagram, millis),
        )
        return None if row is None or row[0] is None else int(row[0])

    # --- the list of diagrams ----------------------------------------------------------

    def summaries(
        self, prefix: str, limit: int, after: tuple[float, str] | None = None
    ) -> list[DiagramSummary]:
        if after is None:
            rows = self._all(
                f"{_SUMMARY} WHERE starts_with(id, %s) ORDER BY updated DESC, id LIMIT %s",
                (prefix, limit),
            )
        else:
            updated, diagram = after
            rows = self._all(
                f"{_SUMMARY} WHERE starts_with(id, %s)"
                " AND (updated < %s OR (updated = %s AND id > %s))"
                " ORDER BY updated DESC, id LIMIT %s",
                (prefix, updated, updated, diagram, limit),
            )
        return [DiagramSummary._make(row) for row in rows]

    def summary(self, diagram: str) -> DiagramSummary | None:
        row = self._one(f"{_SUMMARY} WHERE id = %s", (diagram,))
        return None if row is None else DiagramSummary._make(row)

    # --- image files -------------------------------------------------------------------

    def put_file(
        self, diagram: str, file_id: str, mime: str, data: bytes, *, sha256: str, created: float
    ) -> None:
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO files (diagram, file_id, mime, sha256, size, created, data)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (diagram, file_id) DO UPDATE"
                " SET mime = excluded.mime, sha256 = excluded.sha256, size = excluded.size,"
                " created = excluded.created, data = excluded.data",
                (diagram, file_id, mime, sha256, len(data), created, data),
            )
        )

    def get_file(self, diagram: str, file_id: str) -> tuple[str, bytes] | None:
        row = self._one(
            "SELECT mime, data FROM files WHERE diagram = %s AND file_id = %s", (diagram, file_id)
        )
        return None if row is None else (str(row[0]), bytes(row[1]))

    # --- copying a whole database (inkwire db copy; see storage.copy) ------------------

    def diagram_ids(self) -> list[str]:
        return [str(row[0]) for row in self._all("SELECT id FROM diagrams ORDER BY id", ())]

    def dump(self, diagram: str) -> DiagramDump | None:
        def read(conn: Conn) -> DiagramDump | None:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")  # one snapshot
            row = conn.execute(
                "SELECT created, updated, last_seq, checkpoint_seq, live_elements, state_bytes,"
                " summary_seq FROM diagrams WHERE id = %s",
                (diagram,),
            ).fetchone()
            if row is None:
                return None
            updates = conn.execute(
                "SELECT seq, first_seq, ts, origin, data FROM updates WHERE diagram = %s"
                " ORDER BY seq",
                (diagram,),
            ).fetchall()
            checkpoints = conn.execute(
                "SELECT seq, ts, state FROM checkpoints WHERE diagram = %s ORDER BY seq",
                (diagram,),
            ).fetchall()
            files = conn.execute(
                "SELECT file_id, mime, sha256, size, created, data FROM files"
                " WHERE diagram = %s ORDER BY file_id",
                (diagram,),
            ).fetchall()
            return DiagramDump(
                diagram,
                (row[0], row[1], row[2], row[3], row[4], row[5], row[6]),
                [(s, f, ts, o, bytes(d)) for s, f, ts, o, d in updates],
                [(s, ts, bytes(d)) for s, ts, d in checkpoints],
                [(i, m, h, n, c, bytes(d)) for i, m, h, n, c, d in files],
            )

        dump: DiagramDump | None = self._run(read)
        return dump

    def restore(self, dump: DiagramDump) -> None:
        def write(conn: Conn) -> None:
            for table, key in _DIAGRAM_TABLES:
                conn.execute(f"DELETE FROM {table} WHERE {key} = %s", (dump.id,))
            conn.execute(
                "INSERT INTO diagrams (id, created, updated, last_seq, checkpoint_seq,"
                " live_elements, state_bytes, summary_seq)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                (dump.id, *dump.row),
            )
            with conn.cursor() as cursor:
                if dump.updates:
                    cursor.executemany(
                        "INSERT INTO updates (diagram, seq, first_seq, ts, origin, data)"
                        " VALUES (%s, %s, %s, %s, %s, %s)",
                        [(dump.id, *update) for update in dump.updates],
                    )
                if dump.checkpoints:
                    cursor.executemany(
                        "INSERT INTO checkpoints (diagram, seq, ts, state) VALUES (%s, %s, %s, %s)",
                        [(dump.id, *checkpoint) for checkpoint in dump.checkpoints],
                    )
                if dump.files:
                    cursor.executemany(
                        "INSERT INTO files (diagram, file_id, mime, sha256, size, created, data)"
                        " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        [(dump.id, *file) for file in dump.files],
                    )

        self._run(write)
        self._last_seq.pop(dump.id, None)

    def relay_dump(self) -> RelayDump:
        events = self._all(
            'SELECT service, channel, "offset", epoch, ts, event, data FROM relay_events'
            ' ORDER BY service, channel, "offset"',
            (),
        )
        meta = self._all(
            "SELECT key, value FROM inkwire_meta WHERE starts_with(key, 'relay_') ORDER BY key",
            (),
        )
        return RelayDump(
            [(s, c, int(o), e, float(t), ev, d) for s, c, o, e, t, ev, d in events],
            [(str(k), str(v)) for k, v in meta],
        )

    def relay_restore(self, dump: RelayDump) -> None:
        def write(conn: Conn) -> None:
            conn.execute("DELETE FROM relay_events")
            conn.execute("DELETE FROM inkwire_meta WHERE starts_with(key, 'relay_')")
            with conn.cursor() as cursor:
                if dump.events:
                    cursor.executemany(
                        'INSERT INTO relay_events (service, channel, "offset", epoch, ts, event,'
                        " data) VALUES (%s, %s, %s, %s, %s, %s, %s)",
                        dump.events,
                    )
                if dump.meta:
                    cursor.executemany(
                        "INSERT INTO inkwire_meta (key, value) VALUES (%s, %s)", dump.meta
                    )

        self._run(write)


_DIAGRAM_TABLES = (("diagrams", "id"), ("updates", "diagram"), ("checkpoints", "diagram"),
                   ("files", "diagram"))  # fmt: skip
