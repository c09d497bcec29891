"""Relay history in the database (``--db``): ``subscribe`` with ``since`` recovers across restarts.

What is stored, through a :class:`storage.store.RelayEventLog` under the
relay's service name (several relays, ``inkwire relay all --db``, can share
one database): every placement of an event on a channel, as the message
clients received (envelope, offset and epoch included, so a replay after a
restart is byte-identical), and the hub's epoch.

Writes are batched: the hub hands each placement to :meth:`RelayHistory.record`
(synchronous, no I/O); :meth:`RelayHistory.run` saves what gathered every
``flush_interval`` seconds in one transaction in a worker thread, never on
the event loop, and prunes each channel to the hub's ``history_size`` and
``history_age`` in the same transaction.

Why the clean-shutdown flag: events reach clients before they are committed
(a relay is not a durable log), so a killed relay may have sent offsets the
database never saw. Continuing the same epoch after that would let a client
holding such an offset believe it missed nothing while new events reuse its
offsets. So the epoch is kept only after a shutdown that flushed everything
(the log's ``ended_cleanly``); otherwise the restarted relay starts a new
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
    from storage.store import RelayEventLog, RelayEventRow, StoredRelayEvent

log = logging.getLogger("inkwire.relay")

AGE_PRUNE_EVERY = 60.0  # seconds between pruning by age (count pruning is per batch)


class RelayHistory:
    """One relay's events in the database: restored at start, written in batches."""

    def __init__(
        self,
        events: RelayEventLog,
        service: str,
        *,
        flush_interval: float = 0.02,
        max_pending: int = 100_000,
        clock: Any = time.time,
    ) -> None:
        self.events = events
        self.service = service
        self.flush_interval = flush_interval
        self.max_pending = max_pending  # placements waiting for the writer, at most
        self.clock = clock
        self._pending: list[RelayEventRow] = []
        self._wake = anyio.Event()
        self._history_size = 0
        self._history_age = 0.0
        self._lost = False  # a batch failed: the next start must not keep the epoch
        self._last_age_prune = 0.0
        self.flushed = 0

    # --- start -------------------------------------------------------------------

    def attach(self, hub: Hub) -> None:
        """Restore ``hub`` from the database and record its events from now on.

        Synchronous: it runs once, before the relay takes connections.
        """
        self._history_size = hub.settings.history_size
        self._history_age = hub.settings.history_age
        epoch = self.events.epoch(self.service)
        clean = self.events.ended_cleanly(self.service)
        now = self.clock()
        by_channel: dict[str, list[StoredRelayEvent]] = defaultdict(list)
        for stored in self.events.events(self.service):
            by_channel[stored.channel].append(stored)
        restored: dict[str, tuple[str, int, list[tuple[int, float, str]]]]
        if epoch is None or not clean:
            # unknown or unclean end: offsets continue, under a new epoch, no history
            epoch = secrets.token_hex(8)
            restored = {
                name: (epoch, items[-1].offset, []) for name, items in by_channel.items() if items
            }
            if by_channel:
                log.warning(
                    "relay %s: last run did not shut down cleanly; new epoch, no recovery",
                    self.service,
                )
        else:
            restored = {}
            for name, items in by_channel.items():
                last_offset, last_epoch = items[-1].offset, items[-1].epoch
                kept = [
                    (item.offset, now - item.ts, item.message)
                    for item in items
                    if item.epoch == last_epoch and now - item.ts <= self._history_age
                ][-self._history_size :]
                restored[name] = (last_epoch, last_offset, kept)
        # channels in the order they were last written, so eviction drops the oldest
        order = sorted(restored, key=lambda n: by_channel[n][-1].ts)
        hub.restore(epoch, {name: restored[name] for name in order})
        self._replay_projection(hub, by_channel, now)
        self.events.set_epoch(self.service, epoch)
        self.events.set_ended_cleanly(self.service, False)
        hub.sink = self.record

    def _replay_projection(
        self, hub: Hub, by_channel: dict[str, list[StoredRelayEvent]], now: float
    ) -> None:
        """Refold the stored events into the projection, so requests answer after a restart.

        An event placed on several channels is stored once per channel under one
        message id: it is applied once, in publishing order. Only what history
        still holds is refolded (counts over longer spans start over).
        """
        seen: set[str] = set()
        events: list[tuple[float, int, str, dict[str, Any]]] = []
        for items in by_channel.values():
            for item in items:
                if now - item.ts > self._history_age:
                    continue
                try:
                    message = json.loads(item.message)
                    key, event, data = message["id"], message["event"], message["data"]
                except (ValueError, KeyError, TypeError):
                    continue
                if key in seen or not isinstance(data, dict) or not isinstance(event, str):
                    continue
                seen.add(key)
                events.append((item.ts, item.offset, event, data))
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
        self._pending.append((channel, offset, epoch, self.clock(), event, text))
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
                    await anyio.to_thread.run_sync(
                        self.events.set_ended_cleanly, self.service, True
                    )

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

    def _commit(self, batch: list[RelayEventRow]) -> None:
        # a channel numbering from 1 again (rebuilt after eviction) drops its old rows,
        # those already stored and those earlier in this batch
        restart_at = {channel: i for i, (channel, offset, *_) in enumerate(batch) if offset == 1}
        batch = [row for i, row in enumerate(batch) if i >= restart_at.get(row[0], 0)]
        last: dict[str, int] = {}
        for channel, offset, *_ in batch:
            last[channel] = offset
        now = self.clock()
        older_than = None
        if now - self._last_age_prune >= AGE_PRUNE_EVERY:
            self._last_age_prune = now
            older_than = now - self._history_age
        self.events.save(
            self.service,
            batch,
            restarted=restart_at.keys(),
            keep_after={channel: offset - self._history_size for channel, offset in last.items()},
            older_than=older_than,
        )
