"""``inkwire relay NAME|all``: standalone relays, registered by collab's CLI."""

from __future__ import annotations

from typing import Any

from cluster import add_redis_option
from relays.auth import SECRET_ENV
from relays.catalogs import BY_NAME


def add_commands(commands: Any) -> None:
    """Add the ``relay`` subcommand to an argparse subparsers object.

    Its defaults are the settings model's (``service.settings``): a flag left out
    leaves the key to the environment and the ``--config`` file; collab's CLI adds
    the options every server command shares and runs it (``service.run``).
    """
    relay = commands.add_parser("relay", help="run a service's event relay (or all six)")
    relay.add_argument(
        "name", choices=[*BY_NAME, "all"], help="catalog name, or 'all' (the enabled ones)"
    )
    relay.add_argument("--host", help="default 127.0.0.1")
    relay.add_argument("--port", type=int, help="default: the catalog's port")
    relay.add_argument(
        "--port-offset",
        type=int,
        default=0,
        help="added to every relay's port (run several sets side by side)",
    )
    relay.add_argument(
        "--auth-secret",
        help=f"require client tokens (HS256 JWTs) signed with this secret (or ${SECRET_ENV})",
    )
    relay.add_argument(
        "--db",
        help="keep history in this SQLite file or postgresql:// database, so recovery"
        " survives a restart (one database may serve all six relays)",
    )
    add_redis_option(relay, "channels, offsets and history")
    relay.add_argument("--history-size", type=int, help="events kept per channel (1000)")
    relay.add_argument("--history-age", type=float, help="seconds an event is kept (3600)")
    relay.add_argument(
        "--keepalive",
        type=float,
        help="seconds of silence before a client gets a 'ping' message (25; 0: never)",
    )
