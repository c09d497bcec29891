"""The y-websocket wire protocol, sans I/O.

One WebSocket binary frame carries one message. A message starts with a
varuint message type; sync messages add a varuint sub-type and a varuint
length-prefixed payload, awareness messages a length-prefixed awareness
update. Parsing is strict: anything truncated, overlong or of an unknown type
raises :class:`MalformedMessage`, so a hostile peer is refused before any of its
bytes reach the document.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

from pycrdt import get_update

MAX_VARUINT_BYTES = 8  # 56 bits: more than any length or clock we accept


class MalformedMessage(ValueError):
    """The peer sent bytes that are not a valid y-websocket message."""


class MessageType(IntEnum):
    SYNC = 0
    AWARENESS = 1
    AUTH = 2
    QUERY_AWARENESS = 3


class SyncType(IntEnum):
    STEP1 = 0
    STEP2 = 1
    UPDATE = 2


@dataclass(frozen=True, slots=True)
class SyncMessage:
    kind: SyncType
    payload: bytes  # a state vector (STEP1) or a Yjs update (STEP2, UPDATE)


@dataclass(frozen=True, slots=True)
class AwarenessMessage:
    update: bytes  # the encoded awareness update, as received


@dataclass(frozen=True, slots=True)
class QueryAwarenessMessage:
    pass


Message = SyncMessage | AwarenessMessage | QueryAwarenessMessage


def write_varuint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    out.append(n)
    return bytes(out)


def read_varuint(data: bytes, pos: int) -> tuple[int, int]:
    """Return ``(value, next position)``."""
    value = 0
    shift = 0
    end = min(len(data), pos + MAX_VARUINT_BYTES)
    while pos < end:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, pos
        shift += 7
    if pos >= len(data):
        raise MalformedMessage("truncated varuint")
    raise MalformedMessage("varuint too long")


def read_varbytes(data: bytes, pos: int) -> tuple[bytes, int]:
    length, pos = read_varuint(data, pos)
    end = pos + length
    if end > len(data):
        raise MalformedMessage("truncated payload")
    return data[pos:end], end


def parse_message(data: bytes) -> Message:
    """Parse one client frame. Auth messages are server-to-client only."""
    if not data:
        raise MalformedMessage("empty message")
    kind, pos = read_varuint(data, 0)
    if kind == MessageType.SYNC:
        sub, pos = read_varuint(data, pos)
        if sub > SyncType.UPDATE:
            raise MalformedMessage(f"unknown sync message type {sub}")
        payload, pos = read_varbytes(data, pos)
        message: Message = SyncMessage(SyncType(sub), payload)
    elif kind == MessageType.AWARENESS:
        update, pos = read_varbytes(data, pos)
        message = AwarenessMessage(update)
    elif kind == MessageType.QUERY_AWARENESS:
        message = QueryAwarenessMessage()
    else:
        raise MalformedMessage(f"unknown message type {kind}")
    if pos != len(data) and kind != MessageType.QUERY_AWARENESS:
        raise MalformedMessage("trailing bytes after message")
    return message


def sync_step1(state_vector: bytes) -> bytes:
    return b"\x00\x00" + write_varuint(len(state_vector)) + state_vector


def sync_step2(update: bytes) -> bytes:
    return b"\x00\x01" + write_varuint(len(update)) + update


def sync_update(update: bytes) -> bytes:
    return b"\x00\x02" + write_varuint(len(update)) + update


def awareness_message(update: bytes) -> bytes:
    return b"\x01" + write_varuint(len(update)) + update


def permission_denied(reason: str) -> bytes:
    """y-protocols' auth message: the client's edits were refused (it stays connected)."""
    text = reason.encode()
    return b"\x02\x00" + write_varuint(len(text)) + text


def has_new_structs(update: bytes, state_vector: bytes) -> bool:
    """Whether ``update`` adds anything a document at ``state_vector`` lacks.

    Deletes are not looked at: every sync step 2 carries the sender's whole
    delete set, so one from a client with nothing new is not empty, and
    telling whether its deletes are new would mean applying it.
    """
    diff = get_update(update, state_vector)
    count, _ = read_varuint(diff, 0)  # an update v1 starts with its number of struct groups
    return count > 0


# --- awareness updates ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AwarenessEntry:
    client_id: int
    clock: int
    state: str  # the JSON text as sent; "null" means the client left

    @property
    def removed(self) -> bool:
        return self.state == "null"


def parse_awareness_update(update: bytes) -> list[AwarenessEntry]:
    """Decode an awareness update; states must be JSON objects or null."""
    count, pos = read_varuint(update, 0)
    if count > len(update):
        raise MalformedMessage("awareness entry count exceeds message size")
    entries = []
    for _ in range(count):
        client_id, pos = read_varuint(update, pos)
        clock, pos = read_varuint(update, pos)
        raw, pos = read_varbytes(update, pos)
        try:
            text = raw.decode("utf-8")
            value: Any = json.loads(text)
        except (UnicodeDecodeError, ValueError) as exc:
            raise MalformedMessage("awareness state is not JSON") from exc
        if value is not None and not isinstance(value, dict):
            raise MalformedMessage("awareness state must be an object or null")
        entries.append(AwarenessEntry(client_id, clock, text if value is not None else "null"))
    if pos != len(update):
        raise MalformedMessage("trailing bytes after awareness update")
    return entries


def encode_awareness_update(entries: list[AwarenessEntry]) -> bytes:
    out = [write_varuint(len(entries))]
    for entry in entries:
        state = entry.state.encode()
        out += [write_varuint(entry.client_id), write_varuint(entry.clock)]
        out += [write_varuint(len(state)), state]
    return b"".join(out)
