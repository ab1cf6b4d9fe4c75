"""Incident stage rules on small graphs with a fake clock (plain floats)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jsonschema
import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_alert
from triage.core.changes import ChangeIndex, ChangeRecord
from triage.core.incidents import CorrelationPolicy, IncidentEngine
from triage.core.oncall import parse_oncall
from triage.core.services import ServiceMapper
from triage.core.topology import ServiceInfo, Topology
from triage.core.types import Triaged
from triage.core.incidents.warroom import WarRoomPolicy

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" /
                     "incident-event.schema.json").read_text())
T = 1_800_000_000.0

# frontend -> checkout -> cart -> redis ; frontend -> ads
GRAPH = nx.DiGraph([("frontend", "checkout"), ("checkout", "cart"), ("cart", "redis"),
                    ("frontend", "ads"), ("frontend", "cart")])
CATALOG = {
    "frontend": ServiceInfo("frontend", team="web", tier=1, users=20000),
    "checkout": ServiceInfo("checkout", team="pay", tier=1),
    "cart": ServiceInfo("cart", team="cart", tier=1),
    "redis": ServiceInfo("redis", team="platform", tier=2),
    "ads": ServiceInfo("ads", team="ads", tier=3),
    "batch": ServiceInfo("batch", team="data", tier=4),
}


def engine(**policy: Any) -> IncidentEngine:
    wr = policy.pop("war_room", WarRoomPolicy())
    changes = policy.pop("changes", None)
    oncall = policy.pop("oncall", None)
    policy.setdefault("page_delay", 0.0)
    policy.setdefault("update_interval", 0.0)
    return IncidentEngine(topology=Topology(GRAPH.copy(), CATALOG),
                          mapper=ServiceMapper(("service",), {}), changes=changes,
                          policy=CorrelationPolicy(**policy), war_room=wr, oncall=oncall)


def fire(service: str, name: str = "HighErrorRate", severity: str = "critical",
         instance: str = "0", change: str = "firing") -> Triaged:
    a = make_alert(name, service=service, severity=severity, instance=instance)
    a.fingerprint = f"{abs(hash((service, name, instance))):016x}"[:16]
    return Triaged(a, change, 1, 1, 0.0, 0.0)  # type: ignore[arg-type]


def resolve(service: str, name: str = "HighErrorRate", instance: str = "0") -> Triaged:
    t = fire(service, name, instance=instance)
    t.alert.status = "resolved"
    return Triaged(t.alert, "resolved", 1, 1, 0.0, 0.0)


def run(eng: IncidentEngine, steps: Iterable[tuple[float, list[Triaged]]]) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for t, outs in steps:
        events.extend(eng.observe(outs, T + t))
    for e in events:
        jsonschema.validate(e, SCHEMA)
    return events


def created(events: list[dict[str, Any]]) -> list[str]:
    return [e["incident"]["id"] for e in events if e["type"] == "incident.created"]


def test_repeats_of_one_service_are_one_incident_with_deterministic_ids() -> None:
    events = run(engine(), [(0, [fire("cart", instance="a")]), (10, [fire("cart", instance="b")]),
                            (20, [fire("cart", instance="c")])])
    assert len(created(events)) == 1
    again = run(engine(), [(0, [fire("cart", instance="a")]), (10, [fire("cart", instance="b")]),
                           (20, [fire("cart", instance="c")])])
    assert [e["event_id"] for e in events] == [e["event_id"] for e in again]
    assert events[0]["event_id"] == f"{events[0]['incident']['id']}:1"


def test_neighbour_within_hops_joins_and_far_service_opens_new() -> None:
    eng = engine(hops=1)
    events = run(eng, [(0, [fire("cart")]), (30, [fire("checkout")]), (60, [fire("ads")])])
    ids = created(events)
    assert len(ids) == 2  # checkout is 1 hop from cart; ads is 2 hops away
    cart_incident = eng.incidents[ids[0]]
    assert set(cart_incident.first_seen) == {"cart", "checkout"}


def test_outside_the_window_opens_a_new_incident() -> None:
    events = run(engine(window=300.0), [(0, [fire("cart")]), (400, [fire("checkout")])])
    assert len(created(events)) == 2


def test_connected_incidents_merge() -> None:
    eng = engine(hops=1)
    events = run(eng, [(0, [fire("redis")]), (10, [fire("checkout")]), (20, [fire("cart")])])
    first, second = created(events)
    merged = [e for e in events if e["incident"]["merged_into"]]
    assert len(merged) == 1
    assert merged[0]["incident"]["id"] == second and merged[0]["incident"]["merged_into"] == first
    assert merged[0]["incident"]["status"] == "merged" and "merged_into" in merged[0]["changed"]
    assert set(eng.incidents[first].first_seen) == {"redis", "checkout", "cart"}


def test_root_cause_is_the_deepest_failing_dependency_with_a_checkable_reason() -> None:
    events = run(engine(), [(0, [fire("frontend")]), (5, [fire("checkout")]),
                            (9, [fire("cart")])])
    rc = events[-1]["incident"]["root_cause"]
    assert rc["service"] == "cart"
    assert "2 alerting services depend on cart (checkout, frontend)" in rc["reason"]
    assert "after frontend" in rc["reason"]
    assert 0 < rc["confidence"] <= 0.95


def test_root_cause_tie_goes_to_the_first_alert() -> None:
    events = run(engine(hops=3), [(0, [fire("ads")]), (5, [fire("checkout")])])
    assert events[-1]["incident"]["root_cause"]["service"] == "ads"


def test_suspect_changes_scored_by_time_and_distance() -> None:
    changes = ChangeIndex()
    for rec in (ChangeRecord("d-cart", "cart", "deploy", T - 300, "v2"),
                ChangeRecord("d-redis", "redis", "deploy", T - 300),
                ChangeRecord("old", "cart", "config", T - 3 * 3600),  # outside the lookback
                ChangeRecord("d-front", "frontend", "deploy", T - 60),  # a caller, not a dep
                ChangeRecord("later", "cart", "feature_flag", T + 600)):  # after it started
        changes.add(rec)
    events = run(engine(changes=changes), [(0, [fire("cart")]), (30, [fire("frontend")])])
    suspects = events[-1]["incident"]["suspect_changes"]
    assert [s["id"] for s in suspects] == ["d-cart", "d-redis"]
    assert suspects[0]["score"] > suspects[1]["score"]
    assert "5m before the first alert, on the root-cause service" in suspects[0]["reason"]
    assert "which cart depends on" in suspects[1]["reason"]


def test_resolves_after_quiet_period_then_new_incident() -> None:
    eng = engine(quiet_period=600.0)
    events = run(eng, [(0, [fire("cart")]), (100, [resolve("cart")])])
    assert not [e for e in events if e["type"] == "incident.resolved"]
    events += eng.tick(T + 699)
    assert not [e for e in events if e["type"] == "incident.resolved"]
    resolved = eng.tick(T + 700)
    assert [e["type"] for e in resolved] == ["incident.resolved"]
    assert resolved[0]["incident"]["resolved_at"] == "2027-01-15T08:11:40.000Z"
    later = run(eng, [(800, [fire("cart")])])
    assert len(created(later)) == 1 and created(later)[0] != events[0]["incident"]["id"]


def test_reopen_policy_reopens_the_resolved_incident() -> None:
    eng = engine(quiet_period=60.0, after_resolve="reopen", reopen_within=3600.0)
    first = run(eng, [(0, [fire("cart")]), (10, [resolve("cart")])])
    eng.tick(T + 100)
    again = run(eng, [(200, [fire("cart")])])
    assert created(again) == []
    assert again[-1]["incident"]["id"] == first[0]["incident"]["id"]
    assert again[-1]["incident"]["reopened"] == 1 and again[-1]["incident"]["status"] == "open"


def test_a_new_alert_cancels_the_quiet_period() -> None:
    eng = engine(quiet_period=600.0)
    run(eng, [(0, [fire("cart")]), (100, [resolve("cart")]), (300, [fire("cart", instance="x")])])
    assert not [e for e in eng.tick(T + 800) if e["type"] == "incident.resolved"]


def test_blips_and_flapping_alerts_never_page() -> None:
    eng = engine(page_delay=30.0)
    events = run(eng, [(0, [fire("batch")]), (20, [resolve("batch")]), (40, [])])
    assert created(events) == []
    flap = fire("ads", change="flapping")
    events = run(eng, [(100, [fire("ads")]), (110, [flap]), (200, [])])
    assert created(events) == []
    assert eng.counts["not_paged"] == 2


def test_page_waits_for_the_delay_then_pages_once() -> None:
    eng = engine(page_delay=30.0)
    events = run(eng, [(0, [fire("cart")]), (10, [fire("checkout")])])
    assert created(events) == []
    events = eng.tick(T + 30)
    assert len(created(events)) == 1
    assert events[0]["incident"]["services"] == ["cart", "checkout"]
    assert events[0]["at"] == "2027-01-15T08:00:30.000Z"


def test_priority_rises_with_the_incident_and_never_falls() -> None:
    eng = engine()
    events = run(eng, [(0, [fire("batch", severity="warning")])])
    assert events[0]["incident"]["priority"] in ("P3", "P4")
    # a tier-1 user-facing service with a critical alert joins: same incident, priority up
    eng.topology.graph.add_edge("frontend", "batch")
    eng.topology = Topology(eng.topology.graph, CATALOG)
    events = run(eng, [(30, [fire("frontend", severity="critical")])])
    up = [e for e in events if "priority" in e["changed"]]
    assert up and up[-1]["incident"]["priority"] == "P1"
    assert up[-1]["incident"]["priority_reasons"][0].startswith("P1 = ")
    events = run(eng, [(60, [resolve("frontend")]), (90, [fire("batch", instance="2")])])
    assert all(e["incident"]["priority"] == "P1" for e in events)


def test_owner_is_the_root_cause_team_on_call_at_incident_start() -> None:
    oncall = parse_oncall({"rotations": [
        {"team": "cart", "members": ["ann", "bob"], "length": "1d", "handoff": "00:00",
         "timezone": "UTC", "start": "2027-01-01"}]})
    events = run(engine(oncall=oncall), [(0, [fire("frontend")]), (5, [fire("cart")])])
    owner = events[-1]["incident"]["owner"]
    # 2027-01-15 is day 14 of the rotation: ann (even days)
    assert owner["team"] == "cart" and owner["person"] == "ann"
    assert "on call at 08:00:00" in owner["reason"]


def test_war_room_for_p1_and_for_p2_after_15_minutes() -> None:
    events = run(engine(), [(0, [fire("cart", severity="critical")])])
    assert events[0]["incident"]["war_room"]["open"] is True
    eng = engine()
    events = run(eng, [(0, [fire("checkout", severity="warning")])])
    inc = events[0]["incident"]
    assert inc["priority"] == "P2"  # tier 1 (critical impact) x warning (medium urgency)
    assert inc["war_room"]["open"] is False
    assert eng.tick(T + 899) == []
    opened = eng.tick(T + 900)
    assert opened and opened[-1]["incident"]["war_room"]["open"] is True
    assert "war_room" in opened[-1]["changed"]
    assert opened[-1]["incident"]["war_room"]["at"] == "2027-01-15T08:15:00.000Z"


def test_war_room_when_three_teams_are_affected() -> None:
    eng = engine(war_room=WarRoomPolicy(p1=False, p2_after=None, min_teams=3))
    events = run(eng, [(0, [fire("redis", severity="info")]), (5, [fire("cart", severity="info")]),
                       (9, [fire("checkout", severity="info")])])
    wr = events[-1]["incident"]["war_room"]
    assert wr["open"] is True and "3 teams" in wr["reason"]


def test_state_round_trip_continues_ids_and_sequences() -> None:
    eng = engine(quiet_period=600.0)
    before = run(eng, [(0, [fire("cart")]), (30, [fire("checkout")])])
    records, _removed = eng.take_changes()
    restored = engine(quiet_period=600.0)
    restored.load(records.values(), eng.timers())
    after_a = run(eng, [(60, [fire("frontend")]), (90, [resolve("cart"), resolve("checkout"),
                                                         resolve("frontend")])])
    after_b = run(restored, [(60, [fire("frontend")]), (90, [resolve("cart"), resolve("checkout"),
                                                              resolve("frontend")])])
    assert after_a == after_b and after_a
    assert eng.tick(T + 700) == restored.tick(T + 700) != []
    seqs = [e["incident"]["sequence"] for e in before + after_a]
    assert seqs == sorted(seqs)


@pytest.mark.parametrize("n_open", [10, 1000])
def test_correlation_consults_only_nearby_incidents(n_open: int) -> None:
    # many open incidents on unrelated services: the candidate search must not visit them
    graph = nx.DiGraph([(f"s{i}", f"s{i + 1}") for i in range(0, 2 * n_open, 2)])
    eng = IncidentEngine(topology=Topology(graph), mapper=ServiceMapper(("service",), {}),
                         policy=CorrelationPolicy(page_delay=0.0))
    for i in range(0, 2 * n_open, 2):
        eng.observe([fire(f"s{i}", instance=str(i))], T)
    visited = 0
    real_get = eng.by_service.get

    class Counting(dict):  # type: ignore[type-arg]
        def get(self, key: object, default: object = None) -> object:
            nonlocal visited
            visited += 1
            return real_get(key, default)  # type: ignore[arg-type]

    eng.by_service = Counting(eng.by_service)
    eng.observe([fire("s1", instance="x")], T + 1)
    assert visited <= 3  # s1 and its neighbours, whatever n_open is


def test_old_incidents_leave_the_index_and_come_back_when_their_alert_fires() -> None:
    eng = engine(window=300.0)
    first = created(run(eng, [(0, [fire("cart", instance="a")])]))[0]
    run(eng, [(1000, [fire("checkout")])])  # too late to join: a new incident; cart pruned
    assert first not in eng.by_service.get("cart", set())
    # the old alert fires again (e.g. after a flap settled): it goes back to its incident
    eng.observe([fire("cart", instance="a")], T + 1100)
    assert first in eng.by_service["cart"]


def test_updates_of_a_growing_incident_are_batched_per_interval() -> None:
    eng = engine(update_interval=10.0, hops=3)
    events = run(eng, [(0, [fire("redis")]), (1, [fire("cart")]), (2, [fire("checkout")]),
                       (3, [fire("frontend")])])
    assert [e["type"] for e in events] == ["incident.created"]
    later = eng.tick(T + 10)
    assert [e["type"] for e in later] == ["incident.updated"]
    assert later[0]["incident"]["services"] == ["cart", "checkout", "frontend", "redis"]
    assert later[0]["incident"]["root_cause"]["service"] == "redis"


def test_end_of_input_decides_the_pages_still_waiting() -> None:
    eng = engine(page_delay=30.0)
    assert created(run(eng, [(0, [fire("cart")]), (5, [fire("checkout")])])) == []
    flushed = eng.flush_pages(T + 5)
    assert len(created(flushed)) == 1 and flushed[0]["at"] == "2027-01-15T08:00:30.000Z"
    assert eng.flush_pages(T + 5) == []  # decided once
    blip = engine(page_delay=30.0)
    run(blip, [(0, [fire("cart")]), (5, [resolve("cart")])])
    assert blip.flush_pages(T + 5) == []  # resolved within the delay: still no page


def test_merge_of_an_unpaged_incident_touched_in_the_same_batch() -> None:
    # redis opens an incident; within its page delay, in one payload, its alert resolves
    # and an alert on cart connects it to an older paged incident on checkout
    eng = engine(hops=1, page_delay=30.0)
    run(eng, [(0, [fire("checkout")]), (40, [])])
    run(eng, [(50, [fire("redis")])])
    events = eng.observe([fire("checkout", instance="2"), resolve("redis"), fire("cart")],
                         T + 55)
    assert all(e["incident"]["id"] in eng.incidents for e in events)
    assert len([i for i in eng.incidents.values() if i.status == "open"]) == 1


steps = st.lists(
    st.tuples(st.integers(0, 120),  # seconds since the previous step
              st.lists(st.tuples(st.sampled_from([*sorted(CATALOG), "unknown"]),
                                 st.sampled_from(["fire", "resolve", "flap", "stable"]),
                                 st.sampled_from(["a", "b"])), min_size=1, max_size=4)),
    max_size=40)


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from(["new", "reopen"]), st.integers(0, 3))
def test_any_sequence_keeps_the_event_contract(
        seq: list[tuple[int, list[tuple[str, str, str]]]], after: str, hops: int) -> None:
    eng = engine(hops=hops, page_delay=30.0, update_interval=10.0, quiet_period=120.0,
                 window=300.0, after_resolve=after, reopen_within=600.0, retention=300.0)
    t = 0.0
    events: list[dict[str, Any]] = []
    for gap, batch in seq:
        t += gap
        outs = []
        for service, action, inst in batch:
            if action == "fire":
                outs.append(fire(service, instance=inst))
            elif action == "resolve":
                outs.append(resolve(service, instance=inst))
            else:
                o = fire(service, instance=inst, change="flapping" if action == "flap"
                         else "stable")
                outs.append(o)
        events += eng.observe(outs, T + t)
    events += eng.flush_pages(T + t)
    events += eng.tick(T + t + 10_000)
    seen_ids: set[str] = set()
    last_seq: dict[str, int] = {}
    for e in events:
        jsonschema.validate(e, SCHEMA)
        assert e["event_id"] not in seen_ids
        seen_ids.add(e["event_id"])
        inc = e["incident"]
        assert inc["sequence"] == last_seq.get(inc["id"], 0) + 1
        last_seq[inc["id"]] = inc["sequence"]
        if e["type"] == "incident.created":
            assert inc["sequence"] == 1


def test_an_alert_joins_only_through_a_recently_active_member_service() -> None:
    eng = engine(window=300.0, hops=1)
    events = run(eng, [(0, [fire("cart")]), (200, [fire("checkout")]),
                       (450, [fire("frontend"), fire("redis")])])
    ids = created(events)
    assert len(ids) == 2  # frontend joins through checkout; redis would need the old cart
    assert set(eng.incidents[ids[0]].first_seen) == {"cart", "checkout", "frontend"}
    assert set(eng.incidents[ids[1]].first_seen) == {"redis"}


def test_a_flapping_alert_never_becomes_the_root_cause() -> None:
    eng = engine(hops=2)
    events = run(eng, [(0, [fire("redis", name="NodeFlap")]), (10, [fire("cart")]),
                       (20, [fire("redis", name="NodeFlap", change="flapping")]),
                       (30, [fire("checkout")])])
    inc = events[-1]["incident"]
    assert inc["root_cause"]["service"] == "cart"  # redis only flapped, cart really failed
    assert inc["root_cause"]["candidates"][0] == "cart"
    assert "redis" in inc["services"]


def test_a_new_failure_inside_an_open_incident_is_not_silent() -> None:
    eng = engine(quiet_period=600.0)
    run(eng, [(0, [fire("cart")]), (60, [resolve("cart")])])
    events = run(eng, [(120, [fire("cart", name="PodCrashLooping")])])
    assert events and "reactivated" in events[-1]["changed"]
    assert events[-1]["incident"]["reactivated"] == 1
    assert events[-1]["incident"]["active_services"] == ["cart"]
