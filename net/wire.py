"""Sending WebSocket frames: straight to hypercorn's socket, or the ASGI way.

The steady-rate cost of a room is one frame per client per update, and
hypercorn's ASGI send path spends most of it in Python (wsproto framing per
client, a lock, a drain) before the one syscall that matters. A server frame
is unmasked, so its bytes are the same for every client: we frame a payload
once and, where hypercorn serves the connection over asyncio streams and
HTTP/1.1, write those bytes to each client's transport.

Frames written this way are never compressed. That is valid even when
permessage-deflate was negotiated (RFC 7692 lets an endpoint send any message
uncompressed, RSV1 clear), and it leaves hypercorn's compressor context
untouched, since only messages it compresses enter that context. Yjs updates
are small; compressing them cost about three times the framing.

Anything else (HTTP/2, the trio worker, a hypercorn whose internals differ)
goes through the ASGI ``send``. Whole frames are written with one ``write``
call, so they never interleave with the frames hypercorn writes itself (pongs,
the close frame).

A :class:`Sender` also notes when it last sent anything, so that
:mod:`net.keepalive` can send a keepalive message through the connection's own
writer when the line has been quiet: each protocol picks a message its clients
ignore (collab an empty awareness update, the relays a JSON ``ping``), since
the ASGI interface has no WebSocket ping frame to send. Besides telling a
client the server is there (the stock y-websocket client reconnects after 30 s
without a message), it makes a dead peer show up as a failed or stalled send.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Protocol

from net.asgi import Send

HIGH_WATER = 64 * 1024  # bytes buffered in the transport before we wait for it to drain


def frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """A final, unmasked WebSocket frame (RFC 6455, 5.2); binary by default."""
    n = len(payload)
    first = 0x80 | opcode
    if n < 126:
        header = bytes((first, n))
    elif n < 65536:
        header = bytes((first, 126)) + n.to_bytes(2, "big")
    else:
        header = bytes((first, 127)) + n.to_bytes(8, "big")
    return header + payload


class Frame:
    """A message to send to many clients: its payload, and its wire bytes made once.

    Binary by default (Yjs); ``text=True`` for the JSON relays, whose clients
    expect text frames (the payload must then be UTF-8).
    """

    __slots__ = ("_wire", "payload", "text")

    def __init__(self, payload: bytes, *, text: bool = False) -> None:
        self.payload = payload
        self.text = text
        self._wire: bytes | None = None

    @property
    def wire(self) -> bytes:
        if self._wire is None:
            self._wire = frame(self.payload, 0x1 if self.text else 0x2)
        return self._wire

    def __len__(self) -> int:
        return len(self.payload)


class SendStats(Protocol):
    """Where a sender counts what it sent (both servers' stats have these)."""

    frames_out: int
    bytes_out: int


class Sender:
    """Sends payloads to one client, by the fastest path its connection allows.

    It counts frames and payload bytes into ``stats`` itself, so every path
    (ASGI, raw write, the publisher's synchronous write) is counted once, and
    notes the time of the last write in ``last_sent`` (``time.monotonic``).
    """

    __slots__ = ("_asgi_send", "_transport", "_writer", "last_sent", "stats")

    def __init__(self, asgi_send: Send, stats: SendStats) -> None:
        self.stats = stats
        self.last_sent = time.monotonic()
        self._asgi_send = asgi_send
        self._writer = raw_writer(asgi_send)
        self._transport = self._writer.transport if self._writer is not None else None

    @property
    def raw(self) -> bool:
        return self._transport is not None

    def try_write(self, frames: Sequence[Frame]) -> bool:
        """Write frames now if that cannot block (a raw socket with room); else False."""
        if len(frames) == 1:
            return self.try_write_one(frames[0])
        if not frames:
            return True  # nothing for this client in the run (say, only its own edits)
        # one syscall for the run
        wire = b"".join([message.wire for message in frames])
        return self._write_now(wire, sum([len(message.payload) for message in frames]), len(frames))

    def try_write_one(self, frame: Frame) -> bool:
        """:meth:`try_write` of one frame (the steady-rate case: one event, one reply)."""
        return self._write_now(frame.wire, len(frame.payload), 1)

    def _write_now(self, wire: bytes, payload_bytes: int, frames: int) -> bool:
        transport = self._transport
        if (
            transport is None
            or transport.is_closing()
            or transport.get_write_buffer_size() > HIGH_WATER
        ):
            return False
        transport.write(wire)
        stats = self.stats
        stats.bytes_out += payload_bytes
        stats.frames_out += frames
        self.last_sent = time.monotonic()
        return True

    async def send(self, message: Frame) -> None:
        transport = self._transport
        if transport is None:
            if message.text:
                await self._asgi_send({"type": "websocket.send", "text": message.payload.decode()})
            else:
                await self._asgi_send({"type": "websocket.send", "bytes": message.payload})
        else:
            if transport.is_closing():
                raise ConnectionResetError("transport closed")
            transport.write(message.wire)
            if transport.get_write_buffer_size() > HIGH_WATER:
                assert self._writer is not None
                await self._writer.drain()
        self.stats.frames_out += 1
        self.stats.bytes_out += len(message.payload)
        self.last_sent = time.monotonic()


def raw_writer(asgi_send: Send) -> asyncio.StreamWriter | None:
    """hypercorn's StreamWriter behind an ASGI websocket ``send``, if safe to use."""
    try:
        stream = asgi_send.__self__  # type: ignore[attr-defined]  # hypercorn WSStream
        if type(stream).__name__ != "WSStream":
            return None
        http = stream.send.__self__  # H11Protocol
        if type(http).__name__ != "H11Protocol":
            return None
        writer = http.send.__self__.writer  # TCPServer.writer
    except AttributeError:
        return None
    return writer if isinstance(writer, asyncio.StreamWriter) else None
