"""Relay auth over real sockets: tokens in the header, the query or an ``auth`` request.

Clients are plain ``websockets`` connections, as existing clients are; the
relay runs on a free port with ``auth_secret`` set.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

import relays
from net.tokens import Authenticator, make_token
from relays.auth import SECRET_ENV
from relays.catalogs import BY_NAME
from tests.conftest import ROOT, free_port
from tests.relayclient import TIMEOUT, client, relay

pytestmark = pytest.mark.anyio

dhruva = BY_NAME["dhruva"]
SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"
OTHER = "another-secret-that-is-long-enough-for-hs256-987654"


def token(secret: str = SECRET, **claims: Any) -> str:
    return make_token(secret, **claims)


@asynccontextmanager
async def auth_relay(**settings: Any) -> AsyncIterator[relays.Relay]:
    async with relay(dhruva, auth_secret=SECRET, **settings) as running:
        yield running


@asynccontextmanager
async def raw(url: str, headers: dict[str, str] | None = None) -> AsyncIterator[ClientConnection]:
    async with connect(url, additional_headers=headers, open_timeout=TIMEOUT) as ws:
        yield ws


async def recv(ws: ClientConnection) -> dict[str, Any]:
    with anyio.fail_after(TIMEOUT):
        return dict(json.loads(await ws.recv()))


async def closed_with(ws: ClientConnection) -> int | None:
    """Read until the relay closes; the close code it sent."""
    with anyio.fail_after(TIMEOUT):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed as exc:
            return exc.rcvd.code if exc.rcvd is not None else None


def request(event: str, data: dict[str, Any], message_id: str) -> str:
    return json.dumps({"type": "request", "event": event, "data": data, "id": message_id})


# --- the three ways of presenting a token ---------------------------------------------


async def test_auth_is_off_by_default() -> None:
    async with relay(dhruva) as running, client(running.url) as c:
        assert c.welcome["data"]["authenticated"] is False
        reply = await c.reply(await c.subscribe("adapter:a1"))
        assert reply["type"] == "response"
        async with httpx.AsyncClient() as http:
            response = await http.post(
                f"{running.http_url}/publish",
                json={
                    "event": "adapter.activated",
                    "data": {"adapter_id": "a1", "repo": "o/r", "version": "1"},
                },
            )
        assert response.status_code == 202


async def test_good_tokens_authenticate_by_header_query_and_auth_request() -> None:
    good = token(channels=["adapter:*"])
    async with auth_relay() as running:
        async with raw(running.url, {"Authorization": f"Bearer {good}"}) as ws:
            welcome = await recv(ws)
            assert welcome["event"] == "session.created"
            assert welcome["data"]["authenticated"] is True
        async with raw(f"{running.url}?token={good}") as ws:
            assert (await recv(ws))["data"]["authenticated"] is True
        async with raw(running.url) as ws:
            assert (await recv(ws))["data"]["authenticated"] is False
            await ws.send(request("auth", {"token": good}, "a1"))
            reply = await recv(ws)
            assert reply["type"] == "response" and reply["correlation_id"] == "a1"
            assert reply["data"]["authenticated"] is True
            assert reply["data"]["channels"] == ["adapter:*"]
            await ws.send(request("subscribe", {"channel": "adapter:x"}, "s1"))
            assert (await recv(ws))["data"]["subscribed"] is True


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-jwt",
        token(OTHER),  # signed with another secret
        token(ttl=-10),  # expired
    ],
    ids=["garbage", "wrong-secret", "expired"],
)
async def test_bad_token_closes_4001_header_query_and_auth_request(bad: str) -> None:
    async with auth_relay() as running:
        async with raw(running.url, {"Authorization": f"Bearer {bad}"}) as ws:
            assert await closed_with(ws) == 4001
        async with raw(f"{running.url}?token={bad}") as ws:
            assert await closed_with(ws) == 4001
        async with raw(running.url) as ws:
            await recv(ws)  # the welcome
            await ws.send(request("auth", {"token": bad}, "a1"))
            assert await closed_with(ws) == 4001
        # the relay is fine: a good client still gets in
        async with raw(f"{running.url}?token={token()}") as ws:
            assert (await recv(ws))["data"]["authenticated"] is True


async def test_requests_before_auth_close_4001() -> None:
    async with auth_relay() as running, raw(running.url) as ws:
        await recv(ws)
        await ws.send(request("subscribe", {"channel": "adapter:x"}, "s1"))
        assert await closed_with(ws) == 4001


async def test_no_auth_request_in_time_closes_4001() -> None:
    async with auth_relay(auth_timeout=0.2) as running, raw(running.url) as ws:
        await recv(ws)
        assert await closed_with(ws) == 4001


# --- channel scopes ---------------------------------------------------------------------


async def test_forbidden_channel_is_an_error_and_the_connection_stays_open() -> None:
    scoped = token(channels=["adapter:*"])
    async with auth_relay() as running, raw(f"{running.url}?token={scoped}") as ws:
        await recv(ws)
        await ws.send(request("subscribe", {"channel": "registry"}, "s1"))
        error = await recv(ws)
        assert error["type"] == "error" and error["error_code"] == "FORBIDDEN"
        assert error["correlation_id"] == "s1"
        # still connected, and allowed channels work and deliver
        await ws.send(request("subscribe", {"channel": "adapter:a1"}, "s2"))
        assert (await recv(ws))["data"]["subscribed"] is True
        await running.broadcast.adapter_activated("a1", "org/repo", {"version": "1"})
        event = await recv(ws)
        assert event["type"] == "event" and event["room"] == "adapter:a1"


async def test_auth_request_without_auth_enabled_answers_open() -> None:
    async with relay(dhruva) as running, client(running.url) as c:
        reply = await c.reply(await c.request("auth", {"token": "anything"}, "a1"))
        assert reply["type"] == "response" and reply["data"]["authenticated"] is False


async def test_requests_are_bounded_by_the_token_whoever_answers_them() -> None:
    scoped = token(channels=["adapter:a1"])
    async with auth_relay() as running, raw(f"{running.url}?token={scoped}") as ws:
        calls: list[dict[str, Any]] = []

        @running.handle("get_distribution_status")  # the service answers this one itself
        async def distribution(params: dict[str, Any]) -> dict[str, Any]:
            calls.append(params)
            return {"repo": params["repo"], "status": "live"}

        await recv(ws)
        for adapter in ("a1", "a2"):
            await running.broadcast.adapter_activated(adapter, "org/repo", {"version": "1"})
        await ws.send(request("get_adapter_status", {"adapter_id": "a1"}, "q1"))
        mine = await recv(ws)
        assert mine["type"] == "response" and mine["data"]["adapter_id"] == "a1"
        await ws.send(request("get_adapter_status", {"adapter_id": "a2"}, "q2"))
        other = await recv(ws)
        assert other["type"] == "error" and other["error_code"] == "FORBIDDEN"
        assert other["correlation_id"] == "q2" and "adapter:a2" in other["error_message"]
        await ws.send(request("list_adapters", {}, "q3"))
        listed = await recv(ws)
        assert [a["adapter_id"] for a in listed["data"]["adapters"]] == ["a1"]
        await ws.send(request("get_distribution_status", {"repo": "org/repo"}, "q4"))
        refused = await recv(ws)
        assert refused["error_code"] == "FORBIDDEN" and calls == []  # never reached the service
        await ws.send(json.dumps({"type": "ping", "id": "p1"}))
        assert (await recv(ws))["type"] == "pong"  # still connected

    wider = token(channels=["adapter:*", "distribution:*"])
    async with auth_relay() as running, raw(f"{running.url}?token={wider}") as ws:
        running.handle("get_distribution_status")(distribution)
        await recv(ws)
        await ws.send(request("get_distribution_status", {"repo": "org/repo"}, "q5"))
        answered = await recv(ws)
        assert answered["data"] == {"repo": "org/repo", "status": "live"} and len(calls) == 1


async def test_an_expired_token_ends_the_connection_unless_replaced_in_time() -> None:
    soon = token(channels=["adapter:*"], ttl=3)
    expires = Authenticator(SECRET).check(soon).expires
    assert expires is not None
    async with (
        auth_relay() as running,
        raw(f"{running.url}?token={soon}") as expiring,
        raw(f"{running.url}?token={soon}") as renewed,
    ):
        for ws in (expiring, renewed):
            assert (await recv(ws))["data"]["authenticated"] is True
            await ws.send(request("subscribe", {"channel": "adapter:a1"}, "s1"))
            assert (await recv(ws))["data"]["subscribed"] is True
        await renewed.send(request("auth", {"token": token(channels=["adapter:*"])}, "a2"))
        assert (await recv(renewed))["data"]["expires"] is None

        # it sends nothing after subscribing, yet is closed when the token expires
        assert await closed_with(expiring) == 4001
        assert expiring.close_reason == "token expired"

        await anyio.sleep(max(0.0, expires + 0.5 - time.time()))
        await renewed.send(json.dumps({"type": "ping", "id": "p1"}))
        pong = await recv(renewed)
        assert pong["type"] == "pong" and pong["correlation_id"] == "p1"


async def test_a_narrower_token_ends_the_subscriptions_it_does_not_cover() -> None:
    wide = token(channels=["adapter:*"])
    async with auth_relay() as running, raw(f"{running.url}?token={wide}") as ws:
        await recv(ws)
        for i, channel in enumerate(("adapter:a1", "adapter:a2")):
            await ws.send(request("subscribe", {"channel": channel}, f"s{i}"))
            assert (await recv(ws))["data"]["subscribed"] is True
        await ws.send(request("auth", {"token": token(channels=["adapter:a1"])}, "a1"))
        reply = await recv(ws)
        assert reply["data"]["authenticated"] is True
        assert reply["data"]["unsubscribed"] == ["adapter:a2"]
        await running.broadcast.adapter_activated("a2", "org/repo", {"version": "1"})
        await running.broadcast.adapter_activated("a1", "org/repo", {"version": "2"})
        event = await recv(ws)  # a2's event is not delivered: the next one is a1's
        assert event["room"] == "adapter:a1" and event["data"]["version"] == "2"
        await ws.send(request("subscribe", {"channel": "adapter:a2"}, "s3"))
        assert (await recv(ws))["error_code"] == "FORBIDDEN"


# --- POST /publish -----------------------------------------------------------------------


async def test_publish_needs_a_token_with_publish_rights() -> None:
    body = {
        "event": "adapter.activated",
        "data": {"adapter_id": "a1", "repo": "o/r", "version": "1"},
    }
    async with auth_relay() as running, httpx.AsyncClient(base_url=running.http_url) as http:

        async def post(bearer: str | None, url: str = "/publish") -> httpx.Response:
            headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
            return await http.post(url, json=body, headers=headers)

        assert (await post(None)).status_code == 401
        assert (await post("garbage")).status_code == 401
        assert (await post(token(OTHER, publish=True))).status_code == 401
        assert (await post(token(publish=False))).status_code == 403
        outside = await post(token(channels=["registry"], publish=True))
        assert outside.status_code == 403 and "adapter:a1" in outside.json()["error"]
        ok = await post(token(channels=["*"], publish=True))
        assert ok.status_code == 202
        assert ok.json()["published"][0]["event"] == "adapter.activated"
        by_query = await post(None, f"/publish?token={token(publish=True)}")
        assert by_query.status_code == 202


async def test_publish_request_needs_the_same_rights() -> None:
    """The ``publish`` request over the WebSocket is bounded as POST /publish is."""
    one = {
        "event": "adapter.activated",
        "data": {"adapter_id": "a1", "repo": "o/r", "version": "1"},
    }
    async with auth_relay() as running:

        async def publish(bearer: str) -> dict[str, Any]:
            async with raw(f"{running.url}?token={bearer}") as ws:
                await recv(ws)  # the welcome
                await ws.send(request("publish", one, "p1"))
                return await recv(ws)

        refused = await publish(token(publish=False))
        assert refused["type"] == "error" and refused["error_code"] == "FORBIDDEN"
        outside = await publish(token(channels=["registry"], publish=True))
        assert outside["error_code"] == "FORBIDDEN" and "adapter:a1" in outside["error_message"]
        ok = await publish(token(channels=["*"], publish=True))
        assert ok["type"] == "response" and ok["data"]["published"][0]["event"] == one["event"]


# --- inkwire relay with the secret from the environment -------------------------------


def start_relay(port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT), SECRET_ENV: SECRET}
    command = [sys.executable, "-m", "collab.cli", "relay", "dhruva", "--port", str(port)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stderr=subprocess.DEVNULL)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.processes
async def test_inkwire_relay_takes_the_secret_from_the_environment() -> None:
    port = free_port()
    process = start_relay(port)
    url = f"ws://127.0.0.1:{port}/"
    try:
        with anyio.fail_after(TIMEOUT):
            while True:
                try:
                    stream = await anyio.connect_tcp("127.0.0.1", port)
                except OSError:
                    await anyio.sleep(0.05)
                    continue
                await stream.aclose()
                break
        async with raw(f"{url}?token=garbage") as ws:
            assert await closed_with(ws) == 4001
        async with raw(url, {"Authorization": f"Bearer {token()}"}) as ws:
            assert (await recv(ws))["data"]["authenticated"] is True
        async with httpx.AsyncClient() as http:
            response = await http.post(f"http://127.0.0.1:{port}/publish", json=[])
        assert response.status_code == 401
    finally:
        stop(process)
