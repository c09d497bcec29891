"""A WebSocket fed by a fan-out log: the connection skeleton both servers share.

A connection's tasks share one task group: the writer, which drains the
shared log from the connection's cursor (and its outbox) and exists only
while there is something to send, the server's own
tasks (say, closing it when its token expires), and the reader, which the
server writes. Any of them, the log (a slow consumer) or the server
(shutdown) may end the connection with
:meth:`FanoutConnection.fail`, which records the close code and cancels the
group; whoever serves the connection then closes the socket with
:func:`net.hosting.close_websocket`, unless the client closed it first
(:attr:`FanoutConnection.peer_closed`). A quiet line's keepalive comes from
one timer for all of a server's connections (:mod:`net.keepalive`), not from
a task of each.

The writer is the fan-out's hot path: per frame it does one ``send`` and
nothing else, and a run of log entries becomes frames through one call of
the server's :meth:`FanoutConnection._frames`. Where the socket is a raw
transport (see :mod:`net.wire`) the publisher may even write a run for an
idle connection itself (:attr:`~net.fanout.Subscriber.direct`), sparing
the writer's wake-up.
"""

from __future__ import annotations

import logging
import sys
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from types import TracebackType
from typing import Any, Generic, Protocol, TypeVar

import anyio
from anyio.abc import TaskGroup

from net.asgi import Message, Receive, Send
from net.fanout import FanoutLog, Subscriber
from net.keepalive import Keepalives
from net.wire import Frame, Sender, SendStats

E = TypeVar("E")  # the log's entries

log = logging.getLogger("inkwire.connection")

SLOW_CONSUMER = 4009  # the close code of a client the log left behind


class ConnectionStats(SendStats, Protocol):
    """What a connection counts besides what it sends (both servers' stats have it)."""

    slow_consumer_closes: int


def _overridden() -> None:
    """(A :class:`ConnectionSubscriber`'s ``on_overflow``: its ``overflow`` is called instead.)"""


class ConnectionSubscriber(Subscriber):
    """A subscriber that calls its connection back directly.

    The same as ``Subscriber(on_overflow=conn._overflow)`` with ``on_wake``
    set to ``conn._start_writer`` while it runs, without the two bound-method
    objects (~64 bytes each) an idle connection would hold (docs/capacity.md).
    """

    __slots__ = ("connection",)

    def __init__(self, connection: FanoutConnection[Any]) -> None:
        super().__init__(on_overflow=_overridden)
        self.connection = connection

    def start_writer(self) -> None:
        self.connection._start_writer()  # (it starts none unless the connection runs)

    def overflow(self) -> None:
        self.connection._overflow()


class FanoutConnection(ABC, Generic[E]):
    """A reader the server writes, a writer draining ``subscriber``'s place in :attr:`log`.

    ``big_frame``: frames with a payload this large or larger are sent
    holding :attr:`big_sends`, which bounds how many such copies are in flight
    at once; by default there is no such frame.
    """

    big_frame: int = sys.maxsize

    def __init__(self, stats: ConnectionStats, subscriber: Subscriber) -> None:
        self.stats = stats
        self.subscriber = subscriber
        self.close_code = 1000
        self.close_reason = ""
        self.peer_closed = False
        self.raw_path = False  # frames written straight to the socket (see net.wire)
        self._scope: anyio.CancelScope | None = None
        self._sender: Sender | None = None
        self._tasks: TaskGroup | None = None  # where its tasks run, while it runs
        self._task_scopes: set[anyio.CancelScope] | None = None  # of its running tasks
        self._tasks_ended: anyio.Event | None = None  # set when they have, once it ended

    _own_group: TaskGroup | None = None  # a task group of its own, if the server had none

    # --- what each server provides ------------------------------------------

    @property
    @abstractmethod
    def log(self) -> FanoutLog[E]:
        """The log this connection's subscriber reads."""

    @property
    @abstractmethod
    def keepalives(self) -> Keepalives | None:
        """The server's keepalive timer (it calls :meth:`send_keepalive`); None: none."""

    @abstractmethod
    def send_keepalive(self) -> None:
        """Queue a message the client ignores (see :mod:`net.keepalive`)."""

    @abstractmethod
    async def read(self, receive: Receive) -> None:
        """Handle client messages until the client leaves (see :meth:`_closed_by_peer`).

        A handler awaits it inside :meth:`serving` (or :meth:`run` does).
        """

    @abstractmethod
    def _frames(self, start: int, entries: Sequence[E]) -> Sequence[Frame]:
        """What this client is sent for the run of log entries from position ``start``."""

    def _start_tasks(self) -> None:
        """Start the server's own tasks for this connection (with :meth:`_spawn`), if any."""

    @property
    def big_sends(self) -> anyio.Semaphore:
        """Held while a frame of ``big_frame`` bytes or more is sent."""
        raise NotImplementedError("a connection with a big_frame must say what bounds them")

    # --- the skeleton -----------------------------------------------------------

    def fail(self, code: int, reason: str) -> bool:
        """End this connection with a close code; nobody else is touched.

        The first call wins: it returns True, any later one False.
        """
        scope = self._scope
        if scope is None or scope.cancel_called:
            return False
        self.close_code, self.close_reason = code, reason
        scope.cancel()
        return True

    def _overflow(self) -> None:
        """The log cut this client off: it fell too far behind (see :mod:`net.fanout`)."""
        self.stats.slow_consumer_closes += 1
        self.fail(SLOW_CONSUMER, "slow consumer")

    @property
    def last_sent(self) -> float:
        """When the client was last written to (for :mod:`net.keepalive`)."""
        return self._sender.last_sent if self._sender is not None else 0.0

    def _closed_by_peer(self, message: Message) -> None:
        """Note a ``websocket.disconnect``: the client closed, so no close frame is due."""
        self.peer_closed = True
        self.close_code = message.get("code", 1005)
        self.close_reason = "client closed"

    async def run(self, receive: Receive, send: Send, owner: TaskGroup | None = None) -> None:
        """Serve the connection until the client leaves or :meth:`fail` ends it.

        The same as ``async with conn.serving(send, owner): await conn.read(receive)``,
        which a handler writes out itself to spare the idle connection this
        coroutine's frame (docs/capacity.md).
        """
        async with self.serving(send, owner):
            await self.read(receive)

    def serving(self, send: Send, owner: TaskGroup | None = None) -> FanoutConnection[E]:
        """The connection, as the async context manager a handler reads it in.

        ``owner``: a task group of the server's that outlives the connection
        (a room's, a relay app's) to run the connection's own tasks in (its
        writer, a token's expiry), each under a cancel scope of its own that
        the connection's end cancels, waiting for them as a task group's end
        would. An anyio task group per connection costs ~0.5 KiB more than the
        one cancel scope that :meth:`fail` needs (docs/capacity.md). None: the
        connection makes a task group of its own to be that owner (an app
        nobody runs the lifespan of).

        A class's ``__aenter__`` and ``__aexit__`` rather than a coroutine
        around the reader: while the client is idle nothing of them stays
        suspended, and the handler's frame awaits the reader directly, one
        coroutine frame (~0.33 KiB) fewer per connection (docs/capacity.md).
        """
        self._sender = Sender(send, self.stats)
        self._tasks = owner  # (nothing spawns before __aenter__ sets on_wake)
        return self

    async def __aenter__(self) -> FanoutConnection[E]:
        sender = self._sender
        assert sender is not None, "serving() first"
        owner = self._tasks
        if owner is None:
            owner = self._tasks = self._own_group = anyio.create_task_group()
            await owner.__aenter__()
        scope = self._scope = anyio.CancelScope()
        scope.__enter__()
        try:
            subscriber = self.subscriber
            self.raw_path = sender.raw
            if sender.raw:
                subscriber.direct = self  # deliver_now and write_now below
            if not isinstance(subscriber, ConnectionSubscriber):  # (which calls it itself)
                subscriber.on_wake = self._start_writer
            # what was queued before (a welcome, sync step 1): written at once where it can
            left = self._write_queued(sender) if sender.raw else ()
            if left is not None:
                self._spawn(self._write, sender, left)
            self._start_tasks()
            keepalives = self.keepalives
            if keepalives is not None:
                keepalives.add(self, owner)
        except BaseException as exc:
            if not await self.__aexit__(type(exc), exc, exc.__traceback__):
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        scope = self._scope
        assert scope is not None
        try:
            swallowed = bool(scope.__exit__(exc_type, exc, tb))  # the cancel fail() made
        finally:
            self._tasks = None
            subscriber = self.subscriber
            subscriber.on_wake = None
            subscriber.direct = None
            keepalives = self.keepalives
            if keepalives is not None:
                keepalives.remove(self)
            scopes = self._task_scopes
            if scopes:  # its tasks end before the connection does, as in a task group
                for task_scope in scopes:
                    task_scope.cancel()
                ended = self._tasks_ended = anyio.Event()
                with anyio.CancelScope(shield=True):
                    await ended.wait()  # (each ends at its next checkpoint)
        own_group = self._own_group
        if own_group is not None:
            self._own_group = None
            if swallowed:
                exc_type = exc = tb = None
            swallowed = bool(await own_group.__aexit__(exc_type, exc, tb)) or swallowed
        return swallowed

    def _spawn(self, func: Callable[..., Awaitable[object]], *args: object) -> bool:
        """Start one of the connection's own tasks; False: it ended, so none was started."""
        tasks = self._tasks
        if tasks is None:
            return False
        scope = anyio.CancelScope()
        scopes = self._task_scopes
        if scopes is None:
            scopes = self._task_scopes = set()
        scopes.add(scope)
        try:
            tasks.start_soon(self._own_task, scope, func, args)
        except RuntimeError:  # the owner's group ended (its server stops): so does this
            scopes.discard(scope)
            self.fail(1011, "server stopping")
            return False
        return True

    async def _own_task(
        self,
        scope: anyio.CancelScope,
        func: Callable[..., Awaitable[object]],
        args: tuple[object, ...],
    ) -> None:
        """A task of this connection's in the server's task group: stopped with it, and
        never taking that group down (an error ends this connection alone, with 1011)."""
        try:
            with scope:
                if not scope.cancel_called:  # (the connection ended before it began)
                    await func(*args)
        except Exception:
            log.exception("connection task %s failed", getattr(func, "__name__", func))
            self.fail(1011, "internal error")
        finally:
            scopes = self._task_scopes
            if scopes is not None:
                scopes.discard(scope)
                if not scopes:
                    self._task_scopes = None
                    if self._tasks_ended is not None:
                        self._tasks_ended.set()

    def _start_writer(self) -> None:
        if self._sender is not None:
            self._spawn(self._write, self._sender)

    def _write_queued(self, sender: Sender) -> Sequence[Frame] | None:
        """Write what was queued before the connection ran, now, on a raw socket with
        room; None once all is written (the subscriber then waits, as after a writer),
        else the frames taken but not written, which a writer must send first.

        A connection's first frames (the relays' welcome, sync step 1 of a room)
        are nearly always written so, sparing each accepted connection a writer
        task that would send them and end (docs/capacity.md).
        """
        log = self.log
        subscriber = self.subscriber
        big_frame = self.big_frame
        while (batch := log.take(subscriber)) is not None:
            frames = [batch] if isinstance(batch, Frame) else self._frames(*batch)
            if any(len(frame.payload) >= big_frame for frame in frames):
                return frames  # a big frame waits its turn at big_sends, in the writer
            if not sender.try_write(frames):
                return frames
        return None

    async def _write(self, sender: Sender, first: Sequence[Frame] = ()) -> None:
        """The one writer: ``first``, then outbox frames and log entries, in order, until
        nothing is left.

        It exists only while there is something to send (see
        :class:`~net.fanout.Subscriber`): an idle connection holds no task
        for it, and a run the publisher wrote itself never starts one.
        """
        log = self.log
        subscriber = self.subscriber
        big_frame = self.big_frame
        frames = first
        while True:
            for frame in frames:
                try:
                    if len(frame.payload) < big_frame:
                        await sender.send(frame)
                    else:
                        async with self.big_sends:
                            await sender.send(frame)
                except (ConnectionError, OSError):
                    return  # the peer is gone; the reader sees the disconnect
            batch = log.take(subscriber)
            if batch is None:
                return
            frames = [batch] if isinstance(batch, Frame) else self._frames(*batch)

    def deliver_now(self, start: int, entries: Sequence[E]) -> bool:
        """Called by the publisher: write this run straight out if the socket has room.

        The connection is its subscriber's :attr:`~net.fanout.Subscriber.direct`
        writer only while a raw sender serves it (see :meth:`run`).
        """
        sender = self._sender
        return sender is not None and sender.try_write(self._frames(start, entries))

    def write_now(self, frame: Frame) -> bool:
        """Called for a direct frame (a reply) while the writer waits: write it at once
        if the socket has room, saving a writer task. A big frame always goes through
        the writer, which bounds how many are in flight (:attr:`big_sends`)."""
        sender = self._sender
        return (
            sender is not None
            and len(frame.payload) < self.big_frame
            and sender.try_write_one(frame)
        )
