"""A tiny TCP load balancer for tests: what clients see of a cluster without sticky sessions.

Each new connection goes to the next backend (round robin) that accepts it;
a backend that refuses (its process is dead) is skipped. Bytes are copied
both ways until either side closes, then both are closed, so when a node
dies its clients see their socket drop and reconnect through the balancer,
to a node that is alive. A stopped (SIGSTOP) node still accepts, as a real
one would: the kernel completes the handshake.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import anyio
from anyio.abc import SocketAttribute, SocketStream

log = logging.getLogger("tests.balancer")

CONNECT_TIMEOUT = 2.0
ERRORS = (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError)


class Balancer:
    """The backends (loopback ports) and, per accepted connection, which one it went to."""

    def __init__(self, backends: Sequence[int], port: int) -> None:
        self.backends = list(backends)
        self.port = port
        self.routes: list[int] = []  # backend index of each connection, in the order made
        self._next = 0

    @property
    def yjs_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/yjs"

    async def _serve(self, client: SocketStream) -> None:
        async with client:
            upstream = await self._connect()
            if upstream is None:
                return  # no backend accepts: the client sees its socket close
            async with upstream, anyio.create_task_group() as tg:
                tg.start_soon(_copy, client, upstream, tg.cancel_scope)
                tg.start_soon(_copy, upstream, client, tg.cancel_scope)

    async def _connect(self) -> SocketStream | None:
        for attempt in range(len(self.backends)):
            index = (self._next + attempt) % len(self.backends)
            try:
                with anyio.fail_after(CONNECT_TIMEOUT):
                    upstream = await anyio.connect_tcp("127.0.0.1", self.backends[index])
            except (OSError, TimeoutError):
                continue
            self._next = index + 1
            self.routes.append(index)
            return upstream
        return None


async def _copy(source: SocketStream, sink: SocketStream, both: anyio.CancelScope) -> None:
    try:
        async for chunk in source:
            await sink.send(chunk)
    except ERRORS:
        pass
    finally:
        both.cancel()  # one side is gone: close the other too


@asynccontextmanager
async def balancing(backends: Sequence[int]) -> AsyncIterator[Balancer]:
    """A balancer on a free loopback port over these backend ports, until exit."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(SocketAttribute.local_port)
    balancer = Balancer(backends, port)

    async def serve(client: SocketStream) -> None:
        try:
            await balancer._serve(client)
        except Exception:
            log.exception("balancer: a connection failed")

    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, serve)
        yield balancer
        tg.cancel_scope.cancel()
