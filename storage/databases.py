"""The one way every entry point opens its database: a SQLite file, or a PostgreSQL URL.

``inkwire serve --db``, ``inkwire relay --db``, the saved-diagram commands,
``inkwire db`` and the embedding API (:class:`relays.app.RelayApp`,
:func:`relays.serve`) all call :func:`open_store`, so whatever names a
database anywhere names it the same way: ``postgresql://`` (or
``postgres://``) opens :class:`storage.postgres.PostgresStore`, anything
else is a SQLite file path, as it always was.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from storage.store import Database
from storage.urls import is_url, redact

__all__ = ["Database", "exists", "is_url", "open_store", "redact"]


def open_store(target: str | Path, **options: Any) -> Database:
    """The store ``target`` names, schema created or upgraded; StorageError if unusable.

    ``options`` are the stores' common keywords (``compress``,
    ``checkpoint_every``, ``retention``, ``frame_seconds``), and for
    PostgreSQL also ``pool_size``, ``timeout`` and ``upgrade``.
    """
    if isinstance(target, str) and is_url(target):
        from storage.postgres import PostgresStore  # only PostgreSQL users import psycopg

        return PostgresStore(target, **options)
    from storage.sqlite import SQLiteStore

    for postgres_only in ("pool_size", "timeout", "upgrade"):
        options.pop(postgres_only, None)
    return SQLiteStore(target, **options)


def exists(target: str | Path) -> bool:
    """Whether there is a database to read (a URL: assumed; a file: it must exist)."""
    return (isinstance(target, str) and is_url(target)) or Path(target).exists()


def shown(target: str | Path) -> str:
    """How messages name the database: a path, or the URL without its password."""
    return redact(str(target))
