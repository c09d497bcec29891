"""A relay log's per-service keys, the same over any key/value table."""

from __future__ import annotations

from abc import ABC, abstractmethod


class RelayMeta(ABC):
    """The epoch and the clean-end flag of each service, as rows of a database's meta table.

    A database's relay log provides the two accessors; the keys and their
    meaning are the same everywhere, so a database copy moves them as they are.
    """

    @abstractmethod
    def _meta(self, key: str) -> str | None: ...

    @abstractmethod
    def _set_meta(self, key: str, value: str) -> None: ...

    def epoch(self, service: str) -> str | None:
        return self._meta(f"relay_epoch:{service}")

    def set_epoch(self, service: str, epoch: str) -> None:
        self._set_meta(f"relay_epoch:{service}", epoch)

    def ended_cleanly(self, service: str) -> bool:
        return self._meta(f"relay_clean:{service}") == "1"

    def set_ended_cleanly(self, service: str, clean: bool) -> None:
        self._set_meta(f"relay_clean:{service}", "1" if clean else "0")
