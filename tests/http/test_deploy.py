"""``deploy/prometheus`` and ``deploy/grafana``: the config, rules and dashboard for watching
triage itself are valid and only name metrics that ``TriageMetrics`` defines."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry

from tests.http.tools import require_binary
from triage.metrics import TriageMetrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
PROMETHEUS = DEPLOY / "prometheus"
DASHBOARD = DEPLOY / "grafana" / "triage-dashboard.json"
METRIC = re.compile(r"\btriage_[a-z0-9_]+")


def triage_series() -> set[str]:
    """Every series name the exposition can have (``_total``, ``_bucket``, ``_info`` ...)."""
    registry = CollectorRegistry()
    TriageMetrics.create(registry)
    names: set[str] = set()
    for family in registry.collect():
        names.add(family.name)
        if family.type == "counter":  # labelled counters have no sample until first used
            names.add(family.name + "_total")
        if family.type == "histogram":
            names.update(family.name + s for s in ("_bucket", "_count", "_sum"))
        names.update(s.name for s in family.samples)
    return names


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    binary = require_binary("promtool")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=60,
                          check=False, cwd=PROMETHEUS)


def test_rules_pass_promtool_check_rules() -> None:
    result = promtool("check", "rules", "triage-rules.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_unit_tests_pass() -> None:
    result = promtool("test", "rules", "triage-rules.test.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_scrape_config_passes_promtool_check_config() -> None:
    result = promtool("check", "config", "prometheus.yml")
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = {j["job_name"] for j in yaml.safe_load(
        (PROMETHEUS / "prometheus.yml").read_text())["scrape_configs"]}
    assert jobs == {"triage-serve", "triage-worker"}


def test_rules_cover_lag_dead_letters_stalls_and_absence() -> None:
    rules = [r for g in yaml.safe_load((PROMETHEUS / "triage-rules.yml").read_text())["groups"]
             for r in g["rules"]]
    names = {r["alert"] for r in rules}
    assert {"TriageConsumerLagHigh", "TriageDeadLetterRateHigh", "TriageWorkerStalled",
            "TriageWorkerAbsent", "TriageTargetDown"} <= names
    known = triage_series()
    for rule in rules:
        for metric in METRIC.findall(rule["expr"]):
            assert metric in known, f"{rule['alert']}: {metric} is not a triage metric"


def _panels(dashboard: dict[str, object]) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for panel in dashboard["panels"]:  # type: ignore[attr-defined]
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows hold their panels
    return out


def test_dashboard_is_valid_and_every_expr_names_a_triage_metric() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    panels = _panels(dashboard)
    ids = [p["id"] for p in panels]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    known = triage_series()
    graphs = [p for p in panels if p["type"] != "row"]
    assert len(graphs) >= 8
    for panel in graphs:
        targets = panel.get("targets")
        assert targets, f"panel {panel['title']!r} has no query"
        for target in targets:  # type: ignore[attr-defined]
            named = METRIC.findall(target["expr"])
            assert named, f"{panel['title']!r}: {target['expr']} names no triage metric"
            for metric in named:
                assert metric in known, f"{panel['title']!r}: {metric} is not a triage metric"
    exprs = " ".join(t["expr"] for p in graphs for t in p["targets"])  # type: ignore[attr-defined]
    for needed in ("triage_alerts_received_total", "triage_alerts_outcomes_total",
                   "triage_incidents_created_total", "triage_stage_seconds_bucket",
                   "triage_consumer_lag", "triage_active_alerts", "triage_open_incidents"):
        assert needed in exprs, f"no panel shows {needed}"

