"""The databases the storage tests run against: a SQLite file, or a PostgreSQL database of its own.

The ``backend`` fixture (tests/conftest.py) yields a :class:`Backend` per
kind, so one test checks both stores. For PostgreSQL each test creates a
database of its own on the machine's server (127.0.0.1:5432, user
``postgres``, trust auth) and drops it after. Without a server the
PostgreSQL cases are skipped, loudly ("PostgreSQL NOT RUN" and why, in the
summary), except under CI (``$CI`` set, as for the Node tests), where
``.ci/run`` made sure one runs: there they fail.

Tests that read or write rows directly (what is on disk, times set by hand)
go through :meth:`Backend.rows` and :meth:`Backend.execute`, written with
``?`` placeholders for both databases.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from storage.databases import open_store
from tests import sqlite_file
from tests.node import in_ci

if TYPE_CHECKING:
    from storage.databases import Database

PG_HOST = os.environ.get("INKWIRE_TEST_PGHOST", "127.0.0.1")
PG_PORT = int(os.environ.get("INKWIRE_TEST_PGPORT", "5432"))
PG_ADMIN = f"postgresql://postgres@{PG_HOST}:{PG_PORT}/postgres"
KINDS = ("sqlite", "postgres")

_reachable: str | None = None  # "" once reached; else why not


def postgres_or_skip() -> None:
    """Skip (fail under CI) unless the test server answers."""
    global _reachable
    if _reachable is None:
        try:
            import psycopg

            with psycopg.connect(PG_ADMIN, connect_timeout=3, autocommit=True) as conn:
                conn.execute("SELECT 1")
            _reachable = ""
        except Exception as exc:  # any reason it cannot be used is a reason to skip
            _reachable = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    if _reachable:
        message = f"PostgreSQL NOT RUN: no server at {PG_HOST}:{PG_PORT} ({_reachable})"
        if in_ci():
            pytest.fail(f"{message}; under CI .ci/run must start one")
        pytest.skip(message)


def admin(sql: str) -> None:
    """Run one statement on the server's ``postgres`` database (outside a transaction)."""
    import psycopg

    with psycopg.connect(PG_ADMIN, connect_timeout=5, autocommit=True) as conn:
        conn.execute(sql.encode())


@contextmanager
def scratch_database(admin_url: str = PG_ADMIN) -> Iterator[str]:
    """A new, empty database on the server: its URL; dropped afterwards."""
    import psycopg

    name = f"inkwire_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin_url, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"'.encode())
    try:
        yield admin_url.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin_url, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'.encode())


@dataclass
class Backend:
    """One database to test against, and direct access to its rows."""

    kind: str  # "sqlite" or "postgres"
    target: str  # the --db: a file path or a URL
    opened: list[Database] = field(default_factory=list)

    def open(self, **options: Any) -> Database:
        """The store on this database (opened again: the same data); closed after the test."""
        store = open_store(self.target, **options)
        self.opened.append(store)
        return store

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        if self.kind == "sqlite":
            return sqlite_file.rows(self.target, sql, params)
        import psycopg

        with psycopg.connect(self.target, connect_timeout=5) as conn:
            return [tuple(row) for row in conn.execute(_pg(sql), params).fetchall()]

    def execute(self, sql: str, params: Sequence[Any] = ()) -> None:
        if self.kind == "sqlite":
            sqlite_file.execute(self.target, sql, params)
            return
        import psycopg

        with psycopg.connect(self.target, connect_timeout=5) as conn:
            conn.execute(_pg(sql), params)

    @contextmanager
    def refusing_writes(self, store: Database) -> Iterator[None]:
        """The database fails every write of ``store`` inside the block, then works again.

        SQLite: the store's connection turns read-only. PostgreSQL: the
        database refuses new connections and the store's are terminated
        (mid-transaction, if one runs), as when the server goes away.
        """
        if self.kind == "sqlite":
            conn = store._conn  # type: ignore[union-attr]
            conn.execute("PRAGMA query_only = 1")
            try:
                yield
            finally:
                conn.execute("PRAGMA query_only = 0")
            return
        name = self.target.rsplit("/", 1)[1]
        admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
        admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            f" WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        )
        try:
            yield
        finally:
            admin(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')

    def close(self) -> None:
        for store in self.opened:
            store.close()
        self.opened.clear()


def _pg(sql: str) -> bytes:
    return sql.replace("?", "%s").encode()


@contextmanager
def backend_for(kind: str, directory: Path) -> Iterator[Backend]:
    """A fresh database of ``kind``; a PostgreSQL one is dropped afterwards."""
    if kind == "sqlite":
        backend = Backend(kind, str(directory / "inkwire.db"))
        try:
            yield backend
        finally:
            backend.close()
        return
    postgres_or_skip()
    with scratch_database() as url:
        backend = Backend(kind, url)
        try:
            yield backend
        finally:
            backend.close()
