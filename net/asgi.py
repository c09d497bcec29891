"""The ASGI types both servers' handlers are written against, and their HTTP replies.

ASGI messages are plain dicts, so these aliases are all the typing there is;
one set of them keeps every handler's signature the same. The reply helpers
are the whole of what the servers' small HTTP routes (health, metrics,
``POST /publish``, the REST API) need: a body known in full, sent in one
piece with its length.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


async def respond(
    send: Send,
    status: int,
    body: bytes,
    content_type: str = "text/plain; charset=utf-8",
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    """A complete response: status, content type and length, ``extra`` headers, the body."""
    headers = [(b"content-type", content_type.encode()), (b"content-length", b"%d" % len(body))]
    headers += extra or []
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def respond_json(send: Send, status: int, body: Any) -> None:
    await respond(send, status, json.dumps(body).encode(), "application/json")


async def read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, or None once it passes ``limit`` bytes (the rest is not read).

    A client gone before the end (any message but ``http.request``) reads as an
    empty body.
    """
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return b""
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)
