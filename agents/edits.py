"""The drawing operations: pure functions from the diagram's elements to an :class:`Edit`.

Each takes the document's current ``elements`` map (id -> element JSON,
tombstones included), never changes it, and returns the complete new JSON
of every element it touches: the caller writes those into the Yjs map in one
transaction. Every operation checks everything before it builds anything,
so it either succeeds whole or raises :class:`EditError` with a message an
agent can act on (which id, what is wrong, what to do instead).

Bindings are kept both ways, as Excalidraw does: a label's ``containerId``
and its container's ``boundElements`` entry; an arrow's
``startBinding``/``endBinding`` and the shape's ``{type: "arrow"}`` entry.
Moving or resizing a shape re-centres its label and re-routes its arrows;
deleting one takes its label with it and unbinds its arrows.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator, Mapping, Sequence
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from agents import elements as el
from agents import text as tx
from agents.elements import Clock, Element, Elements
from agents.layout import layer_gap, node_size, place
from agents.specs import (
    LABELLED,
    LINEAR,
    MAX_ELEMENTS,
    Alignment,
    Axis,
    Direction,
    EdgeSpec,
    ElementUpdate,
    NodeSpec,
    ShapeSpec,
)

__all__ = [
    "Clock",
    "Edit",
    "EditError",
    "align",
    "create_elements",
    "delete_elements",
    "distribute",
    "group",
    "layout",
    "ungroup",
    "update_elements",
]

Model = TypeVar("Model", bound=BaseModel)


class EditError(ValueError):
    """The request cannot be carried out; nothing was changed. The message says why."""


@dataclass
class Edit:
    """What an operation did: the new JSON of each element it touched."""

    changed: dict[str, dict[str, Any]] = field(default_factory=dict)
    created: list[str] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    #: Where the agent's pointer should go: the centre of what was drawn or changed.
    focus: tuple[float, float] | None = None


class _Draft:
    """Working copies over the untouched input; :meth:`finish` stamps each change once."""

    def __init__(self, elements: Elements, clock: Clock) -> None:
        # Other peers may have written anything: only objects are elements, but
        # every key stays taken.
        self.base: dict[str, Mapping[str, Any]] = {
            k: v for k, v in elements.items() if type(v) is dict or isinstance(v, Mapping)
        }
        self.taken = frozenset(elements)
        self.clock = clock
        self.work: dict[str, Element] = {}
        self.created: list[str] = []
        self.deleted: list[str] = []
        self._keys: list[str] | None = None  # sorted indices, once key_above needs them

    def get(self, eid: str) -> Mapping[str, Any] | None:
        return self.work.get(eid, self.base.get(eid))

    def live(self, eid: str) -> Mapping[str, Any] | None:
        """The element when it is live and well-formed (others are left alone)."""
        element = self.get(eid)
        if not el.is_live(element) or el.problem(element) is not None:
            return None
        return element

    def edit(self, eid: str) -> Element:
        """A mutable copy of ``eid``, recorded as changed."""
        if eid not in self.work:
            self.work[eid] = deepcopy(dict(self.base[eid]))
        return self.work[eid]

    def add(self, element: Element) -> None:
        self.work[element["id"]] = element
        self.created.append(element["id"])
        if self._keys is not None and isinstance(element["index"], str):
            bisect.insort(self._keys, element["index"])

    def key_above(self, eid: str) -> str:
        """A fresh index just above ``eid``'s (below whatever was next): a new label's."""
        if self._keys is None:
            self._keys = sorted(
                k
                for k in (e.get("index") for e in {**self.base, **self.work}.values())
                if isinstance(k, str) and el.valid_index(k)
            )
        mine = self.get(eid)
        lower = mine.get("index") if mine is not None else None
        if not (isinstance(lower, str) and el.valid_index(lower)):  # then on top
            return el.index_between(self._keys[-1] if self._keys else None, None)
        position = bisect.bisect_right(self._keys, lower)
        upper = self._keys[position] if position < len(self._keys) else None
        return el.index_between(lower, upper)

    def finish(self, focus_ids: Iterable[str] | None = None) -> Edit:
        changed: dict[str, dict[str, Any]] = {}
        for eid, element in self.work.items():
            before = self.base.get(eid)
            if before is not None and dict(before) == element:
                continue
            if before is not None:
                el.stamp(element, before, self.clock)
            changed[eid] = element
        ids = list(focus_ids) if focus_ids is not None else list(changed)
        shown = [changed.get(i) or self.get(i) for i in ids]
        box = el.bounds(e for e in shown if e is not None and not e.get("isDeleted"))
        focus = None if box is None else ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
        return Edit(changed, self.created, [d for d in self.deleted if d in changed], focus)


# -- validation helpers ------------------------------------------------------------


def _parse(model: type[Model], items: Any, what: str) -> list[Model]:
    if isinstance(items, str | bytes) or not isinstance(items, Sequence):
        raise EditError(f"{what} must be a list")
    if len(items) > MAX_ELEMENTS:
        raise EditError(
            f"at most {MAX_ELEMENTS} {what} per call, got {len(items)}: split the request"
        )
    parsed: list[Model] = []
    for n, item in enumerate(items):
        if isinstance(item, model):
            parsed.append(item)
            continue
        try:
            parsed.append(model.model_validate(item))
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
                for e in exc.errors()[:5]
            )
            raise EditError(f"{what}[{n}] is invalid: {problems}") from None
    return parsed


def _ids(ids: Any, what: str = "ids", minimum: int = 1) -> list[str]:
    if isinstance(ids, str | bytes) or not isinstance(ids, Sequence):
        raise EditError(f"{what} must be a list of element ids")
    if len(ids) > MAX_ELEMENTS:
        raise EditError(f"at most {MAX_ELEMENTS} {what} per call, got {len(ids)}")
    if not all(isinstance(i, str) for i in ids):
        raise EditError(f"{what} must be strings")
    unique = list(dict.fromkeys(ids))
    if len(unique) < minimum:
        raise EditError(f"give at least {minimum} distinct element ids")
    return unique


def _require_live(draft: _Draft, eid: str) -> Mapping[str, Any]:
    element = draft.get(eid)
    if element is None:
        raise EditError(f"no element {eid!r} in the diagram")
    if element.get("isDeleted"):
        raise EditError(f"element {eid!r} was deleted")
    problem = el.problem(element)
    if problem is not None:
        raise EditError(f"element {eid!r} cannot be edited here: {problem}")
    return element


def _without(element: Mapping[str, Any], eid: str) -> list[Any]:
    """The element's ``boundElements`` less ``eid``'s entry."""
    return [
        e
        for e in element.get("boundElements") or []
        if isinstance(e, Mapping) and e.get("id") != eid
    ]


def _a(kind: str) -> str:
    return f"an {kind}" if kind[:1] in "aeiou" else f"a {kind}"


def _is_label(element: Mapping[str, Any]) -> bool:
    return element.get("type") == "text" and bool(element.get("containerId"))


# -- following: labels and arrows track their shapes -------------------------------


def _refit(draft: _Draft, container_id: str) -> None:
    """Re-wrap and re-centre a container's label (growing the container if needed)."""
    container = draft.live(container_id)
    text_id = el.bound_text_id(container) if container else None
    if text_id is None or draft.live(text_id) is None:
        return
    mine = draft.edit(container_id)
    text = draft.edit(text_id)
    before = (mine["width"], mine["height"])
    el.fit_label(mine, text)
    if (mine["width"], mine["height"]) != before:
        _reroute_arrows_of(draft, container_id)


def _reroute(draft: _Draft, arrow_id: str) -> None:
    arrow = draft.live(arrow_id)
    if arrow is None or arrow["type"] != "arrow":
        return
    ends = []
    for key in ("startBinding", "endBinding"):
        target = el.bound_to(arrow, key)
        ends.append(draft.live(target) if target is not None else None)
    if ends == [None, None]:
        return
    mine = draft.edit(arrow_id)
    el.route(mine, ends[0], ends[1])
    _refit(draft, arrow_id)


def _reroute_arrows_of(draft: _Draft, shape_id: str) -> None:
    shape = draft.live(shape_id)
    for arrow_id in el.bound_arrow_ids(shape or {}):
        _reroute(draft, arrow_id)


def _moved(
    draft: _Draft, eid: str, dx: float, dy: float, skip: frozenset[str] = frozenset()
) -> None:
    """Move an element and what follows it (label, arrows; a frame's children but ``skip``)."""
    mine = draft.edit(eid)
    mine["x"] = float(mine["x"]) + dx
    mine["y"] = float(mine["y"]) + dy
    _followed(draft, eid)
    if mine["type"] == "frame":
        _move_children(draft, eid, dx, dy, skip)


def _move_children(
    draft: _Draft, frame_id: str, dx: float, dy: float, skip: frozenset[str]
) -> None:
    """A frame's children move with it, as when it is dragged in the editor."""
    if not (dx or dy):
        return
    for eid, element in draft.base.items():
        if element.get("frameId") != frame_id or eid in skip or draft.live(eid) is None:
            continue
        if _is_label(element):
            continue  # it follows its container
        mine = draft.edit(eid)
        mine["x"] = float(mine["x"]) + dx
        mine["y"] = float(mine["y"]) + dy
        _followed(draft, eid)


def _followed(draft: _Draft, eid: str) -> None:
    element = draft.get(eid)
    assert element is not None
    if element["type"] in LINEAR:
        _reroute(draft, eid)
    _refit(draft, eid)
    _reroute_arrows_of(draft, eid)


# -- create -----------------------------------------------------------------------


def create_elements(elements: Elements, specs: Any, clock: Clock) -> Edit:
    """Draw new elements (in order, each on top; a label right above its shape).

    Arrows with ``from``/``to`` are bound to both shapes (which may be made
    in the same call); lines with them just start and end at the outlines.
    """
    parsed = _parse(ShapeSpec, specs, "elements")
    if not parsed:
        raise EditError("give at least one element")
    draft = _Draft(elements, clock)
    return draft.finish(_create(draft, parsed, {}))


def _create(
    draft: _Draft, parsed: list[ShapeSpec], waypoints: Mapping[int, list[tuple[float, float]]]
) -> list[str]:
    """Check and build ``parsed``; ``waypoints`` (by spec position) bend connected lines."""
    ids = _assign_ids(draft, parsed)
    batch = {eid: spec for eid, spec in zip(ids, parsed, strict=True)}
    for eid, spec in batch.items():
        if spec.frame is not None:
            target = batch.get(spec.frame)
            kind = target.type if target else _require_live(draft, spec.frame)["type"]
            if kind != "frame":
                raise EditError(
                    f"element {eid!r}: 'frame' {spec.frame!r} is {_a(kind)}, not a frame"
                )
        for end in (spec.from_, spec.to):
            if end is None:
                continue
            if end in batch:
                kind = batch[end].type
            else:
                target_el = _require_live(draft, end)
                kind = target_el["type"]
                if _is_label(target_el):
                    raise EditError(
                        f"element {eid!r}: {end!r} is the label of {target_el['containerId']!r}; "
                        "connect to the shape instead"
                    )
            if kind not in el.BINDABLE:
                raise EditError(
                    f"element {eid!r}: cannot connect to {end!r}, {_a(kind)} "
                    "(only rectangle, ellipse, diamond, text or frame)"
                )
    keys = _z_slots(draft, batch)
    pending: list[tuple[str, ShapeSpec, list[tuple[float, float]]]] = []
    positions = {eid: n for n, eid in enumerate(batch)}
    for eid in sorted(batch, key=lambda i: batch[i].type == "frame"):
        spec = batch[eid]
        slot = keys[_slot_of(spec, batch)]
        draft.add(_build(draft, eid, spec, next(slot)))
        if spec.type in LINEAR and (spec.from_ or spec.to):
            pending.append((eid, spec, waypoints.get(positions[eid], [])))
        if spec.label:
            _add_label(draft, eid, spec.label, spec, next(slot))
    for eid, spec, bends in pending:
        _connect(draft, eid, spec.from_, spec.to, bind=spec.type == "arrow", bends=bends)
    return ids


def _slot_of(spec: ShapeSpec, batch: Mapping[str, ShapeSpec]) -> str | None:
    """Where a new element goes in z-order: on top (None), or just below an existing
    frame it is put in, as Excalidraw's ``Scene.insertElement`` does."""
    return spec.frame if spec.frame is not None and spec.frame not in batch else None


def _z_slots(draft: _Draft, batch: Mapping[str, ShapeSpec]) -> dict[str | None, Iterator[str]]:
    """Fresh index keys for each slot, enough for its elements and their labels.

    Frames made in the same call go above the other new elements, so children
    made with them sit below them too.
    """
    counts: dict[str | None, int] = {}
    for spec in batch.values():
        slot = _slot_of(spec, batch)
        counts[slot] = counts.get(slot, 0) + (2 if spec.label else 1)
    keys: dict[str | None, Iterator[str]] = {}
    for slot, count in counts.items():
        upper = draft.base[slot].get("index") if slot is not None else None
        if isinstance(upper, str) and el.valid_index(upper):
            keys[slot] = iter(el.indices_between(el.index_below(draft.base, upper), upper, count))
        else:
            keys[slot] = iter(el.indices_above(draft.base, count))
    return keys


def _assign_ids(draft: _Draft, specs: list[ShapeSpec]) -> list[str]:
    ids: list[str] = []
    wanted = {spec.id for spec in specs if spec.id is not None}
    for n, spec in enumerate(specs):
        if spec.id is None:
            eid = el.new_id(draft.clock.random)
            while eid in draft.taken or eid in wanted or eid in ids:
                eid = el.new_id(draft.clock.random)
        else:
            eid = spec.id
            existing = draft.base.get(eid)
            if eid in draft.taken:
                if isinstance(existing, Mapping) and existing.get("isDeleted"):
                    raise EditError(
                        f"elements[{n}]: id {eid!r} belonged to a deleted element; pick another"
                    )
                raise EditError(f"elements[{n}]: id {eid!r} exists already; pick another")
            if eid in ids:
                raise EditError(f"elements[{n}]: id {eid!r} is used twice in this call")
        ids.append(eid)
    return ids


_FONT_KEYS = {"fontSize", "fontFamily", "textAlign"}


def _style(spec: BaseModel) -> dict[str, Any]:
    """The style fields a request gave (element styles, text styles, ``rounded``)."""
    return {
        k: v
        for k, v in spec.model_dump(include=set(el.STYLE_KEYS) | _FONT_KEYS | {"rounded"}).items()
        if v is not None
    }


def _build(draft: _Draft, eid: str, spec: ShapeSpec, index: str) -> Element:
    groups = [spec.group] if spec.group else []
    common: dict[str, Any] = {
        "clock": draft.clock,
        "style": _style(spec),
        "index": index,
        "group_ids": groups,
        "frame_id": spec.frame,
    }
    if spec.type == "text":
        assert spec.text is not None
        return el.new_text(eid, spec.text, x=spec.x, y=spec.y, **common)
    if spec.type in LINEAR:
        points = [(float(p[0]), float(p[1])) for p in spec.points or [(0, 0), (200, 0)]]
        end_head = spec.endArrowhead or ("arrow" if spec.type == "arrow" else None)
        return el.new_linear(
            spec.type,
            eid,
            x=spec.x,
            y=spec.y,
            points=points,
            start_arrowhead=spec.startArrowhead,
            end_arrowhead=end_head,
            **common,
        )
    default_w, default_h = el.DEFAULT_SIZE.get(spec.type, el.DEFAULT_SHAPE_SIZE)
    element = el.base_element(
        spec.type,
        eid,
        x=spec.x,
        y=spec.y,
        width=spec.width or default_w,
        height=spec.height or default_h,
        roundness=el.roundness_for(spec.type, spec.rounded),
        **common,
    )
    if spec.type == "frame":
        element["name"] = spec.name
    return element


def _add_label(
    draft: _Draft, container_id: str, label: str, style_from: BaseModel, index: str
) -> str:
    container = draft.edit(container_id)
    text_id = el.new_id(draft.clock.random)
    while text_id in draft.taken or text_id in draft.work:
        text_id = el.new_id(draft.clock.random)
    style = _style(style_from)
    style.pop("backgroundColor", None)
    text = el.new_text(
        text_id,
        label,
        x=0,
        y=0,
        clock=draft.clock,
        style=style,
        index=index,
        container=container,
        group_ids=container.get("groupIds") or (),
        frame_id=container.get("frameId"),
    )
    container["boundElements"] = [
        *(container.get("boundElements") or []),
        {"type": "text", "id": text_id},
    ]
    el.fit_label(container, text)
    draft.add(text)
    return text_id


def _connect(
    draft: _Draft,
    arrow_id: str,
    start: str | None,
    end: str | None,
    bind: bool,
    bends: list[tuple[float, float]],
) -> None:
    arrow = draft.edit(arrow_id)
    shapes = [draft.get(s) if s else None for s in (start, end)]
    if bends:
        ax, ay = float(arrow["x"]), float(arrow["y"])
        el.set_points(arrow, [[0.0, 0.0], *([bx - ax, by - ay] for bx, by in bends), [1.0, 1.0]])
    el.route(arrow, shapes[0], shapes[1])
    if bind:
        for key, target in (("startBinding", start), ("endBinding", end)):
            if target is None:
                continue
            arrow[key] = el.binding(target)
            shape = draft.edit(target)
            shape["boundElements"] = [*_without(shape, arrow_id), {"id": arrow_id, "type": "arrow"}]
    _refit(draft, arrow_id)


# -- update ------------------------------------------------------------------------


def update_elements(elements: Elements, updates: Any, clock: Clock) -> Edit:
    """Move, resize, restyle or relabel elements; labels and arrows follow their shapes."""
    parsed = _parse(ElementUpdate, updates, "updates")
    if not parsed:
        raise EditError("give at least one update")
    draft = _Draft(elements, clock)
    seen: set[str] = set()
    for n, update in enumerate(parsed):
        element = _require_live(draft, update.id)
        kind = element["type"]
        where = f"updates[{n}] ({update.id!r}, {_a(kind)})"
        if update.id in seen:
            raise EditError(f"{where}: the same id twice in one call; merge the updates")
        seen.add(update.id)
        if _is_label(element):
            raise EditError(
                f"{where} is the label of {element['containerId']!r}: "
                "update that element's 'label' instead"
            )
        if update.label is not None and kind not in LABELLED:
            raise EditError(f"{where}: only rectangle, ellipse, diamond and arrow have labels")
        if update.text is not None:
            if kind != "text":
                raise EditError(f"{where}: 'text' is for text elements; use 'label'")
            if not update.text.strip():
                raise EditError(f"{where}: text cannot be empty; delete the element instead")
        if kind == "text" and (update.width is not None or update.height is not None):
            raise EditError(f"{where}: text sizes itself; set fontSize instead of width/height")
        if update.name is not None and kind != "frame":
            raise EditError(f"{where}: 'name' is for frames only")
        heads = (update.startArrowhead, update.endArrowhead)
        if kind not in LINEAR and any(h is not None for h in heads):
            raise EditError(f"{where}: arrowheads are for lines and arrows only")
    moving = frozenset(u.id for u in parsed if u.x is not None or u.y is not None)
    for update in parsed:
        _apply_update(draft, update, moving)
    return draft.finish([u.id for u in parsed])


def _apply_update(draft: _Draft, update: ElementUpdate, moving: frozenset[str]) -> None:
    eid = update.id
    mine = draft.edit(eid)
    kind = mine["type"]
    style = {k: v for k, v in _style(update).items() if k in el.STYLE_KEYS}
    mine.update(style)
    if update.rounded is not None:
        mine["roundness"] = el.roundness_for(kind, update.rounded)
    if update.name is not None:
        mine["name"] = update.name
    for key, head in (
        ("startArrowhead", update.startArrowhead),
        ("endArrowhead", update.endArrowhead),
    ):
        if head is not None:
            mine[key] = None if head == "none" else head
    if kind in LINEAR and (update.width is not None or update.height is not None):
        points = mine["points"]
        sx = (update.width / mine["width"]) if update.width and mine["width"] else 1.0
        sy = (update.height / mine["height"]) if update.height and mine["height"] else 1.0
        el.set_points(mine, [[p[0] * sx, p[1] * sy] for p in points])
    elif update.width is not None or update.height is not None:
        mine["width"] = update.width if update.width is not None else mine["width"]
        mine["height"] = update.height if update.height is not None else mine["height"]
    dx = dy = 0.0
    if update.x is not None:
        dx, mine["x"] = update.x - float(mine["x"]), update.x
    if update.y is not None:
        dy, mine["y"] = update.y - float(mine["y"]), update.y
    if kind == "frame":
        _move_children(draft, eid, dx, dy, moving)
    fonts = {k: v for k, v in _style(update).items() if k in _FONT_KEYS}
    if kind == "text":
        _restyle_text(mine, fonts, update.text)
    text_id = el.bound_text_id(mine)
    if text_id is not None and draft.live(text_id) is not None:
        text = draft.edit(text_id)
        if update.label == "":
            text["isDeleted"] = True
            draft.deleted.append(text_id)
            mine["boundElements"] = _without(mine, text_id)
        else:
            if update.strokeColor is not None:
                text["strokeColor"] = update.strokeColor
            _restyle_text(text, fonts, None)
            if update.label is not None:
                text["originalText"] = tx.normalize_text(update.label)
                text["text"] = text["originalText"]
    elif update.label:
        spec_style = update.model_copy(update={"backgroundColor": None})
        _add_label(draft, eid, update.label, spec_style, draft.key_above(eid))
    _followed(draft, eid)


def _restyle_text(text: Element, fonts: Mapping[str, Any], new_text: str | None) -> None:
    if "fontSize" in fonts:
        text["fontSize"] = float(fonts["fontSize"])
    if "fontFamily" in fonts:
        text["fontFamily"] = tx.FONT_FAMILIES[fonts["fontFamily"]]
        text["lineHeight"] = tx.LINE_HEIGHTS[text["fontFamily"]]
    if "textAlign" in fonts:
        text["textAlign"] = fonts["textAlign"]
    if new_text is not None:
        text["originalText"] = text["text"] = tx.normalize_text(new_text)
    if not text.get("containerId"):
        text["width"], text["height"] = tx.measure(
            text["text"],
            float(text["fontSize"]),
            float(text["lineHeight"]),
            int(text["fontFamily"]),
        )


# -- delete ------------------------------------------------------------------------


def delete_elements(elements: Elements, ids: Any, clock: Clock) -> Edit:
    """Delete elements (as tombstones); labels go with their shapes, frames with their
    children (as in Excalidraw), and arrows bound to a deleted shape are unbound."""
    wanted = _ids(ids)
    draft = _Draft(elements, clock)
    for eid in wanted:
        _require_live(draft, eid)
    doomed = set(wanted)
    for eid in wanted:
        element = draft.get(eid)
        assert element is not None
        if element["type"] == "frame":
            doomed |= {
                k for k, v in draft.base.items() if el.is_live(v) and v.get("frameId") == eid
            }
    for eid in list(doomed):
        text_id = el.bound_text_id(draft.get(eid) or {})
        if text_id is not None and draft.live(text_id) is not None:
            doomed.add(text_id)
    for eid in el.z_order({k: draft.base[k] for k in doomed}):
        mine = draft.edit(eid)
        mine["isDeleted"] = True
        draft.deleted.append(eid)
        container_id = mine.get("containerId")
        if (
            isinstance(container_id, str)
            and container_id not in doomed
            and draft.live(container_id)
        ):
            container = draft.edit(container_id)
            container["boundElements"] = _without(container, eid)
        for key in ("startBinding", "endBinding"):
            target = el.bound_to(mine, key)
            if target is not None and target not in doomed and draft.live(target):
                shape = draft.edit(target)
                shape["boundElements"] = _without(shape, eid)
        for arrow_id in el.bound_arrow_ids(mine):
            if arrow_id in doomed or draft.live(arrow_id) is None:
                continue
            arrow = draft.edit(arrow_id)
            for key in ("startBinding", "endBinding"):
                if el.bound_to(arrow, key) == eid:
                    arrow[key] = None
    edit = draft.finish(wanted)
    box = el.bounds(draft.base[i] for i in wanted)
    edit.focus = None if box is None else ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)
    return edit


# -- groups ------------------------------------------------------------------------


def group(elements: Elements, ids: Any, clock: Clock, group_id: str | None = None) -> Edit:
    """Put elements (with their labels) in a new group, the outermost of each."""
    wanted = _ids(ids, minimum=2)
    draft = _Draft(elements, clock)
    members = _with_labels(draft, wanted)
    gid = group_id or el.new_id(clock.random)
    if any(gid in (e.get("groupIds") or []) for e in draft.base.values()):
        raise EditError(f"group {gid!r} exists already")
    for eid in members:
        mine = draft.edit(eid)
        mine["groupIds"] = [*(mine.get("groupIds") or []), gid]
    return draft.finish(wanted)


def ungroup(elements: Elements, ids: Any, clock: Clock) -> Edit:
    """Dissolve groups: each id is a group id, or an element whose outermost group goes."""
    wanted = _ids(ids)
    draft = _Draft(elements, clock)
    groups: list[str] = []
    live = {k: v for k, v in draft.base.items() if el.is_live(v) and el.problem(v) is None}
    for eid in wanted:
        if any(eid in (v.get("groupIds") or []) for v in live.values()):
            groups.append(eid)
            continue
        element = _require_live(draft, eid)
        own = element.get("groupIds") or []
        if not own:
            raise EditError(f"element {eid!r} is in no group")
        groups.append(own[-1])
    touched: list[str] = []
    for eid, element in live.items():
        if any(g in (element.get("groupIds") or []) for g in groups):
            mine = draft.edit(eid)
            mine["groupIds"] = [g for g in mine.get("groupIds") or [] if g not in groups]
            touched.append(eid)
    return draft.finish(touched)


def _with_labels(draft: _Draft, ids: list[str]) -> list[str]:
    out: list[str] = []
    for eid in ids:
        element = _require_live(draft, eid)
        if _is_label(element):
            raise EditError(f"{eid!r} is the label of {element['containerId']!r}; use that id")
        out.append(eid)
        text_id = el.bound_text_id(element)
        if text_id is not None and draft.live(text_id) is not None:
            out.append(text_id)
    return out


# -- align and distribute ----------------------------------------------------------


def _movable(draft: _Draft, ids: list[str]) -> dict[str, tuple[float, float, float, float]]:
    boxes: dict[str, tuple[float, float, float, float]] = {}
    for eid in ids:
        element = _require_live(draft, eid)
        if _is_label(element):
            raise EditError(f"{eid!r} is the label of {element['containerId']!r}; use that id")
        boxes[eid] = el.box(element)
    return boxes


def align(elements: Elements, ids: Any, how: Alignment, clock: Clock) -> Edit:
    """Line elements up on the selection's left/centre/right or top/middle/bottom."""
    wanted = _ids(ids, minimum=2)
    if how not in ("left", "center", "right", "top", "middle", "bottom"):
        raise EditError(f"unknown alignment {how!r}: left, center, right, top, middle or bottom")
    draft = _Draft(elements, clock)
    boxes = _movable(draft, wanted)
    x1 = min(b[0] for b in boxes.values())
    y1 = min(b[1] for b in boxes.values())
    x2 = max(b[2] for b in boxes.values())
    y2 = max(b[3] for b in boxes.values())
    for eid, (bx1, by1, bx2, by2) in boxes.items():
        dx = dy = 0.0
        if how == "left":
            dx = x1 - bx1
        elif how == "right":
            dx = x2 - bx2
        elif how == "center":
            dx = (x1 + x2) / 2 - (bx1 + bx2) / 2
        elif how == "top":
            dy = y1 - by1
        elif how == "bottom":
            dy = y2 - by2
        else:
            dy = (y1 + y2) / 2 - (by1 + by2) / 2
        if dx or dy:
            _moved(draft, eid, dx, dy, frozenset(boxes))
    return draft.finish(wanted)


def distribute(elements: Elements, ids: Any, axis: Axis, clock: Clock) -> Edit:
    """Equal gaps between elements along an axis (the outermost two stay put)."""
    wanted = _ids(ids, minimum=3)
    if axis not in ("horizontal", "vertical"):
        raise EditError(f"unknown axis {axis!r}: horizontal or vertical")
    draft = _Draft(elements, clock)
    boxes = _movable(draft, wanted)
    lo, hi = (0, 2) if axis == "horizontal" else (1, 3)
    order = sorted(boxes, key=lambda i: (boxes[i][lo] + boxes[i][hi]) / 2)
    start = min(b[lo] for b in boxes.values())
    end = max(b[hi] for b in boxes.values())
    sizes = sum(boxes[i][hi] - boxes[i][lo] for i in order)
    gap = (end - start - sizes) / (len(order) - 1)
    cursor = start
    for eid in order:
        delta = cursor - boxes[eid][lo]
        if abs(delta) > 1e-9:
            _moved(
                draft, eid, delta if lo == 0 else 0.0, delta if lo == 1 else 0.0, frozenset(boxes)
            )
        cursor += boxes[eid][hi] - boxes[eid][lo] + gap
    return draft.finish(wanted)


# -- layout ------------------------------------------------------------------------


def layout(
    elements: Elements,
    nodes: Any,
    edges: Any,
    clock: Clock,
    direction: Direction = "TB",
    origin: tuple[float, float] = (0.0, 0.0),
) -> Edit:
    """Draw a graph: labelled shapes placed by a layered (Sugiyama) layout, joined by
    bound, labelled arrows. ``origin`` is the top left of the drawing."""
    node_specs = _parse(NodeSpec, nodes, "nodes")
    edge_specs = _parse(EdgeSpec, edges, "edges")
    if not node_specs:
        raise EditError("give at least one node")
    if len(node_specs) + len(edge_specs) > MAX_ELEMENTS:
        raise EditError(f"at most {MAX_ELEMENTS} nodes and edges per call: split the graph")
    if direction not in ("TB", "LR"):
        raise EditError(f"unknown direction {direction!r}: TB or LR")
    names = [n.id for n in node_specs]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise EditError(f"node {dup!r} is given twice")
    given = names + [e.id for e in edge_specs if e.id is not None]
    for eid in given:
        if eid in elements:
            raise EditError(f"id {eid!r} is taken by an element of the diagram; pick another")
        if given.count(eid) > 1:
            raise EditError(f"id {eid!r} is given twice")
    for n, edge in enumerate(edge_specs):
        for end in (edge.from_, edge.to):
            if end not in names:
                raise EditError(f"edges[{n}]: {end!r} is not one of the nodes")
    sizes = {n.id: node_size(n) for n in node_specs}
    pairs = [(e.from_, e.to) for e in edge_specs]
    gap = layer_gap([e.label for e in edge_specs if e.label], direction)
    try:
        centres, paths = place(names, pairs, sizes, direction, gap)
    except ValueError as exc:
        raise EditError(str(exc)) from None
    ox, oy = origin
    bends = [p for path in paths.values() for p in path]
    left = min([centres[i][0] - sizes[i][0] / 2 for i in names] + [p[0] for p in bends])
    top = min([centres[i][1] - sizes[i][1] / 2 for i in names] + [p[1] for p in bends])

    def shift(point: tuple[float, float]) -> tuple[float, float]:
        return (round(ox + point[0] - left, 2), round(oy + point[1] - top, 2))

    specs: list[ShapeSpec] = []
    for node in node_specs:
        w, h = sizes[node.id]
        x, y = shift((centres[node.id][0] - w / 2, centres[node.id][1] - h / 2))
        style = node.model_dump(
            exclude={"id", "label", "type", "width", "height"}, exclude_none=True
        )
        label = {"label": node.label} if node.label else {}
        specs.append(
            ShapeSpec.model_validate(
                {**style, **label, "type": node.type, "id": node.id, "x": x, "y": y}
                | {"width": w, "height": h}
            )
        )
    waypoints: dict[int, list[tuple[float, float]]] = {}
    for edge, pair in zip(edge_specs, pairs, strict=True):
        arrow = edge.model_dump(exclude={"from_"}, exclude_none=True)
        waypoints[len(specs)] = [shift(p) for p in paths.get(pair, [])]
        specs.append(ShapeSpec.model_validate({**arrow, "type": "arrow", "from": edge.from_}))
    draft = _Draft(elements, clock)
    ids = _create(draft, specs, waypoints)
    # the drawing's top left, arrow labels included, goes exactly to the origin
    made = [draft.work[i] for i in draft.created]
    box = el.bounds(made)
    assert box is not None
    dx, dy = ox - box[0], oy - box[1]
    for element in made:
        element["x"] = float(element["x"]) + dx
        element["y"] = float(element["y"]) + dy
    return draft.finish(ids)
