"""A room's awareness: who is there, where their pointer is, what they selected.

y-protocols awareness is last-writer-wins per client id, by clock. The room
adds ownership: a client id belongs to the connection that set it first, so
no peer can overwrite (or remove) another's presence, and when a connection
ends, the states it owned are removed for everyone. The server may also hold
states of its own (a JSON client shown to the browsers as a collaborator):
no connection owns those, so no peer can change them either. In a cluster,
states set through other nodes are owned by that node (its id): they come
and go with what the node reports, and with the node itself.

Joiners get every present state at once in one frame, encoded once and kept
until the next change.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from collab.protocol import AwarenessEntry, awareness_message, encode_awareness_update
from net.wire import Frame

if TYPE_CHECKING:
    from collab.connection import Connection


@dataclass(slots=True)
class AwarenessRecord:
    entry: AwarenessEntry
    owner: Connection | str | None  # None: a state the server holds; str: another node


class RoomAwareness:
    """The awareness states of one room, and who may change each."""

    __slots__ = ("_snapshot", "held", "records")

    def __init__(self) -> None:
        self.records: dict[int, AwarenessRecord] = {}
        self.held: set[int] = set()  # client ids of the states the server holds
        self._snapshot: Frame | None = None

    def __contains__(self, client_id: int) -> bool:
        return client_id in self.records

    def __bool__(self) -> bool:
        return bool(self.records)

    def present(self) -> Iterator[tuple[int, AwarenessEntry]]:
        """The client ids and states of everyone present (removed states left out)."""
        for client_id, record in self.records.items():
            if not record.entry.removed:
                yield client_id, record.entry

    def update(self, conn: Connection, entries: Sequence[AwarenessEntry]) -> list[AwarenessEntry]:
        """Record the states this connection may set; return those that changed."""
        accepted = []
        for entry in entries:
            record = self.records.get(entry.client_id)
            if record is None:
                if entry.removed:
                    continue
            elif record.owner is not conn and not (
                isinstance(record.owner, str) and entry.clock > record.entry.clock
            ):
                # a client id belongs to the connection that set it first; one set through
                # another node passes to a newer clock here (the client moved: its node died)
                continue
            elif not (
                entry.clock > record.entry.clock
                or (
                    entry.clock == record.entry.clock and entry.removed and not record.entry.removed
                )
            ):
                continue
            self.records[entry.client_id] = AwarenessRecord(entry, conn)
            ids = conn.client_ids
            if isinstance(ids, frozenset):  # its first (see Connection.client_ids)
                ids = conn.client_ids = set()
            ids.add(entry.client_id)
            accepted.append(entry)
        if accepted:
            self._snapshot = None
        return accepted

    def update_remote(self, node: str, entries: Sequence[AwarenessEntry]) -> list[AwarenessEntry]:
        """Record states another node reports for its clients; return those that changed."""
        accepted = []
        for entry in entries:
            record = self.records.get(entry.client_id)
            if record is None:
                if entry.removed:
                    continue
            elif not isinstance(record.owner, str):
                continue  # one of ours: it stays ours
            elif record.owner != node and entry.clock <= record.entry.clock:
                continue  # another node's, not moved here (a newer clock says it moved)
            elif entry.removed:
                if record.owner == node:
                    del self.records[entry.client_id]
                    accepted.append(entry)
                continue
            elif entry.clock <= record.entry.clock:
                continue
            self.records[entry.client_id] = AwarenessRecord(entry, node)
            accepted.append(entry)
        if accepted:
            self._snapshot = None
        return accepted

    def remove_node(self, node: str) -> list[AwarenessEntry]:
        """Forget the states of a node that is gone; return their removals, to broadcast."""
        removed = [
            AwarenessEntry(client_id, record.entry.clock + 1, "null")
            for client_id, record in self.records.items()
            if record.owner == node
        ]
        for entry in removed:
            del self.records[entry.client_id]
        if removed:
            self._snapshot = None
        return removed

    def nodes(self) -> set[str]:
        """The other nodes whose clients are present here."""
        return {r.owner for r in self.records.values() if isinstance(r.owner, str)}

    def local(self) -> list[AwarenessEntry]:
        """The present states this node owns (its connections' and the ones it holds)."""
        return [
            record.entry
            for record in self.records.values()
            if not isinstance(record.owner, str) and not record.entry.removed
        ]

    def remove(self, conn: Connection) -> list[AwarenessEntry]:
        """Forget a departing connection's states; return their removals, to broadcast."""
        removed = []
        for client_id in conn.client_ids:
            record = self.records.get(client_id)
            if record is None or record.owner is not conn:
                continue  # another node's now (the client moved there)
            del self.records[client_id]
            if not record.entry.removed:
                removed.append(AwarenessEntry(client_id, record.entry.clock + 1, "null"))
        if removed:
            self._snapshot = None
        return removed

    def hold(self, client_id: int, state: str | None) -> AwarenessEntry | None:
        """Set (or with None, remove) a state the server holds; return the change, if any.

        A client id a connection owns is never the server's to change.
        """
        record = self.records.get(client_id)
        if record is not None and record.owner is not None:
            return None
        clock = record.entry.clock + 1 if record is not None else 0
        if state is None:
            if record is None:
                return None
            entry = AwarenessEntry(client_id, clock, "null")
            del self.records[client_id]
            self.held.discard(client_id)
        else:
            entry = AwarenessEntry(client_id, clock, state)
            self.records[client_id] = AwarenessRecord(entry, None)
            self.held.add(client_id)
        self._snapshot = None
        return entry

    def snapshot(self) -> Frame | None:
        """Every present state in one awareness frame (None when nobody is there)."""
        if self._snapshot is None:
            states = [entry for _, entry in self.present()]
            if not states:
                return None
            self._snapshot = Frame(awareness_message(encode_awareness_update(states)))
        return self._snapshot
