"""Generated service graphs shaped like microservice call graphs, for benchmarks and the
storm simulator: a few user-facing entry points, layers of business services that call
deeper layers, and shared stores (databases, caches, queues) with heavy fan-in.

Deterministic for a seed.

>>> t = layered_topology(200, seed=1)
>>> len(t), sum(1 for s in t.services.values() if s.user_facing) >= 1
(200, True)
"""

from __future__ import annotations

import random

import networkx as nx

from triage.core.topology import ServiceInfo, Topology


def layered_topology(n_services: int, *, seed: int = 0, layers: int = 5) -> Topology:
    """A layered call graph of ``n_services`` services with a matching catalog."""
    rng = random.Random(seed)
    n_entry = max(1, n_services // 50)
    n_stores = max(1, n_services // 10)
    n_mid = max(layers - 2, n_services - n_entry - n_stores)
    mid_layers = max(1, layers - 2)
    names: list[list[str]] = [[f"edge-{i:04d}" for i in range(n_entry)]]
    per = n_mid // mid_layers
    for layer in range(mid_layers):
        count = per if layer < mid_layers - 1 else n_mid - per * (mid_layers - 1)
        names.append([f"svc-l{layer + 1}-{i:04d}" for i in range(count)])
    stores = [f"store-{i:04d}" for i in range(n_stores)]
    names.append(stores)
    graph = nx.DiGraph()
    popularity: dict[str, int] = {}
    for depth, layer_names in enumerate(names[:-1]):
        deeper = [s for later in names[depth + 1:] for s in later]
        for svc in layer_names:
            graph.add_node(svc)
            for _ in range(rng.randint(2, 5)):
                # prefer the next layer and popular services: realistic fan-in
                pool = names[depth + 1] if rng.random() < 0.6 else deeper
                pick = max(rng.sample(pool, min(3, len(pool))),
                           key=lambda s: popularity.get(s, 0) + rng.random())
                graph.add_edge(svc, pick)
                popularity[pick] = popularity.get(pick, 0) + 1
    for store in stores:
        graph.add_node(store)
    services: dict[str, ServiceInfo] = {}
    order = [s for layer in names for s in layer]
    for i, svc in enumerate(order):
        entry = svc.startswith("edge-")
        is_store = svc.startswith("store-")
        hub = is_store and popularity.get(svc, 0) > 10
        tier = 1 if entry or hub else rng.choice((2, 3, 3, 4))
        services[svc] = ServiceInfo(svc, team=f"team-{i // 8:03d}", tier=tier,
                                    users=rng.randint(1000, 200_000) if entry else 0,
                                    business_service=f"bs-{i % 12:02d}")
    return Topology(graph, services)
