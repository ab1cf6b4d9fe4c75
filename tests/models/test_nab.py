from __future__ import annotations

from pathlib import Path

import numpy as np

from triage.models.nab import (
    NabSeries,
    alert_times,
    evaluate_nab,
    fit_rules,
    load_nab,
    rules_to_thresholds,
    score,
    summarize_nab,
)


def test_for_waits_within_a_run_and_runs_are_separate_alerts() -> None:
    t = np.arange(10) * 300.0
    v = np.array([0, 9, 9, 9, 0, 9, 0, 9, 9, 0], dtype=float)
    assert alert_times(t, v, 5.0).tolist() == [300.0, 1500.0, 2100.0]
    assert alert_times(t, v, 5.0, for_seconds=600).tolist() == [900.0]
    assert score(np.array([300.0, 1500.0]), [(1000.0, 2000.0)]) == (1, 1)


def synthetic(seed: int, name: str) -> NabSeries:
    """Spiky noise all along; a sustained anomaly in each half, inside labelled windows."""
    rng = np.random.default_rng(seed)
    n = 4000
    t = np.arange(n) * 300.0
    v = rng.normal(0, 1, n)
    spikes = rng.choice(n, 60, replace=False)
    v[spikes] += rng.uniform(3.2, 4.5, 60)  # short spikes over mean + 3 sigma: noise
    for start in (1000, 3000):
        v[start:start + 24] += 8.0  # two hours well over: the anomaly
    windows = tuple((t[s] - 3600, t[s + 24] + 3600) for s in (1000, 3000))
    return NabSeries(name, t, v, windows)


def test_tuning_cuts_false_positives_and_keeps_recall_on_held_out_half() -> None:
    series = [synthetic(i, f"synthetic/s{i}.csv") for i in range(3)]
    table = evaluate_nab(series)
    totals = summarize_nab(table)
    assert totals["recall_after"] >= totals["recall_before"] == 1.0
    assert totals["fp_after"] <= 0.5 * totals["fp_before"]
    thresholds = rules_to_thresholds(fit_rules(series))
    assert len(thresholds.rules) == 3 and thresholds.rules[0].match["series"] == "synthetic/s0.csv"


def test_series_without_evidence_keeps_the_baseline() -> None:
    quiet = synthetic(9, "synthetic/quiet.csv")
    quiet = NabSeries(quiet.name, quiet.times, quiet.values, ())
    (rule,) = fit_rules([quiet])
    assert not rule.tuned and rule.z == 3.0


def test_real_nab_subset_fewer_false_positives_same_recall(nab_root: Path) -> None:
    series = load_nab(nab_root, categories=["realTraffic"])
    assert len(series) == 7 and all(len(s.windows) for s in series)
    totals = summarize_nab(evaluate_nab(series))
    assert totals["fp_after"] < totals["fp_before"]
    assert totals["recall_after"] >= totals["recall_before"]
