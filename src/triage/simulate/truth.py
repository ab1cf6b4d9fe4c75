"""The simulator's ground truth: what it injected, kept apart from anything triage computes.

``true_priority`` is the simulator's own statement of the priority each injected incident
deserves. It states the *observed-impact* rule of triage's default priority policy
(``docs/simulation.md``) on the scenario's facts: the services the failure really reached
(a silent root included: it failed, though nothing fired on it), the worst severity injected
on each, and the catalog. So priority accuracy measures whether triage gets there from a noisy
alert stream (grouping, missed or extra services), not whether the policy is a good one. It is
written here again on purpose, not imported from ``triage.core.incidents.priority``: truth is
never recomputed with triage's code.

>>> import networkx as nx
>>> from triage.core.topology import ServiceInfo, Topology
>>> t = Topology(nx.DiGraph([("web", "db")]), {"web": ServiceInfo("web", tier=2, users=20000),
...                                             "db": ServiceInfo("db", tier=1)})
>>> true_priority({"db": "critical"}, t)[0]
'P1'
>>> true_priority({"db": "error"}, t)[0]
'P2'
>>> true_priority({"db": "warning"}, t)[0]
'P3'
>>> true_priority({"db": "warning", "web": "warning"}, t)[0]
'P1'
>>> for reason in true_priority({"db": "none", "web": "info"}, t)[1]:  # db silent
...     print(reason)
impact critical: best tier 1, 20,000 users see it
urgency low: worst injected severity urgency low
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from triage.core.topology import Topology

# The default matrix, tier and user levels, and severity urgency, as documented.
_MATRIX: Final = {
    "critical": {"high": "P1", "medium": "P2", "low": "P2"},
    "high": {"high": "P1", "medium": "P2", "low": "P3"},
    "medium": {"high": "P2", "medium": "P3", "low": "P4"},
    "low": {"high": "P3", "medium": "P4", "low": "P4"},
}
_IMPACTS: Final = ("critical", "high", "medium", "low")
_TIER_IMPACT: Final = {1: "critical", 2: "high", 3: "medium", 4: "low"}
_URGENCY: Final = {"critical": "high", "error": "medium", "warning": "medium", "info": "low",
                   "none": "low"}
_URGENCIES: Final = ("high", "medium", "low")
_PRIORITIES: Final = ("P1", "P2", "P3", "P4")
UNKNOWN_TIER: Final = 3


def true_priority(severity_by_service: Mapping[str, str], topology: Topology
                  ) -> tuple[str, list[str]]:
    """The priority an incident deserves, and why, from the services the failure reached,
    each with the worst severity injected on it (``none``: it failed but fired nothing, a
    silent root).

    * Impact, the higher of: the best tier among the reached services (their business
      service's tier counts too; unknown is 3), 1 critical, 2 high, 3 medium, 4 low; and the
      users of the user-facing services among them that alert (not of services that merely
      depend on them: that is risk), >= 100k critical, >= 10k high, >= 1k medium, else low.
    * Urgency: the worst severity (critical high; error, warning medium; info, none low),
      high when a user-facing service among them fires above info.
    * The default ITIL matrix cell, at most P3 when every severity is warning or milder and
      no user-facing service alerts."""
    services = sorted(severity_by_service)
    tiers = []
    for s in services:
        info = topology.info(s)
        bs = topology.business_tiers.get(info.business_service or "")
        own = [t for t in (info.tier, bs) if t is not None]
        tiers.append(min(own) if own else UNKNOWN_TIER)
    tier_impact = _TIER_IMPACT[min(tiers)]
    facing = [s for s in services if topology.info(s).user_facing
              and severity_by_service[s] != "none"]
    users = sum(topology.info(s).users for s in facing)
    users_impact = ("critical" if users >= 100_000 else "high" if users >= 10_000
                    else "medium" if users >= 1_000 else "low")
    impact = min(tier_impact, users_impact, key=_IMPACTS.index)
    worst = min((_URGENCY.get(v, "low") for v in severity_by_service.values()),
                key=_URGENCIES.index)
    loud = [s for s in facing if _URGENCY.get(severity_by_service[s], "low") != "low"]
    urgency = "high" if loud else worst
    priority = _MATRIX[impact][urgency]
    mild = not {"critical", "error"} & set(severity_by_service.values())
    reasons = [f"impact {impact}: best tier {min(tiers)}, {users:,} users see it",
               f"urgency {urgency}: worst injected severity urgency {worst}"
               + (f", user-facing {', '.join(loud)} firing above info" if loud else "")]
    if mild and not facing and _PRIORITIES.index(priority) < _PRIORITIES.index("P3"):
        reasons.append(f"capped at P3 from {priority}: only warnings, no user-facing symptom")
        priority = "P3"
    return priority, reasons


@dataclass(slots=True)
class TrueIncident:
    """One injected failure.

    ``services`` maps every service the failure reached to the worst severity injected on it,
    the root included; a silent root is listed with ``none`` (the alerting services are the
    others). ``hops`` is each one's distance up the call graph from the root."""

    id: str
    root_cause: str
    started_at: float  # when the root cause failed (event time)
    mitigated_at: float
    cause_change: str | None
    priority: str
    priority_reasons: list[str]
    severity: str  # major | minor
    services: dict[str, str] = field(default_factory=dict)  # service -> worst severity
    hops: dict[str, int] = field(default_factory=dict)  # service -> hops from the root
    fingerprints: list[str] = field(default_factory=list)
    first_alert_at: float | None = None  # first delivery of any of its alerts
    silent_root: bool = False  # the root raised no alert (severity "none" in services)
    decoy_changes: list[str] = field(default_factory=list)  # changes on its root's neighbours
    concurrent_with: list[str] = field(default_factory=list)  # incidents overlapping in time
    paired_with: str | None = None  # the incident it was started beside, within 3 minutes
    shared_dependency: str | None = None  # a service both paired roots call (it never fails)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "root_cause": self.root_cause, "cause_change": self.cause_change,
                "priority": self.priority, "priority_reasons": self.priority_reasons,
                "severity": self.severity, "started_at": self.started_at,
                "mitigated_at": self.mitigated_at, "first_alert_at": self.first_alert_at,
                "services": self.services, "hops": self.hops,
                "fingerprints": sorted(self.fingerprints), "silent_root": self.silent_root,
                "decoy_changes": self.decoy_changes, "concurrent_with": self.concurrent_with,
                "paired_with": self.paired_with, "shared_dependency": self.shared_dependency}
