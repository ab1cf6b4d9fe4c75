"""One alert rule for many series: tuned in each series' own scale, pooled across series.

A static rule (``value > 0.8``, or mean + 3 sigma fitted once) is a different rule on every
series it watches: what is 3 sigma on a quiet series is noise on a busy one, and a threshold
tuned on one series says nothing about the next. Here a rule is written in the series' own
units and tuned once for all the series of a rule group:

* **Scale.** Each series is standardised by statistics of its own history (never its labels):
  ``sigma`` (mean, standard deviation), ``mad`` (median, 1.4826 x median absolute deviation,
  robust to the anomalies themselves) or ``seasonal`` (the median of the same time of day
  over the history, and the MAD of what is left; used when the history holds
  ``SEASONAL_MIN_PERIODS`` days or more, else ``mad``). A rule fires when the standardised
  value is at least ``k``.
* **``for``** (fire only after the condition held that long) and **``keep_firing_for``**
  (Prometheus >= 2.42: once firing, an alert stays firing that long after the condition
  clears, so a series that flaps around its threshold pages once, not at each crossing).
* **Pooled choice.** One ``RuleSpec`` (scale, k, for, keep_firing_for) is chosen for all the
  training series together: the one with the fewest false positives such that *every*
  training series still detects every labelled window that its current rule detects (the
  actionable alerts responders saw). A per-series guard, not a pooled recall: a pooled floor
  lets a rule trade one series' windows for another's, and that trade did not hold on
  categories it was not tuned on (see BENCHMARKS.md). Ties go to the more sensitive spec.
* **Partial pooling** (``shrink_series``): a series with labelled history of its own may raise
  its ``k`` above the pooled one, by ``w = windows / (windows + shrinkage)`` of the way to the
  highest ``k`` that still detects all its own windows. A series with none borrows the
  pooled spec whole: it is never tuned blind, and never left untuned either.

An alert is the start of a firing episode (Prometheus semantics above). An alert outside
every labelled window is a false positive; a window with an alert starting in it is detected.
Everything here is pure (numpy); ``triage.models.nab`` reads the data and runs the folds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Final, Literal

import numpy as np

from triage.core.thresholds import format_duration

Scale = Literal["sigma", "mad", "seasonal"]
SCALES: Final[tuple[Scale, ...]] = ("sigma", "mad", "seasonal")
K_GRID: Final = (3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0)
FOR_GRID: Final = (0.0, 600.0, 1800.0)
# Up to 6 h, as ``triage tune``'s: a page kept open longer than a shift stops meaning "now",
# and the longer the keep, the likelier a noise page runs into a real incident and swallows
# it. (Longer was tried: through ``triage tune``, 12 h lost 4 of the 13 windows of the
# realTweets category held out; here 24 h chose what 6 h does. See BENCHMARKS.md.)
KEEP_GRID: Final = (0.0, 600.0, 1800.0, 3600.0, 3 * 3600.0, 6 * 3600.0)
DAY: Final = 86400.0
SEASONAL_MIN_PERIODS: Final = 3
SEASONAL_BINS: Final = 48  # half hours
MAD_TO_SIGMA: Final = 1.4826


@dataclass(frozen=True, slots=True, order=True)
class RuleSpec:
    """A rule in a series' own units: fire when the standardised value is >= ``k``
    for ``for_seconds``; once firing, keep firing ``keep_seconds`` after it clears."""

    scale: Scale = "sigma"
    k: float = 3.0
    for_seconds: float = 0.0
    keep_seconds: float = 0.0

    def describe(self) -> str:
        """``sigma z >= 3.5, for 10m, keep_firing_for 6h`` (what the report prints)."""
        text = f"{self.scale} z >= {self.k:g}"
        if self.for_seconds:
            text += f", for {format_duration(self.for_seconds)}"
        if self.keep_seconds:
            text += f", keep_firing_for {format_duration(self.keep_seconds)}"
        return text


STATIC: Final = RuleSpec("sigma", 3.0, 0.0, 0.0)
"""The usual static rule, mean + 3 sigma of the history: the baseline every result is beside."""


@dataclass(frozen=True, slots=True)
class Standardiser:
    """A series' own centre and scale, fitted on its history (values only, never labels).

    ``profile`` (seasonal only) is the centre per time-of-day bin.
    """

    scale: Scale
    center: float
    spread: float
    profile: tuple[float, ...] = ()

    @classmethod
    def fit(cls, times: np.ndarray, values: np.ndarray, scale: Scale) -> Standardiser:
        """Fit on a history.

        >>> v = np.array([1.0, 2.0, 3.0, 4.0, 100.0])
        >>> s = Standardiser.fit(np.arange(5.0), v, "mad")
        >>> s.center, round(s.spread, 3)
        (3.0, 1.483)
        """
        values = np.asarray(values, dtype=float)
        if scale == "sigma":
            return cls("sigma", float(values.mean()), float(values.std()) or 1.0)
        if scale == "seasonal" and len(times) and (
                times[-1] - times[0]) >= SEASONAL_MIN_PERIODS * DAY:
            bins = _bins(times)
            profile = np.full(SEASONAL_BINS, float(np.median(values)))
            for b in range(SEASONAL_BINS):
                here = values[bins == b]
                if len(here):
                    profile[b] = float(np.median(here))
            resid = values - profile[bins]
            return cls("seasonal", 0.0, _mad(resid, values), tuple(profile.tolist()))
        center = float(np.median(values))
        return cls("mad" if scale != "seasonal" else "seasonal", center,
                   _mad(values - center, values))

    def z(self, times: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The standardised values."""
        values = np.asarray(values, dtype=float)
        if self.profile:
            center = np.asarray(self.profile)[_bins(times)]
            out: np.ndarray = (values - center) / self.spread
            return out
        z: np.ndarray = (values - self.center) / self.spread
        return z

    def threshold(self, k: float) -> float:
        """The rule's threshold in the series' own units (the seasonal one at its median)."""
        center = float(np.median(self.profile)) if self.profile else self.center
        return center + k * self.spread


def _bins(times: np.ndarray) -> np.ndarray:
    out: np.ndarray = ((np.asarray(times) % DAY) // (DAY / SEASONAL_BINS)).astype(int)
    return out


def _mad(resid: np.ndarray, values: np.ndarray) -> float:
    mad = MAD_TO_SIGMA * float(np.median(np.abs(resid - np.median(resid))))
    # A series constant half the time (MAD 0) falls back to its standard deviation.
    return mad or float(values.std()) or 1.0


def fire(times: np.ndarray, over: np.ndarray, for_seconds: float = 0.0,
         keep_seconds: float = 0.0) -> np.ndarray:
    """When a rule pages: the start of each firing episode, with Prometheus' ``for`` and
    ``keep_firing_for`` semantics over the samples where the condition holds (``over``).

    >>> t = np.arange(10) * 60.0
    >>> over = np.array([0, 1, 1, 0, 1, 0, 0, 0, 1, 0], dtype=bool)
    >>> fire(t, over).tolist(), fire(t, over, keep_seconds=120).tolist()
    ([60.0, 240.0, 480.0], [60.0, 480.0])
    >>> fire(t, over, for_seconds=60).tolist()
    [120.0]
    """
    if not over.any():
        return np.empty(0)
    edges = np.diff(np.concatenate(([0], over.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1)  # exclusive
    fired: list[float] = []
    until = -math.inf  # firing (kept) up to this time
    for s, e in zip(starts.tolist(), ends.tolist(), strict=True):
        if times[s] <= until:  # still firing: the episode goes on, no new page
            until = max(until, float(times[e - 1]) + keep_seconds)
            continue
        k = int(np.searchsorted(times[s:e], times[s] + for_seconds)) if for_seconds else 0
        if k < e - s:
            fired.append(float(times[s + k]))
            until = float(times[e - 1]) + keep_seconds
    return np.asarray(fired)


def score(alerts: np.ndarray, windows: Sequence[tuple[float, float]]) -> tuple[int, int]:
    """(false positives, windows detected) for alert times against labelled windows.

    >>> score(np.array([5.0, 50.0, 51.0]), [(0.0, 10.0), (20.0, 30.0)])
    (2, 1)
    """
    inside = np.zeros(len(alerts), dtype=bool)
    detected = 0
    for start, end in windows:
        hit = (alerts >= start) & (alerts <= end)
        inside |= hit
        detected += bool(hit.any())
    return int((~inside).sum()), detected


@dataclass(frozen=True, slots=True)
class Labelled:
    """A stretch of one series with its labelled windows (start, end), epoch seconds."""

    name: str
    times: np.ndarray
    values: np.ndarray
    windows: tuple[tuple[float, float], ...]


def grid(scales: Iterable[Scale] = SCALES, ks: Iterable[float] = K_GRID,
         fors: Iterable[float] = FOR_GRID, keeps: Iterable[float] = KEEP_GRID
         ) -> list[RuleSpec]:
    """Every candidate spec, most sensitive first within a scale."""
    return [RuleSpec(s, k, f, keep) for s in scales for k in sorted(ks) for f in sorted(fors)
            for keep in sorted(keeps)]


Table = dict[RuleSpec, tuple[int, int]]


def outcomes(part: Labelled, history: Labelled, specs: Sequence[RuleSpec]) -> Table:
    """(false positives, windows detected) of each spec on ``part``, standardised by
    ``history`` (the same stretch when tuning, the earlier one when scoring)."""
    out: Table = {}
    fitted: dict[Scale, np.ndarray] = {}
    for spec in specs:
        z = fitted.get(spec.scale)
        if z is None:
            std = Standardiser.fit(history.times, history.values, spec.scale)
            z = fitted[spec.scale] = std.z(part.times, part.values)
        out[spec] = score(fire(part.times, z >= spec.k, spec.for_seconds, spec.keep_seconds),
                          part.windows)
    return out


@dataclass(frozen=True, slots=True)
class PooledChoice:
    """The chosen spec, with what it and the current rule do on the training series."""

    spec: RuleSpec
    series: int
    fp_before: int
    fp_after: int
    windows_detected: int
    windows_needed: int
    feasible: int  # specs that kept every series' detected windows


def choose(tables: Sequence[Table], current: RuleSpec = STATIC) -> PooledChoice:
    """The spec with the fewest false positives over ``tables`` (one per training series)
    such that every series detects at least the windows ``current`` detects on it.
    ``current`` itself always qualifies, so there is always a choice."""
    if not tables:
        return PooledChoice(current, 0, 0, 0, 0, 0, 1)
    need = [t[current][1] for t in tables]
    best: tuple[int, int, RuleSpec] | None = None
    feasible = 0
    for i, spec in enumerate(tables[0]):
        if any(t[spec][1] < n for t, n in zip(tables, need, strict=True)):
            continue
        feasible += 1
        fp = sum(t[spec][0] for t in tables)
        if best is None or fp < best[0]:  # ties: the earlier (more sensitive) spec
            best = (fp, i, spec)
    assert best is not None, "the current rule must be among the candidates"
    return PooledChoice(
        best[2], len(tables), sum(t[current][0] for t in tables), best[0],
        sum(t[best[2]][1] for t in tables), sum(need), feasible)


def shrink_series(pooled: RuleSpec, own: Table, *, shrinkage: float = 5.0,
                  windows: int = 0) -> RuleSpec:
    """Partial pooling of one series' ``k`` toward the pooled spec (module doc).

    ``own`` holds the series' own tuning outcomes; ``windows`` its labelled windows. With
    none, the pooled spec is returned as is.
    """
    if windows <= 0 or shrinkage == math.inf:
        return pooled
    need = own.get(pooled, (0, 0))[1]
    if need == 0:
        return pooled
    ks = sorted(s.k for s in own if s.scale == pooled.scale and s.for_seconds
                == pooled.for_seconds and s.keep_seconds == pooled.keep_seconds
                and s.k >= pooled.k and own[s][1] >= need)
    top = ks[-1] if ks else pooled.k
    w = windows / (windows + shrinkage)
    return replace(pooled, k=pooled.k + w * (top - pooled.k))
