"""Scenarios and the storm written from them: deterministic, consistent with their truth."""

from __future__ import annotations

import hashlib
from pathlib import Path

import networkx as nx
import orjson
import pytest

from triage.core.fingerprint import labelset_fingerprint
from triage.core.topology import ServiceInfo, Topology
from triage.simulate import ScenarioOptions, simulate
from triage.simulate.rules import RuleCatalog
from triage.simulate.truth import true_priority


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


def test_rules_come_from_the_shared_collection(shared_data: Path, tmp_path: Path) -> None:
    rules = RuleCatalog.load(shared_data / "alert-rules" / "awesome-prometheus-alerts")
    assert rules.total > 900
    assert all(rules.roles[r] for r in ("app_failure", "symptom", "noisy", "spike"))
    assert "redis" in rules.stores
    names = {r.name for rs in rules.roles.values() for r in rs}
    assert "KubernetesPodCrashLooping" in names
    ann = rules.pick("symptom", 0).annotations({"instance": "web-0:9090"}, 2.0)
    assert "{{" not in ann.get("summary", "") and ann["value"] == "2"


def test_builtin_rules_without_the_collection(tmp_path: Path) -> None:
    rules = RuleCatalog.load(tmp_path / "nowhere")
    assert rules.source == "built-in" and rules.stores


@pytest.mark.parametrize(("sev", "expected"), [
    ({"db": "critical"}, "P1"),  # tier 1 x critical
    ({"db": "error"}, "P2"),  # tier 1 x medium
    ({"db": "warning"}, "P3"),  # tier 1 x medium is P2, capped: a warning no user sees
    ({"cache": "error"}, "P3"),  # tier 3: web (1,000 users) depends on it, but is risk only
    ({"cache": "info"}, "P4"),
    ({"web": "warning"}, "P1"),  # user-facing and erroring: urgency high, tier 2 -> high
    ({"cron": "critical"}, "P2"),  # unknown tier counts as 3 (medium) x urgency high
    ({"db": "none", "web": "error"}, "P1"),  # a silent root's tier counts
])
def test_true_priority_states_the_observed_impact_rule(sev: dict[str, str],
                                                       expected: str) -> None:
    graph = nx.DiGraph([("web", "db"), ("web", "cache")])
    graph.add_node("cron")
    topo = Topology(graph, {"web": ServiceInfo("web", tier=2, users=1000),
                            "db": ServiceInfo("db", tier=1),
                            "cache": ServiceInfo("cache", tier=3)})
    assert true_priority(sev, topo)[0] == expected
