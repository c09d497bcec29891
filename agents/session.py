"""How an agent reaches a diagram: as a collaborator in its room, and through the REST API.

The MCP server is a *client* of inkwire, whichever transport the agent came
in by: stdio (``inkwire mcp --server URL``) or ``/mcp`` on the server's own
port (whose URL is then the server's own address). For every (agent session,
diagram) it opens one :class:`~clients.diagram.DiagramClient`, a y-websocket
peer of the room like the browsers, on first use, and keeps it while the
session lasts: its awareness state is the agent's presence (name, colour, a
pointer moved to what it draws), and every tool call that writes is one
pycrdt transaction on its document, so the server attributes the edit to the
agent's awareness name (history and ``/events`` show it) and merges it with
everyone else's edits the CRDT way. Lists, history, restore and lock go
through the REST API (``/api/...``) with the agent's token, so a token's
diagrams and ``publish`` right bound what the agent may read and edit, exactly
as they bound a browser.

Each client is owned by a task of the :class:`Sessions` task group: opened
there, closed there (so its task group is entered and left by one task), when
the agent session ends, after ``idle_timeout`` without a tool call on that
diagram, or when the MCP server stops. Closing it removes the agent's
presence from every browser at once.
"""

from __future__ import annotations

import colorsys
import hashlib
import logging
import secrets
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import httpx
from anyio.abc import TaskGroup, TaskStatus
from pycrdt import Decoder, Doc

from agents.defaults import IDLE_TIMEOUT
from agents.mirror import ElementMirror
from clients.diagram import DiagramClient, DiagramConnectionError

__all__ = [
    "Agent",
    "DiagramUnavailable",
    "InkwireApi",
    "Sessions",
    "Workspace",
    "agent_color",
    "revision_of",
]

log = logging.getLogger("inkwire.agents")

_REAP_EVERY = 30.0
_CLOSE_GRACE = 5.0  # seconds the clients get to say goodbye when the server stops


class DiagramUnavailable(Exception):
    """The diagram cannot be reached: refused, unknown, or the server is down (the message says)."""


@dataclass(frozen=True)
class Agent:
    """Who is editing, and with what rights: one MCP session's identity.

    ``server`` is the inkwire server's base URL (``http://host:port``);
    ``token`` the bearer token every request carries (None: auth is off).
    """

    name: str
    server: str
    token: str | None = None
    color: str = ""
    user_id: str = field(default_factory=lambda: f"agent-{secrets.token_hex(4)}")

    def __post_init__(self) -> None:
        if not self.color:
            object.__setattr__(self, "color", agent_color(self.name))

    @property
    def yjs_url(self) -> str:
        base = self.server.rstrip("/")
        if base.startswith("https://"):
            return "wss://" + base[len("https://") :] + "/yjs"
        return "ws://" + base.removeprefix("http://") + "/yjs"

    def headers(self) -> dict[str, str]:
        return {} if self.token is None else {"authorization": f"Bearer {self.token}"}


def agent_color(name: str) -> str:
    """A stable colour for a name, as ``#rrggbb`` (the web app shows the nearest of its hues)."""
    hue = int.from_bytes(hashlib.sha256(name.encode()).digest()[:2], "big") / 65536
    r, g, b = colorsys.hls_to_rgb(hue, 0.45, 0.7)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def revision_of(doc: Doc[Any]) -> int:
    """The diagram's revision: the sum of the clocks in the document's state vector.

    Every change of an element is a new item in the ``elements`` map, which
    moves its author's clock on, so the sum grows with every edit by anyone,
    costs a few bytes to compute, and is the same on every peer holding the
    same state. (The tombstone purge deletes map keys, which moves no clock:
    it does not change what an agent sees of the live diagram.)
    """
    state = Decoder(doc.get_state())  # varuint count, then (client id, clock) pairs
    total = 0
    for _ in range(state.read_var_uint()):
        state.read_var_uint()  # client id
        total += state.read_var_uint()
    return total


class InkwireApi:
    """The REST API calls the tools make, with the agent's token.

    Errors become :class:`DiagramUnavailable` carrying the server's own
    message (``{"error": ...}``), which the tools pass on to the agent.
    """

    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http

    async def request(
        self, agent: Agent, method: str, path: str, *, json: Any = None, params: Any = None
    ) -> Any:
        url = agent.server.rstrip("/") + path
        try:
            response = await self.http.request(
                method, url, json=json, params=params, headers=agent.headers()
            )
        except httpx.HTTPError as error:
            raise DiagramUnavailable(f"inkwire at {agent.server} is unreachable: {error}") from None
        if response.status_code >= 400:
            try:
                message = response.json()["error"]
            except (ValueError, KeyError, TypeError):
                message = response.text.strip() or response.reason_phrase
            raise DiagramUnavailable(f"{message} (HTTP {response.status_code})")
        return response.json()

    async def exists(self, agent: Agent, diagram: str) -> bool:
        """Whether the diagram has been saved or is open: the export answers for it."""
        try:
            await self.request(agent, "GET", f"/api/diagrams/{diagram}")
        except DiagramUnavailable as error:
            if "(HTTP 404)" in str(error):
                return False
            raise
        return True


@dataclass(eq=False)
class _Open:
    client: DiagramClient
    closed: anyio.Event
    done: anyio.Event
    last_used: float = field(default_factory=time.monotonic)
    mirror: ElementMirror | None = None  # made on the first write or read of the elements


class Workspace:
    """One agent session's diagrams: a live client for each diagram it has touched."""

    def __init__(self, agent: Agent, sessions: Sessions) -> None:
        self.agent = agent
        self.sessions = sessions
        self._open: dict[str, _Open] = {}
        self._opening = anyio.Lock()
        self._mirroring = anyio.Lock()
        self.closed = False

    async def client(self, diagram: str, *, create: bool = False) -> DiagramClient:
        """The diagram's live client, synced with the room; opened on first use.

        A diagram nobody has saved or opened is unknown (:class:`DiagramUnavailable`)
        unless ``create`` is set: agents do not make diagrams by mistyping a name.
        """
        async with self._opening:
            if self.closed:
                raise DiagramUnavailable("this MCP session has ended")
            found = self._open.get(diagram)
            if found is not None and found.client.status != "closed":
                found.last_used = time.monotonic()
                return found.client
            if found is not None:  # refused for good (an expired token): start afresh
                self._close(diagram)
            if not create and not await self.sessions.api.exists(self.agent, diagram):
                raise DiagramUnavailable(
                    f"no diagram {diagram!r} (list_diagrams shows them; create_elements with "
                    "create_diagram=true starts a new one)"
                )
            opened: _Open = await self.sessions.task_group.start(self._own, diagram)
            if self.ended():  # the session ended while the client synced
                opened.closed.set()
                raise DiagramUnavailable("this MCP session has ended")
            self._open[diagram] = opened
            return opened.client

    async def mirror(self, client: DiagramClient) -> ElementMirror:
        """The client's elements as dicts, kept current (:mod:`agents.mirror`); the
        first call converts them in a worker thread. A client closed meanwhile gets
        a mirror of its own (its document is still there to read)."""
        opened = next((o for o in self._open.values() if o.client is client), None)
        if opened is None:
            return await ElementMirror.load(client.elements)
        async with self._mirroring:  # one conversion, however many calls wait for it
            if opened.mirror is None:
                opened.mirror = await ElementMirror.load(client.elements)
        return opened.mirror

    async def _own(self, diagram: str, *, task_status: TaskStatus[_Open]) -> None:
        agent = self.agent
        user = {"id": agent.user_id, "name": agent.name, "color": agent.color}
        client = DiagramClient(
            agent.yjs_url, diagram, user=user, token=agent.token, reconnect=True, sync_timeout=10.0
        )
        opened = _Open(client, anyio.Event(), anyio.Event())
        started = False
        try:
            async with client:
                self.sessions.alive.add(opened)
                client.set_presence(pointer={"x": 0, "y": 0, "tool": "pointer"}, userState="active")
                task_status.started(opened)
                started = True
                await opened.closed.wait()
        except DiagramConnectionError as error:
            if not started:  # never synced: the caller hears why
                raise DiagramUnavailable(_refusal(diagram, error)) from None
            log.warning("the client of %s for %s failed: %r", diagram, agent.name, error)
        except Exception:
            if not started:
                raise
            # a client bug must not take the other sessions' clients down with it
            log.exception("the client of %s for %s failed", diagram, agent.name)
        finally:
            self.sessions.alive.discard(opened)
            opened.done.set()

    def ended(self) -> bool:
        """Whether :meth:`close` was called (the agent session is over)."""
        return self.closed

    def forget(self, diagram: str) -> None:
        """Drop the diagram's client (its document may hold an edit the server refused)."""
        self._close(diagram)

    def _close(self, diagram: str) -> None:
        opened = self._open.pop(diagram, None)
        if opened is not None:
            opened.closed.set()

    def close(self) -> None:
        self.closed = True
        for diagram in list(self._open):
            self._close(diagram)

    def reap(self, now: float, idle: float) -> None:
        for diagram, opened in list(self._open.items()):
            if now - opened.last_used > idle:
                log.info("closing %s for %s: idle", diagram, self.agent.name)
                self._close(diagram)

    @property
    def diagrams(self) -> list[str]:
        return sorted(self._open)

    @property
    def idle(self) -> bool:
        """Nothing open, and nothing being opened: forgetting it loses nothing."""
        return not self._open and not self._opening.locked()


class Sessions:
    """Every agent session of one MCP server, and the task group their clients live in."""

    def __init__(self, task_group: TaskGroup, api: InkwireApi, idle_timeout: float) -> None:
        self.task_group = task_group
        self.api = api
        self.idle_timeout = idle_timeout
        self._workspaces: dict[tuple[Any, ...], Workspace] = {}
        self.alive: set[_Open] = set()  # clients whose owner task has not finished

    def workspace(self, key: tuple[Any, ...], agent: Agent) -> Workspace:
        found = self._workspaces.get(key)
        if found is None or found.closed:
            found = self._workspaces[key] = Workspace(agent, self)
        return found

    def end(self, key: tuple[Any, ...]) -> None:
        """The agent session ended: its clients close, its presence goes."""
        found = self._workspaces.pop(key, None)
        if found is not None:
            found.close()

    def close_all(self) -> None:
        for key in list(self._workspaces):
            self.end(key)

    async def _reap(self) -> None:
        while True:
            await anyio.sleep(min(_REAP_EVERY, self.idle_timeout))
            now = time.monotonic()
            for key, workspace in list(self._workspaces.items()):
                workspace.reap(now, self.idle_timeout)
                if workspace.idle:
                    # nothing open: the session costs nothing but its key
                    self._workspaces.pop(key, None)


@asynccontextmanager
async def running_sessions(idle_timeout: float = IDLE_TIMEOUT) -> AsyncIterator[Sessions]:
    """Agent sessions for the life of the block; on exit every client closes (bounded)."""
    async with httpx.AsyncClient(timeout=30.0) as http, anyio.create_task_group() as tg:
        sessions = Sessions(tg, InkwireApi(http), idle_timeout)
        tg.start_soon(sessions._reap)
        try:
            yield sessions
        finally:
            sessions.close_all()
            with anyio.move_on_after(_CLOSE_GRACE, shield=True):
                await _all_closed(sessions)
            tg.cancel_scope.cancel()


async def _all_closed(sessions: Sessions) -> None:
    # the owners shut their clients down (shielded) once told to; wait for them
    for opened in list(sessions.alive):
        await opened.done.wait()


def _refusal(diagram: str, error: DiagramConnectionError) -> str:
    cause = error.__cause__ or error
    text = str(cause)
    if "4001" in text:
        return f"the server refused the token for {diagram!r} (close 4001: missing, bad or expired)"
    if "4403" in text:
        return f"the token does not cover diagram {diagram!r} (close 4403)"
    return f"could not open {diagram!r}: {error}"
