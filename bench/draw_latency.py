"""Draw-to-peer-render latency of the web app: inkwire against the Node y-websocket server.

What it measures
----------------
Two people, Alice and Bob, have the same diagram open in the built web app
(clients/web/dist): two browser contexts of one headless Debian Chromium, launched as
tests/browser.py does (`launch`, CHROMIUM_ARGS; never `playwright install`). Alice edits,
Bob's page notes when the edit reaches his canvas. Every timestamp is taken in the pages
as `performance.timeOrigin + performance.now()`: both pages run in one browser, so that is
a shared clock (checked at start: the offset between the two pages' clocks is reported).

Servers (each a subprocess on 127.0.0.1, pinned to core 0 by bench/common.py's
ServerProcess; Chromium runs unpinned):

* inkwire      `inkwire serve --db <temp dir>/inkwire.db`: as shipped, SQLite autosave
               (every update committed before anyone is sent it)
* memory       `inkwire serve --db :memory:`
* node         the stock `@y/websocket-server` 0.1.1 (bench/node_modules, started as
               bench/yjs_fanout.py starts it). The pages still come from an idle
               `inkwire serve --db :memory:`; an init script sets `window.INKWIRE_YJS_URL`
               so the app's y-websocket client connects to ws://127.0.0.1:<node port>/<diagram>.

Edits (`--edits`, default all three):

* create   Alice's page adds a new rectangle with `api.updateScene` (captureUpdate
           IMMEDIATELY). Excalidraw then calls the app's onChange, as for a user edit, and
           the binding writes the element to the Y.Doc; the provider sends the update.
* move     the same for an existing rectangle: a copy with a new x, version + 1, a new
           versionNonce.
* drag     the real mouse (Playwright input): press `r`, drag out a rectangle (pointerdown,
           8 moves, pointerup). Latency is from the pointer event that made the element's
           final version (the last one, in a capture listener on Alice's window, before
           Alice's own onChange first showed that version; Excalidraw applies moves in the
           next animation frame) to Bob holding that version. Includes Alice's frame wait.

Per round, Bob's page is armed first: it snapshots the versions of its scene, and an
`api.onChange` subscriber (installed once) records the first time each (element, newer
version) shows up in Bob's scene ("scene updated"), then the time of the next
requestAnimationFrame callback ("painted": the start of the first frame that can show it;
the canvas itself is drawn in a React effect just before). Latency = Bob's time - Alice's
time just before `updateScene` (or of the pointer event). Bob's page waits on a promise, no
polling. Rounds are interleaved: each round runs every edit kind on every server (the
server order rotates), after `--warmup` unrecorded rounds, with `--gap` seconds between
measurements.

Reported: median / p95 / max in ms of "scene updated" and "painted" per edit and server,
the ratios inkwire/node (and memory/node), and issue 4's target (inkwire, as shipped:
median painted < 30 ms on loopback).

Run
---
    make bench-web                    # builds the app, npm ci in bench/, then this script
    .venv/bin/python bench/draw_latency.py [--rounds 50] [--warmup 5]
        [--servers inkwire,memory,node] [--edits create,move,drag] [--json out.json]

No request leaves 127.0.0.1 (the contexts refuse and count any, as in the tests); every
wait is bounded; servers, Node and the browser are stopped on exit, also on failure.
Server logs go to bench/results/draw-*.log (git-ignored).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import json
import math
import signal
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))
sys.path.insert(0, str(BENCH.parent))

from common import HOST, ServerProcess, ServerSpec, free_port, say, table  # noqa: E402
from yjs_fanout import INKWIRE, inkwire_options, server_specs  # noqa: E402

from tests.browser import Outside, Peer, launch, missing_browser, open_context  # noqa: E402

SERVERS = {
    "inkwire": "inkwire (SQLite autosave)",
    "memory": "inkwire (--db :memory:)",
    "node": "Node @y/websocket-server 0.1.1",
}
EDITS = ("create", "move", "drag")
ALICE = {"id": "bench-alice", "name": "Alice", "color": "#e03131"}
BOB = {"id": "bench-bob", "name": "Bob", "color": "#1971c2"}
TARGET_MS = 30.0
MOVE_ID = "bench-move"
# Canvas bands, in viewport pixels (1100 x 760, zoom 1, no scroll: scene = viewport). Right
# of the properties panel Excalidraw shows while a drawing tool is active (x < 220).
LEFT, CREATE_Y, MOVE_Y, DRAG_Y = 260, 110, 290, 370

# Both pages, once: an onChange subscriber. arm() snapshots the scene's versions; every
# (id, version) newer than the snapshot is recorded with the time it showed up in the
# scene and the time of the animation frame after. WAIT_JS resolves with the record of an
# element at (at least) a version once it is painted, or null on timeout. An observer of
# the Y.Doc's elements map notes when each (id, version) entered the doc: Alice's binding
# wrote it, or Bob's provider applied it (before his binding's merge, a microtask later).
RECORDER_JS = """() => {
  const api = window.inkwire.api;
  const map = window.inkwire.doc.getMap("elements");
  const now = () => performance.timeOrigin + performance.now();
  const bench = { known: new Map(), records: [], doc: [], armed: false, waiter: null };
  bench.arm = () => {
    bench.known = new Map(api.getSceneElementsIncludingDeleted().map((e) => [e.id, e.version]));
    bench.records = [];
    bench.doc = [];
    bench.armed = true;
  };
  bench.docTime = (id, version) =>
    bench.doc.find((r) => r.id === id && r.version >= version)?.t ?? null;
  map.observe((event) => {
    if (!bench.armed) return;
    const t = now();
    for (const id of event.keysChanged) bench.doc.push({ id, version: map.get(id)?.version, t });
  });
  bench.find = (id, version) =>
    bench.records.find((r) => r.id === id && r.version >= version && r.painted !== null);
  api.onChange((elements) => {
    if (!bench.armed) return;
    const seen = now();
    let fresh = null;
    for (const e of elements) {
      if (bench.known.get(e.id) === e.version) continue;
      bench.known.set(e.id, e.version);
      (fresh ??= []).push({ id: e.id, version: e.version, seen, painted: null });
    }
    if (!fresh) return;
    bench.records.push(...fresh);
    requestAnimationFrame(() => {
      const painted = now();
      for (const r of fresh) r.painted = painted;
      bench.waiter?.();
    });
  });
  window.__bench = bench;
}"""

ARM_JS = "() => window.__bench.arm()"
DOC_TIME_JS = "([id, version]) => window.__bench.docTime(id, version)"

WAIT_JS = """([id, version, ms]) => new Promise((resolve) => {
  const bench = window.__bench;
  const hit = bench.find(id, version);
  if (hit) return resolve(hit);
  const timer = setTimeout(() => { bench.waiter = null; resolve(null); }, ms);
  bench.waiter = () => {
    const found = bench.find(id, version);
    if (!found) return;
    clearTimeout(timer);
    bench.waiter = null;
    resolve(found);
  };
})"""

# Alice: one edit through Excalidraw's API. Returns the time just before updateScene
# and the element's version in Alice's scene right after (Excalidraw may bump it while
# assigning a fractional index).
EDIT_JS = """({kind, id, x, y}) => {
  const api = window.inkwire.api;
  const scene = api.getSceneElementsIncludingDeleted();
  const nonce = () => Math.floor(Math.random() * 2 ** 31);
  const t0 = performance.timeOrigin + performance.now();
  let next;
  if (kind === "create") {
    next = [...scene, {
      id, type: "rectangle", x, y, width: 40, height: 30, angle: 0,
      strokeColor: "#1e1e1e", backgroundColor: "transparent", fillStyle: "solid",
      strokeWidth: 2, strokeStyle: "solid", roughness: 1, opacity: 100, groupIds: [],
      frameId: null, index: null, roundness: { type: 3 }, seed: nonce(), version: 1,
      versionNonce: nonce(), isDeleted: false, boundElements: null, updated: Date.now(),
      link: null, locked: false,
    }];
  } else {
    next = scene.map((e) => e.id !== id ? e : {
      ...e, x, y, version: e.version + 1, versionNonce: nonce(), updated: Date.now(),
    });
  }
  api.updateScene({ elements: next, captureUpdate: "IMMEDIATELY" });
  const mine = api.getSceneElementsIncludingDeleted().find((e) => e.id === id);
  return { t0, version: mine ? mine.version : -1 };
}"""

# Alice, drag: the times of her pointer events (capture phase, before Excalidraw's own
# handlers; it applies moves in the next animation frame, several at once).
INPUT_JS = """() => {
  if (!window.__benchInput) {
    const log = (window.__benchInput = []);
    for (const type of ["pointerdown", "pointermove", "pointerup"]) {
      window.addEventListener(type, () => log.push(performance.timeOrigin + performance.now()),
                              true);
    }
  }
  window.__benchInput.length = 0;
}"""

# Alice, drag: when her own scene first held the element at a version (her recorder),
# and the last pointer event before that: the input that made this version.
CAUSE_JS = """([id, version]) => {
  const record = window.__bench.records.find((r) => r.id === id && r.version >= version);
  if (!record) return null;
  const before = window.__benchInput.filter((t) => t <= record.seen);
  return before.length ? before[before.length - 1] : null;
}"""

VERSIONS_JS = """() => Object.fromEntries(window.inkwire.api.getSceneElementsIncludingDeleted()
  .map((e) => [e.id, e.version]))"""

NOW_JS = "() => performance.timeOrigin + performance.now()"


# ---------------------------------------------------------------------------------------
# Servers
# ---------------------------------------------------------------------------------------


def inkwire_spec(name: str, port: int, db: str) -> ServerSpec:
    argv = [str(INKWIRE), "serve", "--host", HOST, "--port", str(port), "--db", db]
    missing = None if INKWIRE.exists() else f"{INKWIRE} not found"
    return ServerSpec(name, name, [*argv, *inkwire_options()], missing=missing)


@dataclass
class Setup:
    """One server under test: its processes, where the page is and where it syncs."""

    name: str
    base_url: str
    yjs_url: str | None  # None: the app's default, `/yjs` on the page's own server
    processes: list[ServerProcess] = field(default_factory=list)


def start(spec: ServerSpec, port: int, setup: Setup) -> None:
    if spec.missing:
        raise RuntimeError(spec.missing)
    process = ServerProcess(spec, port)
    setup.processes.append(process)
    asyncio.run(process.wait_listening())


def start_setup(name: str, tmp: Path, stack: contextlib.ExitStack) -> Setup:
    page_port = free_port()
    setup = Setup(name, f"http://{HOST}:{page_port}", None)
    stack.callback(lambda: [p.stop() for p in reversed(setup.processes)])
    db = str(tmp / "inkwire.db") if name == "inkwire" else ":memory:"
    # for node, this inkwire only serves the page (its /yjs stays unused)
    page_server = "draw-pages" if name == "node" else f"draw-{name}"
    start(inkwire_spec(page_server, page_port, db), page_port, setup)
    if name == "node":
        node_port = free_port()
        spec = dataclasses.replace(server_specs(node_port)["node"], name="draw-node")
        start(spec, node_port, setup)
        setup.yjs_url = f"ws://{HOST}:{node_port}"
    return setup


# ---------------------------------------------------------------------------------------
# Pages and rounds
# ---------------------------------------------------------------------------------------


@dataclass
class Pair:
    setup: Setup
    alice: Peer
    bob: Peer
    slot: int = 0  # where the next created/dragged rectangle goes


@dataclass
class Sample:
    """One measurement, ms from Alice's edit (or input event)."""

    scene_ms: float  # in Bob's scene (his onChange)
    painted_ms: float  # the animation frame after that
    alice_doc_ms: float  # in Alice's Y.Doc (her binding wrote it)
    bob_doc_ms: float  # in Bob's Y.Doc (his provider applied the server's message)


@dataclass
class Series:
    samples: list[Sample] = field(default_factory=list)
    timeouts: int = 0


def open_pair(
    browser: Any, outside: Outside, setup: Setup, errors: list[str], stack: contextlib.ExitStack
) -> Pair:
    diagram = f"bench-draw-{setup.name}-{uuid.uuid4().hex[:8]}"
    peers = []
    for who in (ALICE, BOB):
        context = open_context(browser, outside, who)
        stack.callback(context.close)
        if setup.yjs_url:
            context.add_init_script(f"window.INKWIRE_YJS_URL = {json.dumps(setup.yjs_url)};")
        page = context.new_page()
        label = f"{setup.name}/{who['name']}"
        page.on("pageerror", lambda error, label=label: errors.append(f"{label}: {error}"))
        peers.append(Peer(page, setup.base_url).open(diagram))
    pair = Pair(setup, peers[0], peers[1])
    pair.bob.page.evaluate(RECORDER_JS)
    pair.alice.page.evaluate(RECORDER_JS)  # drag: when Alice's own scene changed
    # the element "move" edits, made (untimed) before the rounds
    pair.bob.page.evaluate(ARM_JS)
    first = {"kind": "create", "id": MOVE_ID, "x": LEFT, "y": MOVE_Y}
    made = pair.alice.page.evaluate(EDIT_JS, first)
    if bob_wait(pair, MOVE_ID, made["version"], 10_000) is None:
        raise RuntimeError(f"{setup.name}: Bob never saw Alice's first rectangle")
    return pair


def spot(slot: int, top: int, rows: int) -> tuple[int, int]:
    """Where a round's rectangle goes: a grid in a band of the visible canvas."""
    return LEFT + slot % 12 * 60, top + slot // 12 % rows * 55


def bob_wait(pair: Pair, element: str, version: int, ms: int) -> dict[str, Any] | None:
    found: dict[str, Any] | None = pair.bob.page.evaluate(WAIT_JS, [element, version, ms])
    return found


def api_edit(pair: Pair, kind: str, timeout_ms: int) -> Sample | None:
    slot = pair.slot
    pair.slot += 1
    if kind == "create":
        element = f"bench-{uuid.uuid4().hex[:12]}"
        x, y = spot(slot, CREATE_Y, 3)
    else:
        element = MOVE_ID
        x, y = spot(slot, MOVE_Y, 1)
    pair.bob.page.evaluate(ARM_JS)
    pair.alice.page.evaluate(ARM_JS)
    made = pair.alice.page.evaluate(EDIT_JS, {"kind": kind, "id": element, "x": x, "y": y})
    if made["version"] < 0:
        raise RuntimeError(f"{pair.setup.name}: Alice's edit left no element {element}")
    found = bob_wait(pair, element, made["version"], timeout_ms)
    return sample(pair, found, element, made["version"], made["t0"])


def drag_edit(pair: Pair, timeout_ms: int) -> Sample | None:
    """Drag out a rectangle; time the input that made its last version to Bob's render."""
    slot = pair.slot
    pair.slot += 1
    x, y = spot(slot, DRAG_Y, 5)
    alice = pair.alice.page
    alice.mouse.click(x, y)  # focus the canvas (an empty spot: selects nothing)
    alice.keyboard.press("r")
    before = set(alice.evaluate(VERSIONS_JS))
    pair.bob.page.evaluate(ARM_JS)
    alice.evaluate(ARM_JS)
    alice.evaluate(INPUT_JS)
    alice.mouse.move(x, y)
    alice.mouse.down()
    alice.mouse.move(x + 20, y + 15, steps=4)
    alice.mouse.move(x + 40, y + 30, steps=4)
    alice.mouse.up()
    alice.wait_for_timeout(50)  # let Alice's last frame and onChange run
    versions = alice.evaluate(VERSIONS_JS)
    new = set(versions) - before
    if len(new) != 1:
        raise RuntimeError(f"{pair.setup.name}: the drag made {len(new)} elements")
    element = new.pop()
    found = bob_wait(pair, element, versions[element], timeout_ms)
    t0 = alice.evaluate(CAUSE_JS, [element, versions[element]])
    alice.keyboard.press("Escape")
    if t0 is None:
        raise RuntimeError(f"{pair.setup.name}: no pointer event before Alice's last version")
    return sample(pair, found, element, versions[element], t0)


def sample(
    pair: Pair, found: dict[str, Any] | None, element: str, version: int, t0: float
) -> Sample | None:
    if found is None:
        return None
    alice = pair.alice.page.evaluate(DOC_TIME_JS, [element, version])
    bob = pair.bob.page.evaluate(DOC_TIME_JS, [element, version])
    return Sample(
        found["seen"] - t0,
        found["painted"] - t0,
        math.nan if alice is None else alice - t0,
        math.nan if bob is None else bob - t0,
    )


def clock_offset(a: Peer, b: Peer, tries: int = 7) -> tuple[float, float]:
    """B's clock minus A's (ms) and its uncertainty, from the tightest A-B-A sandwich."""
    best = (math.inf, 0.0)
    for _ in range(tries):
        a1 = a.page.evaluate(NOW_JS)
        t = b.page.evaluate(NOW_JS)
        a2 = a.page.evaluate(NOW_JS)
        half = (a2 - a1) / 2
        if half < best[0]:
            best = (half, t - (a1 + a2) / 2)
    return best[1], best[0]


# ---------------------------------------------------------------------------------------
# Statistics and report
# ---------------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    """Linear interpolation between the closest ranks (numpy's default)."""
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    low = math.floor(pos)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summary(values: list[float]) -> dict[str, float]:
    values = [v for v in values if not math.isnan(v)]
    if not values:
        return {"median": math.nan, "p95": math.nan, "max": math.nan}
    return {"median": statistics.median(values), "p95": quantile(values, 0.95), "max": max(values)}


# What is summarised: end to end, and its legs (the wire leg is the only one the server is in).
PARTS = {
    "scene": lambda s: s.scene_ms,
    "painted": lambda s: s.painted_ms,
    "alice": lambda s: s.alice_doc_ms,
    "wire": lambda s: s.bob_doc_ms - s.alice_doc_ms,
    "bob": lambda s: s.scene_ms - s.bob_doc_ms,
    "frame": lambda s: s.painted_ms - s.scene_ms,
}


def stats(series: Series) -> dict[str, dict[str, float]]:
    return {name: summary([part(s) for s in series.samples]) for name, part in PARTS.items()}


def fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:.1f}"


def ratio(a: float, b: float) -> str:
    return "n/a" if math.isnan(a) or math.isnan(b) or b == 0 else f"{a / b:.2f}x"


LEGS = (
    "legs, medians in ms: alice = her edit -> her Y.Doc (Excalidraw render, onChange, binding);"
    "\n  wire = her Y.Doc -> Bob's Y.Doc (y-websocket encode, WebSocket, the server, decode);"
    "\n  bob = his Y.Doc -> his scene (binding merge, updateScene, render);"
    " frame = scene -> next animation frame"
)


def report(results: dict[tuple[str, str], Series], edits: list[str], servers: list[str]) -> str:
    header = ["edit", "server", "n", "scene median", "p95", "max", "painted median", "p95", "max"]
    rows, legs = [], []
    for edit in edits:
        for server in servers:
            series = results[edit, server]
            s = stats(series)
            n = f"{len(series.samples)}" + (f" ({series.timeouts} lost)" if series.timeouts else "")
            rows.append(
                [edit, SERVERS[server], n]
                + [fmt(s["scene"][k]) for k in ("median", "p95", "max")]
                + [fmt(s["painted"][k]) for k in ("median", "p95", "max")]
            )
            legs.append(
                [edit, SERVERS[server]]
                + [fmt(s[leg]["median"]) for leg in ("alice", "wire", "bob", "frame")]
                + [fmt(s["wire"]["p95"])]
            )
    out = ["latency, ms: Alice's edit -> in Bob's scene (scene) / his next animation frame"]
    out.append(table(header, rows))
    out.append(f"\n{LEGS}")
    out.append(table(["edit", "server", "alice", "wire", "bob", "frame", "wire p95"], legs))
    if "node" in servers and len(servers) > 1:
        out.append("\nratios vs Node y-websocket (lower = faster)")
        header = ["edit", "server", "scene median", "scene p95", "painted median", "painted p95"]
        header += ["wire median", "wire p95"]
        rows = []
        for edit in edits:
            node = stats(results[edit, "node"])
            for server in (s for s in servers if s != "node"):
                mine = stats(results[edit, server])
                cells = [
                    ratio(mine[what][k], node[what][k])
                    for what in ("scene", "painted", "wire")
                    for k in ("median", "p95")
                ]
                rows.append([edit, f"{server}/node", *cells])
        out.append(table(header, rows))
    if "inkwire" in servers:
        out.append(f"\ntarget (issue 4): inkwire as shipped, median painted < {TARGET_MS:.0f} ms")
        for edit in edits:
            median = stats(results[edit, "inkwire"])["painted"]["median"]
            verdict = "n/a" if math.isnan(median) else "met" if median < TARGET_MS else "MISSED"
            out.append(f"  {edit}: {fmt(median)} ms  {verdict}")
    return "\n".join(out)


# ---------------------------------------------------------------------------------------
# Main
# ---------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=50, help="measured rounds (default 50)")
    parser.add_argument("--warmup", type=int, default=5, help="unrecorded rounds first")
    parser.add_argument("--servers", default="inkwire,memory,node")
    parser.add_argument("--edits", default="create,move,drag", help="of create,move,drag")
    parser.add_argument("--gap", type=float, default=0.1, help="seconds between measurements")
    parser.add_argument("--timeout", type=float, default=5.0, help="seconds per measurement")
    parser.add_argument("--json", type=Path, help="also write every sample to this file")
    args = parser.parse_args(argv)
    args.server_list = [s.strip() for s in args.servers.split(",") if s.strip()]
    args.edit_list = [e.strip() for e in args.edits.split(",") if e.strip()]
    if unknown := set(args.server_list) - set(SERVERS):
        parser.error(f"unknown servers: {', '.join(sorted(unknown))}")
    if unknown := set(args.edit_list) - set(EDITS):
        parser.error(f"unknown edits: {', '.join(sorted(unknown))}")
    if args.rounds < 1 or args.warmup < 0:
        parser.error("--rounds must be >= 1 and --warmup >= 0")
    return args


def run(args: argparse.Namespace, notes: list[str]) -> dict[tuple[str, str], Series]:
    """Every measurement, by (edit, server); what the report should mention goes to ``notes``."""
    from playwright.sync_api import sync_playwright

    results = {(e, s): Series() for e in args.edit_list for s in args.server_list}
    outside = Outside()
    errors: list[str] = []
    timeout_ms = int(args.timeout * 1000)
    with contextlib.ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="inkwire-draw-")))
        setups = []
        for name in args.server_list:
            say(f"starting {SERVERS[name]}")
            setups.append(start_setup(name, tmp, stack))
        playwright = stack.enter_context(sync_playwright())
        browser = launch(playwright)
        stack.callback(browser.close)
        pairs = [open_pair(browser, outside, setup, errors, stack) for setup in setups]
        offset, uncertainty = clock_offset(pairs[0].alice, pairs[0].bob)
        notes.append(f"clock: Bob's page - Alice's page = {offset:+.2f} ms (± {uncertainty:.2f})")
        total = args.warmup + args.rounds
        for round_ in range(total):
            warm = round_ < args.warmup
            if round_ % 10 == 0 or round_ == args.warmup:
                say(f"round {round_ + 1}/{total}{' (warm-up)' if warm else ''}")
            order = pairs[round_ % len(pairs) :] + pairs[: round_ % len(pairs)]
            for edit in args.edit_list:
                for pair in order:
                    got = (
                        drag_edit(pair, timeout_ms)
                        if edit == "drag"
                        else api_edit(pair, edit, timeout_ms)
                    )
                    series = results[edit, pair.setup.name]
                    if got is None:
                        series.timeouts += 1
                        say(f"  {edit} on {pair.setup.name}: Bob did not see it in time")
                    elif not warm:
                        series.samples.append(got)
                    time.sleep(args.gap)
        if outside.urls:
            notes.append(f"WARNING: requests left 127.0.0.1 (refused): {outside.urls[:5]}")
        if errors:
            notes.append(f"WARNING: {len(errors)} errors in the pages: {errors[:5]}")
    return results


def finite(value: Any) -> Any:
    """``value`` with NaN (a leg not observed) as None: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [finite(v) for v in value]
    return value


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if reason := missing_browser():
        sys.exit(f"cannot run: {reason}")
    # SIGTERM unwinds like Ctrl-C, so the ExitStack stops the browser and the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    notes: list[str] = []
    results = run(args, notes)
    print(
        f"Draw-to-peer-render latency: {args.rounds} rounds after {args.warmup} warm-up,"
        f" interleaved over servers; two contexts of one headless Chromium, servers on core 0"
    )
    print(report(results, args.edit_list, args.server_list))
    print("\n".join(["", *notes]))
    if args.json:
        raw = {f"{e}/{s}": dataclasses.asdict(series) for (e, s), series in results.items()}
        args.json.write_text(json.dumps(finite(raw), indent=1))


if __name__ == "__main__":
    main()
