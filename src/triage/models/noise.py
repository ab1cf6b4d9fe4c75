"""The noise classifier behind stage 1's noise gate: features, training and evaluation.

The model is one scikit-learn ``Pipeline``: a ``ColumnTransformer`` (one-hot rule name,
service and tier; the rule's historical false-positive rate, learned by a cross-fitted
``TargetEncoder`` on ``alertname{service}``; numbers passed through) and a
``CalibratedClassifierCV`` around a ``HistGradientBoostingClassifier``, so its output is a
probability that the alert is noise.

Features (``FEATURES``), all known when the gate sees a new alert:
``alertname``, ``service``, ``tier``, ``rule`` (its FP rate), ``hour_sin``/``hour_cos`` and
``weekday`` (UTC), ``flap_count`` (flips before this firing), ``value_ratio`` (value over the
rule's static threshold), ``repeat_count`` (occurrences so far, 1 = first) and
``recent_changes`` (changes to the service in the two hours before).

How long the alert fires in total is *not* a feature, though the history has it: the gate
scores an alert when it starts firing, before its duration is known, so a model trained on
it would learn from the future. Duration is what the threshold tuner's ``for`` uses instead.

Training (``train_noise_model``) splits the history by time: the oldest ``train_share`` trains,
the next half of the rest chooses the suppression threshold that keeps ``recall_floor`` of the
actionable alerts, and the newest part measures (PR-AUC with noise as the positive class,
calibration, and how many noise pages the chosen threshold removes). No row of the test part
is seen before it is measured.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import numpy as np
import pandas as pd
import sklearn
from sklearn.calibration import CalibratedClassifierCV, calibration_curve
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import average_precision_score, brier_score_loss, precision_recall_curve
from sklearn.model_selection import KFold
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, TargetEncoder

from triage.core.dedup import AlertState
from triage.core.types import Alert
from triage.models.feedback import latest_labels, normalize_history

CATEGORICAL: Final = ("alertname", "service", "tier")
NUMERIC: Final = ("hour_sin", "hour_cos", "weekday", "flap_count", "value_ratio",
                  "repeat_count", "recent_changes")
FEATURES: Final = (*CATEGORICAL, "rule", *NUMERIC)


def rule_key(alertname: str, service: str) -> str:
    """The per-rule key the FP-rate encoder learns: ``alertname{service}``."""
    return f"{alertname}{{{service}}}"


def history_features(history: pd.DataFrame) -> pd.DataFrame:
    """The model's input (``FEATURES``) for each row of a feedback history."""
    at = pd.to_datetime(history["at"], unit="s", utc=True)
    hour = at.dt.hour + at.dt.minute / 60.0
    threshold = history["threshold"].where(history["threshold"] != 0)
    return pd.DataFrame({
        "alertname": history["alertname"].astype(str),
        "service": history["service"].astype(str),
        "tier": history["tier"].astype(str),
        "rule": [rule_key(a, s) for a, s in zip(history["alertname"], history["service"],
                                                strict=True)],
        "hour_sin": np.sin(2 * np.pi * hour / 24.0),
        "hour_cos": np.cos(2 * np.pi * hour / 24.0),
        "weekday": at.dt.day_of_week.astype(float),
        "flap_count": history["flap_count"].astype(float),
        "value_ratio": (history["value"] / threshold).astype(float),
        "repeat_count": history["repeat_count"].astype(float),
        "recent_changes": history["recent_changes"].astype(float),
    }, index=history.index)[list(FEATURES)]


def alert_features(alert: Alert, state: AlertState | None, now: float, *,
                   thresholds: Mapping[str, float],
                   recent_changes: Callable[[str, float], int] | None = None,
                   ) -> dict[str, Any]:
    """The same features for one live alert, as the noise gate sees it at ``now``.

    ``thresholds`` maps ``rule_key`` (or the bare alertname) to the rule's static threshold,
    as recorded from the training history; ``recent_changes(service, now)`` counts changes.
    """
    labels = alert.labels
    alertname, service = labels.get("alertname", ""), labels.get("service", "")
    hour = (now % 86400.0) / 3600.0
    weekday = (math.floor(now / 86400.0) + 3) % 7  # 1970-01-01 was a Thursday (3)
    static = thresholds.get(rule_key(alertname, service), thresholds.get(alertname))
    value = alert.value
    ratio = value / static if value is not None and static else math.nan
    flaps = len(state.changes or ()) if state is not None else 0
    repeats = state.occurrence + 1 if state is not None and state.status != "firing" else (
        state.occurrence if state is not None else 1)
    changes = recent_changes(service, now) if recent_changes is not None else math.nan
    return {
        "alertname": alertname, "service": service, "tier": labels.get("tier", ""),
        "rule": rule_key(alertname, service),
        "hour_sin": math.sin(2 * math.pi * hour / 24.0),
        "hour_cos": math.cos(2 * math.pi * hour / 24.0),
        "weekday": float(weekday), "flap_count": float(flaps), "value_ratio": float(ratio),
        "repeat_count": float(max(repeats, 1)), "recent_changes": float(changes),
    }


def _target_encoder(seed: int) -> TargetEncoder:
    # Its cross-fitting shuffles: seeded, or training is not reproducible. scikit-learn 1.9
    # moved the seed from random_state to a CV splitter.
    if tuple(int(p) for p in sklearn.__version__.split(".")[:2]) >= (1, 9):
        return TargetEncoder(target_type="binary", cv=KFold(5, shuffle=True, random_state=seed))
    return TargetEncoder(target_type="binary", random_state=seed)


def build_model(*, seed: int = 0) -> Pipeline:
    """The untrained pipeline: ColumnTransformer + calibrated gradient boosting."""
    features = ColumnTransformer([
        ("onehot", OneHotEncoder(handle_unknown="ignore", min_frequency=5,
                                 sparse_output=False), list(CATEGORICAL)),
        ("rule_fp_rate", _target_encoder(seed), ["rule"]),
        ("numeric", "passthrough", list(NUMERIC)),
    ])
    booster = HistGradientBoostingClassifier(max_iter=150, learning_rate=0.08,
                                             max_leaf_nodes=15, l2_regularization=1.0,
                                             random_state=seed)
    return Pipeline([
        ("features", features),
        ("classifier", CalibratedClassifierCV(booster, method="isotonic", cv=3)),
    ])


@dataclass(frozen=True, slots=True)
class TrainedModel:
    """A fitted model, what it was trained on, and how it did on held-out feedback."""

    model: Pipeline
    metrics: dict[str, float]
    training_window: tuple[float, float]
    thresholds: dict[str, float]
    curves: dict[str, list[float]] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    # The newest part's noise probabilities and truth (what ``metrics`` measured): for a
    # reliability curve beside other held-out sets. Not registered with the model.
    test_scores: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)


def operating_point(noise_proba: np.ndarray, is_noise: np.ndarray, *,
                    recall_floor: float) -> float:
    """The lowest suppression threshold that still lets ``recall_floor`` of actionable through.

    An alert is suppressed when its noise probability is ``>=`` the threshold.

    >>> operating_point(np.array([0.1, 0.2, 0.9, 0.95]), np.array([0, 0, 1, 1]),
    ...                 recall_floor=0.99)
    0.55
    """
    actionable = np.sort(noise_proba[~is_noise.astype(bool)])
    if len(actionable) == 0:
        return 1.0
    keep = math.ceil(recall_floor * len(actionable) - 1e-9)
    if keep >= len(actionable):
        top = float(actionable[-1])
        above = noise_proba[noise_proba > top]
        return (top + float(above.min())) / 2 if len(above) else min(1.0, top + 1e-6)
    # The threshold sits above the keep-th lowest actionable score.
    lower, upper = float(actionable[keep - 1]), float(actionable[keep])
    return (lower + upper) / 2 if upper > lower else upper + 1e-6


def evaluate_scores(noise_proba: np.ndarray, is_noise: np.ndarray,
                    threshold: float) -> dict[str, float]:
    """Recall of actionable alerts and the share of noise pages removed at ``threshold``."""
    is_noise = is_noise.astype(bool)
    suppressed = noise_proba >= threshold
    n_noise, n_act = int(is_noise.sum()), int((~is_noise).sum())
    return {
        "threshold": float(threshold),
        "actionable_recall": float((~suppressed & ~is_noise).sum() / n_act) if n_act else 1.0,
        "noise_pages_before": n_noise,
        "noise_pages_after": int((~suppressed & is_noise).sum()),
        "noise_page_reduction": float((suppressed & is_noise).sum() / n_noise) if n_noise
        else 0.0,
    }


def train_noise_model(history: pd.DataFrame, *, recall_floor: float = 0.99, seed: int = 0,
                      train_share: float = 0.7,
                      progress: Callable[[str], None] | None = None) -> TrainedModel:
    """Train and evaluate on a feedback history split by time (see the module doc)."""
    say = progress or (lambda _msg: None)
    data = latest_labels(normalize_history(history))
    data = data.sort_values("at", kind="stable").reset_index(drop=True)
    if data["label"].nunique() < 2:
        raise ValueError("the history needs both actionable and noise judgements")
    n = len(data)
    cut_train, cut_val = int(n * train_share), int(n * (train_share + (1 - train_share) / 2))
    train, val, test = data.iloc[:cut_train], data.iloc[cut_train:cut_val], data.iloc[cut_val:]
    if min(len(train), len(val), len(test)) < 20:
        raise ValueError(f"the history is too small to train and evaluate ({n} judgements)")
    say(f"features for {n:,} judgements ({len(train):,} train / {len(val):,} choose / "
        f"{len(test):,} test)")
    y_train = (train["label"] == "noise").to_numpy().astype(int)
    model = build_model(seed=seed)
    say("fitting ColumnTransformer + calibrated gradient boosting")
    model.fit(history_features(train), y_train)
    say("choosing the suppression threshold at the recall floor")
    p_val = model.predict_proba(history_features(val))[:, 1]
    y_val = (val["label"] == "noise").to_numpy()
    threshold = operating_point(p_val, y_val, recall_floor=recall_floor)
    say("measuring on the newest feedback")
    p_test = model.predict_proba(history_features(test))[:, 1]
    y_test = (test["label"] == "noise").to_numpy()
    at_floor = evaluate_scores(p_test, y_test, threshold)
    conservative = evaluate_scores(p_test, y_test, 0.95)
    precision, recall, _ = precision_recall_curve(y_test, p_test)
    prob_true, prob_pred = calibration_curve(y_test, p_test, n_bins=10, strategy="quantile")
    metrics: dict[str, float] = {
        "pr_auc": float(average_precision_score(y_test, p_test)),
        "brier": float(brier_score_loss(y_test, p_test)),
        "noise_share": float(y_test.mean()),
        "recall_floor": recall_floor,
        "test_size": len(test),
        **{f"at_floor_{k}": v for k, v in at_floor.items()},
        **{f"at_0.95_{k}": v for k, v in conservative.items()},
    }
    # The static threshold each rule fired at: the live scorer's value_ratio divides by it.
    statics = data[np.isfinite(data["threshold"])]
    thresholds = {rule_key(a, s): float(t) for (a, s), t in
                  statics.groupby(["alertname", "service"])["threshold"].median().items()}
    thresholds.update({str(a): float(t) for a, t in
                       statics.groupby("alertname")["threshold"].median().items()})
    return TrainedModel(
        model=model, metrics=metrics,
        training_window=(float(train["at"].min()), float(train["at"].max())),
        thresholds=thresholds,
        curves={"precision": precision.tolist(), "recall": recall.tolist(),
                "calibration_true": prob_true.tolist(),
                "calibration_pred": prob_pred.tolist()},
        params={"recall_floor": recall_floor, "seed": seed, "train_share": train_share,
                "judgements": n},
        test_scores=(p_test, y_test),
    )


def leave_one_out(history: pd.DataFrame, *, by: str = "service", recall_floor: float = 0.99,
                  seed: int = 0, choose_share: float = 0.15,
                  progress: Callable[[str], None] | None = None
                  ) -> tuple[pd.DataFrame, dict[str, np.ndarray]]:
    """Leave one ``by`` value (a service, by default) out: train on every other one (the
    newest ``choose_share`` of that, by time, chooses the suppression threshold at the recall
    floor), then measure on the one left out, which the model never saw a judgement of.

    Returns one row per fold (``held_out``, ``judgements``, ``noise_share``, ``pr_auc``,
    ``brier``, ``actionable_recall``, ``noise_page_reduction``, ``threshold``) and the pooled
    held-out predictions (``proba``, ``is_noise``) for a reliability curve.
    """
    say = progress or (lambda _msg: None)
    data = latest_labels(normalize_history(history))
    data = data.sort_values("at", kind="stable").reset_index(drop=True)
    rows: list[dict[str, Any]] = []
    pooled_p: list[np.ndarray] = []
    pooled_y: list[np.ndarray] = []
    values = sorted(str(v) for v in data[by].unique())
    for i, value in enumerate(values, 1):
        test = data[data[by].astype(str) == value]
        rest = data[data[by].astype(str) != value]
        cut = int(len(rest) * (1 - choose_share))
        train, val = rest.iloc[:cut], rest.iloc[cut:]
        y_train = (train["label"] == "noise").to_numpy().astype(int)
        if len(test) == 0 or len(set(y_train)) < 2 or len(val) == 0:
            continue
        say(f"[{i}/{len(values)}] {by}={value}: train on {len(train):,}, test on {len(test):,}")
        model = build_model(seed=seed)
        model.fit(history_features(train), y_train)
        p_val = model.predict_proba(history_features(val))[:, 1]
        threshold = operating_point(p_val, (val["label"] == "noise").to_numpy(),
                                    recall_floor=recall_floor)
        p_test = model.predict_proba(history_features(test))[:, 1]
        y_test = (test["label"] == "noise").to_numpy()
        at = evaluate_scores(p_test, y_test, threshold)
        both = 0 < y_test.sum() < len(y_test)
        rows.append({
            "held_out": value, "judgements": len(test), "noise_share": float(y_test.mean()),
            "pr_auc": float(average_precision_score(y_test, p_test)) if both else math.nan,
            "brier": float(brier_score_loss(y_test, p_test, labels=[0, 1])),
            "actionable_recall": at["actionable_recall"],
            "noise_page_reduction": at["noise_page_reduction"], "threshold": threshold,
        })
        pooled_p.append(p_test)
        pooled_y.append(y_test)
    proba = np.concatenate(pooled_p) if pooled_p else np.empty(0)
    is_noise = np.concatenate(pooled_y) if pooled_y else np.empty(0, dtype=bool)
    return pd.DataFrame(rows), {"proba": proba, "is_noise": is_noise}
