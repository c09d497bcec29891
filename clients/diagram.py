"""A Python peer in a diagram room: a pycrdt document kept in sync over y-websocket.

Scripts and agents edit live diagrams through this client. It speaks the same
protocol as the browsers (y-websocket sync and awareness), so its edits merge
conflict-free with theirs and its presence shows up next to theirs.

Usage::

    async with DiagramClient("ws://127.0.0.1:3042/yjs", "plan", user={"name": "bot"}) as c:
        c.add_element({"id": "box", "type": "rectangle", "x": 0, "y": 0})
        await c.wait_for(lambda c: "arrow" in c.elements_snapshot(), timeout=5)

A server with auth on needs ``token=...`` (sent as ``?token=``): without
``publish`` in it the client may read and show presence, and the server
refuses its edits (``permission_denied`` says why); a refused token (close
4001, or 4403 for a diagram it does not cover) ends the client, no retries.

Everything the client runs (connection, reader, writer, awareness renewal) lives
in one task group owned by the ``async with`` block, and ends with it.
"""

from __future__ import annotations

import logging
import random
import ssl
import time
from collections.abc import Callable, Iterable, Mapping
from contextlib import AsyncExitStack, suppress
from types import TracebackType
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlencode

import anyio
import httpx
from anyio.abc import TaskGroup
from httpx_ws import (
    AsyncWebSocketSession,
    HTTPXWSException,
    WebSocketDisconnect,
    WebSocketUpgradeError,
    aconnect_ws,
)
from pycrdt import (
    Awareness,
    Doc,
    Map,
    TransactionEvent,
    YMessageType,
    YSyncMessageType,
    create_awareness_message,
    create_sync_message,
    create_update_message,
    handle_sync_message,
    merge_updates,
    read_message,
)
from wsproto.utilities import LocalProtocolError

__all__ = ["REMOTE_ORIGIN", "DiagramClient", "DiagramConnectionError"]

log = logging.getLogger(__name__)

Status = Literal["connecting", "connected", "reconnecting", "closed"]
T = TypeVar("T")

#: Origin of every transaction that applies server data, so observers of
#: ``client.doc`` can tell remote changes from their own.
REMOTE_ORIGIN = "inkwire.clients.diagram:remote"
_REMOTE_HASH = hash(REMOTE_ORIGIN)

# y-protocols message types that pycrdt has no names for.
_MSG_AUTH = 2
_MSG_QUERY_AWARENESS = 3

# pycrdt.merge_updates is roughly quadratic in its input count.
_MERGE_GROUP = 32

# Close codes after which retrying cannot help (policy, unauthorized, forbidden).
_FATAL_CLOSE_CODES = frozenset({1008, 4001, 4003, 4403})


class DiagramConnectionError(ConnectionError):
    """The client could not sync with the room, or has stopped trying."""


class _ProtocolViolation(Exception):
    """The server sent a frame we cannot decode; reconnecting resyncs from scratch."""


# What a dropped or refused connection looks like; anything else is a bug and surfaces.
_DROPPED = (
    OSError,  # includes TimeoutError: no SyncStep2 in time
    httpx.TransportError,
    HTTPXWSException,
    LocalProtocolError,  # sending after the peer's close frame arrived
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    anyio.EndOfStream,
    _ProtocolViolation,
)


def _drop_cause(error: BaseException) -> BaseException | None:
    """The connection-level cause of a failure (digging through task groups), or
    None when it is not one and must surface as a bug."""
    if isinstance(error, _DROPPED):
        return error
    if isinstance(error, BaseExceptionGroup):
        causes = [_drop_cause(inner) for inner in error.exceptions]
        if all(causes):
            return causes[0]
    return None


def _is_fatal(error: BaseException) -> bool:
    if isinstance(error, WebSocketDisconnect):
        return error.code in _FATAL_CLOSE_CODES
    if isinstance(error, WebSocketUpgradeError):
        status = error.response.status_code
        return 400 <= status < 500 and status not in (408, 429)
    return False


class DiagramClient:
    """One diagram's Yjs document, live-synced with the room at ``url/diagram``.

    The document is usable before and between connections: edits made while
    offline are delivered by the sync handshake of the next connection, which is
    how y-websocket clients behave too.
    """

    def __init__(
        self,
        url: str,
        diagram: str,
        *,
        user: Mapping[str, Any] | None = None,
        reconnect: bool = True,
        backoff: tuple[float, float] = (0.1, 5.0),
        sync_timeout: float = 10.0,
        close_timeout: float = 2.0,
        token: str | None = None,
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self.room_url = f"{url.rstrip('/')}/{diagram}"
        self.verify = verify  # for wss://: httpx's verify (a CA file, an SSLContext, True)
        # the token rides in the query (as y-websocket's ``params`` send it), kept out
        # of room_url, which logs and error messages show
        self._connect_url = (
            self.room_url if token is None else f"{self.room_url}?{urlencode({'token': token})}"
        )
        self.user = dict(user) if user is not None else None
        self.reconnect = reconnect
        self.backoff = backoff
        self.sync_timeout = sync_timeout
        self.close_timeout = close_timeout

        self.doc: Doc[Any] = Doc()
        self.elements: Map[Any] = self.doc.get("elements", type=Map)
        self.files: Map[Any] = self.doc.get("files", type=Map)
        self.meta: Map[Any] = self.doc.get("meta", type=Map)
        self.awareness = Awareness(self.doc)
        if self.user is not None:
            self.awareness.set_local_state({"user": self.user})

        self.status: Status = "connecting"
        #: Completed sync handshakes; it grows by one on every reconnection.
        self.sync_count = 0
        #: Why the last connection ended or failed, if it did.
        self.last_error: BaseException | None = None
        #: Reason given by the server's auth message, if it refused our edits.
        self.permission_denied: str | None = None
        #: Sync replies past each connection's handshake: answers to :meth:`confirm`.
        self.confirmations = 0
        self._handshaken = False  # this connection has had its first SyncStep2

        self._ws: AsyncWebSocketSession | None = None
        self._pending: list[bytes] = []  # local updates not yet handed to the socket
        self._presence_dirty = False
        self._send_lock = anyio.Lock()
        # Events are created lazily by whoever waits, so the client can be built
        # outside an event loop and edited from synchronous code.
        self._outbox_event: anyio.Event | None = None
        self._change_event: anyio.Event | None = None
        self._closing = False
        self._entered = False
        self._exit_stack: AsyncExitStack | None = None
        self._task_group: TaskGroup | None = None
        self.doc.observe(self._on_doc_change)
        self.awareness.observe(self._on_awareness_change)

    @property
    def client_id(self) -> int:
        return self.doc.client_id

    # -- lifecycle ---------------------------------------------------------------

    async def __aenter__(self) -> Self:
        if self._entered:
            raise RuntimeError("a DiagramClient can be entered only once")
        self._entered = True
        async with AsyncExitStack() as stack:
            http = await stack.enter_async_context(
                httpx.AsyncClient(timeout=self.sync_timeout, verify=self.verify)
            )
            self._task_group = await stack.enter_async_context(anyio.create_task_group())
            self._task_group.start_soon(self.awareness.start)
            self._task_group.start_soon(self._run, http)
            with suppress(TimeoutError):
                await self.wait_for(
                    lambda c: c.sync_count > 0 or c.status == "closed", self.sync_timeout
                )
            self._exit_stack = stack.pop_all()
        if self.sync_count == 0:
            await self._shutdown()
            detail = f" (last error: {self.last_error!r})" if self.last_error else ""
            raise DiagramConnectionError(
                f"no sync with {self.room_url} within {self.sync_timeout:g} s{detail}"
            ) from self.last_error
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        # The user's exception (if any) propagates unchanged: we leave the task
        # group cleanly instead of handing it the exception to wrap in a group.
        await self._shutdown()

    async def _shutdown(self) -> None:
        self._closing = True
        # A null state makes peers drop our cursor now rather than after 30 s.
        self.awareness.set_local_state(None)
        ws = self._ws
        if ws is not None:
            # Shielded: a cancelled body must still say goodbye, within bounds.
            with anyio.move_on_after(self.close_timeout, shield=True):
                try:
                    await self._flush(ws)
                except _DROPPED as error:
                    log.debug("final flush to %s failed: %r", self.room_url, error)
        if self._task_group is not None:
            # Leaving aconnect_ws closes the socket with 1000.
            self._task_group.cancel_scope.cancel()
        try:
            if self._exit_stack is not None:
                await self._exit_stack.aclose()
        finally:
            self._set_status("closed")

    async def _run(self, http: httpx.AsyncClient) -> None:
        """Keep a connection up until the client closes, or retrying is pointless."""
        failures = 0
        while True:
            synced_before = self.sync_count
            try:
                await self._connect_once(http)
            except Exception as error:
                cause = _drop_cause(error)
                if cause is None:
                    raise
                self.last_error = cause
                log.info("connection to %s ended: %r", self.room_url, cause)
            finally:
                self._ws = None
                self._forget_peers()
            if self.sync_count > synced_before:
                failures = 0
            fatal = self.last_error is not None and _is_fatal(self.last_error)
            if self._closing or not self.reconnect or fatal:
                self._set_status("closed")
                return
            self._set_status("reconnecting" if self.sync_count else "connecting")
            initial, ceiling = self.backoff
            delay = min(ceiling, initial * 2**failures)
            failures += 1
            # Jitter spreads out a room's clients that all lost the same server.
            await anyio.sleep(random.uniform(delay / 2, delay))

    async def _connect_once(self, http: httpx.AsyncClient) -> None:
        ws: AsyncWebSocketSession
        async with aconnect_ws(self._connect_url, http) as ws:
            # Whatever is pending now is covered by the SyncStep2 we owe the server.
            self._pending.clear()
            self._handshaken = False
            self._ws = ws
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._write_loop, ws)
                await self._read_loop(ws)

    # -- wire --------------------------------------------------------------------

    async def _read_loop(self, ws: AsyncWebSocketSession) -> None:
        await ws.send_bytes(create_sync_message(self.doc))
        self._announce_presence()
        syncs_at_start = self.sync_count
        while True:
            # A server that accepts but never completes the handshake is as
            # good as down: time out and try again.
            synced = self.sync_count > syncs_at_start
            message = await ws.receive_bytes(timeout=None if synced else self.sync_timeout)
            try:
                reply = self._handle(message)
            except (IndexError, ValueError, RuntimeError) as error:
                raise _ProtocolViolation(f"undecodable frame {message[:16]!r}") from error
            if reply is not None:
                await ws.send_bytes(reply)

    def _handle(self, message: bytes) -> bytes | None:
        kind = message[0]
        if kind == YMessageType.SYNC:
            with self.doc.transaction(origin=REMOTE_ORIGIN):
                reply = handle_sync_message(message[1:], self.doc)
            if message[1] == YSyncMessageType.SYNC_STEP2:
                if self._handshaken:
                    self.confirmations += 1
                    self._notify()
                else:
                    self._handshaken = True
                    self.sync_count += 1
                    self._set_status("connected")
            return reply
        if kind == YMessageType.AWARENESS:
            self.awareness.apply_awareness_update(read_message(message[1:]), REMOTE_ORIGIN)
        elif kind == _MSG_QUERY_AWARENESS:
            return self._presence_message()
        elif kind == _MSG_AUTH:
            reason = read_message(message[2:]).decode() if len(message) > 2 else ""
            self.permission_denied = reason or "permission denied"
            log.warning("%s refused our edits: %s", self.room_url, self.permission_denied)
            self._notify()  # wait_for() callers may be waiting for exactly this
        else:
            log.debug("ignoring message type %d from %s", kind, self.room_url)
        return None

    async def _write_loop(self, ws: AsyncWebSocketSession) -> None:
        while True:
            if not self._pending and not self._presence_dirty:
                self._outbox_event = anyio.Event()
                await self._outbox_event.wait()
            await self._flush(ws)

    async def _flush(self, ws: AsyncWebSocketSession) -> None:
        # Bursts of edits leave as a few merged frames, not one frame per edit.
        async with self._send_lock:
            updates, self._pending = self._pending, []
            for start in range(0, len(updates), _MERGE_GROUP):
                group = updates[start : start + _MERGE_GROUP]
                update = group[0] if len(group) == 1 else merge_updates(*group)
                await ws.send_bytes(create_update_message(update))
            if self._presence_dirty:
                self._presence_dirty = False
                await ws.send_bytes(self._presence_message())

    def _presence_message(self) -> bytes:
        update = self.awareness.encode_awareness_update([self.client_id])
        return create_awareness_message(update)

    def _announce_presence(self) -> None:
        # Peers keep our awareness clock after dropping our state, and ignore a
        # state that does not exceed it. A server announces our departure with
        # our last clock (y-websocket) or one more (inkwire), so skip past both.
        state = self.awareness.get_local_state()
        if state is not None:
            self.awareness.meta[self.client_id]["clock"] += 1
            self.awareness.set_local_state(state)

    def _forget_peers(self) -> None:
        # Without a connection we cannot know who is still there. Their clocks
        # go too: the next server would resend the same clocks, which a kept
        # clock would make us ignore.
        others = [cid for cid in self.awareness.meta if cid != self.client_id]
        self.awareness.remove_awareness_states(others, "disconnected")
        for cid in others:
            del self.awareness.meta[cid]

    # -- observers ---------------------------------------------------------------

    def _on_doc_change(self, event: TransactionEvent) -> None:
        # pycrdt gives observers the native transaction, whose origin() is the
        # hash of the origin object (the type stub does not declare it).
        txn = getattr(event, "transaction", None)
        from_server = txn is not None and txn.origin() == _REMOTE_HASH
        if not from_server and self._ws is not None:
            self._pending.append(event.update)
            self._wake_writer()
        self._notify()

    def _on_awareness_change(self, topic: str, change: tuple[dict[str, Any], Any]) -> None:
        if topic == "update" and change[1] == "local":
            self._presence_dirty = True
            self._wake_writer()
        elif topic == "change":
            self._notify()

    def _wake_writer(self) -> None:
        if self._outbox_event is not None:
            self._outbox_event.set()

    def _notify(self) -> None:
        if self._change_event is not None:
            self._change_event.set()
            self._change_event = None

    def _set_status(self, status: Status) -> None:
        if status != self.status:
            log.debug("%s: %s -> %s", self.room_url, self.status, status)
            self.status = status
            self._notify()

    async def confirm(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 -- one bound for the whole round trip
        """Wait until the server has taken everything this client sent so far.

        y-websocket has no acknowledgements, but a server answers a sync step 1
        after the messages before it: this sends our pending updates, then a
        sync step 1, and waits for the reply. An inkwire server sends that reply
        only once the updates before it are saved, and a refusal of them
        (:attr:`permission_denied`) arrives before it. Raises
        :class:`DiagramConnectionError` without a connection, ``TimeoutError``
        when no reply comes in time.
        """
        ws = self._ws
        if ws is None or not self._handshaken:
            raise DiagramConnectionError(f"{self.room_url}: not connected")
        before = self.confirmations
        try:
            await self._flush(ws)
            async with self._send_lock:
                await ws.send_bytes(create_sync_message(self.doc))
        except _DROPPED as error:
            raise DiagramConnectionError(f"{self.room_url}: connection lost") from error
        await self.wait_for(lambda c: c.confirmations > before or c._ws is not ws, timeout)
        if self._ws is not ws:
            raise DiagramConnectionError(f"{self.room_url}: connection lost before the reply")

    async def wait_for(
        self,
        predicate: Callable[[DiagramClient], T],
        timeout: float = 5.0,  # noqa: ASYNC109 -- a deadline per condition reads best in tests
    ) -> T:
        """Wait until ``predicate(client)`` is truthy and return its value.

        It is re-checked after every document, awareness or status change, so
        tests and scripts need no polling loops.
        """
        try:
            with anyio.fail_after(timeout):
                while not (result := predicate(self)):
                    if self.status == "closed":
                        raise DiagramConnectionError(f"{self.room_url}: client is closed")
                    if self._change_event is None:
                        self._change_event = anyio.Event()
                    await self._change_event.wait()
                return result
        except TimeoutError:
            raise TimeoutError(f"condition not met within {timeout:g} s") from None

    # -- elements ------------------------------------------------------------------

    def add_element(self, element: Mapping[str, Any]) -> dict[str, Any]:
        """Store a new element; Excalidraw's reconciliation needs version and nonce."""
        if "id" not in element:
            raise ValueError("an element needs an 'id'")
        element_id = str(element["id"])
        new = dict(element)
        old = self.get_element(element_id)
        if old is not None and not old.get("isDeleted"):
            raise ValueError(f"element {element_id!r} exists; use update_element")
        new.setdefault("version", 1)
        if old is not None:
            # Re-using a tombstone's id: only a higher version wins in browsers.
            new["version"] = max(new["version"], old.get("version", 0) + 1)
        new.setdefault("versionNonce", _nonce())
        new.setdefault("updated", _now_ms())
        new.setdefault("isDeleted", False)
        self.elements[element_id] = new
        return new

    def update_element(self, element_id: str, **changes: Any) -> dict[str, Any]:
        """Replace the element with the changes applied, as a newer version."""
        old = self.get_element(element_id)
        if old is None:
            raise KeyError(element_id)
        if changes.get("id", element_id) != element_id:
            raise ValueError("an element's id cannot change")
        new = {**old, **changes}
        new["version"] = old.get("version", 0) + 1
        new["versionNonce"] = _nonce()
        new["updated"] = _now_ms()
        self.elements[element_id] = new
        return new

    def delete_element(self, element_id: str) -> None:
        """Tombstone the element, so a concurrent edit reconciles the Excalidraw way."""
        old = self.get_element(element_id)
        if old is None:
            raise KeyError(element_id)
        if not old.get("isDeleted"):
            self.update_element(element_id, isDeleted=True)

    def get_element(self, element_id: str) -> dict[str, Any] | None:
        """The stored element, tombstones included, so callers can see a delete."""
        value = self.elements.get(element_id)
        return dict(value) if isinstance(value, dict) else None

    def elements_snapshot(self) -> dict[str, dict[str, Any]]:
        """The live (non-deleted) elements by id."""
        return {
            key: dict(value)
            for key, value in self.elements.items()
            if isinstance(value, dict) and not value.get("isDeleted")
        }

    # -- presence ------------------------------------------------------------------

    def set_presence(
        self,
        pointer: Mapping[str, Any] | tuple[float, float] | None = None,
        selected_element_ids: Iterable[str] | None = None,
        **extra: Any,
    ) -> None:
        """Update our awareness state; arguments left out keep their last value."""
        state = dict(self.awareness.get_local_state() or {})
        if self.user is not None:
            state["user"] = self.user
        if pointer is not None:
            if isinstance(pointer, tuple):
                pointer = {"x": pointer[0], "y": pointer[1]}
            state["pointer"] = {
                "x": pointer["x"],
                "y": pointer["y"],
                "tool": pointer.get("tool", "pointer"),
            }
        if selected_element_ids is not None:
            # Excalidraw's appState.selectedElementIds shape.
            state["selectedElementIds"] = dict.fromkeys(selected_element_ids, True)
        state.update(extra)
        self.awareness.set_local_state(state)

    def peers(self) -> dict[int, dict[str, Any]]:
        """Other clients' awareness states, by awareness client id.

        Empty states are left out: they carry no presence (a y-websocket
        server's own state is one).
        """
        return {
            cid: dict(state)
            for cid, state in self.awareness.states.items()
            if cid != self.client_id and state
        }


def _nonce() -> int:
    return random.randrange(2**31)  # Excalidraw's randomInteger() range


def _now_ms() -> int:
    return int(time.time() * 1000)
