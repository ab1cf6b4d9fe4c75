"""Alert rules for the simulator: roles drawn from a real rule collection, or a built-in list."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.simulate.rules import Rule, RuleCatalog

COLLECTION = ("alert-rules", "awesome-prometheus-alerts")


def check_background(rules: RuleCatalog) -> None:
    background = rules.roles["background"]
    assert background
    assert {r.severity for r in background} <= {"info", "warning"}
    names = {r.name for r in background}
    gated = {r.name for role in ("noisy", "spike") for r in rules.roles[role]}
    assert not names & gated  # never gated by the thresholds tuned for noisy and spike
    incident = {r.name for role in ("app_failure", "symptom", "probe")
                for r in rules.roles[role]}
    incident |= {r.name for rs in rules.stores.values() for r in rs}
    assert not names & incident


def test_rules_come_from_the_shared_collection(shared_data: Path) -> None:
    rules = RuleCatalog.load(shared_data.joinpath(*COLLECTION))
    assert rules.total > 900
    assert all(rules.roles[r] for r in ("app_failure", "symptom", "noisy", "spike"))
    assert "redis" in rules.stores
    names = {r.name for rs in rules.roles.values() for r in rs}
    assert "KubernetesPodCrashLooping" in names
    ann = rules.pick("symptom", 0).annotations({"instance": "web-0:9090"}, 2.0)
    assert "{{" not in ann.get("summary", "") and ann["value"] == "2"


def test_background_rules_of_the_shared_collection(shared_data: Path) -> None:
    rules = RuleCatalog.load(shared_data.joinpath(*COLLECTION))
    check_background(rules)
    names = {r.name for r in rules.roles["background"]}
    assert {"HostDiskMayFillIn24Hours", "HostInodesMayFillIn24Hours", "HostClockSkew",
            "HostClockNotSynchronising", "ContainerHighThrottleRate", "GoGcCpuFractionHigh",
            "JvmOldGenGcFrequency", "KubernetesNodeMemoryPressure",
            "ProcessExporterHighSwapUsage", "JvmFileDescriptorsExhaustion"} <= names
    # a critical rule of the collection is downgraded to warning
    by_name = {r.name: r for r in rules.roles["background"]}
    assert by_name["KubernetesNodeMemoryPressure"].severity == "warning"
    assert {r.name for r in rules.roles["probe"]} == {"BlackboxProbeFailed",
                                                      "BlackboxProbeHttpFailure"}


def test_builtin_rules_without_the_collection(tmp_path: Path) -> None:
    rules = RuleCatalog.load(tmp_path / "nowhere")
    assert rules.source == "built-in" and rules.stores
    assert all(rules.roles[r] for r in ("app_failure", "symptom", "noisy", "spike",
                                         "background", "probe"))
    check_background(rules)
    assert len(rules.roles["background"]) >= 8


@pytest.mark.parametrize("severity", ["critical", "error"])
def test_a_loud_background_rule_is_downgraded(severity: str) -> None:
    rules = RuleCatalog.from_rules([Rule("HostClockSkew", severity, "host-and-hardware")],
                                   source="test")
    assert [(r.name, r.severity) for r in rules.roles["background"]] == [
        ("HostClockSkew", "warning")]


def test_a_background_name_taken_by_a_noisy_rule_stays_noisy() -> None:
    # JvmGcTimeTooHigh matches both patterns: it is tuned as noisy, so never background
    rules = RuleCatalog.from_rules([Rule("JvmGcTimeTooHigh", "warning", "jvm"),
                                    Rule("JvmOldGenGcFrequency", "warning", "jvm")],
                                   source="test")
    assert [r.name for r in rules.roles["noisy"]] == ["JvmGcTimeTooHigh"]
    assert [r.name for r in rules.roles["background"]] == ["JvmOldGenGcFrequency"]
