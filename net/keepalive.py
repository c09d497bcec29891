"""One keepalive timer for all of a server's connections, instead of a sleeping task each.

A quiet line gets a message the client ignores (see :func:`net.wire.keep_alive`
for why); a busy one gets none. Checking every connection's last write a few
times per interval costs a fraction of a microsecond each, where a task per
connection cost ~2 KiB and a timer handle each, for a line that is quiet most
of its life.

The timer's task needs an owner that lives as long as the connections it
serves, and an app may be mounted where nobody runs its lifespan. So the task
runs in the task group that runs one of its connections' tasks (the oldest's:
its room's, its relay app's lifespan's, or its own, see
:meth:`net.connection.FanoutConnection.run`) and moves to the next when that
one ends; it stops with the last. Every task has an owner and a stop, and a
server with no connection runs no timer.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import anyio
from anyio.abc import TaskGroup

CHECKS_PER_INTERVAL = 5  # a line is never quiet for much more than 1.2 intervals


class Quiet(Protocol):
    """A connection the timer watches."""

    @property
    def last_sent(self) -> float:
        """``time.monotonic()`` of its last write."""
        ...

    def send_keepalive(self) -> None:
        """Queue a message the client ignores (its writer sends it)."""
        ...


class Keepalives:
    """The connections of one server that want a keepalive after ``interval`` quiet seconds."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        if interval <= 0:
            raise ValueError("a keepalive interval must be positive")
        self.interval = interval
        self._clock = clock
        self._members: dict[Quiet, TaskGroup] = {}  # in the order they came
        self._queued: dict[Quiet, float] = {}  # when a keepalive was last queued for it
        self._host: Quiet | None = None  # whose task group runs the timer
        self._scope: anyio.CancelScope | None = None

    def __len__(self) -> int:
        return len(self._members)

    def add(self, member: Quiet, task_group: TaskGroup) -> None:
        """Watch ``member``; ``task_group`` (its own) may host the timer until it ends."""
        self._members[member] = task_group
        if self._host is None:
            self._move_to(member)

    def remove(self, member: Quiet) -> None:
        """Stop watching ``member`` (call it once its task group has ended)."""
        self._members.pop(member, None)
        self._queued.pop(member, None)
        if member is self._host:
            if self._scope is not None:
                self._scope.cancel()
            self._host = self._scope = None
            if self._members:
                self._move_to(next(iter(self._members)))

    def _move_to(self, member: Quiet) -> None:
        self._host = member
        self._scope = anyio.CancelScope()
        try:
            self._members[member].start_soon(self._run, self._scope)
        except RuntimeError:
            # its task group has ended: a server's, shared by its connections (see
            # net.connection), stopping with connections it gave up on still open
            self._host = self._scope = None

    async def _run(self, scope: anyio.CancelScope) -> None:
        with scope:
            while True:
                await anyio.sleep(self.interval / CHECKS_PER_INTERVAL)
                self.check()

    def check(self) -> int:
        """Queue a keepalive on every line quiet for ``interval``; how many were queued.

        A line whose last keepalive is still unsent (a stalled writer) gets no
        second one within the interval, so a stuck client's outbox does not grow.
        """
        now = self._clock()
        quiet_since = now - self.interval
        queued = self._queued
        sent = 0
        for member in list(self._members):
            if member.last_sent <= quiet_since and queued.get(member, -math.inf) <= quiet_since:
                queued[member] = now
                member.send_keepalive()
                sent += 1
        return sent
