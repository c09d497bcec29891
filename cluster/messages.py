"""What nodes tell each other about rooms, as bytes on Redis pub/sub; sans I/O.

Every node publishes on one channel and reads it back, so a message names its
node (to skip its own) and its diagram (to find the room, if loaded here):

- ``UPDATE``: a Yjs update this node made durable (the store committed it);
- ``AWARENESS``: presence states of this node's clients, as a y-protocols
  awareness update (a removal is a ``null`` state);
- ``RESYNC``: "reload this diagram from the store": this node saved edits
  that others may not have heard of (it was cut off from Redis);
- ``FOLLOW``: a channel of the ``/events`` relay got its first follower on
  this node (payload ``1``) or lost its last (``0``); the "diagram" field
  then holds the channel (rooms publish events only while someone follows);
- ``HELLO``: this node (re)joined: the others tell it what they follow.

Layout: kind (1 byte), node (12 ASCII bytes), diagram length (1 byte),
diagram (UTF-8), payload (the rest). Anything else is refused with
:class:`BadMessage`, so a stray publish on the channel cannot reach a room.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

NODE_BYTES = 12


class Kind(Enum):
    UPDATE = b"U"
    AWARENESS = b"A"
    RESYNC = b"R"
    FOLLOW = b"F"
    HELLO = b"H"


class BadMessage(ValueError):
    """Bytes on the rooms channel that are not a message of ours."""


@dataclass(frozen=True, slots=True)
class RoomMessage:
    kind: Kind
    node: str
    diagram: str
    payload: bytes = b""


def encode(message: RoomMessage) -> bytes:
    node = message.node.encode("ascii")
    diagram = message.diagram.encode()
    if len(node) != NODE_BYTES:
        raise ValueError(f"a node id is {NODE_BYTES} ASCII characters")
    if not 0 < len(diagram) < 256:
        raise ValueError("a diagram name is 1-255 bytes")
    return b"".join((message.kind.value, node, bytes((len(diagram),)), diagram, message.payload))


def decode(data: bytes) -> RoomMessage:
    if len(data) < 2 + NODE_BYTES:
        raise BadMessage("too short")
    try:
        kind = Kind(data[:1])
    except ValueError:
        raise BadMessage(f"unknown kind {data[:1]!r}") from None
    end = 1 + NODE_BYTES
    length = data[end]
    start = end + 1
    if length == 0 or len(data) < start + length:
        raise BadMessage("truncated diagram name")
    try:
        node = data[1:end].decode("ascii")
        diagram = data[start : start + length].decode()
    except UnicodeDecodeError:
        raise BadMessage("node or diagram is not text") from None
    return RoomMessage(kind, node, diagram, data[start + length :])
