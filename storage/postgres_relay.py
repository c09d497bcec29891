"""Relay history in PostgreSQL: the ``relay_events`` table and the relays' keys in ``inkwire_meta``.

Rows are keyed by (service, channel, offset), so several relays share one
table (``inkwire relay all --db``). A service's epoch is
``relay_epoch:{service}`` in ``inkwire_meta``, and whether its last run
ended cleanly ``relay_clean:{service}`` ("1" or "0"), as in SQLite.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import psycopg
from psycopg_pool import ConnectionPool, PoolTimeout

from storage.relay_meta import RelayMeta
from storage.store import RelayEventRow, StorageError, StoredRelayEvent

_INSERT = (
    'INSERT INTO relay_events (service, channel, "offset", epoch, ts, event, data)'
    ' VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (service, channel, "offset")'
    " DO UPDATE SET epoch = excluded.epoch, ts = excluded.ts, event = excluded.event,"
    " data = excluded.data"
)

Conn = psycopg.Connection[tuple[Any, ...]]


class PostgresRelayEvents(RelayMeta):
    """A :class:`storage.store.RelayEventLog` on the store's pool."""

    def __init__(
        self, pool: ConnectionPool[Conn], error: Callable[[Exception], StorageError]
    ) -> None:
        self._pool = pool
        self._error = error

    def _run(self, work: Callable[[Conn], Any]) -> Any:
        try:
            with self._pool.connection() as conn:
                return work(conn)
        except (psycopg.Error, PoolTimeout) as exc:
            raise self._error(exc) from None

    def events(self, service: str) -> list[StoredRelayEvent]:
        rows = self._run(
            lambda conn: conn.execute(
                'SELECT channel, "offset", epoch, ts, data FROM relay_events'
                ' WHERE service = %s ORDER BY channel, "offset"',
                (service,),
            ).fetchall()
        )
        return [
            StoredRelayEvent(channel, int(offset), epoch, float(ts), data)
            for channel, offset, epoch, ts, data in rows
        ]

    def save(
        self,
        service: str,
        events: Sequence[RelayEventRow],
        *,
        restarted: Collection[str],
        keep_after: Mapping[str, int],
        older_than: float | None,
    ) -> None:
        def work(conn: Conn) -> None:
            with conn.cursor() as cursor:
                if restarted:
                    cursor.execute(
                        "DELETE FROM relay_events WHERE service = %s AND channel = ANY(%s)",
                        (service, list(restarted)),
                    )
                if events:
                    cursor.executemany(_INSERT, [(service, *row) for row in events])
                if keep_after:
                    cursor.executemany(
                        "DELETE FROM relay_events"
                        ' WHERE service = %s AND channel = %s AND "offset" <= %s',
                        [(service, channel, offset) for channel, offset in keep_after.items()],
                    )
                if older_than is not None:
                    cursor.execute(
                        "DELETE FROM relay_events WHERE service = %s AND ts < %s",
                        (service, older_than),
                    )

        self._run(work)

    def _meta(self, key: str) -> str | None:
        row = self._run(
            lambda conn: conn.execute(
                "SELECT value FROM inkwire_meta WHERE key = %s", (key,)
            ).fetchone()
        )
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        self._run(
            lambda conn: conn.execute(
                "INSERT INTO inkwire_meta (key, value) VALUES (%s, %s)"
                " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
        )
