"""What holds a server's event loop: per loop turn, each callback's CPU time and what it ran.

A quiet client's message waits for whatever holds the loop when it arrives, so a
fairness p99 is made of long loop turns. This probe, loaded into a server
subprocess (``site_dir()`` holds a ``sitecustomize`` that installs it when
``LOOP_PROBE_OUT`` is set; put that directory first on the server's
``PYTHONPATH``), wraps asyncio's ``Handle._run`` and ``BaseEventLoop._run_once``
and writes one JSON line per loop turn whose callbacks took more than
``LOOP_PROBE_TURN_US`` (default 1 000) µs of thread CPU time: the turn's wall
time, and each callback over ``LOOP_PROBE_STEP_US`` (100) µs of CPU with the task
it stepped, where the task suspended (its innermost frames), and for a relay or
``/yjs`` connection's task, the peer and how many requests the step handled.
``LOOP_PROBE_PROFILE=FILE``: cProfile the callbacks that take
``LOOP_PROBE_PROFILE_US`` (0) µs of CPU or more, added up in FILE (pstats),
written once a second. Each turn notes its garbage collections (generation, µs).
Thread CPU time, not wall time, is the figure to read: it holds when other jobs
share the machine. ``bench/connections.py --probe FILE`` runs the fairness phase
with it; ``python bench/loop_probe.py FILE`` summarises a file (``--before PEER``: what the
turns a quiet client's messages passed cost).

It costs the server a few µs per callback: figures taken with it are not the
benchmark's.
"""

from __future__ import annotations

import argparse
import asyncio
import asyncio.base_events
import asyncio.events
import collections
import cProfile
import gc
import json
import os
import pstats
import sys
import tempfile
import time
from pathlib import Path
from types import CoroutineType, FrameType
from typing import Any

SITECUSTOMIZE = "import loop_probe\nloop_probe.install()\n"


def site_dir() -> Path:
    """A directory holding a ``sitecustomize`` that installs this probe (and this directory)."""
    where = Path(tempfile.mkdtemp(prefix="loop_probe_"))
    (where / "sitecustomize.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).resolve().parent)!r})\n"
        + SITECUSTOMIZE
    )
    return where


def _frames(coro: Any) -> list[FrameType]:
    """The coroutine chain's frames, outermost first (bounded: 50 deep)."""
    frames = []
    for _ in range(50):
        frame = getattr(coro, "cr_frame", None) or getattr(coro, "gi_frame", None)
        if frame is None:
            break
        frames.append(frame)
        coro = getattr(coro, "cr_await", None) or getattr(coro, "gi_yieldfrom", None)
        if coro is None:
            break
    return frames


def _owner(frames: list[FrameType]) -> Any:
    """The connection object a task runs for (a frame's ``self`` with a ``peer``)."""
    for frame in frames:
        obj = frame.f_locals.get("self")
        if obj is not None and hasattr(obj, "peer") and hasattr(obj, "stats"):
            return obj
    return None


def _where(frames: list[FrameType]) -> str:
    return " < ".join(f"{f.f_code.co_name}:{f.f_lineno}" for f in reversed(frames[-4:]))


def _requests(conn: Any) -> int:
    stats = getattr(conn, "stats", None)
    return int(getattr(stats, "requests", 0) or 0) + int(getattr(stats, "messages_in", 0) or 0)


def install() -> None:
    out_path = os.environ.get("LOOP_PROBE_OUT")
    if not out_path:
        return
    turn_min = float(os.environ.get("LOOP_PROBE_TURN_US", "1000")) / 1e6
    step_min = float(os.environ.get("LOOP_PROBE_STEP_US", "100")) / 1e6
    out = open(out_path, "a", buffering=1)  # noqa: SIM115 (open for the process's life)
    profile_path = os.environ.get("LOOP_PROBE_PROFILE")
    profile_min = float(os.environ.get("LOOP_PROBE_PROFILE_US", "0")) / 1e6
    kept: list[pstats.Stats] = []  # the profiles of the steps that took profile_min or more
    dumped = [time.monotonic()]
    collections_: list[tuple[int, float]] = []  # this turn's garbage collections
    gc_start = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_start[0] = time.thread_time()
        else:
            collections_.append((info["generation"], time.thread_time() - gc_start[0]))

    gc.callbacks.append(on_gc)
    steps: list[dict[str, Any]] = []
    turn_cpu = [0.0]
    turn_number = [0]  # every turn counts, written or not (how many turns a message waited)
    run = asyncio.events.Handle._run
    run_once = asyncio.base_events.BaseEventLoop._run_once  # type: ignore[attr-defined]

    def probed_run(handle: asyncio.events.Handle) -> None:
        callback = handle._callback  # type: ignore[attr-defined]
        task = getattr(callback, "__self__", None)
        conn = None
        before = 0
        if isinstance(task, asyncio.Task):
            conn = _owner(_frames(task.get_coro()))
            before = _requests(conn) if conn is not None else 0
        profiler = None
        if profile_path:
            profiler = cProfile.Profile()
        c0, t0 = time.thread_time(), time.perf_counter()
        try:
            if profiler is not None:
                profiler.runcall(run, handle)
            else:
                run(handle)
        finally:
            cpu, wall = time.thread_time() - c0, time.perf_counter() - t0
            if profiler is not None and cpu >= profile_min:
                if kept:
                    kept[0].add(profiler)
                else:
                    kept.append(pstats.Stats(profiler))
            turn_cpu[0] += cpu
            if cpu >= step_min:
                step: dict[str, Any] = {"cpu_us": round(cpu * 1e6), "wall_us": round(wall * 1e6)}
                if isinstance(task, asyncio.Task):
                    coro = task.get_coro()
                    step["task"] = getattr(coro, "__qualname__", type(coro).__name__)
                    frames = _frames(coro) if isinstance(coro, CoroutineType) else []
                    step["where"] = _where(frames) if not task.done() else "done"
                    if conn is None:
                        conn = _owner(frames)
                    if conn is not None:
                        step["conn"] = type(conn).__name__
                        step["peer"] = str(getattr(conn, "peer", ""))
                        step["handled"] = _requests(conn) - before
                        limiter = getattr(conn, "_limiter", None)
                        if limiter is not None:
                            step["tokens"] = round(getattr(limiter, "_tokens", 0))
                else:
                    step["callback"] = getattr(callback, "__qualname__", repr(callback))[:120]
                steps.append(step)

    def probed_run_once(loop: Any) -> None:
        steps.clear()
        collections_.clear()
        turn_cpu[0] = 0.0
        turn_number[0] += 1
        c0, t0 = time.thread_time(), time.perf_counter()
        run_once(loop)
        if turn_cpu[0] >= turn_min:
            turn = {
                "t": round(time.time(), 4),
                "n": turn_number[0],
                "turn_cpu_us": round((time.thread_time() - c0) * 1e6),
                "callbacks_cpu_us": round(turn_cpu[0] * 1e6),
                "wall_us": round((time.perf_counter() - t0) * 1e6),
                "steps": list(steps),
            }
            if collections_:
                turn["gc"] = [(gen, round(cpu * 1e6)) for gen, cpu in collections_]
            out.write(json.dumps(turn) + "\n")
        if kept and time.monotonic() - dumped[0] > 1.0:
            kept[0].dump_stats(profile_path)
            dumped[0] = time.monotonic()

    asyncio.events.Handle._run = probed_run  # type: ignore[method-assign]
    asyncio.base_events.BaseEventLoop._run_once = probed_run_once  # type: ignore[attr-defined]


def summarise(path: Path, since: float = 0.0, until: float = float("inf")) -> str:
    """The long turns of a probe file: how many, and what their CPU went to."""
    turns = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    turns = [t for t in turns if since <= t["t"] <= until]
    by_kind: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for turn in turns:
        for step in turn["steps"]:
            kind = step.get("task") or step.get("callback", "?")
            kind += f" @ {step.get('where', '')}"
            by_kind[kind] += step["cpu_us"]
            count[kind] += 1
    lines = [f"{len(turns)} turns over the threshold"]
    if turns:
        cpus = sorted(t["callbacks_cpu_us"] for t in turns)
        lines.append(f"callbacks' CPU per turn: median {cpus[len(cpus) // 2]} µs, max {cpus[-1]}")
        over = [f">= {ms} ms: {sum(c >= ms * 1000 for c in cpus)}" for ms in (0.5, 1, 2, 5)]
        lines.append("turns " + ", ".join(over))
        gcs = [cpu for t in turns for gen, cpu in t.get("gc", ()) if gen > 0]
        if gcs:
            lines.append(f"gen 1-2 collections in them: {len(gcs)}, max {max(gcs)} µs")
    for kind, cpu in by_kind.most_common(25):
        lines.append(f"{cpu / 1000:8.1f} ms  {count[kind]:5d} steps  {kind}")
    peers = collections.Counter(s["peer"] for t in turns for s in t["steps"] if s.get("peer"))
    lines.append("connections by steps: " + ", ".join(f"{p} {n}" for p, n in peers.most_common(5)))
    return "\n".join(lines)


def turns_before(
    path: Path, peer: str, since: float = 0.0, until: float = float("inf"), turns: int = 4
) -> str:
    """For each step of ``peer``'s connection (a quiet client's message being handled),
    the CPU of the ``turns`` loop turns before it: what its message passed on the way in
    (socket read, hypercorn's read and parse, the queue). Needs a probe file written
    with low thresholds (``LOOP_PROBE_TURN_US=20 LOOP_PROBE_STEP_US=20``): a turn
    missing counts as 0, a step missing is not counted."""
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    cpu = {t["n"]: t["callbacks_cpu_us"] for t in rows}
    mine = [
        t["n"]
        for t in rows
        if since <= t["t"] <= until
        for s in t["steps"]
        if s.get("peer") == peer
    ]
    waits = sorted(sum(cpu.get(n - k, 0) for k in range(1, turns + 1)) for n in mine)
    if not waits:
        return f"no steps of {peer} in the window"

    def at(q: float) -> int:
        return waits[min(len(waits) - 1, int(q * len(waits)))]

    return (
        f"{len(waits)} steps of {peer}; CPU of the {turns} turns before each: "
        f"p50 {at(0.5)} µs, p90 {at(0.9)}, p99 {at(0.99)}, max {waits[-1]}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("file", type=Path)
    parser.add_argument("--since", type=float, default=0.0, help="time.time() of the start")
    parser.add_argument("--until", type=float, default=float("inf"))
    parser.add_argument(
        "--before",
        metavar="PEER",
        help="the CPU of the 4 turns before each step of this connection (the quiet"
        " client's: in the alone phase, the connection with the most steps)",
    )
    args = parser.parse_args()
    if args.before:
        print(turns_before(args.file, args.before, args.since, args.until))
    else:
        print(summarise(args.file, args.since, args.until))


if __name__ == "__main__":
    sys.exit(main())
