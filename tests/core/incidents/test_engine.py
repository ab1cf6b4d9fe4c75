"""Incident stage rules on small graphs with a fake clock (plain floats)."""

from __future__ import annotations

import hashlib
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
from triage.core.incidents import CorrelationPolicy, Incident, IncidentEngine
from triage.core.incidents.warroom import WarRoomPolicy
from triage.core.oncall import parse_oncall
from triage.core.services import ServiceMapper
from triage.core.topology import ServiceInfo, Topology
from triage.core.types import Triaged

SCHEMA = json.loads((Path(__file__).resolve().parents[3] / "schemas" /
                     "incident-event.schema.json").read_text())
T = 1_800_000_000.0

# frontend -> checkout -> cart -> redis ; frontend -> ads ; frontend -> cart
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


def engine(graph: nx.DiGraph | None = None, links: Iterable[tuple[str, str]] = (),
           **policy: Any) -> IncidentEngine:
    wr = policy.pop("war_room", WarRoomPolicy())
    changes = policy.pop("changes", None)
    oncall = policy.pop("oncall", None)
    policy.setdefault("page_delay", 0.0)
    policy.setdefault("lone_delay", 0.0)
    policy.setdefault("lone_critical_delay", 0.0)
    policy.setdefault("update_interval", 0.0)
    topology = Topology((graph if graph is not None else GRAPH).copy(), CATALOG, links=links)
    return IncidentEngine(topology=topology, mapper=ServiceMapper(("service",), {}),
                          changes=changes, policy=CorrelationPolicy(**policy), war_room=wr,
                          oncall=oncall)


def fire(service: str, name: str = "HighErrorRate", severity: str = "critical",
         instance: str = "0", change: str = "firing") -> Triaged:
    a = make_alert(name, service=service, severity=severity, instance=instance)
    a.fingerprint = hashlib.sha1(f"{service}|{name}|{instance}".encode()).hexdigest()[:16]
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


def last(events: list[dict[str, Any]], inc_id: str) -> dict[str, Any]:
    return [e for e in events if e["incident"]["id"] == inc_id][-1]["incident"]


def services_of(eng: IncidentEngine, inc_id: str) -> set[str]:
    return set(eng.incidents[inc_id].first_seen)


# -- membership ---------------------------------------------------------------------------


def test_repeats_of_one_service_are_one_incident_with_deterministic_ids() -> None:
    steps = [(0, [fire("cart", instance="a")]), (10, [fire("cart", instance="b")]),
             (20, [fire("cart", instance="c")])]
    events = run(engine(), steps)
    assert len(created(events)) == 1
    again = run(engine(), steps)
    assert [e["event_id"] for e in events] == [e["event_id"] for e in again]
    assert events[0]["event_id"] == f"{events[0]['incident']['id']}:1"
    assert events[0]["page"] is True


def test_a_failure_climbs_to_callers_one_hop_at_a_time() -> None:
    eng = engine()
    events = run(eng, [(0, [fire("redis", "RedisDown")]), (60, [fire("cart")]),
                       (200, [fire("checkout", "HighLatency", "warning")]),
                       (400, [fire("frontend", "HighErrorRate")])])
    assert len(created(events)) == 1
    inc = created(events)[0]
    assert services_of(eng, inc) == {"redis", "cart", "checkout", "frontend"}
    assert last(events, inc)["root_cause"]["service"] == "redis"


def test_a_service_two_hops_away_opens_its_own_incident() -> None:
    eng = engine()
    events = run(eng, [(0, [fire("redis", "RedisDown")]), (30, [fire("checkout", "PodCrash")])])
    assert len(created(events)) == 2  # checkout does not call redis directly


def test_time_is_measured_from_the_latest_onset_not_the_latest_repeat() -> None:
    # cart keeps firing (repeats are deduplicated upstream, so only onsets reach here);
    # checkout starts 11 minutes after the incident's last onset: a new failure
    eng = engine(window=600.0)
    events = run(eng, [(0, [fire("cart", "PodCrash")]), (660, [fire("checkout", "PodCrash")])])
    assert len(created(events)) == 2
    eng = engine(window=600.0)
    events = run(eng, [(0, [fire("cart", "PodCrash")]), (400, [fire("redis", "RedisDown")]),
                       (900, [fire("checkout", "HighErrorRate")])])
    assert len(created(events)) == 1  # each onset extends the reach by the window


def test_the_horizon_bounds_an_incident_that_keeps_growing() -> None:
    eng = engine(window=600.0, horizon=900.0)
    events = run(eng, [(0, [fire("redis", "RedisDown")]), (500, [fire("cart")]),
                       (1000, [fire("checkout")])])
    assert len(created(events)) == 2  # checkout is near cart's onset but past the horizon


def test_more_alerts_on_a_service_already_failing_join_whatever_the_time() -> None:
    eng = engine(window=600.0, horizon=900.0)
    events = run(eng, [(0, [fire("cart", instance="a")]), (2000, [fire("cart", instance="b")])])
    assert len(created(events)) == 1


def test_an_undirected_link_joins_both_ways_and_time_decides_the_root() -> None:
    g = nx.DiGraph()
    g.add_nodes_from(["sw1", "sw2", "sw3"])
    eng = engine(g, links=[("sw1", "sw2"), ("sw2", "sw3")])
    events = run(eng, [(0, [fire("sw2", "LinkDown")]), (20, [fire("sw1", "LinkDown")]),
                       (40, [fire("sw3", "LinkDown")])])
    assert len(created(events)) == 1
    rc = events[-1]["incident"]["root_cause"]
    assert rc["service"] == "sw2"
    assert "2 of 2 other failing services" in rc["reason"]


# -- weak alerts ---------------------------------------------------------------------------


def test_info_and_resource_trend_alerts_never_open_or_page() -> None:
    eng = engine()
    events = run(eng, [(0, [fire("cart", "HostDiskWillFillIn24Hours", "warning")]),
                       (10, [fire("checkout", "JvmGcTimeTooHigh", "info")]),
                       (20, [fire("redis", "HighErrorRate", "info")]), (600, [])])
    assert created(events) == []
    assert eng.counts["weak_held"] == 3


def test_weak_alerts_attach_as_context_but_never_keep_an_incident_alive() -> None:
    eng = engine(quiet_period=300.0)
    events = run(eng, [(0, [fire("cart", "PodCrash")]),
                       (10, [fire("cart", "ContainerHighCpuUsage", "warning")]),
                       (60, [resolve("cart", "PodCrash")])])
    inc = created(events)[0]
    assert len(eng.incidents[inc].alerts) == 2  # the CPU alert sits in it as context
    resolved = eng.tick(T + 360)  # still firing CPU alert does not hold it open
    assert [e["type"] for e in resolved] == ["incident.resolved"]


def test_background_noise_never_bridges_two_failures() -> None:
    # a GC-pause warning on checkout sits between cart's and frontend's failures
    g = nx.DiGraph([("frontend", "checkout"), ("checkout", "cart")])
    eng = engine(g)
    events = run(eng, [(0, [fire("cart", "PodCrash")]),
                       (5, [fire("checkout", "GoGcDurationHigh", "warning")]),
                       (10, [fire("frontend", "PodCrash")])])
    assert len(created(events)) == 2
    assert eng.counts["weak_held"] == 1  # checkout has no evidence: it attaches nowhere


def test_a_flapping_alert_never_becomes_the_root_cause() -> None:
    eng = engine()
    events = run(eng, [(0, [fire("redis", "NodeDown")]), (10, [fire("cart", "PodCrash")]),
                       (20, [fire("redis", "NodeDown", change="flapping")]),
                       (30, [fire("checkout")])])
    inc = events[-1]["incident"]
    assert inc["root_cause"]["service"] == "cart"  # redis only flapped, cart really failed
    assert "redis" in inc["services"]


# -- paging --------------------------------------------------------------------------------


def test_blips_and_flapping_alerts_never_page() -> None:
    eng = engine(page_delay=30.0)
    events = run(eng, [(0, [fire("batch")]), (20, [resolve("batch")]), (40, [])])
    assert created(events) == []
    flap = fire("ads", change="flapping")
    events = run(eng, [(100, [fire("ads")]), (110, [flap]), (200, [])])
    assert created(events) == []
    assert eng.counts["not_paged"] == 2


def test_a_lone_alert_pages_only_once_it_has_fired_without_a_break() -> None:
    eng = engine(page_delay=30.0, lone_delay=240.0)
    events = run(eng, [(0, [fire("cart", "HighLatency", "warning")]), (100, [])])
    assert created(events) == []
    events = run(eng, [(120, [resolve("cart", "HighLatency")]),
                       (150, [fire("cart", "HighLatency", "warning")]), (300, [])])
    assert created(events) == []  # it came back at 150: not yet 240 s without a break
    assert created(eng.tick(T + 390)) != []
    # two alerts corroborate each other: the usual page delay
    eng = engine(page_delay=30.0, lone_delay=240.0)
    events = run(eng, [(0, [fire("cart", "HighLatency", "warning", instance="a"),
                            fire("cart", "HighLatency", "warning", instance="b")]), (30, [])])
    assert len(created(events)) == 1


def test_alerts_of_services_the_topology_does_not_know_are_held_not_paged() -> None:
    eng = engine(page_delay=30.0, lone_delay=60.0)
    events = run(eng, [(0, [fire("legacy-cron", "PodCrash"),
                            fire("legacy-cron", "PodCrash", instance="2")]), (600, [])])
    assert created(events) == []  # nobody owns it, nothing corroborates it
    assert eng.counts["held_unknown_service"] >= 1
    paging = engine(page_delay=30.0, page_unknown_services=True)
    assert len(created(run(paging, [(0, [fire("legacy-cron", "PodCrash")]), (60, [])]))) == 1
    bare = IncidentEngine(policy=CorrelationPolicy(page_delay=0.0, lone_critical_delay=0.0))
    assert created(bare.observe([fire("anything", "PodCrash")], T))  # no topology at all


def test_a_lone_critical_alert_waits_less_than_a_lone_warning() -> None:
    eng = engine(page_delay=30.0, lone_delay=600.0, lone_critical_delay=120.0)
    assert created(run(eng, [(0, [fire("cart", "PodCrash", "critical")]), (100, [])])) == []
    assert created(eng.tick(T + 120)) != []


def test_page_waits_for_the_delay_then_pages_once() -> None:
    eng = engine(page_delay=30.0)
    events = run(eng, [(0, [fire("cart")]), (10, [fire("checkout")])])
    assert created(events) == []
    events = eng.tick(T + 30)
    assert len(created(events)) == 1
    assert events[0]["incident"]["services"] == ["cart", "checkout"]
    assert events[0]["at"] == "2027-01-15T08:00:30.000Z"


def test_end_of_input_decides_the_pages_still_waiting() -> None:
    eng = engine(page_delay=30.0)
    assert created(run(eng, [(0, [fire("cart")]), (5, [fire("checkout")])])) == []
    flushed = eng.flush_pages(T + 5)
    assert len(created(flushed)) == 1 and flushed[0]["at"] == "2027-01-15T08:00:30.000Z"
    assert eng.flush_pages(T + 5) == []  # decided once
    blip = engine(page_delay=30.0)
    run(blip, [(0, [fire("cart")]), (5, [resolve("cart")])])
    assert blip.flush_pages(T + 5) == []  # resolved within the delay: still no page


# -- merge and split ------------------------------------------------------------------------

# a and b both call c; x calls both a and b
FORK = nx.DiGraph([("a", "c"), ("b", "c"), ("x", "a"), ("x", "b")])


def test_one_deeper_cause_merges_two_incidents_and_its_root_wins() -> None:
    eng = engine(FORK)
    events = run(eng, [(0, [fire("a", "PodCrashLooping")]), (10, [fire("b", "PodCrashLooping")]),
                       (40, [fire("c", "DatabaseDown", "critical")])])
    first, second = created(events)
    merged = [e for e in events if e["incident"]["merged_into"]]
    assert len(merged) == 1 and merged[0]["incident"]["id"] == second
    assert merged[0]["incident"]["status"] == "merged" and "merged_into" in merged[0]["changed"]
    assert services_of(eng, first) == {"a", "b", "c"}
    assert last(events, first)["root_cause"]["service"] == "c"


def test_an_alert_near_two_incidents_joins_one_and_merges_nothing() -> None:
    eng = engine(FORK)
    events = run(eng, [(0, [fire("a", "PodCrashLooping")]), (10, [fire("b", "PodCrashLooping")]),
                       (40, [fire("x", "HighErrorRate")])])
    assert len(created(events)) == 2
    assert not [e for e in events if e["incident"]["merged_into"]]
    assert "x" in services_of(eng, created(events)[1])  # the most recent onset activity


def test_a_correct_small_incident_keeps_its_root_when_merged_into_a_bigger_one() -> None:
    g = nx.DiGraph([("u1", "c"), ("u2", "c"), ("u3", "c"), ("v", "c"), ("c", "d")])
    eng = engine(g)
    changes = eng.changes
    changes.add(ChangeRecord("deploy-c", "c", "deploy", T + 30))
    # an older, noisier incident of three crashing callers, then c's own failure: c explains
    # all of them, so the merged incident's root is c with c's deploy as the top suspect
    events = run(eng, [(0, [fire("u1", "PodCrash")]), (5, [fire("u2", "PodCrash")]),
                       (8, [fire("u3", "PodCrash")]), (60, [fire("c", "ServiceDown")])])
    inc = events[-1]["incident"]
    assert inc["root_cause"]["service"] == "c"


def test_a_group_whose_bridge_flapped_splits_away() -> None:
    g = nx.DiGraph([("left", "bridge"), ("bridge", "right")])
    eng = engine(g)
    events = run(eng, [(0, [fire("left", "PodCrash")]), (10, [fire("bridge", "PodCrash")]),
                       (20, [fire("right", "PodCrash")])])
    (inc,) = created(events)
    assert services_of(eng, inc) == {"left", "bridge", "right"}
    events = run(eng, [(30, [fire("bridge", "PodCrash", change="flapping")])])
    split = [e for e in events if e["type"] == "incident.created"]
    assert len(split) == 1 and split[0]["incident"]["split_from"] == inc
    assert last(events, inc)["split_into"] == [split[0]["incident"]["id"]]
    moved = set(split[0]["incident"]["services"])
    assert moved in ({"left"}, {"right"})
    assert not moved & set(last(events, inc)["services"])


# -- root cause ---------------------------------------------------------------------------


def test_root_cause_is_the_deepest_failing_dependency_with_a_checkable_reason() -> None:
    events = run(engine(), [(0, [fire("cart", "PodCrash")]), (5, [fire("checkout")]),
                            (9, [fire("frontend")])])
    rc = events[-1]["incident"]["root_cause"]
    assert rc["service"] == "cart"
    assert "2 of 2 other failing services depend on cart and started after it" in rc["reason"]
    assert "(checkout, frontend)" in rc["reason"]
    assert rc["candidates"][0] == "cart" and len(rc["candidates"]) <= 3
    assert 0.5 < rc["confidence"] <= 1.0 and rc["inferred"] is False


def test_a_silent_root_is_inferred_from_the_callers_that_point_at_it() -> None:
    # checkout and frontend both call cart, which raises no alert at all
    eng = engine()
    events = run(eng, [(0, [fire("checkout", "EnvoyUpstreamRequestTimeout", "warning")]),
                       (30, [fire("frontend", "EnvoyNoHealthyUpstream", "warning")])])
    assert len(created(events)) == 1
    rc = events[-1]["incident"]["root_cause"]
    assert rc["service"] == "cart" and rc["inferred"] is True
    assert "cart raised no alert" in rc["reason"]


def test_a_sibling_joins_through_the_silent_dependency_they_share() -> None:
    g = nx.DiGraph([("a", "c"), ("b", "c")])
    eng = engine(g)
    events = run(eng, [(0, [fire("a", "UpstreamErrors", "warning")]),
                       (60, [fire("b", "UpstreamErrors", "warning")])])
    assert len(created(events)) == 1
    assert events[-1]["incident"]["root_cause"]["service"] == "c"


def test_a_late_dependency_does_not_take_the_root_from_one_that_failed_first() -> None:
    g = nx.DiGraph([("web", "api"), ("api", "db")])
    eng = engine(g)
    events = run(eng, [(0, [fire("api", "PodCrashLooping")]), (60, [fire("web")]),
                       (900, [fire("db", "DatabaseSlowQueries", "warning")])])
    inc = [e for e in events if e["incident"]["id"] == created(events)[0]][-1]["incident"]
    assert inc["root_cause"]["service"] == "api"


def test_suspect_changes_scored_by_time_and_distance() -> None:
    changes = ChangeIndex()
    for rec in (ChangeRecord("d-cart", "cart", "deploy", T - 300, "v2"),
                ChangeRecord("d-redis", "redis", "deploy", T - 300),
                ChangeRecord("old", "cart", "config", T - 3 * 3600),  # outside the lookback
                ChangeRecord("d-front", "frontend", "deploy", T - 60),  # a caller, not a dep
                ChangeRecord("later", "cart", "feature_flag", T + 600)):  # after it started
        changes.add(rec)
    events = run(engine(changes=changes), [(0, [fire("cart", "PodCrash")]),
                                           (30, [fire("frontend")])])
    suspects = events[-1]["incident"]["suspect_changes"]
    assert [s["id"] for s in suspects] == ["d-cart", "d-redis"]
    assert suspects[0]["score"] > suspects[1]["score"]
    assert "5m before the first alert, on the root-cause service" in suspects[0]["reason"]
    assert "which cart depends on" in suspects[1]["reason"]


def test_a_decoy_change_on_a_neighbour_does_not_outrank_the_roots_own() -> None:
    changes = ChangeIndex()
    changes.add(ChangeRecord("cause", "cart", "deploy", T - 900))
    changes.add(ChangeRecord("decoy", "redis", "deploy", T - 120))
    events = run(engine(changes=changes), [(0, [fire("cart", "PodCrash")])])
    assert events[-1]["incident"]["suspect_changes"][0]["id"] == "cause"


# -- priority ------------------------------------------------------------------------------


def test_priority_rises_with_the_incident_and_never_falls() -> None:
    eng = engine()
    events = run(eng, [(0, [fire("cart", "HighLatency", "warning")])])
    assert events[0]["incident"]["priority"] == "P3"  # tier 1, but only a warning, no users
    events = run(eng, [(30, [fire("frontend", severity="critical")])])
    up = [e for e in events if "priority" in e["changed"]]
    assert up and up[-1]["incident"]["priority"] == "P1"
    assert up[-1]["incident"]["priority_reasons"][0].startswith("P1 = ")
    events = run(eng, [(60, [resolve("frontend")]), (90, [fire("cart", instance="2")])])
    assert all(e["incident"]["priority"] == "P1" for e in events)


def test_priority_counts_users_who_see_a_symptom_and_reports_the_rest_as_risk() -> None:
    eng = engine()
    events = run(eng, [(0, [fire("redis", "RedisDown", "error")])])
    inc = events[-1]["incident"]
    assert inc["users_affected"] == 0  # frontend depends on redis but shows nothing
    assert inc["risk"] == {"users": 20000, "services": ["frontend"]}
    assert any(r.startswith("risk: 20,000 users of frontend") for r in inc["priority_reasons"])
    assert inc["priority"] == "P2"  # tier 2 x error: the 20,000 users are risk, not impact


def test_warnings_without_a_user_facing_symptom_are_never_p1_or_p2() -> None:
    eng = engine()
    events = run(eng, [(0, [fire("cart", "PodCrashLooping", "warning")]),
                       (20, [fire("checkout", "HighErrorRate", "warning")])])
    inc = events[-1]["incident"]
    assert inc["priority"] == "P3"
    assert inc["priority_reasons"][0].startswith("P3 = capped")


def test_owner_is_the_root_cause_team_on_call_at_incident_start() -> None:
    oncall = parse_oncall({"rotations": [
        {"team": "cart", "members": ["ann", "bob"], "length": "1d", "handoff": "00:00",
         "timezone": "UTC", "start": "2027-01-01"}]})
    events = run(engine(oncall=oncall), [(0, [fire("frontend")]),
                                         (5, [fire("cart", "PodCrash")])])
    owner = events[-1]["incident"]["owner"]
    # 2027-01-15 is day 14 of the rotation: ann (even days)
    assert owner["team"] == "cart" and owner["person"] == "ann"
    assert "on call at 08:00:00" in owner["reason"]


def test_war_room_for_p1_and_for_p2_after_15_minutes() -> None:
    events = run(engine(), [(0, [fire("cart", severity="critical")])])
    assert events[0]["incident"]["war_room"]["open"] is True
    eng = engine()
    events = run(eng, [(0, [fire("checkout", severity="error")])])
    inc = events[0]["incident"]
    assert inc["priority"] == "P2"  # tier 1 (critical impact) x error (medium urgency)
    assert inc["war_room"]["open"] is False
    assert eng.tick(T + 899) == []
    opened = eng.tick(T + 900)
    assert opened and opened[-1]["incident"]["war_room"]["open"] is True
    assert "war_room" in opened[-1]["changed"]
    assert opened[-1]["incident"]["war_room"]["at"] == "2027-01-15T08:15:00.000Z"


def test_war_room_when_three_teams_are_affected() -> None:
    eng = engine(war_room=WarRoomPolicy(p1=False, p2_after=None, min_teams=3))
    events = run(eng, [(0, [fire("redis", "RedisDown", "warning")]),
                       (5, [fire("cart", severity="warning")]),
                       (9, [fire("checkout", severity="warning")])])
    wr = events[-1]["incident"]["war_room"]
    assert wr["open"] is True and "3 teams" in wr["reason"]


# -- resolution and recurrence -------------------------------------------------------------


def test_resolves_after_quiet_period_and_a_new_alert_opens_a_new_incident() -> None:
    eng = engine(quiet_period=600.0)
    events = run(eng, [(0, [fire("cart")]), (100, [resolve("cart")])])
    assert not [e for e in events if e["type"] == "incident.resolved"]
    assert not [e for e in eng.tick(T + 699) if e["type"] == "incident.resolved"]
    resolved = eng.tick(T + 700)
    assert [e["type"] for e in resolved] == ["incident.resolved"]
    assert resolved[0]["incident"]["resolved_at"] == "2027-01-15T08:11:40.000Z"
    later = run(eng, [(800, [fire("cart", "PodCrash", instance="x")])])
    assert len(created(later)) == 1 and created(later)[0] != events[0]["incident"]["id"]


def test_the_same_alert_firing_again_reopens_its_incident_without_a_page() -> None:
    eng = engine(quiet_period=60.0, recurrence_window=3600.0)
    first = run(eng, [(0, [fire("cart")]), (10, [resolve("cart")])])
    eng.tick(T + 100)
    again = run(eng, [(200, [fire("cart")])])
    assert created(again) == []
    inc = again[-1]["incident"]
    assert inc["id"] == first[0]["incident"]["id"]
    assert inc["reopened"] == 1 and inc["status"] == "open" and again[-1]["page"] is False
    assert inc["pages"] == 1


def test_a_recurrence_pages_again_only_when_it_escalates() -> None:
    eng = engine(quiet_period=60.0, recurrence_window=3600.0)
    run(eng, [(0, [fire("checkout", "HighLatency", "warning")]),
              (10, [resolve("checkout", "HighLatency")])])
    eng.tick(T + 100)
    again = run(eng, [(200, [fire("checkout", "HighLatency", "warning")]),
                      (230, [fire("frontend", severity="critical")])])
    pages = [e for e in again if e["page"]]
    assert created(again) == [] and len(pages) == 1
    assert pages[0]["incident"]["priority"] == "P1" and pages[0]["incident"]["pages"] == 2


def test_a_recurrence_after_the_window_pages_as_a_new_incident() -> None:
    eng = engine(quiet_period=60.0, recurrence_window=600.0, retention=60.0)
    run(eng, [(0, [fire("cart")]), (10, [resolve("cart")])])
    eng.tick(T + 100)
    assert len(created(run(eng, [(2000, [fire("cart")])]))) == 1


def test_a_live_failure_wins_over_a_recurrence() -> None:
    eng = engine(quiet_period=60.0)
    old = created(run(eng, [(0, [fire("checkout")]), (10, [resolve("checkout")])]))[0]
    eng.tick(T + 100)
    events = run(eng, [(200, [fire("cart", "PodCrash")]), (230, [fire("checkout")])])
    new = created(events)[0]
    assert "checkout" in services_of(eng, new) and new != old


def test_a_new_failure_inside_an_open_incident_is_not_silent() -> None:
    eng = engine(quiet_period=600.0)
    run(eng, [(0, [fire("cart")]), (60, [resolve("cart")])])
    events = run(eng, [(120, [fire("cart", name="PodCrashLooping")])])
    assert events and "reactivated" in events[-1]["changed"]
    assert events[-1]["incident"]["reactivated"] == 1
    assert events[-1]["incident"]["active_services"] == ["cart"]


def test_a_new_alert_cancels_the_quiet_period() -> None:
    eng = engine(quiet_period=600.0)
    run(eng, [(0, [fire("cart")]), (100, [resolve("cart")]), (300, [fire("cart", instance="x")])])
    assert not [e for e in eng.tick(T + 800) if e["type"] == "incident.resolved"]


# -- state and cost -------------------------------------------------------------------------


def test_state_round_trip_continues_ids_and_sequences() -> None:
    eng = engine(quiet_period=600.0)
    before = run(eng, [(0, [fire("cart")]), (30, [fire("checkout")])])
    records, _removed = eng.take_changes()
    restored = engine(quiet_period=600.0)
    restored.load(records.values(), eng.timers())
    tail = [(60, [fire("frontend")]), (90, [resolve("cart"), resolve("checkout"),
                                            resolve("frontend")])]
    after_a, after_b = run(eng, tail), run(restored, tail)
    assert after_a == after_b and after_a
    assert eng.tick(T + 700) == restored.tick(T + 700) != []
    seqs = [e["incident"]["sequence"] for e in before + after_a]
    assert seqs == sorted(seqs)


def test_a_record_from_before_the_evidence_model_is_upgraded() -> None:
    v1 = {"id": "inc-1", "seq": 1, "status": "open", "opened_at": T, "last_seen": T + 5,
          "resolved_at": None, "quiet_since": None, "first_seen": {"cart": T},
          "priority": "P1", "priority_since": T, "priority_reasons": ["P1 = ..."],
          "impact": "critical", "urgency": "high", "users_affected": 0, "owner_team": "cart",
          "owner_person": None, "owner_reason": "", "war_room_open": True,
          "war_room_reason": "P1", "war_room_at": T, "merged_into": None, "reopened": 0,
          "decided_at": T, "update_pending": False, "service_last": {"cart": T},
          "reactivated": 0, "needs_decision": False,
          "alerts": {"ab": ["cart", "PodCrashLooping", "critical", "firing", T, T + 5, False,
                            False]},
          "root": {"service": "cart", "confidence": 0.6, "reason": "r", "candidates": ["cart"]},
          "suspects": [], "emitted": ["open", ["cart"], "cart", "P1", "cart", None, True, [],
                                      None, 0, 0]}
    inc = Incident.from_record(v1)
    assert inc.alerts["ab"].kind == "crash" and inc.alerts["ab"].strong
    assert inc.onsets == {"cart": T} and inc.pages == 1
    assert inc.material() == inc.emitted  # nothing to re-announce after the upgrade
    assert Incident.from_record(inc.to_record()).to_record() == inc.to_record()


@pytest.mark.parametrize("n_open", [10, 1000])
def test_correlation_consults_only_nearby_incidents(n_open: int) -> None:
    # many open incidents on unrelated services: the candidate search must not visit them
    graph = nx.DiGraph([(f"s{i}", f"s{i + 1}") for i in range(0, 2 * n_open, 2)])
    eng = IncidentEngine(topology=Topology(graph), mapper=ServiceMapper(("service",), {}),
                         policy=CorrelationPolicy(page_delay=0.0))
    for i in range(0, 2 * n_open, 2):
        eng.observe([fire(f"s{i}", instance=str(i))], T)
    visited = 0
    real_get = eng.anchors.get

    class Counting(dict):  # type: ignore[type-arg]
        def get(self, key: object, default: object = None) -> object:
            nonlocal visited
            visited += 1
            return real_get(key, default)  # type: ignore[arg-type]

    eng.anchors = Counting(eng.anchors)
    eng.observe([fire("s1", instance="x")], T + 1)
    assert visited <= 3  # s1 and its neighbours, whatever n_open is


def test_old_incidents_leave_the_index_and_come_back_when_their_alert_fires() -> None:
    eng = engine(window=300.0)
    first = created(run(eng, [(0, [fire("cart", instance="a")])]))[0]
    run(eng, [(1000, [fire("checkout")])])  # too late to join: a new incident; cart pruned
    assert first not in eng.anchors.get("cart", set())
    # cart fails again on another instance: still the same incident (cart is failing in it)
    eng.observe([fire("cart", "PodCrash", instance="b")], T + 1100)
    assert first in eng.anchors["cart"]


def test_updates_of_a_growing_incident_are_batched_per_interval() -> None:
    eng = engine(update_interval=10.0)
    events = run(eng, [(0, [fire("redis", "RedisDown")]), (1, [fire("cart")]),
                       (2, [fire("checkout")]), (3, [fire("frontend")])])
    assert [e["type"] for e in events] == ["incident.created"]
    later = eng.tick(T + 10)
    assert [e["type"] for e in later] == ["incident.updated"]
    assert later[0]["incident"]["services"] == ["cart", "checkout", "frontend", "redis"]
    assert later[0]["incident"]["root_cause"]["service"] == "redis"


def test_merge_of_an_unpaged_incident_touched_in_the_same_batch() -> None:
    # a paged incident on a, an unpaged one on b; in one payload b's alert resolves and c's
    # failure explains both: one open incident remains and every event is of a live one
    eng = engine(FORK, page_delay=30.0)
    run(eng, [(0, [fire("a", "PodCrash")]), (40, [])])
    run(eng, [(50, [fire("b", "PodCrash")])])
    events = eng.observe([resolve("b", "PodCrash"), fire("c", "DatabaseDown")], T + 55)
    assert all(e["incident"]["id"] in eng.incidents for e in events)
    assert len([i for i in eng.incidents.values() if i.status == "open"]) == 1


KINDS = ["HighErrorRate", "PodCrashLooping", "UpstreamTimeout", "HostCpuHigh"]
steps = st.lists(
    st.tuples(st.integers(0, 120),  # seconds since the previous step
              st.lists(st.tuples(st.sampled_from([*sorted(CATALOG), "unknown"]),
                                 st.sampled_from(["fire", "resolve", "flap", "stable"]),
                                 st.sampled_from(["a", "b"]),
                                 st.sampled_from(KINDS),
                                 st.sampled_from(["critical", "warning", "info", ""])),
                       min_size=1, max_size=4)),
    max_size=40)


@settings(max_examples=150, deadline=None)
@given(steps, st.sampled_from([0.0, 600.0]), st.integers(1, 3))
def test_any_sequence_keeps_the_event_contract(
        seq: list[tuple[int, list[tuple[str, str, str, str, str]]]], recurrence: float,
        hops: int) -> None:
    eng = engine(hops=hops, page_delay=30.0, lone_delay=60.0, update_interval=10.0,
                 quiet_period=120.0, window=300.0, recurrence_window=recurrence,
                 retention=300.0)
    t = 0.0
    events: list[dict[str, Any]] = []
    for gap, batch in seq:
        t += gap
        outs = []
        for service, action, inst, name, severity in batch:
            if action == "fire":
                outs.append(fire(service, name, severity, instance=inst))
            elif action == "resolve":
                outs.append(resolve(service, name, instance=inst))
            else:
                outs.append(fire(service, name, severity, instance=inst,
                                 change="flapping" if action == "flap" else "stable"))
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
            assert inc["sequence"] == 1 and e["page"] is True
        if inc["status"] == "merged":
            assert inc["merged_into"] in last_seq or inc["merged_into"] in eng.incidents
    # every open incident is findable through the indexes it is in, and nothing else is
    for service, ids in eng.anchors.items():
        for inc_id in ids:
            assert eng.incidents[inc_id].status == "open"
            assert service in eng._keys[inc_id].anchors


# -- alerts stamped alike -----------------------------------------------------------------


@pytest.mark.parametrize("order", [("checkout", "cart", "redis"), ("redis", "cart", "checkout"),
                                   ("cart", "checkout", "redis"), ("cart", "redis", "checkout")])
def test_services_failing_at_one_time_give_one_incident_id_whatever_their_order(
        order: tuple[str, ...]) -> None:
    """Alerts stamped alike come in the file's order to ``triage run`` and in whatever order
    partitions deliver them to the Kafka path: the incident they open must be named alike
    (the least service names it), or the two runtimes disagree on every id of a storm's
    first second."""
    events = run(engine(page_delay=30.0), [(0, [fire(s) for s in order[:1]]),
                                           (0, [fire(s) for s in order[1:]]),
                                           (60, [fire("frontend")])])
    (inc_id,) = set(created(events))
    assert inc_id == "inc-" + hashlib.sha1(f"cart|{T:.3f}".encode()).hexdigest()[:12]
    assert set(last(events, inc_id)["services"]) == {"checkout", "cart", "redis", "frontend"}


def test_an_incident_already_published_keeps_its_id() -> None:
    """An id once in an event never changes, even for an alert stamped at its opening."""
    eng = engine()  # pages at once
    events = run(eng, [(0, [fire("checkout")]), (0, [fire("cart")])])
    assert set(created(events)) == {
        "inc-" + hashlib.sha1(f"checkout|{T:.3f}".encode()).hexdigest()[:12]}
    assert eng.counts["renamed_for_ties"] == 0
