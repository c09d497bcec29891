"""Token scope for requests: which channels a request reads, checked against a grant.

A token grants channels (:class:`~net.tokens.Grant`); a request must not let
its holder read, or act on, what it could not follow. The rules come from the
catalog (no per-service code), in this order:

1. **The channels its params name.** Every catalog channel template whose
   placeholders are all parameters of the request names a channel
   (``adapter:{adapter_id}`` for ``get_adapter_status {adapter_id}``,
   ``collaboration:{room_id}`` for ``join_collaboration``); the grant must
   cover each. This holds for every request, whoever answers it: the
   projection, a handler the service registered, or the event it emits.
2. **One projection record no param names a channel for** (``get_session
   {session_id}`` on session-buddy, whose sessions travel on ``sessions``;
   ``get_metrics``): the grant must cover one of the fixed channels the
   record's events go to (failing that, all channels of one of its templates).
3. **A list** (``list_adapters``, ``get_anomalies``, ``get_patterns`` without
   a category). Answered by the projection, it holds only the records the
   grant covers: a record's channel is the template named by the table's key
   (``adapter:{adapter_id}``), else by the list's filter field
   (``patterns:{category}``), filled from the record, else the table's fixed
   channels (``anomalies``). Answered by a service handler, whose answer the
   relay cannot filter, it needs a grant covering every record (``adapter:*``).

A request that names nothing and reads no projection is not limited here
(``subscribe`` is checked on its channel, emits on the channels of the event).
A grant covering everything (auth off, or a ``*`` token) skips it all.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from relays.catalog import Catalog, ChannelTemplate, ListRecords, Table
from relays.protocol import ErrorCode, ProtocolError

if TYPE_CHECKING:  # only annotations (collab.auth, and so `inkwire`, imports this module)
    from net.tokens import Grant

Record = Mapping[str, Any]
RecordFilter = Callable[[Record], bool]

# a placeholder value no channel can have: only a grant pattern matching any value covers it
ANY_VALUE = "\x00any\x00"


def every(template: ChannelTemplate) -> str:
    """The template standing for all its channels, to ask whether a grant covers them."""
    channel = template.template
    for name in template.placeholders:
        channel = channel.replace("{" + name + "}", ANY_VALUE)
    return channel


class Scopes:
    """One catalog's request scopes (see the module docstring)."""

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._channel_templates = tuple(
            t for t in (ChannelTemplate(c) for c in catalog.channels) if t.placeholders
        )
        self._tables = {table.name: table for table in catalog.tables}

    def check(
        self, grant: Grant, name: str, params: Mapping[str, Any], *, projection: bool
    ) -> RecordFilter | None:
        """FORBIDDEN unless ``grant`` covers the request; for a list, which records it may see.

        ``params`` are the request's (validated) data; ``projection`` says
        whether the projection answers it (a list is then filtered, the
        returned function tells which records stay) or a service handler does.
        """
        if grant.allows(ANY_VALUE):
            return None  # covers every channel
        named = self.named(params)
        for channel in named:
            if not grant.allows(channel):
                raise _forbidden(channel)
        spec = self.catalog.request_index.get(name)
        if named or spec is None or spec.view is None:
            return None
        table = self._tables[spec.view.table]
        if not isinstance(spec.view, ListRecords):
            self._require_one(grant, self._wide(table, ()), name)  # rule 2
            return None
        record_templates = self._named_by(table, table.key) or self._named_by(
            table, spec.view.filter
        )
        if not projection:  # rule 3, a service's list: all of it or nothing
            self._require_one(grant, self._wide(table, record_templates), name)
            return None
        return self._record_filter(grant, table, record_templates)

    def named(self, params: Mapping[str, Any]) -> list[str]:
        """Rule 1: the channels a request's params name."""
        found = []
        for template in self._channel_templates:
            if all(p in params for p in template.placeholders):
                channel = template.named_by(params)
                if channel is not None:
                    found.append(channel)
        return found

    def _templates(self, table: Table) -> tuple[ChannelTemplate, ...]:
        """Every channel template the events feeding ``table`` go to."""
        events = self.catalog.event_index
        found = [t for update in table.updates for t in events[update.event].templates]
        return tuple(dict.fromkeys(found))

    def _fixed(self, table: Table) -> list[str]:
        return [t.template for t in self._templates(table) if not t.placeholders]

    def _named_by(self, table: Table, field: str | None) -> tuple[ChannelTemplate, ...]:
        """The table's templates whose one placeholder is ``field``."""
        if field is None:
            return ()
        return tuple(t for t in self._templates(table) if t.placeholders == (field,))

    def _wide(self, table: Table, templates: tuple[ChannelTemplate, ...]) -> list[str]:
        """Channels of which covering one covers the whole table (``templates``: first those)."""
        if templates:
            return [every(t) for t in templates]
        return self._fixed(table) or [every(t) for t in self._templates(table)]

    @staticmethod
    def _require_one(grant: Grant, channels: list[str], name: str) -> None:
        if not any(grant.allows(channel) for channel in channels):
            shown = channels[0].replace(ANY_VALUE, "*") if channels else name
            raise _forbidden(shown)

    def _record_filter(
        self, grant: Grant, table: Table, templates: tuple[ChannelTemplate, ...]
    ) -> RecordFilter:
        if not templates:
            allowed = any(grant.allows(channel) for channel in self._fixed(table))
            return lambda record: allowed
        key = table.key

        def visible(record: Record) -> bool:
            values = dict(record.get("data") or {})
            if key is not None:
                values[key] = record.get(key)
            for template in templates:
                channel = template.named_by(values)
                if channel is not None and grant.allows(channel):
                    return True
            return False

        return visible


def _forbidden(channel: str) -> ProtocolError:
    return ProtocolError(ErrorCode.FORBIDDEN, f"this token does not allow {channel}")
