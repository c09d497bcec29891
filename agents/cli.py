"""``inkwire mcp``: the MCP server on stdio, for desktop agents.

It talks to a running inkwire server (``--server URL``) as a Yjs client of
each diagram the agent opens, with ``--token`` when that server has auth on.
Logs go to stderr: stdout carries the protocol.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys

from agents.defaults import DEFAULT_SERVER, IDLE_TIMEOUT

__all__ = ["COMMANDS", "add_commands", "run"]

COMMANDS = ("mcp",)
TOKEN_ENV = "INKWIRE_TOKEN"


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    mcp = commands.add_parser(
        "mcp",
        help="an MCP server on stdio: AI agents draw in live diagrams",
        description=__doc__,
    )
    mcp.add_argument(
        "--server", default=DEFAULT_SERVER, help=f"the inkwire server (default {DEFAULT_SERVER})"
    )
    mcp.add_argument(
        "--token",
        help=f"a token for a server with auth on (or ${TOKEN_ENV}); its diagrams and publish "
        "right bound what the agent may read and edit",
    )
    mcp.add_argument(
        "--name", help="the agent's name people see (default: the MCP client's own name)"
    )
    mcp.add_argument(
        "--relay",
        action="append",
        default=[],
        metavar="URL",
        help="a relay the websocket_* tools also report on, as http://HOST:PORT (repeat)",
    )
    mcp.add_argument(
        "--idle",
        type=float,
        default=IDLE_TIMEOUT,
        help=f"seconds without a call before a diagram is left (default {IDLE_TIMEOUT:g})",
    )


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level="WARNING", stream=sys.stderr)
    if not args.server.startswith(("http://", "https://")):
        print("inkwire mcp: --server must be an http:// or https:// URL", file=sys.stderr)
        return 2
    # imported here: `inkwire` loads this module for every command
    import anyio

    from agents.server import ServerOptions, build_server

    options = ServerOptions(
        server=args.server.rstrip("/"),
        token=args.token or os.environ.get(TOKEN_ENV) or None,
        name=args.name,
        relays=args.relay,
        idle_timeout=args.idle,
    )
    server = build_server(options)
    anyio.run(server.run_stdio_async)
    return 0
