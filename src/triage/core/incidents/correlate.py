"""Which incident a page-worthy alert belongs to, when incidents merge, and when they split.

**Membership is evidence.** A page-worthy alert on service S joins an open incident only if

* *time*: S's alert started within ``window`` of the incident's latest page-worthy onset
  (not of any member's latest repeat), and within ``horizon`` of its episode's first onset;
* *graph*: S is related to one of the incident's *anchors* (its page-worthy services this
  episode and its root cause, silent or not), by one of these relations, best first:

  =========== ===============================================================================
  ``same``    S is an anchor, or S already has a page-worthy alert firing in the incident
  ``caller``  S calls an anchor: a failure climbing to the callers (the usual cascade)
  ``link``    S shares an undirected link with an anchor: no direction, time decides
  ``callee``  an anchor calls S: S may be a deeper cause whose alert came late
  ``sibling`` S and the incident's root call the same service, and neither says it failed
              itself: the shared dependency may be a silent root
  =========== ===============================================================================

  (``hops`` > 1 widens ``caller``/``callee``/``link`` to paths of that many hops.)

Weak alerts (``evidence.page_worthy`` is false: info, resource trends, flapped) never open an
incident, never anchor one, never extend its life and never bridge two: they may only attach,
as context, to an incident where their own service has page-worthy evidence.

**Merges** happen only when one new alert explains two incidents as one failure: it is a
``callee`` (a deeper cause) or a ``sibling`` (through the same silent dependency) of both.
An alert merely *near* two incidents joins the best one and merges nothing, so a noisy
incident cannot swallow a neighbour's. The merged incident's root is re-ranked over the union
of the evidence, so the best-evidenced root wins, whichever incident it came from.

**Splits**: when an incident's page-worthy services fall into groups that no relation joins
any more (a bridge turned out to flap), the groups away from the root's leave as incidents of
their own.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx

from triage.core.topology import Topology

SAME, CALLER, LINK, CALLEE, SIBLING = range(5)
RELATIONS = ("same", "caller", "link", "callee", "sibling")
EXPLAINING = frozenset({CALLEE, SIBLING})
"""Relations under which a new alert can explain two incidents at once (and merge them)."""


def relation(topology: Topology, service: str, anchor: str, hops: int = 1) -> int | None:
    """How ``service`` relates to an incident's ``anchor`` service (None: not at all).

    >>> t = Topology(nx.DiGraph([("web", "cart"), ("cart", "db")]), links=[("db", "db2")])
    >>> [RELATIONS[relation(t, s, "cart")] for s in ("cart", "web", "db")]
    ['same', 'caller', 'callee']
    >>> RELATIONS[relation(t, "db2", "db")], relation(t, "web", "db"), relation(t, "web", "db", 2)
    ('link', None, 1)
    """
    if service == anchor:
        return SAME
    if hops <= 1:
        if anchor in topology.callees(service):
            return CALLER
        if anchor in topology.linked(service):
            return LINK
        if anchor in topology.callers(service):
            return CALLEE
        return None
    if anchor in topology.dependencies_within(service, hops):
        return CALLER
    if anchor in topology.links_within(service, hops):
        return LINK
    if service in topology.dependencies_within(anchor, hops):
        return CALLEE
    return None


@dataclass(frozen=True, slots=True)
class Candidate:
    """An open incident a new alert could join, and how."""

    incident: str
    relation: int
    last_onset: float
    opened_at: float


def choose(candidates: Iterable[Candidate], *, explains: bool, merge: bool
           ) -> tuple[Candidate, list[Candidate]]:
    """The incident to join and those to merge into it.

    The best relation wins, then the most recent onset activity, then the oldest incident.
    When ``explains`` (the alert is cause-type or severe enough to be a root) and two or more
    candidates relate through an explaining relation, they are one failure: all merge into the
    oldest of them.

    >>> a = Candidate("a", CALLER, 100.0, 10.0); b = Candidate("b", CALLEE, 90.0, 5.0)
    >>> c = Candidate("c", CALLEE, 95.0, 8.0)
    >>> t, m = choose([a, b, c], explains=True, merge=True); t.incident, [x.incident for x in m]
    ('b', ['c'])
    >>> t, m = choose([a, b, c], explains=False, merge=True); t.incident, m
    ('a', [])
    """
    items = sorted(candidates, key=lambda c: (c.relation, -c.last_onset, c.opened_at,
                                               c.incident))
    if merge and explains:
        bound = sorted((c for c in items if c.relation in EXPLAINING),
                       key=lambda c: (c.opened_at, c.incident))
        if len(bound) >= 2:
            return bound[0], bound[1:]
    return items[0], []


def groups(services: Iterable[str], root: str | None, topology: Topology,
           hops: int = 1) -> list[set[str]]:
    """The evidence services (and the root) in groups no relation joins; the root's first.

    >>> t = Topology(nx.DiGraph([("a", "r"), ("b", "r"), ("x", "y")]))
    >>> [sorted(g) for g in groups(["a", "b", "x", "y"], "r", t)]
    [['a', 'b', 'r'], ['x', 'y']]
    """
    nodes = set(services)
    if root is not None:
        nodes.add(root)
    g = nx.Graph()
    g.add_nodes_from(nodes)
    for s in nodes:
        near = topology.within(s, hops) if hops > 1 else topology.neighbours(s)
        g.add_edges_from((s, n) for n in near if n in nodes and n != s)
    parts = [set(c) for c in nx.connected_components(g)]
    parts.sort(key=lambda p: (root not in p, min(p)))
    return parts


def onset_order(onsets: Mapping[str, float]) -> list[str]:
    """Services by onset, then name."""
    return sorted(onsets, key=lambda s: (onsets[s], s))
