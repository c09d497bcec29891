"""The hub without sockets: offsets, history bounds, recovery, no duplicates, epochs."""

from __future__ import annotations

import json

from relays.catalogs import BY_NAME
from relays.hub import Hub, HubSettings, Member

dhruva = BY_NAME["dhruva"]


def registry(hub: Hub, version: str) -> None:
    hub.publish("registry.updated", {"version": version})


def pending(hub: Hub, member: Member) -> list[str]:
    """What the member's writer would send next: outbox frames, then log entries."""
    sub = member.subscriber
    out = [
        json.loads(f.payload)["data"]["version"] for _, f in sub.outbox if b'"event"' in f.payload
    ]
    assert sub.cursor is not None
    entries = hub.log._entries[sub.cursor - hub.log._base :]
    out += [json.loads(f.payload)["data"]["version"] for f in member.frames(sub.cursor, entries)]
    return out


def test_resubscribe_with_since_while_entries_are_pending_sends_each_once() -> None:
    hub = Hub(dhruva)
    member = hub.join(lambda: None)
    data, _ = hub.subscribe(member, "registry")
    for v in "abc":
        registry(hub, v)  # the writer has not run: a, b, c are pending in the log
    data, replay = hub.subscribe(member, "registry", {"offset": 1, "epoch": data["epoch"]})
    assert data["recovered"] is True
    for frame in replay:
        hub.log.send_direct(member.subscriber, frame, after=hub.log.head)
    assert pending(hub, member) == ["b", "c"]


def test_history_is_bounded_by_age() -> None:
    now = [0.0]
    hub = Hub(dhruva, HubSettings(history_age=10), clock=lambda: now[0])
    member = hub.join(lambda: None)
    registry(hub, "old")
    now[0] = 20.0
    registry(hub, "new")
    data, replay = hub.subscribe(member, "registry", {"offset": 0, "epoch": hub.epoch})
    assert data["recovered"] is False and replay == []
    data, replay = hub.subscribe(member, "registry", {"offset": 1, "epoch": hub.epoch})
    assert data["recovered"] is True and len(replay) == 1


def test_an_evicted_channel_restarts_under_a_new_epoch() -> None:
    hub = Hub(dhruva, HubSettings(max_channels=1))
    hub.publish(
        "lifecycle.changed",
        {"entity_type": "a", "entity_id": "1", "old_state": "x", "new_state": "y"},
    )
    registry(hub, "1")  # evicts lifecycle
    [published] = [
        p
        for p in hub.publish(
            "lifecycle.changed",
            {"entity_type": "a", "entity_id": "1", "old_state": "x", "new_state": "y"},
        )
        if p.channel == "lifecycle"
    ]
    assert published.offset == 1 and published.epoch != hub.epoch
    member = hub.join(lambda: None)
    data, _ = hub.subscribe(member, "lifecycle", {"offset": 1, "epoch": hub.epoch})
    assert data["recovered"] is False  # an old offset is never taken for a new one


def test_a_never_published_channel_recovers_from_zero() -> None:
    hub = Hub(dhruva)
    member = hub.join(lambda: None)
    data, replay = hub.subscribe(member, "registry", {"offset": 0, "epoch": hub.epoch})
    assert data["recovered"] is True and replay == []


def test_followers_are_counted_and_first_and_last_reported() -> None:
    hub = Hub(dhruva)
    reports: list[tuple[str, bool]] = []
    hub.on_follow(lambda channel, followed: reports.append((channel, followed)))
    alice, bob = hub.join(lambda: None), hub.join(lambda: None)
    assert hub.followers("registry") == 0 and not hub.followed
    hub.subscribe(alice, "registry")
    hub.subscribe(alice, "registry")  # again: still one follower
    hub.subscribe(bob, "registry", {"offset": 0, "epoch": hub.epoch})
    hub.subscribe(bob, "adapter:a1")
    assert hub.followers("registry") == 2 and hub.followers("adapter:a1") == 1
    assert dict(hub.followed) == {"registry": 2, "adapter:a1": 1} and hub.subscriptions == 3
    assert reports == [("registry", True), ("adapter:a1", True)]

    hub.unsubscribe(alice, "registry")
    hub.unsubscribe(alice, "registry")  # not following any more: nothing changes
    assert hub.followers("registry") == 1 and reports[2:] == []
    hub.leave(bob)
    hub.leave(bob)  # twice is harmless
    assert hub.followers("registry") == 0 and not hub.followed and hub.subscriptions == 0
    assert sorted(reports[2:]) == [("adapter:a1", False), ("registry", False)]
