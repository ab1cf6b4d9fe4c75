"""Scenarios and the storm written from them: deterministic, consistent with their truth."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

import orjson
import pytest

from triage.core.fingerprint import labelset_fingerprint
from triage.core.topology import Topology
from triage.simulate import ScenarioOptions, simulate
from triage.simulate.deliver import Series
from triage.simulate.emit import DeliveryOptions, deliver
from triage.simulate.graphs import layered_topology
from triage.simulate.rules import RuleCatalog
from triage.simulate.scenario import Scenario, build_scenario
from triage.simulate.truth import TrueIncident

SEEDS = range(10)


def digest(folder: Path) -> dict[str, str]:
    return {name: hashlib.sha256((folder / name).read_bytes()).hexdigest()
            for name in ("alerts.jsonl", "changes.jsonl", "truth.json", "triage.yaml",
                         "thresholds.yaml", "services.yaml")}


def run(out: Path, seed: int) -> None:
    simulate(out, services=80, rules_dir=None,
             scenario=ScenarioOptions(minutes=60, seed=seed))


def test_the_same_seed_gives_the_same_storm(tmp_path: Path) -> None:
    run(tmp_path / "a", 5)
    run(tmp_path / "b", 5)
    run(tmp_path / "c", 6)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert digest(tmp_path / "a")["alerts.jsonl"] != digest(tmp_path / "c")["alerts.jsonl"]


def test_truth_covers_every_delivered_alert(tmp_path: Path) -> None:
    run(tmp_path, 2)
    truth = orjson.loads((tmp_path / "truth.json").read_bytes())
    seen: set[str] = set()
    alerts_in = 0
    last = ""
    for line in (tmp_path / "alerts.jsonl").read_bytes().splitlines():
        env = orjson.loads(line)
        assert env["received_at"] >= last  # time order
        last = env["received_at"]
        assert env["payload"]["version"] == "4"
        for a in env["payload"]["alerts"]:
            fp = labelset_fingerprint(a["labels"])
            assert fp in truth["alerts"]
            seen.add(fp)
            alerts_in += 1
    assert seen == set(truth["alerts"])
    assert alerts_in == truth["counts"]["alerts_in"]
    assert truth["counts"]["ha_duplicate_deliveries"] > 0
    kinds = set(truth["counts"]["noise_alerts"])
    assert {"noisy_rule", "spike", "watchdog"} <= kinds
    for inc in truth["incidents"]:
        assert inc["fingerprints"], inc["id"]
        assert all(truth["alerts"][f]["incident"] == inc["id"] for f in inc["fingerprints"])
        assert inc["root_cause"] in inc["services"]
        assert inc["priority"] in ("P1", "P2", "P3", "P4")
    changes = [orjson.loads(x) for x in (tmp_path / "changes.jsonl").read_bytes().splitlines()]
    ids = {c["id"] for c in changes}
    causes = [i["cause_change"] for i in truth["incidents"] if i["cause_change"]]
    assert causes and set(causes) <= ids
    by_id = {c["id"]: c for c in changes}
    for inc in truth["incidents"]:
        if inc["cause_change"]:
            assert by_id[inc["cause_change"]]["service"] == inc["root_cause"]


# -- the hard parts, with defaults, on a generated 300-service graph -------------------------


@cache
def graph300() -> Topology:
    return layered_topology(300, seed=1)


@cache
def storm(seed: int, rules: str = "built-in") -> Scenario:
    catalog = RuleCatalog.builtin() if rules == "built-in" else RuleCatalog.load(Path(rules))
    return build_scenario(graph300(), catalog, ScenarioOptions(seed=seed))


def incidents() -> list[tuple[Scenario, TrueIncident]]:
    return [(sc, inc) for seed in SEEDS for sc in [storm(seed)] for inc in sc.incidents]


def of(sc: Scenario, truth: str) -> list[Series]:
    return [s for s in sc.series if s.truth == truth]


def test_build_scenario_is_deterministic() -> None:
    rules, topo = RuleCatalog.builtin(), graph300()
    a, b = (build_scenario(topo, rules, ScenarioOptions(seed=4)) for _ in range(2))
    assert [(s.labels, s.intervals, s.truth) for s in a.series] == [
        (s.labels, s.intervals, s.truth) for s in b.series]
    assert [i.to_json() for i in a.incidents] == [i.to_json() for i in b.incidents]
    assert a.changes == b.changes


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_background_noise_on_a_quarter_of_the_services(seed: int) -> None:
    sc = storm(seed)
    background = of(sc, "noise:background")
    per_service: dict[str, int] = {}
    for s in background:
        per_service[s.labels["service"]] = per_service.get(s.labels["service"], 0) + 1
    assert len(per_service) >= 0.2 * 300
    assert set(per_service.values()) <= {1, 2}
    assert {s.labels["severity"] for s in background} <= {"info", "warning"}
    for s in background:  # every one fires during the storm
        assert any(a < sc.end and b > sc.start for a, b in s.intervals)
    # about half one stretch of 1 to 6 hours, half on and off in 5 to 60 minute stretches
    long = [s for s in background if s.intervals[0][1] - s.intervals[0][0] > 3600]
    assert all(len(s.intervals) == 1 and s.intervals[0][1] - s.intervals[0][0] <= 6 * 3600
               for s in long)
    assert any(s.intervals[0][0] < sc.start and s.intervals[0][1] > sc.end for s in long)
    on_and_off = [s for s in background if s not in long]
    assert all(300 <= b - a <= 3600 for s in on_and_off for a, b in s.intervals)
    assert any(len(s.intervals) > 1 for s in on_and_off)
    assert 0.3 <= len(long) / len(background) <= 0.7
    # never gated by the thresholds tuned for the noisy and spike rules
    assert not {s.labels["alertname"] for s in background} & set(sc.thresholds)


def test_silent_roots_raise_no_alert() -> None:
    eligible = silent = 0
    for sc, inc in incidents():
        if len(inc.services) > 1:
            eligible += 1
        if not inc.silent_root:
            assert inc.services[inc.root_cause] != "none"
            continue
        silent += 1
        assert inc.services[inc.root_cause] == "none" and len(inc.services) > 1
        mine = of(sc, inc.id)
        assert mine and all(s.labels["service"] != inc.root_cause for s in mine)
    assert 0.1 <= silent / eligible <= 0.3, (silent, eligible)


def test_concurrent_pairs_stay_unambiguous() -> None:
    graph = graph300().graph
    paired = shared = total = 0
    for sc, inc in incidents():
        total += 1
        by_id = {i.id: i for i in sc.incidents}
        for other_id in inc.concurrent_with:  # overlapping in time, both ways
            other = by_id[other_id]
            assert inc.id in other.concurrent_with
            assert other.started_at < inc.mitigated_at and inc.started_at < other.mitigated_at
        if inc.paired_with is None:
            continue
        paired += 1
        other = by_id[inc.paired_with]
        assert other.paired_with == inc.id and other.id in inc.concurrent_with
        assert abs(other.started_at - inc.started_at) <= 180
        assert inc.root_cause != other.root_cause
        assert not set(inc.services) & set(other.services)  # nothing reached by both
        assert not (inc.silent_root and other.silent_root)
        assert inc.shared_dependency == other.shared_dependency
        dep = inc.shared_dependency
        if dep is not None:
            shared += 1
            assert graph.has_edge(inc.root_cause, dep) and graph.has_edge(other.root_cause, dep)
            assert dep not in inc.services and dep not in other.services
    assert 0.15 <= paired / total <= 0.45, (paired, total)
    assert 0.25 <= shared / paired <= 0.75, (shared, paired)


def test_symptoms_climb_callers_30s_to_5min_per_hop() -> None:
    graph = graph300().graph
    deepest = 0
    for sc, inc in incidents():
        noticed = {inc.root_cause: inc.started_at}
        upstream: dict[str, str] = {}
        for s in of(sc, inc.id):
            svc = s.labels["service"]
            noticed[svc] = min(noticed.get(svc, s.intervals[0][0]), s.intervals[0][0])
            if "upstream" in s.labels:
                upstream[svc] = s.labels["upstream"]
        assert set(noticed) == set(inc.services)
        assert len(inc.services) <= ScenarioOptions().max_affected
        for svc, hop in inc.hops.items():
            deepest = max(deepest, hop)
            assert hop <= 4
            if hop == 0:
                assert svc == inc.root_cause and svc not in upstream
                continue
            dep = upstream[svc]  # it calls the dependency it noticed through
            assert graph.has_edge(svc, dep) and inc.hops[dep] == hop - 1
            assert 30 <= noticed[svc] - noticed[dep] <= 300
            # and it noticed well before the failure was mitigated
            assert noticed[svc] <= inc.mitigated_at - 300
    assert deepest >= 2


def test_decoy_changes_on_the_root_neighbours() -> None:
    graph = graph300().graph
    with_decoys = could = closer = 0
    for sc, inc in incidents():
        near = set(graph.predecessors(inc.root_cause)) | set(graph.successors(inc.root_cause))
        could += bool(near)
        with_decoys += bool(inc.decoy_changes)
        by_id = {c["id"]: c for c in sc.changes}
        for d in inc.decoy_changes:
            change = by_id[d]
            assert change["service"] in near
            assert 60 <= inc.started_at - change["at"] <= 1800
            if inc.cause_change is not None:
                cause = by_id[inc.cause_change]
                assert cause["service"] == inc.root_cause
                closer += change["at"] > cause["at"]
    assert 0.55 <= with_decoys / could <= 0.85
    assert closer > 0  # sometimes nearer the failure than the causal change


def test_flapping_noise_is_probes_on_the_fast_route() -> None:
    probes = {r.name for r in RuleCatalog.builtin().roles["probe"]}
    flaps = [s for seed in SEEDS for s in of(storm(seed), "noise:flapping")]
    assert flaps
    assert all(s.labels["alertname"] in probes and s.route == "fast" for s in flaps)
    assert all(len(s.intervals) > 1 for s in flaps)


@pytest.mark.parametrize("seed", [0, 3])
def test_every_incident_is_delivered(seed: int) -> None:
    sc = storm(seed)
    storm_ = deliver(sc, DeliveryOptions(seed=seed))
    delivered = set(storm_.delivered)
    for inc in sc.incidents:
        fps = {labelset_fingerprint(s.labels) for s in of(sc, inc.id)}
        assert fps & delivered, inc.id


def test_the_real_rule_collection_drives_the_scenario(shared_data: Path) -> None:
    path = str(shared_data / "alert-rules" / "awesome-prometheus-alerts")
    rules = RuleCatalog.load(Path(path))
    sc = storm(1, path)
    background = of(sc, "noise:background")
    assert len({s.labels["service"] for s in background}) >= 0.2 * 300
    assert {s.labels["severity"] for s in background} <= {"info", "warning"}
    names = {s.labels["alertname"] for s in background}
    assert names <= {r.name for r in rules.roles["background"]} and len(names) > 5
    probes = {r.name for r in rules.roles["probe"]}
    assert all(s.labels["alertname"] in probes for s in of(sc, "noise:flapping"))
    assert any(i.silent_root for i in sc.incidents) or len(sc.incidents) < 5
