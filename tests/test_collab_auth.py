"""Token auth on the collab server (``inkwire serve --auth-secret``): /yjs, /api, /events.

The tokens are the relays' (``relays.auth.make_token``): ``channels`` patterns
over ``diagram:{id}``, ``publish`` = may edit, ``exp``. Real in-process
servers (a real SQLite file where the store matters), real clients:
``DiagramClient``, bare y-websocket peers, httpx, the relay test client,
``inkwire`` subprocesses and, when Node is there, the stock y-websocket client.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anyio
import httpx
import jwt
import pytest
from httpx_ws import WebSocketDisconnect
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from clients import DiagramClient, DiagramConnectionError
from collab.app import CollabApp
from collab.auth import SECRET_ENV
from collab.config import Config
from relays.auth import SECRET_ENV as RELAY_SECRET_ENV
from relays.auth import make_token
from storage import replay
from storage.excalidraw import load_doc
from storage.memory import MemoryStore
from storage.sqlite import SQLiteStore
from tests import sqlite_file
from tests.conftest import ROOT, RunningServer, running
from tests.node import require_node
from tests.relayclient import client
from tests.test_diagram_list import edit
from tests.yclient import peer, wait_until

pytestmark = pytest.mark.anyio

SECRET = "collab-test-secret-long-enough-for-hs256-0123456789"
OTHER = "some-other-secret-long-enough-for-hs256-9876543210"
TIMEOUT = 10.0


def token(secret: str = SECRET, **claims: Any) -> str:
    return make_token(secret, **claims)


def reader(*channels: str, **claims: Any) -> str:
    return token(channels=channels or ("diagram:*",), publish=False, **claims)


def writer(*channels: str, **claims: Any) -> str:
    return token(channels=channels or ("diagram:*",), publish=True, **claims)


@asynccontextmanager
async def server(
    tmp_path: Path, secret: str | None = SECRET
) -> AsyncIterator[tuple[RunningServer, SQLiteStore]]:
    store = SQLiteStore(tmp_path / "auth.db")
    try:
        config = Config(grace_period=0.5, auth_secret=secret)
        async with running(CollabApp(store=store, config=config)) as s:
            yield s, store
    finally:
        store.close()


def rect(eid: str) -> dict[str, Any]:
    return {"id": eid, "type": "rectangle", "x": 0, "y": 0}


async def close_of(url: str, headers: dict[str, str] | None = None) -> tuple[int | None, str, int]:
    """Connect, read until the server closes: (close code, reason, frames received before)."""
    frames = 0
    async with connect(url, additional_headers=headers, open_timeout=TIMEOUT) as ws:
        with anyio.fail_after(TIMEOUT):
            try:
                while True:
                    await ws.recv()
                    frames += 1
            except ConnectionClosed as exc:
                if exc.rcvd is None:
                    return None, "", frames
                return exc.rcvd.code, exc.rcvd.reason, frames


async def save(store: SQLiteStore, diagram: str, *eids: str) -> None:
    """A diagram with these elements in the store, as a room would have saved it."""
    doc: Doc[Any] = Doc()
    elements = doc.get("elements", type=Map)
    for eid in eids:
        elements[eid] = rect(eid)
    await store.append(diagram, [doc.get_update()], "test")


def saved_elements(store: SQLiteStore, diagram: str) -> set[str]:
    state = store.state_at(diagram, None)
    return set(load_doc(state).get("elements", type=Map).keys()) if state else set()


# --- off by default ------------------------------------------------------------------


async def test_auth_is_off_by_default(tmp_path: Path) -> None:
    async with (
        server(tmp_path, secret=None) as (s, _),
        httpx.AsyncClient(base_url=s.http_url) as http,
        DiagramClient(s.yjs_url, "open") as alice,
        DiagramClient(s.yjs_url, "open", token="not even a jwt") as bob,  # ignored
        client(f"ws://127.0.0.1:{s.port}/events") as watcher,
    ):
        assert s.app.auth is None and s.app.relay.auth is None
        alice.add_element(rect("a"))
        await bob.wait_for(lambda c: c.get_element("a") is not None)
        assert (await http.get("/api/diagrams")).status_code == 200
        assert (await http.post("/api/diagrams/open/lock", json={"locked": False})).is_success
        assert watcher.welcome["data"]["authenticated"] is False


# --- /yjs: who may connect ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("how", "reason"),
    [
        ("none", "token required"),
        ("garbage", "bad token"),
        ("wrong-secret", "bad token"),
        ("expired", "bad token"),
        ("header-garbage", "bad token"),
        ("header-expired", "bad token"),
    ],
)
async def test_missing_bad_or_expired_token_closes_4001(
    tmp_path: Path, how: str, reason: str
) -> None:
    bad = {
        "none": None,
        "garbage": "garbage",
        "wrong-secret": token(OTHER, channels=["*"], publish=True),
        "expired": writer(ttl=-10),
    }
    async with server(tmp_path) as (s, store):
        await save(store, "plan", "secret")
        url, headers = f"{s.yjs_url}/plan", None
        if how.startswith("header-"):
            headers = {"Authorization": f"Bearer {bad[how.removeprefix('header-')]}"}
        elif bad[how] is not None:
            url += f"?token={quote(str(bad[how]))}"
        code, said, frames = await close_of(url, headers)
        assert (code, said) == (4001, reason)
        assert frames == 0  # not even a sync step 1
        assert "plan" not in s.app.rooms.rooms  # no room loaded for a stranger
        assert s.app.stats.rejected["unauthorized"] == 1


async def test_the_python_client_gives_up_on_a_refused_token(tmp_path: Path) -> None:
    async with server(tmp_path) as (s, _):
        started = time.monotonic()
        with pytest.raises(DiagramConnectionError) as failed:
            async with DiagramClient(s.yjs_url, "plan", token="garbage"):
                pass
        assert time.monotonic() - started < 5  # fatal: no retrying until the sync timeout
        cause = failed.value.__cause__
        assert isinstance(cause, WebSocketDisconnect) and cause.code == 4001
        with pytest.raises(DiagramConnectionError) as failed:
            async with DiagramClient(s.yjs_url, "plan", token=writer("diagram:other")):
                pass
        cause = failed.value.__cause__
        assert isinstance(cause, WebSocketDisconnect) and cause.code == 4403


async def test_a_token_for_other_diagrams_closes_4403(tmp_path: Path) -> None:
    async with server(tmp_path) as (s, _):
        team = writer("diagram:team-*")
        code, said, frames = await close_of(f"{s.yjs_url}/plan?token={team}")
        assert code == 4403 and said == "forbidden: the token does not cover diagram:plan"
        assert frames == 0 and "plan" not in s.app.rooms.rooms
        # patterns match the diagram's channel; a bad name is still a bad name
        async with DiagramClient(s.yjs_url, "team-a", token=team) as c:
            assert c.status == "connected"
        code, _, _ = await close_of(f"{s.yjs_url}/bad~name?token={team}")
        assert code == 4400
        # a token for the diagram's events only (collaboration:) does not open it
        cursors = token(channels=["collaboration:*"], publish=True)
        assert (await close_of(f"{s.yjs_url}/team-a?token={cursors}"))[0] == 4403
        assert s.app.stats.rejected["forbidden"] == 2


# --- /yjs: read-only and write tokens -----------------------------------------------------


async def test_a_read_only_token_syncs_and_shares_presence_but_cannot_edit(
    tmp_path: Path,
) -> None:
    async with (
        server(tmp_path) as (s, store),
        DiagramClient(s.yjs_url, "plan", user={"name": "Wes"}, token=writer("diagram:plan")) as wes,
    ):
        wes.add_element(rect("w1"))
        async with DiagramClient(
            s.yjs_url, "plan", user={"name": "Rae"}, token=reader("diagram:plan")
        ) as rae:
            await rae.wait_for(lambda c: c.get_element("w1") is not None)  # syncs
            assert rae.permission_denied is None  # its empty sync step 2 is no edit
            # presence, both ways
            rae.set_presence(pointer=(5, 6))
            await wes.wait_for(
                lambda c: any(p.get("pointer", {}).get("x") == 5 for p in c.peers().values())
            )
            wes.set_presence(pointer=(7, 8))
            await rae.wait_for(
                lambda c: any(p.get("pointer", {}).get("x") == 7 for p in c.peers().values())
            )
            # its edit is refused, with y-websocket's permission-denied message
            rae.add_element(rect("r1"))
            await rae.wait_for(lambda c: c.permission_denied is not None)
            assert rae.permission_denied == "read-only token"
            # ... and the connection is kept: it still gets the others' edits
            wes.add_element(rect("w2"))
            await rae.wait_for(lambda c: c.get_element("w2") is not None)
            assert rae.status == "connected" and rae.sync_count == 1
            await anyio.sleep(0.2)
            assert wes.get_element("r1") is None
            assert "r1" not in s.app.rooms.rooms["plan"].doc.get("elements", type=Map)
        assert s.app.stats.rejected["read_only"] >= 1
        await wes.wait_for(lambda c: not c.peers())  # rae left
        await wait_until(lambda: saved_elements(store, "plan") == {"w1", "w2"})  # r1: never


async def test_a_raw_read_only_peer_gets_permission_denied_and_nobody_sees_its_edit(
    tmp_path: Path,
) -> None:
    async with (
        server(tmp_path) as (s, _),
        peer(f"{s.yjs_url}/raw?token={reader('diagram:raw')}", 7) as ro,
        peer(f"{s.yjs_url}/raw?token={writer('diagram:raw')}", 8) as rw,
    ):
        await ro.send_set("ro", {"id": "ro"})
        await wait_until(lambda: any(f.startswith(b"\x02\x00") for f in ro.frames))
        await rw.send_set("rw", {"id": "rw"})
        await wait_until(lambda: "rw" in ro.snapshot())  # a write token edits
        await ro.set_awareness({"user": {"name": "ro"}})
        await wait_until(lambda: 7 in rw.awareness)
        assert "ro" not in rw.snapshot()
        assert ro.ws.close_code is None


async def test_an_expiring_token_ends_the_connection_with_4001(tmp_path: Path) -> None:
    soon = writer("diagram:plan", ttl=2)  # exp: 1 to 2 s from now (whole seconds)
    expires = jwt.decode(soon, SECRET, algorithms=["HS256"])["exp"]
    async with (
        server(tmp_path) as (s, _),
        DiagramClient(s.yjs_url, "plan", token=writer("diagram:plan")) as lasting,
        DiagramClient(s.yjs_url, "plan", token=soon) as expiring,
        peer(f"{s.yjs_url}/plan?token={soon}", 9) as raw,
    ):
        # nobody sends anything, yet both holders of the token are closed when it passes
        with anyio.fail_after(5):
            await raw.closed.wait()
        assert time.time() >= expires
        assert (raw.close_code, raw.close_reason) == (4001, "token expired")
        await expiring.wait_for(lambda c: c.status == "closed")  # fatal: no reconnect
        error = expiring.last_error
        assert isinstance(error, WebSocketDisconnect) and error.code == 4001
        assert lasting.status == "connected"
        lasting.add_element(rect("still"))
        await wait_until(lambda: "still" in s.app.rooms.rooms["plan"].doc.get("elements", type=Map))


# --- /api ---------------------------------------------------------------------------------


async def test_api_answers_401_without_a_valid_token(tmp_path: Path) -> None:
    async with server(tmp_path) as (s, store), httpx.AsyncClient(base_url=s.http_url) as http:
        await save(store, "plan", "a")
        for path in ("/api/diagrams", "/api/diagrams/plan", "/api/diagrams/plan/history"):
            for bad in (None, "garbage", token(OTHER), writer(ttl=-10)):
                headers = {"Authorization": f"Bearer {bad}"} if bad else {}
                reply = await http.get(path, headers=headers)
                assert reply.status_code == 401, (path, bad)
                assert reply.headers["www-authenticate"].startswith("Bearer")
                assert "token" in reply.json()["error"]
        reply = await http.post("/api/diagrams/plan/lock", json={"locked": True})
        assert reply.status_code == 401
        assert s.app.rooms.rooms.get("plan") is None  # nothing loaded, nothing locked
        # open, with auth on: health, metrics, the web app
        for path in ("/health/live", "/health/ready", "/metrics", "/", "/d/plan?token=x"):
            assert (await http.get(path)).status_code == 200, path


async def test_api_reads_need_the_diagram_and_edits_need_publish(tmp_path: Path) -> None:
    png = bytes.fromhex("89504e470d0a1a0a0000000d49484452")
    scene = {"type": "excalidraw", "version": 2, "elements": [rect("imported")]}
    async with server(tmp_path) as (s, store), httpx.AsyncClient(base_url=s.http_url) as http:
        await save(store, "plan", "a")
        await save(store, "other", "b")
        ro = {"Authorization": f"Bearer {reader('diagram:plan')}"}
        rw = {"Authorization": f"Bearer {writer('diagram:plan')}"}

        # reads: the token's diagram only (the header or ?token=)
        assert (await http.get("/api/diagrams/plan", headers=ro)).status_code == 200
        by_query = await http.get("/api/diagrams/plan/history", params={"token": reader()})
        assert by_query.status_code == 200
        missing_file = await http.get("/api/diagrams/plan/files/f1", headers=ro)
        assert missing_file.status_code == 404  # past auth: there is no such file
        for path in ("/api/diagrams/other", "/api/diagrams/other/history"):
            reply = await http.get(path, headers=rw)
            assert reply.status_code == 403 and "diagram:other" in reply.json()["error"]

        # edits: a read-only token is refused, nothing changes
        image = {"content-type": "image/png"}
        edits: list[tuple[str, str, dict[str, Any]]] = [
            ("POST", "/api/diagrams/plan/lock", {"json": {"locked": True}}),
            ("POST", "/api/diagrams/plan/restore", {"json": {"at": 1}}),
            ("POST", "/api/diagrams/plan/import", {"content": json.dumps(scene)}),
            ("PUT", "/api/diagrams/plan/files/f1", {"content": png}),
        ]
        for method, path, kwargs in edits:
            headers = {**ro, **image} if method == "PUT" else ro
            reply = await http.request(method, path, headers=headers, **kwargs)
            assert reply.status_code == 403, (method, path)
            assert "read-only" in reply.json()["error"]
        assert saved_elements(store, "plan") == {"a"}
        assert s.app.rooms.rooms.get("plan") is None or not s.app.rooms.rooms["plan"].locked
        # a write token for another diagram may not edit this one
        other = {"Authorization": f"Bearer {writer('diagram:other')}"}
        reply = await http.post("/api/diagrams/plan/lock", json={"locked": True}, headers=other)
        assert reply.status_code == 403

        # a write token edits
        for method, path, kwargs in edits:
            headers = {**rw, **image} if method == "PUT" else rw
            reply = await http.request(method, path, headers=headers, **kwargs)
            assert reply.is_success, (method, path, reply.text)
            if path.endswith("/lock"):  # unlock again, so the other edits are taken
                reply = await http.post(path, json={"locked": False}, headers=rw)
                assert reply.json()["locked"] is False
        assert "imported" in saved_elements(store, "plan")


async def test_the_list_holds_only_the_diagrams_the_token_covers(tmp_path: Path) -> None:
    async with server(tmp_path) as (s, store), httpx.AsyncClient(base_url=s.http_url) as http:
        names = ["team-a", "team-b", "plan", "other"]
        for n, name in enumerate(names):
            await save(store, name, name)
            sqlite_file.execute(
                store.path, "UPDATE diagrams SET updated = ? WHERE id = ?", (1000.0 + n, name)
            )

        async def listed(tok: str, **params: Any) -> list[str]:
            reply = await http.get("/api/diagrams", params={"token": tok, **params})
            assert reply.status_code == 200
            return [d["id"] for d in reply.json()]

        assert await listed(reader()) == ["other", "plan", "team-b", "team-a"]
        assert await listed(token(channels=["*"])) == ["other", "plan", "team-b", "team-a"]
        assert await listed(reader("diagram:team-*")) == ["team-b", "team-a"]
        # the limit counts covered diagrams: the two newest are not the team's
        assert await listed(reader("diagram:team-*"), limit=1) == ["team-b"]
        assert await listed(reader("diagram:team-*", "diagram:plan"), prefix="p") == ["plan"]
        assert await listed(reader("diagram:nothing")) == []
        assert await listed(token(channels=[])) == []


async def test_the_list_is_filtered_on_the_memory_store_too() -> None:
    config = Config(grace_period=0.5, auth_secret=SECRET)
    async with running(CollabApp(config=config)) as s:
        for name in ("team-a", "plan"):
            async with DiagramClient(s.yjs_url, name, token=writer()) as c:
                c.add_element(rect("x"))
        store = s.app.store
        assert isinstance(store, MemoryStore)
        await wait_until(lambda: set(store.diagrams()) == {"team-a", "plan"})
        async with httpx.AsyncClient(base_url=s.http_url) as http:
            reply = await http.get("/api/diagrams", params={"token": reader("diagram:team-*")})
            assert [d["id"] for d in reply.json()] == ["team-a"]


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    updated=st.lists(st.integers(0, 3), min_size=7, max_size=7),
    covered=st.sets(st.integers(0, 6)),
    limit=st.integers(1, 3),
)
def test_a_filtered_list_pages_through_the_table(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    updated: list[int],
    covered: set[int],
    limit: int,
) -> None:
    """Keyset pages (of 3 here) give what one ordered, filtered pass would, ties included."""
    monkeypatch.setattr(replay, "LIST_MAX_PAGE", 3)
    path = tmp_path / "pages.db"
    fresh = not path.exists()
    store = SQLiteStore(path)
    try:
        names = [f"d{i}" for i in range(7)]
        if fresh:
            for name in names:
                edit(store, name, lambda e, name=name: e.__setitem__(name, rect(name)))
        for name, when in zip(names, updated, strict=True):
            sqlite_file.execute(
                path, "UPDATE diagrams SET updated = ? WHERE id = ?", (float(when), name)
            )
        order = sorted(names, key=lambda n: (-updated[names.index(n)], n))
        wanted = {names[i] for i in covered}
        expected = [n for n in order if n in wanted][:limit]
        got = replay.list_diagrams(store, limit=limit, include=wanted.__contains__)
        assert [d["id"] for d in got] == expected
    finally:
        store.close()


# --- /events ------------------------------------------------------------------------------


async def test_events_need_a_token_too(tmp_path: Path) -> None:
    events = "/events"
    async with server(tmp_path) as (s, _), httpx.AsyncClient(base_url=s.http_url) as http:
        assert s.app.relay.auth is not None
        base = f"ws://127.0.0.1:{s.port}{events}"
        # no token: only an ``auth`` request may come first
        async with client(base) as anonymous:
            assert anonymous.welcome["data"]["authenticated"] is False
            await anonymous.subscribe("diagram:plan")
            with anyio.fail_after(TIMEOUT):
                await anonymous.ws.wait_closed()
            assert anonymous.ws.close_code == 4001
        assert (await close_of(f"{base}?token=garbage"))[0] == 4001
        # a token: its diagrams' events, and no others
        async with (
            client(f"{base}?token={reader('diagram:plan')}") as watcher,
            DiagramClient(s.yjs_url, "plan", token=writer("diagram:plan")) as wes,
        ):
            assert watcher.welcome["data"]["authenticated"] is True
            ok = await watcher.reply(await watcher.subscribe("diagram:plan"))
            assert ok["type"] == "response"
            refused = await watcher.reply(await watcher.subscribe("diagram:other"))
            assert refused["type"] == "error" and refused["error_code"] == "FORBIDDEN"
            wes.add_element(rect("seen"))
            await watcher.wait(lambda: any(e["event"] == "element.added" for e in watcher.events))
        published = await http.post(
            f"{events}/publish",
            json={"event": "diagram.saved", "data": {"diagram_id": "plan", "seq": 1}},
        )
        assert published.status_code == 401


# --- Hypothesis: garbage tokens -----------------------------------------------------------

B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=6,
)
claims = st.dictionaries(st.sampled_from(["sub", "channels", "publish", "exp", "x"]), json_values)


@st.composite
def tampered(draw: st.DrawFn) -> str:
    """A good token with one character changed (not the last: it may carry unused bits)."""
    good = writer()
    at = draw(st.integers(0, len(good) - 2))
    char = draw(st.sampled_from(B64 + "."))
    assume(good[at] != char)
    return good[:at] + char + good[at + 1 :]


def _unsigned(payload: dict[str, Any]) -> str:
    header = base64.urlsafe_b64encode(b'{"alg":"none","typ":"JWT"}').rstrip(b"=").decode()
    body = base64.urlsafe_b64encode(json.dumps(payload).encode()).rstrip(b"=").decode()
    return f"{header}.{body}."


garbage_tokens = st.one_of(
    st.text(max_size=300),
    st.lists(st.text(alphabet=B64, max_size=40), min_size=1, max_size=5).map(".".join),
    st.builds(
        lambda c, k: jwt.encode(c, k, algorithm="HS256"),
        claims,
        st.text(min_size=32, max_size=40).filter(lambda k: k != SECRET),
    ),
    claims.map(_unsigned),
    tampered(),
    # our secret, but claims that do not hold: channels not a list of strings, past exp
    st.builds(
        lambda c: jwt.encode({"channels": c}, SECRET, algorithm="HS256"),
        st.one_of(
            st.integers(),
            st.none(),
            st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
            st.lists(st.integers() | st.none() | st.booleans(), min_size=1, max_size=3),
        ),
    ),
    st.integers(-(10**9), -1).map(lambda ago: writer(ttl=ago)),
)


@pytest.fixture
async def auth_server() -> AsyncIterator[RunningServer]:
    config = Config(grace_period=0.5, auth_secret=SECRET)
    async with running(CollabApp(config=config)) as s:
        yield s


@pytest.mark.slow  # Hypothesis, many examples over sockets
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(bad=garbage_tokens, header=st.booleans())
async def test_garbage_tokens_close_4001_and_leave_the_server_unaffected(
    auth_server: RunningServer, bad: str, header: bool
) -> None:
    s = auth_server
    use_header = header and bad.isascii() and bad.isprintable()
    if use_header:
        url, headers = f"{s.yjs_url}/fuzz", {"Authorization": f"Bearer {bad}"}
    else:
        url, headers = f"{s.yjs_url}/fuzz?token={quote(bad, safe='')}", None
    code, _, frames = await close_of(url, headers)
    assert code == 4001 and frames == 0
    async with httpx.AsyncClient(base_url=s.http_url) as http:
        reply = await http.get("/api/diagrams/fuzz", params={"token": bad})
        assert reply.status_code == 401 and "error" in reply.json()
    assert "fuzz" not in s.app.rooms.rooms
    async with DiagramClient(s.yjs_url, "fuzz-ok", token=writer("diagram:fuzz-ok")) as good:
        assert good.status == "connected"


# --- the command line ---------------------------------------------------------------------


def inkwire(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "collab.cli", *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
    )


async def test_serve_auth_secret_and_the_cli_token(server_process: Any, tmp_path: Path) -> None:
    db = tmp_path / "cli.db"
    s = server_process("--db", str(db), "--grace", "0.2", "--auth-secret", SECRET)
    assert (await close_of(f"{s.yjs_url}/plan"))[0] == 4001
    async with DiagramClient(s.yjs_url, "plan", token=writer()) as c:
        c.add_element(rect("a"))
        await anyio.sleep(0.3)
    via = ("--server", s.http_url)

    refused = inkwire("list", *via)
    assert refused.returncode == 1 and "401" in refused.stderr
    listing = inkwire("list", "--json", *via, "--token", reader("diagram:plan"))
    assert listing.returncode == 0, listing.stderr
    assert [d["id"] for d in json.loads(listing.stdout)] == ["plan"]
    export = inkwire("export", "plan", *via, "--token", reader("diagram:plan"))
    assert [e["id"] for e in json.loads(export.stdout)["elements"]] == ["a"]
    denied = inkwire("restore", "plan", "--at", "1", *via, "--token", reader())
    assert denied.returncode == 1 and "403" in denied.stderr
    assert inkwire("restore", "plan", "--at", "1", *via, "--token", writer()).returncode == 0

    # replay into a live room needs a token with publish
    into = ("--db", str(db), "--into", f"ws://127.0.0.1:{s.port}", "--speed", "1000")
    refused = inkwire("replay", "plan", *into)
    assert refused.returncode == 1
    read_only = inkwire("replay", "plan", *into, "--token", reader())
    assert read_only.returncode == 1 and "read-only token" in read_only.stderr
    done = inkwire("replay", "plan", *into, "--as", "again", "--token", writer())
    assert done.returncode == 0, done.stderr


async def test_serve_takes_the_secret_from_its_own_environment_variable(
    server_process: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(RELAY_SECRET_ENV, OTHER)  # a relay's secret does not turn it on
    open_ = server_process("--db", ":memory:")
    monkeypatch.setenv(SECRET_ENV, SECRET)
    guarded = server_process("--db", ":memory:")
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{open_.http_url}/api/diagrams")).status_code == 200
        assert (await http.get(f"{guarded.http_url}/api/diagrams")).status_code == 401
        ok = await http.get(f"{guarded.http_url}/api/diagrams", params={"token": reader()})
        assert ok.status_code == 200
    # the /events relay took the same secret
    assert (await close_of(f"ws://127.0.0.1:{guarded.port}/events?token=garbage"))[0] == 4001


# --- the stock y-websocket client ----------------------------------------------------------


@pytest.mark.node
async def test_the_stock_y_websocket_client_sends_its_token_in_params(tmp_path: Path) -> None:
    require_node("Node interop test", ("yjs", "y-websocket", "y-protocols", "lib0", "ws"))
    from tests.test_interop_node import PEER_SCRIPT, NodePeer

    async with (
        server(tmp_path) as (s, store),
        DiagramClient(s.yjs_url, "js", token=writer("diagram:js")) as py,
        NodePeer.spawn(PEER_SCRIPT, "rw") as rw,
        NodePeer.spawn(PEER_SCRIPT, "ro") as ro,
        NodePeer.spawn(PEER_SCRIPT, "stranger") as stranger,
    ):
        for node, tok in ((rw, writer("diagram:js")), (ro, reader("diagram:js"))):
            reply = await node.request(
                "connect", url=s.yjs_url, room="js", clientName=node.name, params={"token": tok}
            )
            assert reply["ok"] == "synced"
        await rw.request("set", key="from-js", value=rect("from-js"))
        await py.wait_for(lambda c: c.get_element("from-js") is not None)
        await ro.request("wait_key", key="from-js")
        await ro.request("set", key="refused", value=rect("refused"))
        await anyio.sleep(0.3)
        assert py.get_element("refused") is None
        assert "refused" not in (await rw.request("dump"))["elements"]
        assert saved_elements(store, "js") == {"from-js"}
        # 4403 is in the 44xx range the stock client treats as final: it stops retrying
        with pytest.raises(Exception, match="4403"):
            await stranger.request(
                "connect",
                url=s.yjs_url,
                room="js",
                clientName="stranger",
                params={"token": writer("diagram:elsewhere")},
            )
