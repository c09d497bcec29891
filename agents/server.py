"""The MCP server: every tool an agent has on inkwire's diagrams, on any transport.

:func:`build_server` makes one :class:`~mcp.server.mcpserver.MCPServer`
whose lifespan owns the agent sessions (:mod:`agents.session`). The same
server runs over stdio (``inkwire mcp``, :mod:`agents.cli`) and over
streamable HTTP at ``/mcp`` on ``inkwire serve``'s port (:mod:`agents.http`).

Tool errors are MCP tool errors (``isError`` with a message the agent can act
on): wrong arguments are refused by the argument models before anything
runs; an edit the element model refuses, an ``if_revision`` that no longer
matches, a locked diagram, or an edit the server refuses (a read-only token)
leave the diagram as it was.
"""

from __future__ import annotations

import base64
import copy
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

import anyio.to_thread
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import CallToolResult, ContentBlock, ImageContent, TextContent, ToolAnnotations
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS
from pycrdt import Doc
from pydantic import BaseModel, Field

from agents import edits, operations
from agents.defaults import DEFAULT_SERVER, IDLE_TIMEOUT
from agents.describe import describe
from agents.export import Export, Format, export_diagram
from agents.mirror import consistent_edit
from agents.session import (
    Agent,
    DiagramUnavailable,
    Sessions,
    Workspace,
    revision_of,
    running_sessions,
)
from agents.specs import (
    MAX_ELEMENTS,
    Alignment,
    Area,
    Axis,
    Direction,
    EdgeSpec,
    ElementUpdate,
    NodeSpec,
    ShapeSpec,
)
from clients.diagram import DiagramClient, DiagramConnectionError

__all__ = ["ServerOptions", "build_server"]

log = logging.getLogger("inkwire.agents")

#: The most elements one call may create, update or delete: a diagram edit is
#: one transaction that every browser applies at once.
MAX_BATCH = MAX_ELEMENTS
CONFIRM_TIMEOUT = 15.0  # seconds for the server to save an edit and say so

DiagramId = Annotated[
    str,
    Field(
        pattern=r"^[A-Za-z0-9._-]{1,128}$",
        description="the diagram's id, as list_diagrams shows it (1-128 of A-Z a-z 0-9 . _ -)",
    ),
]
ElementIds = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=256)]],
    Field(min_length=1, max_length=MAX_BATCH),
]
IfRevision = Annotated[
    int | None,
    Field(
        ge=0,
        description="refuse the edit unless the diagram is still at this revision "
        "(as describe_diagram or the last edit reported it)",
    ),
]

READ = ToolAnnotations(read_only_hint=True, open_world_hint=False)
WRITE = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=False
)
DESTRUCTIVE = ToolAnnotations(
    read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
)
#: The operations tools ask the servers' own HTTP routes: read-only, but open
#: to a world outside the diagrams (servers that may be down).
OPERATIONS = ToolAnnotations(read_only_hint=True, open_world_hint=True)
IDEMPOTENT = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=True, open_world_hint=False
)


class ServerOptions(BaseModel):
    """What an MCP server is told when it starts.

    ``server``: the inkwire server's URL; None means "the server this request
    came in on" (``/mcp``). ``token``: the bearer token of a stdio server
    (``/mcp`` takes each request's own). ``name``: the agent's name, shown to
    the people in the diagram; None takes the MCP client's own name.
    """

    server: str | None = DEFAULT_SERVER
    token: str | None = None
    name: str | None = None
    relays: list[str] = Field(default_factory=list)
    idle_timeout: float = IDLE_TIMEOUT


# --- results --------------------------------------------------------------------------


class DiagramSummary(BaseModel):
    id: str
    title: str | None = None
    elements: int | None = None
    last_edit: str | None = None
    people: list[str] = Field(default_factory=list, description="who is in it now")


class DiagramList(BaseModel):
    diagrams: list[DiagramSummary]


class Description(BaseModel):
    diagram: str
    revision: int = Field(description="pass as if_revision to edit only this state")
    text: str = Field(description="one line per element: id, type, label, bounding box")


class Elements(BaseModel):
    diagram: str
    revision: int
    elements: list[dict[str, Any]] = Field(description="full Excalidraw 0.18 element JSON")


class EditResult(BaseModel):
    diagram: str
    revision: int = Field(description="the diagram's revision after the edit")
    created: list[str] = Field(default_factory=list)
    changed: list[str] = Field(
        default_factory=list, description="every element the edit wrote, created ones included"
    )
    deleted: list[str] = Field(default_factory=list)


class Version(BaseModel):
    seq: int
    time: str | None = None
    origin: str | None = Field(None, description="who made it (an agent's or person's name)")
    added: list[str] = Field(default_factory=list)
    changed: list[str] = Field(default_factory=list)
    removed: list[str] = Field(default_factory=list)


class Versions(BaseModel):
    diagram: str
    versions: list[Version]
    next_before: int | None = Field(None, description="pass as before for the next page")


class Restored(BaseModel):
    diagram: str
    restored: int = Field(description="the version restored (a seq)")
    changed: bool


class LockState(BaseModel):
    diagram: str
    locked: bool


class Exported(BaseModel):
    diagram: str
    revision: int
    format: Format
    mime_type: str
    width: int | None = Field(None, description="pixels (SVG: CSS pixels)")
    height: int | None = None
    size: int = Field(description="bytes of the file")


# --- the server -------------------------------------------------------------------------


def build_server(options: ServerOptions | None = None) -> MCPServer[Sessions]:
    """An MCP server with every inkwire tool; its lifespan owns the agent sessions."""
    options = options or ServerOptions()

    @asynccontextmanager
    async def lifespan(_: MCPServer[Sessions]) -> AsyncIterator[Sessions]:
        async with running_sessions(options.idle_timeout) as sessions:
            yield sessions

    # The SDK's constructor calls logging.basicConfig, which would configure the
    # logging of whatever process embeds a collab server; it does nothing while the
    # root logger has a handler, so it gets one for the moment.
    root = logging.getLogger()
    guard = logging.NullHandler()
    root.addHandler(guard)
    try:
        server: MCPServer[Sessions] = MCPServer(
            "inkwire",
            title="inkwire diagrams",
            instructions=INSTRUCTIONS,
            lifespan=lifespan,
            log_level="WARNING",
        )
    finally:
        root.removeHandler(guard)
    tools = _Tools(options)
    tools.register(server)
    return server


INSTRUCTIONS = """\
inkwire holds live Excalidraw diagrams that people edit together in their browsers.
You join a diagram as a collaborator: people see your name and pointer, and watch
what you draw appear. Start with list_diagrams, then describe_diagram (compact text,
one line per element, with the revision). Create shapes with labels and arrows bound
to them (from/to), move or relabel with update_elements, arrange with align,
distribute or layout. Each call is one edit that merges with everyone else's;
pass if_revision to refuse an edit if the diagram changed since you read it.
"""


class _Tools:
    """The tool functions, bound to the server's options."""

    def __init__(self, options: ServerOptions) -> None:
        self.options = options

    # -- plumbing --------------------------------------------------------------------

    def workspace(self, ctx: Context[Sessions]) -> Workspace:
        """This MCP session's workspace: who the agent is and its open diagrams."""
        request_context = ctx.request_context
        sessions: Sessions = request_context.lifespan_context
        request = request_context.request
        token, server = self.options.token, self.options.server
        if request is not None and hasattr(request, "scope"):
            token = _request_token(request) or token
            if server is None:
                server = _own_address(request.scope)
        if server is None:
            raise ToolError("no inkwire server to talk to (start the MCP server with --server URL)")
        name = self.options.name or _client_name(ctx) or "agent"
        # The SDK keeps the session's connection private; its id (a stateful HTTP
        # session) and its exit stack (the end of the session) are what key and
        # close our workspace. Stateless requests share one per token and name,
        # closed by the idle timeout.
        connection = getattr(request_context.session, "_connection", None)
        session_id = getattr(connection, "session_id", None)
        handshake = getattr(connection, "protocol_version", None) in HANDSHAKE_PROTOCOL_VERSIONS
        key = (session_id, id(connection) if handshake else None, token, name, server)
        workspace = sessions.workspace(key, Agent(name=name, server=server, token=token))
        if handshake and connection is not None:
            # one workspace per token the session's requests carry; all end with it
            keys: set[tuple[Any, ...]] = connection.state.setdefault("inkwire", set())
            if key not in keys:
                keys.add(key)
                connection.exit_stack.callback(sessions.end, key)
        return workspace

    async def open(
        self, ctx: Context[Sessions], diagram: str, *, create: bool = False
    ) -> tuple[Workspace, DiagramClient]:
        workspace = self.workspace(ctx)
        try:
            return workspace, await workspace.client(diagram, create=create)
        except DiagramUnavailable as error:
            raise ToolError(str(error)) from None

    async def api(self, ctx: Context[Sessions], method: str, path: str, **kwargs: Any) -> Any:
        workspace = self.workspace(ctx)
        try:
            return await workspace.sessions.api.request(workspace.agent, method, path, **kwargs)
        except DiagramUnavailable as error:
            raise ToolError(str(error)) from None

    async def write(
        self,
        ctx: Context[Sessions],
        diagram: str,
        if_revision: int | None,
        make: Callable[[dict[str, dict[str, Any]], edits.Clock], edits.Edit],
        *,
        create: bool = False,
    ) -> EditResult:
        """Compute an edit against the live document and apply it as one transaction.

        The edit is computed in a worker thread (a big one would stall the event
        loop, which on ``/mcp`` serves every room) from a snapshot of the
        elements, and computed again if anything changed them meanwhile
        (:func:`~agents.mirror.consistent_edit`); nothing is awaited between
        the check that nothing changed and writing the edit, so it is computed
        against exactly what it changes. The call returns
        once the server has saved it (:meth:`DiagramClient.confirm`); a refusal
        (read-only token, locked diagram) drops this client, whose document
        still holds the refused edit, so the next call starts from the
        server's state.
        """
        workspace, client = await self.open(ctx, diagram, create=create)
        if client.status != "connected":  # its edit would wait for the reconnection
            raise ToolError(
                f"the connection to {diagram!r} is being re-established: try again in a "
                "moment; nothing changed"
            )
        if if_revision is not None:
            # a sync round trip first: its reply brings whatever the server has that
            # this replica lacks, so the revision compared is the server's own
            try:
                await client.confirm(CONFIRM_TIMEOUT)
            except (DiagramConnectionError, TimeoutError) as error:
                raise ToolError(f"cannot reach {diagram!r} ({error}); nothing changed") from None

        def check(revision: int) -> None:
            if client.meta.get("locked") is True:
                raise ToolError(f"diagram {diagram!r} is locked: unlock it first; nothing changed")
            if if_revision is not None and if_revision != revision:
                raise ToolError(
                    f"diagram {diagram!r} is at revision {revision}, not {if_revision}: "
                    "it changed since you read it; nothing changed (describe it again)"
                )

        mirror = await workspace.mirror(client)
        try:
            edit, _ = await consistent_edit(
                mirror,
                lambda current: make(current, edits.Clock()),
                lambda: revision_of(client.doc),
                check,
            )
        except edits.EditError as error:
            raise ToolError(f"{error}; nothing changed") from None
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise _unreadable(diagram, error) from None
        if client.status != "connected":  # the connection dropped while it was computed
            raise ToolError(
                f"the connection to {diagram!r} is being re-established: try again in a "
                "moment; nothing changed"
            )
        if edit.changed:
            client.permission_denied = None
            with client.doc.transaction(origin=f"agent:{workspace.agent.name}"):
                for element_id, element in edit.changed.items():
                    client.elements[element_id] = element
            # presence: the pointer on what was drawn, which the browsers outline in
            # the agent's colour as its selection
            touched = [i for i in edit.changed if i not in edit.deleted]
            if edit.focus is not None:
                x, y = edit.focus
                client.set_presence(
                    pointer={"x": x, "y": y, "tool": "pointer"}, selected_element_ids=touched
                )
            else:
                client.set_presence(selected_element_ids=touched)
            try:
                await client.confirm(CONFIRM_TIMEOUT)
            except (DiagramConnectionError, TimeoutError) as error:
                workspace.forget(diagram)
                raise ToolError(
                    f"the server did not confirm the edit of {diagram!r} ({error}); it may or may "
                    "not have been applied: describe the diagram to see"
                ) from None
            reason = _refusal(client)
            if reason is not None:
                workspace.forget(diagram)
                raise ToolError(
                    f"the server refused the edit of {diagram!r}: {reason}; nothing changed"
                )
        return EditResult(
            diagram=diagram,
            revision=revision_of(client.doc),
            created=list(edit.created),
            changed=list(edit.changed),
            deleted=list(edit.deleted),
        )

    # -- tools -----------------------------------------------------------------------

    def register(self, server: MCPServer[Sessions]) -> None:
        add = server.add_tool
        add(self.list_diagrams, annotations=READ)
        add(self.describe_diagram, annotations=READ)
        add(self.get_elements, annotations=READ)
        add(self.create_elements, annotations=WRITE)
        add(self.update_elements, annotations=WRITE)
        add(self.delete_elements, annotations=DESTRUCTIVE)
        add(self.group, annotations=WRITE)
        add(self.ungroup, annotations=WRITE)
        add(self.align, annotations=WRITE)
        add(self.distribute, annotations=WRITE)
        add(self.layout, annotations=WRITE)
        add(self.export_diagram, annotations=READ)
        add(self.list_versions, annotations=READ)
        add(self.restore_version, annotations=DESTRUCTIVE)
        add(self.lock, annotations=IDEMPOTENT)
        add(self.unlock, annotations=IDEMPOTENT)
        add(self.websocket_health_check, annotations=OPERATIONS)
        add(self.websocket_get_status, annotations=OPERATIONS)
        add(self.websocket_list_rooms, annotations=OPERATIONS)
        add(self.websocket_get_metrics, annotations=OPERATIONS)

    async def list_diagrams(
        self,
        ctx: Context[Sessions],
        search: Annotated[str, Field(max_length=200, description="words of the title or id")] = "",
        prefix: Annotated[str, Field(max_length=128, description="ids starting with this")] = "",
        limit: Annotated[int, Field(ge=1, le=500)] = 100,
    ) -> DiagramList:
        """The diagrams you may open, last edited first, with who is in each now."""
        params: dict[str, Any] = {"limit": limit}
        if search:
            params["search"] = search
        if prefix:
            params["prefix"] = prefix
        rows = await self.api(ctx, "GET", "/api/diagrams", params=params)
        return DiagramList(
            diagrams=[
                DiagramSummary(
                    id=row["id"],
                    title=row.get("title"),
                    elements=row.get("elements"),
                    last_edit=row.get("last_edit"),
                    people=[p["name"] for p in row.get("people", []) if p.get("name")],
                )
                for row in rows
            ]
        )

    async def describe_diagram(
        self, ctx: Context[Sessions], diagram: DiagramId, area: Area | None = None
    ) -> Description:
        """The diagram as compact text: one line per element (id, type, label, bounding
        box), arrows as `A --label--> B`, frames and groups; only what overlaps `area`
        if given. Its revision goes with it."""
        workspace, client = await self.open(ctx, diagram)
        mirror = await workspace.mirror(client)
        revision = revision_of(client.doc)
        current = mirror.snapshot()  # the text is of this revision
        try:
            text = await anyio.to_thread.run_sync(
                lambda: describe(current, area=area, revision=revision)
            )
        except (KeyError, TypeError, ValueError, AttributeError) as error:
            raise _unreadable(diagram, error) from None
        return Description(diagram=diagram, revision=revision, text=text)

    async def get_elements(
        self, ctx: Context[Sessions], diagram: DiagramId, ids: ElementIds
    ) -> Elements:
        """The full Excalidraw JSON of the elements with these ids."""
        workspace, client = await self.open(ctx, diagram)
        current = (await workspace.mirror(client)).snapshot()
        live = {i: current[i] for i in ids if i in current and not current[i].get("isDeleted")}
        missing = [i for i in ids if i not in live]
        if missing:
            raise ToolError(f"no element {', '.join(map(repr, missing[:20]))} in {diagram!r}")
        return Elements(
            diagram=diagram,
            revision=revision_of(client.doc),
            elements=[copy.deepcopy(live[i]) for i in ids],  # the mirror's are shared
        )

    async def create_elements(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        elements: Annotated[list[ShapeSpec], Field(min_length=1, max_length=MAX_BATCH)],
        if_revision: IfRevision = None,
        create_diagram: Annotated[
            bool, Field(description="start the diagram if it does not exist yet")
        ] = False,
    ) -> EditResult:
        """Add shapes (rectangle, ellipse, diamond), text, lines, arrows and frames in one
        edit. A shape's `label` becomes real bound text, centred and wrapped; an arrow with
        `from`/`to` ids is bound to both shapes. Ids you give can be used by later
        elements of the same call."""
        return await self.write(
            ctx,
            diagram,
            if_revision,
            lambda current, clock: edits.create_elements(current, elements, clock),
            create=create_diagram,
        )

    async def update_elements(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        updates: Annotated[list[ElementUpdate], Field(min_length=1, max_length=MAX_BATCH)],
        if_revision: IfRevision = None,
    ) -> EditResult:
        """Move, resize, restyle or relabel elements; their bound text and bound arrows
        follow."""
        return await self.write(
            ctx,
            diagram,
            if_revision,
            lambda current, clock: edits.update_elements(current, updates, clock),
        )

    async def delete_elements(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        ids: ElementIds,
        if_revision: IfRevision = None,
    ) -> EditResult:
        """Delete elements (as tombstones, so a concurrent edit reconciles); a container's
        bound text goes with it, arrows bound to it are unbound."""
        return await self.write(
            ctx,
            diagram,
            if_revision,
            lambda current, clock: edits.delete_elements(current, ids, clock),
        )

    async def group(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        ids: ElementIds,
        if_revision: IfRevision = None,
    ) -> EditResult:
        """Group elements (with their bound text) so they select and move together."""
        return await self.write(
            ctx, diagram, if_revision, lambda current, clock: edits.group(current, ids, clock)
        )

    async def ungroup(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        ids: ElementIds,
        if_revision: IfRevision = None,
    ) -> EditResult:
        """Take elements out of their outermost group."""
        return await self.write(
            ctx, diagram, if_revision, lambda current, clock: edits.ungroup(current, ids, clock)
        )

    async def align(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        ids: ElementIds,
        edge: Alignment,
        if_revision: IfRevision = None,
    ) -> EditResult:
        """Align elements' edges or centres, as Excalidraw's align actions do."""
        return await self.write(
            ctx, diagram, if_revision, lambda current, clock: edits.align(current, ids, edge, clock)
        )

    async def distribute(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        ids: ElementIds,
        axis: Axis,
        if_revision: IfRevision = None,
    ) -> EditResult:
        """Space elements evenly along an axis."""
        return await self.write(
            ctx,
            diagram,
            if_revision,
            lambda current, clock: edits.distribute(current, ids, axis, clock),
        )

    async def layout(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        nodes: Annotated[list[NodeSpec], Field(min_length=1, max_length=MAX_BATCH)],
        edges: Annotated[list[EdgeSpec], Field(max_length=MAX_BATCH)],
        direction: Annotated[
            Direction, Field(description="which way the layers go: TB (top to bottom) or LR")
        ] = "TB",
        x: Annotated[float, Field(ge=-1e6, le=1e6, description="left of the drawing")] = 0.0,
        y: Annotated[float, Field(ge=-1e6, le=1e6, description="top of the drawing")] = 0.0,
        if_revision: IfRevision = None,
        create_diagram: Annotated[
            bool, Field(description="start the diagram if it does not exist yet")
        ] = False,
    ) -> EditResult:
        """Draw a graph: nodes become labelled shapes, edges bound arrows, placed in a
        readable layered layout."""
        return await self.write(
            ctx,
            diagram,
            if_revision,
            lambda current, clock: edits.layout(
                current, nodes, edges, clock, direction=direction, origin=(x, y)
            ),
            create=create_diagram,
        )

    async def export_diagram(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        format: Annotated[
            Format, Field(description="png (an image you can look at), svg, or excalidraw (JSON)")
        ] = "png",
        scale: Annotated[float, Field(gt=0, le=4)] = 1.0,
        background: Annotated[
            str | None,
            Field(max_length=64, description="a CSS colour, 'transparent', or the diagram's own"),
        ] = None,
    ) -> Annotated[CallToolResult, Exported]:
        """The diagram as a picture drawn on the server (PNG as image content, or SVG), or
        as an .excalidraw file (JSON text): what the people in it see."""
        _, client = await self.open(ctx, diagram)
        revision = revision_of(client.doc)
        state = client.doc.get_update()  # a snapshot: the render runs in a worker thread

        def render() -> Export:
            doc: Doc[Any] = Doc()
            doc.apply_update(state)
            return export_diagram(doc, format, scale=scale, background=background)

        try:
            exported = await anyio.to_thread.run_sync(render)
        except ValueError as error:
            raise ToolError(f"cannot export {diagram!r}: {error}") from None
        data = exported.data
        raw = data if isinstance(data, bytes) else data.encode()
        info = Exported(
            diagram=diagram,
            revision=revision,
            format=exported.format,
            mime_type=exported.mime_type,
            width=exported.width,
            height=exported.height,
            size=len(raw),
        )
        content: list[ContentBlock] = []
        if isinstance(data, bytes):
            content.append(
                ImageContent(
                    type="image", data=base64.b64encode(data).decode(), mime_type=exported.mime_type
                )
            )
        else:
            content.append(TextContent(type="text", text=data))
        content.append(TextContent(type="text", text=info.model_dump_json()))
        return CallToolResult(content=content, structured_content=info.model_dump(mode="json"))

    async def list_versions(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        limit: Annotated[int, Field(ge=1, le=200)] = 20,
        before: Annotated[int | None, Field(ge=1, description="page on: a next_before")] = None,
    ) -> Versions:
        """The diagram's saved versions, newest first, with who made each and what it
        changed."""
        params: dict[str, Any] = {"limit": limit}
        if before is not None:
            params["before"] = before
        page = await self.api(ctx, "GET", f"/api/diagrams/{diagram}/history", params=params)
        return Versions.model_validate(page)

    async def restore_version(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        at: Annotated[int | str, Field(description="a version's seq, or an ISO-8601 time")],
    ) -> Restored:
        """Bring the diagram back to a version, as a new edit on top of the history
        (nothing is rewritten, and the restore can itself be undone)."""
        body = await self.api(ctx, "POST", f"/api/diagrams/{diagram}/restore", json={"at": at})
        return Restored.model_validate(body)

    async def lock(
        self,
        ctx: Context[Sessions],
        diagram: DiagramId,
        reason: Annotated[str, Field(max_length=500)] = "",
    ) -> LockState:
        """Lock the diagram: nobody's edits are taken until it is unlocked."""
        name = self.workspace(ctx).agent.name
        body = {"locked": True, "user_id": name, "reason": reason}
        return LockState.model_validate(
            await self.api(ctx, "POST", f"/api/diagrams/{diagram}/lock", json=body)
        )

    async def unlock(self, ctx: Context[Sessions], diagram: DiagramId) -> LockState:
        """Unlock the diagram: edits are taken again."""
        name = self.workspace(ctx).agent.name
        body = {"locked": False, "user_id": name}
        return LockState.model_validate(
            await self.api(ctx, "POST", f"/api/diagrams/{diagram}/lock", json=body)
        )

    # -- operations --------------------------------------------------------------------

    def servers(self, ctx: Context[Sessions]) -> tuple[Workspace, list[operations.Server]]:
        """The collab server the agent works with, and the relays it was told about."""
        workspace = self.workspace(ctx)
        agent = workspace.agent
        try:
            found = operations.servers_for(agent.server, self.options.relays, token=agent.token)
        except ValueError as error:
            raise ToolError(f"bad server URL: {error}") from None
        return workspace, found

    async def websocket_health_check(self, ctx: Context[Sessions]) -> operations.HealthReport:
        """Whether the collab server and each relay are live and ready (their /health/live
        and /health/ready, with latency)."""
        workspace, servers = self.servers(ctx)
        return await operations.health_check(workspace.sessions.api.http, servers)

    async def websocket_get_status(self, ctx: Context[Sessions]) -> operations.StatusReport:
        """Each server's state: connections, rooms or channels, uptime, storage and Redis."""
        workspace, servers = self.servers(ctx)
        return await operations.get_status(workspace.sessions.api.http, servers)

    async def websocket_list_rooms(
        self, ctx: Context[Sessions], limit: Annotated[int, Field(ge=1, le=10_000)] = 1000
    ) -> operations.RoomsReport:
        """The collab server's loaded rooms (most connections first) and each relay's
        busiest channels."""
        workspace, servers = self.servers(ctx)
        return await operations.list_rooms(workspace.sessions.api.http, servers, limit=limit)

    async def websocket_get_metrics(
        self,
        ctx: Context[Sessions],
        prefix: Annotated[
            str | None,
            Field(
                max_length=200,
                description="only series whose name starts with this (default: websocket_ "
                "and inkwire_)",
            ),
        ] = None,
        buckets: Annotated[bool, Field(description="include histogram buckets")] = False,
    ) -> operations.MetricsReport:
        """Each server's Prometheus /metrics, parsed into samples."""
        workspace, servers = self.servers(ctx)
        return await operations.get_metrics(
            workspace.sessions.api.http, servers, prefix=prefix, buckets=buckets
        )


def _unreadable(diagram: str, error: Exception) -> ToolError:
    """A peer wrote an element the element model cannot read (peers are not trusted)."""
    log.warning("an element of %s is unreadable: %r", diagram, error)
    return ToolError(
        f"diagram {diagram!r} holds an element that is not valid Excalidraw ({error!r}); "
        "nothing changed: get_elements shows them, delete_elements or update_elements "
        "can replace it"
    )


def _refusal(client: DiagramClient) -> str | None:
    """Why the server refused our edits, if it did (read after the round trip)."""
    return client.permission_denied


def _client_name(ctx: Context[Sessions]) -> str | None:
    params = ctx.session.client_params
    info = params.client_info if params is not None else None
    name = info.name if info is not None else None
    return name[:64] if name else None


def _request_token(request: Any) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return str(value.strip())
    token = request.query_params.get("token")
    return str(token) if token else None


def _own_address(scope: dict[str, Any]) -> str | None:
    """The URL this request reached the server at (its listening socket's address)."""
    server = scope.get("server")
    if not server:
        return None
    host, port = server[0], server[1]
    if ":" in host:
        host = f"[{host}]"
    scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
    return f"{scheme}://{host}:{port}"
