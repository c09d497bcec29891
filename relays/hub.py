"""The hub: one catalog's channels, their offsets and history, and the fan-out.

Design: **one** :class:`~net.fanout.FanoutLog` per hub whose entries are
``(channel, frame)``, not one log per channel. Each connection is a single
:class:`~net.fanout.Subscriber` with one cursor, drained by its one writer
task, and it keeps the channels it wants (with the log position from which
each is live) in :attr:`Member.channels`; the writer skips the rest. So:

- an event is encoded once per channel it goes to (one :class:`Frame`, whose
  wire bytes are also made once) and that object is shared by every recipient;
- a connection's queue is bounded once, by the log's lag limits (entries and
  bytes behind the head), whatever its number of subscriptions: a client that
  stops reading is cut off (4009) instead of pinning the log;
- a writer waits on one thing. With one log per channel a connection with
  1 000 subscriptions would need 1 000 cursors and a way to wait on all.

The cost is a dict lookup per published entry per connection to skip
channels it does not follow; next to framing and writing a message that is
noise, and on hypercorn's asyncio path idle connections do it synchronously
in :meth:`FanoutLog.publish` (``Subscriber.direct``) without waking their writer.

History is separate from the log (the log forgets what every writer has
sent): per channel, the last ``history_size`` frames younger than
``history_age`` seconds, with their offsets. A subscribe with ``since``
replays from it only when it still holds *every* missed offset; otherwise the
answer is ``recovered: false`` with the current epoch and offset.

The hub also counts each channel's followers (:meth:`Hub.followers`), and
tells whoever asked (:meth:`Hub.on_follow`) when a channel gets its first
follower or loses its last, so an embedding service can skip producing
events nobody follows.

Offsets count per channel from 1. The epoch names one run of a channel's
numbering: random per hub start, and a fresh one whenever a channel's state
is rebuilt (evicted past ``max_channels``), so a client's old offset can
never be mistaken for a new one. In a cluster, Redis numbers the events and
every node's hub takes them as numbered (:meth:`Hub.place_numbered`, see
:mod:`cluster.relays`).
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from types import MappingProxyType
from typing import Any, Protocol

from net.fanout import FanoutLog, Subscriber
from net.wire import Frame
from relays.catalog import Catalog
from relays.projection import Projection
from relays.protocol import ErrorCode, PreparedEvent, ProtocolError

Entry = tuple[str, Frame]  # (channel, the event's text on that channel)
# called with (channel, offset, epoch, event, text) for each placement: the --db history
Sink = Callable[[str, int, str, str, str], None]
# called with (channel, True) when a channel gets its first follower, (channel, False) at its last
FollowHook = Callable[[str, bool], None]


class BroadcastMetrics(Protocol):
    """Where a hub reports its fan-out (:class:`net.metrics.WebSocketMetrics`)."""

    def sent(self, event_type: str, count: int) -> None: ...

    def broadcast(self, seconds: float) -> None: ...


@dataclass(frozen=True)
class HubSettings:
    """Bounds of one hub; every one of them caps memory or work per client."""

    history_size: int = 1000  # events kept per channel for recovery
    history_age: float = 3600.0  # seconds an event stays recoverable
    max_channels: int = 10_000  # channels with state (offsets, history); oldest evicted
    max_subscriptions: int = 1000  # per connection
    max_lag: int = 10_000  # log entries a connection may be behind before 4009
    max_lag_bytes: int = 16 << 20
    max_outbox: int = 1000  # replies and replayed events queued for one connection


@dataclass(frozen=True, slots=True)
class Published:
    """Where one event landed on one channel."""

    channel: str
    offset: int
    epoch: str


def published_body(
    checked: Sequence[tuple[str, Sequence[str], Mapping[str, Any]]],
    published: Sequence[Sequence[Published]],
) -> dict[str, Any]:
    """Where each published event landed: ``{"published": [{"event", "offsets"}]}``."""
    results = []
    for (event, _, _), placed in zip(checked, published, strict=True):
        offsets = [{"channel": p.channel, "offset": p.offset, "epoch": p.epoch} for p in placed]
        results.append({"event": event, "offsets": offsets})
    return {"published": results}


@dataclass(slots=True)
class _Channel:
    epoch: str
    offset: int = 0
    history: deque[tuple[int, float, Frame]] = field(default_factory=deque)


@dataclass(eq=False)
class Member:
    """One connection as the hub sees it: its cursor and the channels it follows.

    ``channels[c]`` is the first log position delivered live on ``c``: entries
    before it were either sent before the subscription or are replayed from
    history, so none is sent twice.
    """

    subscriber: Subscriber
    channels: dict[str, int] = field(default_factory=dict)

    def frames(self, start: int, entries: Sequence[Entry]) -> list[Frame]:
        """The frames of a run of log entries this member follows."""
        channels = self.channels
        if not channels:
            return []
        out = []
        for i, (channel, frame) in enumerate(entries):
            first = channels.get(channel)
            if first is not None and start + i >= first:
                out.append(frame)
        return out


class Hub:
    """Publishes one catalog's events to the members following their channels."""

    def __init__(
        self,
        catalog: Catalog,
        settings: HubSettings | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.catalog = catalog
        self.settings = settings or HubSettings()
        self.clock = clock
        self.epoch = secrets.token_hex(8)
        self.log: FanoutLog[Entry] = FanoutLog(
            max_lag=self.settings.max_lag, max_lag_bytes=self.settings.max_lag_bytes
        )
        self.projection = Projection(catalog)
        self.channels: OrderedDict[str, _Channel] = OrderedDict()
        self.members: set[Member] = set()
        # channels whose numbering restarted after eviction (they get new epochs)
        self._evicted: set[str] = set()
        self.events_published = 0
        self.sink: Sink | None = None
        self._followers: dict[str, int] = {}  # channel -> members following it (never 0)
        self.followed: Mapping[str, int] = MappingProxyType(self._followers)
        self.subscriptions = 0  # all members' channels, added up
        self._follow_hooks: list[FollowHook] = []
        # told once per run: the messages it sends by event type, and how long it took
        self.metrics: BroadcastMetrics | None = None
        self._run_sent: dict[str, int] = {}  # event -> followers reached, in the run being placed

    def restore(
        self, epoch: str, channels: Mapping[str, tuple[str, int, Sequence[tuple[int, float, str]]]]
    ) -> None:
        """Seed a fresh hub from a database: its epoch, and per channel (oldest first)
        the epoch, the last offset and the history as ``(offset, age seconds, text)``.

        So offsets continue where the last run stopped and a client's ``since``
        from before a restart still matches.
        """
        self.epoch = epoch
        now = self.clock()
        for name, (channel_epoch, offset, rows) in channels.items():
            state = _Channel(channel_epoch, offset)
            for row_offset, age, text in rows:
                state.history.append((row_offset, now - age, Frame(text.encode(), text=True)))
            self.channels[name] = state
            self._trim(state, now)
            if len(self.channels) > self.settings.max_channels:
                old, _ = self.channels.popitem(last=False)
                self._evicted.add(old)

    # --- publishing ---------------------------------------------------------

    def publish(self, event: str, data: object) -> list[Published]:
        """Validate and publish one event (INVALID_PAYLOAD if the catalog refuses it)."""
        payload, channels = self.catalog.prepare(event, data)
        return self.publish_prepared(event, channels, payload)

    def publish_prepared(
        self, event: str, channels: Sequence[str], payload: Mapping[str, Any]
    ) -> list[Published]:
        """Publish an event the catalog has already validated (the broadcaster's path)."""
        placed = self._place(event, channels, payload)
        self._fan_out()
        return placed

    def publish_many(
        self, events: Sequence[tuple[str, Sequence[str], Mapping[str, Any]]]
    ) -> list[list[Published]]:
        """Publish validated events together: subscribers get them as one run.

        One run means one frame per subscriber for batching clients, and one
        write per subscriber either way, instead of one per event.
        """
        placed = [self._place(event, channels, payload) for event, channels, payload in events]
        self._fan_out()
        return placed

    def _fan_out(self) -> None:
        """Publish the run just placed: the writers see it (idle ones are written to now)."""
        metrics = self.metrics
        if metrics is None:
            self.log.publish()
            return
        start = perf_counter()
        self.log.publish()
        metrics.broadcast(perf_counter() - start)
        sent, self._run_sent = self._run_sent, {}
        for event_type, count in sent.items():
            metrics.sent(event_type, count)

    def _place(
        self, event: str, channels: Sequence[str], payload: Mapping[str, Any]
    ) -> list[Published]:
        prepared = PreparedEvent(event, payload)
        now = self.clock()
        placed = []
        for name in channels:
            state = self._channel(name)
            state.offset += 1
            self._append(name, state, prepared, now)
            placed.append(Published(name, state.offset, state.epoch))
        self.projection.apply(event, payload)
        self.events_published += 1
        return placed

    def _append(self, name: str, state: _Channel, prepared: PreparedEvent, now: float) -> None:
        """Log an event on a channel at the channel's current offset, and keep it in history."""
        message = prepared.for_channel(name, state.offset, state.epoch)
        text = message.encode()
        frame = Frame(text, text=True)
        self.log.append((name, frame), len(text))
        state.history.append((state.offset, now, frame))
        self._trim(state, now)
        if self.sink is not None:
            self.sink(name, state.offset, state.epoch, prepared.event, message)
        if self.metrics is not None:
            sent = self._run_sent
            sent[prepared.event] = sent.get(prepared.event, 0) + self._followers.get(name, 0)

    def place_numbered(
        self, events: Sequence[tuple[PreparedEvent, Sequence[tuple[str, int, str]]]]
    ) -> None:
        """Append events numbered elsewhere, as one run: each with its ``(channel, offset,
        epoch)`` placements as the cluster's Redis assigned them (see :mod:`cluster.relays`).

        A channel whose epoch changed starts its history over; so does one whose
        offsets jumped, so that local history never has a hole in it.
        """
        now = self.clock()
        for prepared, placements in events:
            for name, offset, epoch in placements:
                state = self._channel(name)
                if state.epoch != epoch or state.offset + 1 != offset:
                    state.epoch = epoch
                    state.history.clear()
                state.offset = offset
                self._append(name, state, prepared, now)
            self.projection.apply(prepared.event, prepared.data)
            self.events_published += 1
        self._fan_out()

    def forget_channels(self) -> None:
        """Drop every channel's numbering and history (they can no longer be trusted)."""
        self.channels.clear()

    def _channel(self, name: str) -> _Channel:
        state = self.channels.get(name)
        if state is None:
            # a channel seen for the first time numbers under the hub's epoch; one
            # rebuilt after eviction gets a new epoch, so old offsets cannot match
            epoch = self.epoch if name not in self._evicted else secrets.token_hex(8)
            state = self.channels[name] = _Channel(epoch)
            if len(self.channels) > self.settings.max_channels:
                old, _ = self.channels.popitem(last=False)
                self._evicted.add(old)
        else:
            self.channels.move_to_end(name)
        return state

    def _trim(self, state: _Channel, now: float) -> None:
        history = state.history
        while len(history) > self.settings.history_size:
            history.popleft()
        oldest = now - self.settings.history_age
        while history and history[0][1] < oldest:
            history.popleft()

    # --- followers ---------------------------------------------------------------

    def followers(self, channel: str) -> int:
        """How many connections follow ``channel`` now (``followed``: all such channels)."""
        return self._followers.get(channel, 0)

    def on_follow(self, hook: FollowHook) -> None:
        """Call ``hook(channel, True)`` when a channel gets its first follower, and
        ``hook(channel, False)`` when its last one leaves (synchronously, in the
        subscribing or leaving connection's task)."""
        self._follow_hooks.append(hook)

    def _follow(self, member: Member, name: str, position: int) -> None:
        if name not in member.channels:
            self.subscriptions += 1
            count = self._followers[name] = self._followers.get(name, 0) + 1
            if count == 1:
                for hook in self._follow_hooks:
                    hook(name, True)
        member.channels[name] = position

    def _unfollow(self, name: str) -> None:
        self.subscriptions -= 1
        count = self._followers[name] - 1
        if count:
            self._followers[name] = count
            return
        del self._followers[name]
        for hook in self._follow_hooks:
            hook(name, False)

    # --- members ---------------------------------------------------------------

    def join(self, on_overflow: Callable[[], None]) -> Member:
        """A new connection, live from the log's head (it follows no channel yet)."""
        member = Member(Subscriber(on_overflow=on_overflow))
        self.members.add(member)
        self.log.add(member.subscriber)
        self.log.attach(member.subscriber, self.log.head)
        return member

    def leave(self, member: Member) -> None:
        if member not in self.members:
            return
        self.members.discard(member)
        self.log.remove(member.subscriber)
        channels, member.channels = member.channels, {}
        for name in channels:
            self._unfollow(name)

    def subscribe(
        self, member: Member, channel: object, since: object = None
    ) -> tuple[dict[str, Any], list[Frame]]:
        """Follow ``channel``: the response data and the frames to replay first.

        The caller queues the response, then the replayed frames, both ordered
        after the current log head (see :meth:`FanoutLog.send_direct`); live
        entries from the head on follow them.
        """
        name, mark = self.check_subscribe(member, channel, since)
        state = self.channels.get(name)
        epoch = state.epoch if state is not None else self.epoch
        offset = state.offset if state is not None else 0
        data: dict[str, Any] = {
            "channel": name,
            "subscribed": True,
            "epoch": epoch,
            "offset": offset,
        }
        replay: list[Frame] = []
        if mark is None:
            self.follow(member, name, again=False)
            return data, replay
        recovered, replay = self._missed(state, name, *mark)
        data["recovered"] = recovered
        self.follow(member, name)
        return data, replay

    def check_subscribe(
        self, member: Member, channel: object, since: object
    ) -> tuple[str, tuple[int, str] | None]:
        """The channel's name and the ``since`` mark, or the ProtocolError refusing them."""
        name = self.catalog.validate_channel(channel)
        mark = _parse_since(since)
        if name not in member.channels and len(member.channels) >= self.settings.max_subscriptions:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"at most {self.settings.max_subscriptions} subscriptions per connection",
            )
        return name, mark

    def follow(self, member: Member, name: str, *, again: bool = True) -> None:
        """Deliver ``name``'s entries to ``member`` from the log's head on.

        ``again=False`` keeps the position of a channel followed already (a
        repeated subscribe without ``since`` neither skips nor repeats events).
        """
        if member not in self.members:
            return  # it left while its subscribe was being answered
        if again or name not in member.channels:
            self._follow(member, name, self.log.head)

    def _missed(
        self, state: _Channel | None, name: str, since: int, epoch: str
    ) -> tuple[bool, list[Frame]]:
        """Every frame after ``since`` from history, or (False, []) if any is gone."""
        if state is None:  # nothing published here in this hub's life
            return (epoch == self.epoch and since == 0), []
        if epoch != state.epoch or since > state.offset:
            return False, []
        frames = self.history_after(name, since)
        return (True, frames) if frames is not None else (False, [])

    def history_after(self, name: str, offset: int) -> list[Frame] | None:
        """The channel's frames after ``offset`` (up to its current one), from history;
        None if history no longer reaches back to ``offset + 1``."""
        state = self.channels.get(name)
        if state is None or offset > state.offset:
            return None
        if offset == state.offset:
            return []
        self._trim(state, self.clock())
        history = state.history
        if not history or history[0][0] > offset + 1:
            return None
        return [frame for number, _, frame in history if number > offset]

    def unsubscribe(self, member: Member, channel: object) -> dict[str, Any]:
        name = self.catalog.validate_channel(channel)
        was = member.channels.pop(name, None) is not None
        if was:
            self._unfollow(name)
        return {"channel": name, "subscribed": False, "was_subscribed": was}


def _parse_since(since: object) -> tuple[int, str] | None:
    if since is None:
        return None
    if isinstance(since, dict):
        offset, epoch = since.get("offset"), since.get("epoch")
        if (
            isinstance(offset, int)
            and not isinstance(offset, bool)
            and offset >= 0
            and isinstance(epoch, str)
        ):
            return offset, epoch
    raise ProtocolError(
        ErrorCode.INVALID_PAYLOAD,
        'subscribe: \'since\' must be {"offset": integer >= 0, "epoch": string}',
    )
