"""Probable root cause and suspect changes of an incident, explained.

Root cause: among the incident's alerting services, the one the others depend on, directly
or transitively: the deepest failing dependency. If C depends on D and both alert, everything
that depends on C also depends on D, so D explains at least as much and wins; ties go to the
service that alerted first. The reason names the dependents and the first alert time, so a
responder can check it against the graph.

Suspect changes: change records on the root-cause service or on what it depends on (within
``hops``), inside the lookback window before the incident's first alert, scored by time
proximity and graph distance.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from triage.core.changes import ChangeIndex
from triage.core.timeutil import format_timestamp
from triage.core.topology import Topology


@dataclass(frozen=True, slots=True)
class RootCause:
    """The probable root-cause service, how sure triage is (0..1), and why."""

    service: str
    confidence: float
    reason: str
    candidates: tuple[str, ...] = ()  # the top 3 in rank order (the first is ``service``)


@dataclass(frozen=True, slots=True)
class Suspect:
    """A change record suspected of causing the incident."""

    id: str
    service: str
    kind: str
    at: float
    score: float
    reason: str


def find_root_cause(*, first_seen: Mapping[str, float], topology: Topology) -> RootCause:
    """Pick the deepest failing dependency among ``first_seen`` (service → first alert time).

    >>> import networkx as nx
    >>> t = Topology(nx.DiGraph([("frontend", "cart"), ("checkout", "cart"), ("cart", "redis")]))
    >>> rc = find_root_cause(first_seen={"frontend": 12.0, "cart": 10.0, "checkout": 11.0},
    ...                      topology=t)
    >>> rc.service, rc.confidence
    ('cart', 0.95)
    """
    services = sorted(first_seen, key=lambda s: (first_seen[s], s))
    if len(services) == 1:
        only = services[0]
        known = only in topology
        return RootCause(only, 0.6 if known else 0.4,
                         f"{only} is the only alerting service"
                         + ("" if known else " (not in the service graph)"), (only,))
    alerting = set(services)
    # set intersection runs in C: O(S * min(ancestors, S)) without a Python-level S^2 loop
    counts = {c: len(topology.ancestors(c) & alerting) for c in services}
    # most dependents first, then earliest first alert, then name (deterministic)
    ranked = sorted(services, key=lambda c: (-counts[c], first_seen[c], c))
    best = ranked[0]
    deps = sorted(topology.ancestors(best) & alerting)
    others = len(services) - 1
    first = services[0] == best
    coverage = len(deps) / others
    confidence = round(min(0.95, 0.3 + 0.45 * coverage + (0.1 if first else 0.0)
                           + (0.1 if deps else 0.0)), 2)
    when = (format_timestamp(first_seen[best]) or "")[11:19]
    if deps:
        names = ", ".join(deps[:5]) + (", ..." if len(deps) > 5 else "")
        reason = (f"{len(deps)} alerting service{'s' if len(deps) != 1 else ''} depend on "
                  f"{best} ({names})")
        unexplained = others - len(deps)
        if unexplained:
            reason += f"; {unexplained} other{'s' if unexplained != 1 else ''} do not"
    else:
        reason = f"no alerting service depends on another; {best} is the earliest"
    reason += (f"; it alerted first, at {when}" if first
               else f"; it alerted at {when}, after {services[0]}")
    return RootCause(best, confidence, reason, tuple(ranked[:3]))


def find_suspects(
    *,
    root: str,
    first_alert: float,
    changes: ChangeIndex,
    topology: Topology,
    lookback: float = 7200.0,
    hops: int = 2,
    limit: int = 3,
) -> list[Suspect]:
    """Top ``limit`` change records on ``root`` or its dependencies before ``first_alert``.

    Score = time proximity times graph proximity: ``exp(-age / (lookback / 4))`` where age is
    the time from the change to the first alert, times ``1 / (1 + hops)``.

    >>> from triage.core.changes import ChangeRecord
    >>> idx = ChangeIndex(); _ = idx.add(ChangeRecord("d1", "cart", "deploy", 1000.0))
    >>> [s.id for s in find_suspects(root="cart", first_alert=1300.0, changes=idx,
    ...                               topology=Topology())]
    ['d1']
    """
    if not len(changes):
        return []
    tau = lookback / 4.0
    found: list[Suspect] = []
    for service, dist in topology.dependencies_within(root, hops).items():
        for rec in changes.between(service, first_alert - lookback, first_alert):
            age = first_alert - rec.at
            score = round(math.exp(-age / tau) / (1 + dist), 3)
            where = ("on the root-cause service" if dist == 0 else
                     f"on {service}, which {root} depends on"
                     + (f" ({dist} hops)" if dist > 1 else ""))
            what = f"{rec.kind.replace('_', ' ')} {rec.id}"
            if rec.description:
                what += f" ({rec.description})"
            found.append(Suspect(rec.id, rec.service, rec.kind, rec.at, score,
                                 f"{what} {_ago(age)} before the first alert, {where}"))
    found.sort(key=lambda s: (-s.score, -s.at, s.id))
    return found[:limit]


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"
