"""Per-connection rate limiting: a token bucket, sans I/O.

A client over its rate is told so (RATE_LIMITED, the message dropped) rather
than cut off at once, since bursts happen, and its reading paused until its
next token is due (:meth:`RateLimiter.due`), so a flood costs the server at
most ``rate`` refusals a second; one that keeps sending through a whole
burst's worth of refusals is closed with 4008. :class:`Pacer` is the /yjs
variant: no refusals (a Yjs client has no way to hear them), only the pause.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final

ALLOWED: Final = "allowed"
DROPPED: Final = "dropped"  # answer RATE_LIMITED, keep the connection
CLOSE: Final = "close"  # close with 4008


class RateLimiter:
    __slots__ = ("_last", "_refused", "_tokens", "burst", "rate")

    def __init__(self, rate: float, burst: int) -> None:
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last: float | None = None
        self._refused = 0

    def take(self, now: float) -> str:
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        if self._tokens >= 1:
            self._tokens -= 1
            if self._tokens >= self.burst / 2:
                self._refused = 0  # it calmed down: past refusals are forgiven
            return ALLOWED
        self._refused += 1
        return CLOSE if self._refused > self.burst else DROPPED

    def due(self) -> float:
        """Seconds until the next token (0.0: one is there): how long a refused client waits."""
        return max(0.0, (1 - self._tokens) / self.rate)


class Pacer:
    """A token bucket that slows a reader down instead of refusing its messages.

    :meth:`take` says how long to wait before handling a message: nothing
    while the client stays within ``burst`` messages at once and ``rate`` per
    second sustained; past that, until its next token is due, so a reader
    that waits before each message is held to ``rate`` (its unread messages
    wait in TCP, which slows the client itself). A client that keeps the
    bucket empty for ``patience`` messages in a row, without ever letting it
    refill to half, is flooding on purpose: :meth:`take` then returns None
    (close it). Nothing here ever touches a client under the rate.
    """

    __slots__ = ("_last", "_tokens", "_waited", "burst", "patience", "rate")

    def __init__(self, rate: float, burst: int, patience: int | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a rate limit needs a positive rate and a burst of at least 1")
        self.rate = rate
        self.burst = burst
        self.patience = burst if patience is None else patience
        self._tokens = float(burst)
        self._last: float | None = None
        self._waited = 0  # messages in a row that had to wait

    def take(self, now: float) -> float | None:
        """Seconds to wait before handling this message (0.0: at once); None: close."""
        if self._last is not None:
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
        self._last = now
        self._tokens -= 1
        if self._tokens >= 0:
            if self._tokens >= self.burst / 2:
                self._waited = 0  # it calmed down: past waits are forgiven
            return 0.0
        self._waited += 1
        if self._waited > self.patience:
            return None
        return -self._tokens / self.rate


BUDGET: Final = 0.001  # seconds a reader may hold the loop (see docs/capacity.md)


class TimeSlice:
    """How long a reader may handle messages back to back before it lets others run.

    A client's queued messages are handed to its reader without a suspension
    in between (hypercorn's queue has them ready), so a burst of them would
    hold the event loop for as long as they take: a flooder's burst of
    hundreds of updates stalled every other diagram for tens of
    milliseconds. The reader adds up the time each message takes, from before
    its ``receive()`` (hypercorn parses the frame in the reader's turn when its
    queue has room) to the end of its handling, and yields to the loop (one
    checkpoint) whenever it passes ``budget``, which bounds the stall without
    yielding per message, so a burst still coalesces. A ``receive()`` that
    waited began a turn of its own: the reader starts a new slice from its
    return then (see :func:`message_queue`; an idle reader holds no slice),
    else every message after a quiet spell, a joining client's first ones
    included, would pay for a needless turn.
    1 ms: at 5 ms, counting handling only, a flooder's turns took 5-10 ms and
    the quiet diagram beside it waited for them (docs/capacity.md).
    """

    __slots__ = ("_used", "budget")

    def __init__(self, budget: float = BUDGET) -> None:
        self.budget = budget
        self._used = 0.0

    def spent(self, seconds: float) -> bool:
        """Count ``seconds`` of reading and handling; True: yield to the loop now."""
        self._used += seconds
        if self._used < self.budget:
            return False
        self._used = 0.0
        return True


def message_queue(receive: Any) -> asyncio.Queue[Any] | None:
    """The queue an ASGI ``receive`` takes its messages from, where there is one: hypercorn's
    asyncio worker hands a connection its messages from a queue, whose ``get`` it is;
    its ``qsize()`` says how many are ready.

    None elsewhere (the trio worker, another server): a reader then counts every
    ``receive()`` into its :class:`TimeSlice`, waits included. The queue, not its
    bound ``qsize``: an idle reader's frame would hold that method object (~64
    bytes) for the connection's life (docs/capacity.md).
    """
    queue = getattr(receive, "__self__", None)
    return queue if isinstance(queue, asyncio.Queue) else None
