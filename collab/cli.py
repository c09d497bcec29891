"""The ``inkwire`` command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import anyio

from cluster import add_redis_option
from collab import auth, cli_db, cli_replay
from collab.app import CollabApp
from collab.config import Config
from collab.server import serve
from relays import cli as relay_cli
from relays import cli_clients
from storage import MemoryStore, StorageError, Store
from storage.databases import open_store, shown
from storage.urls import warn_if_password_in_argv


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="inkwire", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve_cmd = commands.add_parser("serve", help="run the collab server")
    serve_cmd.add_argument("--host", default="127.0.0.1")
    serve_cmd.add_argument("--port", type=int, default=3042)
    serve_cmd.add_argument(
        "--grace", type=float, default=Config.grace_period, help="seconds an empty room stays"
    )
    serve_cmd.add_argument("--max-users", type=int, default=Config.max_users)
    serve_cmd.add_argument(
        "--db",
        default="inkwire.db",
        help="SQLite file, or postgresql://USER@HOST:PORT/DBNAME (password from $PGPASSWORD or"
        " ~/.pgpass), to autosave to (':memory:' keeps nothing)",
    )
    serve_cmd.add_argument(
        "--checkpoint-every", type=int, default=500, help="updates between checkpoints"
    )
    serve_cmd.add_argument(
        "--retention",
        type=float,
        default=7 * 86400,
        help="seconds of full-resolution history before it is merged per minute",
    )
    serve_cmd.add_argument("--compress", action="store_true", help="zlib-compress saved blobs")
    serve_cmd.add_argument(
        "--tombstone-retention",
        type=_seconds_or_forever,
        default=Config.tombstone_retention,
        metavar="SECONDS",
        help="how long deleted elements' tombstones are kept (default a day; 'forever')",
    )
    serve_cmd.add_argument(
        "--web-root",
        type=Path,
        default=None,
        help="the built web app (default: clients/web/dist of this checkout)",
    )
    serve_cmd.add_argument(
        "--auth-secret",
        help="require client tokens (HS256 JWTs) signed with this secret on /yjs, /api and "
        f"/events (or ${auth.SECRET_ENV}); default: no auth",
    )
    add_redis_option(serve_cmd, "rooms, presence and /events (and the --db file)")
    serve_cmd.add_argument("--log-level", default="INFO")
    cli_replay.add_commands(commands)
    cli_db.add_commands(commands)
    relay_cli.add_commands(commands)
    cli_clients.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command in cli_clients.COMMANDS:
        sys.exit(cli_clients.run(args))
    if args.command in cli_replay.COMMANDS:
        logging.basicConfig(level="WARNING", stream=sys.stderr)
        sys.exit(cli_replay.run(args))
    if args.command == "db":
        logging.basicConfig(level="WARNING", stream=sys.stderr)
        sys.exit(cli_db.run(args))

    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=sys.stderr,
    )
    if args.command == "relay":
        sys.exit(relay_cli.run(args))
    if args.command == "serve":
        config = Config(
            grace_period=args.grace,
            max_users=args.max_users,
            tombstone_retention=args.tombstone_retention,
            auth_secret=args.auth_secret or auth.secret_from_env(),
            redis_url=args.redis,
        )
        if args.redis and args.db == ":memory:":
            parser.exit(2, "inkwire: the nodes of a cluster share their --db; :memory: cannot be\n")
        warn_if_password_in_argv(args.db)
        try:
            store: Store = (
                MemoryStore()
                if args.db == ":memory:"
                else open_store(
                    args.db,
                    compress=args.compress,
                    checkpoint_every=args.checkpoint_every,
                    retention=args.retention,
                )
            )
        except StorageError as exc:
            parser.exit(2, f"inkwire: {exc}\n")
        logging.getLogger("inkwire").info("saving to %s", shown(args.db))
        app = CollabApp(store=store, config=config, web_root=args.web_root)
        logging.getLogger("inkwire").info(
            "serving on http://%s:%d%s",
            args.host,
            args.port,
            " (auth on: tokens required)" if config.auth_secret else "",
        )
        anyio.run(serve, app, args.host, args.port)


def _seconds_or_forever(text: str) -> float | None:
    if text == "forever":
        return None
    seconds = float(text)
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be >= 0 seconds, or 'forever'")
    return seconds


if __name__ == "__main__":
    main()
