"""The settings on the command line: the options every server command shares, the named
flags of ``serve`` and ``relay`` as settings keys, and ``inkwire config check|show``.

A flag given wins over everything else; one not given (argparse default None)
leaves the key to the environment, the file and the defaults (see
:mod:`service.sources`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cluster import add_redis_option
from relays.catalogs import SERVICES
from service import CONFIG_ENV
from storage.urls import redact

if TYPE_CHECKING:  # the settings model (pydantic) loads when a command resolves settings
    from service.sources import Resolved

# argparse dest -> settings key, for `inkwire serve`
SERVE_FLAGS = {
    "host": "collab.host",
    "port": "collab.port",
    "grace": "collab.grace",
    "max_users": "collab.collaboration.max_users_per_room",
    "db": "collab.db",
    "checkpoint_every": "collab.checkpoint_every",
    "retention": "collab.retention",
    "compress": "collab.compress",
    "tombstone_retention": "collab.tombstone_retention",
    "web_root": "collab.web_root",
    "dashboard_relay": "collab.dashboard_relays",
    "auth_secret": "collab.auth_secret",
}
# for `inkwire relay`; "*" stands for each relay the command runs
RELAY_FLAGS = {
    "host": "relays.*.host",
    "port": "relays.*.port",
    "keepalive": "relays.*.ping_interval",
    "auth_secret": "relays.auth_secret",
    "db": "relays.db",
    "history_size": "relays.history_size",
    "history_age": "relays.history_age",
}
# on every command that starts servers
COMMON_FLAGS = {
    "redis": "redis",
    "log_level": "log.level",
    "log_format": "log.format",
    "certfile": "tls.certfile",
    "keyfile": "tls.keyfile",
}
SECRET_DESTS = frozenset({"auth_secret"})


def add_settings_options(parser: argparse.ArgumentParser, *, servers: bool = True) -> None:
    """``--config`` and ``--set``; with ``servers``, the options of every server command."""
    parser.add_argument(
        "--config",
        metavar="FILE",
        help=f"the settings file, inkwire.yaml (default: ${CONFIG_ENV}, else none)",
    )
    parser.add_argument(
        "--set",
        dest="set_keys",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any settings key, e.g. --set relays.dhruva.port=9693 (repeatable)",
    )
    if not servers:
        return
    parser.add_argument("--log-level", type=str.upper, help="DEBUG, INFO (default), WARNING...")
    parser.add_argument(
        "--log-format", choices=["text", "json"], help="text (default) or json, one per line"
    )
    parser.add_argument("--certfile", help="PEM certificate chain: serve TLS only (with --keyfile)")
    parser.add_argument("--keyfile", help="PEM private key of --certfile")


def relay_names(args: argparse.Namespace, resolved: Resolved | None = None) -> list[str]:
    """The relays ``inkwire relay NAME|all`` runs: the named one, or every enabled one."""
    if args.name != "all":
        return [args.name]
    if resolved is None:
        return [c.service for c in SERVICES]
    return [n for n, r in resolved.settings.relays.servers().items() if r.enabled]


def resolve_args(args: argparse.Namespace, command: str) -> Resolved:
    """The effective settings of a command's parsed arguments (raises SettingsError)."""
    from service.sources import BY_DOTTED, Flag, SettingsError, parse_set, resolve

    flags: dict[tuple[str, ...], Flag] = {}
    for item in args.set_keys:
        key_path, value = parse_set(item)
        flags[key_path] = Flag(value, f"--set {item}")
    named = dict(COMMON_FLAGS)
    if command == "serve":
        named.update(SERVE_FLAGS)
    elif command == "relay":
        named.update(RELAY_FLAGS)
    elif command == "up":
        named["workers"] = "workers"
    targets = relay_names(args) if command == "relay" else []
    if command == "relay" and args.port is not None and len(targets) > 1:
        raise SettingsError(["--port names one port; with 'all' use --port-offset"])
    for dest, dotted in named.items():
        value = getattr(args, dest, None)
        if value is None:
            continue
        if dest == "tombstone_retention" and value == "forever":
            value = None
        option = "--" + dest.replace("_", "-")
        shown_value = (
            "********" if dest in SECRET_DESTS else redact(str(value)) if dest == "db" else value
        )
        written = f"{option} {shown_value}"
        for key_name in [dotted.replace("*", t) for t in targets] if "*" in dotted else [dotted]:
            flags[BY_DOTTED[key_name].path] = Flag(value, written)
    resolved = resolve(args.config, flags)
    offset = getattr(args, "port_offset", 0) or 0
    if command == "relay" and offset:
        for name in relay_names(args, resolved):
            port = resolved.settings.relays.servers()[name].port + offset
            flags[BY_DOTTED[f"relays.{name}.port"].path] = Flag(port, f"--port-offset {offset}")
        resolved = resolve(args.config, flags)
    return resolved


def settings_or_exit(args: argparse.Namespace, command: str) -> Resolved:
    """Resolve, or print every problem and exit 2 (the start stops there)."""
    from service.sources import SettingsError

    try:
        return resolve_args(args, command)
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"inkwire: {problem}", file=sys.stderr)
        sys.exit(2)


# --- inkwire config check|show, up, deploy ---------------------------------------------


def add_commands(commands: Any) -> None:
    """``config``, ``up`` (:mod:`service.up`) and ``deploy`` (:mod:`service.units`)."""
    config = commands.add_parser("config", help="check or show the settings (inkwire.yaml)")
    actions = config.add_subparsers(dest="action", required=True)
    check = actions.add_parser("check", help="validate the settings; exit 2 naming each problem")
    add_settings_options(check, servers=False)
    show = actions.add_parser(
        "show", help="the effective settings, with where each came from (secrets redacted)"
    )
    add_settings_options(show, servers=False)
    show.add_argument("--json", action="store_true", help="one JSON object: key -> value, origin")
    up = commands.add_parser("up", help="run every enabled server of the settings, supervised")
    add_redis_option(up, "rooms and channels (needed for --workers above 1)")
    up.add_argument(
        "--workers",
        type=int,
        help="worker processes per server, sharing its port (default: the number of cores "
        "with redis; 1 without)",
    )
    up.add_argument(
        "--only",
        action="append",
        metavar="SERVICE",
        help="run only this server (collab or a relay's name; repeatable): one unit each "
        "under systemd or supervisord (`inkwire deploy`)",
    )
    add_settings_options(up)
    deploy = commands.add_parser(
        "deploy", help="print systemd units or a supervisord config for the settings"
    )
    deploy.add_argument("manager", choices=["systemd", "supervisor"])
    deploy.add_argument(
        "--user", default="inkwire", help="the dedicated user the servers run as (inkwire)"
    )
    deploy.add_argument(
        "--workdir",
        default="/var/lib/inkwire",
        help="working directory: where relative db paths land (/var/lib/inkwire)",
    )
    deploy.add_argument(
        "--inkwire", help="the inkwire executable (default: the one running this command)"
    )
    deploy.add_argument(
        "--output", type=Path, metavar="DIR", help="write one file per unit here instead"
    )
    add_settings_options(deploy, servers=False)


def run(args: argparse.Namespace) -> int:
    """``inkwire config check|show``."""
    from service.sources import effective, port_clashes

    resolved = settings_or_exit(args, "config")
    if args.action == "check":
        clashes = port_clashes(resolved)
        for problem in clashes:
            print(f"inkwire: {problem}", file=sys.stderr)
        if clashes:
            return 2
        where = resolved.config_file or "no settings file"
        servers = resolved.settings.servers()
        print(f"{where}: OK, {len(servers)} servers enabled:")
        for server in servers:
            print(f"  {server.service:<14} {server.url}")
        for note in resolved.notes:
            print(f"note: {note}")
        return 0
    rows = effective(resolved)
    if args.json:
        out = {key: {"value": _json_value(resolved, key), "origin": o} for key, _, o in rows}
        print(json.dumps(out, indent=2))
        return 0
    width = max(len(key) + len(value) for key, value, _ in rows) + 3
    for key, value, origin in rows:
        print(f"{key} = {value}".ljust(width) + f"  # {origin}")
    return 0


def _json_value(resolved: Resolved, dotted: str) -> Any:
    from service.settings import value_at
    from service.sources import BY_DOTTED

    leaf = BY_DOTTED[dotted]
    value = value_at(resolved.settings, leaf.path)
    if leaf.secret:
        return None if value is None else "********"
    if leaf.path[-1] == "db" and isinstance(value, str):
        return redact(value)
    return value
