"""A diagram's elements as plain dicts, kept current, and edits computed off the event loop.

Reading pycrdt's ``elements`` map into Python costs ~20 µs an element (a
5 000-element diagram: ~100 ms), and every write tool needs the whole map:
converting it on every call would stall the event loop, which on ``/mcp``
is the loop that serves every room of the server. :class:`ElementMirror`
converts the map once (:meth:`ElementMirror.load`: in a worker thread, from
a copy of the document), then only what each transaction changes (a map
observer), and counts the changes (:attr:`ElementMirror.generation`).

:func:`consistent_edit` computes an edit in a worker thread from a snapshot
of the mirror and hands it back only if nothing changed the elements (nor
the document's revision) meanwhile; otherwise it computes it again from the
new state. The last try runs on the loop itself, where nothing can change
under it, so an edit is always computed against exactly what it changes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import anyio.to_thread
from pycrdt import Doc, Map

__all__ = ["TRIES", "ElementMirror", "consistent_edit"]

T = TypeVar("T")

#: Attempts at an edit: all but the last in a worker thread, the last on the loop.
TRIES = 3

Elements = dict[str, dict[str, Any]]


class ElementMirror:
    """Every element of a document's ``elements`` map as a dict, tombstones included.

    The dicts are shared by every snapshot and must not be changed: the
    element model never changes its input (it copies what it edits).
    Values that are not objects are left out, as the element model ignores
    them (their keys are still taken in the document, as before).
    """

    def __init__(self, elements: Map[Any], *, convert: bool = True) -> None:
        self.generation = 0
        self._elements: Elements = (
            {key: dict(value) for key, value in elements.items() if isinstance(value, dict)}
            if convert
            else {}
        )
        # changes seen while :meth:`load` converts a copy of the document
        self._backlog: list[dict[str, dict[str, Any]]] | None = None if convert else []
        # The native map's events: pycrdt's own Map.observe first walks every changed
        # value in Python to wrap nested shared types (elements are plain JSON, never
        # those), which triples the cost of observing a big write (1 000 elements:
        # ~25 ms against ~6 ms). The subscription ends when it is dropped: kept here.
        self._subscription = elements.integrated.observe(self._changed)

    @classmethod
    async def load(cls, elements: Map[Any]) -> ElementMirror:
        """A mirror converted in a worker thread (5 000 elements: ~100 ms off the loop).

        The thread converts a copy of the document (its update, taken on the loop
        as the mirror starts observing); the changes that arrive meanwhile are
        applied after it, in order.
        """
        mirror = cls(elements, convert=False)
        state = elements.doc.get_update()
        try:
            mirror._elements = await anyio.to_thread.run_sync(_convert, state)
        except BaseException:
            mirror._subscription.drop()
            raise
        assert mirror._backlog is not None
        for keys in mirror._backlog:
            mirror._apply(keys)
        mirror._backlog = None
        return mirror

    def _changed(self, event: Any) -> None:
        self.generation += 1
        keys: dict[str, dict[str, Any]] = event.keys
        if self._backlog is not None:
            self._backlog.append(keys)
        else:
            self._apply(keys)

    def _apply(self, keys: dict[str, dict[str, Any]]) -> None:
        for key, change in keys.items():
            value = change.get("newValue") if change.get("action") != "delete" else None
            if isinstance(value, dict):
                self._elements[key] = value
            else:
                self._elements.pop(key, None)

    def snapshot(self) -> Elements:
        """The elements now: a new dict (cheap), over the shared element dicts."""
        return dict(self._elements)


def _convert(state: bytes) -> Elements:
    doc: Doc[Any] = Doc()
    doc.apply_update(state)
    elements = doc.get("elements", type=Map)
    return {key: dict(value) for key, value in elements.items() if isinstance(value, dict)}


async def consistent_edit(
    mirror: ElementMirror,
    make: Callable[[Elements], T],
    revision_of: Callable[[], int],
    check: Callable[[int], None] = lambda revision: None,
    tries: int = TRIES,
) -> tuple[T, int]:
    """``make(elements)`` computed against the document as it is when this returns.

    ``revision_of()`` is the document's revision (:func:`agents.session.revision_of`).
    ``check(revision)`` runs before each try (it may raise: a stale
    ``if_revision``, a locked diagram). ``make`` runs in a worker thread on a
    snapshot; if the elements or the revision changed meanwhile, its result
    (or its error) is dropped and it runs again. The last try runs on the
    event loop, so the result is always current. Returns the result and the
    revision it was computed at.
    """
    for attempt in range(tries):
        revision, generation = revision_of(), mirror.generation
        check(revision)
        snapshot = mirror.snapshot()
        if attempt == tries - 1:
            return make(snapshot), revision  # nothing runs on the loop meanwhile
        try:
            result = await anyio.to_thread.run_sync(make, snapshot)
        except Exception:
            if mirror.generation == generation and revision_of() == revision:
                raise
            continue  # perhaps refused for what changed: ask the current state
        if mirror.generation == generation and revision_of() == revision:
            return result, revision
    raise AssertionError("unreachable: the last try returns")
