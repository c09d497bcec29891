"""Baseline relay for bench/relay_fanout.py: the simplest honest ASGI relay on hypercorn.

Subscribers connect to any path but `/pub`, are put in a set and get a one-line welcome.
Every text message the publisher sends on `/pub` is forwarded verbatim to each
subscriber with `await send(...)` in a loop (no parsing, no envelope, no queues).
hypercorn runs with the settings the inkwire relay uses (listen backlog 1024,
max_app_queue_size 128, no pings, no access log), so the difference is the app.

Two more routes are hypercorn's floor for a connection's setup as inkwire's
servers do it (bench/connections.py), every message a constant of the same size:
`/yjs/<room>` is a y-websocket join of an empty diagram (its sync step 1 sent,
the client's step 1 answered with step 2, the client's step 2 read), `/relay` a
relay client's start (a welcome, a `subscribe` request read and answered). With
BASELINE_FULL_GC_EVERY set, the process's garbage collector gets that third
threshold, as inkwire's server processes do (net.hosting.tune_gc).

    python bench/baseline_asgi_relay.py --host 127.0.0.1 --port 8765
"""

from __future__ import annotations

import gc
import json
import os
from typing import Any

import baseline_cli
from hypercorn.asyncio import serve
from hypercorn.config import Config

WELCOME = '{"type":"welcome"}'
YJS_STEP1 = b"\x00\x00\x01\x00"  # sync step 1 of an empty document
YJS_STEP2 = b"\x00\x01\x02\x00\x00"  # sync step 2 of an empty document


def _envelope(kind: str, event: str, data: dict[str, Any]) -> str:
    return json.dumps(
        {
            "id": "0" * 32,
            "correlation_id": "s1" if kind == "response" else None,
            "type": kind,
            "event": event,
            "data": data,
            "timestamp": "2026-01-01T00:00:00.000000+00:00",
            "room": None,
            "error_code": None,
            "error_message": None,
        },
        separators=(",", ":"),
    )


RELAY_WELCOME = _envelope(
    "event",
    "session.created",
    {
        "connection_id": "0" * 16,
        "server": "dhruva",
        "protocol": "inkwire-relay/1",
        "authenticated": False,
        "limits": {
            "max_message_size": 1048576,
            "max_subscriptions": 100,
            "history_size": 1000,
            "history_age": 3600,
            "keepalive_interval": 25.0,
        },
    },
)
RELAY_SUBSCRIBED = _envelope(
    "response",
    "subscribe",
    {"channel": "adapter:bench", "subscribed": True, "epoch": "0" * 16, "offset": 0},
)

Send = Any
subscribers: set[Send] = set()


async def app(scope: dict[str, Any], receive: Any, send: Send) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if (await receive())["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    if scope["path"].startswith("/yjs/"):
        await send({"type": "websocket.send", "bytes": YJS_STEP1})
        while (message := await receive())["type"] != "websocket.disconnect":
            if (message.get("bytes") or b"")[:2] == b"\x00\x00":  # the client's step 1
                await send({"type": "websocket.send", "bytes": YJS_STEP2})
        return
    if scope["path"] == "/relay":
        await send({"type": "websocket.send", "text": RELAY_WELCOME})
        while (message := await receive())["type"] != "websocket.disconnect":
            await send({"type": "websocket.send", "text": RELAY_SUBSCRIBED})
        return
    await send({"type": "websocket.send", "text": WELCOME})
    if scope["path"] == "/pub":
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            out = {"type": "websocket.send", "text": message.get("text")}
            for subscriber in list(subscribers):
                try:
                    await subscriber(out)
                except Exception:  # a subscriber that went away; its own task cleans up
                    subscribers.discard(subscriber)
    subscribers.add(send)
    try:
        while (await receive())["type"] != "websocket.disconnect":
            pass
    finally:
        subscribers.discard(send)


async def run(host: str, port: int) -> None:
    full_gc_every = os.environ.get("BASELINE_FULL_GC_EVERY")
    if full_gc_every:
        young, middle, _ = gc.get_threshold()
        gc.set_threshold(young, middle, int(full_gc_every))
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.backlog = 1024
    config.max_app_queue_size = 128
    config.websocket_ping_interval = None
    config.accesslog = None
    await serve(app, config)  # type: ignore[arg-type]


if __name__ == "__main__":
    baseline_cli.main(__doc__, run)
