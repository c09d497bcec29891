"""The catalog format: what one service's relay carries, as data.

A service is described once, in ``relays/catalogs/<service>.py``, in the
catalog notation (``"adapter_id repo version config?:object"``: fields are
required unless marked ``?``, strings unless typed; see docs/catalogs.md). Everything
else is derived from that description instead of being written per service:
payload and channel validation here, the broadcaster in
:mod:`relays.broadcaster`, the request answers in :mod:`relays.projection`,
and the reference table in :mod:`relays.docs`.

A catalog checks itself when it is built (channel placeholders are payload
fields, broadcaster arguments exist, projections name real events), so a typo
in a catalog fails at import, not when the first event arrives.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Final, Literal

from relays.protocol import ErrorCode, ProtocolError, utc_now

FieldType = Literal["str", "int", "number", "bool", "object", "array", "any"]
FIELD_TYPES: Final[Mapping[str, Callable[[object], bool]]] = {
    "str": lambda v: isinstance(v, str),
    "int": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "any": lambda v: True,
}
TYPE_NAMES: Final = {
    "str": "a string",
    "int": "an integer",
    "number": "a number",
    "bool": "a boolean",
    "object": "an object",
    "array": "an array",
    "any": "a value",
}

# What may stand for a {placeholder} in a channel name: ids, repo paths, versions.
PLACEHOLDER_CHARS: Final = r"[A-Za-z0-9_.:@/+=~-]"
MAX_PLACEHOLDER_LENGTH: Final = 128
MAX_CHANNEL_LENGTH: Final = 256
_PLACEHOLDER = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
_PLACEHOLDER_VALUE = re.compile(f"{PLACEHOLDER_CHARS}{{1,{MAX_PLACEHOLDER_LENGTH}}}")

# Conversions a broadcaster argument may go through on its way into a payload.
CONVERTERS: Final[Mapping[str, Callable[[Any], Any]]] = {"len": len}


class CatalogError(ValueError):
    """A catalog contradicts itself (raised when it is built, never at run time)."""


@dataclass(frozen=True, slots=True)
class Field:
    """A payload field or request parameter."""

    name: str
    type: FieldType = "str"
    required: bool = True

    @property
    def notation(self) -> str:
        """The field in the catalog notation: ``config?:object``."""
        return f"{self.name}{'' if self.required else '?'}" + (
            "" if self.type == "str" else f":{self.type}"
        )


def fields(spec: str) -> tuple[Field, ...]:
    """Parse ``"adapter_id repo version config?:object"`` into fields."""
    parsed = []
    for word in spec.split():
        name, _, kind = word.partition(":")
        required = not name.endswith("?")
        kind = kind or "str"
        if kind not in FIELD_TYPES:
            raise CatalogError(f"unknown field type {kind!r} in {spec!r}")
        parsed.append(Field(name.rstrip("?"), kind, required))  # type: ignore[arg-type]
    return tuple(parsed)


def _check_value(owner: str, spec: Field, data: Mapping[str, Any]) -> None:
    value = data.get(spec.name)
    if value is None:
        # A required field of type `any` may be null, as long as it is there.
        if spec.required and not (spec.type == "any" and spec.name in data):
            raise ProtocolError(
                ErrorCode.INVALID_PAYLOAD, f"{owner}: missing required field '{spec.name}'"
            )
        return
    if not FIELD_TYPES[spec.type](value):
        raise ProtocolError(
            ErrorCode.INVALID_PAYLOAD,
            f"{owner}: field '{spec.name}' must be {TYPE_NAMES[spec.type]}",
        )


def check_fields(owner: str, specs: Iterable[Field], data: object) -> dict[str, Any]:
    """``data`` checked against ``specs`` (INVALID_PAYLOAD naming the field); extra keys pass."""
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_PAYLOAD, f"{owner}: data must be an object")
    for spec in specs:
        _check_value(owner, spec, data)
    return data


# --- channels --------------------------------------------------------------------


@dataclass(frozen=True)
class ChannelTemplate:
    """``adapter:{adapter_id}``: a fixed shape with placeholders filled from payload fields."""

    template: str

    @cached_property
    def placeholders(self) -> tuple[str, ...]:
        return tuple(_PLACEHOLDER.findall(self.template))

    @cached_property
    def pattern(self) -> re.Pattern[str]:
        parts = _PLACEHOLDER.split(self.template)  # literal, name, literal, name, ...
        regex = "".join(
            re.escape(part)
            if i % 2 == 0
            else f"(?P<{part}>{PLACEHOLDER_CHARS}{{1,{MAX_PLACEHOLDER_LENGTH}}})"
            for i, part in enumerate(parts)
        )
        return re.compile(regex)

    def matches(self, channel: str) -> bool:
        return self.pattern.fullmatch(channel) is not None

    def fill(self, event: str, payload: Mapping[str, Any]) -> str:
        """The channel this template names for ``payload`` (INVALID_PAYLOAD if it cannot)."""
        channel = self.template
        for name in self.placeholders:
            value = _placeholder_value(payload.get(name))
            if value is None:
                raise ProtocolError(
                    ErrorCode.INVALID_PAYLOAD,
                    f"{event}: field '{name}' cannot name a channel "
                    f"(1-{MAX_PLACEHOLDER_LENGTH} of letters, digits, _.:@/+=~-)",
                )
            channel = channel.replace("{" + name + "}", value)
        return channel

    def named_by(self, values: Mapping[str, Any]) -> str | None:
        """The channel ``values`` name, or None if one of them cannot fill its placeholder."""
        channel = self.template
        for name in self.placeholders:
            value = _placeholder_value(values.get(name))
            if value is None:
                return None
            channel = channel.replace("{" + name + "}", value)
        return channel


def _placeholder_value(value: object) -> str | None:
    """What ``value`` writes into a channel name (ids may be integers), if it may."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str) and _PLACEHOLDER_VALUE.fullmatch(value):
        return value
    return None


# --- broadcaster methods -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class From:
    """Where a payload field comes from in a broadcaster call: an argument,
    optionally one key of it (``metadata["version"]``), optionally converted."""

    param: str
    key: str | None = None
    via: str | None = None


@dataclass(frozen=True)
class Method:
    """A broadcaster method whose arguments differ from the payload fields.

    Payload fields not listed in ``sources`` come from the argument of the same
    name. Optional parameters (``user_id?``) default to ``None``.
    """

    name: str
    params: tuple[Field, ...]
    sources: Mapping[str, From] = field(default_factory=dict)

    def source(self, payload_field: str) -> From:
        return self.sources.get(payload_field) or From(payload_field)


def method(name: str, params: str, **sources: From | str) -> Method:
    """``method("cursor_moved", "room_id user_id position", x=From("position", "x"))``;
    a plain string source renames an argument."""
    return Method(
        name,
        fields(params),
        {k: From(v) if isinstance(v, str) else v for k, v in sources.items()},
    )


# --- events ----------------------------------------------------------------------


@dataclass(frozen=True)
class EventSpec:
    """One event: its payload, its channel, and the channels it is also sent to."""

    name: str
    channel: str
    payload: tuple[Field, ...]
    also_on: tuple[str, ...] = ()
    custom_method: Method | None = None

    @cached_property
    def templates(self) -> tuple[ChannelTemplate, ...]:
        return tuple(ChannelTemplate(t) for t in (self.channel, *self.also_on))

    @cached_property
    def method(self) -> Method:
        """The broadcaster method: as declared, else one argument per payload field."""
        if self.custom_method is not None:
            return self.custom_method
        params = tuple(f for f in self.payload if f.name != "timestamp")
        return Method(self.name.replace(".", "_"), params)

    def validate(self, data: object) -> dict[str, Any]:
        """A copy of ``data`` checked against the payload, with a ``timestamp`` if it had none."""
        if isinstance(data, dict) and data.get("timestamp") is None:
            data = {**data, "timestamp": utc_now()}
        return dict(check_fields(self.name, self.payload, data))

    def channels(self, payload: Mapping[str, Any]) -> list[str]:
        """Every channel this payload goes to, its own first, without duplicates."""
        return list(dict.fromkeys(t.fill(self.name, payload) for t in self.templates))


def event(
    name: str,
    channel: str,
    payload: str,
    *,
    also_on: tuple[str, ...] = (),
    method: Method | None = None,
) -> EventSpec:
    """An event, its payload in the catalog notation (every payload also gets a ``timestamp``)."""
    specs = fields(payload)
    if not any(f.name == "timestamp" for f in specs):
        specs = (*specs, Field("timestamp", "str", required=False))
    return EventSpec(name, channel, specs, also_on, method)


# --- projections (the state a relay keeps to answer requests) -------------------------


@dataclass(frozen=True, slots=True)
class Collect:
    """Keep a member map inside a record: ``into[payload[key]] = value``.

    ``value`` is a payload field, ``"*"`` for the whole payload, or ``None`` for
    plain membership (``True``); ``remove`` drops the member instead.
    """

    into: str
    key: str
    value: str | None = None
    remove: bool = False


@dataclass(frozen=True)
class Update:
    """How one event changes the record named by its ``key`` field.

    ``merge`` folds the payload into the record's ``data``, ``replace`` makes it
    the data, ``keep`` leaves data alone. ``status`` sets a fixed status,
    ``status_from`` copies a payload field; ``count_as`` bumps ``counts[name]``;
    ``flags`` are set into data; ``reducer`` names a special case in
    :data:`relays.projection.REDUCERS`.
    """

    event: str
    key: str | None
    mode: Literal["merge", "replace", "keep"] = "merge"
    status: str | None = None
    status_from: str | None = None
    count_as: str | None = None
    collect: Collect | None = None
    flags: Mapping[str, Any] = field(default_factory=dict)
    reducer: str | None = None


@dataclass(frozen=True)
class Table:
    """Records keyed by one id (``key=None``: a single record), the newest kept."""

    name: str
    key: str | None
    updates: tuple[Update, ...]
    max_records: int = 10_000

    @property
    def result_fields(self) -> tuple[str, ...]:
        """The keys of every record this table answers with."""
        names = [self.key] if self.key else []
        names += ["status", "last_event", "updated_at", "data"]
        if any(u.count_as for u in self.updates):
            names.append("counts")
        names += dict.fromkeys(u.collect.into for u in self.updates if u.collect)
        return tuple(names)


@dataclass(frozen=True, slots=True)
class Get:
    """Answer with one record of ``table``, keyed by the request parameter ``param``."""

    table: str
    param: str | None = None


@dataclass(frozen=True, slots=True)
class ListRecords:
    """Answer ``{table: [records]}``, those with ``status`` if given, filtered on
    ``data[filter] == params[filter]`` when the request carries ``filter``."""

    table: str
    status: str | None = None
    filter: str | None = None


View = Get | ListRecords


@dataclass(frozen=True)
class RequestSpec:
    """A request clients may send.

    ``view`` says which projection answers it; without one the hub (subscribe,
    collaboration) or the embedding service answers. ``emits`` names the event
    a default handler publishes for action requests (e.g. ``trigger_render``).
    """

    name: str
    params: tuple[Field, ...]
    view: View | None = None
    emits: str | None = None
    description: str = ""

    def validate(self, data: object) -> dict[str, Any]:
        return check_fields(self.name, self.params, data)


def request(
    name: str,
    params: str = "",
    view: View | None = None,
    *,
    emits: str | None = None,
    doc: str = "",
) -> RequestSpec:
    return RequestSpec(name, fields(params), view, emits, doc)


COMMON_REQUESTS: Final = (
    request("subscribe", "channel since?:object", doc="join a channel, replaying from `since`"),
    request("unsubscribe", "channel", doc="leave a channel"),
)


# --- the catalog ------------------------------------------------------------------------


@dataclass(frozen=True)
class Catalog:
    """One service's relay: its events, channels, requests and projections."""

    service: str
    port: int
    events: tuple[EventSpec, ...]
    requests: tuple[RequestSpec, ...] = ()
    tables: tuple[Table, ...] = ()
    extra_channels: tuple[str, ...] = ()  # channels no event is addressed to (e.g. `global`)
    path: str = "/"
    settings: Mapping[str, float] = field(default_factory=dict)
    description: str = ""

    def __post_init__(self) -> None:
        from relays.catalog_check import check_catalog  # the checks read better on their own

        check_catalog(self)

    @cached_property
    def event_index(self) -> dict[str, EventSpec]:
        return {e.name: e for e in self.events}

    @cached_property
    def request_index(self) -> dict[str, RequestSpec]:
        return {r.name: r for r in (*COMMON_REQUESTS, *self.requests)}

    @cached_property
    def channels(self) -> tuple[str, ...]:
        """Every channel template, in the order events name them, then the extra ones."""
        names = [t for e in self.events for t in (e.channel, *e.also_on)]
        return tuple(dict.fromkeys([*names, *self.extra_channels]))

    @cached_property
    def _static_channels(self) -> frozenset[str]:
        return frozenset(c for c in self.channels if not ChannelTemplate(c).placeholders)

    @cached_property
    def _templated_channels(self) -> tuple[ChannelTemplate, ...]:
        return tuple(t for t in (ChannelTemplate(c) for c in self.channels) if t.placeholders)

    def event_spec(self, name: str) -> EventSpec:
        spec = self.event_index.get(name)
        if spec is None:
            raise ProtocolError(
                ErrorCode.INVALID_PAYLOAD, f"{self.service} has no event named {name[:64]!r}"
            )
        return spec

    def request_spec(self, name: str) -> RequestSpec:
        spec = self.request_index.get(name)
        if spec is None:
            raise ProtocolError(
                ErrorCode.UNKNOWN_REQUEST, f"{self.service} has no request named {name[:64]!r}"
            )
        return spec

    def is_channel(self, channel: object) -> bool:
        if not isinstance(channel, str) or len(channel) > MAX_CHANNEL_LENGTH:
            return False
        if channel in self._static_channels:
            return True
        return any(t.matches(channel) for t in self._templated_channels)

    def validate_channel(self, channel: object) -> str:
        """``channel`` if it matches one of the catalog's templates, else INVALID_CHANNEL."""
        if not self.is_channel(channel):
            raise ProtocolError(
                ErrorCode.INVALID_CHANNEL,
                f"not a {self.service} channel; expected one of: {', '.join(self.channels)}",
            )
        return channel  # type: ignore[return-value]

    def prepare(self, event_name: str, data: object) -> tuple[dict[str, Any], list[str]]:
        """Validate a publish: the payload (timestamped) and the channels it goes to."""
        spec = self.event_spec(event_name)
        payload = spec.validate(data)
        return payload, spec.channels(payload)
