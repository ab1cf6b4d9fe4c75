"""One rule for many series, in each series' own scale, pooled (triage.models.series), and
the NAB folds it is measured on (triage.models.nab)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from triage.models.nab import (
    NabSeries,
    evaluate_feedback_folds,
    evaluate_folds,
    feedback_records,
    folds,
    load_nab,
    outcome_tables,
    summarize_folds,
)
from triage.models.series import (
    STATIC,
    Labelled,
    RuleSpec,
    Standardiser,
    choose,
    fire,
    grid,
    outcomes,
    shrink_series,
)

STEP = 300.0


def flapping(seed: int, name: str, level: float = 0.0, spread: float = 1.0) -> NabSeries:
    """Noise that crosses mean + 3 sigma in bursts (one burst: many crossings), and one
    sustained anomaly per half inside a labelled window."""
    rng = np.random.default_rng(seed)
    n = 4000
    t = 1_700_000_000 + np.arange(n) * STEP
    v = rng.normal(0, 1, n)
    for start in rng.choice(np.arange(50, n - 50), 12, replace=False):
        burst = np.arange(start, start + 20, 3)  # a crossing every 15 min for an hour
        v[burst] += rng.uniform(3.5, 4.5, len(burst))
    windows = []
    for start in (1000, 3000):
        v[start:start + 30] += 12.0
        windows.append((float(t[start] - 3600), float(t[start + 30] + 3600)))
    return NabSeries(name, t, level + spread * v, tuple(windows))


def test_keep_firing_for_merges_a_burst_into_one_page() -> None:
    t = np.arange(12) * 60.0
    over = np.array([1, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1, 0], dtype=bool)
    assert len(fire(t, over)) == 4
    # kept firing 2 min after each clear: the burst is one page; the later one its own
    assert fire(t, over, keep_seconds=120).tolist() == [0.0, 600.0]


def test_the_scale_is_the_series_own_whatever_its_level() -> None:
    quiet = flapping(1, "a/quiet.csv")
    busy = flapping(1, "a/busy.csv", level=5000.0, spread=300.0)
    spec = RuleSpec("mad", 4.0, 0.0, 3600.0)
    q = outcomes(Labelled(quiet.name, quiet.times, quiet.values, quiet.windows),
                 Labelled(quiet.name, quiet.times, quiet.values, quiet.windows), [spec])
    b = outcomes(Labelled(busy.name, busy.times, busy.values, busy.windows),
                 Labelled(busy.name, busy.times, busy.values, busy.windows), [spec])
    assert q == b  # one tuned value serves both
    std = Standardiser.fit(busy.times, busy.values, "mad")
    assert 4000 < std.threshold(4.0) < 7000


def test_a_seasonal_baseline_finds_a_spike_at_the_quiet_hour() -> None:
    t = 1_700_006_400 + np.arange(14 * 288) * STEP  # 14 days, 5 min (starts at midnight)
    daily = 10 * np.sin(2 * np.pi * (t % 86400) / 86400)
    v = daily + np.random.default_rng(0).normal(0, 0.5, len(t))
    spike = 13 * 288 + 216  # day 13, 18:00 (the daily low): +6 is nothing at noon
    v[spike] += 6
    flat = Standardiser.fit(t[:12 * 288], v[:12 * 288], "mad")
    seasonal = Standardiser.fit(t[:12 * 288], v[:12 * 288], "seasonal")
    assert seasonal.profile and not flat.profile
    assert seasonal.z(t, v)[spike] > 5 > flat.z(t, v)[spike]
    short = Standardiser.fit(t[:288], v[:288], "seasonal")  # one day: not enough history
    assert not short.profile


def test_choice_keeps_every_series_windows_not_just_the_pooled_count() -> None:
    loose, tight = RuleSpec("sigma", 3.0, 0.0, 3600.0), RuleSpec("sigma", 6.0, 0.0, 0.0)
    # `tight` removes the most noise in total, but loses series b's only window
    a = {STATIC: (10, 1), loose: (4, 1), tight: (0, 2)}
    b = {STATIC: (10, 1), loose: (5, 1), tight: (0, 0)}
    choice = choose([a, b])
    assert choice.spec == loose and choice.fp_before == 20 and choice.fp_after == 9
    assert choose([]).spec == STATIC


def test_partial_pooling_moves_a_series_only_as_far_as_its_own_windows_say() -> None:
    pooled = RuleSpec("sigma", 3.5, 0.0, 3600.0)
    own = {pooled: (9, 2), RuleSpec("sigma", 5.0, 0.0, 3600.0): (2, 2),
           RuleSpec("sigma", 7.0, 0.0, 3600.0): (0, 1)}
    assert shrink_series(pooled, own, windows=0) == pooled  # nothing of its own: borrowed
    moved = shrink_series(pooled, own, shrinkage=5.0, windows=5)
    assert moved.k == 3.5 + 0.5 * (5.0 - 3.5)
    assert shrink_series(pooled, own, shrinkage=math.inf, windows=5) == pooled


def test_held_out_folds_keep_their_windows_and_cut_false_positives() -> None:
    series = [flapping(i, f"cat{i % 3}/s{i}.csv") for i in range(6)]
    tables = outcome_tables(series, grid(scales=("sigma", "mad"), ks=(3.0, 4.0, 6.0),
                                         fors=(0.0,), keeps=(0.0, 3600.0, 6 * 3600.0)))
    summary = summarize_folds(evaluate_folds(tables, shrinkage=5.0))
    assert list(summary["fold"]) == [f for f, _, _ in folds(series)]
    assert len(summary) == 4 and not summary["miss"].any()
    held = summary[summary["fold"] != "time split"]
    assert (held["fp_pooled"] < 0.5 * held["fp_static"]).all()


def test_the_feedback_path_learns_keep_firing_for_from_judgements() -> None:
    series = [flapping(i, f"cat{i % 3}/s{i}.csv") for i in range(6)]
    first, _ = series[0].split()
    static = float(first.values.mean() + 3 * first.values.std())
    records = feedback_records(series[0], first, static=static)
    assert {r["label"] for r in records} == {"actionable", "noise"}
    assert all(r["incident_id"] for r in records if r["label"] == "actionable")
    summary = summarize_folds(evaluate_feedback_folds(series, with_baseline=False))
    assert not summary["miss"].any()
    split = summary[summary["fold"] == "time split"].iloc[0]
    assert split["fp_pooled"] < 0.5 * split["fp_static"]


def test_real_nab_every_fold_keeps_its_windows(nab_root: Path) -> None:
    series = load_nab(nab_root)
    summary = summarize_folds(evaluate_folds(outcome_tables(series), shrinkage=5.0))
    assert not summary["miss"].any(), summary[["fold", "detected_static", "detected_pooled"]]
    held = summary[(summary["fold"] != "time split") & (summary["fp_static"] > 0)]
    # the bar: half the false positives, on the mean of the held-out folds and on
    # the time split (BENCHMARKS.md has every fold)
    assert held["fp_reduction"].mean() >= 0.5
    assert summary[summary["fold"] == "time split"]["fp_reduction"].iloc[0] >= 0.5
