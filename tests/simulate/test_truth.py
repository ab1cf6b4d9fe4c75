"""The simulator's ground truth: the true priority rule and the incident record."""

from __future__ import annotations

import networkx as nx
import pytest

from triage.core.topology import ServiceInfo, Topology
from triage.simulate.truth import TrueIncident, true_priority


def topology() -> Topology:
    graph = nx.DiGraph([("web", "db"), ("web", "cache"), ("shop", "api"), ("api", "pay")])
    graph.add_node("cron")
    return Topology(graph, {"web": ServiceInfo("web", tier=2, users=1000),
                            "db": ServiceInfo("db", tier=1),
                            "cache": ServiceInfo("cache", tier=3),
                            "shop": ServiceInfo("shop", tier=3, users=200_000),
                            "api": ServiceInfo("api", tier=1),
                            "pay": ServiceInfo("pay", business_service="checkout")},
                    business_tiers={"checkout": 1})


@pytest.mark.parametrize(("sev", "expected"), [
    ({"db": "critical"}, "P1"),  # tier 1 x critical
    ({"db": "error"}, "P2"),  # tier 1 x medium
    ({"db": "warning"}, "P3"),  # tier 1 x medium is P2, capped: a warning no user sees
    ({"cache": "error"}, "P3"),  # tier 3: web (1,000 users) depends on it, but is risk only
    ({"cache": "info"}, "P4"),
    ({"web": "warning"}, "P1"),  # user-facing and firing above info: urgency high, tier 2
    ({"cron": "critical"}, "P2"),  # unknown tier counts as 3 (medium) x urgency high
    ({"db": "none", "web": "error"}, "P1"),  # a silent root's tier counts
    ({"pay": "error"}, "P2"),  # its business service's tier 1 counts
    # an alerting user-facing service's users count even at info (critical x low) ...
    ({"shop": "info"}, "P2"),
    # ... and above info they raise urgency to high
    ({"shop": "warning"}, "P1"),
    # a silent user-facing root: its users are not counted (nothing of it alerts), api's
    # tier 1 x warning is P2, capped at P3 as no user-facing service alerts
    ({"shop": "none", "api": "warning"}, "P3"),
    ({"shop": "none", "api": "error"}, "P2"),  # an error is not capped
])
def test_true_priority_states_the_observed_impact_rule(sev: dict[str, str],
                                                       expected: str) -> None:
    assert true_priority(sev, topology())[0] == expected


def test_true_priority_explains_itself() -> None:
    priority, reasons = true_priority({"api": "warning"}, topology())
    assert priority == "P3"
    assert reasons[0].startswith("impact critical: best tier 1")
    assert reasons[-1] == "capped at P3 from P2: only warnings, no user-facing symptom"


def test_true_incident_json_carries_the_hard_parts() -> None:
    inc = TrueIncident("sim-001", "db", 10.0, 700.0, None, "P2", [], "minor",
                       {"db": "none", "web": "warning"}, {"db": 0, "web": 1},
                       silent_root=True, decoy_changes=["chg-00002"],
                       concurrent_with=["sim-002"], paired_with="sim-002",
                       shared_dependency="cache")
    doc = inc.to_json()
    assert doc["silent_root"] is True and doc["services"]["db"] == "none"
    assert doc["decoy_changes"] == ["chg-00002"]
    assert doc["concurrent_with"] == ["sim-002"] and doc["paired_with"] == "sim-002"
    assert doc["shared_dependency"] == "cache" and doc["hops"] == {"db": 0, "web": 1}
