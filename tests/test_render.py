"""Diagrams drawn on the server (storage.render, storage.raster, agents.export): valid SVG for
every kind of element, junk from peers skipped, PNG pixels checked with a stdlib decoder."""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pycrdt import Doc, Map

from agents.export import export_diagram, export_diagram_in_thread
from storage.excalidraw import Scene, to_excalidraw
from storage.raster import MAX_PIXELS, png_size, render_png, svg_size
from storage.render import MAX_ELEMENTS, SHAPES, hatch_lines, render_svg
from tests.png import decode_png, png_dimensions

SVG = "{http://www.w3.org/2000/svg}"
RED, BLUE = (0xE0, 0x31, 0x31, 255), (0x1C, 0x7E, 0xD6, 255)


def parse(svg: str) -> ET.Element:
    root = ET.fromstring(svg)
    assert root.tag == f"{SVG}svg"
    return root


def found(root: ET.Element, tag: str) -> list[ET.Element]:
    return list(root.iter(f"{SVG}{tag}"))


def box(eid: str, kind: str = "rectangle", **fields: Any) -> dict[str, Any]:
    return {"id": eid, "type": kind, "x": 0, "y": 0, "width": 100, "height": 50, **fields}


def test_every_kind_of_element_renders_as_excalidraw_draws_it() -> None:
    elements = [
        box("frame", "frame", x=-50, y=-50, width=600, height=400, name="Plan <v2>"),
        box("r", roundness={"type": 3}, backgroundColor="#ffc9c9", fillStyle="solid"),
        box("sharp", x=0, y=100, strokeStyle="dashed"),
        box(
            "e",
            "ellipse",
            x=200,
            width=80,
            height=40,
            fillStyle="hachure",
            backgroundColor="#a5d8ff",
            opacity=50,
        ),
        box("d", "diamond", x=300, angle=math.pi / 2, strokeStyle="dotted"),
        {
            "id": "a",
            "type": "arrow",
            "x": 100,
            "y": 25,
            "points": [[0, 0], [100, 0], [100, 80]],
            "startArrowhead": "bar",
            "endArrowhead": "triangle",
            "strokeColor": "#1971c2",
        },
        {
            "id": "l",
            "type": "arrow",
            "x": 0,
            "y": 200,
            "points": [[0, 0], [50, 0]],
            "endArrowhead": "arrow",
            "startArrowhead": "dot",
        },
        box(
            "t",
            "text",
            x=0,
            y=12.5,
            height=25,
            text="Hello\nworld",
            fontSize=20,
            textAlign="center",
            fontFamily=2,
            containerId="r",
        ),
        box("img", "image", x=400, y=200, fileId="f1"),
        {"id": "pen", "type": "freedraw", "x": 0, "y": 300, "points": [[0, 0], [5, 3], [9, 1]]},
    ]
    root = parse(render_svg(elements))
    rects = {(r.get("x"), r.get("y")): r for r in found(root, "rect")}
    assert rects[("0", "0")].get("rx") == "12.5"  # adaptive radius: a quarter of a small side
    assert rects[("0", "0")].get("fill") == "#ffc9c9"
    assert rects[("0", "100")].get("rx") is None
    assert rects[("0", "100")].get("stroke-dasharray") == "8 10"
    assert rects[("-50", "-50")].get("fill") == "none"  # the frame
    labels = {t.text for t in found(root, "text")} | {s.text for s in found(root, "tspan")}
    assert {"Plan <v2>", "Hello", "world"} <= labels
    spans = found(root, "tspan")
    assert [s.get("x") for s in spans] == ["50", "50"]  # centred in its box, as placed
    assert float(spans[1].get("y") or 0) - float(spans[0].get("y") or 0) == 25  # lineHeight
    text = next(t for t in found(root, "text") if t.get("text-anchor") == "middle")
    assert text.get("font-size") == "20" and "Helvetica" in (text.get("font-family") or "")
    ellipse = found(root, "ellipse")[0]
    assert ellipse.get("fill") == "none"  # hachure: lines of the fill colour under the outline
    hachure = [p for p in found(root, "path") if p.get("stroke") == "#a5d8ff"]
    assert len(hachure) == 1 and (hachure[0].get("d") or "").count("M") > 5
    groups = found(root, "g")
    assert any(g.get("opacity") == "0.5" for g in groups)
    assert any((g.get("transform") or "").startswith("rotate(90 350 25)") for g in groups)
    assert any(p.get("stroke-dasharray", "").startswith("1.5") for p in found(root, "polygon"))
    triangle = [p for p in found(root, "polygon") if p.get("fill") == "#1971c2"]
    assert len(triangle) == 1  # the end arrowhead, filled with the stroke colour
    assert triangle[0].get("points", "").startswith("200,105")  # its tip is the last point
    assert len(found(root, "circle")) == 1  # the dot
    lines = found(root, "polyline")
    assert len(lines) >= 6  # two arrows, a bar, an arrow head, the pen, the image's mountain
    assert root.get("viewBox") == "-60 -84 620 444"  # the frame and its name, padded


def test_elements_are_drawn_in_z_order_not_list_order() -> None:
    below = box("below", backgroundColor="#e03131", index="a0")
    above = box("above", backgroundColor="#1c7ed6", index="a1")
    svg = export_diagram([above, below], "svg").data
    assert isinstance(svg, str)
    assert svg.index("#e03131") < svg.index("#1c7ed6")


@pytest.mark.parametrize(
    "junk",
    [
        {"text": "\x00\x01<b>&\ud800\ufffe", "type": "text"},
        {"strokeColor": 'red" onload="x', "backgroundColor": "url(#evil)"},
        {"fontFamily": 10**30, "fontSize": float("inf"), "lineHeight": -1, "textAlign": ["x"]},
        {"roundness": {"type": 3, "value": "big"}, "opacity": "half", "strokeStyle": 5},
        {"name": {"a": 1}, "type": "frame"},
        {"x": 1e300},
        {"type": "arrow", "points": [[0, 0], [0, 0]], "endArrowhead": "triangle"},
        {"type": "arrow", "points": [[1, 1]], "endArrowhead": "nonsense"},
        {"type": "line", "points": [[0, 0], [10, 0], [10, 10], [0, 0]], "backgroundColor": "red"},
    ],
)
def test_hostile_elements_give_well_formed_svg(junk: dict[str, Any]) -> None:
    svg = render_svg([box("ok"), {**box("bad"), "text": "", **junk}])
    root = parse(svg)
    assert "onload" not in svg and "evil" not in svg
    assert found(root, "rect")  # the good element is still drawn


JUNK = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=8),
    st.dictionaries(st.sampled_from(["type", "value"]), st.integers(-5, 5), max_size=2),
    st.lists(st.lists(st.one_of(st.floats(), st.text(max_size=2)), max_size=3), max_size=4),
)
KEYS = (
    "x",
    "y",
    "width",
    "height",
    "angle",
    "points",
    "text",
    "fontSize",
    "fontFamily",
    "textAlign",
    "lineHeight",
    "strokeColor",
    "backgroundColor",
    "strokeWidth",
    "strokeStyle",
    "fillStyle",
    "opacity",
    "roundness",
    "startArrowhead",
    "endArrowhead",
    "name",
    "isDeleted",
)


@given(
    st.lists(
        st.one_of(
            st.fixed_dictionaries(
                {"type": st.sampled_from([*sorted(SHAPES), "junk"])},
                optional=dict.fromkeys(KEYS, JUNK),
            ),
            JUNK,
        ),
        max_size=6,
    ),
    st.floats(allow_nan=True),
)
@settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_whatever_peers_wrote_renders_well_formed(elements: list[Any], scale: float) -> None:
    parse(render_svg(elements, scale=scale, background="not a colour"))


@given(
    st.lists(
        st.fixed_dictionaries(
            {"type": st.sampled_from(sorted(SHAPES))}, optional=dict.fromkeys(KEYS, JUNK)
        ),
        max_size=6,
    )
)
@settings(deadline=None, max_examples=50, suppress_health_check=[HealthCheck.too_slow])
def test_whatever_peers_wrote_rasterises(elements: list[dict[str, Any]]) -> None:
    assert render_png(render_svg(elements), scale=0.05).startswith(b"\x89PNG")


def test_hachure_lines_stay_inside_their_shape_even_a_concave_one() -> None:
    # a U: 0..30 wide, 30 tall, with a notch 10..20 wide from the top down to y=20
    u = [(0.0, 0.0), (10, 0), (10, 20), (20, 20), (20, 0), (30, 0), (30, 30), (0, 30)]
    segments = [
        [tuple(map(float, point.split(","))) for point in part.split("L")]
        for part in hatch_lines(u, 2, cross=True).split("M")[1:]
    ]
    assert len(segments) > 20
    for (x1, y1), (x2, y2) in segments:
        for t in (0.1, 0.5, 0.9):
            x, y = x1 + (x2 - x1) * t, y1 + (y2 - y1) * t
            assert 0 <= x <= 30 and 0 <= y <= 30
            assert not (10 < x < 20 and y < 20), (x, y)  # never across the notch
    huge = [(0.0, 0.0), (1e6, 0), (1e6, 1e6), (0, 1e6)]
    assert hatch_lines(huge, 8).count("M") <= 200  # wider gaps, not a million lines


def test_thumbnails_fill_hachured_shapes_solid() -> None:
    hachured = box("r", backgroundColor="#a5d8ff", fillStyle="hachure")
    assert 'fill="#a5d8ff"' in render_svg([hachured], hachure=False)
    assert 'fill="none"' in render_svg([hachured])


def test_a_huge_diagram_draws_its_first_elements_only() -> None:
    many = [box(str(n), x=n, backgroundColor="#e03131") for n in range(MAX_ELEMENTS + 50)]
    assert render_svg(many).count('fill="#e03131"') == MAX_ELEMENTS


def test_svg_size_follows_scale_and_max_size() -> None:
    assert svg_size(render_svg([box("r")], padding=0, scale=2)) == (200, 100)
    assert svg_size(render_svg([box("r")], padding=0, max_size=50)) == (50, 25)
    assert svg_size(render_svg([])) == (20, 20)  # nothing drawn: a blank the padding's size


# --- PNG ------------------------------------------------------------------------------


def test_png_pixels_have_the_shapes_and_background_colours() -> None:
    elements = [
        box("r", backgroundColor="#e03131", fillStyle="solid", strokeColor="#e03131"),
        box("b", x=150, backgroundColor="#1c7ed6", fillStyle="solid", strokeColor="transparent"),
    ]
    exported = export_diagram(elements, "png", padding=10, background="#ffec99")
    assert exported.mime_type == "image/png" and isinstance(exported.data, bytes)
    image = decode_png(exported.data)
    assert (image.width, image.height) == (exported.width, exported.height) == (270, 70)
    assert image.pixel(50, 35) == RED  # the rectangle's middle (10 px of padding)
    assert image.pixel(235, 35) == BLUE
    assert image.pixel(2, 2) == (0xFF, 0xEC, 0x99, 255)  # the background
    assert image.pixel(135, 35) == (0xFF, 0xEC, 0x99, 255)  # between the two


def test_png_hachure_is_lines_of_the_fill_colour_inside_the_shape() -> None:
    hachured = box(
        "r",
        width=200,
        height=200,
        backgroundColor="#1c7ed6",
        fillStyle="hachure",
        strokeColor="transparent",
        strokeWidth=8,  # hachure 4 wide: whole pixels of the colour, not only antialiased ones
    )
    image = decode_png(render_png(render_svg([hachured], padding=20)))
    inside = [image.pixel(x, y) for y in range(30, 210) for x in range(30, 210)]
    outside = [
        image.pixel(x, y)
        for y in range(240)
        for x in range(240)
        if not (15 <= x < 225 and 15 <= y < 225)
    ]
    assert inside.count(BLUE) > 1000 and inside.count((255, 255, 255, 255)) > 1000
    assert set(outside) == {(255, 255, 255, 255)}


def test_png_scale_and_a_transparent_background() -> None:
    exported = export_diagram(
        [box("r", backgroundColor="#e03131")], "png", scale=2, background="transparent"
    )
    assert isinstance(exported.data, bytes)
    image = decode_png(exported.data)
    assert (image.width, image.height) == (240, 140)
    assert image.pixel(1, 1)[3] == 0 and image.pixel(120, 70) == RED


@pytest.mark.skipif(
    not Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists(),
    reason="no DejaVu Sans (fonts-dejavu-core, which .ci/run installs)",
)
def test_png_text_is_drawn_with_the_machines_font() -> None:
    text = box(
        "t", "text", width=200, height=50, text="Wide text here", fontSize=40, strokeColor="#e03131"
    )
    image = decode_png(render_png(render_svg([text], padding=0)))
    reds = sum(
        1
        for y in range(image.height)
        for x in range(image.width)
        if image.pixel(x, y)[0] > 200 and image.pixel(x, y)[1] < 120
    )
    assert reds > 500  # glyphs, not a blank


def test_the_pixel_cap_holds_for_a_huge_diagram_or_scale() -> None:
    assert png_size(100_000, 100_000, 1) == (4000, 4000)
    width, height = png_size(1_000_000, 10, 50)
    assert width * height <= MAX_PIXELS and height >= 1
    huge = box("r", width=50_000, height=30_000, backgroundColor="#e03131")
    data = render_png(render_svg([huge]), scale=3)
    width, height = png_dimensions(data)
    assert width * height <= MAX_PIXELS and abs(width / height - 50_020 / 30_020) < 0.01
    with pytest.raises(ValueError, match="scale"):
        png_size(10, 10, 0)
    with pytest.raises(ValueError, match="no <svg>"):
        render_png("<html>not svg</html>")


# --- export_diagram -----------------------------------------------------------------


def live_doc() -> Doc[Any]:
    doc: Doc[Any] = Doc()
    with doc.transaction():
        elements = doc.get("elements", type=Map)
        elements["r"] = box("r", index="a0", backgroundColor="#e03131")
        elements["gone"] = box("gone", index="a1", isDeleted=True)
        doc.get("meta", type=Map)["viewBackgroundColor"] = "#ffec99"
    return doc


def test_export_as_excalidraw_is_the_rest_apis_export() -> None:
    doc = live_doc()
    exported = export_diagram(doc, "excalidraw")
    assert exported.mime_type == "application/json" and isinstance(exported.data, str)
    assert json.loads(exported.data) == to_excalidraw(doc.get_update())
    # a file in, the same file out (elements, the shared appState)
    again = json.loads(export_diagram(json.loads(exported.data), "excalidraw").data)
    assert again["elements"] == json.loads(exported.data)["elements"]
    assert again["appState"] == {"viewBackgroundColor": "#ffec99"}


def test_export_svg_uses_the_diagrams_background_and_skips_deleted() -> None:
    for source in (
        live_doc(),
        Scene({"r": box("r", backgroundColor="#e03131")}, {"viewBackgroundColor": "#ffec99"}),
    ):
        exported = export_diagram(source, "svg")
        assert exported.mime_type == "image/svg+xml" and isinstance(exported.data, str)
        root = parse(exported.data)
        fills = [r.get("fill") for r in found(root, "rect")]
        assert fills == ["#ffec99", "#e03131"]  # the background, then the one live rectangle
        assert (exported.width, exported.height) == (120, 70)


@pytest.mark.anyio
async def test_export_in_a_thread_copies_the_live_document_first() -> None:
    doc = live_doc()
    exported = await export_diagram_in_thread(doc, "png", background="#ffffff")
    assert isinstance(exported.data, bytes)
    assert decode_png(exported.data).pixel(60, 35) == RED
    as_bytes = export_diagram(doc.get_update(), "excalidraw")  # its state as bytes: the same
    assert isinstance(as_bytes.data, str)
    assert json.loads(as_bytes.data) == json.loads(str(export_diagram(doc, "excalidraw").data))


def test_export_refuses_what_it_cannot_export() -> None:
    with pytest.raises(ValueError, match="format"):
        export_diagram([], "gif")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="excalidraw"):
        export_diagram({"type": "other"}, "svg")
    with pytest.raises(ValueError, match="not a Yjs update"):
        export_diagram(b"\xff\xfe junk", "png")
    with pytest.raises(ValueError, match="not an object"):
        export_diagram([1], "svg")  # type: ignore[list-item]
