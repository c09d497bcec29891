"""The SQLite file: opening it, its schema and upgrades, and how blobs are encoded in it.

Tables: ``diagrams`` (one row each: seqs, edit time, list summary),
``updates`` (the log), ``checkpoints``, ``files``, ``relay_events``, and
``inkwire_meta`` (the schema version; relays keep their epochs there too).
"""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path

import sqlite_utils

from storage.store import StorageError

# 1: the tables; 2: diagrams.live_elements/state_bytes/summary_seq, index on updated
SCHEMA_VERSION = 2
RAW, ZLIB = b"\x00", b"\x01"  # blob codec prefix


def encode_blob(data: bytes, compress: bool) -> bytes:
    if compress:
        return ZLIB + zlib.compress(data, 1)
    return RAW + data


def decode_blob(blob: bytes) -> bytes:
    codec, body = blob[:1], blob[1:]
    if codec == RAW:
        return body
    if codec == ZLIB:
        return zlib.decompress(body)
    raise StorageError(f"unknown blob codec {codec!r}")


def connect(path: Path) -> sqlite3.Connection:
    """The file opened in WAL mode, schema current; StorageError if it cannot be used."""
    try:
        conn = sqlite3.connect(path, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL survives a killed process
        conn.execute("PRAGMA busy_timeout=5000")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path}: not a usable SQLite database ({exc})") from exc
    _migrate(sqlite_utils.Database(conn), path)
    return conn


def peek_version(path: str | Path) -> int:
    """The file's schema version without changing it (0: no file, or empty)."""
    if not Path(path).exists():
        return 0
    try:
        conn = sqlite3.connect(path)
        try:
            return _schema_version(sqlite_utils.Database(conn), Path(path))
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path}: not a usable SQLite database ({exc})") from exc


def _migrate(db: sqlite_utils.Database, path: Path) -> None:
    """Create or upgrade the schema in place; refuse a database we do not understand.

    The upgrade is one transaction, and the version is read again inside it:
    a file another process upgraded meanwhile is not upgraded twice, and one
    interrupted half-way is left as it was.
    """
    try:
        if _schema_version(db, path) == SCHEMA_VERSION:
            return
        db.conn.execute("BEGIN IMMEDIATE")
        try:
            version = _schema_version(db, path)
            if version < 1:
                _create_v1(db)
            if version < 2:
                _upgrade_v2(db)
            db.conn.execute(
                "INSERT OR REPLACE INTO inkwire_meta (key, value) VALUES ('schema_version', ?)",
                (str(SCHEMA_VERSION),),
            )
        except BaseException:
            db.conn.rollback()
            raise
        db.conn.commit()
    except sqlite3.DatabaseError as exc:
        raise StorageError(f"{path}: not a usable SQLite database ({exc})") from exc


def _schema_version(db: sqlite_utils.Database, path: Path) -> int:
    """The file's schema version (0: empty); StorageError if foreign or newer than ours."""
    tables = set(db.table_names())
    if tables and "inkwire_meta" not in tables:
        raise StorageError(f"{path}: not an inkwire database (tables: {sorted(tables)})")
    version = 0
    if "inkwire_meta" in tables:
        row = db.execute("SELECT value FROM inkwire_meta WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else 0
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{path}: schema version {version} is newer than this inkwire understands"
            f" ({SCHEMA_VERSION}); upgrade inkwire"
        )
    return version


def _create_v1(db: sqlite_utils.Database) -> None:
    db.table("inkwire_meta").create({"key": str, "value": str}, pk="key")
    db.table("diagrams").create(
        {"id": str, "created": float, "updated": float, "last_seq": int, "checkpoint_seq": int},
        pk="id",
    )
    db.table("updates").create(
        {"diagram": str, "seq": int, "first_seq": int, "ts": float, "origin": str, "data": bytes},
        pk=("diagram", "seq"),
    )
    db.table("checkpoints").create(
        {"diagram": str, "seq": int, "ts": float, "state": bytes}, pk=("diagram", "seq")
    )
    db.table("files").create(
        {
            "diagram": str,
            "file_id": str,
            "mime": str,
            "sha256": str,
            "size": int,
            "created": float,
            "data": bytes,
        },
        pk=("diagram", "file_id"),
    )
    db.table("relay_events").create(
        {"channel": str, "offset": int, "epoch": str, "ts": float, "event": str, "data": str},
        pk=("channel", "offset"),
    )


def _upgrade_v2(db: sqlite_utils.Database) -> None:
    """What the list of diagrams shows, recorded with each checkpoint (NULL until one is)."""
    for column in ("live_elements", "state_bytes", "summary_seq"):
        db.execute(f"ALTER TABLE diagrams ADD COLUMN {column} INTEGER")
    db.execute("CREATE INDEX diagrams_updated ON diagrams (updated)")
