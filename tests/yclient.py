"""A bare y-websocket peer for tests: raw frames in, a pycrdt Doc kept in step.

Tests that need to misbehave (stop reading, send garbage, inspect every
frame) use this instead of a polished client.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
from pycrdt import Doc, Map, TransactionEvent
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from collab.protocol import (
    AwarenessEntry,
    AwarenessMessage,
    SyncMessage,
    SyncType,
    awareness_message,
    encode_awareness_update,
    parse_awareness_update,
    parse_message,
    sync_step1,
    sync_step2,
    sync_update,
)


class Peer:
    def __init__(self, ws: ClientConnection, client_id: int) -> None:
        self.ws = ws
        self.doc = Doc(client_id=client_id)
        self.elements: Map[Any] = self.doc.get("elements", type=Map)
        self.client_id = client_id
        self.awareness: dict[int, Any] = {}
        self.awareness_seen: list[AwarenessEntry] = []
        self.frames: list[bytes] = []
        self.synced = anyio.Event()
        self.closed = anyio.Event()
        self.close_code: int | None = None
        self.close_reason = ""
        self._remote = False
        self._clock = 0
        self.doc.observe(self._on_local_update)

    def _on_local_update(self, event: TransactionEvent) -> None:
        if not self._remote:
            self._outgoing.append(sync_update(event.update))

    _outgoing: list[bytes]

    async def flush(self) -> None:
        while self._outgoing:
            await self.ws.send(self._outgoing.pop(0))

    def set(self, key: str, value: Any) -> None:
        self.elements[key] = value

    async def send_set(self, key: str, value: Any) -> None:
        self.set(key, value)
        await self.flush()

    async def set_awareness(self, state: dict[str, Any] | None) -> None:
        self._clock += 1
        text = json.dumps(state)
        entry = AwarenessEntry(self.client_id, self._clock, text)
        await self.ws.send(awareness_message(encode_awareness_update([entry])))

    async def reader(self) -> None:
        try:
            await self._read_frames()
        except ConnectionClosed:
            pass
        finally:
            if self.ws.close_code is not None:
                self.close_code = self.ws.close_code
                self.close_reason = self.ws.close_reason or ""
            self.closed.set()

    async def _read_frames(self) -> None:
        async for frame in self.ws:
            assert isinstance(frame, bytes)
            self.frames.append(frame)
            if frame[:1] == b"\x02":  # auth (permission denied): kept in frames, no state
                continue
            message = parse_message(frame)
            if isinstance(message, SyncMessage):
                if message.kind is SyncType.STEP1:
                    await self.ws.send(sync_step2(self.doc.get_update(message.payload)))
                else:
                    self._remote = True
                    try:
                        self.doc.apply_update(message.payload)
                    finally:
                        self._remote = False
                    if message.kind is SyncType.STEP2:
                        self.synced.set()
            elif isinstance(message, AwarenessMessage):
                for entry in parse_awareness_update(message.update):
                    self.awareness_seen.append(entry)
                    if entry.removed:
                        self.awareness.pop(entry.client_id, None)
                    else:
                        self.awareness[entry.client_id] = json.loads(entry.state)

    def snapshot(self) -> dict[str, Any]:
        return {key: value for key, value in self.elements.items()}


@asynccontextmanager
async def peer(
    url: str, client_id: int, *, sync: bool = True, read: bool = True, **kwargs: Any
) -> AsyncIterator[Peer]:
    async with connect(url, max_size=None, **kwargs) as ws:
        p = Peer(ws, client_id)
        p._outgoing = []
        async with anyio.create_task_group() as tg:
            if read:
                tg.start_soon(p.reader)
            if sync:
                await ws.send(sync_step1(p.doc.get_state()))
                if read:
                    with anyio.fail_after(10):
                        await p.synced.wait()
            yield p
            tg.cancel_scope.cancel()


async def wait_until(predicate: Any, timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not predicate():
            await anyio.sleep(0.005)
