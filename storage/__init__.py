"""Persistence for diagrams: the store interface rooms load from and append to."""

from storage.memory import MemoryStore
from storage.store import StorageError, Store

__all__ = ["MemoryStore", "StorageError", "Store"]
