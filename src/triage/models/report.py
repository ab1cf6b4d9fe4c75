"""Reports as files: the noise model's PR curve, calibration plot and metrics (PNG + JSON),
and the NAB before/after plot. matplotlib with the Agg backend (no display needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from triage.models.noise import TrainedModel


def write_model_report(trained: TrainedModel, out_dir: Path) -> dict[str, Path]:
    """``report.json``, ``pr_curve.png`` and ``calibration.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    m = trained.metrics
    c = trained.curves
    paths = {"json": out_dir / "report.json", "pr_curve": out_dir / "pr_curve.png",
             "calibration": out_dir / "calibration.png"}
    report: dict[str, Any] = {"metrics": m, "training_window": list(trained.training_window),
                              "params": trained.params, "curves": c}
    paths["json"].write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(c["recall"], c["precision"], drawstyle="steps-post")
    ax.axhline(m["noise_share"], linestyle=":", color="grey", label="no skill")
    ax.set(xlabel="recall (noise)", ylabel="precision (noise)", xlim=(0, 1.01), ylim=(0, 1.01),
           title=f"noise classifier PR curve, AP {m['pr_auc']:.3f}")
    ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(paths["pr_curve"])
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    ax.plot(c["calibration_pred"], c["calibration_true"], marker="o", label="model")
    ax.set(xlabel="predicted noise probability", ylabel="observed noise share",
           title=f"calibration, Brier {m['brier']:.3f}")
    ax.legend(loc="upper left")
    fig.tight_layout()
    fig.savefig(paths["calibration"])
    plt.close(fig)
    return paths


def plot_nab(table: pd.DataFrame, path: Path) -> Path:
    """False positives per day and windows detected, before and after, per NAB series."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = table[table["tuned"]].copy()
    data["label"] = data["series"].str.replace(".csv", "", regex=False).str.split("/").str[-1]
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), dpi=80, sharex=True)
    x = range(len(data))
    days = data["days"].where(data["days"] > 0, 1.0)
    ax1.bar([i - 0.2 for i in x], data["fp_before"] / days, width=0.4, label="mean + 3 sigma")
    ax1.bar([i + 0.2 for i in x], data["fp_after"] / days, width=0.4, label="tuned")
    ax1.set(ylabel="false positives / day", title="NAB, second half of each series")
    ax1.legend()
    ax2.bar([i - 0.2 for i in x], data["detected_before"], width=0.4, label="mean + 3 sigma")
    ax2.bar([i + 0.2 for i in x], data["detected_after"], width=0.4, label="tuned")
    ax2.plot(list(x), data["windows"], "k_", markersize=12, label="windows")
    ax2.set(ylabel="windows detected")
    ax2.set_xticks(list(x), data["label"], rotation=75, fontsize=7)
    ax2.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_folds(folds: dict[str, pd.DataFrame], path: Path) -> Path:
    """Per fold (``summarize_folds`` tables, one per method): false positives and windows
    detected, the static rule beside each method."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = list(folds)
    first = folds[names[0]]
    labels = [f.replace("held out: ", "") for f in first["fold"]]
    x = np.arange(len(labels))
    width = 0.8 / (len(names) + 1)
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(9, 6), dpi=80, sharex=True)
    ax1.bar(x - 0.4 + width / 2, first["fp_static"], width, label="static mean + 3 sigma",
            color="grey")
    ax2.bar(x - 0.4 + width / 2, first["detected_static"], width, color="grey")
    for i, name in enumerate(names, 1):
        table = folds[name]
        ax1.bar(x - 0.4 + width * (i + 0.5), table["fp_pooled"], width, label=name)
        ax2.bar(x - 0.4 + width * (i + 0.5), table["detected_pooled"], width)
    ax2.plot(x, first["windows"], "k_", markersize=14, label="labelled windows")
    ax1.set(ylabel="false positives", yscale="symlog",
            title="NAB: each category held out in turn, then the time split (second halves)")
    ax1.legend(fontsize=8)
    ax2.set(ylabel="windows detected")
    ax2.set_xticks(x, labels, rotation=20, fontsize=8)
    ax2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def plot_reliability(sets: dict[str, tuple[np.ndarray, np.ndarray]], path: Path,
                     bins: int = 10) -> Path:
    """Reliability curves (predicted noise probability against the observed noise share,
    uniform bins, empty ones left out) and Brier scores of held-out predictions, one curve
    per set."""
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import brier_score_loss

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(5.5, 4.5), dpi=90)
    ax.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfectly calibrated")
    for name, (proba, is_noise) in sets.items():
        true, pred = calibration_curve(is_noise, proba, n_bins=bins, strategy="uniform")
        brier = brier_score_loss(is_noise, proba)
        ax.plot(pred, true, marker="o", label=f"{name} (Brier {brier:.3f}, n={len(proba):,})")
    ax.set(xlabel="predicted noise probability", ylabel="observed noise share",
           title="noise classifier on held-out feedback", xlim=(0, 1.01), ylim=(0, 1.01))
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
