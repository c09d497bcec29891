"""``/mcp``, the MCP server for AI agents (:mod:`agents`), loaded on its first request.

The MCP SDK and the agents' element model cost about 1.5 s and 40 MB to
import: every ``inkwire serve`` and every worker of ``inkwire up`` would pay
that at start for an endpoint most of them never serve. So the endpoint is
imported (in a worker thread, not to stall the rooms) and started when the
first ``/mcp`` request arrives; that request waits for it. It then runs in
a task of the app's lifespan until the server stops: its session manager,
and the agents' sessions with their clients of this server's rooms.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

import anyio
import anyio.to_thread
from anyio.abc import TaskStatus

from net.asgi import Receive, Scope, Send, respond_json

if TYPE_CHECKING:
    from agents.http import McpEndpoint

__all__ = ["MCP_PATH", "McpMount"]

log = logging.getLogger("inkwire.app")

MCP_PATH = "/mcp"  # agents.http.MCP_PATH, without importing it
LOAD_TIMEOUT = 60.0  # seconds a first request waits for the endpoint to start


class McpMount:
    """The ``/mcp`` endpoint, started by :meth:`run` once a request wants it."""

    def __init__(self, relays: Sequence[str] = ()) -> None:
        self.relays = list(relays)
        self.endpoint: McpEndpoint | None = None
        self.failed: str | None = None
        self.stopping = False
        self._wanted: anyio.Event | None = None
        self._ready: anyio.Event | None = None
        self._finished: anyio.Event | None = None
        self._scope: anyio.CancelScope | None = None

    @staticmethod
    def serves(path: str) -> bool:
        return path == MCP_PATH or path.startswith(MCP_PATH + "/")

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """For the app's lifespan: wait for a first request, then serve until :meth:`stop`."""
        self._wanted, self._ready, self._finished = anyio.Event(), anyio.Event(), anyio.Event()
        task_status.started()
        try:
            with anyio.CancelScope() as self._scope:
                if self.stopping:
                    return
                await self._wanted.wait()
                endpoint = await self._load()
                if endpoint is None:
                    return
                async with endpoint.running():
                    self.endpoint = endpoint
                    self._ready.set()
                    await anyio.sleep_forever()
        finally:
            self.endpoint = None
            self._ready.set()
            self._finished.set()

    async def _load(self) -> McpEndpoint | None:
        try:
            await anyio.to_thread.run_sync(importlib.import_module, "agents.http")
            from agents.http import McpEndpoint
            from agents.server import ServerOptions

            return McpEndpoint(ServerOptions(server=None, relays=self.relays))
        except Exception as error:  # a broken install: /mcp says so, the rest serves on
            log.exception("the MCP endpoint could not start")
            self.failed = f"the MCP endpoint could not start: {error!r}"
            return None

    def stop(self) -> None:
        """The server is shutting down: end the agents' sessions (their streams close,
        their clients leave the rooms) and take no more requests."""
        self.stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def wait_stopped(self) -> None:
        if self._finished is not None:
            await self._finished.wait()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.stopping:
            await respond_json(send, 503, {"error": "the server is shutting down"})
            return
        if self.endpoint is None:
            if self._wanted is None or self._ready is None:
                await respond_json(send, 503, {"error": "the server is not running yet"})
                return
            self._wanted.set()
            with anyio.move_on_after(LOAD_TIMEOUT):
                await self._ready.wait()
            if self.endpoint is None:
                message = self.failed or "the MCP endpoint is still starting: try again"
                await respond_json(send, 503, {"error": message})
                return
        await self.endpoint(scope, receive, send)
