"""Projections: the state a relay keeps from the events it relays.

A standalone relay answers ``get_adapter_status`` and friends without the
service behind it, from records folded out of the events it has passed on.
What to keep is data in the catalog (:class:`~relays.catalog.Table` and its
:class:`~relays.catalog.Update` rules); this module only interprets it. The
few cases no rule expresses are small functions in :data:`REDUCERS`, named by
the catalog.

Every record has one shape::

    {<key>: id, "status", "last_event", "updated_at", "data": {...},
     "counts": {...} (if the table counts), <collections>: {...}}

Records are bounded per table (oldest-updated evicted first), so a relay fed
with ever-new ids keeps constant memory.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any, Final

from relays.catalog import Catalog, Get, ListRecords, RequestSpec, Table, Update
from relays.protocol import ErrorCode, ProtocolError

Record = dict[str, Any]
SINGLE: Final = ""  # the key of a table's only record when it has no key field


def set_state_path(record: Record, payload: Mapping[str, Any]) -> None:
    """``state.changed``: put ``new_value`` at the dotted ``path`` of the component's state.

    Copies along the path, so the publisher's dicts are never mutated.
    """
    data = record["data"]
    state = data.get("state")
    state = dict(state) if isinstance(state, dict) else {}
    data["state"] = state
    *parents, leaf = str(payload["path"]).split(".")
    node = state
    for part in parents:
        child = node.get(part)
        node[part] = dict(child) if isinstance(child, dict) else {}
        node = node[part]
    node[leaf] = payload.get("new_value")


REDUCERS: Final[Mapping[str, Callable[[Record, Mapping[str, Any]], None]]] = {
    "set_state_path": set_state_path,
}


class _TableState:
    def __init__(self, table: Table) -> None:
        self.table = table
        self.records: OrderedDict[str, Record] = OrderedDict()
        self.counts = any(u.count_as for u in table.updates)
        self.collections = tuple(dict.fromkeys(u.collect.into for u in table.updates if u.collect))

    def record(self, key: str) -> Record:
        record = self.records.get(key)
        if record is None:
            record = {"status": None, "last_event": None, "updated_at": None, "data": {}}
            if self.table.key:
                record = {self.table.key: key, **record}
            if self.counts:
                record["counts"] = {}
            for name in self.collections:
                record[name] = {}
            self.records[key] = record
            if len(self.records) > self.table.max_records:
                self.records.popitem(last=False)
        else:
            self.records.move_to_end(key)
        return record

    def apply(self, update: Update, payload: Mapping[str, Any]) -> None:
        key = payload.get(update.key) if update.key else SINGLE
        if not isinstance(key, str | int) or isinstance(key, bool):
            return
        record = self.record(str(key))
        record["last_event"] = update.event
        record["updated_at"] = payload.get("timestamp")
        if update.mode == "merge":
            record["data"].update(payload)
        elif update.mode == "replace":
            record["data"] = dict(payload)
        record["data"].update(update.flags)
        if update.status is not None:
            record["status"] = update.status
        elif update.status_from is not None:
            record["status"] = payload.get(update.status_from)
        if update.count_as is not None:
            record["counts"][update.count_as] = record["counts"].get(update.count_as, 0) + 1
        if update.collect is not None:
            collect = update.collect
            members = record[collect.into]
            member = str(payload.get(collect.key))
            if collect.remove:
                members.pop(member, None)
            elif collect.value is None:
                members[member] = True
            elif collect.value == "*":
                members[member] = dict(payload)
            else:
                members[member] = payload.get(collect.value)
        if update.reducer is not None:
            REDUCERS[update.reducer](record, payload)


class Projection:
    """The records of one catalog's tables, fed by :meth:`apply`, read by :meth:`answer`."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self.tables = {t.name: _TableState(t) for t in catalog.tables}
        self._updates: dict[str, list[tuple[_TableState, Update]]] = {}
        for state in self.tables.values():
            for update in state.table.updates:
                self._updates.setdefault(update.event, []).append((state, update))

    def apply(self, event_name: str, payload: Mapping[str, Any]) -> None:
        """Fold one relayed (already validated) event into the records it concerns."""
        for state, update in self._updates.get(event_name, ()):
            state.apply(update, payload)

    def answers(self, request_name: str) -> bool:
        spec = self.catalog.request_index.get(request_name)
        return spec is not None and spec.view is not None

    def answer(
        self,
        request_name: str,
        params: object,
        visible: Callable[[Record], bool] | None = None,
    ) -> dict[str, Any]:
        """The response data for a request (UNKNOWN_REQUEST, INVALID_PAYLOAD, NOT_FOUND).

        ``visible``, if given, says which records a list may hold (the
        client's token scope, see :mod:`relays.scope`).
        """
        spec = self.catalog.request_spec(request_name)
        if spec.view is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_REQUEST, f"{request_name} is not answered from the projection"
            )
        checked = spec.validate(params)
        state = self.tables[spec.view.table]
        if isinstance(spec.view, Get):
            return self._get(spec, state, spec.view, checked)
        return self._list(state, spec.view, checked, visible)

    def _get(
        self, spec: RequestSpec, state: _TableState, view: Get, params: Mapping[str, Any]
    ) -> Record:
        key = SINGLE if view.param is None else params[view.param]
        record = state.records.get(str(key)) if isinstance(key, str | int) else None
        if record is None:
            what = view.param or state.table.name
            raise ProtocolError(ErrorCode.NOT_FOUND, f"{spec.name}: unknown {what}")
        return copy.deepcopy(record)

    def _list(
        self,
        state: _TableState,
        view: ListRecords,
        params: Mapping[str, Any],
        visible: Callable[[Record], bool] | None,
    ) -> dict[str, Any]:
        wanted = params.get(view.filter) if view.filter else None
        records = [
            copy.deepcopy(record)
            for record in state.records.values()
            if (view.status is None or record["status"] == view.status)
            and (wanted is None or record["data"].get(view.filter) == wanted)
            and (visible is None or visible(record))
        ]
        return {state.table.name: records}
