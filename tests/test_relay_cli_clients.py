"""``inkwire tail`` and ``inkwire publish`` as real subprocesses against an in-process relay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest
from anyio.streams.text import TextReceiveStream

import relays
from relays.catalogs import BY_NAME
from relays.cli_clients import format_event, publish_url
from tests.conftest import ROOT, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.processes]

dhruva = BY_NAME["dhruva"]
TIMEOUT = 20.0
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


@asynccontextmanager
async def relay() -> AsyncIterator[relays.Relay]:
    async with relays.serve(dhruva, "127.0.0.1", free_port()) as running:
        yield running


async def subscribed(running: relays.Relay, channels: set[str]) -> None:
    """Wait until some connection follows all of ``channels`` (the tail is ready)."""
    with anyio.fail_after(TIMEOUT):
        while not any(channels <= set(m.channels) for m in running.hub.members):
            await anyio.sleep(0.02)


async def inkwire(*args: str) -> subprocess.CompletedProcess[bytes]:
    return await anyio.run_process(
        [sys.executable, "-m", "collab.cli", *args], cwd=ROOT, env=ENV, check=False
    )


@asynccontextmanager
async def tail(*args: str) -> AsyncIterator[tuple[anyio.abc.Process, AsyncIterator[str]]]:
    """``inkwire tail`` running, with an iterator over its stdout lines; SIGINT at the end."""
    process = await anyio.open_process(
        [sys.executable, "-m", "collab.cli", "tail", *args], cwd=ROOT, env=ENV
    )
    assert process.stdout is not None

    async def lines() -> AsyncIterator[str]:
        assert process.stdout is not None
        buffered = ""
        async for chunk in TextReceiveStream(process.stdout):
            buffered += chunk
            while "\n" in buffered:
                line, buffered = buffered.split("\n", 1)
                yield line

    try:
        yield process, lines()
    finally:
        if process.returncode is None:
            process.kill()
        with anyio.fail_after(TIMEOUT):
            await process.wait()
        await process.aclose()


async def test_tail_prints_events_and_exits_cleanly_on_ctrl_c() -> None:
    async with relay() as running, tail(running.url, "adapter:a1", "registry") as (process, out):
        await subscribed(running, {"adapter:a1", "registry"})
        await running.broadcast.adapter_activated("a1", "my repo", {"version": "2"})
        await running.broadcast.registry_updated("v7", {"added": ["x"]})
        with anyio.fail_after(TIMEOUT):
            first, second = await out.__anext__(), await out.__anext__()
        time_, channel, event, *fields = first.split(" ", 3)
        assert (channel, event) == ("adapter:a1", "adapter.activated")
        assert len(time_) == len("10:00:00.000")
        assert 'repo="my repo"' in fields[0] and "adapter_id=a1" in fields[0]
        assert second.split(" ")[1:3] == ["registry", "registry.updated"]
        assert 'added=["x"]' in second
        process.send_signal(signal.SIGINT)
        with anyio.fail_after(TIMEOUT):
            assert await process.wait() == 0
        assert process.stderr is not None
        errors = b"".join([chunk async for chunk in process.stderr])
        assert b"Traceback" not in errors


async def test_tail_json_prints_raw_envelopes() -> None:
    async with relay() as running, tail(running.url, "registry", "--json") as (process, out):
        await subscribed(running, {"registry"})
        await running.broadcast.registry_updated("v1", {})
        with anyio.fail_after(TIMEOUT):
            message = json.loads(await out.__anext__())
        assert message["type"] == "event" and message["event"] == "registry.updated"
        assert message["room"] == "registry" and message["offset"] == 1
        process.terminate()
        with anyio.fail_after(TIMEOUT):
            assert await process.wait() == 0


async def test_tail_refused_channel_exits_non_zero() -> None:
    async with relay() as running:
        result = await inkwire("tail", running.url, "no such channel")
        assert result.returncode == 1 and b"INVALID_CHANNEL" in result.stderr


async def test_publish_prints_offsets() -> None:
    async with relay() as running:
        data = json.dumps({"adapter_id": "a", "repo": "r", "reason": "done"})
        for url in (running.http_url, running.url):  # ws:// works too
            result = await inkwire("publish", url, "adapter.deactivated", "--data", data)
            assert result.returncode == 0, result.stderr
            lines = result.stdout.decode().splitlines()
            offset = "1" if url == running.http_url else "2"
            assert lines == [
                f"adapter:a {offset} {running.hub.epoch}",
                f"lifecycle {offset} {running.hub.epoch}",
            ]


async def test_publish_refused_exits_non_zero_with_the_reason() -> None:
    async with relay() as running:
        missing = json.dumps({"adapter_id": "a", "repo": "r"})
        result = await inkwire("publish", running.url, "adapter.deactivated", "--data", missing)
        assert result.returncode == 1
        assert b"422" in result.stderr and b"reason" in result.stderr
        result = await inkwire("publish", running.url, "adapter.deactivated", "--data", "{nope")
        assert result.returncode == 2 and b"not JSON" in result.stderr
        assert running.hub.events_published == 0


async def test_publish_without_a_relay_exits_non_zero() -> None:
    result = await inkwire("publish", f"http://127.0.0.1:{free_port()}", "x.y")
    assert result.returncode == 1 and b"cannot reach" in result.stderr


def test_publish_url_derivation() -> None:
    assert publish_url("ws://h:1/") == "http://h:1/publish"
    assert publish_url("ws://h:1") == "http://h:1/publish"
    assert publish_url("ws://h:1/ws") == "http://h:1/publish"
    assert publish_url("wss://h/events?token=t") == "https://h/events/publish?token=t"
    assert publish_url("http://h:1/publish") == "http://h:1/publish"
    with pytest.raises(ValueError, match="not a relay URL"):
        publish_url("ftp://h/")


def test_format_event_line() -> None:
    from clients import Event

    event = Event(
        "a.b", "c:1", {"s": "x y", "n": 3, "w": "word"}, 1, "e", "2026-01-02T03:04:05.678+00:00"
    )
    assert format_event(event) == '03:04:05.678 c:1 a.b s="x y" n=3 w=word'


async def test_publish_sends_the_token() -> None:
    from relays.auth import make_token

    secret = "test-secret-of-at-least-32-bytes!!"
    settings = relays.RelaySettings(auth_secret=secret)
    async with relays.serve(dhruva, "127.0.0.1", free_port(), settings=settings) as running:
        data = json.dumps({"version": "v1"})
        result = await inkwire("publish", running.url, "registry.updated", "--data", data)
        assert result.returncode == 1 and b"401" in result.stderr
        token = make_token(secret, publish=True)
        result = await inkwire(
            "publish", running.url, "registry.updated", "--data", data, "--token", token
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.decode().split()[:2] == ["registry", "1"]
