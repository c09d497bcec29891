"""Persistence for diagrams: the store interface rooms load from and append to."""

from typing import TYPE_CHECKING

from storage.store import StorageError, Store

if TYPE_CHECKING:
    from storage.memory import MemoryStore

__all__ = ["MemoryStore", "StorageError", "Store"]


def __getattr__(name: str) -> object:
    """``MemoryStore`` loads pycrdt when first asked for, not with the package: the
    ``inkwire`` commands that only need ``storage.urls`` start without it."""
    if name == "MemoryStore":
        from storage.memory import MemoryStore

        return MemoryStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
