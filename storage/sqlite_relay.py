"""Relay history in SQLite: the ``relay_events`` table and the relays' keys in ``inkwire_meta``.

A row's ``channel`` is ``"{service}|{channel}"``, so several relays
(``inkwire relay all --db``) share one table and a service's rows are one
key range. A service's epoch is ``relay_epoch:{service}`` in
``inkwire_meta``, and whether its last run ended cleanly
``relay_clean:{service}`` ("1" or "0").
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Mapping, Sequence

from storage.relay_meta import RelayMeta
from storage.store import RelayEventRow, StoredRelayEvent

SEP = "|"
_INSERT = (
    "INSERT OR REPLACE INTO relay_events (channel, offset, epoch, ts, event, data)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)


class SQLiteRelayEvents(RelayMeta):
    """A :class:`storage.store.RelayEventLog` on the store's connection, under its lock."""

    def __init__(self, conn: sqlite3.Connection, lock: threading.Lock) -> None:
        self._conn = conn
        self._lock = lock

    def events(self, service: str) -> list[StoredRelayEvent]:
        low, high = _key_range(service)
        with self._lock:
            rows = self._conn.execute(
                "SELECT channel, offset, epoch, ts, data FROM relay_events"
                " WHERE channel >= ? AND channel < ? ORDER BY channel, offset",
                (low, high),
            ).fetchall()
        return [
            StoredRelayEvent(key[len(low) :], int(offset), epoch, float(ts), data)
            for key, offset, epoch, ts, data in rows
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
        prefix = f"{service}{SEP}"
        rows = [(prefix + channel, *rest) for channel, *rest in events]
        with self._lock, self._conn:
            self._conn.executemany(
                "DELETE FROM relay_events WHERE channel = ?",
                [(prefix + channel,) for channel in restarted],
            )
            self._conn.executemany(_INSERT, rows)
            self._conn.executemany(
                "DELETE FROM relay_events WHERE channel = ? AND offset <= ?",
                [(prefix + channel, offset) for channel, offset in keep_after.items()],
            )
            if older_than is not None:
                low, high = _key_range(service)
                self._conn.execute(
                    "DELETE FROM relay_events WHERE channel >= ? AND channel < ? AND ts < ?",
                    (low, high, older_than),
                )

    def _meta(self, key: str) -> str | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT value FROM inkwire_meta WHERE key = ?", (key,)
            ).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, key: str, value: str) -> None:
        with self._lock, self._conn:
            self._conn.execute(
                "INSERT OR REPLACE INTO inkwire_meta (key, value) VALUES (?, ?)", (key, value)
            )


def _key_range(service: str) -> tuple[str, str]:
    """The keys of the service's rows are those from ``low`` up to, not including, ``high``."""
    return f"{service}{SEP}", f"{service}{chr(ord(SEP) + 1)}"
