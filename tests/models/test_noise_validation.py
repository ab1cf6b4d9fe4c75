"""The noise classifier measured on what it never saw: a service left out, and a reliability
plot of held-out predictions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from triage.models.noise import TrainedModel, leave_one_out
from triage.models.report import plot_reliability
from triage.simulate.feedback import simulate_feedback


@pytest.fixture(scope="module")
def short() -> pd.DataFrame:
    """Ten days: twelve models per leave-one-out run, each fitted on ~1,000 judgements."""
    return simulate_feedback(days=10, seed=11)


def test_each_service_is_scored_by_a_model_that_never_saw_it(short: pd.DataFrame) -> None:
    history = short
    services = sorted(history["service"].unique())
    folds, pooled = leave_one_out(history)
    assert sorted(folds["held_out"]) == services
    assert folds["judgements"].sum() == len(pooled["proba"]) == len(history)
    assert ((pooled["proba"] >= 0) & (pooled["proba"] <= 1)).all()
    # a model that has learned something general: better than the base rate everywhere
    assert (folds["pr_auc"].dropna() > folds.loc[folds["pr_auc"].notna(), "noise_share"]).all()
    assert folds["actionable_recall"].between(0, 1).all()


def test_a_left_out_service_does_not_leak_into_training(short: pd.DataFrame) -> None:
    history = short
    # every judgement of one service flipped: a model that had seen them would score them
    # as it was told; one that had not scores them as the other services taught it
    flipped = history.copy()
    one = flipped["service"] == "batch-etl"
    flipped.loc[one, "label"] = np.where(flipped.loc[one, "label"] == "noise", "actionable",
                                         "noise")
    folds, _ = leave_one_out(flipped)
    row = folds.set_index("held_out").loc["batch-etl"]
    assert row["pr_auc"] < row["noise_share"] + 0.05  # no better than chance on the flip


def test_reliability_plot_of_held_out_sets(trained: TrainedModel, tmp_path: Path) -> None:
    assert trained.test_scores is not None
    proba, truth = trained.test_scores
    assert len(proba) == len(truth) == trained.metrics["test_size"]
    path = plot_reliability({"time split": trained.test_scores}, tmp_path / "r.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
