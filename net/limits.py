"""Per-connection rate limiting: a token bucket, sans I/O.

A client over its rate is told so (RATE_LIMITED, the message dropped) rather
than cut off at once, since bursts happen; one that keeps sending through a
whole burst's worth of refusals is closed with 4008.
"""

from __future__ import annotations

from typing import Final

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
