"""``/mcp``: the MCP server over streamable HTTP, mounted in another ASGI app.

``inkwire serve`` mounts it on its own port (:mod:`collab.app`): the host app
checks the bearer token first (the same tokens as ``/api``), then hands the
request here; the tools act with that request's token, so a token's diagrams
and ``publish`` right bound what an agent may read and edit. The MCP session
manager and the agent sessions run inside the host's lifespan
(:meth:`McpEndpoint.running`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings

from agents.server import ServerOptions, build_server

__all__ = ["MCP_PATH", "McpEndpoint"]

MCP_PATH = "/mcp"
SESSION_IDLE = 30 * 60.0  # seconds an MCP session lives without a request (the SDK's default)


class McpEndpoint:
    """The MCP server as an ASGI endpoint; :meth:`running` must enclose every request."""

    def __init__(self, options: ServerOptions | None = None) -> None:
        # server=None: the tools talk to the server each request came in on
        self.options = options or ServerOptions(server=None)
        self.server = build_server(self.options)
        # Host and Origin checks (DNS rebinding) would refuse a server reached by
        # any name but localhost; /mcp is as open as /api and guarded the same way.
        self.server.streamable_http_app(
            streamable_http_path=MCP_PATH,
            transport_security=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            session_idle_timeout=SESSION_IDLE,
        )
        self.manager = self.server.session_manager

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """The session manager (and with it the agent sessions) for the life of the block."""
        async with self.manager.run():
            yield

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self.manager.handle_request(scope, receive, send)
