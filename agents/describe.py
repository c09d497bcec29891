"""The diagram as compact text: what an agent reads before it draws.

One line per live element in z-order (bottom first), labels folded into
their shapes, arrows shown as ``A --label--> B`` with the shapes they are
bound to, then frames with their children and groups with their members.
Coordinates are rounded to whole pixels: enough to place things, few tokens.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from agents import elements as el
from agents.elements import Elements
from agents.specs import Area

#: Labels and texts longer than this are cut (with an ellipsis) in the listing.
MAX_TEXT = 80


def _quote(text: str) -> str:
    flat = " ".join(text.split())
    if len(flat) > MAX_TEXT:
        flat = flat[: MAX_TEXT - 1] + "…"
    return '"' + flat.replace('"', "'") + '"'


def label_of(elements: Elements, element: Mapping[str, Any]) -> str | None:
    """A container's label (its unwrapped text), a text element's text, a frame's name."""
    if element.get("type") == "text":
        return str(element.get("originalText") or element.get("text") or "")
    if element.get("type") == "frame":
        name = element.get("name")
        return name if isinstance(name, str) else None
    text_id = el.bound_text_id(element)
    text = elements.get(text_id) if text_id else None
    if text is None or text.get("isDeleted"):
        return None
    return str(text.get("originalText") or text.get("text") or "")


def _ref(elements: Elements, eid: Any) -> str:
    if not isinstance(eid, str):
        return "(free)"
    target = elements.get(eid)
    if target is None or target.get("isDeleted"):
        return f"{eid}(gone)"
    label = label_of(elements, target)
    return f"{eid} {_quote(label)}" if label else eid


def _geometry(element: Mapping[str, Any]) -> str:
    return (
        f"at {round(float(element['x']))},{round(float(element['y']))} "
        f"size {round(float(element['width']))}x{round(float(element['height']))}"
    )


def element_summary(elements: Elements, element: Mapping[str, Any]) -> str:
    """One line for one element: id, type, label or text, position and size, extras."""
    eid, kind = element["id"], element["type"]
    if kind in ("arrow", "line"):
        start = element.get("startBinding")
        end = element.get("endBinding")
        label = label_of(elements, element)
        link = f"--{_quote(label)}-->" if label else "-->"
        if kind == "line":
            link = link.replace(">", "")
        text = (
            f"{eid} {kind}: "
            f"{_ref(elements, start.get('elementId') if isinstance(start, Mapping) else None)} "
            f"{link} "
            f"{_ref(elements, end.get('elementId') if isinstance(end, Mapping) else None)} "
            f"{_geometry(element)}"
        )
    else:
        label = label_of(elements, element)
        shown = f" {_quote(label)}" if label else ""
        text = f"{eid} {kind}{shown} {_geometry(element)}"
    extras = []
    if element.get("frameId"):
        extras.append(f"in frame {element['frameId']}")
    if element.get("groupIds"):
        extras.append("groups " + ",".join(str(g) for g in element["groupIds"]))
    if element.get("backgroundColor") not in (None, "transparent"):
        extras.append(f"fill {element['backgroundColor']}")
    if element.get("locked"):
        extras.append("locked")
    return text + (f" ({'; '.join(extras)})" if extras else "")


def _intersects(element: Mapping[str, Any], area: Area) -> bool:
    x1, y1, x2, y2 = el.box(element)
    return not (x2 < area.x or y2 < area.y or x1 > area.x + area.width or y1 > area.y + area.height)


def describe(elements: Elements, *, area: Area | None = None, revision: int | None = None) -> str:
    """The diagram (or the part of it in ``area``) as text, bottom of the z-order first."""
    present = {
        k: v for k, v in elements.items() if not (isinstance(v, Mapping) and v.get("isDeleted"))
    }
    live = {k: v for k, v in present.items() if el.problem(v) is None}
    malformed = len(present) - len(live)
    shown = [
        eid
        for eid in el.z_order(live)
        if not (live[eid].get("type") == "text" and live[eid].get("containerId") in live)
        and (area is None or _intersects(live[eid], area))
    ]
    head = f"{len(shown)} element{'s' if len(shown) != 1 else ''}"
    if area is not None:
        head += (
            f" in area {round(area.x)},{round(area.y)} "
            f"size {round(area.width)}x{round(area.height)} (of {len(live)})"
        )
    if malformed:
        head += f" ({malformed} malformed not shown)"
    if revision is not None:
        head += f", revision {revision}"
    box = el.bounds(live[eid] for eid in shown)
    if box is not None:
        head += f", bounds {round(box[0])},{round(box[1])} to {round(box[2])},{round(box[3])}"
    lines = [head]
    lines += [element_summary(live, live[eid]) for eid in shown]
    frames = [eid for eid in shown if live[eid]["type"] == "frame"]
    for fid in frames:
        children = [e for e in el.z_order(live) if live[e].get("frameId") == fid]
        children = [e for e in children if not live[e].get("containerId")]
        lines.append(f"frame {fid}: {', '.join(children) if children else '(empty)'}")
    groups: dict[str, list[str]] = {}
    for eid in shown:
        for gid in live[eid].get("groupIds") or []:
            if isinstance(gid, str):
                groups.setdefault(gid, []).append(eid)
    for gid, members in groups.items():
        lines.append(f"group {gid}: {', '.join(members)}")
    return "\n".join(lines)
