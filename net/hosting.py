"""Running an ASGI app under hypercorn in the caller's anyio loop, one way for all.

Both the collab server and the relays serve this way: settings measured for
fan-out (a deep listen backlog, reading ahead, our own ping-free keepalive),
hypercorn's asyncio or trio worker to match the running loop, TLS and an
inherited listening socket when asked (:class:`Listen`), a shutdown
that first closes every client with 1001 and waits for them, bounded, so
hypercorn has no open connection left to cancel noisily, and
:func:`close_websocket`, the one way both apps end a connection themselves.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import sniffio
from hypercorn.config import Config as HypercornConfig

from net.asgi import Message, Receive, Send
from net.wire import raw_writer

SHUTDOWN_SECONDS = 1.5  # for clients to take their 1001 close before hypercorn stops
UPGRADE_SECONDS = 5.0  # from accepting a TCP connection to its complete request
TLS_HANDSHAKE_SECONDS = 10.0
APP_QUEUE = 32  # messages hypercorn parses ahead of the app (see hypercorn_config)
# a full garbage collection is considered after this many young (generation 1) ones:
# 10x CPython's default of 10, see tune_gc
FULL_GC_EVERY = 100
# ... and run once this many connections closed since the last (or a quarter of those open)
CLOSED_PER_FULL_GC = 1000


class HostedApp(Protocol):
    """What an app offers to be hosted: its frame limit and a way to wind down."""

    @property
    def max_message_size(self) -> int: ...

    def begin_shutdown(self) -> None: ...

    async def wait_all_closed(self) -> None: ...

    # Any, not net.asgi's aliases: hypercorn types its scopes and messages as TypedDicts
    async def __call__(self, scope: Any, receive: Any, send: Any) -> None: ...


async def accept_websocket(send: Send, subprotocol: str | None = None) -> None:
    """Accept a WebSocket handshake, declining permessage-deflate.

    hypercorn accepts permessage-deflate whenever a client offers it (browsers
    and Node's ``ws`` always do), with no setting to refuse it. Our frames go
    out uncompressed anyway (see :mod:`net.wire`), so the extension would only
    serve frames the client compresses, and for that each connection would
    keep a zlib inflate context with a 32 KiB window: ~40 KiB per connection,
    the biggest single part of an idle one (docs/capacity.md). Declined, a
    client simply sends its frames uncompressed (RFC 7692: the server may
    accept none of the offers). Yjs updates are compact binary; relay requests
    are small JSON.

    The one hook: hypercorn answers the offer from ``Handshake.extensions``
    (the offer as parsed from the request) when the app accepts; clearing it
    before ``websocket.accept`` leaves nothing to agree on. Where the
    handshake is not hypercorn's (another server), the offer is left alone.
    """
    stream = getattr(send, "__self__", None)
    handshake = getattr(stream, "handshake", None)
    if handshake is not None and hasattr(handshake, "extensions"):
        handshake.extensions = None
    message: Message = {"type": "websocket.accept"}
    if subprotocol is not None:
        message["subprotocol"] = subprotocol
    await send(message)


def release_headers(scope: MutableMapping[str, Any]) -> None:
    """Drop a joined WebSocket's request headers from its ASGI scope.

    Both apps read the headers once, at the join (the token). The server keeps
    the scope for the connection's whole life (hypercorn: its ``WSStream``, for
    the access log line at the close), and with it the header list, its tuples
    and bytes: ~1 KiB of every idle connection (docs/capacity.md). The scope is
    the app's to read and change (ASGI); a server's access log of a WebSocket
    then shows no request headers (ours has no access log).
    """
    scope["headers"] = []


async def close_websocket(
    receive: Receive,
    send: Send,
    code: int,
    reason: str,
    grace: float,
    *,
    flooding: bool = False,
) -> None:
    """Close a connection the server ends: send the close frame, then read to the end.

    Reading on after the close is what lets the socket close. hypercorn hands
    client messages to the app through a bounded queue (``max_app_queue_size``
    below) and, once the app returns, puts a last ``websocket.disconnect`` in
    that same queue. A client that was still sending when we closed it (a
    flood cut off with 4008, a stream of malformed frames) leaves the queue
    full: that put, and hypercorn's reader behind it, would then wait forever,
    so the client's answering close frame is never read, the TCP connection
    never closed, and the client sits in CLOSING until its own timeout, as if
    the close had never come. Draining (and dropping) what is queued until
    hypercorn reports the disconnect completes the closing handshake.

    When the handshake does not end within ``grace`` seconds (a client that
    stopped reading cannot even take the close frame), the socket is closed
    where we reach it (asyncio, HTTP/1.1) the way hypercorn would close it:
    no more reading, but what was written, the close frame last, still goes
    out as the client reads on, so a slow consumer finds its 4009 at the end.
    What the client had sent by then is drained for one more ``grace``, so
    hypercorn's last put finds room and nothing stays blocked.

    ``flooding``: the client is closed for sending too much (4008). Its
    socket then holds a backlog of frames that draining would have hypercorn
    parse one by one, hundreds of milliseconds of CPU taken from everyone
    else, for messages that are dropped anyway. So the socket is closed right
    after the close frame, as after a lapsed grace: the backlog is discarded
    unread, what hypercorn had read ahead too (:func:`_discard_read_ahead`),
    and only what it had queued is drained.
    """
    writer = raw_writer(send) if flooding else None
    if writer is not None:
        with anyio.move_on_after(grace):
            await send({"type": "websocket.close", "code": code, "reason": reason})
        writer.transport.close()
        _discard_read_ahead(send)
        with anyio.move_on_after(grace):
            await _drain(receive)
        return
    with anyio.move_on_after(grace):
        await send({"type": "websocket.close", "code": code, "reason": reason})
        await _drain(receive)
        return
    writer = raw_writer(send)
    if writer is None:
        return
    writer.transport.close()
    with anyio.move_on_after(grace):
        await _drain(receive)


async def _drain(receive: Receive) -> None:
    while (await receive())["type"] != "websocket.disconnect":
        pass


def _discard_read_ahead(send: Send) -> None:
    """Drop the bytes hypercorn read from a flooder's socket but has not parsed.

    Closing the socket discards what the kernel holds, not what hypercorn
    already read: a few hundred KiB (wsproto's frame buffer, fed 64 KiB at a
    time, and the stream reader, which stops reading only past 128 KiB), 3 400
    small requests in tests/test_capacity.py. Draining to the disconnect had
    hypercorn parse every one of them, 32 per loop turn (:data:`APP_QUEUE`),
    ~15 µs a frame: ~50 ms of CPU after each 4008, in ~0.5 ms steps that every
    other client's message waited behind, several times on its way in
    (docs/capacity.md, "Relay fairness: what held the loop").

    The stream reader gets an error, so hypercorn's next read ends its reading
    (then it reports the disconnect); wsproto's buffer is emptied, so the
    frames it is handing out now end with the one it holds. Where the
    connection is not hypercorn's asyncio HTTP/1.1 one, as found by
    :func:`net.wire.raw_writer`, nothing is touched and the backlog is parsed
    as before.
    """
    stream = getattr(send, "__self__", None)  # hypercorn's WSStream
    try:
        reader = stream.send.__self__.send.__self__.reader  # type: ignore[union-attr]
    except AttributeError:
        return
    if isinstance(reader, asyncio.StreamReader):
        reader.set_exception(ConnectionResetError("closed for flooding"))
    # wsproto's Connection -> FrameProtocol -> FrameDecoder -> Buffer (private names: each
    # looked up with a default, so another wsproto leaves its buffer to be parsed)
    connection = getattr(stream, "connection", None)
    decoder = getattr(getattr(connection, "_proto", None), "_frame_decoder", None)
    buffer: Any = getattr(decoder, "buffer", None)
    if isinstance(getattr(buffer, "buffer", None), bytearray) and hasattr(buffer, "bytes_used"):
        buffer.buffer.clear()
        buffer.bytes_used = 0


@dataclass(frozen=True)
class Listen:
    """How a server listens, beyond host and port: TLS, and an inherited socket.

    ``certfile`` and ``keyfile``: serve TLS only (``https://``, ``wss://``) on every
    route. ``fd``: accept on this already bound, listening socket instead of binding
    ``host:port`` (``inkwire up`` binds each port once in the supervisor and its
    workers share it; see docs/service.md).
    """

    certfile: str | None = None
    keyfile: str | None = None
    fd: int | None = None

    @property
    def tls(self) -> bool:
        return self.certfile is not None


PLAIN = Listen()


def hypercorn_config(
    app: HostedApp, host: str, port: int, listen: Listen = PLAIN
) -> HypercornConfig:
    config = HypercornConfig()
    config.bind = [f"fd://{listen.fd}" if listen.fd is not None else _bind(host, port)]
    if listen.certfile is not None and listen.keyfile is not None:
        config.certfile = listen.certfile
        config.keyfile = listen.keyfile
        # HTTP/1.1 only, as in the clear: a WebSocket then is the same protocol either
        # way (not RFC 8441 over HTTP/2), and keeps the direct socket writes of net.wire
        config.alpn_protocols = ["http/1.1"]
    config.backlog = 1024
    # How far hypercorn parses a client's frames ahead of the app. It fills this
    # queue in one turn of the loop, with no suspension until it is full, so it
    # bounds how long one flooding client's socket holds everyone else: at 128 a
    # turn took 2-3 ms of CPU (wsproto, ~20 us a frame), the quiet diagram's p99
    # beside a flooder 12 ms (docs/capacity.md). 32 still lets a burst coalesce
    # (the default of 10 capped it); it counts messages, each up to the size limit.
    config.max_app_queue_size = APP_QUEUE
    # the app's own check closes with a reason; hypercorn's is the hard stop above it
    config.websocket_max_message_size = app.max_message_size + (1 << 20)
    # hypercorn's ping task outlives a closed socket by up to one interval and
    # then holds shutdown; the apps keep connections alive themselves
    config.websocket_ping_interval = None
    config.graceful_timeout = 1.0
    # Slow and half-open clients (see docs/capacity.md). hypercorn drops a connection
    # whose request (a WebSocket upgrade included) is not complete this many seconds
    # after it was accepted, however it trickles in, and one idle between HTTP requests
    # as long; its headers may not pass h11_max_incomplete_size (16 KiB). A TLS
    # handshake gets ssl_handshake_timeout. read_timeout stays None: it would also cut
    # an open WebSocket that is merely quiet. A client that never answers our close
    # frame is cut by close_websocket after its grace.
    config.keep_alive_timeout = UPGRADE_SECONDS
    config.h11_max_incomplete_size = 16 * 1024
    config.ssl_handshake_timeout = TLS_HANDSHAKE_SECONDS
    config.accesslog = None
    config.errorlog = logging.getLogger("hypercorn.error")
    return config


def tune_gc() -> None:
    """Make full garbage collections 10x rarer in a server process (called once at start).

    Every open connection holds ~140 objects the cyclic collector tracks
    (hypercorn's and ours), and they all live long. CPython considers a full
    collection after every 10 young ones, i.e. every ~70 000 new objects, and
    runs it once the objects added since the last one are a quarter of those it
    kept then: while connections pour in (a restart, every client back at once)
    that held at every chance, each pass walking every connection's objects
    again, 12 passes for the first 10 000 connections. That was ~40 % of the
    server's CPU per accepted connection, and each pass paused the loop for
    0.3-0.4 s on average (docs/capacity.md). Considered after 100 young collections
    instead, they come once per ~700 000 new objects: the young collections,
    which stay as small and quick as before, do the rest.

    What that would cost: cyclic garbage that only a full pass frees lives
    longer, and a closed connection is such garbage (hypercorn's objects for
    it reference each other, ~75 objects in all), so a server whose clients
    keep leaving and coming back would hold ~10 times as many dead
    connections between passes (3x the memory in a test: 200 clients, 20 000
    reconnects). So the servers also count their closed connections
    (:func:`connection_closed`) and run a full pass once there are
    ``CLOSED_PER_FULL_GC`` of them since the last one, or a quarter of the
    connections still open if that is more: the dead are bounded by what
    closes, not by what opens (except in the shutdown, when all of them close
    at once). Only for our own server processes: an app embedded elsewhere
    leaves its host's collector alone.
    """
    young, middle, _ = gc.get_threshold()
    gc.set_threshold(young, middle, FULL_GC_EVERY)
    _dead.counting = True
    if _dead.on_gc not in gc.callbacks:
        gc.callbacks.append(_dead.on_gc)


class _DeadConnections:
    """Connections closed since the last full collection (counted once tune_gc ran)."""

    def __init__(self) -> None:
        self.counting = False
        self.closed = 0

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        if phase == "stop" and info["generation"] == 2:
            self.closed = 0


_dead = _DeadConnections()


def connection_closed(still_open: int) -> None:
    """A server's connection ended (``still_open`` are left): past the bound, a full
    collection frees the dead ones' garbage now (see :func:`tune_gc`)."""
    if not _dead.counting:
        return
    _dead.closed += 1
    if _dead.closed >= max(CLOSED_PER_FULL_GC, still_open // 4):
        gc.collect()
        _dead.closed = 0


def _bind(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def run_app(
    app: HostedApp,
    host: str,
    port: int,
    shutdown_trigger: Callable[[], Awaitable[None]],
    listen: Listen = PLAIN,
) -> None:
    """Serve ``app`` until ``shutdown_trigger`` returns, then close clients (bounded)."""

    async def trigger() -> None:
        await shutdown_trigger()
        # every client is about to close: no full collections per batch of them now,
        # the process is on its way out (see connection_closed)
        _dead.counting = False
        app.begin_shutdown()
        with anyio.move_on_after(SHUTDOWN_SECONDS):
            await app.wait_all_closed()

    config = hypercorn_config(app, host, port, listen)
    if sniffio.current_async_library() == "trio":
        from hypercorn.trio import serve as trio_serve

        await trio_serve(app, config, shutdown_trigger=trigger)
    else:
        from hypercorn.asyncio import serve as asyncio_serve

        await asyncio_serve(app, config, shutdown_trigger=trigger)
