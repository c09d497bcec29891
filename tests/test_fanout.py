"""net.fanout without sockets: when a direct frame may be written at once, and when it waits."""

from __future__ import annotations

from collections.abc import Sequence

from net.fanout import FanoutLog, Subscriber
from net.wire import Frame


class Socket:
    """Stands in for a connection's raw writer: records what it took, or refuses."""

    def __init__(self, room: bool = True) -> None:
        self.room = room
        self.written: list[bytes] = []

    def write_now(self, frame: Frame) -> bool:
        if self.room:
            self.written.append(frame.payload)
        return self.room

    def deliver_now(self, start: int, entries: Sequence[object]) -> bool:
        return False  # the writer sends log entries here (see the last test)


def waiting_subscriber(log: FanoutLog[bytes], socket: Socket) -> tuple[Subscriber, list[str]]:
    """A subscriber whose writer drained everything and ended (it waits)."""
    wakes: list[str] = []
    subscriber = Subscriber(on_overflow=lambda: None, direct=socket)
    subscriber.on_wake = lambda: wakes.append("wake")
    log.add(subscriber)
    log.attach(subscriber, log.head)
    wakes.clear()
    assert log.take(subscriber) is None and subscriber.waiting
    return subscriber, wakes


def drain(log: FanoutLog[bytes], subscriber: Subscriber) -> list[object]:
    """What the subscriber's writer would send, in order."""
    out: list[object] = []
    while (item := log.take(subscriber)) is not None:
        out.append(item.payload if isinstance(item, Frame) else list(item[1]))
    return out


def test_a_waiting_subscriber_gets_a_due_frame_at_once() -> None:
    log: FanoutLog[bytes] = FanoutLog()
    socket = Socket()
    subscriber, wakes = waiting_subscriber(log, socket)
    log.send_direct(subscriber, Frame(b"reply"))
    assert socket.written == [b"reply"]
    assert not subscriber.outbox and subscriber.waiting and not wakes  # no writer started


def test_a_full_socket_queues_the_frame_for_the_writer() -> None:
    log: FanoutLog[bytes] = FanoutLog()
    socket = Socket(room=False)
    subscriber, wakes = waiting_subscriber(log, socket)
    log.send_direct(subscriber, Frame(b"reply"))
    assert wakes == ["wake"] and not subscriber.waiting
    assert drain(log, subscriber) == [b"reply"]


def test_a_frame_never_overtakes_one_queued_before_it() -> None:
    log: FanoutLog[bytes] = FanoutLog()
    socket = Socket()
    subscriber, _ = waiting_subscriber(log, socket)
    position = log.append(b"entry", 5)  # appended, not yet published (say, being committed)
    log.send_direct(subscriber, Frame(b"after the entry"), after=position + 1)
    assert socket.written == []  # its turn has not come: queued
    log.take(subscriber)  # the writer finds nothing it may send yet and waits again
    assert subscriber.waiting and len(subscriber.outbox) == 1
    log.send_direct(subscriber, Frame(b"second"))  # due now, but behind the queued one
    assert socket.written == []
    log.publish()
    assert drain(log, subscriber) == [[b"entry"], b"after the entry", b"second"]


def test_a_busy_writer_keeps_the_order_of_what_it_drains() -> None:
    log: FanoutLog[bytes] = FanoutLog()
    socket = Socket()
    subscriber, wakes = waiting_subscriber(log, socket)
    log.append(b"entry", 5)
    log.publish()  # its direct writer declines the run: the writer is woken for it
    assert wakes == ["wake"] and not subscriber.waiting
    # due now, after the entry; but the writer is running, so it queues behind the entry
    log.send_direct(subscriber, Frame(b"reply"), after=log.head)
    assert socket.written == []
    assert drain(log, subscriber) == [[b"entry"], b"reply"]
