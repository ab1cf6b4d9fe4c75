"""Threshold tuning: per rule, the threshold (and ``for`` duration) that removes the most
false positives while keeping a recall floor on the alerts responders found actionable.

Two layers:

* ``ThresholdClassifier`` is the statistic, a scikit-learn classifier over a value column (and
  optionally a duration column). ``fit`` picks the cut that minimises the false positives
  (noise alerts still let through) subject to ``recall >= recall_floor`` on the actionable
  class (the greater label, as in scikit-learn's binary convention). Among the ``for``
  candidates, the one with the fewest false positives wins; ties go to the shorter wait.
  Of the thresholds that remove as much noise, the lowest is kept (halfway between the
  highest noise alert it removes and the next value up), so held-out actionable alerts a
  little lower than any seen still pass.
* ``tune_thresholds`` applies it to a feedback history per rule key (``alertname`` +
  ``service`` by default). It works in units of the rule's static threshold
  (value / threshold), so rules of one Prometheus rule group (same ``alertname``) can share
  strength. A rule with few samples is shrunk toward its group:
  ``ratio = w * rule + (1 - w) * group`` with ``w = a / (a + shrinkage)``, ``a`` the rule's
  actionable alerts (recall is what thin data get wrong). The result is then
  clamped so it never passes fewer of the rule's own actionable alerts than the rule's own
  cut does, so shrinkage can make a thin rule more careful, never less. Rules with fewer
  than ``min_samples`` whose group is also thin are left alone.

Tuning only ever raises a threshold (or adds a ``for``): an alert below the static threshold
never fires, so the history cannot show that a lower one would be better. Responders'
``too_high`` hints are counted in the report for that reason.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from triage.core.thresholds import ThresholdRule, Thresholds, format_duration
from triage.models.feedback import latest_labels, normalize_history

FOR_CANDIDATES: Final = (0.0, 60.0, 120.0, 300.0, 600.0)


@dataclass(frozen=True, slots=True)
class Cut:
    """A threshold and ``for`` duration, with what they do on the data they were fitted on."""

    threshold: float
    for_seconds: float
    recall: float
    noise_before: int
    noise_after: int
    actionable: int
    kept: int


def best_cut(values: np.ndarray, durations: np.ndarray | None, positive: np.ndarray, *,
             recall_floor: float, for_candidates: Sequence[float] = (0.0,),
             direction: Literal["above", "below"] = "above") -> Cut | None:
    """The cut with the fewest noise alerts let through at ``recall >= recall_floor``.

    ``None`` if there is no actionable alert (any cut meets the floor; the caller decides).

    >>> v = np.array([1.0, 1.1, 1.2, 2.0, 3.0, 1.05])
    >>> pos = np.array([False, False, False, True, True, False])
    >>> best_cut(v, None, pos, recall_floor=0.99).threshold
    1.6
    """
    sign = 1.0 if direction == "above" else -1.0
    v = sign * np.asarray(values, dtype=float)
    d = np.zeros_like(v) if durations is None else np.nan_to_num(
        np.asarray(durations, dtype=float), nan=np.inf)
    pos = np.asarray(positive, dtype=bool)
    n_pos = int(pos.sum())
    if n_pos == 0:
        return None
    need = max(1, math.ceil(recall_floor * n_pos - 1e-9))
    candidates = sorted({0.0, *for_candidates}) if durations is not None else [0.0]
    best: tuple[int, float, float] | None = None
    for f in candidates:
        kept_pos = np.sort(v[pos & (d >= f)])[::-1]
        if len(kept_pos) < need:
            continue
        t = float(kept_pos[need - 1])  # the highest threshold that meets the floor
        # Every threshold above the highest noise value under it removes as much noise;
        # take the lowest of them (halfway between that noise value and the next value up),
        # so actionable alerts a little lower than any seen still pass.
        noise_below = v[(~pos) & (d >= f) & (v < t)]
        if len(noise_below):
            lo = float(noise_below.max())
            t = (lo + float(v[v > lo].min())) / 2.0
        else:
            t = float(v.min())
        fp = int(((~pos) & (v >= t) & (d >= f)).sum())
        if best is None or fp < best[0]:
            best = (fp, t, f)
    if best is None:  # cannot happen with f = 0 in the candidates; kept for clarity
        return None
    fp, t, f = best
    passed = (v >= t) & (d >= f)
    return Cut(threshold=sign * t, for_seconds=f, recall=float((passed & pos).sum() / n_pos),
               noise_before=int((~pos).sum()), noise_after=fp, actionable=n_pos,
               kept=int(passed.sum()))


class ThresholdClassifier(ClassifierMixin, BaseEstimator):  # type: ignore[misc]
    """Predicts whether an alert is actionable from its value (and how long it fired).

    Column ``value_column`` of ``X`` is the alert's value; ``duration_column`` (optional) is
    how long it fired, in seconds, tuned against ``for_candidates``. Other columns are
    ignored. The actionable class is the greater label.

    >>> X = np.array([[1.0], [1.1], [1.2], [2.0], [3.0]])
    >>> clf = ThresholdClassifier().fit(X, [0, 0, 0, 1, 1])
    >>> clf.threshold_, clf.predict([[1.5], [2.5]]).tolist()
    (1.6, [0, 1])
    """

    def __init__(self, recall_floor: float = 0.99, direction: str = "above",
                 value_column: int = 0, duration_column: int | None = None,
                 for_candidates: Sequence[float] = FOR_CANDIDATES) -> None:
        self.recall_floor = recall_floor
        self.direction = direction
        self.value_column = value_column
        self.duration_column = duration_column
        self.for_candidates = for_candidates

    def fit(self, X: Any, y: Any) -> ThresholdClassifier:
        """Choose ``threshold_`` and ``for_seconds_``; returns ``self``."""
        X, y = validate_data(self, X, y)
        check_classification_targets(y)
        if not 0.0 < self.recall_floor <= 1.0:
            raise ValueError(f"recall_floor must be in (0, 1], got {self.recall_floor!r}")
        if self.direction not in ("above", "below"):
            raise ValueError(f"direction must be above or below, got {self.direction!r}")
        self.classes_ = np.unique(y)
        if len(self.classes_) > 2:
            raise ValueError("Only binary classification is supported (noise vs actionable); "
                             f"got {len(self.classes_)} classes")
        for name in ("value_column", "duration_column"):
            column = getattr(self, name)
            if column is not None and not 0 <= column < X.shape[1]:
                raise ValueError(f"{name}={column} but X has n_features = {X.shape[1]}")
        values = X[:, self.value_column]
        durations = None if self.duration_column is None else X[:, self.duration_column]
        positive = y == self.classes_[-1] if len(self.classes_) == 2 else np.zeros(len(y), bool)
        cut = best_cut(values, durations, positive, recall_floor=self.recall_floor,
                       for_candidates=self.for_candidates,
                       direction=self.direction)  # type: ignore[arg-type]
        if cut is None:  # one class only: let everything through (never tune blind)
            low = values.min() if self.direction == "above" else values.max()
            self.threshold_ = float(low)
            self.for_seconds_ = 0.0
            self.recall_ = 1.0
        else:
            self.threshold_ = cut.threshold
            self.for_seconds_ = cut.for_seconds
            self.recall_ = cut.recall
        return self

    def passes(self, X: Any) -> np.ndarray:
        """Whether each alert crosses the threshold (the boundary counts) and lasts ``for``."""
        check_is_fitted(self)
        X = validate_data(self, X, reset=False)
        values = X[:, self.value_column]
        passed = values >= self.threshold_ if self.direction == "above" else (
            values <= self.threshold_)
        if self.duration_column is not None and self.for_seconds_ > 0:
            passed &= X[:, self.duration_column] >= self.for_seconds_
        out: np.ndarray = np.asarray(passed, dtype=bool)
        return out

    def predict(self, X: Any) -> np.ndarray:
        """The actionable class where the alert passes the cut, else the other class."""
        passed = self.passes(X)
        out: np.ndarray = np.where(passed, self.classes_[-1], self.classes_[0])
        return out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_class = False
        # One column and a recall floor: it keeps 99% of the actionable class whatever that
        # costs in accuracy, so generic accuracy checks do not apply.
        tags.classifier_tags.poor_score = True
        return tags


# -- per rule, from a feedback history -----------------------------------------------------


@dataclass(frozen=True, slots=True)
class TunedRule:
    """The tuning of one rule key, with before/after figures on the history it learned from."""

    match: dict[str, str]
    direction: Literal["above", "below"]
    static_threshold: float
    threshold: float
    for_seconds: float
    samples: int
    actionable: int
    noise_before: int
    noise_after: int
    recall: float
    shrunk: bool
    hints_too_low: int = 0
    hints_too_high: int = 0
    source_rule: str = ""

    @property
    def key(self) -> str:
        """The rule's selector, as in the thresholds file."""
        return self.to_threshold_rule().key

    @property
    def fp_rate_before(self) -> float:
        """Share of this rule's alerts that were noise."""
        return self.noise_before / self.samples if self.samples else 0.0

    @property
    def fp_rate_after(self) -> float:
        """Share of the alerts the tuned rule still lets through that are noise."""
        kept = self.noise_after + round(self.recall * self.actionable)
        return self.noise_after / kept if kept else 0.0

    def to_threshold_rule(self) -> ThresholdRule:
        """The thresholds-file rule (``triage.core.thresholds``)."""
        return ThresholdRule(
            match=self.match, threshold=float(f"{self.threshold:.6g}"),
            direction=self.direction, for_seconds=self.for_seconds or None,
            fp_rate_before=round(self.fp_rate_before, 4),
            fp_rate_after=round(self.fp_rate_after, 4), recall=round(self.recall, 4),
            samples=self.samples, source_rule=self.source_rule or None)

    def suggestion(self) -> str:
        """The Prometheus rule change that would do the same at the source."""
        return suggest_rule_change(self.source_rule, match=self.match,
                                   threshold=self.threshold, for_seconds=self.for_seconds)


@dataclass(frozen=True, slots=True)
class TuningResult:
    """The tuned rules and the keys left alone (with why)."""

    rules: list[TunedRule]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    recall_floor: float = 0.99

    def to_thresholds(self, *, generated_at: float | None = None,
                      generated_by: str | None = None) -> Thresholds:
        """The thresholds file stage 1 reads (only rules that change something)."""
        return Thresholds(generated_at=generated_at, generated_by=generated_by,
                          rules=tuple(r.to_threshold_rule() for r in self.rules))

    def table(self) -> pd.DataFrame:
        """One row per tuned rule: before/after, as ``triage tune`` prints it."""
        return pd.DataFrame([{
            "rule": r.key, "samples": r.samples, "actionable": r.actionable,
            "threshold_before": r.static_threshold, "threshold_after": r.threshold,
            "for_after": r.for_seconds, "fp_rate_before": r.fp_rate_before,
            "fp_rate_after": r.fp_rate_after, "noise_before": r.noise_before,
            "noise_after": r.noise_after, "recall": r.recall, "shrunk": r.shrunk,
            "hints_too_high": r.hints_too_high, "suggestion": r.suggestion(),
        } for r in self.rules])


def tune_thresholds(history: pd.DataFrame, *, key: Sequence[str] = ("alertname", "service"),
                    recall_floor: float = 0.99, min_samples: int = 30,
                    shrinkage: float | None = None, tune_for: bool = True,
                    for_candidates: Sequence[float] = FOR_CANDIDATES) -> TuningResult:
    """Tune a threshold (and ``for``) per rule key from a feedback history.

    The history needs ``label``, ``value``, ``threshold`` (the static one it fired at),
    ``direction``, ``duration`` and the ``key`` columns (``feedback.COLUMNS``). A correction
    (a newer record for the same fingerprint) replaces the older judgement.

    >>> from triage.models.simulate import simulate_feedback
    >>> result = tune_thresholds(simulate_feedback(days=14, seed=3))
    >>> all(r.recall >= 0.99 and r.noise_after <= r.noise_before for r in result.rules)
    True
    """
    if "alertname" not in key:
        raise ValueError("the rule key must include alertname")
    data = latest_labels(normalize_history(history))
    data = data[np.isfinite(data["value"]) & np.isfinite(data["threshold"])
                & (data["threshold"] > 0)].copy()
    data["ratio"] = data["value"] / data["threshold"]
    data["positive"] = data["label"] == "actionable"
    candidates = for_candidates if tune_for else (0.0,)
    enough = math.ceil(1.0 / (1.0 - recall_floor)) if recall_floor < 1.0 else math.inf
    if shrinkage is None:
        shrinkage = float(enough) if recall_floor < 1.0 else 100.0
    rules: list[TunedRule] = []
    skipped: list[tuple[str, str]] = []
    group_cols = ["alertname", "direction", "threshold"]
    for (alertname, direction, static), group in data.groupby(group_cols, sort=True):
        static = float(static)
        sign = 1.0 if direction == "above" else -1.0
        scale = static  # ratio units: the tuned threshold is ratio * static (static > 0)
        group_cut = best_cut(group["ratio"].to_numpy(), group["duration"].to_numpy(),
                             group["positive"].to_numpy(), recall_floor=recall_floor,
                             for_candidates=candidates, direction=direction)
        for rule_values, rows in group.groupby(list(key), sort=True):
            values = rule_values if isinstance(rule_values, tuple) else (rule_values,)
            match = {str(k): str(v) for k, v in zip(key, values, strict=True)}
            label = ThresholdRule(match, 1.0).key
            n = len(rows)
            group_thin = len(group) < min_samples
            if n < min_samples and group_thin:
                skipped.append((label, f"{n} samples (group {alertname}: {len(group)}), "
                                       f"fewer than {min_samples}"))
                continue
            ratio = rows["ratio"].to_numpy()
            dur = rows["duration"].to_numpy()
            pos = rows["positive"].to_numpy()
            own = best_cut(ratio, dur, pos, recall_floor=recall_floor,
                           for_candidates=candidates, direction=direction)
            if own is None and group_cut is None:
                skipped.append((label, "no actionable alert in the rule or its group: "
                                       "not tuned blind"))
                continue
            # Recall is what thin data get wrong, so the weight counts actionable alerts.
            w = int(pos.sum()) / (int(pos.sum()) + shrinkage)
            if own is None:
                assert group_cut is not None
                r, f, shrunk = group_cut.threshold, group_cut.for_seconds, True
            elif group_cut is None or group_thin:
                r, f, shrunk = own.threshold, own.for_seconds, False
            else:
                r = w * own.threshold + (1 - w) * group_cut.threshold
                # Never less careful than the rule's own data allow.
                r = min(r, own.threshold) if direction == "above" else max(r, own.threshold)
                # A `for` of the rule's own needs enough actionable alerts to estimate the
                # (1 - floor) quantile of their durations; until then, the group's, if shorter.
                f = own.for_seconds if int(pos.sum()) >= enough else min(
                    own.for_seconds, group_cut.for_seconds)
                shrunk = True
            # Only raise (or add a `for`): below the static threshold nothing ever fires.
            if sign * r <= sign * 1.0:
                r = 1.0
            passed = (sign * ratio >= sign * r) & (np.nan_to_num(dur, nan=np.inf) >= f)
            noise_after = int((passed & ~pos).sum())
            n_pos = int(pos.sum())
            if noise_after == int((~pos).sum()):
                # Raising it would remove no noise here and only risk recall elsewhere.
                skipped.append((label, "no noise alert to remove at the recall floor"))
                continue
            hints = rows["hint"].fillna("")
            rules.append(TunedRule(
                match=match, direction=direction, static_threshold=static,
                threshold=r * scale, for_seconds=float(f), samples=n, actionable=n_pos,
                noise_before=int((~pos).sum()), noise_after=noise_after,
                recall=float((passed & pos).sum() / n_pos) if n_pos else 1.0,
                shrunk=shrunk, hints_too_low=int((hints == "too_low").sum()),
                hints_too_high=int((hints == "too_high").sum()),
                source_rule=str(rows["source_rule"].iloc[-1]),
            ))
    return TuningResult(rules=rules, skipped=skipped, recall_floor=recall_floor)


def evaluate_thresholds(thresholds: Thresholds, history: pd.DataFrame) -> dict[str, float]:
    """What a thresholds file does to a (held-out) history, with the gate's semantics: the
    value test by direction (a missing value passes) and the ``for`` test against how long the
    alert fired (an alert resolved before ``for`` never pages).

    Returns counts and rates: ``noise_pages_before/after``, ``actionable``, ``recall``,
    ``noise_reduction``.
    """
    data = latest_labels(normalize_history(history))
    passed = np.ones(len(data), dtype=bool)
    for i, row in enumerate(data.itertuples(index=False)):
        labels = {"alertname": str(row.alertname), "service": str(row.service),
                  "tier": str(row.tier), "severity": str(row.severity)}
        labels.update({k: v for k, v in _labels(row.labels).items() if k not in labels})
        rule = thresholds.lookup(labels)
        if rule is None:
            continue
        value = float(row.value)
        if not math.isnan(value) and (
            (rule.direction == "above" and value < rule.threshold)
            or (rule.direction == "below" and value > rule.threshold)
        ):
            passed[i] = False
        duration = float(row.duration)
        if rule.for_seconds and not math.isnan(duration) and duration < rule.for_seconds:
            passed[i] = False
    pos = (data["label"] == "actionable").to_numpy()
    before = int((~pos).sum())
    after = int((~pos & passed).sum())
    n_pos = int(pos.sum())
    return {
        "alerts": len(data), "actionable": n_pos, "noise_pages_before": before,
        "noise_pages_after": after,
        "noise_reduction": 1 - after / before if before else 0.0,
        "recall": float((pos & passed).sum() / n_pos) if n_pos else 1.0,
    }


_COMPARISON = re.compile(r"(?P<op>>=|<=|>|<)\s*(?P<num>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")


def suggest_rule_change(expr: str, *, match: dict[str, str], threshold: float,
                        for_seconds: float) -> str:
    """The Prometheus change for a tuned rule: the ``expr`` threshold and the ``for``.

    >>> suggest_rule_change("cpu > 0.8", match={"alertname": "HighCPU", "service": "cart"},
    ...                     threshold=0.85, for_seconds=300)
    'HighCPU{service="cart"}: expr cpu > 0.85 (was > 0.8); for: 5m'
    """
    key = ThresholdRule(match, 1.0).key
    parts = [key + ":"]
    found = _COMPARISON.search(expr) if expr else None
    if found:
        parts.append(f"expr {expr[:found.start()]}{found['op']} {threshold:.4g} "
                     f"(was {found['op']} {found['num']})")
    else:
        parts.append(f"threshold {threshold:.4g}")
    text = " ".join(parts)
    if for_seconds:
        text += f"; for: {format_duration(float(for_seconds))}"
    return text


def _labels(text: object) -> dict[str, str]:
    if not isinstance(text, str) or not text.startswith("{"):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
