"""A store's SQLite file read and written directly: what is on disk, and times set by hand.

The store keeps its SQL to itself; tests that check the file's rows, or age
them, open their own connection to the same file (WAL: they see what the
store committed, and the store sees what they commit).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from contextlib import closing
from pathlib import Path
from typing import Any


def rows(path: str | Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    with closing(sqlite3.connect(path)) as conn:
        return list(conn.execute(sql, params).fetchall())


def execute(path: str | Path, sql: str, params: Sequence[Any] = ()) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql, params)
