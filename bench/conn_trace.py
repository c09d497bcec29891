"""Where an idle connection's bytes go: tracemalloc and object counts in the server.

Starts ``inkwire serve`` (``--target yjs``) or ``inkwire relay dhruva`` (``--target
relay``) under tracemalloc, opens N idle connections from Python ``websockets``
clients (``--deflate`` offers permessage-deflate, as browsers and Node's ``ws`` do),
then has the server report, per connection: RSS, traced bytes by file, and the
objects by type that the connections added. docs/capacity.md holds the figures.

    PYTHONPATH=$PWD .venv/bin/python bench/conn_trace.py --target yjs --n 2000 --deflate
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from websockets.asyncio.client import connect

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import HOST, free_port

# runs inside the server: tracemalloc from the start, a report on SIGUSR1 / SIGUSR2
PROBE = r"""
import collections, gc, json, os, runpy, signal, sys, tracemalloc
tracemalloc.start(int(os.environ.get("TRACE_FRAMES", "1")))
OUT = os.environ["TRACE_OUT"]
def counts():
    gc.collect()
    return collections.Counter(
        f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects()
    )
def mark(*_):
    global BASE, BASE_COUNTS
    BASE, BASE_COUNTS = tracemalloc.take_snapshot(), counts()
def report(*_):
    snap = tracemalloc.take_snapshot()
    rss = int([l for l in open("/proc/self/status") if l.startswith("VmRSS")][0].split()[1]) * 1024
    diff = snap.compare_to(BASE, "filename")
    files = [[s.traceback[0].filename, s.size_diff, s.count_diff] for s in diff if s.size_diff]
    top = snap.compare_to(BASE, "lineno")[:60]
    lines = [[str(s.traceback[0]), s.size_diff, s.count_diff] for s in top]
    # with TRACE_FRAMES > 1: each block by its innermost frame in inkwire's own code
    root = os.getcwd() + "/"
    ours = {}
    for st in snap.compare_to(BASE, "traceback"):
        if st.size_diff <= 0:
            continue
        frames = list(st.traceback)[::-1]  # innermost first
        where = f"{frames[0].filename.rsplit('/', 1)[-1]}:{frames[0].lineno}"
        mine = [f for f in frames if f.filename.startswith(root) and "/.venv/" not in f.filename]
        if mine:
            key = f"{mine[0].filename[len(root):]}:{mine[0].lineno} <- {where}"
        else:
            key = "(none of ours) " + where.split(":")[0]
        ours[key] = ours.get(key, 0) + st.size_diff
    c = counts()
    objs = {k: c[k] - BASE_COUNTS.get(k, 0) for k in c if c[k] - BASE_COUNTS.get(k, 0)}
    ours = sorted(ours.items(), key=lambda kv: -kv[1])
    report = {"rss": rss, "files": files, "lines": lines, "objects": objs, "ours": ours}
    json.dump(report, open(OUT, "w"))
signal.signal(signal.SIGUSR1, mark)
signal.signal(signal.SIGUSR2, report)
sys.argv = ["inkwire", *sys.argv[1:]]
from collab.cli import main
main()
"""


def rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS"))


def read_report(path: Path) -> dict | None:
    return json.loads(path.read_text()) if path.exists() and path.stat().st_size else None


async def wait_report(path: Path) -> dict:
    for _ in range(3000):  # a deep trace takes minutes to group
        report = read_report(path)
        if report is not None:
            return report
        await asyncio.sleep(0.2)
    raise TimeoutError("no report from the server")


def start_server(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv, env=env)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--target", choices=("yjs", "relay"), default="yjs")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--deflate", action="store_true")
    # frames > 1: also attribute each block to the innermost frame in inkwire's code
    parser.add_argument("--frames", type=int, default=1)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    port = free_port()
    out = Path(tempfile.mkdtemp()) / "trace.json"
    cmd = ["serve", "--db", ":memory:", "--max-users", "1000"]
    if args.target == "relay":
        cmd = ["relay", "dhruva"]
    env = {**os.environ, "TRACE_OUT": str(out), "TRACE_FRAMES": str(args.frames)}
    argv = [sys.executable, "-c", PROBE, *cmd, "--host", HOST, "--port", str(port)]
    proc = start_server([*argv, "--log-level", "WARNING"], env)
    try:
        for _ in range(1200):  # deep tracing slows the server's start
            try:
                (await asyncio.open_connection(HOST, port))[1].close()
                break
            except OSError:
                await asyncio.sleep(0.1)
        if args.target == "yjs":
            from pycrdt import Doc

            from collab.protocol import sync_step1

            first = sync_step1(Doc().get_state())
        else:
            first = json.dumps(
                {
                    "type": "request",
                    "id": "1",
                    "event": "subscribe",
                    "data": {"channel": "job:demo"},
                }
            )
        compression = "deflate" if args.deflate else None

        async def one(i: int):  # type: ignore[no-untyped-def]
            path = f"/yjs/d{i // 20}" if args.target == "yjs" else "/"
            ws = await connect(
                f"ws://{HOST}:{port}{path}",
                compression=compression,
                max_size=None,
                ping_interval=None,
            )
            if args.target == "relay":
                await ws.recv()  # the welcome
            await ws.send(first)
            await asyncio.wait_for(ws.recv(), 10)
            return ws

        # warm up: a first batch opened and closed, so pools and caches exist
        warm = [await one(i) for i in range(20)]
        for ws in warm:
            await ws.close()
        await asyncio.sleep(1)
        proc.send_signal(signal.SIGUSR1)
        await asyncio.sleep(1.5)
        base = rss(proc.pid)
        start = time.perf_counter()
        conns = []
        for k in range(0, args.n, 200):
            conns += await asyncio.gather(*(one(i) for i in range(k, min(args.n, k + 200))))
        opened = time.perf_counter() - start
        await asyncio.sleep(2)
        proc.send_signal(signal.SIGUSR2)
        report = await wait_report(out)
        n = args.n
        per_conn = (rss(proc.pid) - base) / n / 1024
        print(f"{args.target} n={n} deflate={args.deflate}: RSS {per_conn:.1f} KiB/conn")
        print(f"opened {n / opened:.0f}/s (under tracemalloc: slower, RSS higher)")
        traced = sum(size for _, size, _ in report["files"])
        print(f"traced: {traced / n / 1024:.1f} KiB/conn")
        for name, size, count in sorted(report["files"], key=lambda r: -r[1])[: args.top]:
            print(f"  {size / n:8.0f} B {count / n:6.1f} blocks  {name}")
        print("top lines:")
        for name, size, count in report["lines"][: args.top]:
            print(f"  {size / n:8.0f} B {count / n:6.1f} blocks  {name}")
        if args.frames > 1:
            print("by the innermost frame in inkwire's code (<- where allocated):")
            for name, size in report["ours"][: args.top]:
                print(f"  {size / n:8.0f} B  {name}")
        print("objects per connection:")
        for name, count in sorted(report["objects"].items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"  {count / n:6.2f}  {name}")
        for ws in conns:
            await ws.close()
    finally:
        proc.terminate()
        proc.wait(10)


if __name__ == "__main__":
    asyncio.run(main())
