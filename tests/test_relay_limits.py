"""The per-connection rate limiter: the token bucket alone, then a flood over a real socket."""

import json
import time
from contextlib import suppress

import anyio
import anyio.lowlevel
import pytest
from websockets.exceptions import ConnectionClosed

from net.limits import ALLOWED, CLOSE, DROPPED, RateLimiter
from net.tokens import OPEN
from relays.app import RelayApp
from relays.catalogs import BY_NAME
from relays.connection import RelayConnection
from tests.relayclient import TIMEOUT, Client, client, relay

dhruva = BY_NAME["dhruva"]


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


# --- over a real socket --------------------------------------------------------------


async def _flood(c: Client, message: str) -> int:
    """Send ``message`` as fast as the socket takes it until the relay closes; return the count."""
    sent = 0
    with suppress(ConnectionClosed):
        while True:
            await c.ws.send(message)
            sent += 1
            if sent % 64 == 0:
                await anyio.lowlevel.checkpoint()  # let the relay (same loop) read
    return sent


@pytest.mark.anyio
async def test_a_flood_is_refused_then_closed_with_4008_and_nobody_else_notices() -> None:
    # the client would abort a hung closing handshake itself after close_timeout:
    # set past the test's bound, so only the relay ending the connection passes
    async with (
        relay(dhruva, rate_limit=20.0, rate_burst=40) as running,
        client(running.url) as bystander,
        client(running.url, close_timeout=2 * TIMEOUT) as attacker,
    ):
        await bystander.reply(await bystander.subscribe("registry"))
        ping = json.dumps({"type": "ping", "id": "flood"})
        with anyio.fail_after(TIMEOUT):
            sent = await _flood(attacker, ping)
            await attacker.ws.wait_closed()
        assert attacker.ws.close_code == 4008
        assert attacker.ws.close_reason == "rate limit exceeded"
        refused = [m for m in attacker.replies.values() if m.get("error_code") == "RATE_LIMITED"]
        refused += [m for m in attacker.others if m.get("error_code") == "RATE_LIMITED"]
        assert sent > 40 and attacker.frames > 1  # some answered before the close
        assert "flood" in attacker.replies or refused

        await bystander.send({"type": "ping", "id": "still-there"})
        assert (await bystander.reply("still-there"))["type"] == "pong"
        await running.broadcast.registry_updated("8", {"added": ["b"]})
        [event] = await bystander.events_count(1)
        assert event["data"]["version"] == "8"
        assert bystander.ws.close_code is None
        assert len(running.app.connections) == 1  # the attacker's is gone on the server too


def test_a_refused_client_waits_until_its_next_token() -> None:
    limiter = RateLimiter(rate=10.0, burst=2)
    assert limiter.take(0.0) == ALLOWED and limiter.take(0.0) == ALLOWED
    assert limiter.take(0.0) == DROPPED
    assert limiter.due() == pytest.approx(0.1)  # one token at 10 a second
    assert limiter.take(0.1) == ALLOWED


async def burst_beside_another_task(
    seconds_per_request: float, seconds_per_receive: float = 0.0
) -> list[str]:
    """A relay reader handed 20 queued requests that each hold the loop for
    ``seconds_per_request`` (as hypercorn hands them: no suspension in between;
    handing each over holds it for ``seconds_per_receive``), beside another
    task; what ran, in order: "request" or "other"."""
    app = RelayApp(dhruva)
    handled: list[str] = []

    @app.handle("get_adapter_status")
    async def slow(params: dict[str, object]) -> dict[str, object]:
        end = time.perf_counter() + seconds_per_request  # handling that holds the loop
        while time.perf_counter() < end:
            pass
        handled.append("request")
        return {}

    burst = [
        {
            "type": "websocket.receive",
            "text": json.dumps(
                {
                    "type": "request",
                    "event": "get_adapter_status",
                    "id": i,
                    "data": {"adapter_id": "a"},
                }
            ),
        }
        for i in range(20)
    ]
    messages = iter([*burst, {"type": "websocket.disconnect", "code": 1000}])

    async def receive() -> dict[str, object]:
        end = time.perf_counter() + seconds_per_receive  # parsing a frame, in this turn
        while time.perf_counter() < end:
            pass
        return next(messages)  # all queued already: no suspension, as hypercorn's queue

    async def other_connection() -> None:
        while True:
            handled.append("other")
            await anyio.lowlevel.checkpoint()

    connection = RelayConnection(app, "peer", batch=False, grant=OPEN)
    async with anyio.create_task_group() as tg:
        tg.start_soon(other_connection)
        await anyio.lowlevel.checkpoint()  # it ran once
        await connection.read(receive)
        tg.cancel_scope.cancel()
    return handled


@pytest.mark.anyio
async def test_a_burst_of_requests_lets_others_run() -> None:
    """hypercorn hands the reader a client's queued messages without a suspension; the
    reader yields once its handling passes the time slice, so a burst of slow requests
    (a flooder back with a full bucket) does not hold everyone else until it is done."""
    handled = await burst_beside_another_task(0.002)
    requests = [i for i, what in enumerate(handled) if what == "request"]
    assert len(requests) == 20
    # the other task ran between the burst's first and last request, more than once
    between = handled[requests[0] : requests[-1]].count("other")
    assert between >= 3, handled


@pytest.mark.anyio
async def test_the_time_slice_counts_what_hypercorn_does_in_the_readers_turn() -> None:
    """hypercorn parses the frames it hands over in the reader's turn when the app queue
    has room (``receive()`` returns without a suspension): that time holds the loop too,
    so the slice counts it, not only the handling. Here handing over each message holds
    the loop (a busy wait) while handling it is cheap: the reader still lets others run
    during the burst (a slice that counted handling alone never yielded)."""
    handled = await burst_beside_another_task(0.0, seconds_per_receive=0.0015)
    requests = [i for i, what in enumerate(handled) if what == "request"]
    between = handled[requests[0] : requests[-1]].count("other")
    assert between >= 3, handled


@pytest.mark.anyio
async def test_a_relay_reader_yields_after_a_fraction_of_a_millisecond() -> None:
    """A quiet channel's event passes several loop turns on its way in, and a flooder
    spending its burst takes a slice of each: the relay's slice is 0.2 ms (the /yjs
    reader's 1 ms made each turn ~2 ms and the quiet p99 5-15 ms, docs/capacity.md).
    Requests that take 0.12 ms each: the reader yields after every second one (more
    often if the machine is slow, never less)."""
    handled = await burst_beside_another_task(0.00012)
    assert handled.count("request") == 20
    runs = "".join("r" if what == "request" else "o" for what in handled).split("o")
    assert max(len(run) for run in runs) <= 2, handled
