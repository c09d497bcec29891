"""The catalogs' reference tables (markdown), generated for the README.

Generated from the same data that validates and routes events, so the docs
cannot drift from what a relay does.
"""

from __future__ import annotations

from collections.abc import Iterable

from relays.catalog import Catalog, EventSpec, Get, RequestSpec


def _code(text: str) -> str:
    return f"`{text}`"


def _event_row(spec: EventSpec) -> str:
    also = ", ".join(_code(c) for c in spec.also_on)
    payload = " ".join(f.notation for f in spec.payload if f.name != "timestamp" or f.required)
    params = ", ".join(p.name for p in spec.method.params)
    return (
        f"| {_code(spec.name)} | {_code(spec.channel)} | {also} | {_code(payload)} "
        f"| {_code(f'{spec.method.name}({params})')} |"
    )


def _request_row(catalog: Catalog, spec: RequestSpec) -> str:
    params = " ".join(p.notation for p in spec.params) or "—"
    if spec.view is None:
        answered = f"emits {_code(spec.emits)}" if spec.emits else "the relay / the service"
        result = "—"
    else:
        table = next(t for t in catalog.tables if t.name == spec.view.table)
        answered = f"projection {_code(table.name)}"
        fields = ", ".join(table.result_fields)
        one = f"{{{fields}}}"
        result = _code(one if isinstance(spec.view, Get) else f"{{{table.name}: [{one}]}}")
    return f"| {_code(spec.name)} | {_code(params)} | {answered} | {result} |"


def reference(catalog: Catalog) -> str:
    """One catalog as markdown: port, channels, an events table and a requests table."""
    lines = [
        f"### {catalog.service} (port {catalog.port}, path `{catalog.path}`)",
        "",
    ]
    if catalog.description:
        lines += [catalog.description, ""]
    lines += [
        "Channels: " + ", ".join(_code(c) for c in catalog.channels) + ".",
        "",
        "| event | channel | also on | payload | broadcaster |",
        "|---|---|---|---|---|",
        *(_event_row(e) for e in catalog.events),
        "",
        "| request | params | answered by | result |",
        "|---|---|---|---|",
        *(_request_row(catalog, r) for r in catalog.request_index.values()),
    ]
    if catalog.settings:
        settings = ", ".join(f"{k} = {v:g}" for k, v in catalog.settings.items())
        lines += ["", f"Settings: {settings}."]
    return "\n".join(lines) + "\n"


def reference_all(catalogs: Iterable[Catalog]) -> str:
    """Every catalog, for the README's catalog section."""
    return "\n".join(reference(c) for c in catalogs)
