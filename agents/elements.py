"""Excalidraw 0.18 elements as plain dicts: made, measured, bound and stamped.

Everything here mirrors what Excalidraw 0.18.1 itself writes (its
``newElement`` / ``newTextElement`` / ``newArrowElement`` / ``newFrameElement``,
``redrawTextBoundingBox``, ``bindLinearElement``), so an element an agent
makes is one the editor takes as it is: ``restoreElements`` has nothing to
repair, labels sit inside their shapes and arrows stay bound when a shape is
dragged. No I/O: callers pass a :class:`Clock` for time and randomness.

Text is measured without a browser by an approximation of the fonts'
advance widths (:func:`measure`); the editor re-measures with the real font
when it loads, so the approximation only has to keep labels inside their
containers until then.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeGuard

from fractional_indexing import generate_key_between, generate_n_keys_between

from agents.text import (
    DEFAULT_FONT_FAMILY,
    DEFAULT_FONT_SIZE,
    FONT_FAMILIES,
    LINE_HEIGHTS,
    measure,
    normalize_text,
    wrap,
)

Element = dict[str, Any]
Elements = Mapping[str, Mapping[str, Any]]

#: Padding between a container's edge and its label (Excalidraw's BOUND_TEXT_PADDING).
BOUND_TEXT_PADDING = 5
#: The distance between a bound arrow's end and the shape's outline.
BINDING_GAP = 5
DEFAULT_SIZE = {"frame": (400.0, 300.0)}
DEFAULT_SHAPE_SIZE = (160.0, 80.0)
#: Excalidraw's label width on an arrow: a fraction of the arrow, at least 11 font sizes.
ARROW_LABEL_WIDTH_FRACTION = 0.7
ARROW_LABEL_FONT_SIZE_TO_MIN_WIDTH_RATIO = 11

#: Roundness types (Excalidraw's ROUNDNESS): rectangles use the adaptive radius.
ROUND_PROPORTIONAL = 2
ROUND_ADAPTIVE = 3

DEFAULTS: dict[str, Any] = {
    "strokeColor": "#1e1e1e",
    "backgroundColor": "transparent",
    "fillStyle": "solid",
    "strokeWidth": 2,
    "strokeStyle": "solid",
    "roughness": 1,
    "opacity": 100,
}
#: Excalidraw's FRAME_STYLE: what the frame tool draws with.
FRAME_STYLE: dict[str, Any] = {
    "strokeColor": "#bbb",
    "backgroundColor": "transparent",
    "fillStyle": "solid",
    "strokeWidth": 2,
    "strokeStyle": "solid",
    "roughness": 0,
    "opacity": 100,
}
STYLE_KEYS = tuple(DEFAULTS)

#: The fields every 0.18 element has, and those of each kind (type -> extra fields).
COMMON_FIELDS = (
    "id",
    "type",
    "x",
    "y",
    "width",
    "height",
    "angle",
    "strokeColor",
    "backgroundColor",
    "fillStyle",
    "strokeWidth",
    "strokeStyle",
    "roughness",
    "opacity",
    "groupIds",
    "frameId",
    "index",
    "roundness",
    "seed",
    "version",
    "versionNonce",
    "isDeleted",
    "boundElements",
    "updated",
    "link",
    "locked",
)
TEXT_FIELDS = (
    "text",
    "fontSize",
    "fontFamily",
    "textAlign",
    "verticalAlign",
    "containerId",
    "originalText",
    "autoResize",
    "lineHeight",
)
LINEAR_FIELDS = (
    "points",
    "lastCommittedPoint",
    "startBinding",
    "endBinding",
    "startArrowhead",
    "endArrowhead",
)
TYPE_FIELDS: dict[str, tuple[str, ...]] = {
    "rectangle": (),
    "ellipse": (),
    "diamond": (),
    "frame": ("name",),
    "text": TEXT_FIELDS,
    "line": LINEAR_FIELDS,
    "arrow": (*LINEAR_FIELDS, "elbowed"),
}
#: Elements an arrow can bind to (Excalidraw's isBindableElement, for the types made here).
BINDABLE = frozenset({"rectangle", "ellipse", "diamond", "text", "frame"})

_ID_ALPHABET = "useandom-26T198340PX75pxJACKVERYMINDBUSHWOLF_GQZbfghjklqvwyzrict"


@dataclass
class Clock:
    """Time and randomness for edits; tests inject a fixed time and a seeded ``Random``."""

    random: random.Random = field(default_factory=random.Random)

    def now_ms(self) -> int:
        return int(time.time() * 1000)


def new_id(rng: random.Random) -> str:
    """A 21-character id like the nanoid ids Excalidraw makes."""
    return "".join(rng.choice(_ID_ALPHABET) for _ in range(21))


def random_integer(rng: random.Random) -> int:
    """Excalidraw's ``randomInteger``: seeds and version nonces, below 2**31."""
    return rng.randrange(2**31)


def is_live(element: Mapping[str, Any] | None) -> bool:
    return element is not None and not element.get("isDeleted")


def _number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def problem(element: Any) -> str | None:
    """Why an element cannot be worked with (a field missing or of the wrong kind), or None.

    Other peers may write anything into the map; the operations leave such
    elements alone and say so instead of failing on them.
    """
    if not isinstance(element, Mapping):
        return "it is not an object"
    if not isinstance(element.get("type"), str):
        return "it has no type"
    for key in ("x", "y", "width", "height"):
        if not _number(element.get(key)):
            return f"its {key!r} is not a number"
    if element["type"] in ("line", "arrow"):
        points = element.get("points")
        if not isinstance(points, list) or len(points) < 2:
            return "it has fewer than two points"
        for point in points:
            if not (isinstance(point, list | tuple) and len(point) == 2):
                return "a point is not [x, y]"
            if not (_number(point[0]) and _number(point[1])):
                return "a point is not [x, y]"
    if element["type"] == "text":
        for key in ("fontSize", "lineHeight"):
            if not _number(element.get(key)) or element[key] <= 0:
                return f"its {key!r} is not a positive number"
        if not isinstance(element.get("text"), str):
            return "its text is not a string"
    for key in ("groupIds", "boundElements"):
        if element.get(key) is not None and not isinstance(element.get(key), list):
            return f"its {key!r} is not a list"
    for key in ("containerId", "frameId", "index"):
        if element.get(key) is not None and not isinstance(element.get(key), str):
            return f"its {key!r} is not a string"
    for key in ("startBinding", "endBinding"):
        if element.get(key) is not None and not isinstance(element.get(key), Mapping):
            return f"its {key!r} is not an object"
    return None


def stamp(element: Element, previous: Mapping[str, Any] | None, clock: Clock) -> Element:
    """Mark ``element`` as a new version of ``previous`` (or as new): what every change does."""
    previous = previous or {}
    version = previous.get("version", 0)
    element["version"] = (int(version) if _number(version) else 0) + 1
    nonce = random_integer(clock.random)
    while nonce == previous.get("versionNonce"):
        nonce = random_integer(clock.random)
    element["versionNonce"] = nonce
    # Later than the last change even within one millisecond (or with a clock behind
    # the peer that wrote it): `updated` is what tombstone purging and history read.
    before = previous.get("updated")
    now = clock.now_ms()
    element["updated"] = max(now, int(before) + 1) if _number(before) else now
    return element


def roundness_for(kind: str, rounded: bool | None) -> dict[str, int] | None:
    """What Excalidraw's tools give a new element with "round" edges (the default)."""
    if kind in ("text", "frame"):
        return None
    if rounded is False:
        return None
    return {"type": ROUND_ADAPTIVE if kind == "rectangle" else ROUND_PROPORTIONAL}


def base_element(
    kind: str,
    eid: str,
    *,
    x: float,
    y: float,
    width: float,
    height: float,
    clock: Clock,
    style: Mapping[str, Any] | None = None,
    index: str | None = None,
    roundness: dict[str, int] | None = None,
    group_ids: Iterable[str] = (),
    frame_id: str | None = None,
) -> Element:
    """``_newElementBase``: the fields every element has, in 0.18's order."""
    defaults = FRAME_STYLE if kind == "frame" else DEFAULTS
    chosen = {k: v for k, v in (style or {}).items() if k in STYLE_KEYS and v is not None}
    element: Element = {
        "id": eid,
        "type": kind,
        "x": x,
        "y": y,
        "width": width,
        "height": height,
        "angle": 0,
        **{k: chosen.get(k, defaults[k]) for k in STYLE_KEYS},
        "groupIds": list(group_ids),
        "frameId": frame_id,
        "index": index,
        "roundness": roundness,
        "seed": random_integer(clock.random),
        "version": 1,
        "versionNonce": random_integer(clock.random),
        "isDeleted": False,
        "boundElements": [],  # what restoreElements makes of newElement's null
        "updated": clock.now_ms(),
        "link": None,
        "locked": False,
    }
    return element


def new_text(
    eid: str,
    text: str,
    *,
    x: float,
    y: float,
    clock: Clock,
    style: Mapping[str, Any] | None = None,
    index: str | None = None,
    container: Mapping[str, Any] | None = None,
    group_ids: Iterable[str] = (),
    frame_id: str | None = None,
) -> Element:
    """``newTextElement``: free text at (x, y), or a container's label (then fitted)."""
    style = style or {}
    font_size = float(style.get("fontSize") or DEFAULT_FONT_SIZE)
    family = FONT_FAMILIES.get(style.get("fontFamily") or "", DEFAULT_FONT_FAMILY)
    line_height = LINE_HEIGHTS[family]
    text = normalize_text(text)
    width, height = measure(text, font_size, line_height, family)
    colour = (container or {}).get("strokeColor") if container else None
    element = base_element(
        "text",
        eid,
        x=x,
        y=y,
        width=width,
        height=height,
        clock=clock,
        style={**style, **({"strokeColor": colour} if colour else {})},
        index=index,
        group_ids=group_ids,
        frame_id=frame_id,
    )
    element["backgroundColor"] = "transparent"
    element.update(
        {
            "text": text,
            "fontSize": font_size,
            "fontFamily": family,
            "textAlign": style.get("textAlign") or ("center" if container else "left"),
            "verticalAlign": "middle" if container else "top",
            "containerId": container["id"] if container else None,
            "originalText": text,
            "autoResize": True,
            "lineHeight": line_height,
        }
    )
    return element


def label_max_width(container: Mapping[str, Any], text: Mapping[str, Any]) -> float:
    """``getBoundTextMaxWidth``."""
    width = float(container["width"])
    kind = container["type"]
    if kind == "arrow":
        minimum = float(text.get("fontSize", DEFAULT_FONT_SIZE))
        return max(
            ARROW_LABEL_WIDTH_FRACTION * width, minimum * ARROW_LABEL_FONT_SIZE_TO_MIN_WIDTH_RATIO
        )
    if kind == "ellipse":
        return round(width / 2 * math.sqrt(2)) - BOUND_TEXT_PADDING * 2
    if kind == "diamond":
        return round(width / 2) - BOUND_TEXT_PADDING * 2
    return width - BOUND_TEXT_PADDING * 2


def label_max_height(container: Mapping[str, Any], text: Mapping[str, Any]) -> float:
    """``getBoundTextMaxHeight``."""
    height = float(container["height"])
    kind = container["type"]
    if kind == "arrow":
        return height if height - BOUND_TEXT_PADDING * 16 > 0 else float(text["height"])
    if kind == "ellipse":
        return round(height / 2 * math.sqrt(2)) - BOUND_TEXT_PADDING * 2
    if kind == "diamond":
        return round(height / 2) - BOUND_TEXT_PADDING * 2
    return height - BOUND_TEXT_PADDING * 2


def container_size_for(dimension: float, kind: str) -> float:
    """``computeContainerDimensionForBoundText``: the size that holds a label."""
    dimension = math.ceil(dimension)
    padding = BOUND_TEXT_PADDING * 2
    if kind == "ellipse":
        return round((dimension + padding) / math.sqrt(2) * 2)
    if kind == "arrow":
        return dimension + padding * 8
    if kind == "diamond":
        return 2 * (dimension + padding)
    return dimension + padding


def fit_label(container: Element, text: Element) -> None:
    """``redrawTextBoundingBox``: wrap, measure, grow the container if needed, centre.

    Both dicts are changed in place (callers pass their own copies).
    """
    font_size = float(text["fontSize"])
    family = int(text["fontFamily"])
    wrapped = wrap(text["originalText"], font_size, label_max_width(container, text), family)
    width, height = measure(wrapped, font_size, float(text["lineHeight"]), family)
    text.update(text=wrapped, width=width, height=height)
    if container["type"] != "arrow":
        if height > label_max_height(container, text):
            container["height"] = container_size_for(height, container["type"])
        if width > label_max_width(container, text):
            container["width"] = container_size_for(width, container["type"])
        left, top = _label_origin(container)
        max_w, max_h = label_max_width(container, text), label_max_height(container, text)
        if text["verticalAlign"] == "top":
            y = top
        elif text["verticalAlign"] == "bottom":
            y = top + max_h - height
        else:
            y = top + (max_h / 2 - height / 2)
        if text["textAlign"] == "left":
            x = left
        elif text["textAlign"] == "right":
            x = left + max_w - width
        else:
            x = left + (max_w / 2 - width / 2)
    else:
        mid_x, mid_y = arrow_midpoint(container)
        x, y = mid_x - width / 2, mid_y - height / 2
    text.update(x=x, y=y, angle=container.get("angle", 0))


def _label_origin(container: Mapping[str, Any]) -> tuple[float, float]:
    """``getContainerCoords``: the top left of the area a label may use."""
    off_x = off_y = float(BOUND_TEXT_PADDING)
    width, height = float(container["width"]), float(container["height"])
    if container["type"] == "ellipse":
        off_x += width / 2 * (1 - math.sqrt(2) / 2)
        off_y += height / 2 * (1 - math.sqrt(2) / 2)
    elif container["type"] == "diamond":
        off_x += width / 4
        off_y += height / 4
    return float(container["x"]) + off_x, float(container["y"]) + off_y


def arrow_midpoint(arrow: Mapping[str, Any]) -> tuple[float, float]:
    """Where Excalidraw centres an arrow's label (``getBoundTextElementPosition``):
    the middle point of an odd number of points, else the middle of the middle
    segment (of the straight segment: the editor follows a curve's bend there)."""
    points = arrow["points"]
    count = len(points)
    if count % 2 == 1:
        x, y = points[count // 2]
    else:
        (x1, y1), (x2, y2) = points[count // 2 - 1], points[count // 2]
        x, y = (x1 + x2) / 2, (y1 + y2) / 2
    return float(arrow["x"]) + float(x), float(arrow["y"]) + float(y)


# -- lines and arrows -----------------------------------------------------------


def new_linear(
    kind: str,
    eid: str,
    *,
    x: float,
    y: float,
    points: list[tuple[float, float]],
    clock: Clock,
    style: Mapping[str, Any] | None = None,
    index: str | None = None,
    start_arrowhead: str | None = None,
    end_arrowhead: str | None = None,
    group_ids: Iterable[str] = (),
    frame_id: str | None = None,
) -> Element:
    """``newLinearElement`` / ``newArrowElement`` (not elbowed)."""
    style = style or {}
    element = base_element(
        kind,
        eid,
        x=x,
        y=y,
        width=0,
        height=0,
        clock=clock,
        style=style,
        index=index,
        roundness=roundness_for(kind, style.get("rounded")),
        group_ids=group_ids,
        frame_id=frame_id,
    )
    element.update(
        {
            "points": [[float(px), float(py)] for px, py in points],
            "lastCommittedPoint": None,
            "startBinding": None,
            "endBinding": None,
            "startArrowhead": start_arrowhead,
            "endArrowhead": end_arrowhead,
        }
    )
    if kind == "arrow":
        element["elbowed"] = False
    set_points(element, element["points"])
    return element


def set_points(element: Element, points: list[list[float]]) -> None:
    """New points (first at [0, 0]); width and height as ``getSizeFromPoints`` gives."""
    xs = [p[0] for p in points]
    ys = [p[1] for p in points]
    element["points"] = [[float(px), float(py)] for px, py in points]
    element["width"] = max(xs) - min(xs)
    element["height"] = max(ys) - min(ys)


def centre(element: Mapping[str, Any]) -> tuple[float, float]:
    return (
        float(element["x"]) + float(element["width"]) / 2,
        float(element["y"]) + float(element["height"]) / 2,
    )


def outline_point(
    shape: Mapping[str, Any], toward: tuple[float, float], gap: float = BINDING_GAP
) -> tuple[float, float]:
    """Where the ray from ``shape``'s centre toward a point leaves its outline, plus ``gap``.

    Rectangles (and text, frames), ellipses and diamonds, unrotated.
    """
    cx, cy = centre(shape)
    dx, dy = toward[0] - cx, toward[1] - cy
    length = math.hypot(dx, dy)
    if length == 0:
        dx, dy, length = 1.0, 0.0, 1.0
    hw, hh = max(float(shape["width"]) / 2, 0.5), max(float(shape["height"]) / 2, 0.5)
    if shape["type"] == "ellipse":
        t = 1 / math.sqrt((dx / hw) ** 2 + (dy / hh) ** 2)
    elif shape["type"] == "diamond":
        t = 1 / (abs(dx) / hw + abs(dy) / hh)
    else:
        t = min(hw / abs(dx) if dx else math.inf, hh / abs(dy) if dy else math.inf)
    ux, uy = dx / length, dy / length
    return cx + dx * t + ux * gap, cy + dy * t + uy * gap


def binding(target_id: str) -> dict[str, Any]:
    """A simple arrow's binding as ``bindLinearElement`` writes it (through the centre)."""
    return {"elementId": target_id, "focus": 0, "gap": BINDING_GAP}


def route(
    arrow: Element,
    start: Mapping[str, Any] | None,
    end: Mapping[str, Any] | None,
) -> None:
    """Put a two-ended line's ends on the outlines of the shapes it joins.

    An end with no shape stays where it is; the other end aims at the
    shape's centre (or at the free end). Changes ``arrow`` in place.
    """
    points = arrow["points"]
    ax, ay = float(arrow["x"]), float(arrow["y"])
    first = (ax + points[0][0], ay + points[0][1])
    last = (ax + points[-1][0], ay + points[-1][1])
    start_aim = centre(end) if end is not None and len(points) == 2 else _absolute(arrow, 1)
    end_aim = centre(start) if start is not None and len(points) == 2 else _absolute(arrow, -2)
    if start is not None:
        first = outline_point(start, start_aim)
    if end is not None:
        last = outline_point(end, end_aim)
    middle = [(ax + p[0], ay + p[1]) for p in points[1:-1]]
    absolute = [first, *middle, last]
    arrow["x"], arrow["y"] = first
    set_points(arrow, [[px - first[0], py - first[1]] for px, py in absolute])


def _absolute(arrow: Mapping[str, Any], i: int) -> tuple[float, float]:
    point = arrow["points"][i]
    return float(arrow["x"]) + point[0], float(arrow["y"]) + point[1]


# -- z-order ----------------------------------------------------------------------


def z_order(elements: Elements) -> list[str]:
    """Ids bottom to top: by fractional ``index``, ties by id (as storage.excalidraw)."""

    def key(eid: str) -> tuple[str, str]:
        index = elements[eid].get("index")
        return (index if isinstance(index, str) else "", eid)

    return sorted(elements, key=key)


def top_index(elements: Elements) -> str | None:
    """The highest index in the map (tombstones included: they keep their place)."""
    keys = {e.get("index") for e in elements.values()}
    # highest first: only the top ones need the (slower) format check
    for key in sorted((k for k in keys if isinstance(k, str)), reverse=True):
        if valid_index(key):
            return key
    return None


def indices_above(elements: Elements, n: int) -> list[str]:
    """``n`` increasing indices above everything: where new elements go."""
    return list(generate_n_keys_between(top_index(elements), None, n)) if n else []


def index_between(lower: str | None, upper: str | None) -> str:
    return str(generate_key_between(lower, upper))


def indices_between(lower: str | None, upper: str | None, n: int) -> list[str]:
    return list(generate_n_keys_between(lower, upper, n)) if n else []


def index_below(elements: Elements, key: str) -> str | None:
    """The highest valid index in the map below ``key`` (tombstones included)."""
    below = [
        k
        for k in (e.get("index") for e in elements.values())
        if isinstance(k, str) and valid_index(k) and k < key
    ]
    return max(below) if below else None


def valid_index(key: str) -> bool:
    """The fractional-indexing key format (clients/web/src/binding.js ``validIndex``)."""
    if not key or not key.isascii() or not key.isalnum():
        return False
    head = ord(key[0])
    if head >= 97:
        size = head - 97 + 2
    elif 65 <= head <= 90:
        size = 90 - head + 2
    else:
        return False
    if len(key) < size:
        return False
    if len(key) > size and key.endswith("0"):
        return False
    return key != "A" + "0" * 26


def bounds(elements: Iterable[Mapping[str, Any]]) -> tuple[float, float, float, float] | None:
    """(min x, min y, max x, max y) of the elements' boxes (lines by their points)."""
    boxes = [box(e) for e in elements]
    if not boxes:
        return None
    return (
        min(b[0] for b in boxes),
        min(b[1] for b in boxes),
        max(b[2] for b in boxes),
        max(b[3] for b in boxes),
    )


def box(element: Mapping[str, Any]) -> tuple[float, float, float, float]:
    x, y = float(element["x"]), float(element["y"])
    points = element.get("points")
    if element.get("type") in ("line", "arrow") and isinstance(points, list) and points:
        xs = [x + float(p[0]) for p in points]
        ys = [y + float(p[1]) for p in points]
        return min(xs), min(ys), max(xs), max(ys)
    return x, y, x + float(element["width"]), y + float(element["height"])


def bound_text_id(element: Mapping[str, Any]) -> str | None:
    """``getBoundTextElementId``: the id of a container's label."""
    for entry in element.get("boundElements") or ():
        if isinstance(entry, Mapping) and entry.get("type") == "text":
            value = entry.get("id")
            return value if isinstance(value, str) else None
    return None


def bound_arrow_ids(element: Mapping[str, Any]) -> list[str]:
    return [
        entry["id"]
        for entry in element.get("boundElements") or ()
        if isinstance(entry, Mapping) and entry.get("type") == "arrow"
        if isinstance(entry.get("id"), str)
    ]


def bound_to(element: Mapping[str, Any], key: str) -> str | None:
    """The id an arrow's ``startBinding`` or ``endBinding`` names, if any."""
    binding = element.get(key)
    target = binding.get("elementId") if isinstance(binding, Mapping) else None
    return target if isinstance(target, str) else None
