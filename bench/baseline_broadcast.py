"""Baseline relay for bench/relay_fanout.py: a plain `websockets` server using `broadcast`.

Subscribers connect to any path but `/pub` and get a one-line welcome once they are
registered (the load generator's "joined" signal). Every text message the publisher
sends on `/pub` goes verbatim to every subscriber with `websockets.broadcast` (no
parsing, no envelope). Compression and keepalive pings are off, as in the inkwire relay.

    python bench/baseline_broadcast.py --host 127.0.0.1 --port 8765
"""

from __future__ import annotations

import baseline_cli
from websockets.asyncio.server import ServerConnection, broadcast, serve

WELCOME = '{"type":"welcome"}'


async def run(host: str, port: int) -> None:
    subscribers: set[ServerConnection] = set()

    async def handler(ws: ServerConnection) -> None:
        if ws.request is not None and ws.request.path == "/pub":
            await ws.send(WELCOME)
            async for message in ws:
                broadcast(subscribers, message)
            return
        subscribers.add(ws)
        try:
            await ws.send(WELCOME)
            await ws.wait_closed()
        finally:
            subscribers.discard(ws)

    async with serve(
        handler, host, port, compression=None, ping_interval=None, max_size=1 << 20, backlog=1024
    ) as server:
        await server.serve_forever()


if __name__ == "__main__":
    baseline_cli.main(__doc__, run)
