from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from triage.core.pipeline import Pipeline
from triage.core.thresholds import ThresholdRule, Thresholds, dump_thresholds, parse_thresholds
from triage.models.tuning import (
    ThresholdClassifier,
    best_cut,
    evaluate_thresholds,
    recall_units,
    suggest_rule_change,
    tune_thresholds,
)


def constructed(seed: int, *, n_noise: int = 400, n_real: int = 120,
                service: str = "cart") -> pd.DataFrame:
    """A rule that runs hot: noise just over 0.8 and short; real alerts higher and long."""
    rng = np.random.default_rng(seed)
    noise = pd.DataFrame({"label": "noise", "value": 0.8 + rng.uniform(0.0, 0.06, n_noise),
                          "duration": rng.uniform(30, 400, n_noise)})
    real = pd.DataFrame({"label": "actionable", "value": 0.9 + rng.uniform(0.0, 0.1, n_real),
                         "duration": rng.uniform(200, 4000, n_real)})
    frame = pd.concat([noise, real], ignore_index=True)
    frame["at"] = rng.uniform(0, 1e6, len(frame))
    frame["alertname"], frame["service"], frame["threshold"] = "HighCPU", service, 0.8
    frame["source_rule"] = "cpu > 0.8"
    return frame


def test_tuned_thresholds_cut_noise_on_held_out_data_and_keep_recall() -> None:
    train, test = constructed(1), constructed(2)
    result = tune_thresholds(train, recall_floor=0.99)
    (rule,) = result.rules
    assert rule.recall >= 0.99 and rule.noise_after < rule.noise_before * 0.1
    held_out = evaluate_thresholds(result.to_thresholds(), test)
    assert held_out["recall"] >= 0.99
    assert held_out["noise_reduction"] > 0.9
    assert 0.86 <= rule.threshold <= 0.9  # between the noise and the real values


def test_for_duration_is_tuned_when_values_overlap() -> None:
    rng = np.random.default_rng(3)
    frame = constructed(3)
    frame["value"] = 0.85 + rng.uniform(0, 0.05, len(frame))  # values no longer separate
    (rule,) = tune_thresholds(frame, recall_floor=0.95).rules
    assert rule.for_seconds > 0 and rule.noise_after < rule.noise_before / 2
    assert rule.recall >= 0.95


def test_thin_rules_shrink_toward_their_group_and_stay_careful() -> None:
    thick = constructed(4, service="cart")
    thin = constructed(5, n_noise=12, n_real=3, service="ad")
    thin.loc[thin["label"] == "actionable", "value"] = [0.97, 0.98, 0.99]
    result = tune_thresholds(pd.concat([thick, thin]), recall_floor=0.99, min_samples=30)
    by_service = {r.match["service"]: r for r in result.rules}
    own = best_cut(thin["value"].to_numpy() / 0.8, None,
                   (thin["label"] == "actionable").to_numpy(), recall_floor=0.99)
    assert own is not None
    assert by_service["ad"].shrunk
    # Pulled down toward the group's threshold, never above the thin rule's own cut.
    assert by_service["ad"].threshold < own.threshold * 0.8
    assert by_service["ad"].recall == 1.0


def test_thin_rule_in_a_thin_group_is_left_alone() -> None:
    result = tune_thresholds(constructed(6, n_noise=10, n_real=5), min_samples=30)
    assert result.rules == []
    assert "fewer than 30" in result.skipped[0][1]


def test_rule_with_no_actionable_alert_anywhere_is_not_tuned_blind() -> None:
    frame = constructed(7, n_real=0)
    result = tune_thresholds(frame)
    assert result.rules == [] and "not tuned blind" in result.skipped[0][1]


def test_thresholds_file_round_trips_and_gates_the_pipeline() -> None:
    result = tune_thresholds(constructed(8))
    t = result.to_thresholds(generated_at=1_800_000_000.0, generated_by="test")
    assert parse_thresholds(dump_thresholds(t)) == t
    pipeline = Pipeline(thresholds=parse_thresholds(dump_thresholds(t)))
    noise = {"alertname": "HighCPU", "service": "cart", "value": 0.82, "at": 1000}
    real = {"alertname": "HighCPU", "service": "cart", "value": 0.95, "at": 1000,
            "instance": "b", "startsAt": 0}
    (out,) = pipeline.process(noise)
    assert out.kind == "suppressed" and out.reason in ("threshold", "held")
    kinds = [o.kind for o in pipeline.process(real)]
    assert kinds != ["suppressed"] or result.rules[0].for_seconds > 0


def test_classifier_keeps_the_recall_floor() -> None:
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(0, 1, 500), rng.normal(3, 1, 500)]).reshape(-1, 1)
    y = np.r_[np.zeros(500), np.ones(500)]
    clf = ThresholdClassifier(recall_floor=0.95).fit(X, y)
    assert (clf.predict(X[500:]) == 1).mean() >= 0.95
    assert (clf.predict(X[:500]) == 0).mean() > 0.5
    below = ThresholdClassifier(recall_floor=0.95, direction="below").fit(-X, y)
    assert below.threshold_ == pytest.approx(-clf.threshold_)


def test_prometheus_suggestion() -> None:
    text = suggest_rule_change("sum(rate(x[5m])) >= 0.05", match={"alertname": "E"},
                               threshold=0.07, for_seconds=600)
    assert text == "E: expr sum(rate(x[5m])) >= 0.07 (was >= 0.05); for: 10m"


def flapping_history(seed: int, services: dict[str, float], *, days: int = 20) -> pd.DataFrame:
    """Per service (its static threshold): noise that comes in bursts (alerts minutes apart)
    and real incidents (several alerts each), with the same values and durations: no
    threshold or `for` tells them apart, only that noise repeats."""
    rng = np.random.default_rng(seed)
    rows = []
    for service, static in services.items():
        for day in range(days):
            base = day * 86400.0
            for burst in rng.uniform(0, 30000, 3):  # noise bursts (mornings): 4 alerts
                rows.extend({"at": base + burst + k * 600, "label": "noise",
                             "value": static * 1.2, "duration": 300.0, "service": service,
                             "threshold": static, "incident_id": ""} for k in range(4))
            if day % 4 == 0:  # a real incident: 3 alerts within the hour
                at = base + rng.uniform(70000, 80000)  # (evenings)
                rows.extend({"at": at + k * 900, "label": "actionable",
                             "value": static * 1.2, "duration": 300.0, "service": service,
                             "threshold": static, "incident_id": f"{service}-{day}"}
                            for k in range(3))
    frame = pd.DataFrame(rows)
    frame["alertname"] = "QueueBacklog"
    frame["source_rule"] = "queue_messages_ready > 1000"
    return frame.sort_values("at").reset_index(drop=True)


def test_keep_firing_for_is_tuned_and_holds_on_held_out_judgements() -> None:
    services = {"orders": 1000.0, "billing": 50.0, "search": 7.5}
    result = tune_thresholds(flapping_history(1, services))
    assert result.rules and all(r.keep_seconds > 0 for r in result.rules)
    assert all(r.recall >= 0.99 for r in result.rules)
    held = evaluate_thresholds(result.to_thresholds(), flapping_history(2, services))
    assert held["recall"] >= 0.99  # every real incident still pages
    assert held["noise_reduction"] > 0.6


def test_rules_of_one_alertname_pool_across_their_static_thresholds() -> None:
    services = {"orders": 1000.0, "billing": 50.0, "search": 7.5}
    history = flapping_history(3, services)
    # a new service with three judgements of its own, none actionable
    thin = flapping_history(4, {"ledger": 20.0}, days=1)
    thin = thin[thin["label"] == "noise"].head(3)
    assert set(thin["label"]) == {"noise"}
    result = tune_thresholds(pd.concat([history, thin]))
    ledger = {r.match.get("service"): r for r in result.rules}["ledger"]
    assert ledger.shrunk and ledger.samples == 3  # borrowed the group's cut, not blind
    # and a service with no judgements at all gets the group's default: keep_firing_for
    (default,) = result.defaults
    assert default.match == {"alertname": "QueueBacklog"} and default.threshold is None
    assert default.keep_seconds > 0
    t = result.to_thresholds()
    assert t.keep_for({"alertname": "QueueBacklog", "service": "never-judged"}) > 0
    assert parse_thresholds(dump_thresholds(t)) == t


def test_a_rule_with_a_baseline_is_tuned_in_its_own_units() -> None:
    services = {"orders": 1000.0, "billing": 50.0}
    history = flapping_history(5, services)
    history["context"] = [{"baseline": t * 0.8, "scale": t * 0.05} for t in
                          history["threshold"]]
    result = tune_thresholds(history)
    assert result.rules and {r.unit for r in result.rules} == {"z"}
    rule = result.rules[0]
    assert "over its baseline" in rule.suggestion()
    assert "judgements" in rule.evidence() and "at risk" in rule.evidence()


def test_incident_recall_lets_the_cut_drop_an_incidents_weaker_alerts() -> None:
    v = np.array([1.0, 1.1, 1.2, 1.05, 2.0, 3.0])
    pos = np.array([False, False, False, True, True, False])
    incident = np.array(["", "", "", "i1", "i1", ""])
    per_alert = best_cut(v, None, pos, recall_floor=0.99)
    per_incident = best_cut(v, None, pos, recall_floor=0.99, incidents=recall_units(incident))
    assert per_alert is not None and per_incident is not None
    assert per_alert.noise_after == 3 and per_incident.noise_after == 1
    assert per_incident.recall == 1.0


def test_with_baselines_the_group_default_carries_one_z_cut_for_new_series() -> None:
    rng = np.random.default_rng(6)
    rows = []
    for service, (center, scale) in {"orders": (800.0, 50.0), "billing": (40.0, 2.0),
                                     "search": (6.0, 0.4)}.items():
        static = center + 3 * scale
        for day in range(20):
            base = day * 86400.0
            rows.extend({"at": base + at, "label": "noise", "service": service,
                         "value": center + scale * rng.uniform(3.0, 4.0), "duration": 300.0,
                         "threshold": static, "incident_id": "",
                         "context": {"baseline": center, "scale": scale}}
                        for at in rng.uniform(0, 80000, 4))
            if day % 4 == 0:
                rows.append({"at": base + 82000, "label": "actionable", "service": service,
                             "value": center + scale * rng.uniform(6.0, 9.0),
                             "duration": 300.0, "threshold": static,
                             "incident_id": f"{service}-{day}",
                             "context": {"baseline": center, "scale": scale}})
    history = pd.DataFrame(rows).assign(alertname="QueueBacklog")
    result = tune_thresholds(history)
    (default,) = result.defaults
    rule = default.to_threshold_rule()
    assert rule.threshold is None and rule.threshold_z is not None
    assert 4.0 <= rule.threshold_z <= 6.0  # between the noise (3-4) and the incidents (6-9)
    assert "in its own scale" in default.suggestion()


def test_held_out_judgements_are_scored_with_the_default_threshold_z() -> None:
    rule = ThresholdRule({"alertname": "QueueBacklog"}, None, threshold_z=5.0)
    history = pd.DataFrame([
        {"at": 0.0, "label": "noise", "alertname": "QueueBacklog", "service": "new",
         "value": 140.0, "threshold": 130.0, "context": {"baseline": 100.0, "scale": 10.0}},
        {"at": 60.0, "label": "actionable", "alertname": "QueueBacklog", "service": "new",
         "value": 190.0, "threshold": 130.0, "context": {"baseline": 100.0, "scale": 10.0}},
    ])
    held = evaluate_thresholds(Thresholds(rules=(rule,)), history)
    assert held["noise_pages_after"] == 0 and held["recall"] == 1.0
