"""A layered layout of a lineage graph, drawn as SVG by ``templates/lineage.html``.

Columns are hop distances from the centre artifact (ancestors to the left, descendants to
the right); inside a column, nodes are ordered by the mean row of their neighbours in the
column nearer the centre (one barycentre sweep outwards), which keeps chains straight and
edges short without a layout engine. Only numbers come out of here as geometry: labels
stay data and are escaped by the template.
"""

from __future__ import annotations

from dataclasses import dataclass

from .data import Lineage

NODE_W = 210
NODE_H = 52
GAP_X = 70
GAP_Y = 18
PAD = 16
LABEL_CHARS = 28


@dataclass(frozen=True)
class PlacedNode:
    id: str
    x: int
    y: int
    lines: tuple[str, ...]  # label lines: short id, user · type, created
    kind: str  # "centre", "ancestor", "descendant", "missing"
    title: str  # the tooltip: full id and what it is


@dataclass(frozen=True)
class PlacedEdge:
    parent: str
    child: str
    d: str  # SVG path data (numbers only)


@dataclass(frozen=True)
class Drawing:
    width: int
    height: int
    nodes: tuple[PlacedNode, ...]
    edges: tuple[PlacedEdge, ...]
    node_w: int = NODE_W
    node_h: int = NODE_H


def _cut(text: str, n: int = LABEL_CHARS) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def layout(g: Lineage) -> Drawing:
    layers: dict[int, list[str]] = {}
    for n in g.nodes.values():
        layers.setdefault(n.layer, []).append(n.id)
    parents: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    for p, c in g.edges:
        parents.setdefault(c, []).append(p)
        children.setdefault(p, []).append(c)
    row: dict[str, float] = {g.centre: 0.0}
    order: dict[int, list[str]] = {0: [g.centre]}

    def sweep(layer: int, neighbours: dict[str, list[str]]) -> None:
        def key(nid: str) -> tuple[float, str]:
            placed = [row[m] for m in neighbours.get(nid, []) if m in row]
            created = (g.nodes[nid].md or {}).get("created") or ""
            return (sum(placed) / len(placed) if placed else float("inf"), str(created) + nid)

        ids = sorted(layers[layer], key=key)
        order[layer] = ids
        for i, nid in enumerate(ids):
            row[nid] = float(i)

    top = max(layers) if layers else 0
    bottom = min(layers) if layers else 0
    for layer in range(1, top + 1):
        if layer in layers:
            sweep(layer, parents)
    for layer in range(-1, bottom - 1, -1):
        if layer in layers:
            sweep(layer, children)
    tallest = max(len(v) for v in order.values())
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y
    width = PAD * 2 + (top - bottom + 1) * NODE_W + (top - bottom) * GAP_X
    pos: dict[str, tuple[int, int]] = {}
    placed: list[PlacedNode] = []
    for layer in sorted(order):
        ids = order[layer]
        column = len(ids) * NODE_H + (len(ids) - 1) * GAP_Y
        y0 = PAD + (height - 2 * PAD - column) // 2
        x = PAD + (layer - bottom) * (NODE_W + GAP_X)
        for i, nid in enumerate(ids):
            y = y0 + i * (NODE_H + GAP_Y)
            pos[nid] = (x, y)
            node = g.nodes[nid]
            md = node.md
            if md is None:
                kind = "missing"
                lines: tuple[str, ...] = (_cut(nid[:16] + "…"), "not in the catalogue", "")
                title = f"{nid} (named in based_on, not in the catalogue)"
            else:
                kind = "centre" if layer == 0 else ("ancestor" if layer < 0 else "descendant")
                info = md.get("info") or {}
                t = info.get("type") if isinstance(info, dict) else None
                who = str(md.get("user", "?")) + (f" · {t}" if t is not None else "")
                created = str(md.get("created", ""))[:16].replace("T", " ")
                lines = (nid[:16] + "…", _cut(who), created)
                title = f"{nid} by {md.get('user', '?')}" + (f", {t}" if t is not None else "")
            placed.append(PlacedNode(nid, x, y, lines, kind, title))
    edges = []
    loops = False
    for p, c in g.edges:
        if p not in pos or c not in pos:
            continue
        (px, py), (cx, cy) = pos[p], pos[c]
        x1, y1 = px + NODE_W, py + NODE_H // 2
        x2, y2 = cx, cy + NODE_H // 2
        if x2 <= x1:  # drawn against the grain (a cycle): loop below the boxes
            x1, x2 = px + NODE_W // 2, cx + NODE_W // 2
            y1, y2 = py + NODE_H, cy + NODE_H
            bend = max(y1, y2) + 40
            loops = True
            d = f"M{x1},{y1} C{x1},{bend} {x2},{bend} {x2},{y2}"
        else:
            mid = (x1 + x2) // 2
            d = f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2 - 6},{y2}"
        edges.append(PlacedEdge(p, c, d))
    # room below the boxes for edges that loop back (cycles)
    return Drawing(width, height + (48 if loops else 0), tuple(placed), tuple(edges))
