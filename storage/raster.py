"""SVG to PNG on the server, with resvg (a maintained Rust rasteriser; wheels, no system libraries).

Used for ``export_diagram`` as PNG (:mod:`agents.export`), from the SVG of
:func:`storage.render.render_svg`. Text needs fonts: resvg reads the
system's (once per process, cached), and the SVG names DejaVu Sans (Debian's
``fonts-dejavu-core``, which ``.ci/run`` installs) after Excalidraw's own
families, so any machine with DejaVu draws text the same; one without any
font still renders every shape, only without its text.

A picture's pixels are capped (:data:`MAX_PIXELS`): a huge diagram, or a
huge ``scale``, is drawn smaller rather than allocating gigabytes. This is
CPU work (milliseconds for a typical diagram): async callers run it in a
worker thread.
"""

from __future__ import annotations

import math
import re

import resvg_py

MAX_PIXELS = 16_000_000  # width x height of one PNG, at most (64 MB of RGBA while drawing)
MAX_SCALE = 8.0
_ROOT = re.compile(r"<svg\b[^>]*>")
_LENGTH = r'\s{name}="([0-9.]+(?:e\+?[0-9]+)?)(?:px)?"'


def svg_size(svg: str) -> tuple[float, float]:
    """The root element's ``width`` and ``height`` (CSS pixels); ValueError without them."""
    root = _ROOT.search(svg)
    if root is None:
        raise ValueError("not an SVG: no <svg> element")
    sizes = []
    for name in ("width", "height"):
        found = re.search(_LENGTH.format(name=name), root.group(0))
        if found is None:
            raise ValueError(f"the SVG has no {name} in pixels")
        value = float(found.group(1))
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"the SVG's {name} is not a positive number")
        sizes.append(value)
    return sizes[0], sizes[1]


def png_size(width: float, height: float, scale: float = 1.0) -> tuple[int, int]:
    """The PNG's pixels for an SVG of ``width`` x ``height`` at ``scale``, within MAX_PIXELS."""
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError("scale must be a positive number")
    scale = min(scale, MAX_SCALE, math.sqrt(MAX_PIXELS / (width * height)))
    # at least one pixel a side; floor keeps the product under the cap
    return max(1, math.floor(width * scale)), max(1, math.floor(height * scale))


def render_png(svg: str, *, scale: float = 1.0) -> bytes:
    """``svg`` rasterised at ``scale`` (1 = its own size in pixels), as PNG bytes.

    The scale is lowered so the picture stays within :data:`MAX_PIXELS`
    (and :data:`MAX_SCALE`). ValueError for an SVG resvg cannot draw.
    """
    width, height = png_size(*svg_size(svg), scale)
    return resvg_py.svg_to_bytes(
        svg_string=svg,
        width=width,
        height=height,
        sans_serif_family="DejaVu Sans",
        monospace_family="DejaVu Sans Mono",
        cursive_family="DejaVu Sans",
    )
