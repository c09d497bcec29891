"""What agents ask for: the typed arguments of the drawing tools.

These pydantic models are the MCP tools' argument schemas, so every field
carries a description, a bound and, where Excalidraw has a closed set, a
``Literal``; unknown keys are refused (``extra="forbid"``), so a typo is an
error the agent sees instead of a silently ignored wish. Cross-field rules
(a label only on shapes and arrows, ``text`` only on text...) are checked
here too, with messages that say what to do instead.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

#: The most elements (or nodes, edges, ids) one call may carry.
MAX_ELEMENTS = 1000
#: Coordinates beyond this are refused (Excalidraw logs them as "too large").
MAX_COORDINATE = 1_000_000.0

ShapeType = Literal["rectangle", "ellipse", "diamond", "text", "line", "arrow", "frame"]
NodeShape = Literal["rectangle", "ellipse", "diamond"]
Arrowhead = Literal[
    "arrow",
    "bar",
    "dot",
    "circle",
    "circle_outline",
    "triangle",
    "triangle_outline",
    "diamond",
    "diamond_outline",
    "crowfoot_one",
    "crowfoot_many",
    "crowfoot_one_or_many",
]
FontFamily = Literal[
    "Excalifont", "Nunito", "Comic Shanns", "Lilita One", "Virgil", "Helvetica", "Cascadia"
]
Alignment = Literal["left", "center", "right", "top", "middle", "bottom"]
Axis = Literal["horizontal", "vertical"]
Direction = Literal["TB", "LR"]

#: Shapes that can hold a label (Excalidraw's text containers).
LABELLED = ("rectangle", "ellipse", "diamond", "arrow")
LINEAR = ("line", "arrow")

ElementId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=100,
        pattern=r"^\S+$",
        description="An element id (no spaces); new ones are best letters, digits, '_', '-'.",
    ),
]
Coordinate = Annotated[float, Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE)]
Size = Annotated[float, Field(ge=1, le=100_000)]
Color = Annotated[
    str,
    Field(
        max_length=32,
        pattern=r"^(#[0-9a-fA-F]{3,8}|transparent|[a-zA-Z]{3,20})$",
        description="A CSS colour: '#1e1e1e', '#a5d8ff', 'transparent' or a name ('red').",
    ),
]
Label = Annotated[str, Field(max_length=10_000)]
Point = tuple[Coordinate, Coordinate]


class Style(BaseModel):
    """Excalidraw's style properties; omitted ones keep their defaults (or current values)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    strokeColor: Color | None = Field(None, description="Outline and text colour.")
    backgroundColor: Color | None = Field(None, description="Fill colour; 'transparent' for none.")
    fillStyle: Literal["hachure", "cross-hatch", "solid", "zigzag"] | None = Field(
        None, description="How the background is filled."
    )
    strokeWidth: float | None = Field(None, ge=0.5, le=32, description="1 thin, 2 bold, 4 extra.")
    strokeStyle: Literal["solid", "dashed", "dotted"] | None = None
    roughness: Literal[0, 1, 2] | None = Field(
        None, description="0 architect (clean), 1 artist (default), 2 cartoonist."
    )
    opacity: int | None = Field(None, ge=0, le=100, description="0 invisible to 100 opaque.")
    fontSize: float | None = Field(None, ge=4, le=400, description="Text and label size in px.")
    fontFamily: FontFamily | None = Field(None, description="Text and label font.")
    textAlign: Literal["left", "center", "right"] | None = Field(
        None, description="Horizontal alignment of text or of a label in its shape."
    )
    rounded: bool | None = Field(
        None, description="Rounded corners (rectangles, diamonds, lines, arrows)."
    )


class ShapeSpec(Style):
    """One element to create."""

    type: ShapeType = Field(description="What to draw.")
    id: ElementId | None = Field(
        None, description="The new element's id; a random one is made when omitted."
    )
    x: Coordinate = Field(0, description="Left edge (for line/arrow: the first point).")
    y: Coordinate = Field(0, description="Top edge (for line/arrow: the first point).")
    width: Size | None = Field(
        None, description="Width; default 160 for shapes, 400 for frames, measured for text."
    )
    height: Size | None = Field(
        None, description="Height; default 80 for shapes, 300 for frames, measured for text."
    )
    label: Label | None = Field(
        None,
        description="Text centred inside a rectangle, ellipse or diamond, or on an arrow.",
    )
    text: Label | None = Field(None, description="The text of a 'text' element (required there).")
    name: str | None = Field(None, max_length=200, description="A frame's title.")
    points: list[Point] | None = Field(
        None,
        min_length=2,
        max_length=MAX_ELEMENTS,
        description="line/arrow points relative to (x, y), the first being [0, 0].",
    )
    from_: ElementId | None = Field(
        None,
        alias="from",
        description="line/arrow: start at this element's outline (an arrow stays bound to it).",
    )
    to: ElementId | None = Field(
        None, description="line/arrow: end at this element's outline (an arrow stays bound)."
    )
    startArrowhead: Arrowhead | None = Field(None, description="line/arrow: head at the start.")
    endArrowhead: Arrowhead | None = Field(
        None, description="line/arrow: head at the end (arrows default to 'arrow')."
    )
    frame: ElementId | None = Field(None, description="Id of a frame to put the element in.")
    group: ElementId | None = Field(
        None,
        description="A group id: elements given the same one (in this call or before) "
        "select and move together.",
    )

    @model_validator(mode="after")
    def _fits_its_type(self) -> ShapeSpec:
        kind = self.type
        if self.label is not None and kind not in LABELLED:
            hint = "use 'text' for a text element" if kind == "text" else "draw a text element"
            raise ValueError(
                f"a {kind} cannot have a label (only rectangle, ellipse, diamond and arrow "
                f"can): {hint} instead"
            )
        if kind == "text":
            if self.text is None or not self.text.strip():
                raise ValueError("a text element needs a non-empty 'text'")
            if self.width is not None or self.height is not None:
                raise ValueError("a text element sizes itself: set fontSize, not width/height")
        elif self.text is not None:
            hint = "use 'label'" if kind in LABELLED else "create a separate text element"
            raise ValueError(f"'text' is for text elements; on a {kind}, {hint}")
        if self.name is not None and kind != "frame":
            raise ValueError("'name' is for frames only")
        if kind not in LINEAR:
            for key in ("points", "from_", "to", "startArrowhead", "endArrowhead"):
                if getattr(self, key) is not None:
                    shown = "from" if key == "from_" else key
                    raise ValueError(f"'{shown}' is for line and arrow only, not {kind}")
        else:
            if self.points is not None and (self.from_ is not None or self.to is not None):
                raise ValueError("give either 'points' or 'from'/'to', not both")
            if self.points is not None and tuple(self.points[0]) != (0, 0):
                raise ValueError("points are relative to (x, y): the first must be [0, 0]")
            if self.width is not None or self.height is not None:
                raise ValueError(f"a {kind}'s size comes from its points or from/to, not width")
            if self.from_ is not None and self.from_ == self.to:
                raise ValueError("'from' and 'to' must be different elements")
        if kind == "frame" and self.frame is not None:
            raise ValueError("frames cannot be nested")
        return self


class ElementUpdate(Style):
    """Changes to one existing element: only the fields given change."""

    id: ElementId = Field(description="The element to change.")
    x: Coordinate | None = Field(None, description="New left edge.")
    y: Coordinate | None = Field(None, description="New top edge.")
    width: Size | None = Field(None, description="New width (not for text).")
    height: Size | None = Field(None, description="New height (not for text).")
    label: Label | None = Field(
        None, description="New label of a shape or arrow; '' removes the label."
    )
    text: Label | None = Field(None, description="New text of a text element (non-empty).")
    name: str | None = Field(None, max_length=200, description="A frame's new title.")
    startArrowhead: Arrowhead | Literal["none"] | None = Field(
        None, description="line/arrow: new start head ('none' removes it)."
    )
    endArrowhead: Arrowhead | Literal["none"] | None = Field(
        None, description="line/arrow: new end head ('none' removes it)."
    )


class NodeSpec(Style):
    """A node for :func:`agents.edits.layout`: a labelled shape placed by the layout."""

    id: ElementId = Field(description="The node's element id (edges name it).")
    label: Label = Field("", description="Text inside the shape.")
    type: NodeShape = Field("rectangle", description="The node's shape.")
    width: Size | None = Field(None, description="Width; default fits the label (at least 160).")
    height: Size | None = Field(None, description="Height; default fits the label (at least 80).")


class EdgeSpec(BaseModel):
    """An arrow for :func:`agents.edits.layout`, bound to both of its nodes."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    id: ElementId | None = Field(
        None, description="The arrow's element id; a random one is made when omitted."
    )
    from_: ElementId = Field(alias="from", description="Id of the start node.")
    to: ElementId = Field(description="Id of the end node.")
    label: Label | None = Field(None, description="Text on the arrow.")
    strokeStyle: Literal["solid", "dashed", "dotted"] | None = None
    strokeColor: Color | None = None

    @model_validator(mode="after")
    def _not_a_loop(self) -> EdgeSpec:
        if self.from_ == self.to:
            raise ValueError(f"an edge from {self.from_!r} to itself cannot be drawn as an arrow")
        return self


class Area(BaseModel):
    """A rectangle of the canvas (scene coordinates)."""

    model_config = ConfigDict(extra="forbid")

    x: Coordinate
    y: Coordinate
    width: Annotated[float, Field(gt=0, le=2 * MAX_COORDINATE)]
    height: Annotated[float, Field(gt=0, le=2 * MAX_COORDINATE)]


ShapeSpecs = Annotated[list[ShapeSpec], Field(min_length=1, max_length=MAX_ELEMENTS)]
ElementUpdates = Annotated[list[ElementUpdate], Field(min_length=1, max_length=MAX_ELEMENTS)]
ElementIds = Annotated[list[ElementId], Field(min_length=1, max_length=MAX_ELEMENTS)]
NodeSpecs = Annotated[list[NodeSpec], Field(min_length=1, max_length=MAX_ELEMENTS)]
EdgeSpecs = Annotated[list[EdgeSpec], Field(max_length=MAX_ELEMENTS)]
