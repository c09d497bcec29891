"""What bench/cluster_fanout.py keeps of each run, per group of receivers, and its report.

measure_phase (bench/common.py) totals a phase over all its receivers; here each
receiver also keeps its own share, so the same phase gives figures for "near" receivers
(on the writer's node) and "far" ones (on the other node) apart. The report gives the
median over rounds of each figure, then two nodes against one by those medians (and
each round's own pair, which shows the noise), against the targets for the far
receivers.
"""

from __future__ import annotations

import statistics
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass, field

from common import LOADGEN_BUSY_PCT, LOADGEN_CORE, PhaseStats, Tracker, percentile, table
from yjs_fanout import YClient

GROUPS = ("all", "near", "far")
TARGET_RATE = 0.5  # far burst deliveries/s on two nodes >= this x the same on one node
TARGET_P99_MS = 3.0  # far paced p99 on two nodes <= the same on one node + this


# ---------------------------------------------------------------------------------------
# Receivers and groups
# ---------------------------------------------------------------------------------------


class Tally:
    """A receiver (YClient or kin) that keeps its own share of each phase, which
    measure_phase only totals; ``offset``: where its room's markers start."""

    def __init__(self, client: YClient, group: str, offset: int = 0) -> None:
        self.client = client
        self.group = group
        self.offset = offset
        self.latencies: list[int] = []
        self.done_ns = 0

    frames = property(lambda self: self.client.frames)
    lost = property(lambda self: self.client.lost)
    close_code = property(lambda self: self.client.close_code)

    def begin(self, tracker: Tracker) -> None:
        self.client.begin(tracker)

    def settle(self, send_ns: list[int], first: int, count: int) -> tuple[list[int], int]:
        self.done_ns = max((now for now, _ in self.client.arrivals), default=0)
        self.latencies, extra = self.client.settle(send_ns, first + self.offset, count)
        return self.latencies, extra


@dataclass
class Group:
    receivers: int
    delivered: int
    seconds: float  # first send -> the group's last receiver holds every event
    p50_ms: float
    p99_ms: float

    @property
    def rate(self) -> float:
        return self.delivered / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Phase:
    total: PhaseStats  # all receivers, CPU of the nodes and Redis
    groups: dict[str, Group]


def phase_of(stats: PhaseStats, tallies: Sequence[Tally], t0: int) -> Phase:
    groups = {}
    for name in GROUPS:
        members = [t for t in tallies if name in ("all", t.group)]
        latencies = sorted(x for t in members for x in t.latencies)
        done = max((t.done_ns for t in members), default=t0)
        p50, p99 = percentile(latencies, 0.5), percentile(latencies, 0.99)
        groups[name] = Group(len(members), len(latencies), (done - t0) / 1e9, p50, p99)
    return Phase(stats, groups)


@dataclass
class Run:
    """One scenario on one node or on two."""

    nodes: int
    burst: Phase | None = None
    paced: Phase | None = None
    error: str | None = None
    dropped: dict[str, int] = field(default_factory=dict)
    others_pct: float = 0.0  # CPU other processes on this machine used meanwhile, % of a core


Results = dict[str, dict[int, list[Run]]]  # scenario -> node count -> a run per round


# ---------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------


def median(values: Sequence[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def kilo(value: float | None) -> str:
    return "-" if value is None else f"{value / 1000:.1f} k"


def ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def group_row(count: int, name: str, runs: list[Run]) -> list[str]:
    """One group's medians over rounds; the CPU figures are the whole run's."""
    bursts = [r.burst.groups[name] for r in runs if r.burst]
    paced = [r.paced.groups[name] for r in runs if r.paced]
    seconds, rate = median([g.seconds for g in bursts]), median([g.rate for g in bursts])
    p50, p99 = median([g.p50_ms for g in paced]), median([g.p99_ms for g in paced])
    where = "" if name == "all" else " (B)" if name == "far" and count > 1 else " (A)"
    row = [str(count), f"{name}{where}", "-" if seconds is None else f"{seconds:.2f}", kilo(rate)]
    totals = [r.burst.total for r in runs if r.burst]
    if name == "all" and totals:
        us = median([t.server_us_per_delivery for t in totals])
        cpu, loadgen = (
            median([t.server_pct for t in totals]),
            median([t.loadgen_pct for t in totals]),
        )
        others = median([r.others_pct for r in runs])
        row += [f"{us:.1f}", f"{cpu:.0f} %", f"{loadgen:.0f} %", f"{others:.0f} %"]
    else:
        row += ["", "", "", ""]
    return [*row, f"{ms(p50)} / {ms(p99)}"]


def scenario_table(label: str, what: str, results: dict[int, list[Run]]) -> str:
    """Per node count and group, the median over rounds of each figure."""
    header = ["nodes", "receivers", "burst s", "deliveries/s", "µs/deliv", "CPU", "loadgen"]
    header += ["others", "paced p50 / p99 ms"]
    rows = [group_row(c, name, runs) for c, runs in sorted(results.items()) for name in GROUPS]
    out = [
        f"\n== {label} ==",
        textwrap.fill(what, 100),
        table(header, rows),
    ]
    for count, runs in sorted(results.items()):
        for i, run in enumerate(runs, 1):
            if run.error:
                out.append(f"{count} node(s), round {i}: {run.error}")
            if run.dropped:
                out.append(f"{count} node(s), round {i}: receivers disconnected {run.dropped}")
    return "\n".join(out)


def figure(run: Run, which: str, group: str) -> float | None:
    phase = getattr(run, which)
    if phase is None or not phase.total.complete:
        return None
    figures = phase.groups[group]
    return figures.rate if which == "burst" else figures.p99_ms


def comparisons(results: Results) -> str:
    """Two nodes against one, by the medians; each round's own pair shows the noise."""
    header = ["scenario", "metric", "one node", "two nodes", "two vs one", "per round"]
    rows = []
    for label, runs in results.items():
        for which in ("burst", "paced"):
            for group in ("far", "all"):
                ones, twos = ([figure(r, which, group) for r in runs.get(c, [])] for c in (1, 2))
                rows.append([label, *compare(which, group, ones, twos)])
    return "\n== two nodes against one ==\n" + table([*header, "target", "status"], rows)


def compare(
    which: str, group: str, ones: list[float | None], twos: list[float | None]
) -> list[str]:
    """metric, one node, two nodes, two vs one, per round, target (far only), status."""
    one, two = median(ones), median(twos)
    pairs = [(o, t) for o, t in zip(ones, twos, strict=False) if o and t is not None]
    if which == "burst":
        cells = [f"{group}: burst deliveries/s", kilo(one), kilo(two)]
        if not one or two is None:
            return [*cells, "n/a", "", "", ""]
        ok, target = two >= TARGET_RATE * one, f">= {TARGET_RATE}x"
        cells += [f"{two / one:.2f}x", " ".join(f"{t / o:.2f}x" for o, t in pairs)]
    else:
        cells = [f"{group}: paced p99 ms", ms(one), ms(two)]
        if one is None or two is None:
            return [*cells, "n/a", "", "", ""]
        ok, target = two <= one + TARGET_P99_MS, f"<= +{TARGET_P99_MS:.0f} ms"
        cells += [f"{two - one:+.1f} ms", " ".join(f"{t - o:+.1f}" for o, t in pairs)]
    return [*cells, target, verdict(ok)] if group == "far" else [*cells, "", ""]


def verdict(ok: bool | None) -> str:
    return "" if ok is None else "met" if ok else "MISSED"


def notes(results: Results, skipped: dict[str, str], load: list[str]) -> str:
    out = [
        "",
        "notes:",
        "- one node: node A on core 0, the load generator on core 1. Two nodes: A on core 0,"
        f" B on core 1, Redis not pinned, the load generator on core {LOADGEN_CORE} with B:"
        " on two nodes it shares B's core (and Redis floats), so the two-node figures pay for"
        " that; with 2 cores this measures overhead, not scaling",
        "- CPU and µs/deliv: the nodes and Redis together (% of one core); loadgen: this"
        " process; others: the CPU every other process on the machine used during the run"
        " (% of one core): where it is high, so is the noise",
        f"- load average (1, 5, 15 min): {load[0]} at start, {load[1]} at end (others' tests"
        " share this machine: compare runs with care when it is high)",
    ]
    out += [f"- {label}: skipped: {why}" for label, why in skipped.items()]
    for label, by_count in results.items():
        rounds = zip(*(by_count.get(c, []) for c in (1, 2)), strict=False)
        others = ", ".join(f"{one.others_pct:.0f} / {two.others_pct:.0f}" for one, two in rounds)
        out.append(f"- {label}: others' CPU per round, one node / two nodes: {others} %")
    for label, by_count in results.items():
        for count, runs in sorted(by_count.items()):
            for i, run in enumerate(runs, 1):
                for name in ("burst", "paced"):
                    phase = getattr(run, name)
                    busy = phase.total.loadgen_pct if phase else 0
                    if busy >= LOADGEN_BUSY_PCT:
                        out.append(
                            f"- {label}, {count} node(s), round {i}, {name}: the load generator"
                            f" was busy {busy:.0f} % of its core: rates may be lower bounds"
                        )
    return "\n".join(textwrap.fill(line, 100, subsequent_indent="  ") for line in out)
