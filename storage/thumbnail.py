"""A diagram's thumbnail: its live elements drawn as a small SVG, without a browser.

Rendered when a room checkpoints (:meth:`storage.sqlite.SQLiteStore.checkpoint`),
stored next to the checkpoint, and served by the API for the landing page's
cards. It is a sketch, not Excalidraw's rendering: shapes with their stroke
and fill colours, lines and arrows through their points, text as text,
images as grey boxes, each rotated by its ``angle``; no roughness. Peers are
not trusted: a value that is not a number is skipped, colours are only used
when they look like colours, and text is escaped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from html import escape
from typing import Any

from pycrdt import Doc, Map

from storage.excalidraw import z_order

WIDTH, HEIGHT = 320, 200  # the card's image, in CSS pixels
PADDING = 10  # scene units around the drawing, before scaling
MAX_ELEMENTS = 2000  # a huge diagram's thumbnail shows its first (bottom-most) ones
COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,20}|(rgb|hsl)a?\([0-9.,%\s]{5,40}\))$")
SHAPES = {"rectangle", "ellipse", "diamond", "line", "arrow", "freedraw", "text", "image", "frame"}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


def _color(value: Any, default: str) -> str:
    if isinstance(value, str) and (value == "transparent" or COLOR.match(value)):
        return value
    return default


def _points(element: Mapping[str, Any]) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    raw = element.get("points")
    for point in raw if isinstance(raw, list) else []:
        if isinstance(point, list | tuple) and len(point) >= 2:
            x, y = _num(point[0]), _num(point[1])
            if x is not None and y is not None:
                points.append((x, y))
    return points


def _box(element: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """x, y, width, height of the element (its points' extent for lines)."""
    x, y = _num(element.get("x")), _num(element.get("y"))
    if x is None or y is None:
        return None
    points = _points(element)
    if points and element.get("type") in ("line", "arrow", "freedraw"):
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return x + min(xs), y + min(ys), max(xs) - min(xs), max(ys) - min(ys)
    width, height = _num(element.get("width")), _num(element.get("height"))
    if width is None or height is None:
        return None
    return x, y, abs(width), abs(height)


def _shape(element: Mapping[str, Any]) -> str:
    x, y = float(element["x"]), float(element["y"])
    width, height = abs(_num(element.get("width")) or 0), abs(_num(element.get("height")) or 0)
    kind = element["type"]
    stroke = _color(element.get("strokeColor"), "#1e1e1e")
    fill = _color(element.get("backgroundColor"), "transparent")
    fill = "none" if fill == "transparent" else fill
    paint = f'stroke="{stroke}" fill="{fill}" stroke-width="{_stroke_width(element)}"'
    if kind in ("rectangle", "frame"):
        body = f'<rect x="{x:g}" y="{y:g}" width="{width:g}" height="{height:g}" {paint}/>'
    elif kind == "image":
        body = f'<rect x="{x:g}" y="{y:g}" width="{width:g}" height="{height:g}" fill="#dee2e6"/>'
    elif kind == "ellipse":
        body = (
            f'<ellipse cx="{x + width / 2:g}" cy="{y + height / 2:g}" rx="{width / 2:g}"'
            f' ry="{height / 2:g}" {paint}/>'
        )
    elif kind == "diamond":
        corners = [(x + width / 2, y), (x + width, y + height / 2), (x + width / 2, y + height)]
        corners.append((x, y + height / 2))
        body = f'<polygon points="{_pairs(corners)}" {paint}/>'
    elif kind == "text":
        size = _num(element.get("fontSize")) or 20
        lines = str(element.get("text") or "").splitlines()[:50]
        spans = "".join(
            f'<tspan x="{x:g}" dy="{size * 1.25 if i else size:g}">{escape(line[:500])}</tspan>'
            for i, line in enumerate(lines)
        )
        body = (
            f'<text y="{y:g}" font-size="{size:g}" fill="{stroke}"'
            f' font-family="sans-serif">{spans}</text>'
        )
    else:  # line, arrow, freedraw
        absolute = [(x + px, y + py) for px, py in _points(element)]
        body = (
            f'<polyline points="{_pairs(absolute)}" stroke="{stroke}" fill="none"'
            f' stroke-width="{_stroke_width(element)}" stroke-linecap="round"/>'
        )
    angle = _num(element.get("angle")) or 0.0
    if angle:
        centre = f"{x + width / 2:g} {y + height / 2:g}"
        return f'<g transform="rotate({math.degrees(angle):g} {centre})">{body}</g>'
    return body


def _stroke_width(element: Mapping[str, Any]) -> str:
    width = _num(element.get("strokeWidth"))
    return f"{min(max(width or 2.0, 0.5), 16):g}"


def _pairs(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{px:g},{py:g}" for px, py in points)


def render(elements: Iterable[Mapping[str, Any]], background: str = "#ffffff") -> str:
    """An SVG of ``elements`` (live ones, in z-order) fitted into WIDTH x HEIGHT."""
    drawn: list[str] = []
    bounds: list[tuple[float, float, float, float]] = []
    for element in elements:
        if len(drawn) >= MAX_ELEMENTS:
            break
        if element.get("isDeleted") or element.get("type") not in SHAPES:
            continue
        box = _box(element)
        if box is None:
            continue
        bounds.append(box)
        drawn.append(_shape(element))
    fill = _color(background, "#ffffff")
    if not bounds:
        view = f"0 0 {WIDTH} {HEIGHT}"
    else:
        left = min(b[0] for b in bounds) - PADDING
        top = min(b[1] for b in bounds) - PADDING
        right = max(b[0] + b[2] for b in bounds) + PADDING
        bottom = max(b[1] + b[3] for b in bounds) + PADDING
        view = f"{left:g} {top:g} {max(right - left, 1):g} {max(bottom - top, 1):g}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}"'
        f' viewBox="{view}" preserveAspectRatio="xMidYMid meet">'
        f'<rect x="-100000" y="-100000" width="200000" height="200000" fill="{fill}"/>'
        + "".join(drawn)
        + "</svg>"
    )


def render_doc(doc: Doc[Any]) -> str:
    """The thumbnail of a diagram's document: its live elements in z-order."""
    found = {
        key: value
        for key, value in doc.get("elements", type=Map).items()
        if isinstance(value, dict) and not value.get("isDeleted")
    }
    elements = [found[key] for key in z_order(found)]
    background = doc.get("meta", type=Map).get("viewBackgroundColor")
    return render(elements, background if isinstance(background, str) else "#ffffff")
