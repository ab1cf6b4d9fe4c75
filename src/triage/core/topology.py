"""The service topology and catalog as the core sees them.

A ``networkx.DiGraph`` where an edge A→B means "A calls / depends on B", undirected *links*
(physical or peer links with no known direction: two devices on one cable, two replicas of a
cluster), and a ``ServiceInfo`` per service from the catalog (CMDB). Where a link has no
direction, the incident stage lets time decide which side failed first. Correlation, root
cause, suspect changes and priority ask the same few questions of it for every alert, so the
answers are cached per service: per-alert cost does not grow with the size of the graph or
the number of incidents.
Loaders (YAML, GraphML, Kubernetes manifests) live in ``triage.loaders``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache

import networkx as nx

TIERS = (1, 2, 3, 4)  # 1 = business critical ... 4 = best effort


@dataclass(frozen=True, slots=True)
class ServiceInfo:
    """What the catalog knows of one service. Unknown services get the defaults."""

    name: str
    team: str | None = None
    tier: int | None = None
    users: int = 0  # users served directly (a user-facing service has users > 0)
    business_service: str | None = None
    runbook: str | None = None

    @property
    def user_facing(self) -> bool:
        """Whether users reach this service directly."""
        return self.users > 0


class Topology:
    """Graph lookups with caches.

    >>> g = nx.DiGraph([("frontend", "cart"), ("cart", "redis")])
    >>> t = Topology(g, {"frontend": ServiceInfo("frontend", users=1000)})
    >>> t.depends_on("frontend", "redis"), t.distance("redis", "frontend")
    (True, 2)
    >>> sorted(t.within("cart", 1))
    ['cart', 'frontend', 'redis']
    >>> sorted(t.blast_radius(["redis"]))
    ['frontend']
    >>> g.add_edge("frontend", "ads", soft=True)
    >>> sorted(Topology(g, {"frontend": ServiceInfo("frontend", users=9)}).blast_radius(["ads"]))
    []
    >>> net = Topology(links=[("sw1", "sw2"), ("sw2", "sw3")])
    >>> sorted(net.neighbours("sw2")), net.distance("sw1", "sw3"), net.depends_on("sw1", "sw2")
    (['sw1', 'sw3'], 2, False)
    """

    def __init__(
        self,
        graph: nx.DiGraph | None = None,
        services: Mapping[str, ServiceInfo] | None = None,
        business_tiers: Mapping[str, int] | None = None,
        links: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.graph: nx.DiGraph = graph if graph is not None else nx.DiGraph()
        self.services: dict[str, ServiceInfo] = dict(services or {})
        for name in self.services:
            self.graph.add_node(name)
        # Undirected links: no side is known to depend on the other.
        self.links: nx.Graph = nx.Graph()
        for a, b in links:
            if a != b:
                self.links.add_edge(a, b)
        self.graph.add_nodes_from(self.links.nodes)
        self._has_links: bool = self.links.number_of_edges() > 0
        self.business_tiers: dict[str, int] = dict(business_tiers or {})
        # Every connection, direction dropped: proximity on the graph.
        self._undirected: nx.Graph = nx.Graph()
        self._undirected.add_nodes_from(self.graph.nodes)
        self._undirected.add_edges_from(self.graph.edges)
        self._undirected.add_edges_from(self.links.edges)
        self._component: dict[str, str] = {}
        for nodes in nx.connected_components(self._undirected):
            key = min(nodes)
            for n in nodes:
                self._component[n] = key
        # per-instance caches (lru_cache on bound methods would pin the instance)
        self.within = lru_cache(maxsize=None)(self._within)  # type: ignore[method-assign]
        self.descendants = lru_cache(maxsize=None)(self._descendants)  # type: ignore[method-assign]
        self.ancestors = lru_cache(maxsize=None)(self._ancestors)  # type: ignore[method-assign]
        self._distance = lru_cache(maxsize=1 << 16)(self._distance_uncached)
        self.dependencies_within = lru_cache(maxsize=None)(  # type: ignore[method-assign]
            self._dependencies_within)
        # Edges marked soft (the caller degrades gracefully) do not carry user impact.
        graph = self.graph
        self._hard = nx.DiGraph()  # a copy, not a view: a view's len() walks every node
        self._hard.add_nodes_from(graph.nodes)
        self._hard.add_edges_from((u, v) for u, v, soft in graph.edges(data="soft") if not soft)
        self.hard_ancestors = lru_cache(maxsize=None)(  # type: ignore[method-assign]
            self._hard_ancestors)
        self.dependents_within = lru_cache(maxsize=None)(  # type: ignore[method-assign]
            self._dependents_within)
        self.descendants_within = lru_cache(maxsize=None)(  # type: ignore[method-assign]
            self._descendants_within)
        self.links_within = lru_cache(maxsize=None)(  # type: ignore[method-assign]
            self._links_within)
        self.facing_from = lru_cache(maxsize=None)(self._facing_from)  # type: ignore[method-assign]
        self.neighbours = lru_cache(maxsize=None)(self._neighbours)  # type: ignore[method-assign]
        self.callers = lru_cache(maxsize=None)(self._callers)  # type: ignore[method-assign]
        self.callees = lru_cache(maxsize=None)(self._callees)  # type: ignore[method-assign]
        self.linked = lru_cache(maxsize=None)(self._linked)  # type: ignore[method-assign]

    def __contains__(self, service: object) -> bool:
        return service in self.graph

    def __len__(self) -> int:
        return int(self.graph.number_of_nodes())

    def info(self, service: str) -> ServiceInfo:
        """Catalog entry of ``service`` (defaults if the catalog does not know it)."""
        found = self.services.get(service)
        return found if found is not None else ServiceInfo(service)

    @property
    def has_links(self) -> bool:
        """Whether any undirected link is declared."""
        return self._has_links

    def neighbours(self, service: str) -> frozenset[str]:
        """Services one hop away: callers, callees and linked peers (itself excluded)."""
        return self._neighbours(service)

    def _neighbours(self, service: str) -> frozenset[str]:
        if service not in self._undirected:
            return frozenset()
        return frozenset(self._undirected.adj[service])

    def callers(self, service: str) -> frozenset[str]:
        """Services that depend on ``service`` directly."""
        return self._callers(service)

    def _callers(self, service: str) -> frozenset[str]:
        if service not in self.graph:
            return frozenset()
        return frozenset(self.graph.pred[service])

    def callees(self, service: str) -> frozenset[str]:
        """Services ``service`` depends on directly."""
        return self._callees(service)

    def _callees(self, service: str) -> frozenset[str]:
        if service not in self.graph:
            return frozenset()
        return frozenset(self.graph.succ[service])

    def linked(self, service: str) -> frozenset[str]:
        """Peers joined to ``service`` by an undirected link."""
        return self._linked(service)

    def _linked(self, service: str) -> frozenset[str]:
        if service not in self.links:
            return frozenset()
        return frozenset(self.links.adj[service])

    def component(self, service: str) -> str:
        """The connected component ``service`` belongs to, over dependencies and links alike
        (its correlation domain)."""
        return self._component.get(service, service)

    def within(self, service: str, k: int) -> frozenset[str]:
        """Services at most ``k`` hops from ``service`` in either direction, links included
        (itself included)."""
        return self._within(service, k)

    def _within(self, service: str, k: int) -> frozenset[str]:
        if service not in self._undirected:
            return frozenset((service,))
        lengths = nx.single_source_shortest_path_length(self._undirected, service, cutoff=k)
        return frozenset(lengths)

    def descendants(self, service: str) -> frozenset[str]:
        """Everything ``service`` depends on, directly or transitively."""
        return self._descendants(service)

    def _descendants(self, service: str) -> frozenset[str]:
        if service not in self.graph:
            return frozenset()
        return frozenset(nx.descendants(self.graph, service))

    def ancestors(self, service: str) -> frozenset[str]:
        """Everything that depends on ``service``, directly or transitively."""
        return self._ancestors(service)

    def _ancestors(self, service: str) -> frozenset[str]:
        if service not in self.graph:
            return frozenset()
        return frozenset(nx.ancestors(self.graph, service))

    def dependencies_within(self, service: str, k: int) -> Mapping[str, int]:
        """What ``service`` depends on within ``k`` hops downstream, with the hop count
        (``service`` itself at 0)."""
        return self._dependencies_within(service, k)

    def _dependencies_within(self, service: str, k: int) -> Mapping[str, int]:
        if service not in self.graph:
            return {service: 0}
        return dict(nx.single_source_shortest_path_length(self.graph, service, cutoff=k))

    def dependents_within(self, service: str, k: int) -> frozenset[str]:
        """What depends on ``service`` within ``k`` hops upstream (callers, their callers ...),
        itself excluded: where a failure of ``service`` climbs to."""
        return self._dependents_within(service, k)

    def _dependents_within(self, service: str, k: int) -> frozenset[str]:
        if service not in self.graph:
            return frozenset()
        reached = nx.single_source_shortest_path_length(self.graph.reverse(copy=False), service,
                                                        cutoff=k)
        return frozenset(s for s in reached if s != service)

    def descendants_within(self, service: str, k: int) -> frozenset[str]:
        """What ``service`` depends on within ``k`` hops downstream, itself excluded."""
        return self._descendants_within(service, k)

    def _descendants_within(self, service: str, k: int) -> frozenset[str]:
        return frozenset(s for s in self.dependencies_within(service, k) if s != service)

    def links_within(self, service: str, k: int) -> frozenset[str]:
        """Peers within ``k`` undirected links, itself excluded."""
        return self._links_within(service, k)

    def _links_within(self, service: str, k: int) -> frozenset[str]:
        if service not in self.links:
            return frozenset()
        reached = nx.single_source_shortest_path_length(self.links, service, cutoff=k)
        return frozenset(s for s in reached if s != service)

    def depends_on(self, a: str, b: str) -> bool:
        """Whether ``a`` depends on ``b``, directly or transitively."""
        return b in self.descendants(a)

    def distance(self, a: str, b: str) -> int | None:
        """Hops between ``a`` and ``b`` ignoring direction (links included), or None if
        unconnected."""
        if a == b:
            return 0
        return self._distance(a, b) if a <= b else self._distance(b, a)

    def _distance_uncached(self, a: str, b: str) -> int | None:
        if a not in self.graph or b not in self.graph:
            return None
        try:
            return int(nx.shortest_path_length(self._undirected, a, b))
        except nx.NetworkXNoPath:
            return None

    def hard_ancestors(self, service: str) -> frozenset[str]:
        """What depends on ``service`` without degrading gracefully (no soft edge on the way)."""
        return self._hard_ancestors(service)

    def _hard_ancestors(self, service: str) -> frozenset[str]:
        if service not in self.graph:
            return frozenset()
        return frozenset(nx.ancestors(self._hard, service))

    def blast_radius(self, services: Iterable[str]) -> frozenset[str]:
        """User-facing services among ``services`` and everything that depends on them
        through hard dependencies (a soft edge, e.g. optional ads, stops the impact)."""
        reached: set[str] = set()
        for s in services:
            reached.update(self.facing_from(s))
        return frozenset(reached)

    def facing_from(self, service: str) -> frozenset[str]:
        """User-facing services among ``service`` and what depends on it through hard
        dependencies (cached per service)."""
        return self._facing_from(service)

    def _facing_from(self, service: str) -> frozenset[str]:
        reached = {service} | self.hard_ancestors(service)
        return frozenset(s for s in reached if self.info(s).user_facing)
