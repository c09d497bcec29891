"""The REST API under ``/api/``: list, export, history, restore, import, files, lock, share,
and the landing page's cards: thumbnail, rename, delete and undelete (:mod:`storage.cards`).

The operations themselves live in :mod:`storage.replay` (shared with the
CLI); this module routes, reads bodies with a cap, and applies edits
through the live room, so they are saved and reach every connected client
at once, exactly like a browser's edit. Database reads run in a worker
thread. Errors are JSON: ``{"error": "..."}``. A locked diagram answers its
edits (restore, import, file upload) with 423 until it is unlocked.

With auth on (:mod:`collab.auth`), every request needs a token
(``Authorization: Bearer`` or ``?token=``; 401 without a valid one): reading
a diagram needs one covering ``diagram:{id}``, editing it (POST, PUT) one
with ``publish`` as well (403 otherwise), and the list holds only the
diagrams the token covers. Sharing links (``POST .../share``) are
:mod:`collab.share`'s.
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import anyio.to_thread

from collab.auth import covers_every_diagram, diagram_channel
from collab.presence import color_of, name_of, present
from collab.rooms import ServerFull
from collab.share import ShareRefused, ShareRequest, mint_link
from net.asgi import Receive, Scope, Send, respond, respond_json
from net.tokens import OPEN, AuthError, Grant, token_from_scope
from storage import cards, replay
from storage.excalidraw import InvalidDiagram, forward_edit, to_excalidraw
from storage.files import FileRejected, file_metadata, save_file
from storage.memory import MemoryStore
from storage.names import DIAGRAM_NAME, DIAGRAM_NAME_RULE
from storage.store import DiagramArchive

if TYPE_CHECKING:
    from collab.app import CollabApp
    from collab.room import Room

MAX_JSON_BODY = 32 * 1024 * 1024  # an .excalidraw file with inlined images
FILE_ID = DIAGRAM_NAME  # Excalidraw file ids are hex/base64url digests


# Uploaded images are served from our own origin: even opened directly, an SVG
# runs no script and loads nothing (defence in depth behind storage.files'
# refusal of active SVG), and no browser sniffs a PNG into HTML.
FILE_HEADERS = [
    (b"content-security-policy", b"default-src 'none'; style-src 'unsafe-inline'; sandbox"),
    (b"x-content-type-options", b"nosniff"),
]


class ApiError(Exception):
    def __init__(
        self, status: int, message: str, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.headers = headers


async def handle(app: CollabApp, scope: Scope, receive: Receive, send: Send) -> None:
    """Answer one ``/api/...`` request."""
    try:
        await _route(app, scope, receive, send)
    except ApiError as exc:
        body = json.dumps({"error": str(exc)}).encode()
        await respond(send, exc.status, body, "application/json", exc.headers)
    except replay.NotFound as exc:
        await respond_json(send, 404, {"error": str(exc)})
    except (replay.BadRequest, InvalidDiagram) as exc:
        await respond_json(send, 400, {"error": str(exc)})
    except FileRejected as exc:
        await respond_json(send, exc.status, {"error": str(exc)})
    except ShareRefused as exc:
        await respond_json(send, exc.status, {"error": str(exc)})
    except ServerFull:
        await respond_json(send, 503, {"error": "too many rooms loaded"})


async def _route(app: CollabApp, scope: Scope, receive: Receive, send: Send) -> None:
    method = scope["method"]
    parts = scope["path"].split("/")[2:]  # "", "api", ...
    query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode()).items()}
    grant = _grant(app, scope)
    if parts == ["diagrams"]:
        _allow(method, "GET")
        limit = _int(query.get("limit"), "limit", replay.LIST_PAGE)
        trash = query.get("trash", "0")
        if trash not in ("0", "1"):
            raise ApiError(400, "trash must be 0 (the diagrams) or 1 (the deleted ones)")
        search = query.get("search", "")
        if len(search) > cards.MAX_TITLE:
            raise ApiError(400, f"search must be at most {cards.MAX_TITLE} characters")
        listed = await _list(app, limit, query.get("prefix", ""), grant, search, trash == "1")
        await respond_json(send, 200, listed)
        return
    if len(parts) < 2 or parts[0] != "diagrams":
        raise ApiError(404, "no such route")
    diagram = parts[1]
    if not DIAGRAM_NAME.fullmatch(diagram):
        raise ApiError(400, f"diagram name must be {DIAGRAM_NAME_RULE}")
    _permit(grant, diagram, edit=method not in ("GET", "HEAD"))
    rest = parts[2:]
    if rest == [] and method == "DELETE":
        await respond_json(send, 200, await _mark_deleted(app, diagram, time.time()))
    elif rest == ["undelete"]:
        _allow(method, "POST")
        await respond_json(send, 200, await _mark_deleted(app, diagram, None))
    elif rest == ["rename"]:
        _allow(method, "POST")
        body = _json(await read_body(receive, MAX_JSON_BODY))
        await respond_json(send, 200, await _rename(app, diagram, body))
    elif rest == ["thumbnail"]:
        _allow(method, "GET")
        found = await anyio.to_thread.run_sync(_cards(app).thumbnail, diagram)
        if found is None:
            raise ApiError(404, f"no thumbnail of {diagram!r} yet (one is made at a checkpoint)")
        headers = [*FILE_HEADERS, (b"cache-control", b"no-cache")]
        await respond(send, 200, found[1].encode(), "image/svg+xml", headers)
    elif rest == []:
        _allow(method, "GET")
        await respond_json(send, 200, await _export(app, diagram, query.get("at")))
    elif rest == ["history"]:
        _allow(method, "GET")
        store = _archive(app)
        limit = _int(query.get("limit"), "limit", replay.HISTORY_PAGE)
        before = _int(query.get("before"), "before", None)
        page = await anyio.to_thread.run_sync(
            lambda: replay.history(store, diagram, limit=limit, before=before)
        )
        await respond_json(send, 200, page)
    elif rest == ["lock"]:
        _allow(method, "POST")
        body = _json(await read_body(receive, MAX_JSON_BODY))
        if not isinstance(body, dict) or not isinstance(body.get("locked"), bool):
            raise ApiError(400, 'body must be {"locked": true or false, "user_id"?, "reason"?}')
        await respond_json(send, 200, await _lock(app, diagram, body))
    elif rest == ["share"]:
        _allow(method, "POST")
        request = ShareRequest.parse(_json(await read_body(receive, MAX_JSON_BODY)))
        if app.auth is None:
            raise ShareRefused(
                409, "this server runs without auth: the plain link lets anyone edit"
            )
        await respond_json(send, 200, mint_link(app.auth.secret, grant, diagram, request))
    elif rest == ["restore"]:
        _allow(method, "POST")
        body = _json(await read_body(receive, MAX_JSON_BODY))
        at = body.get("at") if isinstance(body, dict) else None
        if not isinstance(at, str | int) or isinstance(at, bool):
            raise ApiError(400, 'body must be {"at": SEQ or ISO-8601 time}')
        await respond_json(send, 200, await _restore(app, diagram, at))
    elif rest == ["import"]:
        _allow(method, "POST")
        await respond_json(send, 200, await _import(app, diagram, await read_body(receive)))
    elif len(rest) == 2 and rest[0] == "files":
        if not FILE_ID.fullmatch(rest[1]):
            raise ApiError(400, "file id must be 1-128 characters of [A-Za-z0-9._-]")
        _allow(method, "GET", "PUT")
        if method == "PUT":
            await _put_file(app, diagram, rest[1], scope, receive, send)
        else:
            await _get_file(app, diagram, rest[1], send)
    else:
        raise ApiError(404, "no such route")


# --- operations -----------------------------------------------------------------


async def _list(
    app: CollabApp, limit: int, prefix: str, grant: Grant, search: str = "", trash: bool = False
) -> list[dict[str, Any]]:
    def covered(diagram: str) -> bool:
        return grant.allows(diagram_channel(diagram))

    include = None if covers_every_diagram(grant) else covered
    if isinstance(app.store, DiagramArchive) and isinstance(app.store, cards.CardStore):
        card_store = app.store
        if trash:
            await _purge_expired(app, card_store)

        def listing() -> list[dict[str, Any]]:
            shown = cards.matcher(card_store, search, trash)
            both = shown if include is None else (lambda d: shown(d) and include(d))
            rows = replay.list_diagrams(card_store, limit=limit, prefix=prefix, include=both)
            return cards.decorate(card_store, rows)

        rows = await anyio.to_thread.run_sync(listing)
        for row in rows:
            row["people"] = _people(app, row["id"])
        return rows
    if trash:  # a store without cards deletes nothing
        return []
    if search:  # by id: a store without cards has no titles
        scoped = include

        def found(diagram: str) -> bool:
            in_scope = scoped is None or scoped(diagram)
            return in_scope and search.casefold() in diagram.casefold()

        include = found
    if isinstance(app.store, DiagramArchive):
        store = app.store
        return await anyio.to_thread.run_sync(
            lambda: replay.list_diagrams(store, limit=limit, prefix=prefix, include=include)
        )
    limit = replay.list_limit(limit, prefix)
    result: list[dict[str, Any]] = []
    if isinstance(app.store, MemoryStore):  # no edit times kept: by name, counted each time
        names = [
            name
            for name in app.store.diagrams()
            if name.startswith(prefix) and (include is None or include(name))
        ]
        for name in names[:limit]:
            state = await app.store.load(name) or b""
            count = len(to_excalidraw(state)["elements"])
            result.append({"id": name, "elements": count, "last_edit": None, "size": len(state)})
    return result


def _people(app: CollabApp, diagram: str) -> list[dict[str, str | None]]:
    """Who is in the diagram now: the named awareness states of its live room."""
    room = app.rooms.rooms.get(diagram)
    if room is None:
        return []
    states = present(room.awareness).values()
    return [{"name": name_of(s), "color": color_of(s)} for s in states if name_of(s)]


async def _purge_expired(app: CollabApp, store: cards.CardStore) -> None:
    """Forget the diagrams in the trash for longer than TRASH_DAYS (not those open now)."""
    for diagram in await anyio.to_thread.run_sync(cards.expired, store):
        if diagram not in app.rooms.rooms:
            await anyio.to_thread.run_sync(store.purge, diagram)


async def _mark_deleted(app: CollabApp, diagram: str, when: float | None) -> dict[str, Any]:
    store = _cards(app)
    if not await anyio.to_thread.run_sync(store.set_deleted, diagram, when):
        raise replay.NotFound(f"no diagram {diagram!r}")
    return {"diagram": diagram, "deleted": when, "kept_days": cards.TRASH_DAYS}


async def _rename(app: CollabApp, diagram: str, body: Any) -> dict[str, Any]:
    title = body.get("title") if isinstance(body, dict) else None
    if not isinstance(title, str) or set(body) != {"title"}:
        raise ApiError(400, 'body must be {"title": "..."} ("" shows the id again)')
    title = " ".join(title.split())  # no control characters, no runs of spaces
    if len(title) > cards.MAX_TITLE:
        raise ApiError(400, f"a title is at most {cards.MAX_TITLE} characters")
    store = _cards(app)
    if not await anyio.to_thread.run_sync(store.set_title, diagram, title or None):
        raise replay.NotFound(f"no diagram {diagram!r}")
    return {"diagram": diagram, "title": title or None}


async def _export(app: CollabApp, diagram: str, at: str | None) -> dict[str, Any]:
    store = app.store if isinstance(app.store, DiagramArchive) else None
    room = app.rooms.rooms.get(diagram)
    if at is None and room is not None and not room.closing:
        state = room.doc.get_update()
    elif store is not None:
        return await anyio.to_thread.run_sync(replay.export, store, diagram, at)
    elif at is not None:
        raise ApiError(501, "history needs the SQLite store (inkwire serve --db PATH)")
    else:
        loaded = await app.store.load(diagram)
        if loaded is None:
            raise replay.NotFound(f"no diagram {diagram!r}")
        state = loaded
    if store is None:
        return to_excalidraw(state)
    return await anyio.to_thread.run_sync(replay.export_state, store, diagram, state)


async def _lock(app: CollabApp, diagram: str, body: dict[str, Any]) -> dict[str, Any]:
    """Lock or unlock: a server edit of ``meta["locked"]``, saved and seen by every client."""
    locked: bool = body["locked"]
    user = body.get("user_id") if isinstance(body.get("user_id"), str) else "api"
    reason = body.get("reason") if isinstance(body.get("reason"), str) else ""
    room = await app.rooms.acquire(diagram)
    if room.locked != locked:
        update = replay.set_locked_update(room.doc.get_update(), locked)
        await room.apply_local(update, origin="lock" if locked else "unlock")
        if locked:
            event = {"diagram_id": diagram, "user_id": user, "reason": reason}
            app.events.publish("diagram.locked", event)
    return {"diagram": diagram, "locked": room.locked}


async def _unlocked(app: CollabApp, diagram: str) -> Room:
    """The live room of a diagram that takes edits; 423 Locked when it does not.

    Callers check again (:func:`_still_unlocked`) just before applying: a lock
    may land while they await.
    """
    return _still_unlocked(await app.rooms.acquire(diagram))


def _still_unlocked(room: Room) -> Room:
    if room.locked:
        raise ApiError(423, f"diagram {room.name!r} is locked: unlock it to edit")
    return room


async def _restore(app: CollabApp, diagram: str, at: str | int) -> dict[str, Any]:
    store = _archive(app)
    await _unlocked(app, diagram)
    seq = await anyio.to_thread.run_sync(replay.resolve_at, store, diagram, at)
    old = await anyio.to_thread.run_sync(store.state_at, diagram, seq)
    room = _still_unlocked(await app.rooms.acquire(diagram))
    # No await between reading the live doc and applying: the edit is against it.
    update = replay.restore_update(old, room.doc.get_update())
    await room.apply_local(update, origin="restore")
    return {"diagram": diagram, "restored": seq, "changed": update != replay.EMPTY}


async def _import(app: CollabApp, diagram: str, raw: bytes) -> dict[str, Any]:
    scene, blobs = replay.parse_import(raw)  # InvalidDiagram -> 400, nothing changed
    await _unlocked(app, diagram)
    if blobs:
        store = _archive(app)
        for file_id, (mime, data) in blobs.items():
            info = scene.files[file_id]
            await anyio.to_thread.run_sync(save_file, store, diagram, file_id, mime, data, info)
    room = _still_unlocked(await app.rooms.acquire(diagram))
    update = forward_edit(room.doc.get_update(), scene)
    await room.apply_local(update, origin="import")
    return {"diagram": diagram, "elements": len(scene.elements), "files": len(blobs)}


async def _put_file(
    app: CollabApp, diagram: str, file_id: str, scope: Scope, receive: Receive, send: Send
) -> None:
    store = _archive(app)
    await _unlocked(app, diagram)
    limit = app.config.max_file_bytes
    mime = _header(scope, b"content-type")
    length = _header(scope, b"content-length")
    if length.isdigit() and int(length) > limit:
        raise FileRejected(413, f"file is {length} bytes; the limit is {limit}")
    data = await read_body(receive, limit)
    info = file_metadata(mime, data, max_bytes=limit)  # 413 / 415 before anything is stored
    await anyio.to_thread.run_sync(save_file, store, diagram, file_id, info["mimeType"], data, info)
    room = _still_unlocked(await app.rooms.acquire(diagram))
    await room.apply_local(
        replay.set_file_update(room.doc.get_update(), file_id, info), origin="file upload"
    )
    await respond_json(send, 201, {"id": file_id, **info})


async def _get_file(app: CollabApp, diagram: str, file_id: str, send: Send) -> None:
    store = _archive(app)
    found = await anyio.to_thread.run_sync(store.get_file, diagram, file_id)
    if found is None:
        raise ApiError(404, f"no file {file_id!r} in diagram {diagram!r}")
    mime, data = found
    await respond(send, 200, data, mime, FILE_HEADERS)


# --- helpers ----------------------------------------------------------------------


def _grant(app: CollabApp, scope: Scope) -> Grant:
    """What the request's token allows (everything when auth is off); 401 without one."""
    if app.auth is None:
        return OPEN
    token = token_from_scope(scope)
    try:
        return app.auth.check(token)
    except AuthError:
        message = (
            "a token is required (Authorization: Bearer, or ?token=)"
            if token is None
            else "the token is invalid or expired"
        )
        raise ApiError(401, message, [(b"www-authenticate", b'Bearer realm="inkwire"')]) from None


def _permit(grant: Grant, diagram: str, *, edit: bool) -> None:
    """403 unless the token covers the diagram, and for an edit, may publish."""
    channel = diagram_channel(diagram)
    if not grant.allows(channel):
        raise ApiError(403, f"the token does not cover {channel}")
    if edit and not grant.publish:
        raise ApiError(403, f"the token is read-only (no publish): it may not edit {diagram!r}")


async def read_body(receive: Receive, limit: int = MAX_JSON_BODY) -> bytes:
    """The request body, or 413 as soon as it passes ``limit`` (the rest is not read)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "client disconnected")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise FileRejected(413, f"request body over the limit of {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _archive(app: CollabApp) -> DiagramArchive:
    """The store, when it keeps history (and files); 501 when it does not."""
    if not isinstance(app.store, DiagramArchive):
        raise ApiError(501, "this needs the SQLite store (inkwire serve --db PATH)")
    return app.store


def _cards(app: CollabApp) -> cards.CardStore:
    """The store, when it keeps cards (titles, the trash, thumbnails); 501 when it does not."""
    if not isinstance(app.store, cards.CardStore):
        raise ApiError(501, "this needs a database (inkwire serve --db PATH or postgresql://...)")
    return app.store


def _allow(method: str, *allowed: str) -> None:
    if method not in allowed and not (method == "HEAD" and "GET" in allowed):
        raise ApiError(405, f"method {method} not allowed; use {' or '.join(allowed)}")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"body is not JSON: {exc}") from None


def _int(text: str | None, name: str, default: int | None) -> Any:
    if text is None:
        return default
    if not text.isdigit():
        raise ApiError(400, f"{name} must be a non-negative integer")
    return int(text)


def _header(scope: Scope, name: bytes) -> str:
    for key, value in scope.get("headers", []):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return ""
