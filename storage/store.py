"""The interface a room persists through, and the durability rule that goes with it.

Implementations: :class:`storage.MemoryStore` (in process, for tests and
demos) and :class:`storage.sqlite.SQLiteStore` (one SQLite file, appends in
flight committed together), behind the same methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class StorageError(RuntimeError):
    """The database cannot be used (corrupt, newer schema, unwritable...)."""


class Store(Protocol):
    """What a room persists through.

    The durability rule: :meth:`append` returns only once its batch is
    durable (in a database, it survives the process being killed; in
    memory, it lasts as long as the process), and a room sends an update to
    other clients only after the ``append`` holding it returned, so nothing
    a client was sent can be lost by a crash. The seq ``append`` returns
    names that durable version of the diagram. The one exception is an
    outage: while ``append`` raises, a room serves edits unsaved rather
    than stop editing, and reports it (:attr:`healthy` is False).

    A room calls :meth:`load` once, before it answers any client.
    """

    async def load(self, diagram: str) -> bytes | None:
        """The diagram's whole saved state as one Yjs update, or None if new."""
        ...

    async def append(
        self,
        diagram: str,
        updates: Sequence[bytes],
        origins: str | Sequence[str | None] | None = None,
    ) -> int:
        """Record updates, in order (with who made them); return once they are durable.

        Returns the diagram's seq after the batch: each update takes the next
        seq, so this is the seq of its last update (of the diagram's last, 0
        if none, when the batch is empty). Raises :class:`StorageError` if it
        could not be saved; then nothing of the batch is.
        """
        ...

    async def maintain(
        self, diagram: str, saved_state: Callable[[], bytes | None] | None = None
    ) -> None:
        """Saving went well: a moment for work it made due (a checkpoint)."""
        ...

    async def release(self, diagram: str) -> None:
        """The room unloaded: a moment for checkpoints and compaction."""
        ...

    @property
    def healthy(self) -> bool:
        """False while saving fails (readiness reports it)."""
        ...
