"""Relays across nodes: one numbering and one order per service, kept by Redis.

The model is Centrifuge's Redis engine. A publish, on any node, is one Lua
script (:mod:`cluster.relay_scripts`) that numbers the event on each of its
channels (epoch get-or-create, ``HINCRBY`` of the offset), appends it to each
channel's history stream and to the service's log, and ``PUBLISH``-es it on
the service's one pub/sub channel, atomically. Every node, the publishing one
included, applies events only as they arrive from that channel: applying its
own at once would put them ahead of others' that Redis ordered first. So
every node's hub holds one prefix of one sequence, its projection folds the
same events in the same order, and the publisher learns its offsets from the
script while its clients get the event from pub/sub like everyone else's.

**Nothing missed, or the followers are told.** Every event also carries the
service's sequence number (and the service's epoch, which changes when Redis
loses its data). A node applies only the next number; whenever its link comes
(back) up it reads what it missed from the service log and applies that, in
order, before pub/sub resumes. When it cannot (the log was trimmed past it,
Redis restarted empty), it forgets its channels' numbering and closes every
connection that follows a channel with 4010: our clients reconnect, resubscribe
with ``since``, and recover from the channel's history stream or get
``recovered: false``, never a silent hole.

**Recovery on any node.** A subscribe reads the channel's numbering and, with
``since``, its history stream, in one script that also creates the numbering
if missing (so every node hands out the same epoch); it then waits until this
node has applied every event Redis had at that moment, and merges: the stream
up to the moment of the read, this node's own history after it, live entries
from the log's head on. Without Redis a node answers from its own hub, as a
single relay does.

**Publishing fails loudly.** While the link is down, or when Redis does not
answer in time, :meth:`RelayCluster.publish` raises
:class:`~relays.protocol.RelayUnavailable` (``POST /publish``: 503). What an
embedding service publishes from synchronous code (:meth:`publish_later`) is
queued, in order, and retried until Redis is back.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

import anyio
from redis.exceptions import RedisError, ResponseError

from cluster.link import COMMAND_TIMEOUT, RedisLink
from cluster.relay_scripts import LOG_SIZE, META_TTL, PUBLISH, SUBSCRIBE, RelayKeys
from net.wire import Frame
from relays.hub import Hub, Member, Published
from relays.protocol import PreparedEvent, RelayUnavailable, dumps

log = logging.getLogger("inkwire.cluster")

CATCH_UP_CHUNK = 1000  # log entries read at once when catching up
MAX_QUEUED = 10_000  # events publish_later holds while Redis is unreachable
RETRY_SECONDS = 0.5

Placed = list[tuple[str, int, str]]  # (channel, offset, epoch) of one event
Numbered = tuple[PreparedEvent, Placed]
Validated = tuple[str, Sequence[str], Mapping[str, Any]]  # (event, channels, payload)


def encode_record(event: str, channels: Sequence[str], payload: Mapping[str, Any]) -> str:
    """An event as Redis keeps it: all a node needs to frame it on any channel.

    ``[event, channels]`` as JSON, a tab, then the event's encoded head
    (:attr:`PreparedEvent.head`: id, time and payload, encoded once, here), so
    the nodes that receive it frame it without decoding and re-encoding the
    payload. JSON never holds a raw tab or newline: the tab splits a record,
    the newline a pub/sub message's records.
    """
    return f"{dumps([event, list(channels)])}\t{PreparedEvent(event, payload).head}"


def decode_record(record: bytes | str) -> tuple[PreparedEvent, list[str]]:
    text = record.decode() if isinstance(record, bytes) else record
    names, head = text.split("\t", 1)
    event, channels = json.loads(names)
    return PreparedEvent.from_head(event, head), channels


def _numbered(record: bytes, placements: Sequence[Sequence[Any]]) -> Numbered:
    prepared, channels = decode_record(record)
    placed = [(c, int(o), str(e)) for c, (o, e) in zip(channels, placements, strict=True)]
    return prepared, placed


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _number(entry_id: bytes) -> int:
    """A stream entry's number: ids here are ``{n}-0``."""
    return int(entry_id.split(b"-")[0])


@dataclass(frozen=True)
class ChannelRead:
    """What the subscribe script saw of a channel, at one moment."""

    service: str | None  # the service's epoch then (None: nothing ever published)
    sequence: int  # the service's last event then
    epoch: str
    offset: int
    now_ms: int  # Redis's clock
    entries: list[tuple[int, int, bytes]]  # (offset, time ms, record) after ``since``


class RelayCluster:
    """A relay hub's link to the other nodes through Redis (see the module docstring).

    ``on_lost`` is called when this node may have missed events it cannot
    recover: the app then closes the connections following any channel.
    """

    def __init__(self, hub: Hub, link: RedisLink, on_lost: Callable[[], None]) -> None:
        self.hub = hub
        self.link = link
        self.on_lost = on_lost
        self.keys = RelayKeys(link.prefix, hub.catalog.service)
        self.service_epoch: str | None = None  # of the last event applied here
        self.applied = 0  # the service sequence number of the last event applied here
        self.skew = 0.0  # Redis's clock minus ours, in seconds
        self.dropped = 0  # queued events dropped because too many were waiting
        self._started = False
        self._progress = anyio.Event()  # set (and replaced) whenever ``applied`` moves
        self._queued: deque[Validated] = deque()
        self._wake = anyio.Event()
        # EVALSHA, and EVAL again when Redis lost its script cache (NOSCRIPT after a restart)
        self._publish = link.redis.register_script(PUBLISH)
        self._subscribe = link.redis.register_script(SUBSCRIBE)
        link.listen(self.keys.channel, self._received)
        link.on_up(self._caught_up)

    # --- publishing ------------------------------------------------------------------

    async def publish(
        self, events: Sequence[Validated], *, read_own: bool = True
    ) -> list[list[Published]]:
        """Publish validated events as one run; their placements (once this node has them).

        ``read_own``: return only once this node applied them (its clients and
        projection have them); without it, once Redis has numbered them.

        Raises :class:`RelayUnavailable` if Redis cannot be reached or does not
        answer within the command timeout (the event is then not published).
        """
        if not events:
            return []
        if not self.link.up:
            raise RelayUnavailable()
        settings = self.hub.settings
        keys = [self.keys.state, self.keys.log]
        args: list[Any] = [
            self.keys.channel,
            int((time.time() + self.skew + COMMAND_TIMEOUT) * 1000),
            secrets.token_hex(8),
            settings.history_size,
            max(1, math.ceil(settings.history_age)),
            META_TTL,
            LOG_SIZE,
            len(events),
        ]
        numbers: dict[str, str] = {}  # channel -> its number in the script's keys
        for event, channels, payload in events:
            for channel in channels:
                if channel not in numbers:
                    numbers[channel] = str(len(numbers) + 1)
                    keys += [self.keys.meta(channel), self.keys.history(channel)]
            which = " ".join([numbers[channel] for channel in channels])
            args += [encode_record(event, channels, payload), which]
        try:
            header = await self._publish(keys=keys, args=args)
        except ResponseError as exc:  # STALE (Redis was frozen), out of memory, ...
            log.warning("relay %s: redis refused a publish: %s", self.hub.catalog.service, exc)
            raise RelayUnavailable() from exc
        except (RedisError, OSError) as exc:
            self.link.failed(exc)
            raise RelayUnavailable() from exc
        service, first, placements = json.loads(header)  # what the script published
        placed = [
            [Published(c, int(o), str(e)) for c, (o, e) in zip(channels, event, strict=True)]
            for (_, channels, _), event in zip(events, placements, strict=True)
        ]
        if read_own:  # read-your-writes: this node's clients and projection have it now
            await self._until_applied(service, int(first) + len(events) - 1)
        return placed

    def publish_later(
        self, event: str, channels: Sequence[str], payload: Mapping[str, Any]
    ) -> None:
        """Queue a validated event for :meth:`run` (for synchronous callers); order is kept."""
        if len(self._queued) >= MAX_QUEUED:
            if not self.dropped:
                log.error(
                    "relay %s: %d events wait for redis; dropping",
                    self.hub.catalog.service,
                    MAX_QUEUED,
                )
            self.dropped += 1
            return
        self._queued.append((event, channels, payload))
        self._wake.set()

    async def run(self) -> None:
        """Publish what :meth:`publish_later` queued, in order, retrying while Redis is away."""
        failing = False
        while True:
            while not self._queued:
                self._wake = anyio.Event()
                await self._wake.wait()
            batch = list(islice(self._queued, CATCH_UP_CHUNK))
            try:
                await self.publish(batch)
            except RelayUnavailable:
                if not failing:
                    log.warning("relay %s: cannot publish; retrying", self.hub.catalog.service)
                failing = True
                await anyio.sleep(RETRY_SECONDS)
                continue
            failing = False
            for _ in batch:
                self._queued.popleft()

    # --- receiving -------------------------------------------------------------------

    def _received(self, message: bytes) -> None:
        """One publish from pub/sub: apply it if it is the next, else catch up."""
        header, *records = message.split(b"\n")
        service, first, placements = json.loads(header)
        if service != self.service_epoch:
            if self.service_epoch is None and self.applied == 0 and first == 1:
                self.service_epoch = service  # the service's first event ever
            else:
                self._resync("the service's events were renumbered")
                return
        skip = self.applied + 1 - first  # already applied while catching up
        if skip < 0:
            self._resync("events are missing")
            return
        if skip < len(records):  # decode only what is new here
            pairs = zip(records[skip:], placements[skip:], strict=True)
            self._apply([_numbered(r, p) for r, p in pairs], first + len(records) - 1)

    def _apply(self, numbered: list[Numbered], last: int) -> None:
        self.hub.place_numbered(numbered)
        self.applied = last
        self._advanced()

    def _advanced(self) -> None:
        """Wake whoever waits for this node to apply an event (:meth:`_until_applied`)."""
        self._progress.set()
        self._progress = anyio.Event()

    def _resync(self, reason: str) -> None:
        """Reconnect: catching up (:meth:`_caught_up`) decides what was lost."""
        self.link.failed(RedisError(f"relay {self.hub.catalog.service}: {reason}"))

    async def _until_applied(self, service: str | None, sequence: int) -> bool:
        """Wait (at most the command timeout) until this node applied ``sequence``."""
        with anyio.move_on_after(COMMAND_TIMEOUT):
            while service is not None and (
                self.service_epoch != service or self.applied < sequence
            ):
                await self._progress.wait()
            return True
        return False

    # --- catching up -----------------------------------------------------------------

    async def _caught_up(self) -> None:
        """The link is (back) up, pub/sub not yet read: apply what was missed meanwhile."""
        redis = self.link.redis
        before = time.time()
        async with redis.pipeline(transaction=True) as pipe:
            pipe.time()
            pipe.hmget(self.keys.state, ["e", "n"])
            clock, (service_raw, count_raw) = await pipe.execute()
        self.skew = clock[0] + clock[1] / 1e6 - (before + time.time()) / 2
        service = _text(service_raw) if service_raw is not None else None
        count = int(count_raw or 0)
        if not self._started:
            # a node starting: earlier events are not its clients' (they recover from
            # Redis), but its projection folds what the log holds, as the others did;
            # should Redis fail meanwhile, the next catch-up applies the rest
            self._started = True
            self.service_epoch = service
            try:
                await self._read_log(1, count, fold_only=True)
            except (ValueError, KeyError, TypeError) as exc:
                log.error("relay %s: unreadable log entry: %r", self.hub.catalog.service, exc)
            self.applied = count
            self._advanced()
            return
        if service is None:  # Redis holds no events: empty, or nothing was ever published
            if self.service_epoch is not None or self.applied:
                self._lost("redis no longer has this relay's events", None, 0)
            return
        if service != self.service_epoch and (self.service_epoch is not None or self.applied):
            self._lost("redis renumbered this relay's events", service, count)
            return
        self.service_epoch = service
        missed = count - self.applied
        try:
            complete = missed <= 0 or await self._read_log(self.applied + 1, count)
        except (ValueError, KeyError, TypeError) as exc:  # not what this module writes
            log.error("relay %s: unreadable log entry: %r", self.hub.catalog.service, exc)
            complete = False
        if missed < 0:
            self._lost("redis has fewer events than were applied here", service, count)
        elif not complete:
            self._lost("redis no longer has every event missed here", service, count)
        elif missed:
            log.info("relay %s: caught up on %d events", self.hub.catalog.service, missed)

    async def _read_log(self, start: int, end: int, *, fold_only: bool = False) -> bool:
        """Apply the service log's events ``start..end``; False if the log lacks any.

        ``fold_only``: only fold what the log holds into the projection.
        """
        while start <= end:
            entries: Any = await self.link.redis.xrange(  # [(id, {field: value})]
                self.keys.log, min=str(start), max=str(end), count=CATCH_UP_CHUNK
            )
            if not entries:
                return fold_only
            numbered = [_numbered(fields[b"r"], json.loads(fields[b"p"])) for _, fields in entries]
            first, last = _number(entries[0][0]), _number(entries[-1][0])
            if fold_only:
                for prepared, _ in numbered:
                    self.hub.projection.apply(prepared.event, prepared.data)
                self.applied = last
            elif first != start:
                return False
            else:
                self._apply(numbered, last)
            start = last + 1
        return True

    def _lost(self, reason: str, service: str | None, count: int) -> None:
        """Events may be missing here: start over from Redis's numbering, tell the followers."""
        log.warning("relay %s: %s; followers must recover", self.hub.catalog.service, reason)
        self.hub.forget_channels()
        self.service_epoch, self.applied = service, count
        self._advanced()
        self.on_lost()

    # --- subscribing -----------------------------------------------------------------

    async def subscribe(
        self, member: Member, channel: object, since: object
    ) -> tuple[dict[str, Any], list[Frame]]:
        """Follow a channel with Redis's numbering (see the module docstring)."""
        hub = self.hub
        name, mark = hub.check_subscribe(member, channel, since)
        read = await self._read(name, mark) if self.link.up else None
        if read is None:
            return hub.subscribe(member, name, since)  # this node's own view
        state = hub.channels.get(name)
        offset = read.offset
        if state is not None and state.epoch == read.epoch and state.offset > offset:
            offset = state.offset  # applied here since the read
        data: dict[str, Any] = {
            "channel": name,
            "subscribed": True,
            "epoch": read.epoch,
            "offset": offset,
        }
        if mark is None:
            hub.follow(member, name, again=False)
            return data, []
        replay = self._missed(name, mark, read, offset)
        data["recovered"] = replay is not None
        hub.follow(member, name)
        return data, replay or []

    async def _read(self, name: str, mark: tuple[int, str] | None) -> ChannelRead | None:
        """The channel as Redis has it, once this node has caught up with that moment."""
        keys = [self.keys.state, self.keys.meta(name), self.keys.history(name)]
        since = mark[0] if mark is not None else -1
        args: list[str | int] = [
            secrets.token_hex(8),
            since,
            self.hub.settings.history_size,
            META_TTL,
        ]
        try:
            service, sequence, epoch, offset, now, entries = await self._subscribe(
                keys=keys, args=args
            )
        except ResponseError as exc:
            log.warning("relay %s: redis refused a subscribe: %s", self.hub.catalog.service, exc)
            return None
        except (RedisError, OSError) as exc:
            self.link.failed(exc)
            return None
        read = ChannelRead(
            _text(service) or None,
            int(sequence),
            _text(epoch),
            int(offset),
            int(now),
            [(_number(i), int(f[b"t"]), f[b"r"]) for i, f in _pairs(entries)],
        )
        if not await self._until_applied(read.service, read.sequence):
            return None
        return read

    def _missed(
        self, name: str, mark: tuple[int, str], read: ChannelRead, offset: int
    ) -> list[Frame] | None:
        """The frames after ``since``: the stream's up to the read, this node's after it;
        None unless every one of them is there."""
        since, epoch = mark
        if epoch != read.epoch or since > offset:
            return None
        frames: list[Frame] = []
        if since < read.offset:
            entries = read.entries
            if len(entries) != read.offset - since or entries[0][0] != since + 1:
                return None
            if read.now_ms - entries[0][1] > self.hub.settings.history_age * 1000:
                return None
            for number, _, record in entries:
                prepared, _ = decode_record(record)
                text = prepared.for_channel(name, number, read.epoch)
                frames.append(Frame(text.encode(), text=True))
        if offset > max(since, read.offset):
            local = self.hub.history_after(name, max(since, read.offset))
            if local is None:
                return None
            frames += local
        return frames


def _pairs(entries: list[Any]) -> list[tuple[bytes, dict[bytes, bytes]]]:
    """``XRANGE`` entries as a Lua script returns them: ``[id, [field, value, ...]]``."""
    out = []
    for entry_id, flat in entries:
        out.append((entry_id, dict(zip(flat[::2], flat[1::2], strict=True))))
    return out
