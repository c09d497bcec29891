"""A diagram drawn as SVG on the server, without a browser: pure, no I/O.

One renderer for every picture the server makes of a diagram: the landing
page's thumbnails (:mod:`storage.thumbnail`, a small fitted use of it) and
the agents' ``export_diagram`` (:mod:`agents.export`, full size, and as PNG
through :mod:`storage.raster`). It draws what Excalidraw's own SVG export
shows, without its hand-drawn roughness: rectangles (rounded when the element
has ``roundness``), ellipses, diamonds, lines, arrows and freehand strokes
through their points, arrowheads (arrow, triangle, bar, dot/circle, diamond,
the outlined ones), text with its size, font, alignment and lines (a
container's bound text is a text element whose ``x``/``y`` Excalidraw has
already placed), frames with their name above, images as placeholders;
stroke colour and width, dashed and dotted strokes, solid, hachure and
cross-hatch fills, opacity, rotation by ``angle``, in z-order.

Elements come from peers and are not trusted: a value that is not a finite
number of a sane size is not used (the element is skipped when it is its
position or size), colours are used only when they look like colours,
fonts, arrowheads and styles are picked from fixed tables, text is
escaped and stripped of what XML cannot hold, and the number of elements,
points and text lines is capped, so whatever a document holds, the result
is well-formed SVG of bounded size.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from html import escape
from typing import Any

MAX_ELEMENTS = 10_000  # a huge diagram's picture shows its first (bottom-most) ones
MAX_POINTS = 5_000  # points of one line, arrow or freehand stroke
MAX_LINES, MAX_LINE_CHARS = 500, 2_000  # of one text element
MAX_COORD = 1e8  # scene units; anything further is junk, not a drawing
MAX_HATCH_LINES = 200  # hachure lines across one shape (per direction)
MAX_HATCH_OUTLINE = 500  # a closed line with more points than this is filled solid
PADDING = 10.0  # scene units around the drawing
COLOR = re.compile(r"^(#[0-9a-fA-F]{3,8}|[a-zA-Z]{3,20}|(rgb|hsl)a?\([0-9.,%\s]{5,40}\))$")
SHAPES = frozenset(
    {"rectangle", "ellipse", "diamond", "line", "arrow", "freedraw", "text", "image", "frame"}
    | {"magicframe", "embeddable", "iframe"}
)
LINEAR = frozenset({"line", "arrow", "freedraw"})
FRAMES = frozenset({"frame", "magicframe"})
#: Excalidraw's ``fontFamily`` numbers; the names it ships first, then fonts a server has.
FONTS = {
    1: "Virgil, Excalifont, 'Comic Sans MS', 'DejaVu Sans', sans-serif",
    2: "Helvetica, Arial, 'Liberation Sans', 'DejaVu Sans', sans-serif",
    3: "Cascadia, 'Cascadia Code', 'DejaVu Sans Mono', monospace",
    5: "Excalifont, Virgil, 'Comic Sans MS', 'DejaVu Sans', sans-serif",
    6: "Nunito, 'Liberation Sans', 'DejaVu Sans', sans-serif",
    7: "'Lilita One', 'DejaVu Sans', sans-serif",
    8: "'Comic Shanns', 'DejaVu Sans Mono', monospace",
}
DEFAULT_FONT = FONTS[5]
ANCHORS = {"left": "start", "center": "middle", "right": "end"}
#: Arrowheads: (length in scene units at most, half-angle in degrees), as Excalidraw sizes them.
ARROWHEADS = {
    "arrow": (25.0, 20.0),
    "triangle": (15.0, 25.0),
    "triangle_outline": (15.0, 25.0),
    "bar": (15.0, 90.0),
    "dot": (15.0, 0.0),
    "circle": (15.0, 0.0),
    "circle_outline": (15.0, 0.0),
    "diamond": (12.0, 25.0),
    "diamond_outline": (12.0, 25.0),
}
FRAME_STROKE, FRAME_LABEL = "#bbbbbb", "#999999"
FRAME_NAME_ROOM = 24.0  # scene units above a frame that its name takes
IMAGE_FILL, IMAGE_STROKE = "#dee2e6", "#adb5bd"
# characters XML 1.0 cannot hold (and lone surrogates, which cannot be encoded)
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def num(value: Any, limit: float = MAX_COORD) -> float | None:
    """``value`` as a float if it is a finite number within ±limit (never a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or abs(value) > limit:
        return None
    return float(value)


def color(value: Any, default: str) -> str:
    """``value`` if it looks like a CSS colour (or ``transparent``), else ``default``."""
    if isinstance(value, str) and (value == "transparent" or COLOR.match(value)):
        return value
    return default


def text_of(value: Any, limit: int) -> str:
    """Text safe inside an SVG element or attribute: at most ``limit`` characters, escaped."""
    return escape(_NOT_XML.sub("", value[:limit])) if isinstance(value, str) else ""


def points_of(element: Mapping[str, Any]) -> list[tuple[float, float]]:
    points: list[tuple[float, float]] = []
    raw = element.get("points")
    for point in raw[:MAX_POINTS] if isinstance(raw, list) else []:
        if isinstance(point, list | tuple) and len(point) >= 2:
            x, y = num(point[0]), num(point[1])
            if x is not None and y is not None:
                points.append((x, y))
    return points


def box_of(element: Mapping[str, Any]) -> tuple[float, float, float, float] | None:
    """x, y, width, height of the element (its points' extent for lines), or None: not drawable."""
    x, y = num(element.get("x")), num(element.get("y"))
    if x is None or y is None:
        return None
    if element.get("type") in LINEAR:
        points = points_of(element)
        if not points:
            return None
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        return x + min(xs), y + min(ys), max(xs) - min(xs), max(ys) - min(ys)
    width, height = num(element.get("width")), num(element.get("height"))
    if width is None or height is None:
        return None
    return x, y, abs(width), abs(height)


def _f(value: float) -> str:
    """A coordinate as SVG text: short, and never ``-0``."""
    return f"{round(value, 3) + 0.0:g}"


def _pairs(points: Iterable[tuple[float, float]]) -> str:
    return " ".join(f"{_f(px)},{_f(py)}" for px, py in points)


@dataclass
class _Painter:
    """Draws one element after another."""

    background: str
    hachure: bool = True  # draw hachure and cross-hatch fills (else solid)

    def element(self, element: Mapping[str, Any], box: tuple[float, float, float, float]) -> str:
        kind = element.get("type")
        if kind in LINEAR:
            body = self._linear(element)
        elif kind == "text":
            body = self._text(element)
        elif kind in FRAMES:
            body = self._frame(element, box)
        elif kind in ("image", "embeddable", "iframe"):
            body = self._placeholder(element)
        else:
            body = self._shape(element)
        x, y, width, height = box
        transform = ""
        angle = num(element.get("angle"), 1e6) or 0.0
        if angle:
            centre = f"{_f(x + width / 2)} {_f(y + height / 2)}"
            transform = f' transform="rotate({_f(math.degrees(angle) % 360)} {centre})"'
        opacity = num(element.get("opacity"), 1e6)
        alpha = "" if opacity is None or opacity >= 100 else f' opacity="{max(opacity, 0) / 100:g}"'
        return f"<g{transform}{alpha}>{body}</g>" if transform or alpha else body

    # --- paint -------------------------------------------------------------------------

    def _stroke(self, element: Mapping[str, Any], *, default: str = "#1e1e1e") -> str:
        stroke = color(element.get("strokeColor"), default)
        stroke = "none" if stroke == "transparent" else stroke
        width = min(max(num(element.get("strokeWidth")) or 2.0, 0.5), 16.0)
        attrs = f'stroke="{stroke}" stroke-width="{width:g}"'
        style = element.get("strokeStyle")
        if style == "dashed":
            attrs += f' stroke-dasharray="{8:g} {8 + width:g}"'
        elif style == "dotted":
            attrs += f' stroke-dasharray="{1.5:g} {6 + width:g}" stroke-linecap="round"'
        return attrs

    def _fill(
        self, element: Mapping[str, Any], outline: list[tuple[float, float]]
    ) -> tuple[str, str]:
        """The shape's ``fill`` attribute, and the hachure lines drawn under its outline.

        Hachure and cross-hatch are drawn as lines clipped to ``outline`` here,
        not as SVG patterns: resvg renders a pattern fill about ten times
        slower than the lines themselves.
        """
        fill = color(element.get("backgroundColor"), "transparent")
        if fill == "transparent":
            return "none", ""
        style = element.get("fillStyle")
        if style not in ("hachure", "cross-hatch", "zigzag") or not self.hachure:
            return fill, ""
        if len(outline) > MAX_HATCH_OUTLINE:
            return fill, ""
        width = min(max(num(element.get("strokeWidth")) or 2.0, 0.5), 16.0)
        lines = hatch_lines(outline, max(width * 4, 4.0), cross=style == "cross-hatch")
        if not lines:
            return "none", ""
        return "none", (
            f'<path d="{lines}" stroke="{fill}" stroke-width="{max(width / 2, 0.5):g}"'
            ' fill="none" stroke-linecap="round"/>'
        )

    def _paint(
        self, element: Mapping[str, Any], outline: list[tuple[float, float]]
    ) -> tuple[str, str]:
        """stroke, fill, stroke-width (in that order: the thumbnail tests read them), and the
        hachure to draw first."""
        stroke = self._stroke(element)
        first, rest = stroke.split(" ", 1)
        fill, under = self._fill(element, outline)
        return f'{first} fill="{fill}" {rest}', under

    # --- shapes ------------------------------------------------------------------------

    def _shape(self, element: Mapping[str, Any]) -> str:
        x, y = float(element["x"]), float(element["y"])
        width, height = abs(num(element.get("width")) or 0), abs(num(element.get("height")) or 0)
        kind = element.get("type")
        cx, cy = x + width / 2, y + height / 2
        if kind == "ellipse":
            outline = [
                (cx + width / 2 * math.cos(t), cy + height / 2 * math.sin(t))
                for t in (2 * math.pi * i / 32 for i in range(32))
            ]
            paint, under = self._paint(element, outline)
            return under + (
                f'<ellipse cx="{_f(cx)}" cy="{_f(cy)}"'
                f' rx="{_f(width / 2)}" ry="{_f(height / 2)}" {paint}/>'
            )
        if kind == "diamond":
            corners = [(cx, y), (x + width, cy), (cx, y + height), (x, cy)]
            paint, under = self._paint(element, corners)
            return under + f'<polygon points="{_pairs(corners)}" {paint} stroke-linejoin="round"/>'
        radius = corner_radius(element, min(width, height))
        paint, under = self._paint(element, rounded_rectangle(x, y, width, height, radius))
        rounded = f' rx="{_f(radius)}"' if radius else ""
        return under + (
            f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(width)}" height="{_f(height)}"'
            f" {paint}{rounded}/>"
        )

    def _frame(self, element: Mapping[str, Any], box: tuple[float, float, float, float]) -> str:
        x, y, width, height = box
        name = text_of(element.get("name"), 200) or "Frame"
        return (
            f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(width)}" height="{_f(height)}"'
            f' stroke="{FRAME_STROKE}" fill="none" stroke-width="1" rx="8"/>'
            f'<text x="{_f(x)}" y="{_f(y - 6)}" font-size="14" fill="{FRAME_LABEL}"'
            f' font-family="{FONTS[2]}">{name}</text>'
        )

    def _placeholder(self, element: Mapping[str, Any]) -> str:
        """An image (or embed): a grey box with a mountain, not the picture."""
        x, y = float(element["x"]), float(element["y"])
        width, height = abs(num(element.get("width")) or 0), abs(num(element.get("height")) or 0)
        size = min(width, height) / 3
        cx, cy = x + width / 2, y + height / 2
        mountain = [(cx - size, cy + size / 2), (cx - size / 3, cy - size / 2)]
        mountain += [(cx + size / 6, cy + size / 6), (cx + size / 2, cy - size / 6)]
        mountain += [(cx + size, cy + size / 2)]
        return (
            f'<rect x="{_f(x)}" y="{_f(y)}" width="{_f(width)}" height="{_f(height)}"'
            f' fill="{IMAGE_FILL}"/>'
            f'<polyline points="{_pairs(mountain)}" stroke="{IMAGE_STROKE}" fill="none"'
            f' stroke-width="{max(size / 8, 0.5):g}" stroke-linejoin="round"/>'
        )

    # --- lines and arrows --------------------------------------------------------------

    def _linear(self, element: Mapping[str, Any]) -> str:
        x, y = float(element["x"]), float(element["y"])
        points = [(x + px, y + py) for px, py in points_of(element)]
        stroke = self._stroke(element)
        closed = len(points) > 2 and points[0] == points[-1]
        fill, under = "none", ""
        if closed and element.get("type") != "arrow":
            fill, under = self._fill(element, points)
        body = under + (
            f'<polyline points="{_pairs(points)}" {stroke} fill="{fill}"'
            ' stroke-linecap="round" stroke-linejoin="round"/>'
        )
        if element.get("type") == "arrow" and len(points) >= 2:
            solid = self._stroke(element).split(" stroke-dasharray")[0]  # heads are never dashed
            stroke_colour = color(element.get("strokeColor"), "#1e1e1e")
            for key, tip, others in (
                ("endArrowhead", points[-1], points[-2::-1]),
                ("startArrowhead", points[0], points[1:]),
            ):
                head = element.get(key)
                if isinstance(head, str) and head in ARROWHEADS:
                    body += self._head(head, tip, others, solid, stroke_colour)
        return body

    def _head(
        self,
        kind: str,
        tip: tuple[float, float],
        others: list[tuple[float, float]],
        stroke: str,
        stroke_colour: str,
    ) -> str:
        """One arrowhead at ``tip``, pointing away from the nearest other distinct point."""
        base = next((p for p in others if p != tip), None)
        if base is None:
            return ""
        dx, dy = tip[0] - base[0], tip[1] - base[1]
        length = math.hypot(dx, dy)
        size, spread = ARROWHEADS[kind]
        size = min(size, length * (0.25 if kind.startswith("diamond") else 0.5))
        ux, uy = dx / length, dy / length
        outline = kind.endswith("_outline")
        fill = self.background if outline else stroke_colour
        fill = "none" if fill == "transparent" and outline else fill
        if kind in ("dot", "circle", "circle_outline"):
            r = size / 2
            return (
                f'<circle cx="{_f(tip[0] - ux * r)}" cy="{_f(tip[1] - uy * r)}" r="{_f(r)}"'
                f' {stroke} fill="{fill}"/>'
            )

        def side(sign: float) -> tuple[float, float]:
            turn = math.radians(spread) * sign
            cos, sin = math.cos(turn), math.sin(turn)
            return (tip[0] - size * (ux * cos - uy * sin), tip[1] - size * (uy * cos + ux * sin))

        left, right = side(1), side(-1)
        if kind == "arrow":
            return (
                f'<polyline points="{_pairs([left, tip, right])}" {stroke} fill="none"'
                ' stroke-linecap="round" stroke-linejoin="round"/>'
            )
        if kind == "bar":
            half = size / 2
            ends = [
                (tip[0] - uy * half, tip[1] + ux * half),
                (tip[0] + uy * half, tip[1] - ux * half),
            ]
            return f'<polyline points="{_pairs(ends)}" {stroke} stroke-linecap="round"/>'
        corners = [tip, left, right]
        if kind.startswith("diamond"):
            back = (tip[0] - ux * size * 2, tip[1] - uy * size * 2)
            left = (tip[0] - ux * size - uy * size / 2, tip[1] - uy * size + ux * size / 2)
            right = (tip[0] - ux * size + uy * size / 2, tip[1] - uy * size - ux * size / 2)
            corners = [tip, left, back, right]
        return (
            f'<polygon points="{_pairs(corners)}" {stroke} fill="{fill}" stroke-linejoin="round"/>'
        )

    # --- text --------------------------------------------------------------------------

    def _text(self, element: Mapping[str, Any]) -> str:
        x, y = float(element["x"]), float(element["y"])
        width = abs(num(element.get("width")) or 0)
        size = min(max(num(element.get("fontSize")) or 20.0, 1.0), 1000.0)
        line_height = size * min(max(num(element.get("lineHeight")) or 1.25, 0.5), 5.0)
        family = num(element.get("fontFamily"))
        font = DEFAULT_FONT if family is None else FONTS.get(int(family), DEFAULT_FONT)
        align = element.get("textAlign")
        anchor = ANCHORS.get(align, "start") if isinstance(align, str) else "start"
        left = {"start": x, "middle": x + width / 2, "end": x + width}[anchor]
        raw = element.get("text")
        lines = raw.split("\n")[:MAX_LINES] if isinstance(raw, str) else []
        # each line's box is line_height tall; its baseline sits where a browser puts it
        baseline = (line_height - size) / 2 + size * 0.8
        spans = "".join(
            f'<tspan x="{_f(left)}" y="{_f(y + i * line_height + baseline)}">'
            f"{text_of(line, MAX_LINE_CHARS)}</tspan>"
            for i, line in enumerate(lines)
            if line.strip()
        )
        fill = color(element.get("strokeColor"), "#1e1e1e")
        return (
            f'<text font-size="{_f(size)}" font-family="{font}" fill="{fill}"'
            f' text-anchor="{anchor}" xml:space="preserve">{spans}</text>'
        )


def rounded_rectangle(
    x: float, y: float, width: float, height: float, radius: float
) -> list[tuple[float, float]]:
    """The outline of a rectangle with rounded corners, as a polygon (the hachure's bounds)."""
    if not radius:
        return [(x, y), (x + width, y), (x + width, y + height), (x, y + height)]
    outline = []
    for cx, cy, start in (
        (x + width - radius, y + radius, -90),
        (x + width - radius, y + height - radius, 0),
        (x + radius, y + height - radius, 90),
        (x + radius, y + radius, 180),
    ):
        for step in range(5):
            turn = math.radians(start + step * 22.5)
            outline.append((cx + radius * math.cos(turn), cy + radius * math.sin(turn)))
    return outline


def hatch_lines(outline: list[tuple[float, float]], gap: float, *, cross: bool = False) -> str:
    """Path data of parallel diagonal lines ``gap`` apart filling the polygon ``outline``
    (any simple polygon: even-odd along each line), both diagonals with ``cross``."""
    xs, ys = [p[0] for p in outline], [p[1] for p in outline]
    extent = (max(xs) - min(xs)) + (max(ys) - min(ys))
    gap = max(gap, extent / MAX_HATCH_LINES)  # a huge shape gets wider gaps, not more lines
    segments: list[str] = []
    for sign in (1.0, -1.0) if cross else (1.0,):
        # lines where x + sign*y is constant; along each, order points by x
        level = [px + sign * py for px, py in outline]
        low, high = min(level), max(level)
        c = low + gap / 2
        while c < high:
            hits = []
            for i, (a, b) in enumerate(zip(level, level[1:] + level[:1], strict=True)):
                if (a <= c < b) or (b <= c < a):
                    p, q = outline[i], outline[(i + 1) % len(outline)]
                    t = (c - a) / (b - a)
                    hits.append((p[0] + (q[0] - p[0]) * t, p[1] + (q[1] - p[1]) * t))
            hits.sort()
            for start, end in zip(hits[::2], hits[1::2], strict=False):
                segments.append(f"M{_f(start[0])},{_f(start[1])}L{_f(end[0])},{_f(end[1])}")
            c += gap
    return "".join(segments)


def corner_radius(element: Mapping[str, Any], side: float) -> float:
    """Excalidraw's corner radius for a rounded shape whose shorter side is ``side``."""
    roundness = element.get("roundness")
    if not isinstance(roundness, Mapping):
        return 0.0
    kind = roundness.get("type")
    if kind in (1, 2):  # legacy, proportional
        return side * 0.25
    if kind == 3:  # adaptive: a fixed radius, or a quarter of a small shape
        fixed = num(roundness.get("value"), 1e6)
        fixed = 32.0 if fixed is None else max(fixed, 0.0)
        return side * 0.25 if side <= fixed / 0.25 else fixed
    return 0.0


def render_svg(
    elements: Iterable[Mapping[str, Any]],
    *,
    background: str = "#ffffff",
    padding: float = PADDING,
    scale: float = 1.0,
    max_size: float | None = None,
    fit: tuple[int, int] | None = None,
    max_elements: int = MAX_ELEMENTS,
    hachure: bool = True,
) -> str:
    """An SVG of ``elements`` (live ones, bottom to top: :func:`storage.excalidraw.z_order`).

    Its ``viewBox`` is the drawing's extent plus ``padding`` (scene units).
    Its size is that extent times ``scale`` (CSS pixels), shrunk so that
    neither side exceeds ``max_size``; or, with ``fit``, exactly that
    width and height with the drawing centred inside (the thumbnails).
    ``background`` fills the picture unless it is ``transparent``.
    Without ``hachure``, hachured shapes are filled solid (cheaper, and
    the same at a thumbnail's size).
    """
    painter = _Painter(color(background, "#ffffff"), hachure)
    drawn: list[str] = []
    bounds: list[tuple[float, float, float, float]] = []
    for element in elements:
        if len(drawn) >= max_elements:
            break
        if not isinstance(element, Mapping) or element.get("isDeleted"):
            continue
        if element.get("type") not in SHAPES:
            continue
        box = box_of(element)
        if box is None:
            continue
        drawn.append(painter.element(element, box))
        if element.get("type") in FRAMES:  # its name sits above it
            box = (box[0], box[1] - FRAME_NAME_ROOM, box[2], box[3] + FRAME_NAME_ROOM)
        bounds.append(box)
    pad = num(padding, 1e6) or 0.0
    if bounds:
        left = min(b[0] for b in bounds) - pad
        top = min(b[1] for b in bounds) - pad
        right = max(b[0] + b[2] for b in bounds) + pad
        bottom = max(b[1] + b[3] for b in bounds) + pad
        width, height = max(right - left, 1.0), max(bottom - top, 1.0)
    elif fit is not None:
        left, top, (width, height) = 0.0, 0.0, map(float, fit)
    else:
        left, top, width, height = 0.0, 0.0, max(2 * pad, 1.0), max(2 * pad, 1.0)
    if fit is not None:
        out_w, out_h = float(fit[0]), float(fit[1])
        # the background covers the whole picture, letterbox included
        zoom = min(out_w / width, out_h / height)
        seen_w, seen_h = out_w / zoom, out_h / zoom
        area = (left - (seen_w - width) / 2, top - (seen_h - height) / 2, seen_w, seen_h)
    else:
        zoom = min(max(num(scale, 1e3) or 1.0, 1e-3), 1e3)
        if max_size is not None and max(width, height) * zoom > max_size:
            zoom = max_size / max(width, height)
        out_w, out_h = max(width * zoom, 1.0), max(height * zoom, 1.0)
        area = (left, top, width, height)
    fill = painter.background
    ground = (
        ""
        if fill == "transparent"
        else f'<rect x="{_f(area[0])}" y="{_f(area[1])}" width="{_f(area[2])}"'
        f' height="{_f(area[3])}" fill="{fill}"/>'
    )
    view = f"{_f(left)} {_f(top)} {_f(width)} {_f(height)}"
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{_f(out_w)}" height="{_f(out_h)}"'
        f' viewBox="{view}" preserveAspectRatio="xMidYMid meet">'
        + ground
        + "".join(drawn)
        + "</svg>"
    )
