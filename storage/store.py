"""The interfaces storage is used through: a database is an implementation of them.

- :class:`Store`: what a room loads from and appends to, and the durability
  rule that goes with it.
- :class:`FileStore`: the bytes of a diagram's images.
- :class:`DiagramArchive`: the saved diagrams with their whole history, as
  the list, export, history, restore and import read them (:mod:`storage.replay`).
- :class:`RelayEventLog`: a relay's events kept across restarts (:mod:`relays.history`).

Implementations: :class:`storage.MemoryStore` (a :class:`Store`, in process),
:class:`storage.sqlite.SQLiteStore` and :class:`storage.postgres.PostgresStore`
(all four, a :class:`Database`; the relay events through its
``relay_events``). Consumers type against these protocols, so another
database is a matter of implementing them (and naming it in
:func:`storage.databases.open_store`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from typing import NamedTuple, Protocol, runtime_checkable


class StorageError(RuntimeError):
    """The database cannot be used (corrupt, newer schema, unwritable...)."""


class Store(Protocol):
    """What a room persists through.

    The durability rule: :meth:`append` returns only once its batch is
    durable (in a database, it survives the process being killed; in
    memory, it lasts as long as the process), and a room sends an update to
    other clients only after the ``append`` holding it returned, so nothing
    a client was sent can be lost by a crash. The seq ``append`` returns
    names that durable version of the diagram. The one exception is an
    outage: while ``append`` raises, a room serves edits unsaved rather
    than stop editing, and reports it (:attr:`healthy` is False).

    A room calls :meth:`load` once, before it answers any client.
    """

    async def load(self, diagram: str) -> bytes | None:
        """The diagram's whole saved state as one Yjs update, or None if new."""
        ...

    async def append(
        self,
        diagram: str,
        updates: Sequence[bytes],
        origins: str | Sequence[str | None] | None = None,
    ) -> int:
        """Record updates, in order (with who made them); return once they are durable.

        Returns the diagram's seq after the batch: each update takes the next
        seq, so this is the seq of its last update (of the diagram's last, 0
        if none, when the batch is empty). Raises :class:`StorageError` if it could not be
        saved; then nothing of the batch is.
        """
        ...

    async def maintain(
        self, diagram: str, saved_state: Callable[[], bytes | None] | None = None
    ) -> None:
        """Saving went well: a moment for work it made due (a checkpoint)."""
        ...

    async def release(self, diagram: str) -> None:
        """The room unloaded: a moment for checkpoints and compaction."""
        ...

    @property
    def healthy(self) -> bool:
        """False while saving fails (readiness reports it)."""
        ...


class FileStore(Protocol):
    """The bytes of images in diagrams; the doc's ``files`` map holds their metadata.

    Synchronous: call from a worker thread in async code.
    """

    def put_file(
        self, diagram: str, file_id: str, mime: str, data: bytes, *, sha256: str, created: float
    ) -> None:
        """Store a file, replacing one of the same id (Excalidraw file ids are content ids)."""
        ...

    def get_file(self, diagram: str, file_id: str) -> tuple[str, bytes] | None:
        """(mime, bytes) of a stored file, or None."""
        ...


class DiagramSummary(NamedTuple):
    """A diagram's row in the list: what it shows, read without replaying anything.

    ``live_elements`` and ``state_bytes`` describe the state at
    ``summary_seq``, recorded with a checkpoint; all three are None until one is.
    """

    id: str
    updated: float
    last_seq: int
    live_elements: int | None
    state_bytes: int | None
    summary_seq: int | None


class LoggedUpdate(NamedTuple):
    """One entry of a diagram's update log.

    Old entries may be compacted into frames: a frame holds seqs
    ``first_seq`` to ``seq`` merged, with the time of its last.
    """

    seq: int
    first_seq: int
    ts: float
    origin: str | None
    data: bytes


@runtime_checkable
class DiagramArchive(Store, FileStore, Protocol):
    """Saved diagrams with their history: the update log, checkpoints and list summaries.

    A diagram's seqs count its updates from 1; the state at a seq is the
    latest checkpoint at or before it plus the updates after it, so reading
    any version costs the same however long the history. The reads are
    synchronous (call them from a worker thread in async code).
    """

    def last_seq(self, diagram: str) -> int | None:
        """The seq of the diagram's latest update, or None if there is no such diagram."""
        ...

    def seq_at_time(self, diagram: str, millis: int) -> int | None:
        """The latest seq logged at or before ``millis`` (ms since the epoch), or None.

        Logged times compare truncated to the millisecond, the precision
        history shows them in.
        """
        ...

    def state_at(self, diagram: str, seq: int | None = None) -> bytes | None:
        """The full state after update ``seq`` (default: the latest), or None."""
        ...

    def checkpoint(self, diagram: str) -> int | None:
        """Write the full state at the latest seq and its summary; return that seq."""
        ...

    def summaries(
        self, prefix: str, limit: int, after: tuple[float, str] | None = None
    ) -> list[DiagramSummary]:
        """Up to ``limit`` diagrams whose id starts with ``prefix``, last edited first.

        Ties in edit time go by id. ``after`` is the (updated, id) of the
        last row of the previous page: the page continues after it.
        """
        ...

    def summary(self, diagram: str) -> DiagramSummary | None:
        """One diagram's row of the list, or None."""
        ...

    def updates_before(self, diagram: str, before: int | None, limit: int) -> list[LoggedUpdate]:
        """Up to ``limit`` log entries with seq below ``before`` (default: all), newest first."""
        ...

    def updates(
        self, diagram: str, after: int = 0
    ) -> Iterator[tuple[int, float, str | None, bytes]]:
        """The logged updates after seq ``after``, oldest first: (seq, time, origin, update)."""
        ...


class StoredRelayEvent(NamedTuple):
    """An event as a relay placed it on a channel, and as clients received it."""

    channel: str
    offset: int
    epoch: str
    ts: float
    message: str  # the message's text, envelope, offset and epoch included


#: A placement to save: (channel, offset, epoch, time, event name, message text).
RelayEventRow = tuple[str, int, str, float, str, str]


class RelayEventLog(Protocol):
    """Relays' events kept across restarts, per service (several relays may share it).

    Besides the events, each service's epoch and whether its last run ended
    cleanly (everything it sent saved). Synchronous: call from a worker
    thread in async code, or before the relay takes connections.
    """

    def events(self, service: str) -> list[StoredRelayEvent]:
        """Every stored event of the service, by channel, then offset."""
        ...

    def save(
        self,
        service: str,
        events: Sequence[RelayEventRow],
        *,
        restarted: Collection[str],
        keep_after: Mapping[str, int],
        older_than: float | None,
    ) -> None:
        """Save a batch and prune, all in one transaction.

        In order: forget every stored event of the ``restarted`` channels;
        store ``events`` (one replaces a stored event at the same offset);
        forget each channel's events at offsets up to ``keep_after[channel]``;
        and, unless ``older_than`` is None, the service's events stored
        before that time.
        """
        ...

    def epoch(self, service: str) -> str | None:
        """The epoch the service last ran under, or None."""
        ...

    def set_epoch(self, service: str, epoch: str) -> None: ...

    def ended_cleanly(self, service: str) -> bool:
        """Whether the service's last run shut down with everything saved."""
        ...

    def set_ended_cleanly(self, service: str, clean: bool) -> None: ...


class Database(DiagramArchive, Protocol):
    """A database store: all four interfaces, as :func:`storage.databases.open_store` opens.

    :class:`storage.sqlite.SQLiteStore` and :class:`storage.postgres.PostgresStore`.
    """

    #: How messages name the database: a path, or a URL without its password.
    name: str

    @property
    def relay_events(self) -> RelayEventLog:
        """The relays' events, in the same database."""
        ...

    def close(self) -> None: ...

    # --- copying a whole database (inkwire db copy) ---

    def diagram_ids(self) -> list[str]:
        """Every diagram's id, sorted."""
        ...

    def dump(self, diagram: str) -> DiagramDump | None:
        """The diagram's rows as stored (one consistent read), or None."""
        ...

    def restore(self, dump: DiagramDump) -> None:
        """Make the diagram exactly ``dump``, replacing what is there, in one transaction."""
        ...

    def relay_dump(self) -> RelayDump: ...

    def relay_restore(self, dump: RelayDump) -> None:
        """Replace every relay's stored events and keys with ``dump``'s, in one transaction."""
        ...


class DiagramDump(NamedTuple):
    """A diagram exactly as a database holds it, for ``inkwire db copy`` (blobs as stored).

    ``row`` is (created, updated, last_seq, checkpoint_seq, live_elements,
    state_bytes, summary_seq); ``updates`` (seq, first_seq, ts, origin,
    blob); ``checkpoints`` (seq, ts, blob); ``files`` (file_id, mime, sha256,
    size, created, data).
    """

    id: str
    row: tuple[float, float, int, int, int | None, int | None, int | None]
    updates: list[tuple[int, int, float, str | None, bytes]]
    checkpoints: list[tuple[int, float, bytes]]
    files: list[tuple[str, str, str, int, float, bytes]]


class RelayDump(NamedTuple):
    """Every relay's stored events (service, channel, offset, epoch, ts, event, message)
    and keys (``relay_epoch:{service}``, ``relay_clean:{service}``)."""

    events: list[tuple[str, str, int, str, float, str, str]]
    meta: list[tuple[str, str]]
