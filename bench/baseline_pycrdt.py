"""Baseline server for bench/yjs_fanout.py: stock pycrdt-websocket on hypercorn.

`WebsocketServer` + `ASGIServer` exactly as pycrdt-websocket ships them, served by
hypercorn with its defaults except a listen backlog of 1024 (so that hundreds of
simultaneous connects are not refused), and pycrdt-websocket's own `exception_logger`
as exception handler (without it, one room's start/stop race takes the server down).
The room name is the whole request path, so `ws://HOST:PORT/yjs/room` is a room
named "/yjs/room".

    python bench/baseline_pycrdt.py --host 127.0.0.1 --port 8765
"""

from __future__ import annotations

import baseline_cli
from hypercorn.asyncio import serve
from hypercorn.config import Config
from pycrdt.websocket import ASGIServer, WebsocketServer, exception_logger


async def run(host: str, port: int) -> None:
    config = Config()
    config.bind = [f"{host}:{port}"]
    config.backlog = 1024
    config.accesslog = None
    # exception_logger: a failing room is logged instead of stopping the whole server.
    websocket_server = WebsocketServer(exception_handler=exception_logger)
    app = ASGIServer(websocket_server)
    async with websocket_server:
        await serve(app, config)  # type: ignore[arg-type]


if __name__ == "__main__":
    baseline_cli.main(__doc__, run)
