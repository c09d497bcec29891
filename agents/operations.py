"""The operators' tools: health, status, rooms and metrics of the collab server and its relays.

What ``websocket_health_check``, ``websocket_get_status``,
``websocket_list_rooms`` and ``websocket_get_metrics`` answer, read from
the servers' own HTTP routes, never from inside this process, so they say
what a load balancer or Prometheus would see:

- the collab server: ``/health/live``, ``/health/ready`` (rooms,
  connections, storage and Redis state), ``GET /api/rooms`` (every loaded
  room, and the uptime) and ``/metrics``;
- each relay: ``/health/live``, ``/health/ready``, ``/stats`` (channels,
  subscriptions, its busiest channels: a relay lists no more) and
  ``/metrics``.

Each function asks every server at once and returns a pydantic model (the
MCP tools' structured output). A server that does not answer, or answers
something else, is an entry with ``error`` set, never an exception; each
server has ``deadline`` seconds (:data:`DEADLINE` by default) for all its
requests in one call, however it stalls.
The caller owns the ``httpx.AsyncClient`` (its connection pool and
per-request timeout).
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal, TypeVar

import anyio
import httpx
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel, Field

from collab.dashboard import json_object, relay_url

DEADLINE = 3.0  # seconds for one server's requests in one call, whatever it does
MAX_SAMPLES = 2000  # metric samples per server in one answer
#: The series :func:`get_metrics` returns unless asked for others.
DEFAULT_PREFIXES = ("websocket_", "inkwire_")

Kind = Literal["collab", "relay"]
T = TypeVar("T", bound="ServerResult")


class Server(BaseModel):
    """A server the tools ask: a name for the answers, its base URL, its kind.

    ``token``, when the server has auth on, is sent as a bearer token to the
    routes that need one (``/api/rooms``, a relay's ``/stats``); it is never
    part of an answer.
    """

    name: str
    url: str
    kind: Kind
    token: str | None = Field(default=None, repr=False, exclude=True)

    @classmethod
    def collab(cls, url: str, name: str = "collab", token: str | None = None) -> Server:
        return cls(name=name, url=relay_url(url), kind="collab", token=token)

    @classmethod
    def relay(cls, url: str, name: str | None = None, token: str | None = None) -> Server:
        """A relay; named by its host and port unless given a name."""
        base = relay_url(url)
        return cls(name=name or base.split("://", 1)[1], url=base, kind="relay", token=token)


def servers_for(
    collab_url: str, relay_urls: Sequence[str] = (), *, token: str | None = None
) -> list[Server]:
    """The collab server at ``collab_url`` and the relays at ``relay_urls`` (as
    ``--dashboard-relay`` names them), all asked with ``token``. ValueError for a bad URL."""
    return [Server.collab(collab_url, token=token)] + [
        Server.relay(url, token=token) for url in relay_urls
    ]


class ServerResult(BaseModel):
    """What every answer says of its server: which one, and why it has nothing, if so."""

    name: str
    url: str
    kind: Kind
    error: str | None = None


class Health(ServerResult):
    up: bool = False  # answered /health/live with 200
    ready: bool = False  # /health/ready answered 200
    status_code: int | None = None  # of /health/ready
    latency_ms: float | None = None  # of /health/ready
    body: dict[str, Any] | None = None  # /health/ready's JSON


class HealthReport(BaseModel):
    all_ready: bool
    servers: list[Health]


class Status(ServerResult):
    up: bool = False
    ready: bool = False
    status: str | None = None  # "ready" / "not ready"
    connections: int | None = None
    rooms: int | None = None  # collab: loaded rooms
    channels: int | None = None  # relay: channels with history or followers
    subscriptions: int | None = None  # relay
    events_published: int | None = None  # relay
    uptime_seconds: float | None = None  # collab (a relay does not say)
    storage: str | None = None  # collab: "ok" / "failing"
    redis: str | None = None  # with --redis: "ok" / "failing"
    service: str | None = None  # the relay's catalog, the collab server's "excalidraw"


class StatusReport(BaseModel):
    servers: list[Status]


class Room(BaseModel):
    """A loaded room (collab) or a relay's channel."""

    name: str
    connections: int  # a room's clients; a channel's followers
    count: int  # updates applied in the room; events in the channel's current numbering
    locked: bool | None = None  # rooms only


class ServerRooms(ServerResult):
    rooms: list[Room] = []
    total: int | None = None  # rooms loaded / channels the relay holds (that the token covers)
    complete: bool = False  # every one is listed (a relay lists only its busiest)


class RoomsReport(BaseModel):
    servers: list[ServerRooms]


class Sample(BaseModel):
    name: str
    labels: dict[str, str]
    value: float | None  # None for NaN / infinities, which JSON cannot carry


class ServerMetrics(ServerResult):
    samples: list[Sample] = []
    truncated: bool = False


class MetricsReport(BaseModel):
    servers: list[ServerMetrics]


class _Failed(Exception):
    """A server's answer was unusable; the message says how."""


# --- the four tools -------------------------------------------------------------------


async def health_check(
    http: httpx.AsyncClient, servers: Sequence[Server], *, deadline: float = DEADLINE
) -> HealthReport:
    """Every server's liveness and readiness, with ``/health/ready``'s status, latency, body."""

    async def one(server: Server, out: Health) -> None:
        live = await http.get(f"{server.url}/health/live")
        out.up = live.status_code == 200
        started = time.perf_counter()
        ready = await http.get(f"{server.url}/health/ready")
        out.latency_ms = round((time.perf_counter() - started) * 1000, 3)
        out.status_code = ready.status_code
        out.ready = ready.status_code == 200
        out.body = json_object(ready) or None

    found = await _each(servers, Health, one, deadline)
    return HealthReport(all_ready=all(h.ready for h in found), servers=found)


async def get_status(
    http: httpx.AsyncClient, servers: Sequence[Server], *, deadline: float = DEADLINE
) -> StatusReport:
    """Every server's state: connections, rooms or channels, uptime, storage and Redis."""

    async def one(server: Server, out: Status) -> None:
        ready = await http.get(f"{server.url}/health/ready")
        body = json_object(ready)
        out.up = True
        out.ready = ready.status_code == 200
        out.status = _str(body.get("status")) or f"HTTP {ready.status_code}"
        out.connections = _int(body.get("connections"))
        out.redis = _str(body.get("redis"))
        if server.kind == "collab":
            out.service = "excalidraw"
            out.rooms = _int(body.get("rooms"))
            out.storage = _str(body.get("storage"))
            rooms = json_object(await _checked(http, server, "/api/rooms", limit=1))
            out.uptime_seconds = _float(rooms.get("uptime"))
        else:
            out.service = _str(body.get("service"))
            stats = json_object(await _checked(http, server, "/stats"))
            out.channels = _int(stats.get("channels"))
            out.subscriptions = _int(stats.get("subscriptions"))
            out.events_published = _int(stats.get("events_published"))

    return StatusReport(servers=await _each(servers, Status, one, deadline))


async def list_rooms(
    http: httpx.AsyncClient,
    servers: Sequence[Server],
    *,
    limit: int = 1000,
    deadline: float = DEADLINE,
) -> RoomsReport:
    """The collab server's loaded rooms (most connections first, at most ``limit``) and each
    relay's busiest channels, with their connections or followers."""
    limit = min(max(limit, 1), 10_000)

    async def one(server: Server, out: ServerRooms) -> None:
        if server.kind == "collab":
            body = json_object(await _checked(http, server, "/api/rooms", limit=limit))
            out.total = _int(body.get("total"))
            out.rooms = [
                Room(
                    name=str(r.get("name")),
                    connections=_int(r.get("connections")) or 0,
                    count=_int(r.get("updates")) or 0,
                    locked=bool(r.get("locked")),
                )
                for r in _dicts(body.get("rooms"))
            ]
        else:
            body = json_object(await _checked(http, server, "/stats"))
            out.total = _int(body.get("channels"))
            out.rooms = [
                Room(
                    name=str(c.get("channel")),
                    connections=_int(c.get("followers")) or 0,
                    count=_int(c.get("events")) or 0,
                )
                for c in _dicts(body.get("busiest"))
            ][:limit]
        out.complete = out.total is not None and len(out.rooms) >= out.total

    return RoomsReport(servers=await _each(servers, ServerRooms, one, deadline))


async def get_metrics(
    http: httpx.AsyncClient,
    servers: Sequence[Server],
    *,
    prefix: str | None = None,
    buckets: bool = False,
    deadline: float = DEADLINE,
) -> MetricsReport:
    """Every server's ``/metrics``, parsed: the ``websocket_*`` and ``inkwire_*`` series, or
    those whose name starts with ``prefix``. Histogram buckets only with ``buckets``
    (their ``_count`` and ``_sum`` always); ``_created`` timestamps never."""
    prefixes = (prefix,) if prefix else DEFAULT_PREFIXES

    async def one(server: Server, out: ServerMetrics) -> None:
        response = await _checked(http, server, "/metrics")
        try:
            families = list(text_string_to_metric_families(response.text))
        except ValueError as exc:
            raise _Failed(f"/metrics is not Prometheus text: {exc}") from None
        for family in families:
            for sample in family.samples:
                if not sample.name.startswith(prefixes) or sample.name.endswith("_created"):
                    continue
                if sample.name.endswith("_bucket") and not buckets:
                    continue
                if len(out.samples) >= MAX_SAMPLES:
                    out.truncated = True
                    return
                value = float(sample.value)
                out.samples.append(
                    Sample(
                        name=sample.name,
                        labels=dict(sample.labels),
                        value=value if math.isfinite(value) else None,
                    )
                )

    return MetricsReport(servers=await _each(servers, ServerMetrics, one, deadline))


# --- asking every server at once ------------------------------------------------------


async def _each(
    servers: Sequence[Server],
    result: type[T],
    ask: Callable[[Server, T], Awaitable[None]],
    deadline: float,
) -> list[T]:
    """``ask`` each server concurrently, each within ``deadline`` seconds; failures become
    ``error``."""
    found = [result(name=s.name, url=s.url, kind=s.kind) for s in servers]

    async def guarded(server: Server, out: T) -> None:
        try:
            with anyio.fail_after(deadline):  # httpx's timeout bounds each phase only
                await ask(server, out)
        except TimeoutError:
            out.error = f"no answer within {deadline:g} s"
        except httpx.HTTPError as exc:
            out.error = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        except _Failed as exc:
            out.error = str(exc)

    async with anyio.create_task_group() as tg:
        for server, out in zip(servers, found, strict=True):
            tg.start_soon(guarded, server, out)
    return found


async def _checked(
    http: httpx.AsyncClient, server: Server, path: str, **params: Any
) -> httpx.Response:
    """GET ``path`` with the server's token; _Failed unless it answered 200."""
    headers = {"authorization": f"Bearer {server.token}"} if server.token else {}
    response = await http.get(f"{server.url}{path}", params=params, headers=headers)
    if response.status_code != 200:
        reason = _str(json_object(response).get("error")) or httpx.codes.get_reason_phrase(
            response.status_code
        )
        raise _Failed(f"{path}: HTTP {response.status_code} {reason}".rstrip())
    return response


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _float(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
