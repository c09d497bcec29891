"""An in-process store: durable for the life of the process, for tests and demos."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anyio.lowlevel
from pycrdt import Doc

COMPACT_AFTER = 1000  # updates appended before they are folded into the base
FOLD_CHUNK = 100  # updates folded per turn of the event loop


class MemoryStore:
    """Keeps each diagram as one encoded state plus the updates since.

    Every ``COMPACT_AFTER`` updates the tail is folded into the base through a
    scratch document, so content that was overwritten is collected (a plain
    merge of Yjs updates keeps it) and memory stays near the encoded size.
    Seqs are counted as a database counts them, though no history is kept.

    Folding a thousand updates takes milliseconds (pycrdt applies each), in the
    event loop: done in one go, a flooding client's diagram stalled every other
    room for that long every ~3 s (docs/capacity.md). :meth:`append` and
    :meth:`release` fold ``FOLD_CHUNK`` updates per turn of the loop instead.
    """

    def __init__(self) -> None:
        self._base: dict[str, bytes] = {}
        self._tail: dict[str, list[bytes]] = {}
        self._seq: dict[str, int] = {}

    async def load(self, diagram: str) -> bytes | None:
        if diagram not in self._base and not self._tail.get(diagram):
            return None
        self._compact(diagram)
        return self._base[diagram]

    async def append(
        self,
        diagram: str,
        updates: Sequence[bytes],
        origins: str | Sequence[str | None] | None = None,
    ) -> int:
        """Durable (for this process) as soon as it is in memory: returns at once."""
        tail = self._tail.setdefault(diagram, [])
        tail.extend(updates)
        seq = self._seq[diagram] = self._seq.get(diagram, 0) + len(updates)
        if len(tail) >= COMPACT_AFTER:
            await self._fold(diagram)
        return seq

    async def _fold(self, diagram: str) -> None:
        """:meth:`_compact`, a chunk of the tail per turn of the loop.

        Until its last step (no await in it) the base and the tail stay as they
        were, so a :meth:`load` meanwhile still sees everything, and updates
        appended meanwhile stay in the tail. If the base changed meanwhile (a
        load compacted it), that result stands and this one is dropped.
        """
        tail = self._tail.get(diagram)
        if not tail:
            return
        base = self._base.get(diagram)
        count = len(tail)  # what this fold covers
        doc: Doc[Any] = Doc()
        if base is not None:
            doc.apply_update(base)
        for start in range(0, count, FOLD_CHUNK):
            if start:
                await anyio.lowlevel.checkpoint()
            for update in tail[start : start + FOLD_CHUNK]:
                doc.apply_update(update)
        if self._tail.get(diagram) is not tail or self._base.get(diagram) is not base:
            return
        self._base[diagram] = doc.get_update()
        del tail[:count]

    def _compact(self, diagram: str) -> None:
        if diagram not in self._base and diagram not in self._tail:
            return
        doc: Doc[Any] = Doc()
        base = self._base.get(diagram)
        if base is not None:
            doc.apply_update(base)
        for update in self._tail.pop(diagram, []):
            doc.apply_update(update)
        self._base[diagram] = doc.get_update()

    async def maintain(
        self, diagram: str, saved_state: Callable[[], bytes | None] | None = None
    ) -> None:
        pass  # appends compact as they go

    async def release(self, diagram: str) -> None:
        await self._fold(diagram)

    @property
    def healthy(self) -> bool:
        return True

    def diagrams(self) -> list[str]:
        return sorted(self._base.keys() | self._tail.keys())
