"""Persistence for diagrams: the store interface rooms load from and append to."""

from storage.memory import MemoryStore
from storage.store import Store

__all__ = ["MemoryStore", "Store"]
