"""Threshold tuning evaluated on real data: the Numenta Anomaly Benchmark (NAB).

Each NAB series (``timestamp,value``) comes with labelled anomaly windows. The alert rule on
a series is a static threshold, ``value >= threshold`` (optionally ``for`` a duration):

* An **alert** fires at the start of each run of consecutive samples at or over the
  threshold that lasts at least ``for`` (at the first sample ``for`` after the run began), as a
  Prometheus rule with that ``for`` would.
* An alert outside every labelled window is a **false positive**; a window with at least one
  alert in it is **detected** (window recall).
* The **baseline** is the usual static rule, mean + 3 sigma of the first half of the series.
  The **tuned** rule is fitted on the same first half: the threshold (in sigmas over the
  first half's mean, on a grid) and ``for`` with the fewest false positives that still detects
  at least ``recall_floor`` of the first half's windows that the baseline detects (the
  actionable alerts of the current rule, as in a feedback history). Of tied thresholds, the
  median is taken. A series with few windows of its own is shrunk toward its NAB category (the
  rule group), as ``tune_thresholds`` does for feedback: ``z = w * own + (1 - w) * group``
  with ``w = windows / (windows + shrinkage)``, clamped so it still detects its own windows.
  A series whose category has no window in its first half is not tuned (never tuned blind).
* Both are measured on the second half: false positives per day and window recall.

``load_nab`` and ``read_series`` are the only functions here that read files; the rest is
pure.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import numpy as np
import pandas as pd

from triage.core.thresholds import ThresholdRule, Thresholds
from triage.models.series import (
    STATIC,
    Labelled,
    PooledChoice,
    RuleSpec,
    Standardiser,
    Table,
    fire,
    outcomes,
    score,
    shrink_series,
)
from triage.models.series import choose as choose_spec
from triage.models.series import grid as spec_grid

BASELINE_Z: Final = 3.0
# Only raises, as tuning from feedback: a lower threshold merges runs into one endless alert,
# which counts as one page but hides every later anomaly.
Z_GRID: Final = tuple(float(z) for z in np.arange(BASELINE_Z, 12.001, 0.25))
FOR_GRID: Final = (0.0, 600.0, 1800.0, 3600.0)
DAY: Final = 86400.0


@dataclass(frozen=True, slots=True)
class NabSeries(Labelled):
    """One NAB series: epoch-second times, values, and labelled windows (start, end)."""

    @property
    def category(self) -> str:
        """The NAB folder, e.g. ``realTweets``: the rule group for shrinkage."""
        return self.name.split("/", 1)[0]

    def split(self) -> tuple[NabSeries, NabSeries]:
        """First and second half by sample count (windows kept where they overlap)."""
        mid = len(self.times) // 2
        cut = float(self.times[mid])
        first = NabSeries(self.name, self.times[:mid], self.values[:mid],
                          tuple(w for w in self.windows if w[0] < cut))
        second = NabSeries(self.name, self.times[mid:], self.values[mid:],
                           tuple(w for w in self.windows if w[1] >= cut))
        return first, second

    @property
    def days(self) -> float:
        """Length of the series in days."""
        return float(self.times[-1] - self.times[0]) / DAY if len(self.times) > 1 else 0.0


def load_nab(root: Path, *, categories: Iterable[str] | None = None,
             names: Iterable[str] | None = None) -> list[NabSeries]:
    """Read NAB's ``data/<category>/<file>.csv`` and ``labels/combined_windows.json``."""
    root = Path(root)
    windows = json.loads((root / "labels" / "combined_windows.json").read_text())
    wanted = set(categories) if categories is not None else None
    only = set(names) if names is not None else None
    out: list[NabSeries] = []
    for name in sorted(windows):
        if wanted is not None and name.split("/", 1)[0] not in wanted:
            continue
        if only is not None and name not in only:
            continue
        path = root / "data" / name
        if not path.is_file():
            continue
        frame = pd.read_csv(path)
        stamps = pd.to_datetime(frame["timestamp"], utc=True)
        times = ((stamps - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy()
        spans = tuple(
            (pd.Timestamp(a, tz="UTC").timestamp(), pd.Timestamp(b, tz="UTC").timestamp())
            for a, b in windows[name]
        )
        out.append(NabSeries(name, times.astype(float),
                             frame["value"].to_numpy(dtype=float), spans))
    return out


def alert_times(times: np.ndarray, values: np.ndarray, threshold: float,
                for_seconds: float = 0.0) -> np.ndarray:
    """When a ``value >= threshold`` rule with ``for`` fires: one alert per run
    (``triage.models.series.fire`` without ``keep_firing_for``).

    >>> t = np.arange(8) * 60.0
    >>> v = np.array([0, 5, 5, 0, 5, 5, 5, 0], dtype=float)
    >>> alert_times(t, v, 1.0).tolist(), alert_times(t, v, 1.0, for_seconds=120).tolist()
    ([60.0, 240.0], [360.0])
    """
    return fire(times, values >= threshold, for_seconds)


@dataclass(frozen=True, slots=True)
class SeriesRule:
    """A fitted threshold rule for one series, in sigmas over the first half's mean."""

    name: str
    mean: float
    std: float
    z: float
    for_seconds: float
    tuned: bool
    reason: str = ""

    @property
    def threshold(self) -> float:
        """The rule's threshold in the series' own units."""
        return self.mean + self.z * self.std


def _grid(series: NabSeries, mean: float, std: float, z_grid: Sequence[float],
          for_grid: Sequence[float]) -> dict[tuple[float, float], tuple[int, int]]:
    return {(z, f): score(alert_times(series.times, series.values, mean + z * std, f),
                          series.windows)
            for z in z_grid for f in for_grid}


def fit_rules(series: Sequence[NabSeries], *, recall_floor: float = 0.99,
              shrinkage: float = 5.0, borrow: bool = False, z_grid: Sequence[float] = Z_GRID,
              for_grid: Sequence[float] = FOR_GRID) -> list[SeriesRule]:
    """Fit the baseline-relative tuned rule on each series' first half (see module doc)."""
    stats: list[tuple[NabSeries, float, float, dict[tuple[float, float], tuple[int, int]]]] = []
    for s in series:
        first, _ = s.split()
        mean, std = float(first.values.mean()), float(first.values.std()) or 1.0
        stats.append((first, mean, std, _grid(first, mean, std, z_grid, for_grid)))

    def choose(grids: list[dict[tuple[float, float], tuple[int, int]]],
               ) -> tuple[float, float, int] | None:
        # The actionable alerts are the windows the current rule (the baseline) detects, as
        # in a feedback history every alert is one the current rule fired.
        reachable = sum(g[(BASELINE_Z, 0.0)][1] for g in grids)
        if reachable == 0:
            return None
        need = math.ceil(recall_floor * reachable - 1e-9)
        scored = {key: (sum(g[key][0] for g in grids), sum(g[key][1] for g in grids))
                  for key in grids[0]}
        feasible = {key: fp for key, (fp, hit) in scored.items() if hit >= need}
        fewest = min(feasible.values())  # the baseline itself is feasible
        f = min(key[1] for key, fp in feasible.items() if fp == fewest)
        # Of the tied thresholds, the median: a margin on both sides, as for feedback.
        zs = sorted(key[0] for key, fp in feasible.items() if fp == fewest and key[1] == f)
        return zs[(len(zs) - 1) // 2], f, reachable

    by_group: dict[str, list[int]] = {}
    for i, s in enumerate(series):
        by_group.setdefault(s.category, []).append(i)
    group_cut = {cat: choose([stats[i][3] for i in idx]) for cat, idx in by_group.items()}
    rules: list[SeriesRule] = []
    for s, (_first, mean, std, grid) in zip(series, stats, strict=True):
        own = choose([grid])
        group = group_cut[s.category]
        if own is None and group is None:
            rules.append(SeriesRule(s.name, mean, std, 3.0, 0.0, tuned=False,
                                    reason="no labelled window in the first half of the "
                                           "series or its category"))
            continue
        if own is None and not borrow:
            rules.append(SeriesRule(s.name, mean, std, BASELINE_Z, 0.0, tuned=False,
                                    reason="the baseline detects no window in the first half: "
                                           "no evidence of where this series' anomalies sit"))
            continue
        if own is None:
            assert group is not None
            z, f = group[0], group[1]
        elif group is None:
            z, f = own[0], own[1]
        else:
            w = own[2] / (own[2] + shrinkage)
            z = min(w * own[0] + (1 - w) * group[0], own[0])
            f = min(own[1], group[1]) if own[2] < 2 else own[1]
        rules.append(SeriesRule(s.name, mean, std, z, f, tuned=True))
    return rules


def evaluate_nab(series: Sequence[NabSeries], *, recall_floor: float = 0.99,
                 shrinkage: float = 5.0, borrow: bool = False) -> pd.DataFrame:
    """Per series, the baseline (mean + 3 sigma) and the tuned rule on the second half.

    Columns: ``series``, ``category``, ``days``, ``windows``, ``fp_before``, ``fp_after``,
    ``detected_before``, ``detected_after``, ``z_after``, ``for_after``, ``tuned``.
    """
    rules = fit_rules(series, recall_floor=recall_floor, shrinkage=shrinkage, borrow=borrow)
    rows = []
    for s, rule in zip(series, rules, strict=True):
        _, second = s.split()
        fp0, hit0 = score(alert_times(second.times, second.values, rule.mean + 3 * rule.std),
                          second.windows)
        fp1, hit1 = score(alert_times(second.times, second.values, rule.threshold,
                                      rule.for_seconds), second.windows)
        rows.append({
            "series": s.name, "category": s.category, "days": second.days,
            "windows": len(second.windows), "fp_before": fp0, "fp_after": fp1,
            "detected_before": hit0, "detected_after": hit1, "z_after": rule.z,
            "for_after": rule.for_seconds, "tuned": rule.tuned,
        })
    return pd.DataFrame(rows)


def summarize_nab(table: pd.DataFrame) -> dict[str, float]:
    """Totals over all series: false positives per day and window recall, before and after."""
    days = float(table["days"].sum())
    windows = int(table["windows"].sum())
    fp0, fp1 = int(table["fp_before"].sum()), int(table["fp_after"].sum())
    return {
        "series": len(table), "days": days, "windows": windows,
        "fp_before": fp0, "fp_after": fp1,
        "fp_per_day_before": fp0 / days if days else 0.0,
        "fp_per_day_after": fp1 / days if days else 0.0,
        "fp_reduction": 1 - fp1 / fp0 if fp0 else 0.0,
        "recall_before": int(table["detected_before"].sum()) / windows if windows else 1.0,
        "recall_after": int(table["detected_after"].sum()) / windows if windows else 1.0,
    }


def rules_to_thresholds(rules: Sequence[SeriesRule], *, alertname: str = "NABValueHigh",
                        generated_at: float | None = None) -> Thresholds:
    """The tuned series rules as a thresholds file (match: alertname + ``series``)."""
    return Thresholds(
        generated_at=generated_at, generated_by="triage.models.nab",
        rules=tuple(ThresholdRule({"alertname": alertname, "series": r.name},
                                  float(f"{r.threshold:.6g}"),
                                  for_seconds=r.for_seconds or None,
                                  source_rule=f"value > {r.mean + 3 * r.std:.6g}")
                    for r in rules if r.tuned))


# -- the pooled rule in each series' own scale (triage.models.series), fold by fold ----------

@dataclass(frozen=True, slots=True)
class Tables:
    """Per series: outcomes of every spec on its first half (tuning, standardised by the
    first half) and on its second half (scoring, standardised by the first half)."""

    series: tuple[NabSeries, ...]
    tune: tuple[Table, ...]
    test: tuple[Table, ...]


def outcome_tables(series: Sequence[NabSeries], specs: Sequence[RuleSpec] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Tables:
    """The outcome tables every fold is chosen and scored from (computed once)."""
    specs = list(specs) if specs is not None else spec_grid()
    if STATIC not in specs:
        specs.insert(0, STATIC)
    tune: list[Table] = []
    test: list[Table] = []
    for i, s in enumerate(series):
        first, second = s.split()
        tune.append(outcomes(first, first, specs))
        test.append(outcomes(second, first, specs))
        if progress is not None:
            progress(i + 1, len(series))
    return Tables(tuple(series), tuple(tune), tuple(test))


def folds(series: Sequence[NabSeries]) -> list[tuple[str, list[int], list[int]]]:
    """The evaluation's folds: ``(name, tuning series, scored series)`` by index.

    One leave-one-category-out fold per category (tuned on the others, scored on it), then
    the time split (every series tuned on its first half, scored on its second)."""
    cats = sorted({s.category for s in series})
    out = [(f"held out: {c}", [i for i, s in enumerate(series) if s.category != c],
            [i for i, s in enumerate(series) if s.category == c]) for c in cats]
    out.append(("time split", list(range(len(series))), list(range(len(series)))))
    return out


def evaluate_folds(tables: Tables, *, shrinkage: float = math.inf,
                   recall_floor: float = 0.99) -> pd.DataFrame:
    """Every fold of ``folds``: per scored series, the static rule (mean + 3 sigma of its
    first half), the previous per-series tuner (``fit_rules``, time split only: it has no
    rule for a series it never saw) and the pooled spec, on the second half.

    ``shrinkage`` < inf lets series with windows in their first half move their ``k``
    toward their own (``shrink_series``), in the time split (a held-out category has no
    labels to move with).
    """
    series = tables.series
    previous = {r.name: r for r in fit_rules(series, recall_floor=recall_floor)}
    rows = []
    for name, train, scored in folds(series):
        choice = choose_spec([tables.tune[i] for i in train])
        time_split = name == "time split"
        for i in scored:
            s = series[i]
            first, second = s.split()
            spec = choice.spec
            if time_split and shrinkage != math.inf:
                spec = shrink_series(spec, tables.tune[i], shrinkage=shrinkage,
                                     windows=len(first.windows))
            if spec in tables.test[i]:
                fp1, hit1 = tables.test[i][spec]
            else:
                fp1, hit1 = outcomes(second, first, [spec])[spec]
            fp0, hit0 = tables.test[i][STATIC]
            if time_split:
                rule = previous[s.name]
                fpp, hitp = score(alert_times(second.times, second.values, rule.threshold,
                                              rule.for_seconds), second.windows)
            else:
                fpp, hitp = fp0, hit0
            rows.append({
                "fold": name, "series": s.name, "category": s.category, "days": second.days,
                "windows": len(second.windows), "fp_static": fp0, "detected_static": hit0,
                "fp_previous": fpp, "detected_previous": hitp, "fp_pooled": fp1,
                "detected_pooled": hit1, "spec": spec.describe(), "k": spec.k,
                "tuned_on": len(train),
            })
    return pd.DataFrame(rows)


def summarize_folds(table: pd.DataFrame) -> pd.DataFrame:
    """Per fold: false positives and windows detected by each rule, the reduction against
    the static rule, and ``miss`` where the pooled rule detects fewer windows than it."""
    agg = table.groupby("fold", sort=False).agg(
        series=("series", "count"), days=("days", "sum"), windows=("windows", "sum"),
        fp_static=("fp_static", "sum"), fp_previous=("fp_previous", "sum"),
        fp_pooled=("fp_pooled", "sum"), detected_static=("detected_static", "sum"),
        detected_previous=("detected_previous", "sum"),
        detected_pooled=("detected_pooled", "sum"), spec=("spec", "first"))
    agg["fp_reduction"] = [1 - b / a if a else math.nan
                           for a, b in zip(agg["fp_static"], agg["fp_pooled"], strict=True)]
    agg["fp_reduction_previous"] = [
        1 - b / a if a else math.nan
        for a, b in zip(agg["fp_static"], agg["fp_previous"], strict=True)]
    agg["miss"] = agg["detected_pooled"] < agg["detected_static"]
    return agg.reset_index()


# -- the same folds through the feedback path (``triage feedback import`` + ``triage tune``) --

def feedback_records(s: NabSeries, part: NabSeries, *, static: float,
                     baseline: Standardiser | None = None,
                     alertname: str = "NABValueHigh") -> list[dict[str, object]]:
    """The judgements a responder would have left on ``part`` of a series, as feedback
    records (``triage feedback import`` JSON Lines): one per alert of the static rule
    ``value >= static`` (a run of samples over it), ``actionable`` when it started inside a
    labelled window (``incident_id`` names the window), else ``noise``. ``value`` is the run's
    peak, ``duration`` its length; ``baseline`` adds the series' own ``baseline``/``scale``
    to ``context`` (what lets ``tune`` work in its units)."""
    over = part.values >= static
    if not over.any():
        return []
    edges = np.diff(np.concatenate(([0], over.astype(np.int8), [0])))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    step = float(np.median(np.diff(part.times))) if len(part.times) > 1 else 0.0
    context: dict[str, object] = {}
    if baseline is not None:
        context = {"baseline": baseline.threshold(0.0), "scale": baseline.spread}
    out: list[dict[str, object]] = []
    for a, b in zip(starts.tolist(), ends.tolist(), strict=True):
        at = float(part.times[a])
        window = next((i for i, (lo, hi) in enumerate(part.windows) if lo <= at <= hi), None)
        out.append({
            "at": at, "label": "actionable" if window is not None else "noise",
            "alertname": alertname, "service": s.name, "labels": {"category": s.category},
            "value": float(part.values[a:b].max()), "threshold": static,
            "duration": float(part.times[b - 1] - part.times[a]) + step,
            "incident_id": "" if window is None else
            f"{s.name}#{window}", "source_rule": f"value > {static:.6g}",
            "context": context,
        })
    return out


def evaluate_feedback_folds(series: Sequence[NabSeries], *, with_baseline: bool,
                            min_samples: int = 20) -> pd.DataFrame:
    """The folds of ``folds`` through ``tune_thresholds`` (what ``triage tune`` runs, with
    its defaults): judgements from the tuning series' first halves, the thresholds file it
    writes replayed exactly on the scored series' second halves (``triage.models.series
    .fire``). A scored series the file has no rule of its own for gets the group's default
    (``for``/``keep_firing_for`` only) over its static rule. Columns as ``evaluate_folds``
    (``fp_pooled``: the tuned file's)."""
    from triage.models.feedback import feedback_from_dict
    from triage.models.tuning import tune_thresholds

    prepared = []
    for s in series:
        first, second = s.split()
        static = float(first.values.mean() + BASELINE_Z * (first.values.std() or 1.0))
        base = Standardiser.fit(first.times, first.values, "mad") if with_baseline else None
        records = [feedback_from_dict(r).to_row()
                   for r in feedback_records(s, first, static=static, baseline=base)]
        prepared.append((s, second, static, records))
    rows = []
    for name, train, scored in folds(series):
        history = pd.DataFrame([r for i in train for r in prepared[i][3]])
        result = (tune_thresholds(history, min_samples=min_samples) if len(history)
                  else None)
        thresholds = result.to_thresholds() if result is not None else Thresholds()
        for i in scored:
            s, second, static, _ = prepared[i]
            rule = thresholds.lookup({"alertname": "NABValueHigh", "service": s.name,
                                      "category": s.category})
            cut = static if rule is None or rule.threshold is None else rule.threshold
            if rule is not None and rule.threshold_z is not None and with_baseline:
                # the gate's threshold_z, with the baseline the alert would carry
                first, _ = s.split()
                base = Standardiser.fit(first.times, first.values, "mad")
                cut = max(cut, base.threshold(rule.threshold_z))
            f = (rule.for_seconds or 0.0) if rule is not None else 0.0
            keep = (rule.keep_firing_for or 0.0) if rule is not None else 0.0
            fp1, hit1 = score(fire(second.times, second.values >= cut, f, keep),
                              second.windows)
            fp0, hit0 = score(fire(second.times, second.values >= static), second.windows)
            rows.append({
                "fold": name, "series": s.name, "category": s.category, "days": second.days,
                "windows": len(second.windows), "fp_static": fp0, "detected_static": hit0,
                "fp_previous": fp0, "detected_previous": hit0, "fp_pooled": fp1,
                "detected_pooled": hit1,
                "spec": "none" if rule is None else rule.key, "k": cut, "tuned_on": len(train),
            })
    return pd.DataFrame(rows)


# -- tuning series a user exported (``triage tune-series``) ----------------------------------

def read_series(paths: Iterable[Path], windows_file: Path) -> list[NabSeries]:
    """CSV files of ``timestamp,value`` (RFC 3339 or epoch seconds) and a JSON object of
    labelled windows per file, ``{"name.csv": [[start, end], ...]}`` as NAB's
    ``combined_windows.json`` (a key matches a file by its path's ending, so NAB's
    ``category/name.csv`` keys work). A file the windows do not name has none. Raises
    ``ValueError`` naming the file and what is wrong."""
    try:
        windows = json.loads(Path(windows_file).read_text())
    except (OSError, ValueError) as exc:
        raise ValueError(f"{windows_file}: {exc}") from None
    if not isinstance(windows, dict):
        raise ValueError(f"{windows_file}: expected an object of file name -> windows")
    out: list[NabSeries] = []
    for path in paths:
        path = Path(path)
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: {exc}") from None
        if not {"timestamp", "value"} <= set(frame.columns):
            raise ValueError(f"{path}: expected the columns timestamp,value, got "
                             f"{','.join(map(str, frame.columns))}")
        stamps = frame["timestamp"]
        if pd.api.types.is_numeric_dtype(stamps):
            times = stamps.to_numpy(dtype=float)
        else:
            parsed = pd.to_datetime(stamps, utc=True, errors="coerce")
            if parsed.isna().any():
                row = int(parsed.isna().to_numpy().argmax())
                raise ValueError(f"{path}: row {row + 2}: timestamp {stamps.iloc[row]!r} "
                                 "is not a time")
            times = ((parsed - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)).to_numpy()
        values = pd.to_numeric(frame["value"], errors="coerce").to_numpy(dtype=float)
        if len(values) < 10 or not np.isfinite(values).all():
            raise ValueError(f"{path}: needs at least 10 finite values")
        key = next((k for k in sorted(windows) if path.as_posix().endswith(k)), None)
        spans = tuple((_epoch(a), _epoch(b)) for a, b in windows.get(key, [])) if key else ()
        name = key if key is not None else f"{path.parent.name}/{path.name}"
        order = np.argsort(times, kind="stable")
        out.append(NabSeries(name, times[order].astype(float), values[order], spans))
    return out


def _epoch(value: object) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return float(pd.Timestamp(str(value), tz="UTC").timestamp())


@dataclass(frozen=True, slots=True)
class SeriesTuning:
    """``tune_series``' result: the pooled spec and, per series, its rule and evidence."""

    choice: PooledChoice
    table: pd.DataFrame

    def thresholds(self, alertname: str, *, generated_by: str | None = None,
                   generated_at: float | None = None) -> Thresholds:
        """One rule per series (``match``: alertname and ``series``)."""
        spec = self.choice.spec
        return Thresholds(generated_at=generated_at, generated_by=generated_by, rules=tuple(
            ThresholdRule({"alertname": alertname, "series": str(row.series)},
                          float(f"{row.threshold_after:.6g}"),
                          for_seconds=spec.for_seconds or None,
                          keep_firing_for=spec.keep_seconds or None,
                          source_rule=f"value > {row.threshold_before:.6g}")
            for row in self.table.itertuples()))


def tune_series(series: Sequence[NabSeries], *, shrinkage: float = 5.0) -> SeriesTuning:
    """The pooled spec over all of ``series`` (their whole length: for production, not for
    measuring; ``evaluate_folds`` measures), each series' threshold in its own units and
    what it does on its history: false positives and windows detected, before and after."""
    specs = spec_grid()
    tables = [outcomes(s, s, specs) for s in series]
    choice = choose_spec(tables)
    rows = []
    for s, table in zip(series, tables, strict=True):
        spec = shrink_series(choice.spec, table, shrinkage=shrinkage, windows=len(s.windows))
        fp1, hit1 = (table[spec] if spec in table else outcomes(s, s, [spec])[spec])
        fp0, hit0 = table[STATIC]
        std = Standardiser.fit(s.times, s.values, spec.scale)
        static = Standardiser.fit(s.times, s.values, "sigma").threshold(BASELINE_Z)
        rows.append({"series": s.name, "windows": len(s.windows), "fp_before": fp0,
                     "fp_after": fp1, "detected_before": hit0, "detected_after": hit1,
                     "threshold_before": static, "threshold_after": std.threshold(spec.k),
                     "k": spec.k})
    return SeriesTuning(choice, pd.DataFrame(rows))
