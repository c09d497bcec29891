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
The flooder runs in a process of its own (on the load generator's core, niced to 10):
in this one, its writes and the replies it parses held the loop that stamps the quiet
clients' arrivals, so the p99 measured this process as much as the server (in practice
that moved it little, see docs/capacity.md, but a fairness figure must time the server).
Its niceness only lets the measuring clients run first when both are ready: it still
offers many times the rate limit.

`--probe FILE` runs the fairness servers with bench/loop_probe.py (what held the
server's event loop, per turn: CPU per callback, the task it stepped; see there) and
prints each phase's time bounds for `python bench/loop_probe.py FILE-<server>.jsonl
--since ... --until ...`. Its figures are not the benchmark's (the probe costs the server).

    PYTHONPATH=$PWD .venv/bin/python bench/connections.py [--n 1000,10000,15000]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import resource
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

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
from loop_probe import site_dir
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
EVENTS = 150  # per fairness phase, at 50/s (issue 14); --fair-events for a steadier p99


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
class FloodCount:
    flood_frames: int = 0
    flood_closes: int = 0


@dataclass
class FairnessResult(FloodCount):
    alone: PhaseStats | None = None
    flooded: PhaseStats | None = None
    error: str | None = None
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)  # time.time() bounds


async def flood(port: int, stop: asyncio.Event, result: FloodCount) -> None:
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


async def flood_relay(port: int, stop: asyncio.Event, result: FloodCount) -> None:
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


FLOODERS = {"yjs": flood, "relay": flood_relay}


def flooder_main(kind: str, port: int, stop: Any, out: Connection) -> None:
    """The flooder's process: flood until ``stop`` (a multiprocessing Event) is set, then
    send back what it sent. Niced, so that on the load generator's core it runs only when
    the measuring clients have nothing to do (it still offers many times the rate limit)."""
    os.nice(10)

    async def run() -> FloodCount:
        count = FloodCount()
        done = asyncio.Event()
        task = asyncio.create_task(FLOODERS[kind](port, done, count))
        out.send("flooding")
        while not stop.is_set() and not task.done():
            await asyncio.sleep(0.05)
        done.set()
        await task
        return count

    out.send(asdict(asyncio.run(run())))


@contextlib.asynccontextmanager
async def flooding(kind: str, port: int, result: FairnessResult) -> AsyncIterator[None]:
    """A flooder in its own process while the block runs: in this one, its writes and the
    replies it parses would hold the loop the quiet clients time their events on, and the
    p99 would measure this process as much as the server."""
    ctx = multiprocessing.get_context("spawn")
    stop = ctx.Event()
    receiving, sending = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=flooder_main, args=(kind, port, stop, sending), daemon=True)
    proc.start()
    sending.close()
    try:
        if not await asyncio.to_thread(receiving.poll, 30) or receiving.recv() != "flooding":
            raise TimeoutError("the flooder process did not start")
        yield
    finally:
        stop.set()
        if await asyncio.to_thread(receiving.poll, 30):
            count = receiving.recv()
            result.flood_frames, result.flood_closes = count["flood_frames"], count["flood_closes"]
        await asyncio.to_thread(proc.join, 5)
        if proc.is_alive():
            proc.kill()
            proc.join()
        receiving.close()


async def run_relay_fairness(server: ServerProcess, events: int = EVENTS) -> FairnessResult:
    """The relay's fairness: a quiet channel (one client publishing with ``publish``
    requests, 10 subscribers), alone and while another client floods requests."""
    result = FairnessResult()
    n = events
    frames = [client_frame(publish_request([event_item(i)], i), 0x1) for i in range(2 * n + 1)]
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
        t0 = time.time()
        result.alone = await run_phase(
            server, writer, receivers, frames[1 : n + 1], 1, send_ns, 1 / 50, 30 + n / 50
        )
        result.phases["alone"] = (t0, time.time())
        async with flooding("relay", server.port, result):
            await asyncio.sleep(2.0)  # the flood is on
            t0 = time.time()
            result.flooded = await run_phase(
                server, writer, receivers, frames[n + 1 :], n + 1, send_ns, 1 / 50, 60 + n / 50
            )
            result.phases["flooded"] = (t0, time.time())
        if writer.refused:
            result.error = f"the quiet publisher was refused: {writer.refused[0]}"
    except (OSError, TimeoutError, ConnectionError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        close_all(clients)
    return result


async def run_fairness(server: ServerProcess, events: int = EVENTS) -> FairnessResult:
    result = FairnessResult()
    n = events
    frames = small_updates(2 * n + 1)
    send_ns = [0] * len(frames)
    path = "/yjs/quiet"
    clients: list[YClient] = []
    try:
        writer = await join(server.port, path)
        receivers = [await join(server.port, path) for _ in range(10)]
        clients = [writer, *receivers]
        await run_phase(server, writer, receivers, frames[:1], 0, send_ns, None, 10)
        t0 = time.time()
        result.alone = await run_phase(
            server, writer, receivers, frames[1 : n + 1], 1, send_ns, 1 / 50, 30 + n / 50
        )
        result.phases["alone"] = (t0, time.time())
        async with flooding("yjs", server.port, result):
            await asyncio.sleep(2.0)  # the flood is on
            t0 = time.time()
            result.flooded = await run_phase(
                server, writer, receivers, frames[n + 1 :], n + 1, send_ns, 1 / 50, 60 + n / 50
            )
            result.phases["flooded"] = (t0, time.time())
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


async def bench_server(
    name: str, ns: list[int], fairness: bool, probe: Path | None = None, events: int = EVENTS
) -> ServerResult:
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
        server_spec = spec(name, port, fairness=True)
        if probe is not None:  # bench/loop_probe.py in the server: its long loop turns
            path = probe.with_name(f"{probe.stem}-{name}{probe.suffix}")
            server_spec.env["LOOP_PROBE_OUT"] = str(path.resolve())
            server_spec.env["PYTHONPATH"] = os.pathsep.join(
                [str(site_dir()), *filter(None, [os.environ.get("PYTHONPATH")])]
            )
            say(f"  {name}: loop probe in {path}")
        async with started(server_spec, port, settle_s=0.5) as server:
            say(f"  {name}: fairness ...")
            run = run_relay_fairness if name == "relay" else run_fairness
            result.fairness = await run(server, events)
    return result


def ms(phase: PhaseStats | None) -> str:
    if phase is None:
        return "n/a"
    p50, p99 = phase.latencies_ms
    return f"{p50:.1f} / {p99:.1f}" + ("" if phase.complete else " (incomplete)")


def report(results: list[ServerResult], events: int = EVENTS) -> str:
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
            "Fairness: a quiet diagram's (relay: channel's) p50 / p99 ms"
            f" ({events} updates or events at 50/s, 10 receivers),\nalone and while"
            " another client floods (updates into its own diagram; relay: requests)",
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
    parser.add_argument(
        "--fair-events",
        type=int,
        default=EVENTS,
        help=f"events per fairness phase at 50/s (default {EVENTS}: a p99 of 15 latencies)",
    )
    parser.add_argument(
        "--probe",
        type=Path,
        help="run the fairness servers with bench/loop_probe.py, writing FILE-<server>.jsonl",
    )
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
            results.append(
                await bench_server(name, ns, not args.no_fairness, args.probe, args.fair_events)
            )
        return results

    results = asyncio.run(run())
    print(report(results, args.fair_events))
    for r in results:  # where to look in a probe file
        if r.fairness is not None and args.probe is not None:
            for phase, (since, until) in r.fairness.phases.items():
                print(f"{r.name} {phase}: --since {since:.3f} --until {until:.3f}")
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=1, default=str))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
