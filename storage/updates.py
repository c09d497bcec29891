"""Helpers for raw Yjs updates."""

from __future__ import annotations

from collections.abc import Sequence

from pycrdt import merge_updates

MERGE_GROUP = 32  # pycrdt.merge_updates is quadratic in its input count


def merge_many(updates: Sequence[bytes]) -> bytes:
    """Merge any number of Yjs updates, in groups to stay near-linear."""
    if len(updates) == 1:
        return updates[0]
    parts = list(updates)
    while len(parts) > 1:
        parts = [
            merge_updates(*parts[i : i + MERGE_GROUP])
            if len(parts[i : i + MERGE_GROUP]) > 1
            else parts[i]
            for i in range(0, len(parts), MERGE_GROUP)
        ]
    return parts[0]
