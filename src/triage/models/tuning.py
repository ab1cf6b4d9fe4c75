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
             direction: Literal["above", "below"] = "above",
             incidents: np.ndarray | None = None) -> Cut | None:
    """The cut with the fewest noise alerts let through at ``recall >= recall_floor``.

    ``None`` if there is no actionable alert (any cut meets the floor; the caller decides).
    With ``incidents`` (a unit per alert, see ``recall_units``), recall counts incidents: an
    incident is recalled when one of its actionable alerts passes (the responder is paged
    for it once), so the cut may drop its weaker alerts.

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
    units = None if incidents is None else np.asarray(incidents)[pos]
    n_pos = int(pos.sum()) if units is None else len(set(units.tolist()))
    if n_pos == 0:
        return None
    need = max(1, math.ceil(recall_floor * n_pos - 1e-9))
    candidates = sorted({0.0, *for_candidates}) if durations is not None else [0.0]
    best: tuple[int, float, float] | None = None
    for f in candidates:
        if units is None:
            kept_pos = np.sort(v[pos & (d >= f)])[::-1]
        else:  # each incident by its strongest alert that lasts `for`
            ok = d[pos] >= f
            kept_pos = np.sort(pd.Series(v[pos][ok]).groupby(units[ok]).max().to_numpy())[::-1]
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
    hit = int((passed & pos).sum()) if units is None else len(set(units[passed[pos]].tolist()))
    return Cut(threshold=sign * t, for_seconds=f, recall=float(hit / n_pos),
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
    """The tuning of one rule key, with before/after figures on the history it learned from.

    ``threshold`` is None for a group's default rule (``match`` is the alertname alone): it
    carries the scale-free ``for`` and ``keep_firing_for`` to the rule's series that no
    judgement names yet. ``unit`` is how the cut was chosen (``ratio`` to the static
    threshold, or ``z`` over the baseline the judgements carried) and ``cut`` its value.
    """

    match: dict[str, str]
    direction: Literal["above", "below"]
    static_threshold: float
    threshold: float | None
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
    keep_seconds: float = 0.0
    unit: str = "ratio"
    cut: float = math.nan

    @property
    def key(self) -> str:
        """The rule's selector, as in the thresholds file."""
        return self.to_threshold_rule().key

    @property
    def is_default(self) -> bool:
        """A group's default (no threshold of its own)."""
        return self.threshold is None

    @property
    def fp_rate_before(self) -> float:
        """Share of this rule's alerts that were noise."""
        return self.noise_before / self.samples if self.samples else 0.0

    @property
    def fp_rate_after(self) -> float:
        """Share of the pages the tuned rule still sends that are noise."""
        if self.noise_after < 0:
            return math.nan
        kept = self.noise_after + round(self.recall * self.actionable)
        return self.noise_after / kept if kept else 0.0

    def to_threshold_rule(self) -> ThresholdRule:
        """The thresholds-file rule (``triage.core.thresholds``)."""
        if self.threshold is None:
            return ThresholdRule(
                match=self.match, threshold=None, direction=self.direction,
                for_seconds=self.for_seconds or None,
                keep_firing_for=self.keep_seconds or None,
                threshold_z=None if math.isnan(self.cut) else float(f"{self.cut:.4g}"),
                samples=self.samples)
        return ThresholdRule(
            match=self.match, threshold=float(f"{self.threshold:.6g}"),
            direction=self.direction, for_seconds=self.for_seconds or None,
            keep_firing_for=self.keep_seconds or None,
            fp_rate_before=round(self.fp_rate_before, 4),
            fp_rate_after=round(self.fp_rate_after, 4), recall=round(self.recall, 4),
            samples=self.samples, source_rule=self.source_rule or None)

    def suggestion(self) -> str:
        """The Prometheus rule change that would do the same at the source."""
        text = suggest_rule_change(self.source_rule, match=self.match,
                                   threshold=self.threshold, for_seconds=self.for_seconds,
                                   keep_seconds=self.keep_seconds)
        if self.threshold is None and not math.isnan(self.cut):
            text += (f"; in its own scale: (value - baseline) / scale "
                     f"{'>=' if self.direction == 'above' else '<='} {self.cut:.3g}")
        if self.unit == "z" and self.threshold is not None:
            text += f" (z {self.cut:.3g} over its baseline)"
        return text

    def evidence(self) -> str:
        """Why: the judgements, the noise pages it avoids and the actionable ones at risk."""
        if self.threshold is None:
            return (f"{self.samples} judgements of the group ({self.actionable} actionable): "
                    "for its series without judgements of their own")
        at_risk = self.actionable - round(self.recall * self.actionable)
        return (f"{self.samples} judgements ({self.actionable} actionable); noise pages "
                f"{self.noise_before} -> {self.noise_after}; actionable incidents at risk "
                f"{at_risk}")


@dataclass(frozen=True, slots=True)
class TuningResult:
    """The tuned rules, the groups' defaults (``TunedRule.is_default``: ``for`` and
    ``keep_firing_for`` for an alertname's series without judgements) and the keys left
    alone (with why)."""

    rules: list[TunedRule]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    recall_floor: float = 0.99
    defaults: list[TunedRule] = field(default_factory=list)

    def to_thresholds(self, *, generated_at: float | None = None,
                      generated_by: str | None = None) -> Thresholds:
        """The thresholds file stage 1 reads (only rules that change something; a rule's
        own entry wins over its group's default, being more specific)."""
        return Thresholds(generated_at=generated_at, generated_by=generated_by,
                          rules=tuple(r.to_threshold_rule()
                                      for r in [*self.rules, *self.defaults]))

    def table(self) -> pd.DataFrame:
        """One row per tuned rule: before/after, as ``triage tune`` prints it."""
        return pd.DataFrame([{
            "rule": r.key, "samples": r.samples, "actionable": r.actionable,
            "threshold_before": r.static_threshold, "threshold_after": r.threshold,
            "for_after": r.for_seconds, "keep_firing_for_after": r.keep_seconds,
            "unit": r.unit, "fp_rate_before": r.fp_rate_before,
            "fp_rate_after": r.fp_rate_after, "noise_before": r.noise_before,
            "noise_after": r.noise_after, "recall": r.recall, "shrunk": r.shrunk,
            "hints_too_high": r.hints_too_high, "suggestion": r.suggestion(),
            "evidence": r.evidence(),
        } for r in [*self.rules, *self.defaults]])


KEEP_CANDIDATES: Final = (0.0, 600.0, 1800.0, 3600.0, 3 * 3600.0, 6 * 3600.0)


def _baseline(context: object) -> tuple[float, float] | None:
    """``(baseline, scale)`` from a record's context (``baseline``/``scale``), if usable."""
    if isinstance(context, str):
        if not context.startswith("{"):
            return None
        try:
            context = json.loads(context)
        except ValueError:
            return None
    if not isinstance(context, dict):
        return None
    center, scale = context.get("baseline"), context.get("scale")
    if isinstance(center, bool) or isinstance(scale, bool):
        return None
    if not isinstance(center, int | float) or not isinstance(scale, int | float):
        return None
    if not (math.isfinite(center) and math.isfinite(scale)) or scale <= 0:
        return None
    return float(center), float(scale)


def _in_units(data: pd.DataFrame) -> pd.DataFrame:
    """Each judgement's value and static threshold in its rule's own units: ``z`` (standard
    scores over the baseline its context carries) or, without one, ``ratio`` (value over
    the static threshold, which must then be > 0)."""
    base = data["context"].map(_baseline)
    has = base.notna().to_numpy()
    center = np.array([b[0] if b else math.nan for b in base], dtype=float)
    scale = np.array([b[1] if b else math.nan for b in base], dtype=float)
    value = data["value"].to_numpy(dtype=float)
    static = data["threshold"].to_numpy(dtype=float)
    out = data.copy()
    out["unit"] = np.where(has, "z", "ratio")
    with np.errstate(divide="ignore", invalid="ignore"):
        out["u"] = np.where(has, (value - center) / scale, value / static)
        out["u_static"] = np.where(has, (static - center) / scale, 1.0)
    out["center"], out["scale"] = center, scale
    keep = np.isfinite(out["u"].to_numpy()) & np.isfinite(out["u_static"].to_numpy()) & (
        has | (static > 0))
    return out[keep]


def recall_units(incident: np.ndarray) -> np.ndarray:
    """What recall counts, per alert: its incident, or the alert itself when it names none.

    >>> recall_units(np.array(["a", "", "a"])).tolist()
    ['a', '#1', 'a']
    """
    return np.array([inc if inc else f"#{i}" for i, inc in enumerate(incident.tolist())],
                    dtype=object)


def _recalled(reached: np.ndarray, pos: np.ndarray, units: np.ndarray) -> tuple[int, int]:
    """(incidents reached, actionable incidents)."""
    return len(set(units[reached & pos].tolist())), len(set(units[pos].tolist()))


def _chain(start: np.ndarray, end: np.ndarray, passed: np.ndarray, pos: np.ndarray,
           incident: np.ndarray, keep: float) -> tuple[np.ndarray, np.ndarray]:
    """Which alerts of one rule page (``keep_firing_for`` merges an alert starting while the
    last page is still kept firing into it), and which actionable ones reach a responder: they
    page, or join a page that was actionable (of the same incident, when both name one).
    Alerts in time order."""
    if keep <= 0:
        return passed, passed & pos
    pages = np.zeros(len(start), dtype=bool)
    reached = np.zeros(len(start), dtype=bool)
    until, page = -math.inf, -1
    for i in np.flatnonzero(passed).tolist():
        if start[i] <= until and page >= 0:
            until = max(until, end[i] + keep)
            reached[i] = pos[i] and pos[page] and (
                not incident[i] or not incident[page] or incident[i] == incident[page])
            continue
        pages[i] = True
        reached[i] = pos[i]
        page, until = i, end[i] + keep
    return pages, reached


def tune_thresholds(history: pd.DataFrame, *, key: Sequence[str] = ("alertname", "service"),
                    recall_floor: float = 0.99, min_samples: int = 20,
                    shrinkage: float | None = None, tune_for: bool = True,
                    for_candidates: Sequence[float] = FOR_CANDIDATES,
                    tune_keep: bool = True,
                    keep_candidates: Sequence[float] = KEEP_CANDIDATES) -> TuningResult:
    """Tune a threshold, ``for`` and ``keep_firing_for`` per rule key from a feedback history.

    The history needs ``label``, ``value``, ``threshold`` (the static one it fired at),
    ``direction``, ``duration`` and the ``key`` columns (``feedback.COLUMNS``). A correction
    (a newer record for the same fingerprint) replaces the older judgement.

    Rules of one alertname are one group, pooled in their own units (module doc): the
    ``min_samples`` bar is the group's, so a rule is tuned from its first judgement, and a
    rule with no actionable judgement borrows the group's cut.

    >>> from triage.simulate.feedback import simulate_feedback
    >>> result = tune_thresholds(simulate_feedback(days=14, seed=3))
    >>> all(r.recall >= 0.99 and r.noise_after <= r.noise_before for r in result.rules)
    True
    """
    if "alertname" not in key:
        raise ValueError("the rule key must include alertname")
    data = latest_labels(normalize_history(history))
    data = _in_units(data[np.isfinite(data["value"]) & np.isfinite(data["threshold"])])
    data["positive"] = data["label"] == "actionable"
    candidates = for_candidates if tune_for else (0.0,)
    enough = math.ceil(1.0 / (1.0 - recall_floor)) if recall_floor < 1.0 else math.inf
    if shrinkage is None:
        shrinkage = float(enough) if recall_floor < 1.0 else 100.0
    rules: list[TunedRule] = []
    defaults: list[TunedRule] = []
    skipped: list[tuple[str, str]] = []
    for (alertname, direction, unit), group in data.groupby(["alertname", "direction", "unit"],
                                                            sort=True):
        sign = 1.0 if direction == "above" else -1.0
        if len(group) < min_samples:
            for rule_values, _ in group.groupby(list(key), sort=True):
                skipped.append((_key(key, rule_values),
                                f"its group {alertname} has {len(group)} judgements, fewer "
                                f"than {min_samples}"))
            continue
        group_cut = best_cut(group["u"].to_numpy(), group["duration"].to_numpy(),
                             group["positive"].to_numpy(), recall_floor=recall_floor,
                             for_candidates=candidates, direction=direction,
                             incidents=recall_units(group["incident_id"].astype(str)
                                                    .to_numpy()))
        plans: list[_Plan] = []
        for rule_values, rows in group.groupby(list(key), sort=True):
            plan = _plan_rule(rows.sort_values("at", kind="stable"), key, rule_values,
                              group_cut, sign, direction, recall_floor, candidates, enough,
                              shrinkage)
            if isinstance(plan, str):
                skipped.append((_key(key, rule_values), plan))
            else:
                plans.append(plan)
        keep = _pooled_keep(plans, keep_candidates if tune_keep else (0.0,), recall_floor)
        for plan in plans:
            tuned = plan.result(keep)
            if tuned is None:
                skipped.append((ThresholdRule(plan.match, 1.0).key,
                                "no noise alert to remove at the recall floor"))
            else:
                rules.append(tuned)
        # The default carries no `for`: how long an anomaly lasts is the series' own (spikes
        # or level shifts), and a `for` learned on one kind lost the other's windows. In z
        # units its cut is one value for every series (``threshold_z``).
        cuts = _cut_candidates(group, sign) if unit == "z" else [None]
        default_cut, default_for, default_keep = _pooled_default(
            plans, cuts, (0.0,), keep_candidates if tune_keep else (0.0,), recall_floor, sign)
        if group_cut is not None and (default_for or default_keep or default_cut is not None):
            # For the rule's series no judgement names yet: what is scale-free (``for``,
            # ``keep_firing_for``), without a threshold, chosen as ``_pooled_keep`` does.
            defaults.append(TunedRule(
                match={"alertname": str(alertname)}, direction=direction,
                static_threshold=math.nan, threshold=None, for_seconds=default_for,
                keep_seconds=default_keep, samples=len(group),
                cut=math.nan if default_cut is None else default_cut,
                actionable=int(group["positive"].sum()),
                noise_before=int((~group["positive"]).sum()), noise_after=-1, recall=math.nan,
                shrunk=False, unit=str(unit)))
    return TuningResult(rules=rules, skipped=skipped, recall_floor=recall_floor,
                        defaults=defaults)


def _match(key: Sequence[str], rule_values: object) -> dict[str, str]:
    """A rule's match labels from its ``groupby`` key."""
    values = rule_values if isinstance(rule_values, tuple) else (rule_values,)
    return {str(k): str(v) for k, v in zip(key, values, strict=True)}


def _key(key: Sequence[str], rule_values: object) -> str:
    return ThresholdRule(_match(key, rule_values), 1.0).key


@dataclass(slots=True)
class _Plan:
    """One rule's tuned cut before the group's ``keep_firing_for`` is chosen."""

    match: dict[str, str]
    rows: pd.DataFrame
    cut: float
    for_seconds: float
    shrunk: bool
    passed: np.ndarray
    pos: np.ndarray
    start: np.ndarray
    end: np.ndarray
    incident: np.ndarray
    direction: Literal["above", "below"]
    unit: str
    units: np.ndarray  # what recall counts per alert (``recall_units``)

    def pages(self, keep: float) -> tuple[np.ndarray, np.ndarray]:
        return _chain(self.start, self.end, self.passed, self.pos, self.incident, keep)

    def result(self, keep: float) -> TunedRule | None:
        rows, pos = self.rows, self.pos
        pages, reached = self.pages(keep)
        noise_after = int((pages & ~pos).sum())
        if noise_after == int((~pos).sum()):  # nothing to remove here, only recall to risk
            return None
        hit, n_pos = _recalled(reached, pos, self.units)
        hints = rows["hint"].fillna("")
        last = rows.iloc[-1]
        if self.unit == "z":
            threshold = float(last["center"]) + self.cut * float(last["scale"])
        else:
            threshold = self.cut * float(last["threshold"])
        return TunedRule(
            match=self.match, direction=self.direction,
            static_threshold=float(last["threshold"]), threshold=threshold,
            for_seconds=float(self.for_seconds), keep_seconds=float(keep), samples=len(rows),
            actionable=n_pos, noise_before=int((~pos).sum()), noise_after=noise_after,
            recall=float(hit / n_pos) if n_pos else 1.0, shrunk=self.shrunk,
            hints_too_low=int((hints == "too_low").sum()),
            hints_too_high=int((hints == "too_high").sum()),
            source_rule=str(last["source_rule"]), unit=self.unit,
            cut=self.cut)


def _plan_rule(rows: pd.DataFrame, key: Sequence[str], rule_values: object,
               group_cut: Cut | None, sign: float, direction: Literal["above", "below"],
               recall_floor: float, candidates: Sequence[float], enough: float,
               shrinkage: float) -> _Plan | str:
    match = _match(key, rule_values)
    u = rows["u"].to_numpy()
    dur = rows["duration"].to_numpy()
    pos = rows["positive"].to_numpy()
    incident = rows["incident_id"].astype(str).to_numpy()
    units = recall_units(incident)
    own = best_cut(u, dur, pos, recall_floor=recall_floor, for_candidates=candidates,
                   direction=direction, incidents=units)
    if own is None and group_cut is None:
        return "no actionable alert in the rule or its group: not tuned blind"
    n_pos = len(set(units[pos].tolist()))
    if own is None:
        assert group_cut is not None
        r, f, shrunk = group_cut.threshold, group_cut.for_seconds, True
    elif group_cut is None:
        r, f, shrunk = own.threshold, own.for_seconds, False
    else:
        # Recall is what thin data get wrong, so the weight counts actionable alerts.
        w = n_pos / (n_pos + shrinkage)
        r = w * own.threshold + (1 - w) * group_cut.threshold
        # Never less careful than the rule's own data allow.
        r = min(r, own.threshold) if direction == "above" else max(r, own.threshold)
        # A `for` of the rule's own needs enough actionable alerts to estimate the
        # (1 - floor) quantile of their durations; until then, the group's, if shorter.
        f = own.for_seconds if n_pos >= enough else min(own.for_seconds,
                                                         group_cut.for_seconds)
        shrunk = True
    # Only raise (or add a `for`): below the static threshold nothing ever fires.
    static = float(np.median(rows["u_static"].to_numpy()))
    if sign * r <= sign * static:
        r = static
    passed = (sign * u >= sign * r) & (np.nan_to_num(dur, nan=np.inf) >= f)
    start = rows["at"].to_numpy(dtype=float)
    end = start + np.nan_to_num(rows["duration"].to_numpy(dtype=float), nan=0.0)
    return _Plan(match, rows, float(r), float(f), shrunk, passed, pos, start, end, incident,
                 direction, str(rows["unit"].iloc[0]), units)


def _cut_candidates(group: pd.DataFrame, sign: float, n: int = 24) -> list[float | None]:
    """Cuts (in the group's units) a default may carry, lowest first: quantiles of the
    alerts' values, and each actionable alert's value (where the best cut under the guard
    sits: the weakest incident's strongest alert)."""
    u = sign * group["u"].to_numpy(dtype=float)
    actionable = u[group["positive"].to_numpy(dtype=bool)]
    qs = np.unique(np.concatenate([np.quantile(u, np.linspace(0.0, 0.95, n)), actionable]))
    return [None, *(float(sign * q) for q in qs)]


def _pooled_default(plans: Sequence[_Plan], cuts: Sequence[float | None],
                    fors: Sequence[float], keeps: Sequence[float], recall_floor: float,
                    sign: float = 1.0) -> tuple[float | None, float, float]:
    """The group default's cut (z units only, else None: the static threshold), ``for`` and
    ``keep_firing_for``: the fewest noise pages over the group's rules such that every rule
    still reaches its actionable incidents, to the floor, as with no tuning at all. Ties go
    to the lower cut, the shorter ``for`` and ``keep``."""
    best: tuple[int, int, float | None, float, float] | None = None
    combos = [(i, c, f, k) for i, c in enumerate(cuts) for f in sorted(set(fors) | {0.0})
              for k in sorted(set(keeps) | {0.0})]
    for i, cut, f, keep in combos:
        noise = 0
        ok = True
        for plan in plans:
            dur = np.nan_to_num(plan.rows["duration"].to_numpy(dtype=float), nan=np.inf)
            passed = dur >= f
            if cut is not None:
                u = plan.rows["u"].to_numpy(dtype=float)
                static = plan.rows["u_static"].to_numpy(dtype=float)
                passed &= sign * u >= np.maximum(sign * cut, sign * static)
            pages, reached = _chain(plan.start, plan.end, passed, plan.pos, plan.incident,
                                    keep)
            hit, n_pos = _recalled(reached, plan.pos, plan.units)
            if hit < math.ceil(recall_floor * n_pos - 1e-9):
                ok = False
                break
            noise += int((pages & ~plan.pos).sum())
        if ok and (best is None or (noise, i) < best[:2]):
            best = (noise, i, cut, f, keep)
    if best is None:
        return None, 0.0, 0.0
    cut = best[2]
    if cut is not None:
        # As ``best_cut``: the lowest cut that removes as much noise (halfway between the
        # highest noise alert under it and the next value up), for headroom.
        u = np.concatenate([sign * p.rows["u"].to_numpy(dtype=float) for p in plans])
        is_noise = np.concatenate([~p.pos for p in plans])
        below = u[is_noise & (u < sign * cut)]
        if len(below):
            lo = float(below.max())
            cut = sign * (lo + float(u[u > lo].min())) / 2.0
    return cut, best[3], best[4]


def _pooled_keep(plans: Sequence[_Plan], candidates: Sequence[float],
                 recall_floor: float) -> float:
    """One ``keep_firing_for`` for a group: the fewest noise pages such that every rule still
    reaches a responder with as many of its actionable alerts as without it (to the floor)."""
    best: tuple[int, float] | None = None
    base = [_recalled(p.pages(0.0)[1], p.pos, p.units)[0] for p in plans]
    for keep in sorted(set(candidates) | {0.0}):
        noise = 0
        ok = True
        for plan, reached0 in zip(plans, base, strict=True):
            pages, reached = plan.pages(keep)
            if _recalled(reached, plan.pos, plan.units)[0] < math.ceil(
                    recall_floor * reached0 - 1e-9):
                ok = False
                break
            noise += int((pages & ~plan.pos).sum())
        if ok and (best is None or noise < best[0]):
            best = (noise, keep)
    return best[1] if best is not None else 0.0


def evaluate_thresholds(thresholds: Thresholds, history: pd.DataFrame) -> dict[str, float]:
    """What a thresholds file does to a (held-out) history, with the gate's semantics: the
    value test by direction (a missing value passes; ``threshold_z`` against the baseline in
    the record's context, as the gate reads it from the alert's annotations), the ``for``
    test against how long the alert fired (an alert resolved before ``for`` never pages),
    and ``keep_firing_for``: an
    alert of the same rule and series (fingerprint, else service) starting while the last
    page is still kept firing joins it instead of paging.

    Returns counts and rates: ``noise_pages_before/after``, ``actionable`` (incidents, or
    alerts that name none), ``recall`` (of those, the ones with an alert that pages or joins
    an actionable page), ``noise_reduction``.
    """
    data = latest_labels(normalize_history(history))
    passed = np.ones(len(data), dtype=bool)
    keeps = np.zeros(len(data))
    chains: list[str] = []
    for i, row in enumerate(data.itertuples(index=False)):
        labels = {"alertname": str(row.alertname), "service": str(row.service),
                  "tier": str(row.tier), "severity": str(row.severity)}
        labels.update({k: v for k, v in _labels(row.labels).items() if k not in labels})
        rule = thresholds.lookup(labels)
        chains.append(f"{rule.key if rule else ''}|{row.fingerprint or row.service}")
        if rule is None:
            continue
        value, threshold = float(row.value), rule.threshold
        if not math.isnan(value) and threshold is not None and (
            (rule.direction == "above" and value < threshold)
            or (rule.direction == "below" and value > threshold)
        ):
            passed[i] = False
        cut_z = rule.threshold_z
        base = _baseline(row.context) if cut_z is not None else None
        if cut_z is not None and base is not None and not math.isnan(value):
            z = (value - base[0]) / base[1]  # as the gate does with the alert's annotations
            if (rule.direction == "above" and z < cut_z) or (
                    rule.direction == "below" and z > cut_z):
                passed[i] = False
        duration = float(row.duration)
        if rule.for_seconds and not math.isnan(duration) and duration < rule.for_seconds:
            passed[i] = False
        keeps[i] = rule.keep_firing_for or 0.0
    pos = (data["label"] == "actionable").to_numpy()
    pages, reached = passed.copy(), passed & pos
    start = data["at"].to_numpy(dtype=float)
    end = start + np.nan_to_num(data["duration"].to_numpy(dtype=float), nan=0.0)
    incident = data["incident_id"].astype(str).to_numpy()
    by_chain = pd.Series(np.arange(len(data))).groupby(np.asarray(chains)).indices
    for idx in by_chain.values():
        keep = float(keeps[idx].max())
        if keep > 0:
            pages[idx], reached[idx] = _chain(start[idx], end[idx], passed[idx], pos[idx],
                                              incident[idx], keep)
    before = int((~pos).sum())
    after = int((~pos & pages).sum())
    hit, n_pos = _recalled(reached, pos, recall_units(incident))
    return {
        "alerts": len(data), "actionable": n_pos, "noise_pages_before": before,
        "noise_pages_after": after,
        "noise_reduction": 1 - after / before if before else 0.0,
        "recall": float(hit / n_pos) if n_pos else 1.0,
    }


_COMPARISON = re.compile(r"(?P<op>>=|<=|>|<)\s*(?P<num>[-+]?\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)\s*$")


def suggest_rule_change(expr: str, *, match: dict[str, str], threshold: float | None,
                        for_seconds: float, keep_seconds: float = 0.0) -> str:
    """The Prometheus change for a tuned rule: the ``expr`` threshold, ``for`` and
    ``keep_firing_for`` (Prometheus >= 2.42).

    >>> suggest_rule_change("cpu > 0.8", match={"alertname": "HighCPU", "service": "cart"},
    ...                     threshold=0.85, for_seconds=300, keep_seconds=3600)
    'HighCPU{service="cart"}: expr cpu > 0.85 (was > 0.8); for: 5m; keep_firing_for: 1h'
    """
    key = ThresholdRule(match, 1.0).key
    parts = [key + ":"]
    found = _COMPARISON.search(expr) if expr else None
    if threshold is None:
        parts.append("expr unchanged")
    elif found:
        parts.append(f"expr {expr[:found.start()]}{found['op']} {threshold:.4g} "
                     f"(was {found['op']} {found['num']})")
    else:
        parts.append(f"threshold {threshold:.4g}")
    text = " ".join(parts)
    if for_seconds:
        text += f"; for: {format_duration(float(for_seconds))}"
    if keep_seconds:
        text += f"; keep_firing_for: {format_duration(float(keep_seconds))}"
    return text


def _labels(text: object) -> dict[str, str]:
    if not isinstance(text, str) or not text.startswith("{"):
        return {}
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return {str(k): str(v) for k, v in value.items()} if isinstance(value, dict) else {}
