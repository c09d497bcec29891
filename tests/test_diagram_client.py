"""clients.DiagramClient against a real room server on loopback.

Network faults come from a TCP proxy between client and server (``TcpProxy``):
severing its connections is what a dropped network looks like to both ends,
and it can be pointed at another server to stand in for a restart. Contracts
that only a server could observe (the goodbye frames, a server that never
answers) are checked against tiny ASGI apps served by hypercorn.
"""

from __future__ import annotations

import json
import socket
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.abc import SocketStream, TaskStatus
from pycrdt import Decoder, Doc, Map, create_sync_message, handle_sync_message
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from clients import DiagramClient, DiagramConnectionError

pytestmark = pytest.mark.anyio

USER_A = {"id": "u-a", "name": "Ada", "color": "#e03131"}
USER_B = {"id": "u-b", "name": "Bo", "color": "#1971c2"}


def room() -> str:
    return f"test-{uuid.uuid4().hex[:10]}"


async def converged(*clients: DiagramClient) -> dict[str, Any]:
    """Wait until every client holds the same elements map, and return it."""
    with anyio.fail_after(5):
        while True:
            maps = [c.elements.to_py() for c in clients]
            if all(m == maps[0] for m in maps):
                return maps[0]
            await anyio.sleep(0.01)


# -- fault injection -----------------------------------------------------------------


class TcpProxy:
    """Loopback TCP forwarder that can cut the network and reroute it."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.online = True
        self.bytes_to_server = 0
        self._connections: set[anyio.CancelScope] = set()

    @property
    def yjs_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/yjs"

    def cut(self, *, stay_offline: bool) -> None:
        """Drop every connection without a close frame, like a dead link."""
        self.online = not stay_offline
        for scope in list(self._connections):
            scope.cancel()

    async def run(self, *, task_status: TaskStatus[None]) -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        async with listener:
            task_status.started()
            await listener.serve(self._forward)

    async def _forward(self, client: SocketStream) -> None:
        async with client:
            if not self.online:
                return
            try:
                server = await anyio.connect_tcp("127.0.0.1", self.target_port)
            except OSError:
                return  # to the client, as good as a refused connection
            with anyio.CancelScope() as scope:
                self._connections.add(scope)
                try:
                    async with server, anyio.create_task_group() as tg:
                        tg.start_soon(self._pump, client, server, scope, True)
                        tg.start_soon(self._pump, server, client, scope, False)
                finally:
                    self._connections.discard(scope)

    async def _pump(
        self, src: SocketStream, dst: SocketStream, scope: anyio.CancelScope, upstream: bool
    ) -> None:
        try:
            async for chunk in src:
                if upstream:
                    self.bytes_to_server += len(chunk)
                await dst.send(chunk)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass
        scope.cancel()


@asynccontextmanager
async def tcp_proxy(target_port: int) -> AsyncIterator[TcpProxy]:
    proxy = TcpProxy(target_port)
    async with anyio.create_task_group() as tg:
        await tg.start(proxy.run)
        yield proxy
        tg.cancel_scope.cancel()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class RecordingRoom:
    """A one-room y-websocket server that records what its clients sent.

    It runs on ``websockets`` because hypercorn reports every client-initiated
    close as 1006 to the app, hiding the code the client actually sent.
    """

    def __init__(self, *, answer: bool = True) -> None:
        self.answer = answer
        self.doc: Doc[Any] = Doc()
        self.frames: list[bytes] = []
        self.close_code: int | None = None
        self.disconnected = anyio.Event()

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[str]:
        """Yields the ws://.../yjs base URL while the server runs."""
        async with serve(self._handle, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            yield f"ws://127.0.0.1:{port}/yjs"

    async def _handle(self, ws: ServerConnection) -> None:
        try:
            if self.answer:
                await ws.send(create_sync_message(self.doc))
            async for frame in ws:
                assert isinstance(frame, bytes)
                self.frames.append(frame)
                if self.answer and frame[0] == 0:  # sync
                    reply = handle_sync_message(frame[1:], self.doc)
                    if reply is not None:
                        await ws.send(reply)
        except ConnectionClosed:
            pass
        rcvd = ws.protocol.close_rcvd
        self.close_code = rcvd.code if rcvd is not None else None
        self.disconnected.set()

    def awareness_states(self) -> list[Any]:
        """Every awareness state the client sent, in order (None = left)."""
        states = []
        for frame in self.frames:
            if frame[0] == 1:
                update = Decoder(frame[1:]).read_message()
                assert update is not None
                decoder = Decoder(update)
                for _ in range(decoder.read_var_uint()):
                    decoder.read_var_uint()  # client id
                    decoder.read_var_uint()  # clock
                    states.append(json.loads(decoder.read_var_string()))
        return states


# -- elements --------------------------------------------------------------------------


async def test_element_helpers_keep_excalidraw_invariants() -> None:
    # No connection needed: the document works offline.
    client = DiagramClient("ws://127.0.0.1:9/yjs", room())
    with pytest.raises(ValueError, match="id"):
        client.add_element({"type": "rectangle"})

    added = client.add_element({"id": "r1", "type": "rectangle", "x": 10})
    assert added["version"] == 1
    assert 0 <= added["versionNonce"] < 2**31
    assert added["isDeleted"] is False
    with pytest.raises(ValueError, match="exists"):
        client.add_element({"id": "r1", "type": "ellipse"})

    updated = client.update_element("r1", x=20)
    assert updated["version"] == 2
    assert updated["x"] == 20
    assert updated["type"] == "rectangle"
    assert updated["updated"] >= added["updated"]
    with pytest.raises(KeyError):
        client.update_element("nope", x=1)
    with pytest.raises(ValueError, match="id"):
        client.update_element("r1", id="r2")

    client.delete_element("r1")
    tombstone = client.get_element("r1")
    assert tombstone is not None
    assert tombstone["isDeleted"] is True
    assert tombstone["version"] == 3
    assert "r1" in client.elements  # never removed, only tombstoned
    assert client.elements_snapshot() == {}

    revived = client.add_element({"id": "r1", "type": "diamond"})
    assert revived["version"] == 4  # must beat the tombstone in reconcileElements
    assert set(client.elements_snapshot()) == {"r1"}


async def test_two_clients_add_update_delete_and_converge(collab_server: Any) -> None:
    name = room()
    with anyio.fail_after(15):
        async with (
            DiagramClient(collab_server.yjs_url, name, user=USER_A) as a,
            DiagramClient(collab_server.yjs_url, name, user=USER_B) as b,
        ):
            assert a.status == b.status == "connected"
            a.add_element({"id": "e1", "type": "rectangle", "x": 0, "y": 0})
            a.add_element({"id": "e2", "type": "ellipse", "x": 5, "y": 5})
            seen = await b.wait_for(lambda c: c.get_element("e2"))
            assert seen["type"] == "ellipse"

            b.update_element("e1", x=42, strokeColor="#000")
            await a.wait_for(lambda c: (c.get_element("e1") or {}).get("x") == 42)
            assert a.get_element("e1") == b.get_element("e1")
            assert (a.get_element("e1") or {})["version"] == 2

            a.delete_element("e2")
            await b.wait_for(lambda c: "e2" not in c.elements_snapshot())
            assert (b.get_element("e2") or {})["isDeleted"] is True

            # Concurrent edits of one element: both sides settle on one value.
            a.update_element("e1", x=1)
            b.update_element("e1", x=2)
            final = await converged(a, b)
            assert final["e1"]["x"] in (1, 2)
            assert final["e1"]["version"] == 3
            assert set(a.elements_snapshot()) == set(b.elements_snapshot()) == {"e1"}

            # A late joiner gets everything in its first sync.
            async with DiagramClient(collab_server.yjs_url, name) as c:
                assert c.elements.to_py() == await converged(a, b)

    assert a.status == b.status == c.status == "closed"


async def test_bursts_of_edits_arrive_complete(collab_server: Any) -> None:
    name = room()
    with anyio.fail_after(15):
        async with (
            DiagramClient(collab_server.yjs_url, name) as a,
            DiagramClient(collab_server.yjs_url, name) as b,
        ):
            for i in range(300):
                a.add_element({"id": f"n{i}", "type": "text", "x": i})
            await b.wait_for(lambda c: len(c.elements) == 300, timeout=10)
            assert b.elements.to_py() == a.elements.to_py()


async def test_remote_updates_are_not_sent_back(collab_server: Any) -> None:
    name = room()
    async with tcp_proxy(collab_server.port) as proxy:
        with anyio.fail_after(15):
            async with (
                DiagramClient(collab_server.yjs_url, name) as a,
                DiagramClient(proxy.yjs_url, name) as b,
            ):
                before = proxy.bytes_to_server
                a.add_element({"id": "big", "type": "text", "text": "x" * 50_000})
                await b.wait_for(lambda c: c.get_element("big"))
                await anyio.sleep(0.2)
                assert proxy.bytes_to_server - before < 1_000


# -- presence --------------------------------------------------------------------------


async def test_presence_is_shared_both_ways(collab_server: Any) -> None:
    name = room()
    with anyio.fail_after(15):
        async with (
            DiagramClient(collab_server.yjs_url, name, user=USER_B) as b,
            DiagramClient(collab_server.yjs_url, name, user=USER_A) as a,
        ):
            a.set_presence(pointer={"x": 10, "y": 20, "tool": "laser"})
            a.set_presence(selected_element_ids=["e1", "e2"])
            state = await b.wait_for(
                lambda c: (
                    c.peers().get(a.client_id, {}).get("selectedElementIds")
                    and c.peers()[a.client_id]
                )
            )
            assert state == {
                "user": USER_A,
                "pointer": {"x": 10, "y": 20, "tool": "laser"},
                "selectedElementIds": {"e1": True, "e2": True},
            }
            # B was there first: A learns of it on joining, and never sees itself.
            peers_of_a = await a.wait_for(lambda c: c.peers())
            assert list(peers_of_a.values()) == [{"user": USER_B}]
            assert a.client_id not in a.peers()


async def test_presence_is_dropped_at_once_when_a_peer_closes(collab_server: Any) -> None:
    name = room()
    with anyio.fail_after(15):
        async with DiagramClient(collab_server.yjs_url, name, user=USER_B) as b:
            async with DiagramClient(collab_server.yjs_url, name, user=USER_A) as a:
                a.set_presence(pointer=(1, 2))
                await b.wait_for(lambda c: c.peers().get(a.client_id, {}).get("pointer"))
            closed_at = time.monotonic()
            await b.wait_for(lambda c: a.client_id not in c.peers(), timeout=1.0)
            assert time.monotonic() - closed_at < 1.0


async def test_close_says_goodbye_with_null_presence_and_code_1000() -> None:
    recorder = RecordingRoom()
    async with recorder.serving() as url:
        with anyio.fail_after(10):
            async with DiagramClient(url, room(), user=USER_A) as client:
                client.add_element({"id": "last", "type": "line"})
                # Closing right after an edit must still deliver it.
            await recorder.disconnected.wait()
    assert recorder.close_code == 1000
    states = recorder.awareness_states()
    assert states[0] == {"user": USER_A}
    assert states[-1] is None
    assert "last" in recorder.doc.get("elements", type=Map)


# -- lifecycle --------------------------------------------------------------------------


async def test_errors_in_the_body_propagate_unwrapped(collab_server: Any) -> None:
    with anyio.fail_after(10), pytest.raises(KeyError, match="boom"):
        async with DiagramClient(collab_server.yjs_url, room()):
            raise KeyError("boom")


async def test_a_cancelled_body_still_closes_promptly(collab_server: Any) -> None:
    with anyio.fail_after(10):
        with anyio.CancelScope() as scope:
            async with DiagramClient(collab_server.yjs_url, room()) as client:
                scope.cancel()  # connected: now cancel the body mid-sleep
                await anyio.sleep(30)
        assert scope.cancelled_caught
        assert client.status == "closed"


# -- sync bounds -----------------------------------------------------------------------


async def test_first_sync_on_a_cold_room_is_quick(collab_server: Any) -> None:
    started = time.monotonic()
    with anyio.fail_after(5):
        async with DiagramClient(collab_server.yjs_url, room(), sync_timeout=3) as client:
            assert client.sync_count == 1
            assert client.status == "connected"
            assert client.elements.to_py() == {}
    assert time.monotonic() - started < 3


async def test_first_sync_is_bounded_when_the_server_never_answers() -> None:
    mute = RecordingRoom(answer=False)
    async with mute.serving() as url:
        started = time.monotonic()
        with anyio.fail_after(5), pytest.raises(DiagramConnectionError, match="no sync"):
            async with DiagramClient(url, room(), sync_timeout=0.5):
                pytest.fail("entered without a sync")
        assert time.monotonic() - started < 2


async def test_unreachable_server_fails_fast_without_reconnect() -> None:
    with anyio.fail_after(5), pytest.raises(DiagramConnectionError, match="ConnectError"):
        async with DiagramClient(f"ws://127.0.0.1:{_free_port()}/yjs", room(), reconnect=False):
            pytest.fail("entered without a server")


# -- reconnection ----------------------------------------------------------------------


async def test_reconnect_after_a_network_cut_keeps_offline_edits(collab_server: Any) -> None:
    name = room()
    async with tcp_proxy(collab_server.port) as proxy:
        with anyio.fail_after(20):
            async with (
                DiagramClient(collab_server.yjs_url, name, user=USER_B) as b,
                DiagramClient(proxy.yjs_url, name, user=USER_A, backoff=(0.05, 0.2)) as a,
            ):
                a.add_element({"id": "before", "type": "rectangle"})
                await b.wait_for(lambda c: c.get_element("before"))
                await b.wait_for(lambda c: a.client_id in c.peers())

                proxy.cut(stay_offline=True)
                await a.wait_for(lambda c: c.status == "reconnecting")
                assert a.peers() == {}  # nobody is known to be there any more
                # The server noticed the dead connection and told B at once.
                await b.wait_for(lambda c: a.client_id not in c.peers(), timeout=1.0)
                a.add_element({"id": "offline", "type": "ellipse"})
                a.update_element("before", x=99)
                b.add_element({"id": "meanwhile", "type": "diamond"})
                await anyio.sleep(0.3)  # a few refused attempts
                assert b.get_element("offline") is None

                proxy.online = True
                await a.wait_for(lambda c: c.sync_count == 2 and c.status == "connected")
                final = await converged(a, b)
                assert set(final) == {"before", "offline", "meanwhile"}
                assert final["before"]["x"] == 99
                # Presence comes back without any new set_presence call.
                await b.wait_for(lambda c: c.peers().get(a.client_id, {}).get("user") == USER_A)
                await a.wait_for(lambda c: b.client_id in c.peers())


async def test_reconnect_to_a_restarted_server_restores_the_document(
    collab_server: Any, make_server: Any
) -> None:
    name = room()
    async with tcp_proxy(collab_server.port) as proxy:
        with anyio.fail_after(30):
            async with (
                DiagramClient(proxy.yjs_url, name, backoff=(0.05, 0.2)) as a,
                DiagramClient(proxy.yjs_url, name, backoff=(0.05, 0.2)) as b,
            ):
                a.add_element({"id": "kept", "type": "rectangle"})
                await b.wait_for(lambda c: c.get_element("kept"))
                async with make_server() as fresh:
                    # The old server is gone; a new one with an empty room takes over.
                    proxy.target_port = fresh.port
                    proxy.cut(stay_offline=False)
                    b.add_element({"id": "after", "type": "arrow"})
                    await a.wait_for(lambda c: c.sync_count >= 2, timeout=10)
                    await b.wait_for(lambda c: c.sync_count >= 2, timeout=10)
                    final = await converged(a, b)
                    assert set(final) == {"kept", "after"}
                    # The fresh server learned the document from the clients.
                    async with DiagramClient(fresh.yjs_url, name) as c:
                        assert set(c.elements.to_py()) == {"kept", "after"}


async def test_no_reconnect_means_closed_after_a_drop(collab_server: Any) -> None:
    async with tcp_proxy(collab_server.port) as proxy:
        with anyio.fail_after(10):
            async with DiagramClient(proxy.yjs_url, room(), reconnect=False) as client:
                proxy.cut(stay_offline=False)
                await client.wait_for(lambda c: c.status == "closed")
                assert client.last_error is not None
                with pytest.raises(DiagramConnectionError):
                    await client.wait_for(lambda c: c.sync_count > 1, timeout=1)


async def test_confirm_returns_once_the_server_saved_what_was_sent(
    make_server: Any, tmp_path: Any
) -> None:
    from collab.app import CollabApp
    from collab.config import Config
    from net.tokens import make_token
    from storage.sqlite import SQLiteStore

    secret = "confirm-test-secret-long-enough-for-hs256-0123456789"
    writer = make_token(secret, channels=["diagram:*"], publish=True)
    reader = make_token(secret, channels=["diagram:*"], publish=False)
    store = SQLiteStore(tmp_path / "confirm.db")
    app = CollabApp(store, Config(grace_period=1.0, auth_secret=secret))
    async with make_server(app=app) as server:
        name = room()
        async with DiagramClient(server.yjs_url, name, token=writer) as client:
            for n in range(20):
                client.add_element({"id": f"e{n}", "type": "rectangle", "x": n, "y": 0})
            await client.confirm()
            assert client.confirmations == 1 and client.sync_count == 1  # not a new handshake
            # saved: the store has every one of them, without waiting
            saved = await store.load(name)
            doc: Doc[Any] = Doc()
            doc.apply_update(saved or b"")
            assert len(doc.get("elements", type=Map)) == 20
            assert client.permission_denied is None
        async with DiagramClient(server.yjs_url, name, token=reader) as client:
            client.add_element({"id": "refused", "type": "rectangle", "x": 0, "y": 0})
            await client.confirm()
            assert client.permission_denied == "read-only token"  # known by then
    store.close()


async def test_confirm_without_a_connection_says_so(collab_server: Any) -> None:
    async with DiagramClient(collab_server.yjs_url, room(), reconnect=False) as client:
        pass
    with pytest.raises(DiagramConnectionError, match="not connected"):
        await client.confirm()
