"""What a room's clients are sent: its log entries, rendered into frames once.

Every update or awareness change a room accepts is one :class:`RoomEntry` in
the room's fan-out log (:mod:`net.fanout`). Each client's writer reads the run
of entries past its cursor and needs it as y-websocket frames: the updates
merged into one sync update, the awareness states coalesced into one
awareness message. Writers that read the same run share one rendering; a
client that wrote part of the run gets a variant without its own entries
(it has them already), rendered once for all who need that variant.

A joiner's sync step 2 (the diff against its state vector) is cached the same
way: twenty clients joining a large diagram at once share one encoded reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from pycrdt import Doc

from collab.metrics import Stats
from collab.protocol import (
    AwarenessEntry,
    MalformedMessage,
    awareness_message,
    encode_awareness_update,
    sync_step2,
    sync_update,
)
from net.wire import Frame
from storage.updates import merge_many

SERVER = 0  # the author of entries the room writes itself (no client is left out of them)
EVERYONE = -1  # the variant of a run rendered for readers who wrote none of it


@dataclass(slots=True)
class RoomEntry:
    """One entry of a room's log: a Yjs update, or awareness changes, and who sent it."""

    author: int
    update: bytes | None = None
    awareness: Sequence[AwarenessEntry] = ()


class RenderedRun:
    """The frames of one run of log entries, per variant (who is left out), made once."""

    __slots__ = ("authors", "entries", "stats", "variants")

    def __init__(self, entries: Sequence[RoomEntry], stats: Stats) -> None:
        self.entries = entries
        self.stats = stats
        self.authors = {entry.author for entry in entries}
        self.variants: dict[int, list[Frame]] = {}

    def frames(self, exclude: int) -> list[Frame]:
        frames = self.variants.get(exclude)
        if frames is None:
            frames = self.variants[exclude] = self._render(exclude)
        return frames

    def _render(self, exclude: int) -> list[Frame]:
        self.stats.fanout_renders += 1
        updates: list[bytes] = []
        states: dict[int, AwarenessEntry] = {}
        for entry in self.entries:
            if entry.author == exclude:
                continue
            if entry.update is not None:
                updates.append(entry.update)
            for state in entry.awareness:
                states[state.client_id] = state
        frames = []
        if updates:
            frames.append(Frame(sync_update(merge_many(updates))))
        if states:
            update = encode_awareness_update(list(states.values()))
            frames.append(Frame(awareness_message(update)))
        return frames


class RunFrames:
    """The rendered runs of one room's log, kept while writers may still ask for them."""

    __slots__ = ("_end", "_runs", "stats")

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self._runs: dict[tuple[int, int], RenderedRun] = {}
        self._end = 0

    def frames_for(self, start: int, entries: Sequence[RoomEntry], reader: int) -> list[Frame]:
        """The frames of the run at ``start`` for the client with author id ``reader``."""
        end = start + len(entries)
        run = self._runs.get((start, end))
        if run is None:
            if end > self._end:
                # writers always read up to the newest position: older runs are done
                self._runs.clear()
                self._end = end
            run = self._runs[(start, end)] = RenderedRun(entries, self.stats)
        return run.frames(reader if reader in run.authors else EVERYONE)


class SyncReplies:
    """Sync step 2 replies, encoded once per (document state, state vector)."""

    __slots__ = ("_head", "_replies", "stats")

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self._replies: dict[bytes, Frame] = {}
        self._head = -1

    def reply(self, doc: Doc[Any], head: int, state_vector: bytes) -> Frame:
        """The diff of ``doc`` (at log position ``head``) against a client's state vector."""
        if self._head != head:
            self._replies = {}
            self._head = head
        frame = self._replies.get(state_vector)
        if frame is None:
            try:
                diff = doc.get_update(state_vector)
            except Exception as exc:
                raise MalformedMessage("invalid state vector") from exc
            frame = self._replies[state_vector] = Frame(sync_step2(diff))
            self.stats.sync_encodes += 1
        return frame
