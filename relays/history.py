"""Relay history in SQLite (``--db``), so ``subscribe`` with ``since`` recovers across restarts.

What is stored: every placement of an event on a channel, as the message
clients received (envelope, offset and epoch included, so a replay after a
restart is byte-identical), in ``relay_events``. The key is
``"{service}|{channel}"`` so several relays (``inkwire relay all --db``) can
share one database. The hub's epoch is kept in ``inkwire_meta``
(``relay_epoch:{service}``).

Writes are batched: the hub hands each placement to :meth:`RelayHistory.record`
(synchronous, no I/O); :meth:`RelayHistory.run` commits what gathered every
``flush_interval`` seconds in one transaction in a worker thread, never on
the event loop, and prunes each channel to the hub's ``history_size`` and
``history_age`` in the same transaction.

Why the clean-shutdown flag: events reach clients before they are committed
(a relay is not a durable log), so a killed relay may have sent offsets the
database never saw. Continuing the same epoch after that would let a client
holding such an offset believe it missed nothing while new events reuse its
offsets. So the epoch is kept only after a shutdown that flushed everything
(``relay_clean:{service}`` = 1); otherwise the restarted relay starts a new
epoch (offsets still continue) and old marks get ``recovered: false``.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections import defaultdict
from typing import TYPE_CHECKING, Any

import anyio
import anyio.to_thread

if TYPE_CHECKING:
    from relays.hub import Hub
    from storage.sqlite import SQLiteStore

log = logging.getLogger("inkwire.relay")

SEP = "|"
INSERT = (
    "INSERT OR REPLACE INTO relay_events (channel, offset, epoch, ts, event, data)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
AGE_PRUNE_EVERY = 60.0  # seconds between pruning by age (count pruning is per batch)


class RelayHistory:
    """One relay's events in the database: restored at start, written in batches."""

    def __init__(
        self,
        store: SQLiteStore,
        service: str,
        *,
        flush_interval: float = 0.02,
        max_pending: int = 100_000,
        clock: Any = time.time,
    ) -> None:
        self.store = store
        self.service = service
        self.flush_interval = flush_interval
        self.max_pending = max_pending  # placements waiting for the writer, at most
        self.clock = clock
        self._pending: list[tuple[str, int, str, float, str, str]] = []
        self._wake = anyio.Event()
        self._history_size = 0
        self._history_age = 0.0
        self._lost = False  # a batch failed: the next start must not keep the epoch
        self._last_age_prune = 0.0
        self.flushed = 0

    @property
    def _low(self) -> str:
        return f"{self.service}{SEP}"

    @property
    def _high(self) -> str:
        return f"{self.service}{chr(ord(SEP) + 1)}"

    def _meta(self, key: str) -> str | None:
        rows = self.store.query(
            "SELECT value FROM inkwire_meta WHERE key = ?", (f"{key}:{self.service}",)
        )
        return str(rows[0][0]) if rows else None

    def _set_meta(self, key: str, value: str) -> None:
        self.store.write(
            "INSERT OR REPLACE INTO inkwire_meta (key, value) VALUES (?, ?)",
            (f"{key}:{self.service}", value),
        )

    # --- start -------------------------------------------------------------------

    def attach(self, hub: Hub) -> None:
        """Restore ``hub`` from the database and record its events from now on.

        Synchronous: it runs once, before the relay takes connections.
        """
        self._history_size = hub.settings.history_size
        self._history_age = hub.settings.history_age
        epoch, clean = self._meta("relay_epoch"), self._meta("relay_clean") == "1"
        now = self.clock()
        rows = self.store.query(
            "SELECT channel, offset, epoch, ts, data FROM relay_events"
            " WHERE channel >= ? AND channel < ? ORDER BY channel, offset",
            (self._low, self._high),
        )
        by_channel: dict[str, list[tuple[int, str, float, str]]] = defaultdict(list)
        for key, offset, row_epoch, ts, data in rows:
            by_channel[key[len(self._low) :]].append((int(offset), row_epoch, float(ts), data))
        restored: dict[str, tuple[str, int, list[tuple[int, float, str]]]]
        if epoch is None or not clean:
            # unknown or unclean end: offsets continue, under a new epoch, no history
            epoch = secrets.token_hex(8)
            restored = {
                name: (epoch, items[-1][0], []) for name, items in by_channel.items() if items
            }
            if by_channel:
                log.warning(
                    "relay %s: last run did not shut down cleanly; new epoch, no recovery",
                    self.service,
                )
        else:
            restored = {}
            for name, items in by_channel.items():
                last_offset, last_epoch = items[-1][0], items[-1][1]
                kept = [
                    (offset, now - ts, data)
                    for offset, row_epoch, ts, data in items
                    if row_epoch == last_epoch and now - ts <= self._history_age
                ][-self._history_size :]
                restored[name] = (last_epoch, last_offset, kept)
        # channels in the order they were last written, so eviction drops the oldest
        order = sorted(restored, key=lambda n: by_channel[n][-1][2])
        hub.restore(epoch, {name: restored[name] for name in order})
        self._replay_projection(hub, by_channel, now)
        self._set_meta("relay_epoch", epoch)
        self._set_meta("relay_clean", "0")
        hub.sink = self.record

    def _replay_projection(
        self, hub: Hub, by_channel: dict[str, list[tuple[int, str, float, str]]], now: float
    ) -> None:
        """Refold the stored events into the projection, so requests answer after a restart.

        An event placed on several channels is stored once per channel under one
        message id: it is applied once, in publishing order. Only what history
        still holds is refolded (counts over longer spans start over).
        """
        seen: set[str] = set()
        events: list[tuple[float, int, str, dict[str, Any]]] = []
        for items in by_channel.values():
            for offset, _, ts, text in items:
                if now - ts > self._history_age:
                    continue
                try:
                    message = json.loads(text)
                    key, event, data = message["id"], message["event"], message["data"]
                except (ValueError, KeyError, TypeError):
                    continue
                if key in seen or not isinstance(data, dict) or not isinstance(event, str):
                    continue
                seen.add(key)
                events.append((ts, offset, event, data))
        events.sort(key=lambda item: (item[0], item[1]))
        for _, _, event, data in events:
            hub.projection.apply(event, data)

    # --- writing -------------------------------------------------------------------

    def record(self, channel: str, offset: int, epoch: str, event: str, text: str) -> None:
        """The hub's sink: queue one placement for the next batch (no I/O here)."""
        if len(self._pending) >= self.max_pending and not self._lost:
            # nobody runs the writer (or the disk cannot keep up): drop rather than
            # grow without bound; the next start then gets a new epoch
            log.error("relay %s: history writer is not keeping up; dropping", self.service)
            self._lost = True
        if self._lost and len(self._pending) >= self.max_pending:
            self._pending.clear()
        self._pending.append(
            (f"{self.service}{SEP}{channel}", offset, epoch, self.clock(), event, text)
        )
        self._wake.set()

    async def run(self) -> None:
        """Commit batches until cancelled; then commit the rest and mark a clean end."""
        try:
            while True:
                await self._wake.wait()
                self._wake = anyio.Event()
                await anyio.sleep(self.flush_interval)  # let a burst gather into one batch
                await self.flush()
        finally:
            with anyio.CancelScope(shield=True):
                await self.flush()
                if not self._lost:
                    await anyio.to_thread.run_sync(self._set_meta, "relay_clean", "1")

    async def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            await anyio.to_thread.run_sync(self._commit, batch)
        except Exception:
            self._lost = True
            log.exception("relay %s: could not save %d events", self.service, len(batch))
        else:
            self.flushed += len(batch)

    def _commit(self, batch: list[tuple[str, int, str, float, str, str]]) -> None:
        # a channel numbering from 1 again (rebuilt after eviction) drops its old rows,
        # those already stored and those earlier in this batch
        restart_at = {key: i for i, (key, offset, *_) in enumerate(batch) if offset == 1}
        restarted = [(key,) for key in restart_at]
        batch = [row for i, row in enumerate(batch) if i >= restart_at.get(row[0], 0)]
        last: dict[str, int] = {}
        for key, offset, *_ in batch:
            last[key] = offset
        statements: list[tuple[str, Any]] = [
            ("DELETE FROM relay_events WHERE channel = ?", restarted),
            (INSERT, batch),
            (
                "DELETE FROM relay_events WHERE channel = ? AND offset <= ?",
                [(key, offset - self._history_size) for key, offset in last.items()],
            ),
        ]
        now = self.clock()
        if now - self._last_age_prune >= AGE_PRUNE_EVERY:
            self._last_age_prune = now
            statements.append(
                (
                    "DELETE FROM relay_events WHERE channel >= ? AND channel < ? AND ts < ?",
                    [(self._low, self._high, now - self._history_age)],
                )
            )
        self.store.write_many(statements)
