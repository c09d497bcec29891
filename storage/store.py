"""The store interface a room persists through.

A room calls :meth:`Store.load` once before it answers any client, and
:meth:`Store.append` with each batch of updates it has applied; when
``append`` returns the batch is durable, and only then does the room let
other clients see it. Implementations: :class:`storage.MemoryStore` here,
SQLite with group commit later, behind the same two methods.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Protocol


class Store(Protocol):
    async def load(self, diagram: str) -> bytes | None:
        """The diagram's whole saved state as one Yjs update, or None if new."""
        ...

    async def append(
        self,
        diagram: str,
        updates: Sequence[bytes],
        origins: str | Sequence[str | None] | None = None,
    ) -> None:
        """Durably record updates, in order (with who made them); return once saved."""
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
