"""Layered graph drawing for :func:`agents.edits.layout`, with grandalf's Sugiyama layout.

Nodes are ranked into layers (cycles broken by reversing edges), ordered to
reduce crossings and placed with their own sizes; an edge spanning several
layers gets the positions of the layout's dummy nodes as bends. Pure
computation: names and sizes in, centres and bends out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

from agents import text as tx
from agents.elements import container_size_for
from agents.specs import Direction, NodeSpec

#: Space between layers and between nodes of one layer.
LAYER_GAP = 100.0
NODE_GAP = 60.0


def node_size(node: NodeSpec) -> tuple[float, float]:
    """Big enough for the label wrapped to a readable width, at least 160 x 80."""
    if node.width is not None and node.height is not None:
        return node.width, node.height
    font_size = float(node.fontSize or tx.DEFAULT_FONT_SIZE)
    family = tx.FONT_FAMILIES.get(node.fontFamily or "", tx.DEFAULT_FONT_FAMILY)
    line = 140.0 if node.type == "diamond" else 220.0
    lines = tx.wrap(node.label, font_size, line * font_size / tx.DEFAULT_FONT_SIZE, family)
    tw, th = tx.measure(lines or " ", font_size, tx.LINE_HEIGHTS[family], family)
    width = max(160.0, container_size_for(tw, node.type) + 20)
    height = max(80.0, container_size_for(th, node.type) + 20)
    return node.width or float(width), node.height or float(height)


def layer_gap(labels: list[str], direction: Direction) -> float:
    """Room between layers for the longest edge label (wrapped as on an arrow)."""
    extent = 0.0
    for label in labels:
        lines = tx.wrap(label, tx.DEFAULT_FONT_SIZE, tx.DEFAULT_FONT_SIZE * 11)
        width, height = tx.measure(lines, tx.DEFAULT_FONT_SIZE, tx.LINE_HEIGHTS[5])
        extent = max(extent, width if direction == "LR" else height)
    return max(LAYER_GAP, extent + 60)


def components(
    names: list[str], pairs: list[tuple[str, str]]
) -> list[tuple[list[str], list[tuple[str, str]]]]:
    """Connected components (nodes and edges, each in the order given)."""
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for a, b in pairs:
        parent[root(a)] = root(b)
    groups: dict[str, tuple[list[str], list[tuple[str, str]]]] = {}
    for n in names:
        groups.setdefault(root(n), ([], []))[0].append(n)
    for pair in pairs:
        groups[root(pair[0])][1].append(pair)
    return list(groups.values())


def place(
    names: list[str],
    edges: list[tuple[str, str]],
    sizes: Mapping[str, tuple[float, float]],
    direction: Direction,
    gap: float = LAYER_GAP,
) -> tuple[dict[str, tuple[float, float]], dict[tuple[str, str], list[tuple[float, float]]]]:
    """Node centres from grandalf's Sugiyama layout (components side by side), and
    the bends of each edge that spans layers (the layout's dummy nodes)."""
    from grandalf.graphs import Edge, Vertex, graph_core
    from grandalf.layouts import SugiyamaLayout

    class _View:
        def __init__(self, w: float = 1.0, h: float = 1.0) -> None:
            self.w, self.h = w, h
            self.xy = (0.0, 0.0)
            self.path: list[tuple[float, float]] = []

        def setpath(self, path: list[tuple[float, float]]) -> None:
            self.path = [(float(x), float(y)) for x, y in path]

    across = direction == "LR"
    vertices = {n: Vertex(n) for n in names}
    for n, vertex in vertices.items():
        w, h = sizes[n]
        vertex.view = _View(h, w) if across else _View(w, h)
    links = {pair: Edge(vertices[pair[0]], vertices[pair[1]]) for pair in dict.fromkeys(edges)}
    for link in links.values():
        link.view = _View()
    placed: dict[str, tuple[float, float]] = {}
    paths: dict[tuple[str, str], list[tuple[float, float]]] = {}
    offset = 0.0
    # Components made here, in the order given: grandalf's own Graph collects
    # them through sets, so its drawing would depend on memory addresses.
    for members_names, component_links in components(names, list(links)):
        component = graph_core(
            [vertices[n] for n in members_names], [links[p] for p in component_links]
        )
        sugiyama = SugiyamaLayout(component)
        sugiyama.xspace = NODE_GAP
        sugiyama.yspace = gap
        sugiyama.init_all()
        sugiyama.draw()
        members = list(component.sV)
        min_x = min(v.view.xy[0] - v.view.w / 2 for v in members)
        max_x = max(v.view.xy[0] + v.view.w / 2 for v in members)
        for vertex in members:
            x, y = vertex.view.xy
            placed[vertex.data] = (x - min_x + offset, y)
        for pair, link in links.items():
            if pair[0] in placed and pair[0] in {v.data for v in members}:
                bends = link.view.path[1:-1]
                paths[pair] = [(x - min_x + offset, y) for x, y in bends]
        offset += max_x - min_x + NODE_GAP * 2
    if across:
        placed = {n: (y, x) for n, (x, y) in placed.items()}
        paths = {pair: [(y, x) for x, y in bends] for pair, bends in paths.items()}
    if not all(math.isfinite(c) for xy in placed.values() for c in xy):
        raise ValueError("the layout failed for this graph")
    return placed, paths
