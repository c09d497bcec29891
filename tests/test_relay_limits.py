"""The per-connection rate limiter, without sockets."""

from relays.limits import ALLOWED, CLOSE, DROPPED, RateLimiter


def test_burst_then_refusals_then_close() -> None:
    limiter = RateLimiter(rate=10.0, burst=5)
    verdicts = [limiter.take(0.0) for _ in range(12)]
    assert verdicts == [ALLOWED] * 5 + [DROPPED] * 5 + [CLOSE] * 2


def test_refill_and_forgiveness() -> None:
    limiter = RateLimiter(rate=10.0, burst=4)
    assert [limiter.take(0.0) for _ in range(6)] == [ALLOWED] * 4 + [DROPPED] * 2
    assert limiter.take(0.1) == ALLOWED  # one token back after 0.1 s
    assert limiter.take(1.0) == ALLOWED  # full again: refusals forgiven
    assert [limiter.take(1.0) for _ in range(3)] == [ALLOWED] * 3
    assert [limiter.take(1.0) for _ in range(5)] == [DROPPED] * 4 + [CLOSE]


def test_a_steady_flood_is_closed_even_as_tokens_trickle_back() -> None:
    limiter = RateLimiter(rate=50.0, burst=20)
    now, verdicts = 0.0, []
    for _ in range(500):
        now += 0.001  # 1000 messages/s against 50/s
        verdicts.append(limiter.take(now))
    assert CLOSE in verdicts
