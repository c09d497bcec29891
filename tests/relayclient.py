"""Test helpers: relays on free ports, and JSON clients written the way existing ones are.

The client is written the way the services' existing clients are: the
``websockets`` library, read the welcome, send subscribe requests with an
``id`` without waiting, then loop over every message, dispatching
``type == "event"`` ones. It keeps the other messages so tests can look at
replies.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from typing import Any

import anyio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import relays
from relays.catalog import Catalog
from relays.protocol import split_batch
from tests.conftest import free_port

TIMEOUT = 10.0


@asynccontextmanager
async def relay(catalog: Catalog, **settings: Any) -> AsyncIterator[relays.Relay]:
    """A relay for ``catalog`` on a free loopback port (``settings``: RelaySettings fields)."""
    config = relays.RelaySettings(**settings)
    async with relays.serve(catalog, "127.0.0.1", free_port(), settings=config) as running:
        yield running


@dataclass
class Client:
    ws: ClientConnection
    welcome: dict[str, Any]
    events: list[dict[str, Any]] = field(default_factory=list)
    replies: dict[Any, dict[str, Any]] = field(default_factory=dict)
    others: list[dict[str, Any]] = field(default_factory=list)
    frames: int = 0
    _changed: anyio.Event = field(default_factory=anyio.Event)

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def subscribe(self, channel: str, **extra: Any) -> str:
        """Send a subscribe as existing clients do (id ``sub_<channel>``), without waiting."""
        message_id = f"sub_{channel}"
        data: dict[str, Any] = {"channel": channel, **extra}
        await self.send({"type": "request", "event": "subscribe", "data": data, "id": message_id})
        return message_id

    async def request(self, event: str, data: Any = None, message_id: Any = None) -> Any:
        message_id = message_id if message_id is not None else f"{event}-{len(self.replies)}"
        await self.send({"type": "request", "event": event, "data": data or {}, "id": message_id})
        return message_id

    async def run(self) -> None:
        """The dispatch loop: every message parsed, events handed to ``events``."""
        async for raw in self.ws:
            self.frames += 1
            for line in split_batch(raw if isinstance(raw, str) else raw.decode()):
                message = json.loads(line)
                if message["type"] == "event":
                    self.events.append(message)
                elif message.get("correlation_id") is not None:
                    self.replies[message["correlation_id"]] = message
                else:
                    self.others.append(message)
            self._changed.set()
            self._changed = anyio.Event()

    async def wait(self, predicate: Any, timeout: float = TIMEOUT) -> None:
        with anyio.fail_after(timeout):
            while not predicate():
                await self._changed.wait()

    async def reply(self, message_id: Any) -> dict[str, Any]:
        await self.wait(lambda: message_id in self.replies)
        return self.replies[message_id]

    async def events_count(self, n: int) -> list[dict[str, Any]]:
        await self.wait(lambda: len(self.events) >= n)
        return self.events


@asynccontextmanager
async def client(
    url: str,
    *,
    subprotocols: list[str] | None = None,
    max_size: int | None = None,
    close_timeout: float = TIMEOUT,
) -> AsyncIterator[Client]:
    """A connected :class:`Client`, its dispatch loop running for the block.

    ``close_timeout`` is how long the client waits for the server to end the
    TCP connection after a closing handshake before it aborts it itself; a
    test that checks the server does end it sets this past its own bound.
    """
    async with connect(
        url,
        subprotocols=subprotocols,
        max_size=max_size,
        open_timeout=TIMEOUT,  # type: ignore[arg-type]
        close_timeout=close_timeout,
    ) as ws:
        with anyio.fail_after(TIMEOUT):
            welcome = json.loads(await ws.recv())
        c = Client(ws, welcome)
        async with anyio.create_task_group() as tg:
            tg.start_soon(_run_quietly, c)
            try:
                yield c
            finally:
                tg.cancel_scope.cancel()


async def _run_quietly(c: Client) -> None:
    with suppress(ConnectionClosed):
        await c.run()
    c._changed.set()
