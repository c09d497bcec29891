"""A locked diagram: ``meta.locked`` in its document, and nothing else.

The lock is part of the document, so it is saved, replayed and restored like
any edit, and every node that has the document knows it. Locking and
unlocking are the server's own edits (the REST lock route); while it is set,
the room refuses every client's document update (presence and sync go on).
"""

from __future__ import annotations

from typing import Any

from pycrdt import Doc, Map, MapEvent


class DiagramLock:
    """Whether a document is locked, kept current by observing its ``meta`` map."""

    __slots__ = ("_meta", "_subscription", "locked")

    def __init__(self, doc: Doc[Any]) -> None:
        self._meta = meta = doc.get("meta", type=Map)
        self.locked = meta.get("locked") is True
        # pycrdt drops an observer once its map object is collected: keep both
        self._subscription = meta.observe(self._on_meta)

    def _on_meta(self, event: MapEvent) -> None:
        change = event.keys.get("locked")  # type: ignore[attr-defined]
        if change is not None:  # {"action", "oldValue", "newValue"}; no newValue when deleted
            self.locked = change.get("newValue") is True
