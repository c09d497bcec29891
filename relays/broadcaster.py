"""The typed broadcaster: one method per catalog event, built from the catalog.

``Broadcaster(catalog, publish).adapter_activated(adapter_id, repo, metadata)``
maps its arguments onto the event's payload (as the catalog's :class:`Method`
says), validates it, derives the channels and calls
``publish(event_name, channels, payload)``, returning what ``publish`` returns
(so with an async ``publish`` the call is awaited: ``await broadcast.x(...)``).

The methods are generated, not written per service: each has a real
``inspect.Signature`` with the parameter names the catalog gives the method
(see docs/catalogs.md), so wrong or missing arguments fail like any Python
call and ``help()`` shows them.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from relays.catalog import CONVERTERS, Catalog, EventSpec

PublishFn = Callable[[str, list[str], dict[str, Any]], Any]


def _signature(spec: EventSpec) -> inspect.Signature:
    kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
    return inspect.Signature(
        [
            inspect.Parameter(p.name, kind, default=inspect.Parameter.empty if p.required else None)
            for p in spec.method.params
        ]
    )


def _payload_builder(spec: EventSpec) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """A function from bound arguments to the (unvalidated) payload."""
    method = spec.method
    params = {p.name for p in method.params}
    # (payload field, its source, whether a null is sent rather than left out)
    plan = [
        (f.name, method.source(f.name), f.required and f.type == "any")
        for f in spec.payload
        if method.source(f.name).param in params
    ]

    def build(arguments: dict[str, Any]) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        for name, source, keep_null in plan:
            value = arguments.get(source.param)
            if source.key is not None:
                value = value.get(source.key) if isinstance(value, dict) else None
            if source.via is not None and value is not None:
                value = CONVERTERS[source.via](value)
            if value is not None or keep_null:
                payload[name] = value
        return payload

    return build


def _make_method(catalog: Catalog, spec: EventSpec, publish: PublishFn) -> Callable[..., Any]:
    signature = _signature(spec)
    build = _payload_builder(spec)
    event_name = spec.name

    def broadcast(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        payload, channels = catalog.prepare(event_name, build(bound.arguments))
        return publish(event_name, channels, payload)

    also = f" (also on {', '.join(spec.also_on)})" if spec.also_on else ""
    broadcast.__name__ = broadcast.__qualname__ = spec.method.name
    broadcast.__doc__ = f"Publish `{event_name}` on {spec.channel}{also}."
    broadcast.__signature__ = signature  # type: ignore[attr-defined]
    return broadcast


class Broadcaster:
    """``broadcast.<event method>(...)`` for every event of a catalog.

    Attributes are generated per catalog, so to mypy every attribute is a
    ``Callable[..., Any]``; the runtime signatures are exact.
    """

    def __init__(self, catalog: Catalog, publish: PublishFn) -> None:
        self.catalog = catalog
        self.methods: dict[str, Callable[..., Any]] = {
            spec.method.name: _make_method(catalog, spec, publish) for spec in catalog.events
        }
        self.__dict__.update(self.methods)

    def __getattr__(self, name: str) -> Callable[..., Any]:
        raise AttributeError(f"{self.catalog.service} has no broadcaster method {name!r}")

    def __dir__(self) -> list[str]:
        return [*super().__dir__(), *self.methods]
