"""``inkwire tail`` and ``inkwire publish``: a relay's events from a shell.

``tail URL CHANNEL...`` follows channels with :class:`clients.RelayClient`,
so it rides out relay restarts without missing events, and prints one line
per event (``time channel event key=value...``; ``--json`` for the raw
envelope, one per line, for ``jq``). Lost events (the relay could not
replay them) are reported on stderr, so stdout stays events only. Ctrl-C
or SIGTERM ends it with status 0.

``publish URL EVENT --data JSON`` posts to the relay's ``POST /publish``
(the URL may be the relay's ws:// one, as printed by ``inkwire relay``) and
prints where the event landed, one ``channel offset epoch`` line per
channel; a refusal (4xx) exits 1 with the relay's reason.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from datetime import datetime
from typing import TYPE_CHECKING, Any, TextIO
from urllib.parse import urlsplit, urlunsplit

if TYPE_CHECKING:  # each command imports its client when it runs: `inkwire` starts fast
    import httpx

    from clients.relay import Event, Gap

COMMANDS = frozenset(("tail", "publish"))
HTTP_TIMEOUT = 10.0


def add_commands(commands: Any) -> None:
    """Add ``tail`` and ``publish`` to an argparse subparsers object."""
    tail = commands.add_parser("tail", help="print a relay's events as they arrive")
    tail.add_argument("url", help="relay WebSocket URL, e.g. ws://127.0.0.1:8693/")
    tail.add_argument("channels", nargs="+", metavar="CHANNEL")
    tail.add_argument("--json", action="store_true", help="print each event's raw JSON")
    tail.add_argument("--batch", action="store_true", help="ask for batched frames")
    tail.add_argument("--token", help="sent as Authorization: Bearer")
    publish = commands.add_parser("publish", help="publish one event over HTTP (POST /publish)")
    publish.add_argument("url", help="relay URL (ws:// or http://)")
    publish.add_argument("event", help="event name, e.g. adapter.activated")
    publish.add_argument("--data", default="{}", help="the payload as a JSON object")
    publish.add_argument("--token", help="sent as Authorization: Bearer")


def run(args: argparse.Namespace) -> int:
    if args.command == "publish":
        return publish(args.url, args.event, args.data, args.token)
    import anyio

    try:
        return anyio.run(tail, args.url, args.channels, args.json, args.batch, args.token)
    except KeyboardInterrupt:  # Ctrl-C before the signal handler was in place
        return 0


# --- tail ---------------------------------------------------------------------------


async def tail(
    url: str,
    channels: list[str],
    raw: bool = False,
    batch: bool = False,
    token: str | None = None,
    out: TextIO | None = None,
) -> int:
    """Print events until a signal; 1 if the relay cannot be reached or refuses a channel."""
    import anyio

    from clients.relay import Gap, RelayClient, RelayError

    out = out or sys.stdout
    status = 0
    async with anyio.create_task_group() as tg:

        async def stop_on_signal() -> None:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

        async def follow() -> None:
            nonlocal status
            try:
                async with RelayClient(url, token=token, batch=batch) as client:
                    for channel in channels:
                        await client.subscribe(channel)
                    async for item in client:
                        if isinstance(item, Gap):
                            _error(f"events lost on {item.channel}: {describe_gap(item)}")
                        else:
                            print(json.dumps(item.raw) if raw else format_event(item), file=out)
                            out.flush()
            except RelayError as exc:
                _error(exc.message if exc.code == "CONNECTION" else str(exc))
                status = 1
            tg.cancel_scope.cancel()

        tg.start_soon(stop_on_signal)
        tg.start_soon(follow)
    return status


def format_event(event: Event) -> str:
    """``time channel event key=value...``: the time in UTC, values JSON unless plain words."""
    fields = " ".join(f"{key}={_value(value)}" for key, value in event.data.items())
    line = f"{_time(event.timestamp)} {event.room or '-'} {event.event}"
    return f"{line} {fields}" if fields else line


def describe_gap(gap: Gap) -> str:
    return (
        f"the relay could not replay after offset {gap.since_offset} (epoch {gap.since_epoch});"
        f" following again from offset {gap.offset} (epoch {gap.epoch})"
    )


def _time(timestamp: str | None) -> str:
    if not timestamp:
        return "--:--:--.---"
    try:
        return datetime.fromisoformat(timestamp).strftime("%H:%M:%S.%f")[:-3]
    except ValueError:
        return timestamp


def _value(value: object) -> str:
    if isinstance(value, str) and value and not any(c.isspace() or c in "\"'=" for c in value):
        return value
    return json.dumps(value, separators=(",", ":"))


# --- publish --------------------------------------------------------------------------


def publish_url(url: str) -> str:
    """The ``POST /publish`` URL of the relay at ``url`` (ws -> http, wss -> https)."""
    parts = urlsplit(url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    if scheme not in ("http", "https"):
        raise ValueError(f"not a relay URL: {url!r}")
    path = parts.path.rstrip("/")
    if path in ("", "/ws"):
        path = "/publish"
    elif not path.endswith("/publish"):
        path = f"{path}/publish"  # a relay mounted under a prefix
    return urlunsplit((scheme, parts.netloc, path, parts.query, ""))


def publish(url: str, event: str, data: str, token: str | None = None) -> int:
    """Post one event; print its offsets. 0 on 202, 1 on refusal or no relay, 2 on bad input."""
    try:
        payload = json.loads(data)
        target = publish_url(url)
    except ValueError as exc:
        _error(f"--data is not JSON: {exc}" if isinstance(exc, json.JSONDecodeError) else str(exc))
        return 2
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        response = httpx.post(
            target, json={"event": event, "data": payload}, headers=headers, timeout=HTTP_TIMEOUT
        )
    except httpx.HTTPError as exc:
        _error(f"cannot reach {target}: {exc}")
        return 1
    body = _json(response)
    if response.status_code != 202:
        reason = body.get("error") if isinstance(body, dict) else None
        _error(f"{response.status_code} {reason or response.reason_phrase}")
        return 1
    for result in body.get("published", []) if isinstance(body, dict) else []:
        for placed in result.get("offsets", []):
            print(f"{placed['channel']} {placed['offset']} {placed['epoch']}")
    return 0


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _error(message: str) -> None:
    print(f"inkwire: {message}", file=sys.stderr, flush=True)
