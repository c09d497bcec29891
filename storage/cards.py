"""The landing page's cards: what each diagram shows beyond the list's summary.

A card adds to :func:`storage.replay.list_diagrams`'s row a title (a
rename: the id, and so every link, stays), who made the last edit (the
origin the log recorded), whether a thumbnail exists (rendered at
checkpoints, :mod:`storage.thumbnail`) and, for a diagram in the trash, when
it was deleted. A delete only marks the diagram: it leaves the list for the
trash, where it can be restored for :data:`TRASH_DAYS`; after that the next
look at the trash purges it. The SQLite and PostgreSQL stores keep cards; the
in-memory one does not (no trash, search by id only).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol, runtime_checkable

TRASH_DAYS = 30
MAX_TITLE = 200


class Card(NamedTuple):
    title: str | None
    deleted: float | None
    thumbnail_seq: int | None
    author: str | None


@runtime_checkable
class CardStore(Protocol):
    def cards(self, diagrams: Sequence[str]) -> dict[str, Card]: ...
    def titles(self) -> dict[str, str]: ...
    def deleted(self) -> dict[str, float]: ...
    def set_title(self, diagram: str, title: str | None) -> bool: ...
    def set_deleted(self, diagram: str, deleted: float | None) -> bool: ...
    def thumbnail(self, diagram: str) -> tuple[int, str] | None: ...
    def purge(self, diagram: str) -> None: ...


def matcher(store: CardStore, search: str, trash: bool) -> Callable[[str], bool]:
    """Which ids a list shows: in the trash or not, and matching ``search`` (id or title)."""
    deleted = store.deleted()
    titles = store.titles() if search else {}
    needle = search.casefold()

    def shown(diagram: str) -> bool:
        if (diagram in deleted) != trash:
            return False
        return (
            not needle
            or needle in diagram.casefold()
            or needle in titles.get(diagram, "").casefold()
        )

    return shown


def decorate(store: CardStore, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The list's rows with their card fields."""
    cards = store.cards([row["id"] for row in rows])
    for row in rows:
        card = cards.get(row["id"]) or Card(None, None, None, None)
        row["title"] = card.title
        row["author"] = card.author
        row["thumbnail_seq"] = card.thumbnail_seq
        row["deleted"] = card.deleted
    return rows


def expired(store: CardStore, now: float | None = None) -> list[str]:
    """Diagrams deleted more than TRASH_DAYS ago."""
    limit = (time.time() if now is None else now) - TRASH_DAYS * 86400
    return [diagram for diagram, when in store.deleted().items() if when < limit]
