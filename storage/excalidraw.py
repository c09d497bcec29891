"""The ``.excalidraw`` file format on one side, the diagram's Yjs document on the other.

Pure functions, no I/O: the REST API, the CLI and the tests all convert
through here, so an export from the server and one from the database file
are the same bytes.

Document model: ``elements`` is a ``Y.Map`` of element id to the whole
element dict (Excalidraw treats an element as one unit, reconciled by its
version; keyed by id, no element can exist twice; a deleted one stays as a
tombstone, ``isDeleted``), ``files`` a ``Y.Map`` of file id to metadata
``{mimeType, created, size, sha256}`` (never the bytes, which the store
keeps), ``meta`` a ``Y.Map`` whose appState keys (``viewBackgroundColor``,
``gridSize``...) are stored flat, one key each, and the lock (``locked``).
"""

from __future__ import annotations

import base64
import json
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pycrdt import Doc, Map

#: The appState keys a diagram shares (in ``meta``); the rest is per-user view state.
APPSTATE_KEYS = ("viewBackgroundColor", "gridSize", "gridStep", "gridModeEnabled")
#: Fields Excalidraw's reconciliation uses; not part of what an element *is*.
BOOKKEEPING = frozenset({"version", "versionNonce", "updated"})
_DIGITS = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"

FileLookup = Callable[[str], "tuple[str, bytes] | None"]  # file id -> (mime, bytes)


class InvalidDiagram(ValueError):
    """The input is not a usable ``.excalidraw`` file; the message says why."""


@dataclass
class Scene:
    """A diagram's shareable content: what an import or a restore makes current."""

    elements: dict[str, dict[str, Any]]
    meta: dict[str, Any] = field(default_factory=dict)
    files: dict[str, dict[str, Any]] = field(default_factory=dict)


def load_doc(state: bytes | None) -> Doc[Any]:
    doc: Doc[Any] = Doc()
    if state:
        doc.apply_update(state)
    return doc


def scene_of(doc: Doc[Any]) -> Scene:
    """Everything in the document, tombstones included (a restore needs them)."""
    elements = doc.get("elements", type=Map)
    files = doc.get("files", type=Map)
    meta = doc.get("meta", type=Map)
    return Scene(
        elements={k: dict(v) for k, v in elements.items() if isinstance(v, dict)},
        meta={k: plain(v) for k, v in meta.items()},
        files={k: dict(v) for k, v in files.items() if isinstance(v, dict)},
    )


def plain(value: Any) -> Any:
    """JSON as Excalidraw writes it: Yjs numbers come back as floats, 1.0 -> 1."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def z_order(elements: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Ids bottom to top: by the fractional ``index`` string, ties broken by id."""

    def key(eid: str) -> tuple[str, str]:
        index = elements[eid].get("index")
        return (index if isinstance(index, str) else "", eid)

    return sorted(elements, key=key)


def live(elements: Mapping[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in elements.items() if not v.get("isDeleted")}


def live_count(doc: Doc[Any]) -> int:
    """How many elements the document shows: ``len(live(scene_of(doc).elements))``."""
    return sum(
        1
        for value in doc.get("elements", type=Map).values()
        if isinstance(value, dict) and not value.get("isDeleted")
    )


def to_excalidraw(state: bytes | None, file_lookup: FileLookup | None = None) -> dict[str, Any]:
    """A ``.excalidraw`` file of the state: live elements in z-order, files inlined.

    Like Excalidraw's own export, ``files`` holds the images that live
    elements use, as data URLs built from the stored bytes.
    """
    scene = scene_of(load_doc(state))
    elements = live(scene.elements)
    ordered = [plain(elements[eid]) for eid in z_order(elements)]
    files: dict[str, Any] = {}
    used = {e.get("fileId") for e in ordered if isinstance(e.get("fileId"), str)}
    for file_id in sorted(fid for fid in used if isinstance(fid, str)):
        info = scene.files.get(file_id)
        blob = file_lookup(file_id) if file_lookup is not None else None
        if blob is None:
            continue
        mime, data = blob
        files[file_id] = {
            "id": file_id,
            "mimeType": mime,
            "dataURL": f"data:{mime};base64,{base64.b64encode(data).decode()}",
            "created": plain((info or {}).get("created", 0)),
        }
    app_state = {k: scene.meta[k] for k in APPSTATE_KEYS if k in scene.meta}
    return {
        "type": "excalidraw",
        "version": 2,
        "source": "inkwire",
        "elements": ordered,
        "appState": app_state,
        "files": files,
    }


def parse_excalidraw(raw: bytes | str | Any) -> tuple[Scene, dict[str, tuple[str, bytes]]]:
    """Validate an ``.excalidraw`` file: the scene to import, and the files' bytes.

    Raises :class:`InvalidDiagram` naming the first problem, before anything
    is changed. Elements without a fractional ``index`` (older files) get
    indices in array order, so the z-order of the file is kept.
    """
    data = raw
    if isinstance(raw, bytes | str):
        try:
            data = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidDiagram(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidDiagram("not an .excalidraw file: the top level must be an object")
    if data.get("type") != "excalidraw":
        raise InvalidDiagram(
            f"not an .excalidraw file: type is {data.get('type')!r}, expected 'excalidraw'"
        )
    items = data.get("elements")
    if not isinstance(items, list):
        raise InvalidDiagram("'elements' must be a list")
    elements: dict[str, dict[str, Any]] = {}
    for n, item in enumerate(items):
        if not isinstance(item, dict):
            raise InvalidDiagram(f"elements[{n}] is not an object")
        for name in ("id", "type"):
            if not isinstance(item.get(name), str) or not item[name]:
                raise InvalidDiagram(f"elements[{n}] has no string {name!r}")
        if item["id"] in elements:
            raise InvalidDiagram(f"elements[{n}]: duplicate id {item['id']!r}")
        elements[item["id"]] = dict(item)
    if any(not isinstance(e.get("index"), str) for e in elements.values()):
        for element, index in zip(elements.values(), index_keys(len(elements)), strict=True):
            element["index"] = index
    app_state = data.get("appState") or {}
    if not isinstance(app_state, dict):
        raise InvalidDiagram("'appState' must be an object")
    meta = {k: app_state[k] for k in APPSTATE_KEYS if k in app_state}
    files, blobs = _parse_files(data.get("files") or {})
    return Scene(elements, meta, files), blobs


def _parse_files(
    files: Any,
) -> tuple[dict[str, dict[str, Any]], dict[str, tuple[str, bytes]]]:
    from storage.files import file_metadata  # the type and size rules live there

    if not isinstance(files, dict):
        raise InvalidDiagram("'files' must be an object")
    meta: dict[str, dict[str, Any]] = {}
    blobs: dict[str, tuple[str, bytes]] = {}
    for file_id, entry in files.items():
        url = entry.get("dataURL") if isinstance(entry, dict) else None
        if not isinstance(url, str) or not url.startswith("data:") or ";base64," not in url:
            raise InvalidDiagram(f"files[{file_id!r}] has no base64 dataURL")
        head, _, body = url[5:].partition(";base64,")
        try:
            data = base64.b64decode(body, validate=True)
        except ValueError:
            raise InvalidDiagram(f"files[{file_id!r}]: dataURL is not valid base64") from None
        try:
            info = file_metadata(head, data, created=entry.get("created"))
        except ValueError as exc:
            raise InvalidDiagram(f"files[{file_id!r}]: {exc}") from None
        meta[file_id] = info
        blobs[file_id] = (head, data)
    return meta, blobs


def index_keys(n: int) -> list[str]:
    """``n`` increasing fractional indices Excalidraw accepts: a0..az, b00..bzz, ..."""
    keys: list[str] = []
    width = 1
    while len(keys) < n:
        head = chr(ord("a") + width - 1)
        for i in range(min(62**width, n - len(keys))):
            digits = ""
            for _ in range(width):
                i, d = divmod(i, 62)
                digits = _DIGITS[d] + digits
            keys.append(head + digits)
        width += 1
    return keys


def forward_edit(current: bytes | None, target: Scene) -> bytes:
    """The Yjs update that makes the current document show ``target``, as a new edit.

    Nothing is deleted from the CRDT and nothing goes back in time: every
    element whose content differs is written again with a version above the
    current one (so Excalidraw's reconciliation takes it), and live elements
    the target does not have become tombstones. History keeps everything
    before the edit. Returns an empty update (``b"\\x00\\x00"``) when the
    document already shows the target.
    """
    doc = load_doc(current)
    now = scene_of(doc)
    before = doc.get_state()
    elements = doc.get("elements", type=Map)
    stamp = int(time.time() * 1000)
    with doc.transaction():
        for eid, want in target.elements.items():
            have = now.elements.get(eid)
            if have is not None and _content(have) == _content(want):
                continue
            version = max(_version(want), _version(have) + 1 if have else 0)
            elements[eid] = {
                **want,
                "version": version,
                "versionNonce": random.randrange(2**31),
                "updated": stamp,
            }
        for eid, have in now.elements.items():
            if eid not in target.elements and not have.get("isDeleted"):
                elements[eid] = {
                    **have,
                    "isDeleted": True,
                    "version": _version(have) + 1,
                    "versionNonce": random.randrange(2**31),
                    "updated": stamp,
                }
        meta = doc.get("meta", type=Map)
        for key, value in target.meta.items():
            if plain(now.meta.get(key)) != plain(value):
                meta[key] = value
        files = doc.get("files", type=Map)
        for file_id, info in target.files.items():
            if plain(now.files.get(file_id)) != plain(info):
                files[file_id] = info
    return doc.get_update(before)


def stale_tombstones(doc: Doc[Any], deleted_before_ms: float) -> list[str]:
    """Ids of the tombstones deleted before the cutoff: what a purge removes.

    A tombstone (``isDeleted``) only matters while a peer may still hold an
    edit of that element made before the delete: reconciliation needs its
    version to let the delete win. Past a retention window (Excalidraw's own
    app uses 24 hours) it is dead weight in every sync and every load, so its
    key is deleted. A peer back with an older copy sees the key go; one that
    edits the element afterwards brings it back as a new, live element.
    Tombstones without a numeric ``updated`` are kept: their age is unknown.
    History keeps them either way (a restore of an older version brings them
    back).
    """
    return [
        eid
        for eid, element in doc.get("elements", type=Map).items()
        if isinstance(element, dict)
        and element.get("isDeleted") is True
        and isinstance(element.get("updated"), int | float)
        and not isinstance(element.get("updated"), bool)
        and element["updated"] < deleted_before_ms
    ]


def purge_tombstones(current: bytes | None, deleted_before_ms: float) -> tuple[bytes, int]:
    """The update removing :func:`stale_tombstones`, and how many it removes.

    Returns the empty update when there is nothing to purge.
    """
    doc = load_doc(current)
    old = stale_tombstones(doc, deleted_before_ms)
    elements = doc.get("elements", type=Map)
    before = doc.get_state()
    with doc.transaction():
        for eid in old:
            del elements[eid]
    return doc.get_update(before), len(old)


def _content(element: Mapping[str, Any]) -> Any:
    return plain({k: v for k, v in element.items() if k not in BOOKKEEPING})


def _version(element: Mapping[str, Any] | None) -> int:
    value = (element or {}).get("version", 0)
    return int(value) if isinstance(value, int | float) else 0
