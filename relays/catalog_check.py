"""A catalog's consistency checks, run when it is built.

A catalog is hand-written data; these checks turn its likely mistakes (a
channel placeholder that is no payload field, a broadcaster argument that
does not exist, a projection fed by an event the catalog lacks) into a
:class:`~relays.catalog.CatalogError` at import time.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING

from relays.catalog import (
    COMMON_REQUESTS,
    CONVERTERS,
    CatalogError,
    ChannelTemplate,
    EventSpec,
    Get,
)

if TYPE_CHECKING:
    from relays.catalog import Catalog, Table


def _unique(what: str, names: Iterable[str]) -> None:
    repeated = [name for name, n in Counter(names).items() if n > 1]
    if repeated:
        raise CatalogError(f"duplicate {what}: {', '.join(repeated)}")


def _check_event(event: EventSpec) -> None:
    required = {f.name for f in event.payload if f.required}
    for template in (event.channel, *event.also_on):
        for name in ChannelTemplate(template).placeholders:
            if name not in required:
                raise CatalogError(f"{event.name}: channel {template} needs required field {name}")
    method = event.method
    params = {p.name for p in method.params}
    payload = {f.name for f in event.payload}
    for name in method.sources:
        if name not in payload:
            raise CatalogError(f"{method.name}: {name} is not a payload field of {event.name}")
    for spec in event.payload:
        source = method.source(spec.name)
        if source.param not in params:
            if not spec.required or spec.name == "timestamp":
                continue  # left out (the timestamp is filled in when published)
            raise CatalogError(f"{method.name}: no argument supplies {event.name}.{spec.name}")
        if source.via is not None and source.via not in CONVERTERS:
            raise CatalogError(f"{method.name}: unknown converter {source.via}")


def _check_table(catalog: Catalog, table: Table) -> None:
    from relays.projection import REDUCERS  # the reducers live with the projection code

    for update in table.updates:
        spec = catalog.event_index.get(update.event)
        if spec is None:
            raise CatalogError(f"table {table.name}: no event {update.event}")
        payload = {f.name for f in spec.payload}
        named = [update.key, update.status_from, update.collect and update.collect.key]
        if update.collect and update.collect.value not in (None, "*"):
            named.append(update.collect.value)
        for name in named:
            if name and name not in payload:
                raise CatalogError(f"table {table.name}: {update.event} has no field {name}")
        if update.reducer is not None and update.reducer not in REDUCERS:
            raise CatalogError(f"table {table.name}: unknown reducer {update.reducer}")


def check_catalog(catalog: Catalog) -> None:
    _unique("events", (e.name for e in catalog.events))
    _unique("requests", (r.name for r in (*COMMON_REQUESTS, *catalog.requests)))
    _unique("broadcaster methods", (e.method.name for e in catalog.events))
    _unique("tables", (t.name for t in catalog.tables))
    for event in catalog.events:
        _check_event(event)
    tables = {t.name: t for t in catalog.tables}
    for table in catalog.tables:
        _check_table(catalog, table)
    for request in catalog.requests:
        params = {p.name for p in request.params}
        if request.emits is not None and request.emits not in catalog.event_index:
            raise CatalogError(f"{request.name}: emits unknown event {request.emits}")
        view = request.view
        if view is None:
            continue
        if view.table not in tables:
            raise CatalogError(f"{request.name}: no table {view.table}")
        param = view.param if isinstance(view, Get) else view.filter
        if param is not None and param not in params:
            raise CatalogError(f"{request.name}: {param} is not one of its parameters")
