"""Fan-out: one shared log, one cursor and one writer per subscriber.

Both the Yjs rooms and the JSON relays deliver through this module. A
publisher appends an entry once; every subscriber's writer reads the
entries past its own cursor and turns them into frames (coalescing them as it
likes), so nothing is copied or spawned per recipient. Entries appended but
not yet *published* (e.g. awaiting a durable commit) are invisible to writers.

A subscriber that falls more than ``max_lag`` entries or ``max_lag_bytes``
bytes behind would pin the log in memory; it is cut off instead (its
``on_overflow`` callback closes the connection), so memory stays bounded and
nobody else waits for it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

from net.wire import Frame

T = TypeVar("T")

TRIM_EVERY = 256  # entries appended between lag checks and log trims


class DirectWriter(Protocol):
    """Writes for one subscriber now, if its socket has room; False: it could not."""

    def deliver_now(self, start: int, entries: Sequence[Any], /) -> bool:
        """The run of log entries from position ``start``."""

    def write_now(self, frame: Frame, /) -> bool:
        """One direct frame."""


@dataclass(slots=True, eq=False)
class Subscriber:
    """One reader of a :class:`FanoutLog`: a cursor plus a private outbox.

    ``cursor`` is ``None`` until the subscriber is attached at a position;
    until then the writer only sends outbox frames. Outbox frames carry the
    log position they must not overtake: they are sent once every entry
    before that position is published.

    ``direct``, if set, writes to the subscriber's socket synchronously when
    that cannot block (see :class:`DirectWriter`): the publisher hands an
    idle subscriber its entries through it, and :meth:`FanoutLog.send_direct`
    a direct frame (a reply, say) whose turn has come while the subscriber
    waits, sparing the writer task either would start. When it cannot, the
    subscriber is woken as usual. One reference, no callable per connection.

    ``on_wake`` starts the subscriber's writer: a writer exists only while
    there is something to send. It drains with :meth:`FanoutLog.take` until
    that returns None (the subscriber is then *waiting*), and ends; the next
    entry published or frame queued for it calls ``on_wake`` again, once.
    """

    on_overflow: Callable[[], None]
    direct: DirectWriter | None = None
    on_wake: Callable[[], None] | None = None
    cursor: int | None = None
    # a deque only while it holds frames: an empty one is ~750 bytes, as much as a
    # tenth of an idle connection's own share (docs/capacity.md)
    outbox: deque[tuple[int, Frame]] | tuple[()] = ()
    waiting: bool = False
    overflowed: bool = False

    def wake(self) -> None:
        if self.waiting:
            self.waiting = False
            self.start_writer()

    def start_writer(self) -> None:
        """Start the writer (``on_wake``); a subclass may do it without a callable."""
        if self.on_wake is not None:
            self.on_wake()

    def overflow(self) -> None:
        """The log cut this subscriber off (``on_overflow``); a subclass may override it."""
        self.on_overflow()


class FanoutLog(Generic[T]):
    """An append-only, trimmed log of entries shared by all subscribers."""

    def __init__(self, *, max_lag: int = 10_000, max_lag_bytes: int = 64 << 20) -> None:
        self.max_lag = max_lag
        self.max_lag_bytes = max_lag_bytes
        self._entries: list[T] = []
        self._sizes: list[int] = []  # cumulative byte size, parallel to _entries
        self._base = 0  # log position of _entries[0]
        self._bytes_base = 0
        self.head = 0  # position after the last appended entry
        self.published = 0  # position after the last entry writers may see
        self._since_trim = 0
        self.subscribers: set[Subscriber] = set()
        self._idle: set[Subscriber] = set()

    # --- publishing -------------------------------------------------------

    def append(self, entry: T, size: int) -> int:
        """Add an entry (not yet visible to writers); return its position."""
        position = self.head
        total = self._sizes[-1] if self._sizes else self._bytes_base
        self._entries.append(entry)
        self._sizes.append(total + size)
        self.head += 1
        self._since_trim += 1
        return position

    def publish(self, upto: int | None = None) -> None:
        """Make entries before ``upto`` (default: all) visible and wake writers."""
        upto = self.head if upto is None else min(upto, self.head)
        if upto <= self.published:
            return
        if self._since_trim >= TRIM_EVERY:
            self._trim()  # before: lag counts only what subscribers could already send
        self.published = upto
        idle = self._idle
        runs: dict[int, Sequence[T]] = {}
        # the steady-rate hot path: one pass, no allocation per subscriber; a
        # subscriber written to stays idle (its writer goes on waiting)
        for subscriber in list(idle):
            cursor = subscriber.cursor
            direct = subscriber.direct
            if direct is not None and cursor is not None and not subscriber.outbox:
                run = runs.get(cursor)
                if run is None:
                    run = runs[cursor] = self._entries[cursor - self._base : upto - self._base]
                if direct.deliver_now(cursor, run):
                    subscriber.cursor = upto
                    continue
            idle.discard(subscriber)
            subscriber.wake()

    def send_direct(self, subscriber: Subscriber, frame: Frame, *, after: int = 0) -> None:
        """Send a frame to one subscriber, ordered after log position ``after``.

        A waiting subscriber with an empty outbox has sent everything up to
        :attr:`published`, so a frame due by then is written at once when its
        ``direct`` writer can; otherwise it is queued for the subscriber's writer.
        """
        direct = subscriber.direct
        if (
            direct is not None
            and subscriber.waiting
            and not subscriber.outbox  # (one may wait there for a later log position)
            and after <= self.published
            and direct.write_now(frame)
        ):
            return
        outbox = subscriber.outbox
        if isinstance(outbox, tuple):
            outbox = subscriber.outbox = deque()
        outbox.append((after, frame))
        self._idle.discard(subscriber)
        subscriber.wake()

    # --- subscribing ------------------------------------------------------

    def add(self, subscriber: Subscriber) -> None:
        self.subscribers.add(subscriber)

    def remove(self, subscriber: Subscriber) -> None:
        self.subscribers.discard(subscriber)
        self._idle.discard(subscriber)

    def attach(self, subscriber: Subscriber, position: int) -> None:
        """Start (or restart) delivering log entries from ``position`` on.

        A waiting subscriber with nothing to send from there (a client joining
        at the head, the usual case) stays waiting, as a writer woken for it
        would leave it: starting one only to find nothing cost a task per join.
        """
        cursor = subscriber.cursor = max(position, self._base)
        if subscriber.waiting and not subscriber.outbox and cursor >= self.published:
            self._idle.add(subscriber)
            return
        self._idle.discard(subscriber)
        subscriber.wake()

    def take(self, subscriber: Subscriber) -> tuple[int, Sequence[T]] | Frame | None:
        """The subscriber's next outbox frame or run of entries; None: nothing to send now.

        Returns either one direct frame, or ``(start, entries)``: the
        published entries from the subscriber's cursor on, after which its
        cursor has moved past them. None marks the subscriber waiting: its
        writer ends, and :meth:`Subscriber.wake` starts one when there is more.
        """
        outbox = subscriber.outbox
        cursor = subscriber.cursor
        published = self.published
        if outbox:
            after = outbox[0][0]
            limit = min(after, published)
            if cursor is not None and cursor < limit:
                return self._take(subscriber, cursor, limit)
            if after <= published:
                frame = outbox.popleft()[1]
                if not outbox:
                    subscriber.outbox = ()
                return frame
        elif cursor is not None and cursor < published:
            return self._take(subscriber, cursor, published)
        subscriber.waiting = True
        self._idle.add(subscriber)
        return None

    def _take(self, subscriber: Subscriber, cursor: int, end: int) -> tuple[int, Sequence[T]]:
        subscriber.cursor = end
        return cursor, self._entries[cursor - self._base : end - self._base]

    # --- memory bound -----------------------------------------------------

    def _trim(self) -> None:
        """Cut off subscribers that lag too far, then drop entries all have read.

        Lag counts published entries only: what a subscriber could have sent.
        """
        self._since_trim = 0
        published = self.published
        published_bytes = self._bytes_at(published)
        low = published
        for subscriber in list(self.subscribers):
            cursor = subscriber.cursor
            if cursor is None:
                continue
            lag_bytes = published_bytes - self._bytes_at(cursor)
            if published - cursor > self.max_lag or lag_bytes > self.max_lag_bytes:
                subscriber.overflowed = True
                self.remove(subscriber)
                subscriber.overflow()
                continue
            low = min(low, cursor)
        drop = low - self._base
        if drop > 0:
            self._bytes_base = self._sizes[drop - 1]
            del self._entries[:drop]
            del self._sizes[:drop]
            self._base = low

    def _bytes_at(self, position: int) -> int:
        index = position - self._base
        return self._sizes[index - 1] if index > 0 else self._bytes_base
