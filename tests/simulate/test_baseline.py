"""The baseline and oracle groupers on a tiny graph with a fake clock."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import networkx as nx
import pytest

from triage.core.changes import ChangeIndex, ChangeRecord
from triage.core.services import ServiceMapper
from triage.core.timeutil import parse_timestamp
from triage.core.topology import ServiceInfo, Topology
from triage.core.types import Alert, Deduplicated, Outcome, Suppressed, Triaged
from triage.simulate.baseline import (
    BaselineGrouper,
    Member,
    OracleGrouper,
    RootGuess,
    rank_deepest_earliest,
)
from triage.simulate.score import score

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" /
                     "incident-event.schema.json").read_text())

# web -> cart -> redis, web -> ads, checkout -> cart
EDGES = [("web", "cart"), ("cart", "redis"), ("web", "ads"), ("checkout", "cart")]


def topology() -> Topology:
    return Topology(nx.DiGraph(EDGES), {"cart": ServiceInfo("cart", team="shop",
                                                           runbook="https://rb/cart")})


def fp(name: str) -> str:
    """A 16-hex fingerprint per readable name."""
    return name.encode().hex()[:16].ljust(16, "0")


def alert(name: str, service: str | None, status: str, at: float,
          alertname: str = "Down") -> Alert:
    labels = {"alertname": alertname, "instance": name}
    if service is not None:
        labels["service"] = service
    return Alert(labels, {}, status, at, None, at, "test",  # type: ignore[arg-type]
                 fingerprint=fp(name))


def fire(name: str, service: str | None, at: float, change: str = "firing",
         **kw: Any) -> Triaged:
    return Triaged(alert(name, service, "firing", at, **kw), change, 1, 1, at, at)  # type: ignore[arg-type]


def resolve(name: str, service: str | None, at: float) -> Triaged:
    return Triaged(alert(name, service, "resolved", at), "resolved", 1, 1, at, at)


def grouper(**kw: Any) -> BaselineGrouper:
    return BaselineGrouper(topology=topology(), mapper=ServiceMapper(("service",)),
                           changes=kw.pop("changes", ChangeIndex()), **kw)


def run(g: BaselineGrouper | OracleGrouper, steps: list[tuple[float, list[Outcome]]],
        end: float | None = None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for now, outcomes in steps:
        events += g.observe(outcomes, now)
    if end is not None:
        events += g.flush(end)
    for e in events:
        jsonschema.validate(e, SCHEMA)
    return events


def groups(events: list[dict[str, Any]]) -> dict[str, set[str]]:
    """Incident id -> its services in its last event."""
    out: dict[str, set[str]] = {}
    for e in events:
        out[e["incident"]["id"]] = set(e["incident"]["services"])
    return out


def test_a_neighbour_within_the_window_joins_and_the_deepest_is_the_root() -> None:
    events = run(grouper(), [(0.0, [fire("w1", "web", 0.0)]),
                             (20.0, [fire("c1", "cart", 20.0)]),
                             (45.0, [])])
    assert [e["type"] for e in events] == ["incident.created"]
    inc = events[0]["incident"]
    assert events[0]["at"].endswith("00:00:45.000Z")  # paged at the first call past 30 s
    assert inc["services"] == ["cart", "web"] and inc["priority"] == "P3"
    assert inc["root_cause"]["service"] == "cart"
    assert inc["root_cause"]["candidates"] == ["cart", "web"]
    assert inc["root_cause"]["confidence"] == 0.5 and inc["root_cause"]["runbook"]
    assert inc["owner"]["team"] == "shop" and inc["merged_into"] is None
    assert events[0]["page"] is True


def test_two_hops_away_opens_another_incident() -> None:
    events = run(grouper(), [(0.0, [fire("r1", "redis", 0.0)]),
                             (10.0, [fire("w1", "web", 10.0)])], end=100.0)
    assert sorted(map(sorted, groups(events).values())) == [["redis"], ["web"]]


def test_hops_is_a_parameter() -> None:
    events = run(grouper(hops=2), [(0.0, [fire("r1", "redis", 0.0)]),
                                   (10.0, [fire("w1", "web", 10.0)])], end=100.0)
    assert list(groups(events).values()) == [{"redis", "web"}]


def test_the_window_counts_from_the_incidents_first_alert() -> None:
    # cart keeps the incident alive, but ads fires 901 s after its first alert
    steps = [(0.0, [fire("w1", "web", 0.0)]), (500.0, [fire("c1", "cart", 500.0)]),
             (901.0, [fire("a1", "ads", 901.0)])]
    events = run(grouper(), steps, end=2000.0)
    assert sorted(map(sorted, groups(events).values())) == [["ads"], ["cart", "web"]]


def test_the_oldest_open_incident_wins() -> None:
    # redis (t=0) and checkout (t=10) are 2 hops apart: two incidents; cart is next to both
    steps = [(0.0, [fire("r1", "redis", 0.0)]), (10.0, [fire("k1", "checkout", 10.0)]),
             (20.0, [fire("c1", "cart", 20.0)])]
    events = run(grouper(), steps, end=100.0)
    assert sorted(map(sorted, groups(events).values())) == [["cart", "redis"], ["checkout"]]
    redis = next(e for e in events if "redis" in e["incident"]["services"])
    assert redis["incident"]["root_cause"]["service"] == "redis"


def test_a_blip_that_resolves_within_the_page_delay_never_pages() -> None:
    g = grouper()
    events = run(g, [(0.0, [fire("w1", "web", 0.0)]), (10.0, [resolve("w1", "web", 10.0)]),
                     (100.0, [])], end=200.0)
    assert events == [] and g.counts["not_paged"] == 1


def test_a_page_waits_for_the_delay_in_event_time() -> None:
    g = grouper(page_delay=60.0)
    assert g.observe([fire("w1", "web", 0.0)], 0.0) == []
    assert g.observe([], 59.0) == []
    (created,) = g.observe([], 61.0)
    assert created["type"] == "incident.created" and parse_timestamp(created["at"]) == 61.0


def test_flush_pages_what_still_waits_dated_when_its_delay_ends() -> None:
    g = grouper()
    g.observe([fire("w1", "web", 100.0)], 100.0)
    (created,) = g.flush(110.0)
    assert parse_timestamp(created["at"]) == 130.0
    assert g.flush(500.0) == []


def test_updates_follow_the_fingerprints_and_resolution_closes() -> None:
    steps = [(0.0, [fire("c1", "cart", 0.0)]), (40.0, [fire("w1", "web", 40.0)]),
             (50.0, [fire("w1", "web", 50.0)]),  # a repeat: nothing changes
             (60.0, [resolve("c1", "cart", 60.0)]),
             (70.0, [resolve("w1", "web", 70.0)]),
             # a new occurrence after the incident closed opens a new one
             (80.0, [fire("w1", "web", 80.0)])]
    events = run(grouper(), steps, end=200.0)
    assert [(e["type"], e["incident"]["id"]) for e in events] == [
        ("incident.created", "baseline-000001"), ("incident.updated", "baseline-000001"),
        ("incident.resolved", "baseline-000001"), ("incident.created", "baseline-000002")]
    updated = events[1]
    assert updated["changed"] == ["services", "fingerprints"]
    assert updated["incident"]["fingerprints"] == sorted([fp("c1"), fp("w1")])
    assert updated["event_id"] == "baseline-000001:2"
    resolved = events[2]["incident"]
    assert resolved["status"] == "resolved" and resolved["firing_count"] == 0
    assert parse_timestamp(resolved["resolved_at"]) == 70.0


def test_a_resolution_and_a_firing_in_one_batch_keep_the_incident_open() -> None:
    steps = [(0.0, [fire("c1", "cart", 0.0)]),
             (40.0, [resolve("c1", "cart", 40.0), fire("w1", "web", 40.0)])]
    events = run(grouper(), steps)
    assert [e["type"] for e in events] == ["incident.created", "incident.updated"]
    assert events[-1]["incident"]["status"] == "open"


def test_flapping_and_other_outcomes_are_ignored_and_stable_counts() -> None:
    a = alert("w1", "web", "firing", 0.0)
    outcomes: list[Outcome] = [
        fire("w1", "web", 0.0, change="flapping"), Deduplicated(a, 2),
        Suppressed(a, "silence", "test")]
    g = grouper()
    assert run(g, [(0.0, outcomes), (100.0, [])], end=200.0) == []
    events = run(g, [(300.0, [fire("w1", "web", 300.0, change="stable")])], end=400.0)
    assert [e["type"] for e in events] == ["incident.created"]


def test_an_unmapped_alert_gets_a_service_of_its_own() -> None:
    events = run(grouper(), [(0.0, [fire("x1", None, 0.0, alertname="DiskFull")])],
                 end=50.0)
    assert events[0]["incident"]["services"] == ["alert:DiskFull"]
    assert events[0]["incident"]["root_cause"]["service"] == "alert:DiskFull"


def test_suspects_are_recent_changes_to_the_root_or_its_dependencies() -> None:
    changes = ChangeIndex()
    for rec in (ChangeRecord("old", "cart", "deploy", -8000.0),  # beyond the lookback
                ChangeRecord("c-cart", "cart", "deploy", -600.0),
                ChangeRecord("c-redis", "redis", "config", -60.0),
                ChangeRecord("c-web", "web", "deploy", -30.0),  # a caller: not a suspect
                ChangeRecord("c-late", "cart", "deploy", 10.0),  # after the first alert
                ChangeRecord("c-redis2", "redis", "infra", -3000.0),
                ChangeRecord("c-redis3", "redis", "infra", -4000.0)):
        changes.add(rec)
    events = run(grouper(changes=changes), [(0.0, [fire("c1", "cart", 0.0)]),
                                            (5.0, [fire("w1", "web", 5.0)])], end=50.0)
    suspects = events[0]["incident"]["suspect_changes"]
    assert [s["id"] for s in suspects] == ["c-redis", "c-cart", "c-redis2"]
    assert suspects[0]["score"] == pytest.approx(1 - 60 / 7200, abs=1e-3)


def test_the_same_input_gives_the_same_events() -> None:
    steps = [(float(t), [fire(f"a{t}", s, float(t))])
             for t, s in enumerate(["web", "redis", "ads", "checkout", "cart"] * 3)]
    assert run(grouper(), steps, end=99.0) == run(grouper(), steps, end=99.0)


def test_rank_deepest_earliest_with_links_falls_back_to_time() -> None:
    net = Topology(links=[("sw1", "sw2"), ("sw2", "sw3")])
    assert rank_deepest_earliest({"sw2": 5.0, "sw1": 9.0, "sw3": 5.0}, net) == [
        "sw2", "sw3", "sw1"]


def test_baseline_events_score() -> None:
    truth = {"counts": {"alerts_in": 10}, "incidents": [
        {"id": "t1", "root_cause": "cart", "cause_change": None, "priority": "P3",
         "first_alert_at": 0.0, "fingerprints": [fp("c1"), fp("w1")]}],
        "alerts": {fp("c1"): {"incident": "t1"}, fp("w1"): {"incident": "t1"},
                   fp("n1"): {"incident": None, "noise": "spike"}}}
    steps = [(0.0, [fire("c1", "cart", 0.0)]), (20.0, [fire("w1", "web", 20.0)]),
             (1000.0, [fire("n1", "ads", 1000.0)])]  # past the window: an incident of its own
    s = score(truth, run(grouper(), steps, end=1100.0))
    assert s["pages"] == 2 and s["noise_pages"] == 1 and s["root_cause_top1"] == 1.0
    assert s["grouping_purity"] == 1.0 and s["priority_accuracy"] == 1.0


# -- the oracle ----------------------------------------------------------------------------


def oracle(**kw: Any) -> OracleGrouper:
    incident_of = {fp("c1"): "t1", fp("w1"): "t1", fp("r1"): "t2", fp("n1"): None}
    return OracleGrouper(incident_of=incident_of, topology=topology(),
                         mapper=ServiceMapper(("service",)), changes=ChangeIndex(), **kw)


def test_the_oracle_groups_by_truth_pages_at_once_and_never_pages_noise() -> None:
    steps = [(0.0, [fire("w1", "web", 0.0), fire("n1", "web", 0.0)]),
             (5.0, [fire("r1", "redis", 5.0)]),  # a neighbour of cart, but another incident
             (9.0, [fire("c1", "cart", 9.0), fire("zz", "cart", 9.0)]),  # zz: unknown
             (60.0, [resolve("c1", "cart", 60.0), resolve("w1", "web", 60.0)])]
    events = run(oracle(), steps, end=100.0)
    assert [(e["type"], e["incident"]["id"], e["at"][17:23]) for e in events] == [
        ("incident.created", "oracle-t1", "00.000"), ("incident.created", "oracle-t2", "05.000"),
        ("incident.updated", "oracle-t1", "09.000"), ("incident.resolved", "oracle-t1", "00.000")]
    assert events[2]["incident"]["root_cause"]["service"] == "cart"
    assert events[2]["incident"]["fingerprints"] == sorted([fp("c1"), fp("w1")])


def test_the_oracle_root_rule_is_pluggable() -> None:
    seen: list[list[str]] = []

    def highest(*, members: list[Member], topology: Topology, changes: ChangeIndex
                ) -> RootGuess:
        seen.append(sorted(m.service for m in members))
        return RootGuess("web", 0.9, ("web", "cart"), "the caller, for the test")

    events = run(oracle(root=highest), [(0.0, [fire("c1", "cart", 0.0)]),
                                        (3.0, [fire("w1", "web", 3.0)])])
    assert events[-1]["incident"]["root_cause"]["service"] == "web"
    assert events[-1]["incident"]["root_cause"]["confidence"] == 0.9
    assert seen == [["cart"], ["cart", "web"]]
