"""A diagram's thumbnail: its live elements drawn as a small SVG, without a browser.

Rendered when a room checkpoints (:meth:`storage.sqlite.SQLiteStore.checkpoint`),
stored next to the checkpoint, and served by the API for the landing page's
cards. It is :func:`storage.render.render_svg` fitted into the card's
``WIDTH`` x ``HEIGHT``, with fewer elements: the same drawing as an export,
small (and with the same distrust of what peers wrote).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from pycrdt import Doc, Map

from storage.excalidraw import z_order
from storage.render import SHAPES, render_svg

__all__ = ["HEIGHT", "MAX_ELEMENTS", "PADDING", "SHAPES", "WIDTH", "render", "render_doc"]

WIDTH, HEIGHT = 320, 200  # the card's image, in CSS pixels
PADDING = 10  # scene units around the drawing, before scaling
MAX_ELEMENTS = 2000  # a huge diagram's thumbnail shows its first (bottom-most) ones


def render(elements: Iterable[Mapping[str, Any]], background: str = "#ffffff") -> str:
    """An SVG of ``elements`` (live ones, in z-order) fitted into WIDTH x HEIGHT."""
    return render_svg(
        elements,
        background=background,
        padding=PADDING,
        fit=(WIDTH, HEIGHT),
        max_elements=MAX_ELEMENTS,
        hachure=False,  # at this size hachure is a tint: solid, and cheap at each checkpoint
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
