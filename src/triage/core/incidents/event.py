"""The incident event: what triage publishes for each material change of an incident.

Its JSON Schema is ``schemas/incident-event.schema.json`` (``schema_version`` 1; fields are
only ever added, never changed). ``render_event`` is the one place that writes it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from triage.core.incidents.model import Incident
from triage.core.timeutil import format_timestamp
from triage.core.topology import Topology

Event = dict[str, Any]
SCHEMA_VERSION = 1
MATERIAL_NAMES = ("status", "services", "root_cause", "priority", "owner", "owner", "war_room",
                  "suspect_changes", "merged_into", "reopened", "reactivated", "split_into",
                  "pages")
"""The name of each field of ``Incident.material()``, for an update's ``changed`` list."""


def changed_fields(before: tuple[Any, ...], after: tuple[Any, ...]) -> list[str]:
    """What changed between two ``Incident.material()`` tuples, by name."""
    out: list[str] = []
    for name, a, b in zip(MATERIAL_NAMES, before, after, strict=True):
        if a != b and name not in out:
            out.append(name)
    return out


def render_event(inc: Incident, kind: str, now: float, changed: list[str],
                 topology: Topology, *, page: bool = False) -> Event:
    """The incident event (``schemas/incident-event.schema.json``). ``page`` is true for the
    events that page the owner: every ``incident.created``, and an escalation of a recurring
    incident."""
    ts: Callable[[float | None], str | None] = format_timestamp
    root = inc.root
    runbook = topology.info(root.service).runbook if root else None
    services = sorted(inc.first_seen)
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": f"{inc.id}:{inc.seq}",
        "type": kind,
        "at": ts(now),
        "page": page,
        "changed": changed,
        "incident": {
            "id": inc.id,
            "sequence": inc.seq,
            "status": inc.status,
            "priority": inc.priority,
            "priority_reasons": list(inc.priority_reasons),
            "impact": inc.impact or None,
            "urgency": inc.urgency or None,
            "users_affected": inc.users_affected,
            "risk": {"users": inc.users_at_risk, "services": list(inc.at_risk)},
            "services": services,
            "active_services": inc.active_services(),
            "teams": inc.teams(topology),
            "root_cause": {"service": root.service, "confidence": root.confidence,
                           "reason": root.reason, "runbook": runbook,
                           "candidates": list(root.candidates),
                           "inferred": root.inferred} if root else None,
            "alert_count": len(inc.alerts),
            "firing_count": inc.firing,
            "fingerprints": sorted(inc.alerts),
            "first_seen": ts(inc.opened_at),
            "last_seen": ts(inc.last_seen),
            "resolved_at": ts(inc.resolved_at),
            "owner": {"team": inc.owner_team, "person": inc.owner_person,
                      "reason": inc.owner_reason},
            "war_room": {"open": inc.war_room_open, "reason": inc.war_room_reason,
                         "at": ts(inc.war_room_at)},
            "suspect_changes": [{"id": s.id, "service": s.service, "kind": s.kind,
                                 "at": ts(s.at), "score": s.score, "reason": s.reason}
                                for s in inc.suspects],
            "merged_into": inc.merged_into,
            "split_from": inc.split_from,
            "split_into": list(inc.split_into),
            "reopened": inc.reopened,
            "reactivated": inc.reactivated,
            "pages": inc.pages,
            "dependencies": dependencies(topology, [root.service] if root else [],
                                         services),
        },
    }


MAX_GRAPH_SERVICES = 60  # the failing part shown: the root and the services nearest it


def dependencies(topology: Topology, first: list[str], services: Iterable[str]
                 ) -> dict[str, list[list[str]]]:
    """The failing part of the dependency graph: the calls (``[caller, callee]``) and the
    undirected links among ``first`` (the root cause, silent or not) and ``services``
    (sorted), at most ``MAX_GRAPH_SERVICES`` of them (the root's neighbourhood first),
    sorted.

    >>> import networkx as nx
    >>> t = Topology(nx.DiGraph([("web", "api"), ("api", "db"), ("web", "cdn")]))
    >>> dependencies(t, ["db"], ["web", "api", "db"])
    {'calls': [['api', 'db'], ['web', 'api']], 'links': []}
    """
    nodes = list(dict.fromkeys([*first, *services]))
    if len(nodes) > MAX_GRAPH_SERVICES:
        near = set().union(*(topology.neighbours(s) for s in first))
        nodes.sort(key=lambda s: (s not in first, s not in near, s))
    keep = set(nodes[:MAX_GRAPH_SERVICES])
    # the topology's cached neighbour sets: a networkx subgraph view cost a fifth of a
    # replay's time
    calls = sorted([a, b] for a in keep for b in topology.callees(a) & keep)
    links = (sorted([a, b] for a in keep for b in topology.linked(a) & keep if a < b)
             if topology.has_links else [])
    return {"calls": calls, "links": links}
