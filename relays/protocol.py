"""The relay wire protocol, sans I/O: JSON text frames in, JSON text out.

Every message shares one envelope, compatible with the existing clients of the
services (they read ``type``, ``event`` and ``data``)::

    {"id", "correlation_id", "type", "event", "data", "timestamp", "room",
     "error_code", "error_message"}            (+ "offset", "epoch" on events)

Parsing is strict: anything that is not a well-formed client message raises
:class:`ProtocolError` with a code from :class:`ErrorCode` and a message we
wrote ourselves, so a hub can always answer with :func:`encode_error` and keep
the connection open. Frame sizes are the caller's business (it sees the bytes
first).

Encoding is on the fan-out path: an event is encoded once per channel and the
same text goes to every subscriber. :class:`PreparedEvent` goes one step
further and encodes the payload once per *event*, splicing it into each
channel's envelope.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from json.encoder import encode_basestring_ascii
from typing import Any, Final, Literal

PROTOCOL_VERSION: Final = "inkwire-relay/1"
WELCOME_EVENT: Final = "session.created"
BATCH_SUBPROTOCOL: Final = "inkwire.batch"  # or ?batch=1: newline-delimited frames

MessageType = Literal["request", "response", "event", "error", "ping", "pong"]
MESSAGE_TYPES: Final[frozenset[str]] = frozenset(
    ("request", "response", "event", "error", "ping", "pong")
)
MAX_NAME_LENGTH: Final = 128  # event names and ids a client may send


class ErrorCode(StrEnum):
    """The only error codes a client ever sees."""

    BAD_REQUEST = "BAD_REQUEST"
    UNKNOWN_REQUEST = "UNKNOWN_REQUEST"
    INVALID_CHANNEL = "INVALID_CHANNEL"
    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    FORBIDDEN = "FORBIDDEN"
    RATE_LIMITED = "RATE_LIMITED"
    NOT_FOUND = "NOT_FOUND"
    UNAVAILABLE = "UNAVAILABLE"
    INTERNAL_ERROR = "INTERNAL_ERROR"


class ProtocolError(Exception):
    """A client-facing failure: its ``message`` is safe to send as is.

    ``event`` and ``correlation_id`` are filled in whenever the offending frame
    got far enough to have them, so the error reply correlates with the request.
    """

    def __init__(
        self,
        code: ErrorCode,
        message: str,
        *,
        event: str | None = None,
        correlation_id: str | int | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.event = event
        self.correlation_id = correlation_id

    def for_request(self, request: Request) -> ProtocolError:
        """The same error, addressed to ``request``."""
        return ProtocolError(
            self.code, self.message, event=request.event, correlation_id=request.reply_to
        )


class RelayUnavailable(ProtocolError):
    """The event could not be published now: a clustered relay cannot reach Redis.

    Raised by the broadcaster and answered as UNAVAILABLE (``POST /publish``:
    503) rather than dropping the event silently. The event was not published,
    so publishing it again later is safe (docs/cluster-relays.md has the one
    narrow exception: a reply lost after Redis ran the publish).
    """

    def __init__(self, message: str = "cannot publish now: the cluster is unreachable") -> None:
        super().__init__(ErrorCode.UNAVAILABLE, message)


MessageId = str | int


@dataclass(frozen=True, slots=True)
class Request:
    """A client asking for something; exactly one response or error answers it."""

    event: str
    data: dict[str, Any] = field(default_factory=dict)
    id: MessageId | None = None
    correlation_id: MessageId | None = None
    timestamp: str | None = None

    @property
    def reply_to(self) -> MessageId | None:
        """What the reply's ``correlation_id`` must be: ours, else the request's id."""
        return self.correlation_id if self.correlation_id is not None else self.id


@dataclass(frozen=True, slots=True)
class Ping:
    """A client keepalive; answered with a pong carrying the same id."""

    id: MessageId | None = None
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Pong:
    """A client's answer to a server ping."""

    id: MessageId | None = None
    correlation_id: MessageId | None = None


ClientMessage = Request | Ping | Pong


def new_id() -> str:
    """A message id: a random UUID's 32 hex digits, as ``uuid.uuid4().hex`` gives them
    (version 4, RFC 4122 variant), without building a ``UUID`` (half the time)."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    return raw.hex()


def utc_now() -> str:
    """UTC, ISO-8601, with an explicit offset (``+00:00``), as every message carries."""
    return datetime.now(UTC).isoformat()


# one encoder for every message: ``json.dumps`` with options builds a new one per call,
# which costs more than encoding a small event does
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"))


# a string as JSON, as ``dumps`` encodes one (the C function it calls), for the hot paths
_string: Final[Callable[[str], str]] = encode_basestring_ascii


def dumps(obj: Any) -> str:
    """Compact JSON; ASCII-only, so it never contains a raw newline (batching relies on it)."""
    return _ENCODER.encode(obj)


# --- parsing -----------------------------------------------------------------


def _bad(message: str, envelope: Mapping[str, Any] | None = None) -> ProtocolError:
    event = correlation = None
    if envelope is not None:
        ev = envelope.get("event")
        event = ev if isinstance(ev, str) and len(ev) <= MAX_NAME_LENGTH else None
        for key in ("correlation_id", "id"):
            value = envelope.get(key)
            if _is_id(value):
                correlation = value
                break
    return ProtocolError(ErrorCode.BAD_REQUEST, message, event=event, correlation_id=correlation)


def _is_id(value: object) -> bool:
    if isinstance(value, str):
        return len(value) <= MAX_NAME_LENGTH
    return isinstance(value, int) and not isinstance(value, bool)


def _optional_id(envelope: Mapping[str, Any], key: str) -> MessageId | None:
    value = envelope.get(key)
    if value is None or (isinstance(value, str | int) and _is_id(value)):
        return value
    raise _bad(f"'{key}' must be a string or an integer", envelope)


def _optional_str(envelope: Mapping[str, Any], key: str) -> str | None:
    value = envelope.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _bad(f"'{key}' must be a string", envelope)


def _data(envelope: Mapping[str, Any]) -> dict[str, Any]:
    value = envelope.get("data")
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise _bad("'data' must be an object", envelope)


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse one frame from a client; raise :class:`ProtocolError` (BAD_REQUEST) if malformed.

    Clients send requests, pings and pongs; the other envelope types are the
    server's to send. Unknown top-level keys are ignored (forward compatibility).
    """
    try:
        envelope = json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError and bad UTF-8 are ValueErrors
        raise _bad("message is not valid JSON") from None
    if not isinstance(envelope, dict):
        raise _bad("message must be a JSON object")
    kind = envelope.get("type")
    if not isinstance(kind, str):
        raise _bad("'type' must be a string", envelope)
    message_id = _optional_id(envelope, "id")
    correlation_id = _optional_id(envelope, "correlation_id")
    event = _optional_str(envelope, "event")
    timestamp = _optional_str(envelope, "timestamp")
    data = _data(envelope)
    if kind == "request":
        if not event or len(event) > MAX_NAME_LENGTH:
            raise _bad("a request needs an 'event' naming it", envelope)
        return Request(event, data, message_id, correlation_id, timestamp)
    if kind == "ping":
        return Ping(message_id, data)
    if kind == "pong":
        return Pong(message_id, correlation_id)
    if kind in MESSAGE_TYPES:
        raise _bad(f"clients may not send '{kind}' messages", envelope)
    raise _bad("unknown message type", envelope)


# --- encoding ----------------------------------------------------------------


def _envelope(
    kind: MessageType,
    *,
    event: str | None = None,
    data: Mapping[str, Any] | None = None,
    id: MessageId | None = None,
    correlation_id: MessageId | None = None,
    room: str | None = None,
    error_code: str | None = None,
    error_message: str | None = None,
) -> dict[str, Any]:
    return {
        "id": id if id is not None else new_id(),
        "correlation_id": correlation_id,
        "type": kind,
        "event": event,
        "data": dict(data) if data is not None else {},
        "timestamp": utc_now(),
        "room": room,
        "error_code": error_code,
        "error_message": error_message,
    }


def encode_response(request: Request, data: Mapping[str, Any] | None = None) -> str:
    """The one successful reply to ``request``."""
    return dumps(
        _envelope("response", event=request.event, data=data, correlation_id=request.reply_to)
    )


def encode_error(
    code: ErrorCode,
    message: str,
    *,
    event: str | None = None,
    correlation_id: MessageId | None = None,
) -> str:
    """An error reply. ``message`` must be our own words, never exception text."""
    return dumps(
        _envelope(
            "error",
            event=event,
            correlation_id=correlation_id,
            error_code=ErrorCode(code).value,
            error_message=message,
        )
    )


def encode_protocol_error(error: ProtocolError) -> str:
    return encode_error(
        error.code, error.message, event=error.event, correlation_id=error.correlation_id
    )


def encode_failure(exc: BaseException, request: Request | None = None) -> str:
    """Reply to whatever went wrong: a :class:`ProtocolError` as is, anything else
    as INTERNAL_ERROR with a fixed message (the exception stays in the server's log)."""
    if isinstance(exc, ProtocolError):
        error = exc.for_request(request) if request is not None else exc
        return encode_protocol_error(error)
    return encode_error(
        ErrorCode.INTERNAL_ERROR,
        "internal error",
        event=request.event if request else None,
        correlation_id=request.reply_to if request else None,
    )


def encode_welcome(
    connection_id: str,
    *,
    server: str,
    authenticated: bool,
    limits: Mapping[str, Any],
    protocol: str = PROTOCOL_VERSION,
) -> str:
    """The first message on every connection (existing clients read it, then subscribe)."""
    data = _welcome_data(connection_id, server, protocol, authenticated, limits)
    return dumps(_envelope("event", event=WELCOME_EVENT, data=data))


def _welcome_data(
    connection_id: str, server: str, protocol: str, authenticated: bool, limits: Mapping[str, Any]
) -> dict[str, Any]:
    return {
        "connection_id": connection_id,
        "server": server,
        "protocol": protocol,
        "authenticated": authenticated,
        "limits": dict(limits),
    }


class Welcome:
    """One relay's welcome, encoded once but for each connection's ids and time.

    Every connection's first message differs from the others only in its
    ``id``, ``connection_id`` and ``timestamp``; encoding the whole envelope
    for each was a good part of the relay's own CPU per accepted connection
    (docs/capacity.md). :meth:`encode` splices those three into the text
    :func:`encode_welcome` makes, byte for byte.
    """

    __slots__ = ("_parts",)

    _MARKS = ("\x00id", "\x00connection", "\x00time")  # never in a relay's settings

    def __init__(
        self, *, server: str, limits: Mapping[str, Any], protocol: str = PROTOCOL_VERSION
    ) -> None:
        self._parts: dict[bool, tuple[str, str, str, str]] = {}
        mark_id, mark_connection, mark_time = (_string(mark) for mark in self._MARKS)
        for authenticated in (False, True):
            data = _welcome_data(self._MARKS[1], server, protocol, authenticated, limits)
            envelope = _envelope("event", event=WELCOME_EVENT, data=data, id=self._MARKS[0])
            envelope["timestamp"] = self._MARKS[2]
            head, rest = dumps(envelope).split(mark_id)
            middle, rest = rest.split(mark_connection)
            before_time, tail = rest.split(mark_time)
            self._parts[authenticated] = (head, middle, before_time, tail)

    def encode(
        self,
        connection_id: str,
        *,
        authenticated: bool,
        id: str | None = None,
        timestamp: str | None = None,
    ) -> str:
        head, middle, before_time, tail = self._parts[authenticated]
        return (
            f"{head}{_string(id if id is not None else new_id())}{middle}"
            f"{_string(connection_id)}{before_time}"
            f"{_string(timestamp if timestamp is not None else utc_now())}{tail}"
        )


def encode_ping(data: Mapping[str, Any] | None = None) -> str:
    return dumps(_envelope("ping", data=data))


def encode_pong(ping: Ping) -> str:
    return dumps(_envelope("pong", data=ping.data, correlation_id=ping.id))


class PreparedEvent:
    """One event, its payload encoded once, ready to be framed for each channel.

    ``for_channel`` splices the pre-encoded parts into the envelope, so an event
    published on several channels (its own and its "also on" ones) pays for
    ``json.dumps`` of its payload once. :attr:`head` is that encoded part: a
    cluster node ships it to the others (:meth:`from_head`), which then frame
    the event without decoding or encoding its payload, and decode it only if
    something reads :attr:`data` (a projection that folds the event).
    """

    __slots__ = ("_data", "event", "head")

    def __init__(
        self,
        event: str,
        data: Mapping[str, Any],
        *,
        id: str | None = None,
        timestamp: str | None = None,
    ) -> None:
        self.event = event
        self._data: Mapping[str, Any] | None = data
        event_id = id if id is not None else new_id()
        stamp = timestamp if timestamp is not None else utc_now()
        self.head = (
            f'{{"id":{_string(event_id)},"correlation_id":null,"type":"event",'
            f'"event":{_string(event)},"data":{dumps(data)},"timestamp":{_string(stamp)},'
        )

    @classmethod
    def from_head(cls, event: str, head: str) -> PreparedEvent:
        """The event whose :attr:`head` another process encoded (trusted: ours)."""
        prepared = cls.__new__(cls)
        prepared.event = event
        prepared.head = head
        prepared._data = None
        return prepared

    @property
    def data(self) -> Mapping[str, Any]:
        """The payload (decoded from :attr:`head` the first time, for one made elsewhere)."""
        if self._data is None:
            self._data = json.loads(self.head[:-1] + "}")["data"]
        return self._data

    def for_channel(self, room: str, offset: int, epoch: str) -> str:
        """The event's text as delivered on ``room``, at ``offset`` of ``epoch``."""
        return (
            f'{self.head}"room":{_string(room)},"error_code":null,"error_message":null,'
            f'"offset":{int(offset)},"epoch":{_string(epoch)}}}'
        )


def encode_event(
    event: str,
    room: str,
    data: Mapping[str, Any],
    *,
    offset: int,
    epoch: str,
    id: str | None = None,
    timestamp: str | None = None,
) -> str:
    """One event on one channel (see :class:`PreparedEvent` for several)."""
    return PreparedEvent(event, data, id=id, timestamp=timestamp).for_channel(room, offset, epoch)


# --- batching (opt-in) -----------------------------------------------------------


def join_batch(messages: Iterable[str]) -> str:
    """Several encoded messages in one frame, one per line, for clients that opted in.

    Our encoder never emits raw newlines (JSON escapes them inside strings), so a
    newline is an unambiguous separator.
    """
    return "\n".join(messages)


def split_batch(frame: str) -> list[str]:
    """The messages of a batched frame (blank lines ignored); a plain frame is a batch of one."""
    return [line for line in frame.split("\n") if line.strip()]
