from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from triage.core.pipeline import Pipeline
from triage.core.thresholds import dump_thresholds, parse_thresholds
from triage.models.tuning import (
    ThresholdClassifier,
    best_cut,
    evaluate_thresholds,
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
