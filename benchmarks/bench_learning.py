"""Learning-stage benchmark (issues 6 and 13): threshold tuning on NAB, fold by fold, the
noise classifier on simulated feedback, held out by time and by service, and the cost of the
live noise scorer.

    python benchmarks/bench_learning.py [--nab ../shared/data/nab-dev] [--days 60]
                                        [--plot-dir benchmarks/results] [--json results.json]

1. NAB (real data), every fold: each category held out in turn (tuned on the others' first
   halves, scored on its second halves), then the time split (all first halves -> all second
   halves). Beside each other in one run: the static mean + 3 sigma rule (the baseline), the
   previous per-series tuner (time split only: it has no rule for a series it never saw),
   the pooled rule in each series' own scale (``triage.models.series``) and the same folds
   through the feedback path (``triage tune``'s defaults on judgements of the static rule's
   alerts). Every fold, the mean and the worst; a fold that loses a window is a miss.
2. Noise classifier on SIMULATED feedback (triage.simulate.feedback, seeded): the newest 15%
   (time split) and leave-one-service-out; reliability curves and Brier scores of both.
3. Threshold tuning on the same simulated feedback (first half / second half).
4. Live scorer cost: one uncached score, and a cached repeat.

``--nab`` may point at any folder laid out as NAB (``data/<category>/*.csv``,
``labels/combined_windows.json``): other categories are measured the same way.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
import sklearn
from rich.progress import Progress

from machine import describe
from triage.core.types import Alert
from triage.models.nab import (
    evaluate_feedback_folds,
    evaluate_folds,
    load_nab,
    outcome_tables,
    summarize_folds,
)
from triage.models.noise import leave_one_out, train_noise_model
from triage.models.registry import load_noise_scorer, promote, register_model
from triage.models.report import plot_folds, plot_reliability
from triage.models.series import grid
from triage.models.tuning import evaluate_thresholds, tune_thresholds
from triage.simulate.feedback import simulate_feedback

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_NAB = ROOT.parent / "shared" / "data" / "nab-dev"


def machine() -> str:
    return describe(f"scikit-learn {sklearn.__version__}")


def held_out_summary(table: pd.DataFrame) -> dict[str, object]:
    """The held-out folds of a ``summarize_folds`` table: mean and worst reduction (folds
    with false positives to remove), the pooled totals, and the folds that lost a window."""
    held = table[table["fold"] != "time split"]
    scored = held[held["fp_static"] > 0]
    split = table[table["fold"] == "time split"].iloc[0]
    return {
        "mean_fp_reduction": float(scored["fp_reduction"].mean()),
        "worst_fp_reduction": float(scored["fp_reduction"].min()),
        "worst_fold": str(scored.loc[scored["fp_reduction"].idxmin(), "fold"]),
        "fp_static": int(held["fp_static"].sum()), "fp_after": int(held["fp_pooled"].sum()),
        "detected_static": int(held["detected_static"].sum()),
        "detected_after": int(held["detected_pooled"].sum()),
        "misses": [str(f) for f in held.loc[held["miss"], "fold"]],
        "time_split_fp_reduction": float(split["fp_reduction"]),
        "time_split_miss": bool(split["miss"]),
    }


def miss_text(summary: dict[str, object]) -> str:
    misses = list(summary["misses"])  # type: ignore[call-overload]
    if summary["time_split_miss"]:
        misses.append("time split")
    return "  MISS: " + ", ".join(misses) if misses else ""


def show(name: str, table: pd.DataFrame, *, previous: bool = False) -> dict[str, object]:
    cols = ["fold", "windows", "fp_static", "fp_pooled", "detected_static", "detected_pooled",
            "fp_reduction", "miss"]
    if previous:
        cols[4:4] = ["fp_previous"]
    view = table[cols].rename(columns={"fp_pooled": "fp_tuned", "detected_pooled":
                                       "detected_tuned", "detected_static": "det_static"})
    view["fp_reduction"] = view["fp_reduction"].map(lambda r: "-" if r != r else f"{r:.0%}")
    view["miss"] = view["miss"].map({True: "MISS", False: ""})
    print(f"\n   {name}")
    print("   " + view.to_string(index=False).replace("\n", "\n   "))
    summary = held_out_summary(table)
    print(f"   held-out folds: mean {summary['mean_fp_reduction']:.1%} fewer false positives, "
          f"worst {summary['worst_fp_reduction']:.1%} ({summary['worst_fold']}); pooled "
          f"{summary['fp_static']} -> {summary['fp_after']}, windows "
          f"{summary['detected_static']} -> {summary['detected_after']}; misses: "
          f"{', '.join(summary['misses']) or 'none'}")  # type: ignore[arg-type]
    print(f"   time split: {summary['time_split_fp_reduction']:.1%} fewer"
          f"{' (MISS: a window lost)' if summary['time_split_miss'] else ''}")
    return summary


def nab_folds(root: Path, plot_dir: Path) -> dict[str, object]:
    series = load_nab(root)
    print(f"\n1. NAB: {len(series)} series in "
          f"{len({s.category for s in series})} categories ({root})")
    with Progress(transient=True) as progress:
        task = progress.add_task("   every candidate rule on every series", total=len(series))
        tables = outcome_tables(series, progress=lambda done, _: progress.update(
            task, completed=done))
    out: dict[str, object] = {}
    pooled = summarize_folds(evaluate_folds(tables, shrinkage=5.0))
    out["pooled"] = {"summary": show("pooled rule in each series' own scale "
                                     "(triage.models.series, shrinkage 5)", pooled,
                                     previous=True),
                     "folds": pooled.to_dict("records")}
    feedback = {}
    for with_baseline in (False, True):
        name = "feedback path, " + ("z units (baseline in context)" if with_baseline
                                    else "ratio units (value / static threshold)")
        table = summarize_folds(evaluate_feedback_folds(series, with_baseline=with_baseline))
        feedback[name] = table
        out[name] = {"summary": show(name + ": triage tune's defaults", table),
                     "folds": table.to_dict("records")}
    print("\n   variants of the pooled rule (held-out mean / worst, time split):")
    variants = {
        "no partial pooling (shrinkage inf)": dict(shrinkage=math.inf),
        "more partial pooling (shrinkage 1)": dict(shrinkage=1.0),
    }
    for label, kwargs in variants.items():
        s = held_out_summary(summarize_folds(evaluate_folds(tables, **kwargs)))
        print(f"     {label:44} {s['mean_fp_reduction']:.1%} / {s['worst_fp_reduction']:.1%}, "
              f"{s['time_split_fp_reduction']:.1%}"
              f"{miss_text(s)}")
    for label, keep in (("without keep_firing_for", (0.0,)),
                        ("keep_firing_for up to 24 h", (0.0, 1800.0, 3600.0, 10800.0,
                                                        21600.0, 43200.0, 86400.0))):
        sub = outcome_tables(series, grid(keeps=keep))
        s = held_out_summary(summarize_folds(evaluate_folds(sub, shrinkage=5.0)))
        print(f"     {label:44} {s['mean_fp_reduction']:.1%} / {s['worst_fp_reduction']:.1%}, "
              f"{s['time_split_fp_reduction']:.1%}"
              f"{miss_text(s)}")
    path = plot_folds({"pooled rule (series' own scale)": pooled,
                       "triage tune (feedback, ratio units)": next(iter(feedback.values()))},
                      plot_dir / "nab_folds.png")
    print("   plot:", path)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nab", type=Path, default=DEFAULT_NAB)
    parser.add_argument("--days", type=float, default=60.0, help="simulated feedback days")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--plot-dir", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    print("command:", " ".join([Path(sys.executable).name, *sys.argv]))
    print("machine:", machine())
    results: dict[str, object] = {"machine": machine()}

    # 1. NAB
    if args.nab.is_dir():
        results["nab"] = nab_folds(args.nab, args.plot_dir)
    else:
        print(f"\n1. NAB: skipped, {args.nab} not found")

    # 2. Noise classifier
    history = simulate_feedback(days=args.days, seed=args.seed)
    started = time.perf_counter()
    trained = train_noise_model(history, seed=args.seed)
    seconds = time.perf_counter() - started
    m = trained.metrics
    results["classifier"] = {**m, "train_seconds": seconds, "judgements": len(history)}
    print(f"\n2. Noise classifier, SIMULATED feedback: {len(history):,} judgements over "
          f"{args.days:g} days, trained in {seconds:.1f}s; test = newest {int(m['test_size'])}")
    print(f"   PR-AUC (noise positive) {m['pr_auc']:.3f}, Brier {m['brier']:.3f}, "
          f"noise share {m['noise_share']:.2f}")
    print(f"   at the 99% recall floor (threshold {m['at_floor_threshold']:.3f}, chosen on the "
          f"previous 15%): actionable recall {m['at_floor_actionable_recall']:.3f}, noise pages "
          f"{int(m['at_floor_noise_pages_before'])} -> {int(m['at_floor_noise_pages_after'])} "
          f"({m['at_floor_noise_page_reduction']:.1%} fewer)")
    print(f"   at the default noise.threshold 0.95: actionable recall "
          f"{m['at_0.95_actionable_recall']:.3f}, "
          f"{m['at_0.95_noise_page_reduction']:.1%} fewer noise pages")
    with Progress(transient=True) as progress:
        task = progress.add_task("   leave one service out", total=None)
        folds, pooled = leave_one_out(history, seed=args.seed, progress=lambda msg: (
            progress.update(task, description="   " + msg)))
    worst = folds.loc[folds["actionable_recall"].idxmin()]
    print("   leave one service out (trained on the other services, threshold chosen on their "
          "newest 15%):")
    print("   " + folds[["held_out", "judgements", "noise_share", "pr_auc", "brier",
                       "actionable_recall", "noise_page_reduction"]].to_string(
        index=False, float_format=lambda x: f"{x:.3f}").replace("\n", "\n   "))
    print(f"   mean: PR-AUC {folds['pr_auc'].mean():.3f}, Brier {folds['brier'].mean():.3f}, "
          f"actionable recall {folds['actionable_recall'].mean():.3f}, noise pages "
          f"{folds['noise_page_reduction'].mean():.1%} fewer; worst recall "
          f"{worst['actionable_recall']:.3f} ({worst['held_out']}, {worst['judgements']} "
          "judgements)")
    misses = folds[folds["actionable_recall"] < 0.99]
    print(f"   below the 99% recall floor: {len(misses)} of {len(folds)} services "
          f"({', '.join(misses['held_out']) or 'none'})")
    results["classifier_leave_one_service_out"] = folds.to_dict("records")
    assert trained.test_scores is not None
    path = plot_reliability({"time split (newest 15%)": trained.test_scores,
                             "leave one service out (pooled)": (pooled["proba"],
                                                                pooled["is_noise"])},
                            args.plot_dir / "noise_reliability.png")
    print("   reliability plot:", path)

    # 3. Threshold tuning on the same simulated feedback
    half = history["at"].median()
    tuned = tune_thresholds(history[history["at"] < half])
    held = evaluate_thresholds(tuned.to_thresholds(), history[history["at"] >= half])
    results["tuning_simulated"] = held
    print(f"\n3. Threshold tuning, SIMULATED feedback (first half -> second half): "
          f"{len(tuned.rules)} rules; noise pages {held['noise_pages_before']} -> "
          f"{held['noise_pages_after']} ({held['noise_reduction']:.1%} fewer), "
          f"actionable recall {held['recall']:.3f}")

    # 4. Live scorer cost
    with tempfile.TemporaryDirectory() as tmp:
        promote(Path(tmp), register_model(Path(tmp), trained))
        scorer = load_noise_scorer(Path(tmp))
        now = float(history["at"].max())
        cold, warm = [], []
        for i in range(200):
            alert = Alert({"alertname": "HighCPU", "service": "cart", "tier": "1"}, {},
                          "firing", now, None, now, "generic", value=0.85, fingerprint=f"f{i}")
            t0 = time.perf_counter()
            scorer(alert, None, now)
            t1 = time.perf_counter()
            scorer(alert, None, now)
            t2 = time.perf_counter()
            cold.append(t1 - t0)
            warm.append(t2 - t1)
        # what the pipeline does: one model call per payload (here 10 new alerts)
        batched = []
        for b in range(50):
            alerts = [Alert({"alertname": "HighCPU", "service": "cart", "tier": "1",
                             "instance": str(i)}, {}, "firing", now, None, now, "generic",
                            value=0.85, fingerprint=f"b{b}-{i}") for i in range(10)]
            t0 = time.perf_counter()
            scorer.score_batch(alerts, [None] * 10, now)  # type: ignore[attr-defined]
            batched.append((time.perf_counter() - t0) / 10)
    results["scorer_us"] = {"uncached": statistics.median(cold) * 1e6,
                            "uncached_batch_of_10": statistics.median(batched) * 1e6,
                            "cached": statistics.median(warm) * 1e6}
    print(f"\n4. Live scorer: {statistics.median(cold) * 1e3:.2f} ms per new occurrence "
          f"scored alone, {statistics.median(batched) * 1e3:.2f} ms per new occurrence in a "
          f"payload of 10 (one model call), {statistics.median(warm) * 1e6:.1f} us per "
          "cached repeat")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
