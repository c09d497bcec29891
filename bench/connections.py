"""Idle connections and fairness: what holding many clients costs each server, and whether
one flooding client slows everybody else.

What it measures
----------------
One run, one server after another (each a subprocess pinned to core 0 by
bench/common.py, this load generator on core 1):

* inkwire      `inkwire serve --db :memory:`, clients on `/yjs/c<k>`, 20 per diagram,
               each joined (sync step 1 and 2 of an empty diagram)
* relay        `inkwire relay dhruva`, each client subscribed to `registry`
* node         the Node @y/websocket-server (bench/node_modules), 20 per room, joined
* websockets   the `websockets` broadcast relay (bench/baseline_broadcast.py), welcomed
* hypercorn    a bare ASGI app on hypercorn (bench/baseline_asgi_relay.py: accepts, welcomes,
               holds), with the inkwire relay's hypercorn settings: hypercorn's own floor,
               which inkwire's two servers sit on
* hypercorn-yjs, hypercorn-relay   the same bare app doing the exchange inkwire's join does
               (`--servers` only): an empty diagram's sync steps 1 and 2 both ways, on
               `/yjs/c<k>`; a welcome, a `subscribe` and its response, on `/relay`; every
               message a constant of inkwire's size, with inkwire's garbage collector
               setting (net.hosting.tune_gc). What inkwire costs above these is its own.

For each N (default 1 000 and 10 000, plus 15 000 when the open-file limit allows; this
process raises its soft limit to the hard one, and the servers inherit it), on a fresh
server process: the server's
RSS growth per connection once all are open and it settled, connections opened per
second (100 handshakes in flight), and server CPU per connection over the opening.
The clients are raw asyncio protocols offering no compression (see docs/capacity.md:
a client offering permessage-deflate cost inkwire 10 KiB more before it declined it).

Fairness (inkwire, node and relay, `--fairness`, on by default): a quiet diagram (one
writer, 10 receivers) gets 150 updates at 50/s; its p50/p99 from the writer's send to each
receiver, alone and while a client in another diagram floods updates as fast as its
socket takes them (reconnecting when closed, as a determined flooder would). inkwire runs
with its /yjs rate limit as shipped here (the fan-out benchmarks turn it off). The relay's
quiet channel gets 150 events at 50/s from a client sending `publish` requests, to 10
subscribers, alone and while another client floods `get_adapter_status` requests.

    PYTHONPATH=$PWD .venv/bin/python bench/connections.py [--n 1000,10000,15000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import resource
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    HOST,
    PhaseStats,
    ServerProcess,
    ServerSpec,
    free_port,
    pin_self,
    say,
    started,
    table,
)
from relay_fanout import JsonClient, WsPublisher, event_item, publish_request
from relay_fanout import connect as relay_connect
from relay_fanout import server_spec as relay_spec
from yjs_fanout import (
    YClient,
    client_frame,
    close_all,
    join,
    run_phase,
    server_specs,
    small_updates,
)

SERVERS = ("inkwire", "relay", "node", "websockets", "hypercorn")
FULL_GC_EVERY = 100  # net.hosting's, for the bare hypercorn-yjs and hypercorn-relay apps
PER_ROOM = 20
IN_FLIGHT = 100
FLOOD_BATCH = 64  # update frames written per turn of the flooder's loop


def raise_file_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def spec(name: str, port: int, *, fairness: bool = False) -> ServerSpec:
    limits = "20000"  # let the servers take 15 000 (their default stops at 10 000)
    if name == "inkwire":
        s = server_specs(port)["inkwire"]
        s.env["INKWIRE_COLLAB_MAX_CONNECTIONS"] = limits
        if fairness:  # as shipped: the fan-out benchmarks' options turn the rate limit off
            s.argv = shipped_rate_limit(s.argv)
        return s
    if name == "node":
        return server_specs(port)["node"]
    if name in ("hypercorn-yjs", "hypercorn-relay"):
        s = relay_spec("hypercorn", port)
        s.name, s.label = name, f"bare hypercorn ASGI app, {name[10:]} exchange"
        s.env["BASELINE_FULL_GC_EVERY"] = str(FULL_GC_EVERY)
        return s
    s = relay_spec({"relay": "inkwire"}.get(name, name), port)
    if name == "relay":
        s.env["INKWIRE_RELAYS_DHRUVA_MAX_CONNECTIONS"] = limits
    return s


def shipped_rate_limit(argv: list[str]) -> list[str]:
    """``argv`` without the ``--set collab.yjs_message_rate_limit=...`` pair."""
    out: list[str] = []
    for arg in argv:
        if arg.startswith("collab.yjs_message_rate_limit=") and out and out[-1] == "--set":
            out.pop()
            continue
        out.append(arg)
    return out


async def open_one(name: str, port: int, i: int) -> YClient:
    loop = asyncio.get_running_loop()
    if name in ("relay", "websockets", "hypercorn", "hypercorn-relay"):
        inkwire = name in ("relay", "hypercorn-relay")
        route = "/relay" if name == "hypercorn-relay" else "/"
        _, client = await loop.create_connection(
            lambda: JsonClient(port, route, inkwire), HOST, port
        )
    else:
        path = f"/yjs/c{i // PER_ROOM}"
        _, client = await loop.create_connection(lambda: YClient(port, path), HOST, port)
    await client.joined
    return client


@dataclass
class IdleResult:
    n: int
    opened: int = 0
    seconds: float = 0.0
    rss_per_conn: float = 0.0  # bytes
    cpu_per_conn: float = 0.0  # seconds
    error: str | None = None


async def run_idle(name: str, server: ServerProcess, n: int) -> IdleResult:
    result = IdleResult(n)
    clients: list[YClient] = []
    gate = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int) -> None:
        async with gate:
            clients.append(await open_one(name, server.port, i))

    rss0, cpu0 = server.rss(), server.cpu_seconds()
    t0 = time.perf_counter()
    try:
        async with asyncio.timeout(max(60, n / 50)):
            await asyncio.gather(*(one(i) for i in range(n)))
    except (OSError, TimeoutError, ConnectionError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    result.seconds = time.perf_counter() - t0
    result.cpu_per_conn = (server.cpu_seconds() - cpu0) / max(1, len(clients))
    await asyncio.sleep(2.0)  # settled: nothing left to do for the server
    result.opened = len(clients)
    result.rss_per_conn = (server.rss() - rss0) / max(1, len(clients))
    close_all(clients)
    return result


@dataclass
class FairnessResult:
    alone: PhaseStats | None = None
    flooded: PhaseStats | None = None
    flood_frames: int = 0
    flood_closes: int = 0
    error: str | None = None


async def flood(port: int, stop: asyncio.Event, result: FairnessResult) -> None:
    """Updates into another diagram as fast as the socket takes them; reconnect if closed."""
    frames = small_updates(20_000, first=500_000)
    k = 0
    while not stop.is_set():
        try:
            # a fresh diagram each time: joining the one it flooded would measure the
            # encoding of a document grown by 100 000 updates, not the flood
            client = await asyncio.wait_for(join(port, f"/yjs/flood{result.flood_closes}"), 10)
        except (OSError, TimeoutError, ConnectionError):
            await asyncio.sleep(0.1)
            continue
        transport = client.transport
        assert transport is not None
        while not stop.is_set() and not client.lost:
            if transport.get_write_buffer_size() < 256 * 1024:
                for _ in range(FLOOD_BATCH):
                    client.write_raw(frames[k % len(frames)])
                    k += 1
                result.flood_frames += FLOOD_BATCH
                await asyncio.sleep(0)
            else:  # the server stopped reading: wait without spinning this process's core
                await asyncio.sleep(0.005)
        result.flood_closes += client.lost
        client.close()


# a request the relay answers from its projection (NOT_FOUND): cheap, as a flood goes
FLOOD_REQUEST = client_frame(
    json.dumps(
        {
            "type": "request",
            "event": "get_adapter_status",
            "data": {"adapter_id": "nobody"},
            "id": "f",
        }
    ).encode(),
    0x1,
)


async def flood_relay(port: int, stop: asyncio.Event, result: FairnessResult) -> None:
    """Requests on a relay connection as fast as the socket takes them; reconnect if closed."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        try:
            _, client = await loop.create_connection(lambda: WsPublisher(port), HOST, port)
            await asyncio.wait_for(client.joined, 10)
        except (OSError, TimeoutError, ConnectionError):
            await asyncio.sleep(0.1)
            continue
        transport = client.transport
        assert transport is not None
        while not stop.is_set() and not client.lost:
            client.refused.clear()  # its RATE_LIMITED replies: not kept
            if transport.get_write_buffer_size() < 256 * 1024:
                for _ in range(FLOOD_BATCH):
                    client.write_raw(FLOOD_REQUEST)
                result.flood_frames += FLOOD_BATCH
                await asyncio.sleep(0)
            else:  # the relay stopped reading: wait without spinning this process's core
                await asyncio.sleep(0.005)
        result.flood_closes += client.lost
        client.close()


async def run_relay_fairness(server: ServerProcess) -> FairnessResult:
    """The relay's fairness: a quiet channel (one client publishing with ``publish``
    requests, 10 subscribers), alone and while another client floods requests."""
    result = FairnessResult()
    frames = [client_frame(publish_request([event_item(i)], i), 0x1) for i in range(301)]
    send_ns = [0] * len(frames)
    clients: list[YClient] = []
    try:
        loop = asyncio.get_running_loop()
        _, writer = await loop.create_connection(
            lambda: WsPublisher(server.port), HOST, server.port
        )
        await asyncio.wait_for(writer.joined, 10)
        receivers: list[YClient] = [
            await asyncio.wait_for(relay_connect(server.port, "/", True), 10) for _ in range(10)
        ]
        clients = [writer, *receivers]
        await run_phase(server, writer, receivers, frames[:1], 0, send_ns, None, 10)
        result.alone = await run_phase(
            server, writer, receivers, frames[1:151], 1, send_ns, 1 / 50, 30
        )
        stop = asyncio.Event()
        flooder = asyncio.create_task(flood_relay(server.port, stop, result))
        await asyncio.sleep(2.0)  # the flood is on
        result.flooded = await run_phase(
            server, writer, receivers, frames[151:301], 151, send_ns, 1 / 50, 60
        )
        stop.set()
        await flooder
        if writer.refused:
            result.error = f"the quiet publisher was refused: {writer.refused[0]}"
    except (OSError, TimeoutError, ConnectionError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        close_all(clients)
    return result


async def run_fairness(server: ServerProcess) -> FairnessResult:
    result = FairnessResult()
    frames = small_updates(301)
    send_ns = [0] * len(frames)
    path = "/yjs/quiet"
    clients: list[YClient] = []
    try:
        writer = await join(server.port, path)
        receivers = [await join(server.port, path) for _ in range(10)]
        clients = [writer, *receivers]
        await run_phase(server, writer, receivers, frames[:1], 0, send_ns, None, 10)
        result.alone = await run_phase(
            server, writer, receivers, frames[1:151], 1, send_ns, 1 / 50, 30
        )
        stop = asyncio.Event()
        flooder = asyncio.create_task(flood(server.port, stop, result))
        await asyncio.sleep(2.0)  # the flood is on
        result.flooded = await run_phase(
            server, writer, receivers, frames[151:301], 151, send_ns, 1 / 50, 60
        )
        stop.set()
        await flooder
    except (OSError, TimeoutError, ConnectionError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        close_all(clients)
    return result


@dataclass
class ServerResult:
    name: str
    label: str = ""
    idle: list[IdleResult] = field(default_factory=list)
    fairness: FairnessResult | None = None
    skipped: str | None = None


async def bench_server(name: str, ns: list[int], fairness: bool) -> ServerResult:
    """Each N on a fresh server (memory a process freed is not given back, so a second
    run's growth would be measured from a bloated start), then fairness on another."""
    result = ServerResult(name, spec(name, 0).label)
    if spec(name, 0).missing:
        result.skipped = spec(name, 0).missing
        return result
    for n in ns:
        port = free_port()
        async with started(spec(name, port), port, settle_s=0.5) as server:
            say(f"  {name}: {n} idle connections ...")
            result.idle.append(await run_idle(name, server, n))
    if fairness and name in ("inkwire", "node", "relay"):
        port = free_port()
        async with started(spec(name, port, fairness=True), port, settle_s=0.5) as server:
            say(f"  {name}: fairness ...")
            run = run_relay_fairness if name == "relay" else run_fairness
            result.fairness = await run(server)
    return result


def ms(phase: PhaseStats | None) -> str:
    if phase is None:
        return "n/a"
    p50, p99 = phase.latencies_ms
    return f"{p50:.1f} / {p99:.1f}" + ("" if phase.complete else " (incomplete)")


def report(results: list[ServerResult]) -> str:
    rows = []
    for r in results:
        if r.skipped:
            rows.append([r.name, "-", "skipped", r.skipped, "", ""])
        for i in r.idle:
            rows.append(
                [
                    r.name,
                    f"{i.n}",
                    f"{i.opened}" + (f" ({i.error})" if i.error else ""),
                    f"{i.rss_per_conn / 1024:.1f} KiB",
                    f"{i.opened / i.seconds:.0f}/s" if i.seconds else "n/a",
                    f"{i.cpu_per_conn * 1e6:.0f} µs",
                ]
            )
    out = [
        "Idle connections (server on core 0, load generator on core 1)",
        table(["server", "N", "opened", "RSS/conn", "opened/s", "CPU/conn"], rows),
    ]
    fair = [r for r in results if r.fairness is not None]
    if fair:
        rows = []
        for r in fair:
            f = r.fairness
            assert f is not None
            rows.append(
                [
                    r.name,
                    ms(f.alone),
                    ms(f.flooded),
                    f"{f.flood_frames}",
                    f"{f.flood_closes}",
                    f.error or "",
                ]
            )
        out += [
            "",
            "Fairness: a quiet diagram's (relay: channel's) p50 / p99 ms (150 updates or"
            " events at 50/s, 10 receivers),\nalone and while another client floods (updates"
            " into its own diagram; relay: requests)",
            table(
                ["server", "alone", "neighbour flooding", "flood frames", "flooder closed", ""],
                rows,
            ),
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", help="connection counts (default 1000,10000[,15000])")
    parser.add_argument("--servers", default=",".join(SERVERS))
    parser.add_argument("--no-fairness", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    limit = raise_file_limit()
    if args.n:
        ns = [int(x) for x in args.n.split(",")]
    else:
        ns = [1000, 10_000] + ([15_000] if limit >= 15_000 + 1000 else [])
    too_many = [n for n in ns if n + 1000 > limit]  # per process: this one and the server
    if too_many:
        say(f"open-file limit {limit}: leaving out N={too_many}")
        ns = [n for n in ns if n not in too_many]
    pin_self()
    names = [x for x in args.servers.split(",") if x]

    async def run() -> list[ServerResult]:
        results = []
        for name in names:
            say(f"{name}: starting")
            results.append(await bench_server(name, ns, not args.no_fairness))
        return results

    results = asyncio.run(run())
    print(report(results))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1, default=str))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
