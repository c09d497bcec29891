"""An in-process store: durable for the life of the process, for tests and demos."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pycrdt import Doc


class MemoryStore:
    """Keeps one document per diagram, so overwritten content is collected.

    Keeping the raw update log instead would grow without bound under
    repeated edits of the same elements (Yjs merges keep deleted content).
    """

    def __init__(self) -> None:
        self._docs: dict[str, Doc[Any]] = {}

    async def load(self, diagram: str) -> bytes | None:
        doc = self._docs.get(diagram)
        return None if doc is None else doc.get_update()

    async def append(self, diagram: str, updates: Sequence[bytes]) -> None:
        doc = self._docs.get(diagram)
        if doc is None:
            doc = self._docs[diagram] = Doc()
        for update in updates:
            doc.apply_update(update)

    def diagrams(self) -> list[str]:
        return sorted(self._docs)
