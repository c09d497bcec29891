"""``inkwire db upgrade|copy``: a database's schema, and moving a deployment between databases.

``inkwire serve`` creates or upgrades the schema itself when it starts;
``inkwire db upgrade`` does it alone, for operators who want the migration
as a step of its own (and to see the versions). ``inkwire db copy`` is
:mod:`storage.copy`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from storage import StorageError
from storage.urls import is_url, redact, warn_if_password_in_argv


def add_commands(commands: Any) -> None:
    db = commands.add_parser("db", help="the database: upgrade its schema, copy it")
    actions = db.add_subparsers(dest="action", required=True)
    upgrade = actions.add_parser("upgrade", help="create or upgrade the schema, then exit")
    upgrade.add_argument("--db", default="inkwire.db", help="SQLite file or postgresql:// URL")
    copy = actions.add_parser(
        "copy", help="copy every diagram (whole history), file and relay event; resumable"
    )
    copy.add_argument("--from", dest="source", required=True, help="SQLite file or URL")
    copy.add_argument("--to", dest="target", required=True, help="SQLite file or URL")
    copy.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    for target in (getattr(args, name, None) for name in ("db", "source", "target")):
        if target:
            warn_if_password_in_argv(target)
    try:
        if args.action == "upgrade":
            return _upgrade(args.db)
        from storage.copy import copy_database

        done = copy_database(args.source, args.target, progress=not args.quiet)
        print(
            f"copied {done.copied} diagrams ({done.skipped} already there) and"
            f" {done.relay_events} relay events from {redact(args.source)} to"
            f" {redact(args.target)} in {done.seconds:.1f} s; verified: every diagram equal"
        )
        return 0
    except StorageError as exc:
        print(f"inkwire db {args.action}: {exc}", file=sys.stderr)
        return 1


def _upgrade(target: str) -> int:
    if is_url(target):
        from storage import postgres_schema

        before, after = postgres_schema.migrate(target)
        version = postgres_schema.SCHEMA_VERSION
    else:
        from storage import sqlite_schema
        from storage.sqlite import SQLiteStore

        before = sqlite_schema.peek_version(target)
        SQLiteStore(target).close()
        after = version = sqlite_schema.SCHEMA_VERSION
    if before == after:
        print(f"{redact(target)}: schema version {version}, up to date")
    else:
        print(f"{redact(target)}: schema version {before} -> {after}")
    return 0
