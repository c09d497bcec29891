"""The agents' element model: every operation, checked by the shared diagram checker.

In-process and quick: plain dicts in, plain dicts out. Hypothesis drives
random sequences of creates, updates and deletes (the checker must hold
after each) and hostile requests (each must raise EditError and change
nothing). The browser test at the end shows Excalidraw 0.18 itself takes
what the operations make without repairing it.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from agents import edits
from agents.describe import describe
from agents.edits import Edit, EditError
from agents.elements import Clock, bound_text_id, bounds, box, problem
from agents.specs import Area, ShapeSpec
from tests.diagram_checker import check_diagram, check_edit

Elements = dict[str, dict[str, Any]]


class StepClock(Clock):
    """A seeded clock whose time moves 1 ms at every reading."""

    def __init__(self, seed: int = 1, start: int = 1_700_000_000_000) -> None:
        super().__init__(random.Random(seed))
        self.now = start

    def now_ms(self) -> int:
        self.now += 1
        return self.now


def apply(elements: Elements, edit: Edit) -> Elements:
    """What the server does with an edit: write each changed element into the map."""
    after = {**copy.deepcopy(elements), **copy.deepcopy(edit.changed)}
    check_diagram(after)
    check_edit(elements, after, edit.changed)
    return after


def build(clock: Clock | None = None) -> tuple[Elements, Clock]:
    clock = clock or StepClock()
    edit = edits.create_elements(
        {},
        [
            {"type": "rectangle", "id": "a", "x": 0, "y": 0, "label": "Alpha"},
            {"type": "ellipse", "id": "b", "x": 400, "y": 0, "label": "Beta"},
            {"type": "diamond", "id": "c", "x": 0, "y": 300, "label": "Gamma"},
            {"type": "arrow", "id": "ab", "from": "a", "to": "b", "label": "calls"},
            {"type": "arrow", "id": "ac", "from": "a", "to": "c"},
            {"type": "text", "id": "t", "x": 600, "y": 300, "text": "a note"},
        ],
        clock,
    )
    return apply({}, edit), clock


def label(elements: Elements, eid: str) -> dict[str, Any]:
    text_id = bound_text_id(elements[eid])
    assert text_id is not None, f"{eid} has no label"
    return elements[text_id]


# -- create ------------------------------------------------------------------------


def test_create_writes_every_field_and_binds_both_ways() -> None:
    elements, _ = build()
    assert len(elements) == 10  # six elements and four labels
    alpha = label(elements, "a")
    assert alpha["originalText"] == "Alpha" and alpha["containerId"] == "a"
    assert (alpha["textAlign"], alpha["verticalAlign"]) == ("center", "middle")
    ab = elements["ab"]
    assert ab["startBinding"]["elementId"] == "a" and ab["endBinding"]["elementId"] == "b"
    assert {"id": "ab", "type": "arrow"} in elements["a"]["boundElements"]
    assert {"id": "ab", "type": "arrow"} in elements["b"]["boundElements"]
    assert ab["endArrowhead"] == "arrow" and ab["startArrowhead"] is None
    assert ab["elbowed"] is False
    # the arrow runs from a's right edge to b's left edge, just outside both
    assert 160 < ab["x"] < 170 and 390 < ab["x"] + ab["points"][-1][0] < 400
    assert elements["t"]["containerId"] is None and elements["t"]["text"] == "a note"
    assert all(e["version"] == 1 for e in elements.values())
    # new elements go on top, in order: a's label right above a
    order = sorted(elements, key=lambda k: elements[k]["index"])
    assert order[:2] == ["a", alpha["id"]]


def test_labels_wrap_to_the_container_and_grow_it() -> None:
    clock = StepClock()
    long = "a long label that cannot possibly fit on one line of a small box"
    edit = edits.create_elements(
        {}, [{"type": "rectangle", "id": "r", "width": 120, "height": 40, "label": long}], clock
    )
    elements = apply({}, edit)
    text = label(elements, "r")
    assert text["text"].count("\n") >= 3 and text["originalText"] == long
    assert text["text"].replace("\n", " ") == long
    assert elements["r"]["height"] > 40  # grown to hold the lines, like Excalidraw
    assert elements["r"]["width"] == 120


def test_new_elements_go_above_existing_ones_and_ids_are_never_reused() -> None:
    elements, clock = build()
    top = max(e["index"] for e in elements.values())
    elements = apply(elements, edits.delete_elements(elements, ["t"], clock))
    edit = edits.create_elements(elements, [{"type": "rectangle"}], clock)
    (new,) = edit.created
    assert edit.changed[new]["index"] > top
    with pytest.raises(EditError, match="deleted element"):
        edits.create_elements(elements, [{"type": "rectangle", "id": "t"}], clock)
    with pytest.raises(EditError, match="exists already"):
        edits.create_elements(elements, [{"type": "rectangle", "id": "a"}], clock)


def test_lines_connect_without_binding_and_frames_hold_children() -> None:
    elements, clock = build()
    edit = edits.create_elements(
        elements,
        [
            {"type": "frame", "id": "f", "x": -600, "y": 0, "name": "Zone"},
            {"type": "rectangle", "id": "in", "x": -560, "y": 40, "frame": "f", "label": "x"},
            {"type": "line", "id": "l", "from": "a", "to": "c"},
            {"type": "arrow", "id": "free", "x": 0, "y": 600, "points": [[0, 0], [100, 50]]},
        ],
        clock,
    )
    elements = apply(elements, edit)
    assert elements["l"]["startBinding"] is None and elements["l"]["endBinding"] is None
    assert not any(e["id"] == "l" for e in elements["a"]["boundElements"])
    assert elements["in"]["frameId"] == "f" and label(elements, "in")["frameId"] == "f"
    assert elements["f"]["name"] == "Zone" and elements["f"]["roughness"] == 0
    # children sit below their frame, as the editor inserts them
    assert elements["in"]["index"] < elements["f"]["index"]
    later = apply(
        elements,
        edits.create_elements(
            elements, [{"type": "ellipse", "id": "late", "frame": "f", "label": "L"}], clock
        ),
    )
    below = sorted(k for k in later if later[k]["index"] < later["f"]["index"])
    assert "late" in below and later["late"]["index"] > elements["in"]["index"]
    assert later[bound_text_id(later["late"]) or ""]["index"] < later["f"]["index"]
    assert (elements["free"]["width"], elements["free"]["height"]) == (100, 50)


def test_group_in_one_call() -> None:
    edit = edits.create_elements(
        {},
        [
            {"type": "rectangle", "id": "a", "group": "g1", "label": "A"},
            {"type": "rectangle", "id": "b", "x": 200, "group": "g1"},
        ],
        StepClock(),
    )
    elements = apply({}, edit)
    assert elements["a"]["groupIds"] == ["g1"] == elements["b"]["groupIds"]
    assert label(elements, "a")["groupIds"] == ["g1"]


# -- update ------------------------------------------------------------------------


def test_moving_a_shape_brings_its_label_and_arrows() -> None:
    elements, clock = build()
    before_label = label(elements, "a")
    edit = edits.update_elements(elements, [{"id": "a", "x": 100, "y": 500}], clock)
    after = apply(elements, edit)
    moved = label(after, "a")
    assert (moved["x"] - before_label["x"], moved["y"] - before_label["y"]) == pytest.approx(
        (100, 500)
    )
    assert {"a", moved["id"], "ab", "ac"} <= set(edit.changed)
    # the arrow still starts at a's outline (now lower) and ends at b's
    ab = after["ab"]
    assert ab["startBinding"]["elementId"] == "a"
    assert 494 < ab["y"] < 500  # a's top edge, less the binding gap
    end_x, end_y = ab["x"] + ab["points"][-1][0], ab["y"] + ab["points"][-1][1]
    assert 0 < end_y < 90 and 400 < end_x < 560  # at b's outline
    assert edit.focus is not None and edit.focus == (180.0, 540.0)


def test_relabel_restyle_resize() -> None:
    elements, clock = build()
    old = label(elements, "a")
    after = apply(
        elements,
        edits.update_elements(
            elements,
            [
                {"id": "a", "label": "Renamed", "strokeColor": "#e03131", "width": 300},
                {"id": "b", "label": ""},
                {"id": "c", "fontSize": 36, "backgroundColor": "#a5d8ff"},
                {"id": "ac", "label": "new label", "endArrowhead": "none"},
                {"id": "t", "text": "changed\nnote"},
            ],
            clock,
        ),
    )
    new = label(after, "a")
    assert new["id"] == old["id"] and new["originalText"] == "Renamed"
    assert new["strokeColor"] == "#e03131" and after["a"]["width"] == 300
    assert new["x"] + new["width"] / 2 == pytest.approx(150)  # centred in the wider box
    assert bound_text_id(after["b"]) is None
    assert after[bound_text_id(elements["b"]) or ""]["isDeleted"] is True
    assert label(after, "c")["fontSize"] == 36 and after["c"]["backgroundColor"] == "#a5d8ff"
    assert label(after, "ac")["originalText"] == "new label"
    assert after["ac"]["endArrowhead"] is None
    assert after["t"]["text"] == "changed\nnote" and after["t"]["height"] == 50


def test_updates_are_checked_first() -> None:
    elements, clock = build()
    frozen = copy.deepcopy(elements)
    cases = [
        ([{"id": "nope", "x": 1}], "no element 'nope'"),
        ([{"id": "a", "x": 1}, {"id": "l", "x": 1}], "no element 'l'"),
        ([{"id": "t", "label": "x"}], "only rectangle, ellipse, diamond and arrow"),
        ([{"id": "a", "text": "x"}], "use 'label'"),
        ([{"id": label(elements, "a")["id"], "x": 5}], "update that element's 'label'"),
        ([{"id": "t", "width": 50}], "text sizes itself"),
        ([{"id": "a", "startArrowhead": "arrow"}], "lines and arrows only"),
        ([{"id": "a", "colour": "red"}], "Extra inputs are not permitted"),
        ([{"id": "a", "x": 1}, {"id": "a", "y": 1}], "same id twice"),
    ]
    for updates, message in cases:
        with pytest.raises(EditError, match=message):
            edits.update_elements(elements, updates, clock)
    assert elements == frozen


# -- delete ------------------------------------------------------------------------


def test_delete_takes_labels_and_unbinds_arrows() -> None:
    elements, clock = build()
    edit = edits.delete_elements(elements, ["b"], clock)
    after = apply(elements, edit)
    b_label = bound_text_id(elements["b"])
    assert after["b"]["isDeleted"] and after[b_label or ""]["isDeleted"]
    assert set(edit.deleted) == {"b", b_label}
    assert after["ab"]["endBinding"] is None and after["ab"]["startBinding"] is not None
    assert not after["ab"]["isDeleted"]
    # deleting an arrow removes it from its shapes' lists
    after2 = apply(after, edits.delete_elements(after, ["ab"], clock))
    assert all(e["id"] != "ab" for e in after2["a"]["boundElements"] or [])
    with pytest.raises(EditError, match="was deleted"):
        edits.delete_elements(after2, ["b"], clock)


def test_a_frame_moves_its_children() -> None:
    clock = StepClock()
    elements = apply(
        {},
        edits.create_elements(
            {},
            [
                {"type": "frame", "id": "f", "x": 0, "y": 0},
                {"type": "rectangle", "id": "r", "x": 20, "y": 20, "frame": "f", "label": "in"},
                {"type": "rectangle", "id": "s", "x": 200, "y": 20, "frame": "f"},
                {"type": "ellipse", "id": "out", "x": 600, "y": 0},
                {"type": "arrow", "id": "link", "from": "r", "to": "out"},
            ],
            clock,
        ),
    )
    after = apply(
        elements,
        edits.update_elements(elements, [{"id": "f", "y": 100}, {"id": "s", "x": 150}], clock),
    )
    assert (after["r"]["x"], after["r"]["y"]) == (20, 120)
    assert label(after, "r")["y"] == pytest.approx(label(elements, "r")["y"] + 100)
    assert (after["s"]["x"], after["s"]["y"]) == (150, 20)  # its own update wins
    assert after["link"]["y"] > elements["link"]["y"]  # the arrow follows r
    aligned = apply(after, edits.align(after, ["f", "out"], "top", clock))
    assert aligned["f"]["y"] == 0 and aligned["r"]["y"] == 20


def test_deleting_a_frame_deletes_its_children() -> None:
    clock = StepClock()
    elements = apply(
        {},
        edits.create_elements(
            {},
            [
                {"type": "frame", "id": "f"},
                {"type": "rectangle", "id": "r", "frame": "f", "label": "in"},
                {"type": "rectangle", "id": "out", "x": 600},
            ],
            clock,
        ),
    )
    after = apply(elements, edits.delete_elements(elements, ["f"], clock))
    assert after["f"]["isDeleted"] and after["r"]["isDeleted"] and not after["out"]["isDeleted"]


# -- groups, align, distribute -----------------------------------------------------


def test_group_and_ungroup() -> None:
    elements, clock = build()
    edit = edits.group(elements, ["a", "b"], clock)
    after = apply(elements, edit)
    (gid,) = after["a"]["groupIds"]
    assert after["b"]["groupIds"] == [gid] == label(after, "a")["groupIds"]
    outer = apply(after, edits.group(after, ["a", "c"], clock))
    assert outer["a"]["groupIds"][0] == gid and len(outer["a"]["groupIds"]) == 2
    back = apply(outer, edits.ungroup(outer, [gid], clock))
    assert gid not in back["a"]["groupIds"] and gid not in back["b"]["groupIds"]
    with pytest.raises(EditError, match="at least 2"):
        edits.group(elements, ["a"], clock)
    with pytest.raises(EditError, match="in no group"):
        edits.ungroup(elements, ["a"], clock)


@pytest.mark.parametrize(
    ("how", "check"),
    [
        ("left", lambda e: e["x"] == 0),
        ("right", lambda e: e["x"] + e["width"] == 560),
        ("top", lambda e: e["y"] == 0),
        ("bottom", lambda e: e["y"] + e["height"] == 380),
        ("center", lambda e: e["x"] + e["width"] / 2 == 280),
        ("middle", lambda e: e["y"] + e["height"] / 2 == 190),
    ],
)
def test_align(how: str, check: Any) -> None:
    elements, clock = build()
    after = apply(elements, edits.align(elements, ["a", "b", "c"], how, clock))  # type: ignore[arg-type]
    assert all(check(after[i]) for i in ("a", "b", "c")), how


def test_distribute() -> None:
    clock = StepClock()
    specs = [
        {"type": "rectangle", "id": f"r{i}", "x": x, "width": 50}
        for i, x in enumerate([0, 60, 500, 140])
    ]
    elements = apply({}, edits.create_elements({}, specs, clock))
    after = apply(
        elements, edits.distribute(elements, ["r0", "r1", "r2", "r3"], "horizontal", clock)
    )
    xs = sorted(after[f"r{i}"]["x"] for i in range(4))
    assert xs == pytest.approx([0, 500 / 3, 1000 / 3, 500])  # equal gaps, ends stay
    with pytest.raises(EditError, match="at least 3"):
        edits.distribute(elements, ["r0", "r1"], "vertical", clock)


# -- layout ------------------------------------------------------------------------


def test_layout_places_layers_and_binds_arrows() -> None:
    clock = StepClock()
    nodes = [
        {"id": "start", "label": "Start", "type": "ellipse"},
        {"id": "check", "label": "Is it valid?", "type": "diamond"},
        {"id": "ok", "label": "Save"},
        {"id": "bad", "label": "Reject"},
        {"id": "alone", "label": "Unconnected"},
    ]
    edges = [
        {"from": "start", "to": "check"},
        {"from": "check", "to": "ok", "label": "yes"},
        {"from": "check", "to": "bad", "label": "no"},
        {"from": "bad", "to": "start", "label": "retry"},  # a cycle
        {"from": "start", "to": "ok"},  # spans two layers: bends
    ]
    edit = edits.layout({}, nodes, edges, clock, origin=(100, 200))
    elements = apply({}, edit)
    assert {"start", "check", "ok", "bad", "alone"} <= set(elements)
    top = {i: elements[i]["y"] for i in ("start", "check", "ok", "bad")}
    assert top["start"] < top["check"] < top["ok"] and top["ok"] == top["bad"]
    x1, y1, _, _ = bounds(elements.values()) or (0, 0, 0, 0)
    assert (x1, y1) == pytest.approx((100, 200))  # the drawing's top left is the origin
    arrows = [e for e in elements.values() if e["type"] == "arrow"]
    assert len(arrows) == 5 and all(a["startBinding"] and a["endBinding"] for a in arrows)
    assert any(len(a["points"]) > 2 for a in arrows)
    across = apply({}, edits.layout({}, nodes, edges, StepClock(), direction="LR"))
    assert across["start"]["x"] < across["check"]["x"] < across["ok"]["x"]
    chain = apply(
        {},
        edits.layout(
            {},
            [{"id": "p", "label": "P"}, {"id": "q", "label": "Q"}],
            [{"from": "p", "to": "q", "label": "a rather long label on the edge"}],
            StepClock(),
            direction="LR",
        ),
    )
    (text,) = [e for e in chain.values() if e["type"] == "text"][-1:]
    assert box(chain["p"])[2] < text["x"] and text["x"] + text["width"] < box(chain["q"])[0]
    with pytest.raises(EditError, match="not one of the nodes"):
        edits.layout({}, nodes, [{"from": "start", "to": "ghost"}], clock)
    with pytest.raises(EditError, match="'start' is taken"):
        edits.layout(elements, nodes, edges, clock)
    named = edits.layout({}, nodes[:2], [{"id": "go", "from": "start", "to": "check"}], clock)
    assert named.changed["go"]["type"] == "arrow"
    with pytest.raises(EditError, match="to itself"):
        edits.layout({}, nodes, [{"from": "start", "to": "start"}], clock)


def test_layout_is_the_same_for_the_same_graph() -> None:
    """A redraw of the same graph lands in the same places (grandalf's own component
    sets would order by memory address)."""
    nodes = [{"id": f"n{i}", "label": f"node {i}"} for i in range(12)]
    pairs = [(0, 1), (1, 2), (2, 0), (3, 4), (4, 5), (1, 5), (6, 7), (8, 9), (9, 10), (2, 9)]
    edges = [{"from": f"n{a}", "to": f"n{b}"} for a, b in pairs]

    def places() -> dict[str, tuple[float, float]]:
        made = edits.layout({}, nodes, edges, StepClock()).changed
        return {n["id"]: (made[n["id"]]["x"], made[n["id"]]["y"]) for n in nodes}

    first = places()
    noise = [object() for _ in range(10_000)]  # other addresses for the next run
    assert places() == first and noise


# -- describe ----------------------------------------------------------------------


def test_describe() -> None:
    elements, clock = build()
    text = describe(elements, revision=7)
    lines = text.splitlines()
    assert lines[0].startswith("6 elements, revision 7, bounds 0,0 to ")
    assert 'a rectangle "Alpha" at 0,0 size 160x80' in lines
    assert any(line.startswith('ab arrow: a "Alpha" --"calls"--> b "Beta"') for line in lines)
    assert not any(" text " in line and "containerId" in line for line in lines)
    part = describe(elements, area=Area(x=-10, y=-10, width=200, height=100))
    assert part.splitlines()[0].startswith("3 elements in area")  # a and its two arrows
    elements = apply(elements, edits.delete_elements(elements, ["b"], clock))
    assert 'ab arrow: a "Alpha" --"calls"--> (free)' in describe(elements)


# -- hostile input -----------------------------------------------------------------


def test_limits_and_garbage() -> None:
    elements, clock = build()
    frozen = copy.deepcopy(elements)
    many = [{"type": "rectangle"}] * 10_000
    with pytest.raises(EditError, match="at most 1000 elements per call, got 10000"):
        edits.create_elements(elements, many, clock)
    with pytest.raises(EditError, match="at most 1000"):
        edits.delete_elements(elements, ["a"] * 10_000, clock)
    cases: list[tuple[Any, str]] = [
        ("rectangle", "must be a list"),
        ([42], "elements\\[0\\] is invalid"),
        ([{"type": "line", "label": "x"}], "a line cannot have a label"),
        ([{"type": "text", "label": "x"}], "use 'text' for a text element"),
        ([{"type": "frame", "label": "x"}], "a frame cannot have a label"),
        ([{"type": "text"}], "needs a non-empty 'text'"),
        ([{"type": "circle"}], "type"),
        ([{"type": "rectangle", "x": 1e12}], "x"),
        ([{"type": "rectangle", "id": "bad id!"}], "id"),
        ([{"type": "arrow", "from": "ghost"}], "no element 'ghost'"),
        ([{"type": "arrow", "from": "ab"}], "cannot connect to 'ab', an arrow"),
        ([{"type": "rectangle", "frame": "a"}], "is a rectangle, not a frame"),
        ([{"type": "rectangle", "id": "x"}, {"type": "ellipse", "id": "x"}], "used twice"),
        ([{"type": "rectangle", "width": -5}], "width"),
        ([{"type": "arrow", "points": [[5, 5], [10, 10]]}], "first must be \\[0, 0\\]"),
    ]
    for specs, message in cases:
        with pytest.raises(EditError, match=message):
            edits.create_elements(elements, specs, clock)
    assert elements == frozen


def test_specs_make_json_schemas() -> None:
    schema = ShapeSpec.model_json_schema(by_alias=True)
    assert "from" in schema["properties"] and schema["additionalProperties"] is False
    json.dumps(schema)


# -- property tests ----------------------------------------------------------------

_IDS = st.sampled_from(["a", "b", "c", "d", "e", "f"])
#: Ids for edits: half the time one of the two every sequence starts with.
_TARGETS = st.sampled_from(["a", "b"]) | _IDS
_FRAMES = st.sampled_from(["f1", "f2"])
_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
_COORD = st.floats(-2000, 2000, allow_nan=False)


@st.composite
def _spec(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(
        st.sampled_from(["rectangle", "ellipse", "diamond", "text", "arrow", "line", "frame"])
    )
    spec: dict[str, Any] = {"type": kind, "x": draw(_COORD), "y": draw(_COORD)}
    if draw(st.booleans()):
        spec["id"] = draw(_FRAMES if kind == "frame" else _IDS)
    if kind == "text":
        spec["text"] = draw(_TEXT.filter(str.strip)) or "x"
    elif kind in ("arrow", "line"):
        if draw(st.booleans()):
            spec["from"] = draw(_IDS)
        if draw(st.booleans()):
            spec["to"] = draw(_IDS)
    if kind in ("rectangle", "ellipse", "diamond", "arrow") and draw(st.booleans()):
        spec["label"] = draw(_TEXT)
    if kind != "frame" and not draw(st.integers(0, 7)):
        spec["frame"] = draw(_FRAMES)
    return spec


_ACTION = st.one_of(
    st.tuples(st.just("create"), st.lists(_spec(), min_size=1, max_size=3)),
    st.tuples(
        st.just("update"),
        st.lists(
            st.fixed_dictionaries(
                {"id": _TARGETS},
                optional={
                    "x": _COORD,
                    "y": _COORD,
                    "width": st.floats(1, 500),
                    "label": _TEXT,
                    "fontSize": st.floats(8, 60),
                },
            ),
            min_size=1,
            max_size=3,
        ),
    ),
    st.tuples(st.just("delete"), st.lists(_TARGETS, min_size=1, max_size=3)),
    st.tuples(st.just("align"), st.lists(_TARGETS, min_size=2, max_size=4)),
    st.tuples(st.just("group"), st.lists(_TARGETS, min_size=2, max_size=3)),
    st.tuples(st.just("ungroup"), st.lists(_TARGETS, min_size=1, max_size=2)),
    st.tuples(st.just("distribute"), st.lists(_TARGETS, min_size=3, max_size=5)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_ACTION, min_size=1, max_size=12), st.integers(0, 2**16))
def test_random_edit_sequences_keep_the_diagram_sound(actions: list[Any], seed: int) -> None:
    """Whatever an agent asks, each call either applies whole and leaves a sound
    diagram, or raises EditError and leaves the input exactly as it was."""
    clock = StepClock(seed)
    start = [{"type": "rectangle", "id": "a", "label": "A"}, {"type": "ellipse", "id": "b"}]
    elements = apply({}, edits.create_elements({}, start, clock))
    for name, argument in actions:
        frozen = copy.deepcopy(elements)
        try:
            if name == "create":
                edit = edits.create_elements(elements, argument, clock)
            elif name == "update":
                edit = edits.update_elements(elements, argument, clock)
            elif name == "delete":
                edit = edits.delete_elements(elements, argument, clock)
            elif name == "align":
                edit = edits.align(elements, argument, "left", clock)
            elif name == "distribute":
                edit = edits.distribute(elements, argument, "vertical", clock)
            elif name == "ungroup":
                edit = edits.ungroup(elements, argument, clock)
            else:
                edit = edits.group(elements, argument, clock)
        except EditError:
            event(f"{name} refused")
            assert elements == frozen
            continue
        event(f"{name} applied")
        assert elements == frozen  # the input is never mutated
        elements = apply(elements, edit)
        describe(elements)


@settings(max_examples=200, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4)
        ),
        max_leaves=20,
    )
)
def test_garbage_is_refused_cleanly(garbage: Any) -> None:
    elements, clock = build()
    frozen = copy.deepcopy(elements)
    for operation in (edits.create_elements, edits.update_elements, edits.delete_elements):
        try:
            edit = operation(elements, garbage, clock)
        except EditError:
            pass
        else:  # garbage that happens to be a valid request must still be sound
            apply(elements, edit)
    assert elements == frozen


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
_KEYS = st.sampled_from(
    [
        "x",
        "width",
        "type",
        "points",
        "boundElements",
        "groupIds",
        "containerId",
        "startBinding",
        "endBinding",
        "fontSize",
        "text",
        "index",
        "frameId",
        "isDeleted",
    ]
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.tuples(st.sampled_from(["a", "b", "ab", "ac", "t", "j1"]), _KEYS, _JSON), max_size=4
    ),
    st.sampled_from(["create", "update", "delete", "group", "ungroup", "align", "describe"]),
    st.lists(st.sampled_from(["a", "b", "c", "ab", "ac", "t", "j1", "j2"]), min_size=1, max_size=3),
)
def test_what_other_peers_wrote_wrong_never_breaks_an_operation(
    damage: list[tuple[str, str, Any]], operation: str, ids: list[str]
) -> None:
    """The map may hold anything a peer wrote: an operation works around it, or
    refuses with EditError; it never fails otherwise and never writes it back broken."""
    elements, clock = build()
    elements["j2"] = "not an element"  # type: ignore[assignment]
    for eid, key, value in damage:
        elements.setdefault(eid, {"id": eid})[key] = value
    frozen = copy.deepcopy(elements)
    try:
        if operation == "create":
            specs = [
                {"type": "arrow", "from": ids[0], "to": ids[-1]},
                {"type": "text", "text": "x", "frame": ids[0]},
            ]
            edit = edits.create_elements(elements, specs[: len(ids)], clock)
        elif operation == "update":
            edit = edits.update_elements(
                elements, [{"id": i, "x": 5, "label": "L"} for i in dict.fromkeys(ids)], clock
            )
        elif operation == "delete":
            edit = edits.delete_elements(elements, ids, clock)
        elif operation == "group":
            edit = edits.group(elements, ids, clock)
        elif operation == "ungroup":
            edit = edits.ungroup(elements, ids, clock)
        elif operation == "align":
            edit = edits.align(elements, ids, "top", clock)
        else:
            describe(elements)
            return
    except EditError:
        assert elements == frozen
        return
    assert elements == frozen
    for eid, element in edit.changed.items():
        assert problem(element) is None or eid in {d for d, _, _ in damage}, (eid, element)


@st.composite
def _graph(draw: st.DrawFn) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    n = draw(st.integers(1, 14))
    nodes = [
        {
            "id": f"n{i}",
            "label": draw(_TEXT),
            "type": draw(st.sampled_from(["rectangle", "ellipse", "diamond"])),
        }
        for i in range(n)
    ]
    pairs = st.tuples(st.integers(0, n - 1), st.integers(0, n - 1)).filter(lambda p: p[0] != p[1])
    edges = [
        {"from": f"n{a}", "to": f"n{b}", **({"label": "e"} if (a + b) % 3 == 0 else {})}
        for a, b in draw(st.lists(pairs, max_size=25))
        if n > 1
    ]
    return nodes, edges


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_graph(), st.sampled_from(["TB", "LR"]))
def test_any_graph_is_laid_out_soundly(
    graph: tuple[list[dict[str, Any]], list[dict[str, Any]]], direction: str
) -> None:
    """Cycles, parallel edges, islands, empty labels: every graph an agent sends is drawn."""
    nodes, edges = graph
    elements = apply({}, edits.layout({}, nodes, edges, StepClock(), direction=direction))  # type: ignore[arg-type]
    shapes = [elements[n["id"]] for n in nodes]
    for i, one in enumerate(shapes):  # no two nodes overlap
        for other in shapes[i + 1 :]:
            apart = (
                one["x"] + one["width"] <= other["x"] + 1e-6
                or other["x"] + other["width"] <= one["x"] + 1e-6
                or one["y"] + one["height"] <= other["y"] + 1e-6
                or other["y"] + other["height"] <= one["y"] + 1e-6
            )
            assert apart, (one["id"], other["id"])
    arrows = [e for e in elements.values() if e["type"] == "arrow"]
    assert len(arrows) == len(edges)
