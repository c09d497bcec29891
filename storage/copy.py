"""``inkwire db copy --from A --to B``: move a deployment between SQLite and PostgreSQL.

Every diagram is copied as its database holds it: the whole update log
(frames of compacted history included, with their seq ranges and authors),
its checkpoints, its list summary and its image files, blobs byte for byte
(both stores encode them alike); then every relay's stored events, epochs
and clean-shutdown flags. Copy with the servers stopped (or at least with
nobody editing): a diagram edited during the copy is caught by the check at
the end, and copying again brings it over.

**Resumable.** Each diagram is written in one transaction on the target
(its old rows there replaced), so an interrupted copy leaves every diagram
either whole or absent. Run again, it skips diagrams the target already
holds at the same seq and edit time, and copies the rest.

**Verified.** At the end every diagram is read back from both sides: its
rows must be equal, byte for byte, and its state loaded as a room loads it
(the latest checkpoint plus the updates after it) must hold the same
updates and the same content; the relays' events must match too. Any difference is an error.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

from pycrdt import Map

from storage.databases import exists, open_store, shown
from storage.excalidraw import load_doc
from storage.store import Database, StorageError

ROOTS = ("elements", "files", "meta")  # the document's root maps (storage.excalidraw)


@dataclass
class Copied:
    """What a copy did: diagrams copied now, skipped (already there), relay events."""

    copied: int = 0
    skipped: int = 0
    relay_events: int = 0
    seconds: float = 0.0


def copy_database(
    source: str, target: str, *, progress: bool = True, out: TextIO | None = None
) -> Copied:
    """Copy ``source`` into ``target`` (created if new), then verify; StorageError on a mismatch."""
    if shown(source) == shown(target):
        raise StorageError(f"--from and --to are the same database ({shown(source)})")
    if not exists(source):
        raise StorageError(f"no database at {shown(source)}")
    began = time.monotonic()
    src = open_store(source, upgrade=False)
    try:
        dst = open_store(target)
        try:
            done = _copy(src, dst, _bar(progress, out or sys.stderr))
            _verify(src, dst)
        finally:
            dst.close()
    finally:
        src.close()
    done.seconds = time.monotonic() - began
    return done


def _copy(src: Database, dst: Database, bar: Callable[[int, int, str], None]) -> Copied:
    done = Copied()
    ids = src.diagram_ids()
    for n, diagram in enumerate(ids, 1):
        ours, theirs = src.summary(diagram), dst.summary(diagram)
        if (
            ours is not None
            and theirs is not None
            and (theirs.last_seq, theirs.updated) == (ours.last_seq, ours.updated)
        ):
            done.skipped += 1
        else:
            dump = src.dump(diagram)
            if dump is not None:
                dst.restore(dump)
                done.copied += 1
        bar(n, len(ids), diagram)
    relays = src.relay_dump()
    dst.relay_restore(relays)
    done.relay_events = len(relays.events)
    bar(len(ids), len(ids), "relay history")
    return done


def _verify(src: Database, dst: Database) -> None:
    """Every diagram equal on both sides; StorageError naming the first that is not."""
    ids = src.diagram_ids()
    if dst_extra := sorted(set(dst.diagram_ids()) - set(ids)):
        raise StorageError(f"the target has diagrams the source lacks: {dst_extra[:5]}")
    for diagram in ids:
        a, b = src.dump(diagram), dst.dump(diagram)
        if a is None or b is None or a != b:
            raise StorageError(f"diagram {diagram!r} differs after the copy (edited meanwhile?)")
        if content(src.state_at(diagram)) != content(dst.state_at(diagram)):
            raise StorageError(f"diagram {diagram!r} loads differently after the copy")
    if src.relay_dump() != dst.relay_dump():
        raise StorageError("relay history differs after the copy (a relay wrote meanwhile?)")


def content(state: bytes | None) -> tuple[dict[int, int], dict[str, Any]]:
    """A loaded state as comparable values: which updates it holds (its state vector,
    decoded) and what its root maps hold. (Encoded states of equal documents may
    order their parts differently, so bytes are not compared.)"""
    doc = load_doc(state)
    vector = doc.get_state()
    clocks: dict[int, int] = {}
    position = 0

    def varint() -> int:
        nonlocal position
        value = shift = 0
        while True:
            byte = vector[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if byte < 0x80:
                return value

    for _ in range(varint()):
        client = varint()
        clocks[client] = varint()
    return clocks, {name: doc.get(name, type=Map).to_py() for name in ROOTS}


def _bar(enabled: bool, out: TextIO) -> Callable[[int, int, str], None]:
    """A progress bar on ``out``: redrawn in place on a terminal, a line per 5% otherwise."""
    tty = out.isatty()
    shown_at = [-1]

    def draw(n: int, total: int, what: str) -> None:
        if not enabled:
            return
        fraction = n / total if total else 1.0
        if not tty:
            step = int(fraction * 20)
            if step == shown_at[0] and n != total:
                return
            shown_at[0] = step
        filled = int(fraction * 30)
        line = f"[{'#' * filled}{'.' * (30 - filled)}] {n}/{total} diagrams  {what[:40]}"
        out.write(("\r" + line.ljust(90)) if tty else line + "\n")
        if tty and n == total and what == "relay history":
            out.write("\n")
        out.flush()

    return draw
