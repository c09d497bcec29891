"""The shared invariants of a diagram's elements, asserted with messages that say what broke.

Every test of the agents' tools (and of anything else writing elements)
runs :func:`check_diagram` on what the document holds afterwards, and
:func:`check_edit` on what an edit changed. The field list is what
Excalidraw 0.18.1's element constructors write (``agents.elements``
mirrors them): an element missing one is repaired by the editor's
``restoreElements``, which bumps nothing, so peers would disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from agents.elements import COMMON_FIELDS, TYPE_FIELDS, valid_index

Elements = Mapping[str, Mapping[str, Any]]

_NUMBER = (int, float)
_TYPES: dict[str, Any] = {
    "id": str,
    "type": str,
    "x": _NUMBER,
    "y": _NUMBER,
    "width": _NUMBER,
    "height": _NUMBER,
    "angle": _NUMBER,
    "strokeColor": str,
    "backgroundColor": str,
    "fillStyle": str,
    "strokeWidth": _NUMBER,
    "strokeStyle": str,
    "roughness": _NUMBER,
    "opacity": _NUMBER,
    "groupIds": list,
    "frameId": (str, type(None)),
    "index": str,
    "roundness": (dict, type(None)),
    "seed": _NUMBER,
    "version": _NUMBER,
    "versionNonce": _NUMBER,
    "isDeleted": bool,
    "boundElements": (list, type(None)),
    "updated": _NUMBER,
    "link": (str, type(None)),
    "locked": bool,
    "text": str,
    "fontSize": _NUMBER,
    "fontFamily": _NUMBER,
    "textAlign": str,
    "verticalAlign": str,
    "containerId": (str, type(None)),
    "originalText": str,
    "autoResize": bool,
    "lineHeight": _NUMBER,
    "points": list,
    "lastCommittedPoint": (list, type(None)),
    "startBinding": (dict, type(None)),
    "endBinding": (dict, type(None)),
    "startArrowhead": (str, type(None)),
    "endArrowhead": (str, type(None)),
    "elbowed": bool,
    "name": (str, type(None)),
}


def _fields(eid: str, element: Mapping[str, Any]) -> None:
    kind = element.get("type")
    assert kind in TYPE_FIELDS, f"{eid}: unknown type {kind!r}"
    for name in (*COMMON_FIELDS, *TYPE_FIELDS[kind]):
        assert name in element, f"{eid} ({kind}) lacks {name!r}"
        value = element[name]
        assert isinstance(value, _TYPES[name]) and not (
            isinstance(value, bool) and _TYPES[name] is _NUMBER
        ), f"{eid}.{name} = {value!r}: wrong type"
    assert element["id"] == eid, f"key {eid} holds element {element['id']!r}"
    assert valid_index(element["index"]), f"{eid}: invalid index {element['index']!r}"
    for name in ("x", "y", "width", "height"):
        assert element[name] == element[name] and abs(element[name]) < 1e7, f"{eid}.{name}"
    assert element["width"] >= 0 and element["height"] >= 0, f"{eid}: negative size"
    assert all(isinstance(g, str) for g in element["groupIds"]), f"{eid}: groupIds"
    if kind in ("line", "arrow"):
        points = element["points"]
        assert len(points) >= 2, f"{eid}: a {kind} needs two points"
        assert list(points[0]) == [0, 0], f"{eid}: first point {points[0]} is not [0, 0]"
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        assert abs(element["width"] - (max(xs) - min(xs))) < 1e-6, f"{eid}: width vs points"
        assert abs(element["height"] - (max(ys) - min(ys))) < 1e-6, f"{eid}: height vs points"
    if kind == "text":
        lines = element["text"].count("\n") + 1
        expected = lines * element["fontSize"] * element["lineHeight"]
        assert abs(element["height"] - expected) < 1e-6, f"{eid}: height for {lines} lines"


def check_diagram(elements: Elements) -> None:
    """Assert the elements map is one Excalidraw 0.18 takes as it is (tombstones included)."""
    for eid, element in elements.items():
        _fields(eid, element)
    live = {k: v for k, v in elements.items() if not v["isDeleted"]}
    for eid, element in live.items():
        entries = element["boundElements"] or []
        ids = [entry.get("id") for entry in entries]
        assert len(ids) == len(set(ids)), f"{eid}: boundElements lists an id twice: {ids}"
        assert sum(1 for e in entries if e.get("type") == "text") <= 1, f"{eid}: two labels"
        for entry in entries:
            assert set(entry) == {"id", "type"}, f"{eid}: boundElements entry {entry}"
            other = live.get(entry["id"])
            assert other is not None, f"{eid} lists {entry} which is missing or deleted"
            if entry["type"] == "text":
                assert other["type"] == "text", f"{eid}: {entry['id']} is no text"
                assert other["containerId"] == eid, (
                    f"{eid} lists label {entry['id']} whose containerId is {other['containerId']!r}"
                )
            else:
                assert entry["type"] == "arrow", f"{eid}: entry type {entry['type']!r}"
                assert other["type"] == "arrow", f"{eid}: {entry['id']} is a {other['type']}"
                ends = [
                    (b or {}).get("elementId") for b in (other["startBinding"], other["endBinding"])
                ]
                assert eid in ends, f"{eid} lists arrow {entry['id']} bound to {ends}"
        if element["type"] == "text" and element["containerId"] is not None:
            container = live.get(element["containerId"])
            assert container is not None, f"label {eid}'s container is missing or deleted"
            listed = [e["id"] for e in container["boundElements"] or [] if e["type"] == "text"]
            assert listed == [eid], f"label {eid}: its container lists {listed}"
            assert container["type"] in ("rectangle", "ellipse", "diamond", "arrow")
            _inside(eid, element, container)
        if element["type"] in ("line", "arrow"):
            for key in ("startBinding", "endBinding"):
                binding = element[key]
                if binding is None:
                    continue
                assert element["type"] == "arrow", f"line {eid} has a {key}"
                assert {"elementId", "focus", "gap"} <= set(binding), f"{eid}.{key} = {binding}"
                target = live.get(binding["elementId"])
                assert target is not None, f"{eid}.{key} names a missing or deleted element"
                listed = [e["id"] for e in target["boundElements"] or [] if e["type"] == "arrow"]
                assert eid in listed, f"{eid} is bound to {target['id']} which does not list it"
        if element["frameId"] is not None:
            frame = live.get(element["frameId"])
            assert frame is not None and frame["type"] == "frame", f"{eid}: frameId not a frame"
    _order(elements)


def _inside(eid: str, text: Mapping[str, Any], container: Mapping[str, Any]) -> None:
    if container["type"] == "arrow":
        return
    slack = 0.5
    assert text["x"] >= container["x"] - slack, f"label {eid} sticks out left"
    assert text["y"] >= container["y"] - slack, f"label {eid} sticks out at the top"
    assert text["x"] + text["width"] <= container["x"] + container["width"] + slack, (
        f"label {eid} sticks out right"
    )
    assert text["y"] + text["height"] <= container["y"] + container["height"] + slack, (
        f"label {eid} sticks out at the bottom"
    )


def _order(elements: Elements) -> None:
    order = sorted(elements, key=lambda k: elements[k]["index"])
    indices = [elements[k]["index"] for k in order]
    assert len(set(indices)) == len(indices), "two elements share an index"
    live = [k for k in order if not elements[k]["isDeleted"]]
    for position, eid in enumerate(live):
        container = elements[eid].get("containerId")
        if container is not None:
            assert position > 0 and live[position - 1] == container, (
                f"label {eid} is not right above its container {container} in z-order"
            )


def check_edit(before: Elements, after: Elements, changed_ids: Iterable[str]) -> None:
    """Each changed element that existed is a newer version: version up, new nonce, new time."""
    for eid in changed_ids:
        new = after[eid]
        old = before.get(eid)
        if old is None:
            assert new["version"] >= 1, f"new element {eid} has version {new['version']}"
            continue
        assert new["version"] > old["version"], f"{eid}: version did not increase"
        assert new["versionNonce"] != old["versionNonce"], f"{eid}: versionNonce unchanged"
        assert new["updated"] > old["updated"], f"{eid}: updated did not move"
