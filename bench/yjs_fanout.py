"""Yjs room fan-out benchmark: inkwire against pycrdt-websocket and the Node y-websocket server.

What it measures
----------------
Each server runs as a subprocess pinned to core 0 (`taskset -c 0`); this process, which is
the load generator, pins itself to core 1. The three servers run one after another:

* inkwire            `.venv/bin/inkwire serve --host 127.0.0.1 --port P` (skipped if it
                     does not start), plus `--max-users 1000 --log-level WARNING` when its
                     --help lists them (the default room limit of 50 would refuse N=100)
* pycrdt-websocket   0.16.5 `WebsocketServer` + `ASGIServer` on hypercorn, backlog 1024
                     (bench/baseline_pycrdt.py)
* node               `@y/websocket-server` 0.1.1 with yjs 13.6.33 (bench/node_modules)

For each N (default 10, 100, 500), one writer and then N receivers join a fresh room
`ws://127.0.0.1:P/yjs/<room>` (the writer first: pycrdt-websocket hangs clients that race
to create a room). Every client does the y-websocket handshake: it sends
SyncStep1 with an empty state vector, answers the server's SyncStep1 with an empty
SyncStep2, and counts as joined once the server's SyncStep2 arrives. The writer owns a
pycrdt Doc and sends `Y.Map` sets on map "elements"; every value holds a unique marker
`m000123;`, so a receiver finds which updates a frame carries (one per frame, or many
merged into one) with a regex over the raw bytes, without decoding Yjs. (The Node and
pycrdt-websocket servers also echo each update to the writer; that is not counted.)

1. warm-up: one update must reach every receiver, else the server "does not deliver".
2. burst:   M updates written back to back. deliveries/s = N*M / (first send -> the
            moment the last receiver holds every marker).
3. paced:   150 updates at 50/s. Latency of a delivery = receive time - send time, both
            `time.perf_counter_ns()` in this one process.

Reported per phase: p50/p99 latency, server CPU µs per delivery (psutil CPU time of the
server's process tree over the phase / deliveries), server and load-generator CPU as % of
one core (whichever is near 100 % was the limit; a busy load generator beside an idle
server makes the rate a lower bound, and the notes say so), updates per received frame
(how much the server coalesces), and the server's peak RSS per N (VmHWM, reset through
/proc/PID/clear_refs before each N).

Big document: on a freshly started server a writer loads 10 000 elements (~6 MB of
update) in 100 transactions and stays connected. Then one fresh client at a time joins
(5 times; median reported): time from TCP connect to the complete SyncStep2 holding all
10 000 markers. Then 20 clients join at once: time until all hold the document, and the
server's peak RSS during that (and its RSS just before).

The load generator is a lean asyncio.Protocol client: a minimal HTTP upgrade, masked
client frames, and a parser for the server's unmasked frames (pings are answered).
While a phase runs a receiver only notes (receive time, markers found); latencies and
duplicate checks are computed after the phase. Latencies include the load generator's
own processing time, equally for every server.

Run
---
    make bench                       # npm ci in bench/, then this script
    .venv/bin/python bench/yjs_fanout.py [--n 10,100,500] [--servers inkwire,pycrdt,node]
                                         [--quick] [--json results.json]

Server logs go to bench/results/<server>.log (git-ignored). Everything listens and
connects on 127.0.0.1 only; every phase has a timeout; every server is killed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import functools
import gc
import hashlib
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from common import (
    BENCH_DIR,
    HOST,
    LOADGEN_CORE,
    ROOT,
    SERVER_CORE,
    BaseServerResult,
    CpuMeter,
    FanoutPlan,
    FanoutResult,
    PhaseStats,
    ServerProcess,
    ServerSpec,
    Tracker,
    dropped_receivers,
    fanout_args,
    fanout_parser,
    free_port,
    mb,
    measure_phase,
    phase_note,
    pin_self,
    print_report,
    ratio,
    report_notes,
    run_all,
    say,
    send_paced,
    started,
    table,
)
from pycrdt import Doc, Map

NODE_SERVER = BENCH_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"

MARKER = re.compile(rb"m(\d{6});")
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

# y-websocket messages: [messageSync=0][step1=0 | step2=1 | update=2][varUint8Array]
SYNC, STEP1, STEP2, UPDATE = 0, 0, 1, 2
EMPTY_UPDATE = b"\x00\x00"  # a Yjs v1 update with no structs and an empty delete set


# ---------------------------------------------------------------------------------------
# y-websocket and WebSocket wire helpers
# ---------------------------------------------------------------------------------------


def varuint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def sync_message(kind: int, payload: bytes) -> bytes:
    return bytes([SYNC, kind]) + varuint(len(payload)) + payload


SYNC_STEP1_EMPTY = sync_message(STEP1, b"\x00")  # empty state vector
SYNC_STEP2_EMPTY = sync_message(STEP2, EMPTY_UPDATE)


def mask_payload(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return b""
    n = len(payload)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def client_frame(payload: bytes, opcode: int = 0x2) -> bytes:
    """One final client->server frame (clients must mask, RFC 6455 5.3)."""
    n = len(payload)
    if n < 126:
        head = bytes([0x80 | opcode, 0x80 | n])
    elif n < 1 << 16:
        head = bytes([0x80 | opcode, 0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head = bytes([0x80 | opcode, 0x80 | 127]) + n.to_bytes(8, "big")
    key = os.urandom(4)
    return head + key + mask_payload(payload, key)


def upgrade_request(port: int, path: str, key: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n"
    ).encode()


def expected_accept(key: str) -> bytes:
    return base64.b64encode(hashlib.sha1(key.encode() + WS_GUID).digest())


# ---------------------------------------------------------------------------------------
# Load generator: one asyncio.Protocol per client
# ---------------------------------------------------------------------------------------


class YClient(asyncio.Protocol):
    """A y-websocket client that joins a room and (if tracking) records marker arrivals."""

    def __init__(self, port: int, path: str, keep_step2: bool = False):
        self.port = port
        self.path = path
        self.key = base64.b64encode(os.urandom(16)).decode()
        self.buf = bytearray()
        self.upgraded = False
        self.transport: asyncio.Transport | None = None
        self.joined = asyncio.get_running_loop().create_future()
        self.step2_ns = 0
        self.step2: bytes = b""
        self.keep_step2 = keep_step2
        self.tracker: Tracker | None = None
        self.arrivals: list[tuple[int, list[bytes]]] = []  # (receive time, markers)
        self.remaining = 0
        self.frames = 0
        self.close_code: int | None = None
        self.lost = False

    # -- asyncio.Protocol -------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(upgrade_request(self.port, self.path, self.key))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self.joined.done():
            self.joined.set_exception(ConnectionError(f"closed before joining: {exc}"))
        if self.tracker is not None and self.remaining:
            self.remaining = 0
            self.tracker.receiver_finished(time.perf_counter_ns(), ok=False)

    def data_received(self, data: bytes) -> None:
        now = time.perf_counter_ns()
        self.buf += data
        if not self.upgraded and not self.finish_upgrade():
            return
        end = self.walk_frames(now)
        if end and self.remaining:
            self.count_markers(now, end)
        if end:
            del self.buf[:end]

    # -- protocol steps ---------------------------------------------------------------

    def finish_upgrade(self) -> bool:
        head_end = self.buf.find(b"\r\n\r\n")
        if head_end < 0:
            return False
        head = bytes(self.buf[:head_end])
        del self.buf[: head_end + 4]
        status = head.split(b"\r\n", 1)[0]
        if b" 101 " not in status + b" " or expected_accept(self.key) not in head:
            self.fail(ConnectionError(f"upgrade refused: {status.decode(errors='replace')}"))
            return False
        self.upgraded = True
        self.on_upgraded()
        return True

    def on_upgraded(self) -> None:
        """The socket is a WebSocket now: ask for the room (a y-websocket client does)."""
        self.send(SYNC_STEP1_EMPTY)

    def walk_frames(self, now: int) -> int:
        """Handle every complete frame in the buffer; return the offset after the last."""
        buf = self.buf
        size = len(buf)
        pos = 0
        while size - pos >= 2:
            length = buf[pos + 1] & 0x7F
            start = pos + 2
            if length == 126:
                if size - pos < 4:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 4], "big")
                start = pos + 4
            elif length == 127:
                if size - pos < 10:
                    break
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
            end = start + length
            if end > size:
                break
            self.on_frame(buf[pos] & 0x0F, start, end, now)
            pos = end
        return pos

    def on_frame(self, opcode: int, start: int, end: int, now: int) -> None:
        buf = self.buf
        self.frames += 1
        if opcode == 0x2 and end - start >= 2 and buf[start] == SYNC:
            kind = buf[start + 1]
            if kind == STEP1:
                self.send(SYNC_STEP2_EMPTY)
            elif kind == STEP2 and not self.joined.done():
                self.step2_ns = now
                if self.keep_step2:
                    self.step2 = bytes(buf[start:end])
                self.joined.set_result(None)
        elif opcode == 0x9:
            self.send(bytes(buf[start:end]), opcode=0xA)
        elif opcode == 0x8:
            raw = bytes(buf[start:end])
            self.close_code = int.from_bytes(raw[:2], "big") if len(raw) >= 2 else 1005
            if self.transport is not None:
                self.transport.close()

    def count_markers(self, now: int, end: int, data: bytes | bytearray | None = None) -> None:
        """Hot path: only note which markers arrived when; `settle` does the rest later.

        Looks in ``data`` if given (a chunk that was never buffered), else the buffer."""
        found = MARKER.findall(self.buf if data is None else data, 0, end)
        if found:
            self.arrivals.append((now, found))
            self.remaining -= len(found)
            if self.remaining <= 0:
                self.remaining = 0
                assert self.tracker is not None
                self.tracker.receiver_finished(now)

    def settle(self, send_ns: list[int], first: int, count: int) -> tuple[list[int], int]:
        """Latencies of the phase's markers first..first+count-1, and how many arrived twice
        (or were not expected: then the early "complete" above was premature)."""
        seen = bytearray(count)
        latencies: list[int] = []
        extra = 0
        for now, found in self.arrivals:
            for digits in found:
                k = int(digits) - first
                if 0 <= k < count and not seen[k]:
                    seen[k] = 1
                    latencies.append(now - send_ns[first + k])
                else:
                    extra += 1
        self.arrivals = []
        self.tracker = None
        self.remaining = 0
        return latencies, extra

    # -- helpers for the benchmark ------------------------------------------------------

    def send(self, payload: bytes, opcode: int = 0x2) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(client_frame(payload, opcode))

    def write_raw(self, frame: bytes) -> None:
        assert self.transport is not None
        self.transport.write(frame)

    def fail(self, exc: Exception) -> None:
        if not self.joined.done():
            self.joined.set_exception(exc)
        if self.transport is not None:
            self.transport.abort()

    def begin(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.frames = 0
        self.arrivals = []
        self.remaining = tracker.count
        if self.lost:
            self.remaining = 0
            tracker.receiver_finished(time.perf_counter_ns(), ok=False)

    def close(self) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.send((1000).to_bytes(2, "big"), opcode=0x8)
            self.transport.close()


async def join(port: int, path: str, keep_step2: bool = False) -> YClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: YClient(port, path, keep_step2), HOST, port)
    await client.joined
    return client


async def join_many(port: int, path: str, count: int, limit_s: float) -> list:
    """Join `count` clients, at most 50 handshakes in flight at once."""
    gate = asyncio.Semaphore(50)

    async def one() -> YClient:
        async with gate:
            return await join(port, path)

    async with asyncio.timeout(limit_s):
        return list(await asyncio.gather(*(one() for _ in range(count))))


def close_all(clients: list[YClient]) -> None:
    for client in clients:
        client.close()


# ---------------------------------------------------------------------------------------
# Documents and updates (made with pycrdt, before any timing)
# ---------------------------------------------------------------------------------------


def small_updates(count: int, first: int = 0) -> list[bytes]:
    """`count` y-websocket update frames, each one `elements[eN] = {..."m0000N;"...}`,
    N from `first` on (one document's updates: a room takes them in this order)."""
    doc = Doc()
    elements = doc.get("elements", type=Map)
    updates: list[bytes] = []
    sub = doc.observe(lambda event: updates.append(event.update))
    for i in range(first, first + count):
        elements[f"e{i:06d}"] = {"id": f"m{i:06d};", "type": "rectangle", "x": i, "version": 1}
    doc.unobserve(sub)
    return [client_frame(sync_message(UPDATE, update)) for update in updates]


def excalidraw_element(i: int) -> dict:
    """A freedraw-like element of roughly 600 bytes once encoded."""
    return {
        "id": f"m{i:06d};",
        "type": "freedraw",
        "x": 10.5 * i,
        "y": 20.25 * i,
        "width": 120.5,
        "height": 80.25,
        "angle": 0,
        "strokeColor": "#1e1e1e",
        "backgroundColor": "transparent",
        "fillStyle": "solid",
        "strokeWidth": 2,
        "strokeStyle": "solid",
        "roughness": 1,
        "opacity": 100,
        "groupIds": [],
        "frameId": None,
        "index": f"a{i:06d}",
        "roundness": None,
        "seed": 1000 + i,
        "version": 7,
        "versionNonce": 2000 + i,
        "isDeleted": False,
        "boundElements": None,
        "updated": 1700000000000 + i,
        "link": None,
        "locked": False,
        "pressures": [],
        "simulatePressure": True,
        "points": [[j * 1.5, j * 0.75] for j in range(19)],
    }


def big_doc_updates(elements: int, per_txn: int = 100) -> tuple[list[bytes], int]:
    """Update frames that build an `elements`-element document; and the doc's size."""
    doc = Doc()
    emap = doc.get("elements", type=Map)
    updates: list[bytes] = []
    sub = doc.observe(lambda event: updates.append(event.update))
    for first in range(0, elements, per_txn):
        with doc.transaction():
            for i in range(first, min(first + per_txn, elements)):
                emap[f"e{i:06d}"] = excalidraw_element(i)
    doc.unobserve(sub)
    frames = [client_frame(sync_message(UPDATE, update)) for update in updates]
    return frames, len(doc.get_update())


# ---------------------------------------------------------------------------------------
# Server processes
# ---------------------------------------------------------------------------------------


INKWIRE = ROOT / ".venv" / "bin" / "inkwire"
# Passed to `inkwire serve` when its --help lists them: the room must admit N=500
# receivers (default limit 50), per-connection INFO logging is not what we measure, and
# the /yjs rate limit is off: one writer sending thousands of updates back to back is
# exactly the flood it exists to slow down (the Node server has none).
AUTOSAVE = False  # set by --autosave
INKWIRE_OPTIONS = {
    "--max-users": "1000",
    "--log-level": "WARNING",
    "--set": "collab.yjs_message_rate_limit=null",
}


@functools.cache
def inkwire_options() -> tuple[str, ...]:
    try:
        usage = subprocess.run(
            [str(INKWIRE), "serve", "--help"], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ()
    return tuple(x for k, v in INKWIRE_OPTIONS.items() if k in usage for x in (k, v))


def server_specs(port: int) -> dict[str, ServerSpec]:
    py = str(ROOT / ".venv" / "bin" / "python")
    if not Path(py).exists():
        py = sys.executable
    node = shutil.which("node")
    return {
        "inkwire": ServerSpec(
            "inkwire",
            "inkwire",
            [
                str(INKWIRE),
                "serve",
                "--host",
                HOST,
                "--port",
                str(port),
                # the baselines save nothing: by default neither does inkwire here
                # (--autosave: SQLite as shipped; bench/storage_bench.py measures the cost)
                "--db",
                str(Path(tempfile.gettempdir()) / f"inkwire-bench-{os.getpid()}-{port}.db")
                if AUTOSAVE
                else ":memory:",
                *inkwire_options(),
            ],
            missing=None if INKWIRE.exists() else f"{INKWIRE} not found",
        ),
        "pycrdt": ServerSpec(
            "pycrdt",
            "pycrdt-websocket 0.16.5 + hypercorn",
            [py, str(BENCH_DIR / "baseline_pycrdt.py"), "--host", HOST, "--port", str(port)],
        ),
        "node": ServerSpec(
            "node",
            "Node @y/websocket-server 0.1.1",
            [node or "node", str(NODE_SERVER)],
            env={"HOST": HOST, "PORT": str(port)},
            missing=(
                "node not found"
                if node is None
                else None
                if NODE_SERVER.exists()
                else "bench/node_modules missing: run `cd bench && npm ci`"
            ),
        ),
    }


@contextlib.asynccontextmanager
async def running(spec: ServerSpec):
    port = free_port()
    async with started(server_specs(port)[spec.name], port) as server:
        yield server


# ---------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------


async def run_phase(
    server: CpuMeter,
    writer: YClient,
    receivers: list[YClient],
    frames: list[bytes],
    first: int,
    send_ns: list[int],
    interval: float | None,
    limit_s: float,
) -> PhaseStats:
    """Send `frames` (markers first, first+1, ...) and wait until every receiver has all."""

    async def send() -> None:
        if interval is None:
            for i, frame in enumerate(frames, first):
                send_ns[i] = time.perf_counter_ns()
                writer.write_raw(frame)
        else:
            await send_paced(writer.write_raw, frames, first, send_ns, interval)

    return await measure_phase(server, receivers, first, len(frames), send_ns, send, limit_s)


# ---------------------------------------------------------------------------------------
# Scenarios
# ---------------------------------------------------------------------------------------


@dataclass
class Plan(FanoutPlan):
    paced_rate = 50.0
    paced_events = 150

    @property
    def big_elements(self) -> int:
        return 2_000 if self.quick else 10_000

    @property
    def joins(self) -> int:
        return 3 if self.quick else 5

    @property
    def crowd(self) -> int:
        return 20


async def run_fanout(server: ServerProcess, n: int, plan: Plan) -> FanoutResult:
    result = FanoutResult(n)
    m, paced = plan.burst(n), plan.paced
    frames = small_updates(1 + m + paced)
    send_ns = [0] * len(frames)
    path = f"/yjs/bench-fanout-{n}-{uuid.uuid4().hex[:8]}"
    clients: list[YClient] = []
    server.reset_peak_rss()
    try:
        # The writer joins first, alone: pycrdt-websocket hangs clients that race to
        # create a room (they wait forever on the room's start lock).
        writer = await asyncio.wait_for(join(server.port, path), 10)
        clients.append(writer)
        receivers = await join_many(server.port, path, n, limit_s=60)
        clients += receivers
        warm = await run_phase(server, writer, receivers, frames[:1], 0, send_ns, None, 10)
        if not warm.complete:
            result.error = f"warm-up update reached {warm.delivered}/{n} receivers in 10 s"
            return result
        result.burst = await run_phase(
            server, writer, receivers, frames[1 : 1 + m], 1, send_ns, None, 60
        )
        if not result.burst.complete:
            result.error = "burst incomplete"
            return result
        result.paced = await run_phase(
            server,
            writer,
            receivers,
            frames[1 + m :],
            1 + m,
            send_ns,
            1 / plan.paced_rate,
            10,
        )
        if not result.paced.complete:
            result.error = "paced phase incomplete"
    except (OSError, TimeoutError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.peak_rss = server.peak_rss()
        result.dropped = dropped_receivers(clients)
        close_all(clients)
        await asyncio.sleep(1.0)  # let the server drop the connections before the next N
    return result


@dataclass
class BigDocResult:
    elements: int
    doc_bytes: int = 0
    step2_bytes: int = 0
    join_ms: list[float] = field(default_factory=list)
    crowd: int = 0
    crowd_ms: float = 0.0
    rss_before: int = 0
    peak_rss: int | None = None
    error: str | None = None

    @property
    def join_median_ms(self) -> float:
        return statistics.median(self.join_ms) if self.join_ms else float("nan")


async def timed_join(port: int, path: str) -> tuple[YClient, float]:
    t0 = time.perf_counter_ns()
    client = await join(port, path, keep_step2=True)
    return client, (client.step2_ns - t0) / 1e6


def markers_in(client: YClient) -> int:
    return len(MARKER.findall(client.step2))


async def wait_for_full_doc(port: int, path: str, elements: int, limit_s: float) -> int:
    """Join fresh clients until one receives the whole document; return its SyncStep2 size."""
    async with asyncio.timeout(limit_s):
        while True:
            client, _ = await timed_join(port, path)
            client.close()
            if markers_in(client) == elements:
                return len(client.step2)
            await asyncio.sleep(0.2)


async def run_bigdoc(server: ServerProcess, plan: Plan) -> BigDocResult:
    result = BigDocResult(plan.big_elements)
    frames, result.doc_bytes = big_doc_updates(plan.big_elements)
    path = f"/yjs/bench-bigdoc-{uuid.uuid4().hex[:8]}"
    clients: list[YClient] = []
    try:
        writer = await asyncio.wait_for(join(server.port, path), 10)
        clients.append(writer)
        for frame in frames:
            writer.write_raw(frame)
        result.step2_bytes = await wait_for_full_doc(server.port, path, plan.big_elements, 60)
        for _ in range(plan.joins):
            client, ms = await asyncio.wait_for(timed_join(server.port, path), 30)
            client.close()
            if markers_in(client) != plan.big_elements:
                raise RuntimeError(f"a joiner got {markers_in(client)} elements")
            result.join_ms.append(ms)
            await asyncio.sleep(0.2)
        await run_crowd(server, path, plan, result, clients)
    except (OSError, TimeoutError, RuntimeError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        close_all(clients)
    return result


async def run_crowd(
    server: ServerProcess, path: str, plan: Plan, result: BigDocResult, clients: list[YClient]
) -> None:
    gc.collect()
    await asyncio.sleep(0.5)
    result.rss_before = server.rss()
    server.reset_peak_rss()
    t0 = time.perf_counter_ns()
    async with asyncio.timeout(60):
        crowd = await asyncio.gather(
            *(join(server.port, path, keep_step2=True) for _ in range(plan.crowd))
        )
    result.crowd_ms = (max(c.step2_ns for c in crowd) - t0) / 1e6
    result.crowd = len(crowd)
    clients.extend(crowd)
    await asyncio.sleep(0.3)
    result.peak_rss = server.peak_rss()


# ---------------------------------------------------------------------------------------
# Per-server driver
# ---------------------------------------------------------------------------------------


@dataclass
class ServerResult(BaseServerResult):
    bigdoc: BigDocResult | None = None


async def bench_server(spec: ServerSpec, plan: Plan) -> ServerResult:
    result = ServerResult(spec.name, spec.label)
    if spec.missing:
        result.skipped = spec.missing
        return result
    try:
        async with running(spec) as server:
            for n in plan.ns:
                say(f"  {spec.name}: N={n} ...")
                result.fanout[n] = await run_fanout(server, n, plan)
        async with running(spec) as server:
            say(f"  {spec.name}: big document ...")
            result.bigdoc = await run_bigdoc(server, plan)
    except RuntimeError as exc:
        result.skipped = f"did not start: {exc}"
    return result


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


COLUMNS = (
    "columns: µs/deliv = server CPU per delivery; server, loadgen = CPU % of one core during"
    " the phase\n  (paced µs/deliv includes the server's idle work: timers, pings); upd/frame ="
    " updates per frame a\n  receiver got (coalescing); time = first send to last delivery;"
    " peak RSS = the server's VmHWM during that N"
)


def fmt_phase(phase: PhaseStats | None) -> dict[str, str]:
    keys = ("rate", "latency", "us", "server", "coalesce", "loadgen", "time")
    if phase is None:
        return dict.fromkeys(keys, "-")
    values = (
        f"{phase.deliveries_per_s / 1000:.1f} k",
        f"{phase.latencies_ms[0]:.1f} / {phase.latencies_ms[1]:.1f}",
        f"{phase.server_us_per_delivery:.2f}",
        f"{phase.server_pct:.0f} %",
        f"{phase.updates_per_frame:.1f}",
        f"{phase.loadgen_pct:.0f} %",
        f"{phase.seconds:.2f}",
    )
    return dict(zip(keys, values, strict=True))


def report_server(result: ServerResult, plan: Plan) -> str:
    out = [f"\n== {result.label} =="]
    if result.skipped:
        return "\n".join([*out, f"skipped: {result.skipped}"])
    columns = ["latency", "us", "server", "loadgen", "coalesce"]
    header = ["p50 / p99 ms", "µs/deliv", "server", "loadgen", "upd/frame"]
    burst, paced = [], []
    for n, fan in result.fanout.items():
        b, p = fmt_phase(fan.burst), fmt_phase(fan.paced)
        burst.append([str(n), str(plan.burst(n)), b["time"], b["rate"], *(b[c] for c in columns)])
        burst[-1].append(mb(fan.peak_rss))
        paced.append([str(n), str(plan.paced), *(p[c] for c in columns)])
    out.append("burst: M updates written back to back")
    out.append(table(["N", "M", "time s", "deliveries/s", *header, "peak RSS"], burst))
    out.append(f"paced: updates at {plan.paced_rate:.0f}/s")
    out.append(table(["N", "updates", *header], paced))
    for n, fan in result.fanout.items():
        if fan.error:
            out.append(f"N={n}: {fan.error}{phase_note(fan)}")
        if fan.dropped:
            out.append(f"N={n}: server disconnected clients (close code: count) {fan.dropped}")
    out.append(report_bigdoc(result.bigdoc))
    return "\n".join(out)


def report_bigdoc(big: BigDocResult | None) -> str:
    if big is None:
        return "big doc: not run"
    if big.error and not big.join_ms:
        return f"big doc: {big.error}"
    joins = ", ".join(f"{ms:.0f}" for ms in big.join_ms)
    line = (
        f"big doc ({big.elements} elements, update {big.doc_bytes / 1e6:.1f} MB, "
        f"SyncStep2 {big.step2_bytes / 1e6:.1f} MB): join median {big.join_median_ms:.1f} ms "
        f"[{joins}]"
    )
    if big.crowd:
        line += (
            f"; {big.crowd} at once: all in {big.crowd_ms:.0f} ms, RSS {mb(big.rss_before)}"
            f" before, peak {mb(big.peak_rss)}"
        )
    if big.error:
        line += f"; error: {big.error}"
    return line


def burst_rate(result: ServerResult | None, n: int) -> float | None:
    fan = result.fanout.get(n) if result and not result.skipped else None
    if fan is None or fan.burst is None or not fan.burst.complete:
        return None
    return fan.burst.deliveries_per_s


def paced_p99(result: ServerResult | None, n: int) -> float | None:
    fan = result.fanout.get(n) if result and not result.skipped else None
    if fan is None or fan.paced is None or not fan.paced.complete:
        return None
    return fan.paced.latencies_ms[1]


def handshake(result: ServerResult | None) -> float | None:
    big = result.bigdoc if result and not result.skipped else None
    return big.join_median_ms if big and big.join_ms else None


def ratio_row(
    label: str, ink: float | None, node: float | None, py: float | None, target: str, ok: str
) -> list[str]:
    return [label, ratio(ink, node), ratio(ink, py), ratio(node, py), target, ok]


def verdict(ok: bool | None) -> str:
    return "" if ok is None else "met" if ok else "MISSED"


def report_ratios(results: dict[str, ServerResult], plan: Plan) -> str:
    """inkwire/baseline ratios, and the issue's targets where this run measured them."""
    ink, node, py = (results.get(k) for k in ("inkwire", "node", "pycrdt"))
    header = ["metric", "inkwire/node", "inkwire/pycrdt", "node/pycrdt", "target", "status"]
    rows = []
    for n in plan.ns:
        i, nd, p = burst_rate(ink, n), burst_rate(node, n), burst_rate(py, n)
        target, ok = "", None
        if n == 100:
            target = ">=1.0x node, >=3x pycrdt"
            if i is not None and nd is not None and p is not None:
                ok = i >= nd and i >= 3 * p
        rows.append(ratio_row(f"burst deliveries/s N={n}", i, nd, p, target, verdict(ok)))
    n_big = max(plan.ns)
    i, nd, p = paced_p99(ink, n_big), paced_p99(node, n_big), paced_p99(py, n_big)
    target, ok = "", None
    if n_big == 500:
        target = "<=1.5x node"
        if i is not None and nd is not None:
            ok = i <= 1.5 * nd
    rows.append(ratio_row(f"paced p99 N={n_big} (lower=better)", i, nd, p, target, verdict(ok)))
    i, nd, p = handshake(ink), handshake(node), handshake(py)
    ok = None if i is None or p is None else i <= p
    rows.append(ratio_row("big-doc join (lower=better)", i, nd, p, "<=1.0x pycrdt", verdict(ok)))
    return "\n== ratios ==\n" + table(header, rows)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


SERVERS = ("inkwire", "pycrdt", "node")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = fanout_parser(__doc__, SERVERS, "receiver", "fewer updates, smaller big doc")
    parser.add_argument(
        "--autosave", action="store_true", help="inkwire autosaves to SQLite (as `inkwire serve`)"
    )
    args = fanout_args(parser, SERVERS, argv)
    global AUTOSAVE
    AUTOSAVE = args.autosave
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plan = Plan(ns=args.ns, quick=args.quick)
    pin_self()
    specs = server_specs(0)
    try:
        results = asyncio.run(run_all(args.names, lambda name: bench_server(specs[name], plan)))
    finally:
        for path in Path(tempfile.gettempdir()).glob(f"inkwire-bench-{os.getpid()}-*.db*"):
            path.unlink(missing_ok=True)
    print(
        f"Yjs fan-out: servers on core {SERVER_CORE}, load generator on core {LOADGEN_CORE}; "
        f"burst M per N = {', '.join(f'{n}:{plan.burst(n)}' for n in plan.ns)}; "
        f"paced {plan.paced} updates at {plan.paced_rate:.0f}/s"
    )
    report = functools.partial(report_server, plan=plan)
    ratios = report_ratios(results, plan)
    print_report(COLUMNS, results, report, ratios, report_notes(results), args.json)


if __name__ == "__main__":
    main()
