"""Baseline relay for bench/relay_fanout.py: the simplest honest ASGI relay on hypercorn.

Subscribers connect to any path but `/pub`, are put in a set and get a one-line welcome.
Every text message the publisher sends on `/pub` is forwarded verbatim to each
subscriber with `await send(...)` in a loop (no parsing, no envelope, no queues).
hypercorn runs with the settings the inkwire relay uses (listen backlog 1024,
max_app_queue_size 128, no pings, no access log), so the difference is the app.

    python bench/baseline_asgi_relay.py --host 127.0.0.1 --port 8765
"""

from __future__ import annotations

from typing import Any

import baseline_cli
from hypercorn.asyncio import serve
from hypercorn.config import Config

WELCOME = '{"type":"welcome"}'

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
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.backlog = 1024
    config.max_app_queue_size = 128
    config.websocket_ping_interval = None
    config.accesslog = None
    await serve(app, config)  # type: ignore[arg-type]


if __name__ == "__main__":
    baseline_cli.main(__doc__, run)
