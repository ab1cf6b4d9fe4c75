"""The failing part of the dependency graph, drawn on the incident page.

Triage's incident events carry it (``incident.dependencies``: calls ``[caller, callee]`` and
undirected links among the root cause and the failing services). The page draws the latest
as an inline SVG laid out here, server-side (no JavaScript): callers above what they call,
so a failure reads downwards to its root; the root cause red (dashed when triage inferred a
silent one), services with an alert firing orange, the rest grey.

>>> inc = {"services": ["api", "db", "web"], "active_services": ["api", "db"],
...        "root_cause": {"service": "db", "inferred": False},
...        "dependencies": {"calls": [["api", "db"], ["web", "api"]], "links": []}}
>>> g = layout(inc)
>>> [(n.name, n.layer, n.kind) for n in g.nodes]
[('web', 0, 'quiet'), ('api', 1, 'firing'), ('db', 2, 'root')]
>>> len(g.edges), g.edges[0].kind
(2, 'calls')
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 150, 30, 24, 46, 10
MAX_PER_LAYER = 8  # wider layers wrap onto another row
MAX_SERVICES = 60  # as many as the events carry edges for


@dataclass(frozen=True, slots=True)
class Node:
    name: str
    layer: int
    x: float
    y: float
    kind: str  # root, root inferred, firing, quiet


@dataclass(frozen=True, slots=True)
class Edge:
    x1: float
    y1: float
    x2: float
    y2: float
    kind: str  # calls (an arrow from caller to callee), link (no direction)


@dataclass(frozen=True, slots=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: float
    height: float
    node_w: float = NODE_W
    node_h: float = NODE_H


def latest_incident(log: Sequence[dict[str, Any]]) -> dict[str, Any] | None:
    """The ``incident`` of the newest triage event in an incident's log."""
    for row in reversed(log):
        body = row.get("body")
        if row.get("source_id") and isinstance(body, dict) and isinstance(
                body.get("incident"), dict):
            inc: dict[str, Any] = body["incident"]
            return inc
    return None


def layout(inc: dict[str, Any] | None) -> Graph | None:
    """Positions for the incident's graph; None when its events carry none (older triage)
    or it has a single service and no edge."""
    deps = (inc or {}).get("dependencies")
    if not inc or not isinstance(deps, dict):
        return None
    calls = [tuple(e) for e in deps.get("calls") or [] if len(e) == 2]
    links = [tuple(e) for e in deps.get("links") or [] if len(e) == 2]
    root = inc.get("root_cause") or {}
    names = {s for e in (*calls, *links) for s in e}
    if not names:
        return None
    # services with no edge among the failing ones are shown too, up to the events' cap
    extra = [s for s in [root.get("service"), *(inc.get("services") or [])]
             if isinstance(s, str) and s not in names]
    names.update(extra[:max(0, MAX_SERVICES - len(names))])
    g = nx.DiGraph(calls)
    g.add_nodes_from(names)
    layer = _layers(g)
    firing = set(inc.get("active_services") or [])
    by_layer: dict[int, list[str]] = {}
    for name in sorted(names, key=lambda n: (layer[n], n)):
        by_layer.setdefault(layer[name], []).append(name)
    nodes: dict[str, Node] = {}
    row = 0
    width = 0.0
    for depth in sorted(by_layer):
        members = by_layer[depth]
        for start in range(0, len(members), MAX_PER_LAYER):
            chunk = members[start:start + MAX_PER_LAYER]
            for i, name in enumerate(chunk):
                x = PAD + i * (NODE_W + GAP_X)
                kind = ("root inferred" if root.get("inferred") else "root") \
                    if name == root.get("service") else \
                    "firing" if name in firing else "quiet"
                nodes[name] = Node(name, depth, x, PAD + row * (NODE_H + GAP_Y), kind)
                width = max(width, x + NODE_W + PAD)
            row += 1
    edges = [_edge(nodes[a], nodes[b], "calls") for a, b in calls]
    edges += [_edge(nodes[a], nodes[b], "link") for a, b in links]
    return Graph(list(nodes.values()), edges, width, PAD + row * (NODE_H + GAP_Y) - GAP_Y + PAD)


def _layers(g: nx.DiGraph) -> dict[str, int]:
    """Callers above callees: each service one below its deepest caller (cycles share a
    layer)."""
    dag = nx.condensation(g)
    depth: dict[int, int] = {}
    for c in nx.topological_sort(dag):
        depth[c] = max((depth[p] + 1 for p in dag.pred[c]), default=0)
    return {n: depth[c] for c, members in dag.nodes(data="members") for n in members}


def _edge(a: Node, b: Node, kind: str) -> Edge:
    """From the bottom of ``a`` to the top of ``b`` (or side to side in one row)."""
    if a.y == b.y:
        left, right = (a, b) if a.x < b.x else (b, a)
        y = a.y + NODE_H / 2
        return Edge(left.x + NODE_W, y, right.x, y, kind)
    top, bottom = (a, b) if a.y < b.y else (b, a)
    if kind == "calls":
        top, bottom = a, b  # the arrow points at the callee, wherever it is
    y1 = top.y + (NODE_H if top.y < bottom.y else 0)
    y2 = bottom.y + (0 if top.y < bottom.y else NODE_H)
    return Edge(top.x + NODE_W / 2, y1, bottom.x + NODE_W / 2, y2, kind)
