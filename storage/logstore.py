"""What the SQLite and PostgreSQL stores share: group commit, checkpoint timing, frames.

A database store keeps each diagram as an update log with checkpoints (see
:mod:`storage.sqlite`). Everything about *when* to write is the same
whatever the database: :class:`LogStore` holds it, and a subclass supplies
the SQL (``_commit``, ``_write_checkpoint``, ``checkpoint``, ``compact``,
``_doc_at``).

**Group commit.** :meth:`LogStore.append` returns only once the transaction
holding its batch committed. Appends that arrive while a commit runs wait
for it, then are committed together by whichever caller runs next, in one
worker thread, never on the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
from pycrdt import Doc

from storage.sqlite_schema import decode_blob
from storage.store import StorageError


@dataclass
class Pending:
    """One caller's batch, waiting for the commit that holds it."""

    diagram: str
    updates: list[bytes]
    origins: list[str | None]
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None
    last_seq: int = 0  # the diagram's, once committed


class LogStore:
    """The database-independent half of a store: append, maintain, release, load."""

    #: How errors name the database (a path, or a URL without its password).
    name: str

    def __init__(
        self,
        *,
        compress: bool,
        checkpoint_every: int,
        retention: float,
        frame_seconds: float,
    ) -> None:
        self.compress = compress
        self.checkpoint_every = checkpoint_every
        self.retention = retention  # full-resolution history kept this long, then merged
        self.frame_seconds = frame_seconds
        self._queue: list[Pending] = []
        self._due: set[str] = set()  # diagrams owed a checkpoint (see maintain)
        self._last_seq: dict[str, int] = {}  # as of the last commit
        self._committing = False
        self._round: anyio.Event | None = None  # set when a commit round ends
        self.healthy = True  # False while saving fails
        self.last_error: str | None = None

    # --- what a subclass writes in SQL ---------------------------------------------

    def _commit(self, batch: list[Pending]) -> None:
        """Commit the batch in one transaction, setting each item's ``last_seq``."""
        raise NotImplementedError

    def _write_checkpoint(
        self, diagram: str, seq: int, state: bytes, doc: Doc[Any] | None = None
    ) -> None:
        raise NotImplementedError

    def _doc_at(self, diagram: str, seq: int | None = None) -> Doc[Any] | None:
        raise NotImplementedError

    def checkpoint(self, diagram: str) -> int | None:
        raise NotImplementedError

    def compact(self, diagram: str, *, older_than: float, frame_seconds: float = 60.0) -> int:
        raise NotImplementedError

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
        pending = Pending(diagram, list(updates), list(origins))
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
            else:
                self.healthy = True
                self.last_error = None
            finally:
                self._committing = False
                for item in batch:
                    item.done.set()
                finished, self._round = self._round, None
                if finished is not None:
                    finished.set()
        if pending.error is not None:
            raise StorageError(f"could not save to {self.name}: {pending.error}") from (
                pending.error
            )
        return pending.last_seq

    def _committed(self, diagram: str, last: int, checkpoint: int) -> None:
        """Note a diagram's seq after a commit, and whether a checkpoint is due."""
        if last - checkpoint >= self.checkpoint_every:
            self._due.add(diagram)
        self._last_seq[diagram] = last

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

    # --- reading ---------------------------------------------------------------------

    def state_at(self, diagram: str, seq: int | None = None) -> bytes | None:
        """The full state after update ``seq`` (default: the latest), or None."""
        doc = self._doc_at(diagram, seq)
        return None if doc is None else doc.get_update()


def replayed(checkpoint: bytes | None, blobs: Iterable[bytes]) -> Doc[Any]:
    """A document holding a checkpoint's state (encoded blob) and the logged updates after it."""
    doc: Doc[Any] = Doc()
    if checkpoint is not None:
        doc.apply_update(decode_blob(checkpoint))
    for blob in blobs:
        doc.apply_update(decode_blob(blob))
    return doc


Row = tuple[int, int, float, str | None, bytes]  # seq, first_seq, ts, origin, blob


def frames(rows: Sequence[Row], frame_seconds: float) -> list[list[Row]]:
    """Log rows (by seq) grouped into the time slots compaction merges, of two rows or more."""
    groups: list[list[Row]] = []
    last_slot: float | None = None
    for row in rows:
        slot = row[2] // frame_seconds if frame_seconds > 0 else row[0]
        if groups and slot == last_slot:
            groups[-1].append(row)
        else:
            groups.append([row])
        last_slot = slot
    return [group for group in groups if len(group) > 1]
