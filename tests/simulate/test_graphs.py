from __future__ import annotations

import networkx as nx

from triage.simulate.graphs import layered_topology


def test_deterministic_for_a_seed() -> None:
    a, b = layered_topology(300, seed=4), layered_topology(300, seed=4)
    assert sorted(a.graph.edges) == sorted(b.graph.edges)
    assert sorted(layered_topology(300, seed=5).graph.edges) != sorted(a.graph.edges)


def test_shaped_like_a_microservice_call_graph() -> None:
    t = layered_topology(1000, seed=1)
    assert len(t) == 1000
    assert nx.is_directed_acyclic_graph(t.graph)
    entries = [s for s, info in t.services.items() if info.user_facing]
    assert 1 <= len(entries) <= 50  # few entry points
    assert all(t.graph.in_degree(s) == 0 for s in entries)
    stores = [s for s in t.services if s.startswith("store-")]
    assert all(t.graph.out_degree(s) == 0 for s in stores)
    fan_in = sorted((t.graph.in_degree(s) for s in t.services), reverse=True)
    assert fan_in[0] >= 20  # shared stores with heavy fan-in
    assert all(info.team and info.tier in (1, 2, 3, 4) for info in t.services.values())
