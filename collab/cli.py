"""The ``inkwire`` command line."""

# Startup time is the user's (and a desktop agent's, which runs a subcommand as its
# stdio server): building the parser imports only argparse definitions, and each
# command imports what it runs when it runs (tests/test_layers.py keeps it so).

from __future__ import annotations

import argparse
import logging
import sys

from agents import cli as agents_cli
from cluster import add_redis_option
from collab import auth, cli_db, cli_replay
from relays import cli as relay_cli
from relays import cli_clients
from service import cli as service_cli


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="inkwire", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    # Every default below is the settings model's (service.settings); a flag left
    # out leaves the key to $INKWIRE_... and the --config file (docs/configuration.md).
    serve_cmd = commands.add_parser("serve", help="run the collab server")
    serve_cmd.add_argument("--host", help="default 127.0.0.1")
    serve_cmd.add_argument("--port", type=int, help="default 3042")
    serve_cmd.add_argument("--grace", type=float, help="seconds an empty room stays (30)")
    serve_cmd.add_argument("--max-users", type=int, help="connections per diagram (50)")
    serve_cmd.add_argument(
        "--db",
        help="SQLite file (inkwire.db), or postgresql://USER@HOST:PORT/DBNAME (the password from "
        "$PGPASSWORD or ~/.pgpass), to autosave to (':memory:' keeps nothing)",
    )
    serve_cmd.add_argument("--checkpoint-every", type=int, help="updates between checkpoints (500)")
    serve_cmd.add_argument(
        "--retention",
        type=float,
        help="seconds of full-resolution history before it is merged per minute (7 days)",
    )
    serve_cmd.add_argument(
        "--compress", action="store_true", default=None, help="zlib-compress saved blobs"
    )
    serve_cmd.add_argument(
        "--tombstone-retention",
        type=_seconds_or_forever,
        metavar="SECONDS",
        help="how long deleted elements' tombstones are kept (default a day; 'forever')",
    )
    serve_cmd.add_argument(
        "--web-root", help="the built web app (default: clients/web/dist of this checkout)"
    )
    serve_cmd.add_argument(
        "--dashboard-relay",
        action="append",
        metavar="URL",
        help="a relay /dashboard shows besides this server, as http://HOST:PORT (repeat for "
        "each; default: under `inkwire up`, the relays it runs)",
    )
    serve_cmd.add_argument(
        "--auth-secret",
        help="require client tokens (HS256 JWTs) signed with this secret on /yjs, /api and "
        f"/events (or ${auth.SECRET_ENV}); default: no auth",
    )
    add_redis_option(serve_cmd, "rooms, presence and /events (and the --db file)")
    service_cli.add_settings_options(serve_cmd)
    cli_replay.add_commands(commands)
    cli_db.add_commands(commands)
    relay_cli.add_commands(commands)
    service_cli.add_settings_options(commands.choices["relay"])
    cli_clients.add_commands(commands)
    agents_cli.add_commands(commands)
    service_cli.add_commands(commands)  # config, up, deploy
    args = parser.parse_args(argv)
    if args.command in agents_cli.COMMANDS:
        sys.exit(agents_cli.run(args))
    if args.command in cli_clients.COMMANDS:
        sys.exit(cli_clients.run(args))
    if args.command in cli_replay.COMMANDS:
        logging.basicConfig(level="WARNING", stream=sys.stderr)
        sys.exit(cli_replay.run(args))
    if args.command == "db":
        logging.basicConfig(level="WARNING", stream=sys.stderr)
        sys.exit(cli_db.run(args))
    if args.command == "config":
        sys.exit(service_cli.run(args))
    if args.command == "deploy":
        from service import units

        sys.exit(units.run(args))
    _serve(parser, args)


def _serve(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """``serve``, ``relay`` and ``up``: the commands that start servers."""
    from functools import partial

    import anyio

    from service import build, logs, run, up
    from storage.store import StorageError

    resolved = service_cli.settings_or_exit(args, args.command)
    settings = resolved.settings
    if args.command != "up":  # up's workers log for themselves, named by up
        names = service_cli.relay_names(args, resolved) if args.command == "relay" else []
        named = "collab" if args.command == "serve" else names[0] if len(names) == 1 else "relays"
        logs.setup(settings.log.level, settings.log.format, service=named)
        for note in resolved.notes:
            logging.getLogger("inkwire").warning("%s", note)
    if args.command == "up":
        sys.exit(up.run(resolved, only=args.only))
    if args.command == "relay":
        try:
            anyio.run(run.serve_relays, settings, service_cli.relay_names(args, resolved))
        except StorageError as exc:
            parser.exit(2, f"inkwire: {exc}\n")
        sys.exit(0)
    if args.command == "serve":
        try:
            app = build.collab_app(settings)
        except StorageError as exc:
            parser.exit(2, f"inkwire: {exc}\n")
        anyio.run(partial(run.serve_collab, settings, app=app))


def _seconds_or_forever(text: str) -> float | str:
    if text == "forever":
        return text
    seconds = float(text)
    if seconds < 0:
        raise argparse.ArgumentTypeError("must be >= 0 seconds, or 'forever'")
    return seconds


if __name__ == "__main__":
    main()
