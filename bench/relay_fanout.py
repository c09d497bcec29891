"""JSON relay fan-out benchmark: the inkwire relay against websockets.broadcast and bare hypercorn.

What it measures
----------------
Each server runs as a subprocess pinned to core 0 (`taskset -c 0`); this process, the
load generator, pins itself to core 1. Four servers run one after another, each freshly
started:

* inkwire        `.venv/bin/inkwire relay dhruva --host 127.0.0.1 --port P
                 --log-level WARNING`; subscribers get one event per WebSocket frame
* inkwire-batch  the same server and command; subscribers opt in to batching with
                 `ws://.../?batch=1` (pending events newline-joined into one frame)
* inkwire-ws     the same server and command, one event per frame; the publisher is a
                 relay WebSocket sending `publish` requests instead of `POST /publish`
                 (one per event paced, `{"events": [...]}` batches in the burst)
* websockets     a plain `websockets` 17 server, `websockets.broadcast` to every
                 subscriber (bench/baseline_broadcast.py)
* hypercorn      a bare ASGI relay on hypercorn: `await send(...)` to each subscriber in
                 a loop (bench/baseline_asgi_relay.py), with the inkwire relay's
                 hypercorn settings (backlog 1024, max_app_queue_size 128, no pings)

For each N (default 10, 100, 500), N subscribers connect. On inkwire each waits for
the welcome, sends `{"type":"request","event":"subscribe","data":{"channel":
"adapter:bench"},"id":"s1"}` and counts as joined on the response; on the baselines
a subscriber is joined when the server's one-line welcome arrives (sent after it is
registered).

The events are the same ~100 B JSON text everywhere:
`{"event":"adapter.activated","data":{"adapter_id":"bench","repo":"acme/widgets-m000123;",
"version":"1.4.2","config":{"region":"eu-1"}}}` -- a dhruva catalog event on channel
`adapter:bench`, each with a unique marker `m000123;` that a subscriber finds with a
regex over the raw bytes (one event per frame or many per frame alike).

Publisher. The baselines get one WebSocket text frame per event from one publisher
connection (`/pub`) and forward it verbatim. The inkwire relay takes events from
outside the process through `POST /publish` (inkwire-ws: `publish` requests over a relay
WebSocket, batched and paced alike), over one keep-alive HTTP/1.1 connection: in the burst
phase as `POST /publish` batches of PUBLISH_BATCH events written back to back (so the
HTTP cost per event is amortised as the baselines' per-frame read cost is), in the
paced phase one POST per event (each event goes out as it happens). inkwire validates
every event against the catalog, stamps the envelope (id, timestamp, offset, epoch),
keeps history and the projection, and also places the event on the `lifecycle`
channel; the baselines do none of that. Its deliveries are therefore larger (the
envelope, ~290 B) than the baselines' (~110 B).

1. warm-up: one event must reach every subscriber, else the server "does not deliver".
2. burst:   M events sent back to back. deliveries/s = N*M / (first send -> the moment
            the last subscriber holds every marker).
3. paced:   events at 100/s. Latency = receive time - send time, both
            `time.perf_counter_ns()` in this one process.

Reported per phase: deliveries/s, p50/p99 latency, server CPU µs per delivery (psutil
CPU time of the server's process tree over the phase / deliveries), server and
load-generator CPU as % of one core (a busy load generator beside a less busy server
makes the rate a lower bound; the notes say so), events per received frame, and RSS per
connection: (server RSS with N joined - RSS before they joined) / N.

The load generator is the lean asyncio.Protocol client of bench/yjs_fanout.py (minimal
HTTP upgrade, masked client frames, a parser for the server's frames, pings answered);
a receiver counts a chunk that is exactly one whole text frame (each paced event arrives
so) with one regex and no frame parsing, so that 500 receivers at 100 events/s leave the
load generator's core room to spare;
server processes, the timed phase and the report come from bench/common.py, as there.

Run
---
    .venv/bin/python bench/relay_fanout.py [--n 10,100,500]
        [--servers inkwire,inkwire-batch,inkwire-ws,websockets,hypercorn] [--quick]
        [--json out.json]

Server logs go to bench/results/<server>.log (git-ignored). Everything listens and
connects on 127.0.0.1 only; every phase has a timeout; every server is killed on exit.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import gc
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

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
from yjs_fanout import YClient, client_frame

CHANNEL = "adapter:bench"
EVENT = "adapter.activated"
PUBLISH_BATCH = 100  # events per POST /publish in the burst phase (inkwire only)
SUBSCRIBE = json.dumps(
    {"type": "request", "event": "subscribe", "data": {"channel": CHANNEL}, "id": "s1"}
).encode()
SERVERS = ("inkwire", "inkwire-batch", "inkwire-ws", "websockets", "hypercorn")


def event_item(i: int) -> dict:
    data = {
        "adapter_id": "bench",
        "repo": f"acme/widgets-m{i:06d};",
        "version": "1.4.2",
        "config": {"region": "eu-1"},
    }
    return {"event": EVENT, "data": data}


def dumps(value: object) -> bytes:
    return json.dumps(value, separators=(",", ":")).encode()


# ---------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------

INKWIRE = ROOT / ".venv" / "bin" / "inkwire"


def python() -> str:
    py = ROOT / ".venv" / "bin" / "python"
    return str(py) if py.exists() else sys.executable


def server_spec(name: str, port: int) -> ServerSpec:
    if name.startswith("inkwire"):
        label = (
            "inkwire relay, "
            + {
                "inkwire": "1 event/frame",
                "inkwire-batch": "batched (?batch=1)",
                "inkwire-ws": "1 event/frame, published over a WebSocket (`publish` requests)",
            }[name]
        )
        argv = [str(INKWIRE), "relay", "dhruva", "--host", HOST, "--port", str(port)]
        return ServerSpec(
            name,
            label,
            [*argv, "--log-level", "WARNING"],
            missing=None if INKWIRE.exists() else f"{INKWIRE} not found",
        )
    script, label = {
        "websockets": ("baseline_broadcast.py", "websockets 17.4 broadcast"),
        "hypercorn": ("baseline_asgi_relay.py", "bare hypercorn ASGI relay"),
    }[name]
    return ServerSpec(
        name, label, [python(), str(BENCH_DIR / script), "--host", HOST, "--port", str(port)]
    )


@contextlib.asynccontextmanager
async def running(name: str):
    port = free_port()
    # imports done, listening: let it settle before RSS/CPU
    async with started(server_spec(name, port), port, settle_s=0.3) as server:
        yield server


# ---------------------------------------------------------------------------------------
# Clients
# ---------------------------------------------------------------------------------------


class JsonClient(YClient):
    """A JSON relay client: joined on the subscribe response (inkwire) or the welcome."""

    def __init__(self, port: int, path: str, inkwire: bool) -> None:
        super().__init__(port, path)
        self.inkwire = inkwire

    def on_upgraded(self) -> None:
        pass  # joined on the welcome (or the subscribe response), see on_frame

    def data_received(self, data: bytes) -> None:
        """The receivers' hot path: a chunk that is exactly one whole text frame (each
        paced event arrives so) is counted with one regex and no frame parsing; anything
        else takes the general path. With 500 receivers at 100 events/s the load
        generator handles 50 000 reads a second on its one core."""
        n = len(data)
        if (
            self.remaining
            and not self.buf
            and n > 2
            and data[0] == 0x81
            and (
                data[1] == n - 2 < 126
                or (data[1] == 126 and n > 4 and (data[2] << 8 | data[3]) == n - 4 >= 126)
            )
        ):
            self.frames += 1
            self.count_markers(time.perf_counter_ns(), n, data)
            return
        super().data_received(data)

    def on_frame(self, opcode: int, start: int, end: int, now: int) -> None:
        self.frames += 1
        if opcode == 0x1 and not self.joined.done():
            text = bytes(self.buf[start:end])
            if not self.inkwire:
                self.joined.set_result(None)
            elif b'"session.created"' in text:
                self.send(SUBSCRIBE, opcode=0x1)
            if self.inkwire and b'"type":"response"' in text.replace(b" ", b""):
                self.joined.set_result(None)
        elif opcode in (0x8, 0x9):
            super().on_frame(opcode, start, end, now)


async def connect(port: int, path: str, inkwire: bool) -> JsonClient:
    loop = asyncio.get_running_loop()
    _, client = await loop.create_connection(lambda: JsonClient(port, path, inkwire), HOST, port)
    await client.joined
    return client


async def connect_many(port: int, path: str, inkwire: bool, count: int) -> list[JsonClient]:
    gate = asyncio.Semaphore(50)

    async def one() -> JsonClient:
        async with gate:
            return await connect(port, path, inkwire)

    async with asyncio.timeout(60):
        return list(await asyncio.gather(*(one() for _ in range(count))))


class WsPublisher(JsonClient):
    """A relay connection that publishes with ``publish`` requests (it follows nothing)."""

    def __init__(self, port: int) -> None:
        super().__init__(port, "/", inkwire=True)
        self.accepted = 0
        self.refused: list[str] = []

    def on_frame(self, opcode: int, start: int, end: int, now: int) -> None:
        if opcode != 0x1:
            super().on_frame(opcode, start, end, now)
            return
        text = bytes(self.buf[start:end])
        if not self.joined.done():
            self.joined.set_result(None)  # the welcome
        elif b'"type":"response"' in text:
            self.accepted += text.count(b'"offsets"')
        elif b'"type":"error"' in text:
            self.refused.append(text[:300].decode(errors="replace"))

    def data_received(self, data: bytes) -> None:
        YClient.data_received(self, data)  # not a receiver: no fast path


def publish_request(items: list[dict], i: int) -> bytes:
    data = items[0] if len(items) == 1 else {"events": items}
    return dumps({"type": "request", "event": "publish", "data": data, "id": f"p{i}"})


class HttpPublisher(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection for POST /publish (requests may be pipelined)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.accepted = 0
        self.refused: list[str] = []
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while True:
            head_end = self.buf.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = bytes(self.buf[:head_end]).lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            if len(self.buf) < head_end + 4 + length:
                return
            status = head.split(b"\r\n", 1)[0]
            if b" 202 " in status:
                self.accepted += 1
            else:
                body = bytes(self.buf[head_end + 4 : head_end + 4 + length])
                self.refused.append(f"{status.decode()} {body[:200].decode(errors='replace')}")
            del self.buf[: head_end + 4 + length]

    def request(self, body: bytes) -> bytes:
        return (
            f"POST /publish HTTP/1.1\r\nHost: {HOST}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body

    def write_raw(self, data: bytes) -> None:
        assert self.transport is not None
        self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


@dataclass
class Publisher:
    """What the load generator writes for events first..: the same events for every server."""

    conn: JsonClient | HttpPublisher
    http: bool
    ws_requests: bool = False  # inkwire-ws: ``publish`` requests over a relay WebSocket

    def burst_chunks(self, first: int, count: int) -> list[tuple[range, bytes]]:
        """(events, bytes to write) for a burst: batches, or one frame per event."""
        if self.ws_requests:
            chunks = []
            for lo in range(first, first + count, PUBLISH_BATCH):
                hi = min(lo + PUBLISH_BATCH, first + count)
                items = [event_item(i) for i in range(lo, hi)]
                chunks.append((range(lo, hi), client_frame(publish_request(items, lo), 0x1)))
            return chunks
        if not self.http:
            return [
                (range(i, i + 1), client_frame(dumps(event_item(i)), 0x1))
                for i in range(first, first + count)
            ]
        assert isinstance(self.conn, HttpPublisher)
        chunks = []
        for lo in range(first, first + count, PUBLISH_BATCH):
            hi = min(lo + PUBLISH_BATCH, first + count)
            body = dumps([event_item(i) for i in range(lo, hi)])
            chunks.append((range(lo, hi), self.conn.request(body)))
        return chunks

    def single(self, i: int) -> bytes:
        if self.ws_requests:
            return client_frame(publish_request([event_item(i)], i), 0x1)
        if self.http:
            assert isinstance(self.conn, HttpPublisher)
            return self.conn.request(dumps(event_item(i)))
        return client_frame(dumps(event_item(i)), 0x1)


async def open_publisher(name: str, port: int) -> Publisher:
    loop = asyncio.get_running_loop()
    if name == "inkwire-ws":
        _, ws = await loop.create_connection(lambda: WsPublisher(port), HOST, port)
        await asyncio.wait_for(ws.joined, 10)
        return Publisher(ws, http=False, ws_requests=True)
    if name.startswith("inkwire"):
        _, conn = await loop.create_connection(lambda: HttpPublisher(port), HOST, port)
        return Publisher(conn, http=True)
    return Publisher(await asyncio.wait_for(connect(port, "/pub", False), 10), http=False)


# ---------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------


async def run_phase(
    server: CpuMeter,
    publisher: Publisher,
    receivers: list[JsonClient],
    first: int,
    count: int,
    send_ns: list[int],
    interval: float | None,
    limit_s: float,
) -> PhaseStats:
    """Publish events first..first+count-1 and wait until every subscriber has them all."""
    chunks = publisher.burst_chunks(first, count) if interval is None else []
    singles = [publisher.single(i) for i in range(first, first + count)] if interval else []
    write = publisher.conn.write_raw

    async def send() -> None:
        if interval is None:
            for events, data in chunks:
                now = time.perf_counter_ns()
                for i in events:
                    send_ns[i] = now
                write(data)
        else:
            await send_paced(write, singles, first, send_ns, interval)

    return await measure_phase(server, receivers, first, count, send_ns, send, limit_s)


Plan = FanoutPlan  # 100 paced events/s, 200 of them


@dataclass
class RelayFanoutResult(FanoutResult):
    rss_before: int = 0
    rss_joined: int = 0

    @property
    def rss_per_conn(self) -> float | None:
        if not self.rss_joined or not self.n:
            return None
        return (self.rss_joined - self.rss_before) / self.n


async def run_fanout(name: str, server: ServerProcess, n: int, plan: Plan) -> RelayFanoutResult:
    result = RelayFanoutResult(n)
    m, paced = plan.burst(n), plan.paced
    send_ns = [0] * (1 + m + paced)
    inkwire = name.startswith("inkwire")
    path = "/?batch=1" if name == "inkwire-batch" else "/"
    receivers: list[JsonClient] = []
    publisher: Publisher | None = None
    gc.collect()
    result.rss_before = server.rss()
    server.reset_peak_rss()
    try:
        publisher = await open_publisher(name, server.port)
        receivers = await connect_many(server.port, path, inkwire, n)
        await asyncio.sleep(0.2)
        result.rss_joined = server.rss()
        warm = await run_phase(server, publisher, receivers, 0, 1, send_ns, None, 10)
        if not warm.complete:
            result.error = f"warm-up event reached {warm.delivered}/{n} subscribers in 10 s"
            return result
        result.burst = await run_phase(server, publisher, receivers, 1, m, send_ns, None, 60)
        if not result.burst.complete:
            result.error = "burst incomplete"
            return result
        result.paced = await run_phase(
            server, publisher, receivers, 1 + m, paced, send_ns, 1 / plan.paced_rate, 10
        )
        if not result.paced.complete:
            result.error = "paced phase incomplete"
    except (OSError, TimeoutError, ConnectionError) as exc:
        result.error = f"{type(exc).__name__}: {exc}"
    finally:
        result.peak_rss = server.peak_rss()
        result.dropped = dropped_receivers(receivers)
        if publisher is not None:
            if isinstance(publisher.conn, HttpPublisher | WsPublisher) and publisher.conn.refused:
                refused = publisher.conn.refused
                result.error = f"{len(refused)} POSTs refused, first: {refused[0]}"
            publisher.conn.close()
        for client in receivers:
            client.close()
        await asyncio.sleep(1.0)  # let the server drop the connections before the next N
    return result


ServerResult = BaseServerResult


async def bench_server(name: str, plan: Plan) -> ServerResult:
    spec = server_spec(name, 0)
    result = ServerResult(name, spec.label)
    if spec.missing:
        result.skipped = spec.missing
        return result
    try:
        async with running(name) as server:
            for n in plan.ns:
                say(f"  {name}: N={n} ...")
                result.fanout[n] = await run_fanout(name, server, n, plan)
    except RuntimeError as exc:
        result.skipped = f"did not start: {exc}"
    return result


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------

COLUMNS = (
    "columns: µs/deliv = server CPU per delivery; server, loadgen = CPU % of one core during"
    " the phase\n  (paced µs/deliv includes the server's idle work); ev/frame = events per"
    " frame a subscriber got;\n  time = first send to last delivery; RSS/conn = (server RSS"
    " with N joined - before) / N;\n  peak RSS = the server's VmHWM during that N"
)


def fmt_phase(phase: PhaseStats | None) -> list[str]:
    if phase is None:
        return ["-"] * 7
    return [
        f"{phase.seconds:.2f}",
        f"{phase.deliveries_per_s / 1000:.1f} k",
        f"{phase.latencies_ms[0]:.1f} / {phase.latencies_ms[1]:.1f}",
        f"{phase.server_us_per_delivery:.2f}",
        f"{phase.server_pct:.0f} %",
        f"{phase.loadgen_pct:.0f} %",
        f"{phase.updates_per_frame:.1f}",
    ]


def kb(value: float | None) -> str:
    return f"{value / 1024:.1f} KiB" if value is not None else "-"


def report_server(result: ServerResult, plan: Plan) -> str:
    out = [f"\n== {result.label} =="]
    if result.skipped:
        return "\n".join([*out, f"skipped: {result.skipped}"])
    header = ["time s", "deliv/s", "p50 / p99 ms", "µs/deliv", "server", "loadgen", "ev/frame"]
    burst, paced = [], []
    for n, fan in result.fanout.items():
        burst.append([str(n), str(plan.burst(n)), *fmt_phase(fan.burst)])
        burst[-1] += [kb(fan.rss_per_conn), mb(fan.peak_rss)]
        paced.append([str(n), str(plan.paced), *fmt_phase(fan.paced)[1:]])
    out.append("burst: M events back to back")
    out.append(table(["N", "M", *header, "RSS/conn", "peak RSS"], burst))
    out.append(f"paced: events at {plan.paced_rate:.0f}/s")
    out.append(table(["N", "events", *header[1:]], paced))
    for n, fan in result.fanout.items():
        if fan.error:
            out.append(f"N={n}: {fan.error}{phase_note(fan, 'subscribers')}")
        if fan.dropped:
            out.append(f"N={n}: server disconnected subscribers (close code: count) {fan.dropped}")
    return "\n".join(out)


def phase_of(result: ServerResult | None, n: int, which: str) -> PhaseStats | None:
    fan = result.fanout.get(n) if result and not result.skipped else None
    phase = getattr(fan, which) if fan else None
    return phase if phase is not None and phase.complete else None


def ratio2(a: float | None, b: float | None) -> str:
    return ratio(a, b, ".2f")


def report_ratios(results: dict[str, ServerResult], plan: Plan) -> str:
    """inkwire's variants against the baselines; ink-ws = inkwire-ws (publish over WS)."""
    servers = [results.get(k) for k in SERVERS]  # ink, batch, ink-ws, websockets, hypercorn
    header = ["metric", "ink/hyper", "ink/ws", "batch/hyper", "batch/ws", "ink-ws/ws"]
    header += ["target", "status"]
    rows = []

    def values(which: str, n: int, get: Callable[[PhaseStats], float]) -> list[float | None]:
        return [get(p) if (p := phase_of(r, n, which)) else None for r in servers]

    def add(label: str, vals: list[float | None], target: str = "", ok: bool | None = None):
        i, b, iw, w, h = vals
        status = "" if ok is None else "met" if ok else "MISSED"
        cells = [ratio2(i, h), ratio2(i, w), ratio2(b, h), ratio2(b, w), ratio2(iw, w)]
        rows.append([label, *cells, target, status])

    def at_most_ws(vals: list[float | None]) -> bool | None:
        """The paced target: each inkwire variant measured costs at most the websockets relay."""
        mine = [v for v in (vals[0], vals[2]) if v is not None]
        return None if vals[3] is None or not mine else all(v <= vals[3] for v in mine)

    for n in plan.ns:
        rates = values("burst", n, lambda p: p.deliveries_per_s)
        i, b, _, w, h = rates
        target, ok = "", None
        if n == 100:
            target = "ink >= 0.9x hyper, batch >= 1.0x ws"
            if None not in (i, b, w, h):
                ok = i >= 0.9 * h and b >= w  # type: ignore[operator]
        add(f"burst deliveries/s N={n}", rates, target, ok)
    for n in plan.ns:
        add(f"burst µs/delivery N={n} (lower=better)", values("burst", n, _cpu))
    for n in plan.ns:
        cpu = values("paced", n, _cpu)
        add(f"paced µs/delivery N={n} (lower=better)", cpu, "<= 1.0x ws", at_most_ws(cpu))
    for n in plan.ns:
        p99 = values("paced", n, lambda p: p.latencies_ms[1])
        add(f"paced p99 N={n} (lower=better)", p99, "<= 1.0x ws", at_most_ws(p99))
    return "\n== ratios ==\n" + table(header, rows)


def _cpu(phase: PhaseStats) -> float:
    return phase.server_us_per_delivery


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = fanout_parser(__doc__, SERVERS, "subscriber", "fewer events (M/4, 50 paced)")
    return fanout_args(parser, SERVERS, argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    plan = Plan(ns=args.ns, quick=args.quick)
    pin_self()
    load_before = os.getloadavg()
    results = asyncio.run(run_all(args.names, lambda name: bench_server(name, plan)))
    load_after = os.getloadavg()
    sample = dumps(event_item(0))
    print(
        f"Relay fan-out: servers on core {SERVER_CORE}, load generator on core {LOADGEN_CORE}; "
        f"event {len(sample)} B; burst M per N = "
        f"{', '.join(f'{n}:{plan.burst(n)}' for n in plan.ns)} (inkwire: POST /publish "
        f"batches of {PUBLISH_BATCH}); paced {plan.paced} events at {plan.paced_rate:.0f}/s"
    )
    cores = os.cpu_count() or 0
    before = ", ".join(f"{x:.2f}" for x in load_before)
    after = ", ".join(f"{x:.2f}" for x in load_after)
    print(f"machine: {cores} cores; load average (1, 5, 15 min) {before} at start, {after} at end")
    report = functools.partial(report_server, plan=plan)
    notes = report_notes(results, idle=True)
    print_report(COLUMNS, results, report, report_ratios(results, plan), notes, args.json)


if __name__ == "__main__":
    main()
