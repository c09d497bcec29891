"""Cluster fan-out benchmark: two inkwire nodes sharing Redis, against one node, in one run.

What it measures
----------------
This machine has 2 cores, so this measures what crossing nodes costs, not scaling. Each
scenario runs on one node and on two nodes (A and B) sharing a private Redis, freshly
started each time, in each of 3 rounds (the rounds alternate which goes first, so drift
on a shared machine hits both alike). The clients are the same in both runs: "near"
receivers connect to the writer's node, "far" ones to the other node (in the one-node
run: the same node), so each group is compared with itself.

* one node:  `inkwire serve --db FILE` on core 0 (SQLite autosave, no Redis)
* two nodes: `inkwire serve --db SHARED --redis URL` twice, A on core 0 and B on core 1,
             sharing one SQLite file; a private `redis-server` (free port, temporary
             directory, `--save "" --appendonly yes --appendfsync always`, the setting
             the cluster docs recommend), not pinned, stopped by PID at the end
* the load generator (this process) stays on core 1: in the two-node run it shares that
  core with node B (and Redis floats), which the two-node figures pay for.

Each part runs on nodes started for it, so none measures the work an earlier one left
behind (a quiet diagram's checkpoint, an unload). A node counts as up once /health/ready
answers 200 (a node of a cluster: once linked to Redis). Each part is measured as
bench/yjs_fanout.py measures, with its machinery (bench/common.py): a warm-up event every
receiver must get, a burst written back to back, then paced events; latency = receive
time - send time, both in this process.

1. Yjs, one diagram: the writer on A; N receivers (default 100), N/2 near (on A) and N/2
   far (on B). Burst: 4x bench/yjs_fanout.py's M for N (8000 at N=100: its 2000 last
   ~0.1 s here, too short to compare by); paced: 300 updates at 50/s.
2. 200 rooms x 3 clients: per room a writer (room r's on A for even r, on B for odd r),
   a near receiver and a far one. Burst: 50 updates per room, the rooms interleaved;
   paced: 10 rounds in each of which every room's writer sends one update, a round
   spread over 0.5 s (400 updates/s in all).
3. A relay channel, when `inkwire relay --help` lists `--redis` (else skipped):
   `inkwire relay dhruva` (with `--redis URL` on two nodes), bench/relay_fanout.py's
   events, publisher (`POST /publish` on A) and subscribers, N/2 on A and N/2 on B;
   burst 4x its M, paced 300 at 100/s.

Per group (all, near, far), the median over rounds of: burst deliveries/s = the group's
deliveries / (first send -> the moment its last receiver holds every event); paced
p50/p99; and per run the CPU µs per delivery of the nodes and Redis together. Two nodes
against one: the ratio (burst) or difference (paced p99) of those medians, and each
round's own.
Targets, the far receivers on two nodes against the same receivers on one node: burst
deliveries/s >= 0.5x, paced p99 <= +3 ms.

Run
---
    make bench-cluster              # about 3 minutes
    .venv/bin/python bench/cluster_fanout.py [--n 100] [--rooms 200] [--rounds 3]
        [--parts yjs,rooms,relay] [--quick] [--json out.json]

Server logs go to bench/results/cluster-*.log (git-ignored). Everything listens and
connects on 127.0.0.1 only; every phase has a timeout; every process is stopped on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))

import relay_fanout
import yjs_fanout
from cluster_results import Results, Run, Tally, comparisons, notes, phase_of, scenario_table
from common import (
    HOST,
    FanoutPlan,
    PhaseStats,
    ServerProcess,
    ServerSpec,
    dropped_receivers,
    free_port,
    measure_phase,
    pin_self,
    say,
    started,
)
from yjs_fanout import INKWIRE, YClient, close_all, inkwire_options, join, join_many, small_updates

REDIS_SERVER = shutil.which("redis-server")
NODE_NAMES = ("A", "B")


# ---------------------------------------------------------------------------------------
# Processes: Redis, nodes
# ---------------------------------------------------------------------------------------


def redis_spec(port: int, directory: Path) -> ServerSpec:
    argv = [REDIS_SERVER or "redis-server", "--port", str(port), "--bind", HOST]
    argv += ["--dir", str(directory), "--save", "", "--appendonly", "yes"]
    argv += ["--appendfsync", "always"]
    missing = None if REDIS_SERVER else "redis-server not found"
    return ServerSpec("cluster-redis", "redis-server", argv, missing=missing, core=None)


@functools.cache
def relay_clusters() -> bool:
    """Whether `inkwire relay` can join a cluster (it takes --redis)."""
    try:
        usage = subprocess.run(
            [str(INKWIRE), "relay", "--help"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "--redis" in usage


@dataclass
class Nodes:
    """The nodes of one run, and the Redis they share (none for one node)."""

    servers: list[ServerProcess]
    redis: ServerProcess | None

    def port(self, slot: int) -> int:
        """Where a client of node A (slot 0) or B (slot 1) connects: A if it is alone."""
        return self.servers[slot % len(self.servers)].port

    def cpu_seconds(self) -> float:
        return sum(p.cpu_seconds() for p in [*self.servers, *filter(None, [self.redis])])


async def wait_ready(port: int, limit_s: float = 20.0) -> None:
    """Until GET /health/ready answers 200 (a node of a cluster: once linked to Redis)."""
    request = f"GET /health/ready HTTP/1.1\r\nHost: {HOST}:{port}\r\nConnection: close\r\n\r\n"
    status = b""
    try:
        async with asyncio.timeout(limit_s):
            while b" 200 " not in status:
                await asyncio.sleep(0.1)
                reader, writer = await asyncio.open_connection(HOST, port)
                writer.write(request.encode())
                status = await reader.readline()
                writer.close()
    except TimeoutError:
        raise RuntimeError(f"port {port} not ready in {limit_s:.0f} s: {status!r}") from None


NodeSpec = Callable[[str, int, "str | None"], ServerSpec]  # (name, port, Redis URL)


@contextlib.asynccontextmanager
async def running_nodes(spec: NodeSpec, count: int, redis: ServerProcess) -> AsyncIterator[Nodes]:
    """``count`` nodes, the i-th on core i; with two, linked through ``redis``."""
    url = f"redis://{HOST}:{redis.port}/0" if count > 1 else None
    async with contextlib.AsyncExitStack() as stack:
        servers = []
        for core, name in enumerate(NODE_NAMES[:count]):
            port = free_port()
            node = dataclasses.replace(spec(name, port, url), core=core)
            servers.append(await stack.enter_async_context(started(node, port)))
        for server in servers:
            await wait_ready(server.port)
        yield Nodes(servers, redis if url else None)


# ---------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------


PhaseRunner = Callable[[int, int, "float | None", float], Awaitable[PhaseStats]]


async def run_phases(
    run: Run, tallies: list[Tally], send_ns: list[int], phase: PhaseRunner, plan: Plan
) -> None:
    """Warm-up, burst, paced; ``phase(first, count, interval, limit_s)`` sends events
    first..first+count-1 (per room) and waits until every receiver has them."""
    m = plan.burst
    steps = {"warm-up": (0, 1, None, 10.0), "burst": (1, m, None, 60.0)}
    steps["paced"] = (1 + m, plan.paced, 1 / plan.paced_rate, 10.0)
    for name, (first, count, interval, limit_s) in steps.items():
        stats = await phase(first, count, interval, limit_s)
        if name != "warm-up":
            setattr(run, name, phase_of(stats, tallies, send_ns[first]))
        if not stats.complete:
            total = count * len(tallies)
            run.error = f"{name}: {stats.delivered}/{total} deliveries, {stats.failed} unfinished"
            return


# ---------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------


@dataclass
class Plan:
    burst: int  # events per room (or channel), back to back
    paced: int  # ... then paced ones
    paced_rate: float  # per second, all rooms together


class Channel(Protocol):
    """One diagram or one relay channel: its nodes, writer, receivers and phases."""

    label: str

    def node(self, name: str, port: int, url: str | None) -> ServerSpec: ...
    async def open_writer(self, port: int) -> Any: ...
    async def join(self, port: int, count: int) -> list[YClient]: ...
    def close_writer(self, writer: Any) -> str | None: ...  # what went wrong, if anything
    async def phase(
        self,
        nodes: Nodes,
        writer: Any,
        receivers: list[Tally],
        first: int,
        count: int,
        send_ns: list[int],
        interval: float | None,
        limit_s: float,
    ) -> PhaseStats: ...


def yjs_node(db: Path, name: str, port: int, url: str | None) -> ServerSpec:
    """`inkwire serve` autosaving to ``db`` (nodes of a cluster share it)."""
    argv = [str(INKWIRE), "serve", "--host", HOST, "--port", str(port), "--db", str(db)]
    argv += [*inkwire_options(), *(["--redis", url] if url else [])]
    missing = None if INKWIRE.exists() else f"{INKWIRE} not found"
    return ServerSpec(f"cluster-{name}", f"inkwire serve ({name})", argv, missing=missing)


class YjsDiagram:
    label = "Yjs, one diagram"

    def __init__(self, db: Path, frames: list[bytes]) -> None:
        self.db = db
        self.frames = frames
        self.path = f"/yjs/bench-cluster-{uuid.uuid4().hex[:8]}"

    def node(self, name: str, port: int, url: str | None) -> ServerSpec:
        return yjs_node(self.db, name, port, url)

    async def open_writer(self, port: int) -> YClient:
        return await asyncio.wait_for(join(port, self.path), 10)

    async def join(self, port: int, count: int) -> list[YClient]:
        return await join_many(port, self.path, count, limit_s=60)

    def close_writer(self, writer: YClient) -> str | None:
        writer.close()
        return None

    async def phase(
        self,
        nodes: Nodes,
        writer: YClient,
        receivers: list[Tally],
        first: int,
        count: int,
        send_ns: list[int],
        interval: float | None,
        limit_s: float,
    ) -> PhaseStats:
        frames = self.frames[first : first + count]
        return await yjs_fanout.run_phase(
            nodes, writer, receivers, frames, first, send_ns, interval, limit_s
        )


class RelayChannel:
    label = "relay channel"

    def node(self, name: str, port: int, url: str | None) -> ServerSpec:
        spec = relay_fanout.server_spec("inkwire", port)
        argv = [*spec.argv, *(["--redis", url] if url else [])]
        return dataclasses.replace(spec, name=f"cluster-relay-{name}", argv=argv)

    async def open_writer(self, port: int) -> relay_fanout.Publisher:
        return await relay_fanout.open_publisher("inkwire", port)

    async def join(self, port: int, count: int) -> list[YClient]:
        return list(await relay_fanout.connect_many(port, "/", True, count))

    def close_writer(self, writer: relay_fanout.Publisher) -> str | None:
        writer.conn.close()
        refused = getattr(writer.conn, "refused", [])
        return f"{len(refused)} POSTs refused, first: {refused[0]}" if refused else None

    async def phase(
        self,
        nodes: Nodes,
        writer: relay_fanout.Publisher,
        receivers: list[Tally],
        first: int,
        count: int,
        send_ns: list[int],
        interval: float | None,
        limit_s: float,
    ) -> PhaseStats:
        return await relay_fanout.run_phase(
            nodes, writer, receivers, first, count, send_ns, interval, limit_s
        )


async def one_channel(channel: Channel, nodes: Nodes, n: int, plan: Plan) -> Run:
    """The writer on A; n/2 near receivers on A, n/2 far ones on B (or A, alone)."""
    run = Run(len(nodes.servers))
    send_ns = [0] * (1 + plan.burst + plan.paced)
    writer = None
    tallies: list[Tally] = []
    try:
        writer = await channel.open_writer(nodes.port(0))
        for slot, group in enumerate(("near", "far")):
            tallies += [Tally(c, group) for c in await channel.join(nodes.port(slot), n // 2)]

        def phase(
            first: int, count: int, interval: float | None, limit_s: float
        ) -> Awaitable[PhaseStats]:
            return channel.phase(nodes, writer, tallies, first, count, send_ns, interval, limit_s)

        await run_phases(run, tallies, send_ns, phase, plan)
    except (OSError, TimeoutError, ConnectionError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        run.dropped = dropped_receivers(tallies)
        if writer is not None:
            run.error = channel.close_writer(writer) or run.error
        close_all([t.client for t in tallies])
        await asyncio.sleep(1.0)  # let the nodes drop the connections
    return run


async def join_each(targets: list[tuple[int, str]]) -> list[YClient]:
    """One client per (port, room path), at most 50 handshakes in flight."""
    gate = asyncio.Semaphore(50)

    async def one(port: int, path: str) -> YClient:
        async with gate:
            return await join(port, path)

    async with asyncio.timeout(120):
        return list(await asyncio.gather(*(one(port, path) for port, path in targets)))


async def many_rooms(nodes: Nodes, rooms: list[list[bytes]], plan: Plan, round_s: float) -> Run:
    """Per room: a writer (on A or B by turns), a near receiver and a far one."""
    run = Run(len(nodes.servers))
    per_room = len(rooms[0])
    send_ns = [0] * (len(rooms) * per_room)
    tag = uuid.uuid4().hex[:8]
    paths = [f"/yjs/bench-rooms-{tag}-{r}" for r in range(len(rooms))]
    clients: list[YClient] = []
    tallies: list[Tally] = []
    try:
        clients += await join_each([(nodes.port(r), path) for r, path in enumerate(paths)])
        writers = list(clients)
        for group, slot in (("near", 0), ("far", 1)):
            joined = await join_each([(nodes.port(r + slot), p) for r, p in enumerate(paths)])
            tallies += [Tally(c, group, r * per_room) for r, c in enumerate(joined)]

        async def phase(
            first: int, count: int, interval: float | None, limit_s: float
        ) -> PhaseStats:
            writes = [
                (r * per_room + k, writers[r], rooms[r][k])
                for k in range(first, first + count)
                for r in range(len(rooms))
            ]

            async def send() -> None:
                start = time.perf_counter()
                for j, (i, writer, frame) in enumerate(writes):
                    if interval is not None:
                        delay = start + j * interval - time.perf_counter()
                        if delay > 0:
                            await asyncio.sleep(delay)
                    send_ns[i] = time.perf_counter_ns()
                    writer.write_raw(frame)

            return await measure_phase(nodes, tallies, first, count, send_ns, send, limit_s)

        rate = dataclasses.replace(plan, paced_rate=len(rooms) / round_s)
        await run_phases(run, tallies, send_ns, phase, rate)
    except (OSError, TimeoutError, ConnectionError) as exc:
        run.error = f"{type(exc).__name__}: {exc}"
    finally:
        run.dropped = dropped_receivers(tallies)
        close_all([*clients, *(t.client for t in tallies)])
        await asyncio.sleep(1.0)
    return run


# ---------------------------------------------------------------------------------------
# Driver
# ---------------------------------------------------------------------------------------


@dataclass
class Plans:
    """bench/yjs_fanout.py's and bench/relay_fanout.py's phases, made longer: their bursts
    last ~0.1 s on one node here, too short to compare two runs by."""

    n: int
    yjs: Plan
    rooms: Plan
    relay: Plan
    room_count: int
    round_s = 0.5  # a paced round: every room's writer sends one update within this
    longer = 4  # bursts, against the other benchmarks'
    paced = 300  # paced events

    @classmethod
    def make(cls, n: int, rooms: int, quick: bool) -> Plans:
        yjs, relay = yjs_fanout.Plan([n], quick), FanoutPlan([n], quick)
        paced = yjs.paced if quick else cls.paced
        return cls(
            n,
            Plan(cls.longer * yjs.burst(n), paced, yjs.paced_rate),
            Plan(10 if quick else 50, 3 if quick else 10, 0.0),  # paced rate: by the round
            Plan(cls.longer * relay.burst(n), paced, relay.paced_rate),
            rooms,
        )

    @property
    def labels(self) -> dict[str, str]:
        """Each part's scenario label."""
        rooms = f"{self.room_count} rooms x 3 clients"
        return {"yjs": YjsDiagram.label, "rooms": rooms, "relay": RelayChannel.label}

    def describe(self) -> dict[str, str]:
        """What each scenario ran, by its label."""
        y, r, rel = self.yjs, self.rooms, self.relay
        return {
            YjsDiagram.label: f"inkwire serve, SQLite autosave (two nodes: one shared file);"
            f" writer on A, {self.n} receivers; burst {y.burst} updates, paced {y.paced}"
            f" at {y.paced_rate:.0f}/s",
            self.labels["rooms"]: f"per room a writer (on A or B by turns), a near"
            f" and a far receiver; burst {r.burst} updates per room, paced: {r.paced} rounds"
            f" of one update per room, a round spread over {self.round_s} s",
            RelayChannel.label: "inkwire relay dhruva (two nodes: history in Redis); POST"
            f" /publish on A (bursts in batches of {relay_fanout.PUBLISH_BATCH}), {self.n}"
            f" subscribers; burst {rel.burst} events, paced {rel.paced} at"
            f" {rel.paced_rate:.0f}/s",
        }


@dataclass
class Updates:
    """The Yjs frames, made once before anything is timed."""

    diagram: list[bytes]
    rooms: list[list[bytes]]

    @classmethod
    def make(cls, plans: Plans) -> Updates:
        per_room = 1 + plans.rooms.burst + plans.rooms.paced
        return cls(
            small_updates(1 + plans.yjs.burst + plans.yjs.paced),
            [small_updates(per_room, r * per_room) for r in range(plans.room_count)],
        )


def busy_seconds() -> float:
    """CPU time the whole machine has spent busy (all cores, all processes)."""
    times = psutil.cpu_times()
    return times.user + times.nice + times.system + times.irq + times.softirq + times.steal


async def run_part(
    part: str, plans: Plans, updates: Updates, count: int, db: Path, redis: ServerProcess
) -> Run:
    """One part on ``count`` freshly started node(s), so that no part measures the work an
    earlier one left behind (a quiet room's checkpoint, an unload); and the CPU other
    processes used meanwhile."""
    channel: Channel = RelayChannel() if part == "relay" else YjsDiagram(db, updates.diagram)
    async with running_nodes(channel.node, count, redis) as nodes:
        ours, busy, t0 = nodes.cpu_seconds() + time.process_time(), busy_seconds(), time.time()
        if part == "rooms":
            run = await many_rooms(nodes, updates.rooms, plans.rooms, plans.round_s)
        else:
            plan = plans.relay if part == "relay" else plans.yjs
            run = await one_channel(channel, nodes, plans.n, plan)
        ours = nodes.cpu_seconds() + time.process_time() - ours
        others = busy_seconds() - busy - ours
        run.others_pct = max(0.0, 100 * others / (time.time() - t0))
    return run


async def bench(plans: Plans, parts: list[str], rounds: int, skipped: dict[str, str]) -> Results:
    """Every part on one node and on two in each round; the rounds alternate which goes
    first, so drift on a shared machine hits both alike."""
    results: Results = {}
    updates = Updates.make(plans)
    if "relay" in parts and not relay_clusters():
        skipped[RelayChannel.label] = "`inkwire relay --help` lists no --redis (not merged yet)"
        parts = [p for p in parts if p != "relay"]
    with tempfile.TemporaryDirectory(prefix="inkwire-cbench-") as tmp:
        port = free_port()
        async with started(redis_spec(port, Path(tmp)), port) as redis:
            for i in range(rounds):
                for count in (1, 2) if i % 2 == 0 else (2, 1):
                    for part in parts:
                        label = plans.labels[part]
                        say(f"round {i + 1}/{rounds}: {label}, {count} node(s)")
                        db = Path(tmp) / f"{i}-{count}-{part}.db"
                        run = await run_part(part, plans, updates, count, db, redis)
                        results.setdefault(label, {}).setdefault(count, []).append(run)
    return results


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------

PARTS = ("yjs", "rooms", "relay")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100, help="receivers of the one diagram")
    parser.add_argument("--rooms", type=int, default=200, help="rooms of 3 clients")
    parser.add_argument("--parts", default=",".join(PARTS))
    parser.add_argument("--rounds", type=int, help="rounds of both runs (default 3; 1 quick)")
    parser.add_argument("--quick", action="store_true", help="fewer events per phase")
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    args = parser.parse_args(argv)
    args.rounds = args.rounds or (1 if args.quick else 3)
    args.parts = [x.strip() for x in args.parts.split(",") if x.strip()]
    if set(args.parts) - set(PARTS):
        parser.error(f"--parts: choose among {', '.join(PARTS)}")
    if args.n < 2 or args.n % 2:
        parser.error("--n: an even number (half near, half far)")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if REDIS_SERVER is None:
        sys.exit("redis-server not found (apt-get install redis-server)")
    plans = Plans.make(args.n, args.rooms, args.quick)
    pin_self()
    load = [", ".join(f"{x:.2f}" for x in os.getloadavg())]
    skipped: dict[str, str] = {}
    try:
        results = asyncio.run(bench(plans, args.parts, args.rounds, skipped))
    except RuntimeError as exc:
        sys.exit(f"did not start: {exc} (logs: bench/results/cluster-*.log)")
    load.append(", ".join(f"{x:.2f}" for x in os.getloadavg()))
    version = subprocess.run([REDIS_SERVER, "--version"], capture_output=True, text=True)
    print(
        "Cluster fan-out: one node against two sharing a private Redis"
        f' ({version.stdout.split()[2].removeprefix("v=")}, --save "" --appendonly yes'
        " --appendfsync always)"
    )
    print(
        f"medians over {args.rounds} round(s), each running both; columns: burst s = first"
        " send to the group's last delivery;\n  deliveries/s = the group's deliveries / that;"
        " µs/deliv, CPU = nodes + Redis; near = on the writer's\n  node, far = on the other"
        " node (on two nodes); two vs one: of the medians (per round: each round's pair)"
    )
    describe = plans.describe()
    for label, runs in results.items():
        print(scenario_table(label, describe[label], runs))
    print(comparisons(results))
    print(notes(results, skipped, load))
    if args.json:
        raw = {
            k: {c: [dataclasses.asdict(r) for r in rs] for c, rs in v.items()}
            for k, v in results.items()
        }
        args.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
