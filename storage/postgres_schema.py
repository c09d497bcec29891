"""The PostgreSQL database: connecting, its schema and ordered migrations, and URLs shown safely.

Tables: ``diagrams`` (one row each: seqs, edit time, list summary),
``updates`` (the log), ``checkpoints``, ``files``, ``relay_events`` and
``inkwire_meta`` (the schema version; relays keep their epochs there too),
the same as the SQLite file's, with blobs encoded the same way
(:mod:`storage.sqlite_schema`), so a copy between the two moves bytes as
they are. Text keys are ``COLLATE "C"``: ids sort by their bytes, as in SQLite,
so both list diagrams in the same order.

**Migrations** are :data:`MIGRATIONS`, applied in order at start, all in one
transaction that first takes an advisory lock: nodes starting together
upgrade once, and an upgrade that fails leaves the database as it was. A
database of a newer schema, or one holding other tables and no
``inkwire_meta`` (someone else's), is refused, naming the database.

Messages name the database by its URL without the password
(:func:`storage.urls.redact`), and driver errors are scrubbed of it.
"""

from __future__ import annotations

from collections.abc import Sequence

import psycopg

from storage.store import StorageError
from storage.urls import redact, scrub

#: Ordered migrations: version N is reached by running MIGRATIONS[N - 1]'s statements.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: the tables
    (
        'CREATE TABLE inkwire_meta (key text COLLATE "C" PRIMARY KEY, value text NOT NULL)',
        'CREATE TABLE diagrams (id text COLLATE "C" PRIMARY KEY,'
        " created double precision NOT NULL, updated double precision NOT NULL,"
        " last_seq bigint NOT NULL, checkpoint_seq bigint NOT NULL)",
        'CREATE TABLE updates (diagram text COLLATE "C" NOT NULL, seq bigint NOT NULL,'
        " first_seq bigint NOT NULL, ts double precision NOT NULL, origin text,"
        " data bytea NOT NULL, PRIMARY KEY (diagram, seq))",
        'CREATE TABLE checkpoints (diagram text COLLATE "C" NOT NULL, seq bigint NOT NULL,'
        " ts double precision NOT NULL, state bytea NOT NULL, PRIMARY KEY (diagram, seq))",
        'CREATE TABLE files (diagram text COLLATE "C" NOT NULL, file_id text COLLATE "C" NOT NULL,'
        " mime text NOT NULL, sha256 text NOT NULL, size bigint NOT NULL,"
        " created double precision NOT NULL, data bytea NOT NULL,"
        " PRIMARY KEY (diagram, file_id))",
        'CREATE TABLE relay_events (service text COLLATE "C" NOT NULL,'
        ' channel text COLLATE "C" NOT NULL, "offset" bigint NOT NULL, epoch text NOT NULL,'
        " ts double precision NOT NULL, event text NOT NULL, data text NOT NULL,"
        ' PRIMARY KEY (service, channel, "offset"))',
        "CREATE INDEX relay_events_ts ON relay_events (service, ts)",
    ),
    # 2: what the list shows (NULL until a checkpoint records it), listed by edit time
    (
        "ALTER TABLE diagrams ADD COLUMN live_elements bigint,"
        " ADD COLUMN state_bytes bigint, ADD COLUMN summary_seq bigint",
        "CREATE INDEX diagrams_updated ON diagrams (updated DESC, id)",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
_LOCK = 0x1_4B_77_1E  # pg_advisory_xact_lock key: one migration at a time per database


def connect(url: str, timeout: float) -> psycopg.Connection[tuple[object, ...]]:
    """A connection, or StorageError naming the (redacted) database and why."""
    try:
        return psycopg.connect(url, connect_timeout=max(1, int(timeout)))
    except (psycopg.Error, ValueError) as exc:
        raise StorageError(f"{redact(url)}: cannot connect ({scrub(str(exc), url)})") from None


def migrate(url: str, timeout: float = 5.0, *, upgrade: bool = True) -> tuple[int, int]:
    """Create or upgrade the schema in one transaction; return (version before, after).

    With ``upgrade`` False, only check: StorageError if the database is not
    at :data:`SCHEMA_VERSION` (``inkwire db upgrade`` brings it there).
    """
    with connect(url, timeout) as conn:
        try:
            with conn.transaction():
                before = schema_version(conn, url)
                if before == SCHEMA_VERSION:
                    return before, before
                if not upgrade:
                    raise StorageError(
                        f"{redact(url)}: schema version {before}, this inkwire needs"
                        f" {SCHEMA_VERSION} (run `inkwire db upgrade --db URL`)"
                    )
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK,))
                version = schema_version(conn, url)  # again: another node may have done it
                apply(conn, version, SCHEMA_VERSION)
                return before, SCHEMA_VERSION
        except psycopg.Error as exc:
            raise StorageError(
                f"{redact(url)}: could not upgrade the schema ({scrub(str(exc), url)})"
            ) from None


def apply(conn: psycopg.Connection[tuple[object, ...]], version: int, target: int) -> None:
    """Run the migrations after ``version`` up to ``target`` (in the caller's transaction)."""
    for statements in _steps(MIGRATIONS[version:target]):
        conn.execute(statements)
    conn.execute(
        "INSERT INTO inkwire_meta (key, value) VALUES ('schema_version', %s)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (str(target),),
    )


def _steps(migrations: Sequence[tuple[str, ...]]) -> list[bytes]:
    return [statement.encode() for migration in migrations for statement in migration]


def schema_version(conn: psycopg.Connection[tuple[object, ...]], url: str) -> int:
    """The database's schema version (0: empty); StorageError if foreign or newer than ours."""
    tables = {
        str(row[0])
        for row in conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema()"
        ).fetchall()
    }
    if tables and "inkwire_meta" not in tables:
        raise StorageError(
            f"{redact(url)}: not an inkwire database (tables: {sorted(tables)[:10]})"
        )
    version = 0
    if "inkwire_meta" in tables:
        row = conn.execute("SELECT value FROM inkwire_meta WHERE key = 'schema_version'").fetchone()
        version = int(str(row[0])) if row else 0
    if version > SCHEMA_VERSION:
        raise StorageError(
            f"{redact(url)}: schema version {version} is newer than this inkwire understands"
            f" ({SCHEMA_VERSION}); upgrade inkwire"
        )
    return version
