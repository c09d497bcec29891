"""``export_diagram``: a diagram as a ``.excalidraw`` file, an SVG or a PNG, drawn on the server.

What the MCP tool returns: the JSON text of the same exporter the REST API
uses (:func:`storage.excalidraw.to_excalidraw`: live elements in z-order,
the shared appState, images inlined when their bytes are at hand), the SVG
of :func:`storage.render.render_svg`, or that SVG rasterised by resvg
(:func:`storage.raster.render_png`), for an MCP image content. No browser
is involved.

The diagram may be given as the live pycrdt document (an agent's
:class:`clients.DiagramClient` ``.doc``), its state as Yjs update bytes, a
:class:`storage.excalidraw.Scene`, a parsed ``.excalidraw`` dict, or a list
of element dicts. Rendering is CPU work (a large PNG takes seconds): async
code calls :func:`export_diagram_in_thread`, which copies a live document's
state on the event loop, where it is edited, and renders in a worker thread.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, get_args

import anyio.to_thread
from pycrdt import Doc, Map

from storage.excalidraw import (
    FileLookup,
    Scene,
    index_keys,
    live,
    load_doc,
    parse_excalidraw,
    scene_of,
    to_excalidraw,
    z_order,
)
from storage.raster import png_size, render_png, svg_size
from storage.render import render_svg

Format = Literal["excalidraw", "svg", "png"]
FORMATS: tuple[str, ...] = get_args(Format)
MIME_TYPES = {"excalidraw": "application/json", "svg": "image/svg+xml", "png": "image/png"}
Diagram = Doc[Any] | bytes | Scene | Mapping[str, Any] | Iterable[Mapping[str, Any]]


@dataclass(frozen=True)
class Export:
    """One export: its bytes or text, and what an MCP content block needs to carry it."""

    format: Format
    mime_type: str
    data: str | bytes  # JSON or SVG text; PNG bytes
    width: int | None = None  # pixels (SVG: CSS pixels), None for .excalidraw
    height: int | None = None


def export_diagram(
    diagram: Diagram,
    format: Format = "excalidraw",
    *,
    scale: float = 1.0,
    padding: float = 10.0,
    background: str | None = None,
    file_lookup: FileLookup | None = None,
) -> Export:
    """``diagram`` as ``format``.

    ``scale`` multiplies the picture's size (SVG and PNG; a PNG is shrunk to
    stay within :data:`storage.raster.MAX_PIXELS`); ``background`` overrides
    the diagram's ``viewBackgroundColor`` (``"transparent"`` for none);
    ``file_lookup`` gives images' bytes for the ``.excalidraw`` export.
    ValueError for an unknown format or a diagram that is none of the kinds
    above (an invalid ``.excalidraw`` dict says why).
    """
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, not {format!r}")
    doc, lookup = _as_doc(diagram)
    lookup = file_lookup or lookup
    if format == "excalidraw":
        exported = to_excalidraw(doc.get_update(), lookup)
        text = json.dumps(exported, ensure_ascii=False, separators=(",", ":"))
        return Export("excalidraw", MIME_TYPES["excalidraw"], text)
    scene = scene_of(doc)
    elements = live(scene.elements)
    chosen = background if background is not None else scene.meta.get("viewBackgroundColor")
    svg = render_svg(
        [elements[eid] for eid in z_order(elements)],
        background=chosen if isinstance(chosen, str) else "#ffffff",
        padding=padding,
        scale=scale if format == "svg" else 1.0,
    )
    width, height = svg_size(svg)
    if format == "svg":
        return Export("svg", MIME_TYPES["svg"], svg, round(width), round(height))
    pixels = png_size(width, height, scale)
    return Export("png", MIME_TYPES["png"], render_png(svg, scale=scale), *pixels)


async def export_diagram_in_thread(
    diagram: Diagram,
    format: Format = "excalidraw",
    *,
    scale: float = 1.0,
    padding: float = 10.0,
    background: str | None = None,
    file_lookup: FileLookup | None = None,
) -> Export:
    """:func:`export_diagram` in a worker thread, for async code: the event loop is not held
    while a picture renders, and a live document is copied first, here, so edits arriving
    meanwhile neither race the renderer nor appear half-way."""
    if isinstance(diagram, Doc):
        diagram = diagram.get_update()
    render = partial(
        export_diagram,
        diagram,
        format,
        scale=scale,
        padding=padding,
        background=background,
        file_lookup=file_lookup,
    )
    return await anyio.to_thread.run_sync(render)


def _as_doc(diagram: Diagram) -> tuple[Doc[Any], FileLookup | None]:
    """The diagram as a pycrdt document (a copy, for anything but a document), and its files."""
    if isinstance(diagram, Doc):
        return diagram, None
    if isinstance(diagram, bytes):
        try:
            return load_doc(diagram), None
        except Exception as exc:  # pycrdt raises its own for bytes that are no update
            raise ValueError(f"not a Yjs update: {exc}") from None
    blobs: dict[str, tuple[str, bytes]] = {}
    if isinstance(diagram, Scene):
        scene = diagram
    elif isinstance(diagram, Mapping):
        scene, blobs = parse_excalidraw(diagram)  # InvalidDiagram is a ValueError
    elif isinstance(diagram, Iterable):
        elements: dict[str, dict[str, Any]] = {}
        for n, element in enumerate(diagram):
            if not isinstance(element, Mapping):
                raise ValueError(f"elements[{n}] is not an object")
            eid = element.get("id")
            elements[eid if isinstance(eid, str) and eid else f"element-{n}"] = dict(element)
        if any(not isinstance(e.get("index"), str) for e in elements.values()):
            for element, index in zip(elements.values(), index_keys(len(elements)), strict=True):
                element["index"] = index  # the list's order is the z-order, as in a file
        scene = Scene(elements)
    else:
        raise ValueError(f"cannot export a {type(diagram).__name__}")
    doc: Doc[Any] = Doc()
    with doc.transaction():
        target = doc.get("elements", type=Map)
        for eid, element in scene.elements.items():
            target[eid] = element
        meta = doc.get("meta", type=Map)
        for key, value in scene.meta.items():
            meta[key] = value
        files = doc.get("files", type=Map)
        for file_id, info in scene.files.items():
            files[file_id] = info
    return doc, (blobs.get if blobs else None)
