"""An in-process store: durable for the life of the process, for tests and demos."""

from __future__ import annotations

from collections.abc import Sequence

from storage.updates import merge_many

class MemoryStore:
    def __init__(self) -> None:
        self._updates: dict[str, list[bytes]] = {}

    async def load(self, diagram: str) -> bytes | None:
        updates = self._updates.get(diagram)
        if not updates:
            return None
        merged = merge_many(updates)
        self._updates[diagram] = [merged]
        return merged

    async def append(self, diagram: str, updates: Sequence[bytes]) -> None:
        self._updates.setdefault(diagram, []).extend(updates)

    def diagrams(self) -> list[str]:
        return sorted(self._updates)
