"""What the fan-out benchmarks share: server processes, measured phases, results, reports.

bench/yjs_fanout.py (Yjs rooms) and bench/relay_fanout.py (JSON relays) measure the
same way: a server subprocess pinned to SERVER_CORE, this process (the load generator)
pinned to LOADGEN_CORE; per phase, events stamped with `time.perf_counter_ns()` as they
are written, markers found in what each receiver reads (a Tracker per phase), the server's
CPU time over the phase from psutil. This module is that machinery and the report around
it; each benchmark keeps its own clients, servers, scenarios and ratio targets.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psutil

HOST = "127.0.0.1"
BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
SERVER_CORE = 0
LOADGEN_CORE = 1
LOADGEN_BUSY_PCT = 80  # above this the load generator may be what limits a burst


# ---------------------------------------------------------------------------------------
# Server processes
# ---------------------------------------------------------------------------------------


@dataclass
class ServerSpec:
    name: str
    label: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    missing: str | None = None  # why it cannot run, if known before starting
    core: int | None = SERVER_CORE  # the core it is pinned to; None: not pinned


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A server subprocess pinned to its spec's core, in its own process group."""

    def __init__(self, spec: ServerSpec, port: int) -> None:
        self.spec = spec
        self.port = port
        RESULTS_DIR.mkdir(exist_ok=True)
        self.log_path = RESULTS_DIR / f"{spec.name}.log"
        self.log = self.log_path.open("ab")
        self.log.write(f"\n=== {time.ctime()} {' '.join(spec.argv)}\n".encode())
        self.log.flush()
        self.log_start = self.log.tell()
        pin = [] if spec.core is None else ["taskset", "-c", str(spec.core)]
        argv = [*pin, *spec.argv]
        env = {**os.environ, **spec.env}
        self.proc = subprocess.Popen(
            argv, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        self.ps = psutil.Process(self.proc.pid)

    async def wait_listening(self, limit_s: float = 20.0) -> None:
        deadline = time.monotonic() + limit_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"exited with code {self.proc.returncode}: {self.log_tail()}")
            try:
                _, writer = await asyncio.open_connection(HOST, self.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            writer.close()
            return
        raise RuntimeError(f"not listening on port {self.port} after {limit_s:.0f} s")

    def tree(self) -> list[psutil.Process]:
        try:
            return [self.ps, *self.ps.children(recursive=True)]
        except psutil.Error:
            return []

    def cpu_seconds(self) -> float:
        total = 0.0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                total += times.user + times.system
        return total

    def rss(self) -> int:
        total = 0
        for proc in self.tree():
            with contextlib.suppress(psutil.Error):
                total += proc.memory_info().rss
        return total

    def reset_peak_rss(self) -> None:
        for proc in self.tree():
            with contextlib.suppress(OSError):
                Path(f"/proc/{proc.pid}/clear_refs").write_text("5")

    def peak_rss(self) -> int | None:
        total = 0
        for proc in self.tree():
            try:
                status = Path(f"/proc/{proc.pid}/status").read_text()
            except OSError:
                continue
            for line in status.splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
        return total or None

    def log_tail(self, lines: int = 8) -> str:
        """The last lines this run of the server wrote to its log."""
        self.log.flush()
        with self.log_path.open("rb") as log:
            log.seek(self.log_start)
            text = log.read().decode(errors="replace").splitlines()[-lines:]
        return " | ".join(text) or "(no output)"

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.log.close()


@contextlib.asynccontextmanager
async def started(
    spec: ServerSpec, port: int, settle_s: float = 0.0
) -> AsyncIterator[ServerProcess]:
    """Run ``spec`` on ``port`` until the block ends; ``settle_s``: a pause once it listens."""
    server = ServerProcess(spec, port)
    try:
        await server.wait_listening()
        if settle_s:
            await asyncio.sleep(settle_s)
        yield server
    finally:
        server.stop()


# ---------------------------------------------------------------------------------------
# Phases
# ---------------------------------------------------------------------------------------


class Tracker:
    """Delivery bookkeeping of one phase, shared by all receivers of a room."""

    def __init__(self, send_ns: list[int], receivers: int, count: int) -> None:
        self.send_ns = send_ns
        self.count = count
        self.pending = receivers
        self.failed = 0
        self.t_done = 0
        self.done = asyncio.Event()

    def receiver_finished(self, now: int, ok: bool = True) -> None:
        self.failed += not ok
        self.pending -= 1
        if self.pending == 0:
            self.t_done = now
            self.done.set()


@dataclass
class PhaseStats:
    updates: int
    receivers: int
    delivered: int
    seconds: float
    latencies_ms: tuple[float, float]  # p50, p99
    server_cpu_s: float
    loadgen_cpu_s: float
    frames: int
    failed: int  # receivers that did not get every marker (timed out or disconnected)
    extra: int  # markers received twice or unexpected
    complete: bool

    @property
    def deliveries_per_s(self) -> float:
        return self.delivered / self.seconds if self.seconds else 0.0

    @property
    def server_us_per_delivery(self) -> float:
        return 1e6 * self.server_cpu_s / self.delivered if self.delivered else float("nan")

    @property
    def server_pct(self) -> float:
        return 100 * self.server_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def loadgen_pct(self) -> float:
        return 100 * self.loadgen_cpu_s / self.seconds if self.seconds else 0.0

    @property
    def updates_per_frame(self) -> float:
        return self.delivered / self.frames if self.frames else 0.0


def percentile(sorted_values: list[int], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] / 1e6


@contextlib.contextmanager
def no_gc() -> Iterator[None]:
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


class Receiver(Protocol):
    """A load-generator client that records marker arrivals (yjs_fanout.YClient and kin)."""

    frames: int
    lost: bool
    close_code: int | None

    def begin(self, tracker: Tracker) -> None: ...

    def settle(self, send_ns: list[int], first: int, count: int) -> tuple[list[int], int]: ...


class CpuMeter(Protocol):
    """What a phase charges its CPU time to: a ServerProcess, or several together."""

    def cpu_seconds(self) -> float: ...


async def measure_phase(
    server: CpuMeter,
    receivers: Sequence[Receiver],
    first: int,
    count: int,
    send_ns: list[int],
    send: Callable[[], Awaitable[None]],
    limit_s: float,
) -> PhaseStats:
    """Run ``send`` (it writes events first..first+count-1, stamping ``send_ns``) and wait
    until every receiver has them all, or ``limit_s``; what it cost and how long it took."""
    tracker = Tracker(send_ns, len(receivers), count)
    for client in receivers:
        client.begin(tracker)
    cpu_server, cpu_self = server.cpu_seconds(), time.process_time()
    with no_gc():
        t0 = time.perf_counter_ns()
        await send()
        try:
            async with asyncio.timeout(limit_s):
                await tracker.done.wait()
        except TimeoutError:
            tracker.t_done = time.perf_counter_ns()
        cpu_server = server.cpu_seconds() - cpu_server
        cpu_self = time.process_time() - cpu_self
    latencies: list[int] = []
    extra = 0
    for client in receivers:
        mine, more = client.settle(send_ns, first, count)
        latencies += mine
        extra += more
    latencies.sort()
    return PhaseStats(
        updates=count,
        receivers=len(receivers),
        delivered=len(latencies),
        seconds=(tracker.t_done - t0) / 1e9,
        latencies_ms=(percentile(latencies, 0.50), percentile(latencies, 0.99)),
        server_cpu_s=cpu_server,
        loadgen_cpu_s=cpu_self,
        frames=sum(client.frames for client in receivers),
        failed=tracker.failed + tracker.pending,
        extra=extra,
        complete=len(latencies) == count * len(receivers),
    )


async def send_paced(
    write: Callable[[bytes], None],
    payloads: Sequence[bytes],
    first: int,
    send_ns: list[int],
    interval: float,
) -> None:
    """Write one payload every ``interval`` seconds, stamping each in ``send_ns``."""
    start = time.perf_counter()
    for k, payload in enumerate(payloads):
        delay = start + k * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        send_ns[first + k] = time.perf_counter_ns()
        write(payload)


@dataclass
class FanoutResult:
    n: int
    burst: PhaseStats | None = None
    paced: PhaseStats | None = None
    peak_rss: int | None = None
    error: str | None = None
    dropped: dict[str, int] = field(default_factory=dict)  # close code -> receivers


@dataclass
class FanoutPlan:
    """The Ns to run, and how many events each phase sends."""

    ns: list[int]
    quick: bool
    paced_rate = 100.0  # events per second in the paced phase
    paced_events = 200  # ... and how many (50 with --quick)

    def burst(self, n: int) -> int:
        m = max(400, min(5000, 200_000 // n))
        return m // 4 if self.quick else m

    @property
    def paced(self) -> int:
        return 50 if self.quick else self.paced_events


@dataclass
class BaseServerResult:
    name: str
    label: str
    fanout: dict[int, Any] = field(default_factory=dict)  # N -> a FanoutResult
    skipped: str | None = None  # why it did not run


def dropped_receivers(clients: Sequence[Receiver]) -> dict[str, int]:
    """Receivers the server disconnected during the run, by close code."""
    codes: dict[str, int] = {}
    for client in clients:
        if client.lost:
            code = str(client.close_code or "no close frame")
            codes[code] = codes.get(code, 0) + 1
    return codes


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def mb(value: int | None) -> str:
    return f"{value / 2**20:.0f} MB" if value else "-"


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in rows]
    head = "  ".join(c.rjust(w) for c, w in zip(header, widths, strict=True))
    return "\n".join([head, "-" * len(head), *lines])


def phase_note(fan: FanoutResult, who: str = "receivers") -> str:
    for name, phase in (("burst", fan.burst), ("paced", fan.paced)):
        if phase is not None and not phase.complete:
            total = phase.updates * phase.receivers
            return (
                f" ({name}: {phase.delivered}/{total} deliveries, "
                f"{phase.failed} {who} unfinished or disconnected, "
                f"{phase.extra} duplicate or unexpected markers)"
            )
    return ""


def ratio(a: float | None, b: float | None, spec: str = ".3g") -> str:
    return f"{a / b:{spec}}x" if a and b else "n/a"


def report_notes(results: dict[str, Any], idle: bool = False) -> str:
    """Phases whose rate is a lower bound (a busy load generator); with ``idle``, also
    bursts where neither side was saturated (something else held a core)."""
    notes = []
    for result in results.values():
        for n, fan in result.fanout.items():
            for name, phase in (("burst", fan.burst), ("paced", fan.paced)):
                if (
                    phase is not None
                    and phase.loadgen_pct >= LOADGEN_BUSY_PCT
                    and phase.server_pct < 90
                ):
                    notes.append(
                        f"{result.name} N={n} {name}: load generator busy "
                        f"{phase.loadgen_pct:.0f} % of its core, server {phase.server_pct:.0f} %:"
                        " the rate may be a lower bound"
                    )
                elif (
                    idle
                    and name == "burst"
                    and phase is not None
                    and phase.server_pct < 80
                    and phase.loadgen_pct < LOADGEN_BUSY_PCT
                ):
                    notes.append(
                        f"{result.name} N={n} {name}: server {phase.server_pct:.0f} %, load "
                        f"generator {phase.loadgen_pct:.0f} % of a core: neither saturated, so "
                        "something else held core 0 or 1 (see the load averages): the rate is "
                        "not comparable, µs/deliv is the steadier figure"
                    )
    return "\n".join(["", "notes:", *notes]) if notes else ""


def print_report(
    columns: str,
    results: dict[str, Any],
    servers: Callable[[Any], str],
    ratios: str,
    notes: str,
    json_path: Path | None,
) -> None:
    """The column legend, a report per server, the ratios and notes; raw results to JSON."""
    print(columns)
    for result in results.values():
        print(servers(result))
    print(ratios)
    print(notes)
    if json_path:
        json_path.write_text(json.dumps({k: asdict(v) for k, v in results.items()}, indent=1))


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def pin_self() -> None:
    if len(os.sched_getaffinity(0)) < 2 or (os.cpu_count() or 1) < 2:
        say("warning: fewer than 2 cores: server and load generator share a core")
        return
    os.sched_setaffinity(0, {LOADGEN_CORE})


R = TypeVar("R")


async def run_all(names: Sequence[str], bench: Callable[[str], Awaitable[R]]) -> dict[str, R]:
    """``bench`` each server in turn (results have ``skipped``: why it did not run)."""
    results = {}
    for name in names:
        say(f"{name}: starting")
        result = results[name] = await bench(name)
        skipped = getattr(result, "skipped", None)
        if skipped:
            say(f"{name}: skipped: {skipped}")
    return results


def fanout_parser(
    doc: str, servers: Sequence[str], who: str, quick: str
) -> argparse.ArgumentParser:
    """The options every fan-out benchmark takes: --n, --servers, --quick, --json."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--n", help=f"{who} counts, comma-separated (default 10,100,500)")
    parser.add_argument("--servers", default=",".join(servers))
    parser.add_argument("--quick", action="store_true", help=quick)
    parser.add_argument("--json", type=Path, help="also write the raw results to this file")
    return parser


def fanout_args(
    parser: argparse.ArgumentParser, servers: Sequence[str], argv: list[str] | None
) -> argparse.Namespace:
    """Parse, adding ``ns`` (the Ns to run) and ``names`` (the servers, checked)."""
    args = parser.parse_args(argv)
    default_n = "10,100" if args.quick else "10,100,500"
    args.ns = [int(x) for x in (args.n or default_n).split(",") if x]
    args.names = [x.strip() for x in args.servers.split(",") if x.strip()]
    unknown = set(args.names) - set(servers)
    if unknown:
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    return args
