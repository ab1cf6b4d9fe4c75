"""Score triage's incident events against a simulation's truth. Pure functions, no I/O.

Alerts are matched by fingerprint: each incident event lists the fingerprints of its alerts,
and ``truth.json`` gives each fingerprint's true incident (or noise kind). The metrics:

* **compression**: alerts in / incidents paged (every ``incident.created`` is a page), and as
  a reduction, ``1 - pages / alerts in``; **pages per incident** (pages / true incidents);
* **incident recall**: true incidents with at least one alert in a paged incident;
* **noise pages**: paged incidents whose alerts (every alert they ever listed) are all noise;
  their share of the pages, and how many of them ended at P1 or P2;
* **grouping**: purity and pairwise precision / recall / F1 of the *final* grouping of
  alerts, where every noise alert is a class of its own;
* for each recalled true incident, its *matched* incident (the paged incident of the final
  grouping holding most of its alerts), in its final state: **root cause** top-1 (and top-3
  from the ranked ``root_cause.candidates``, names or ``{"service": ...}`` objects; without
  them top-3 equals top-1), the root's stated ``confidence`` (per row, for calibration: see
  ``reliability``), top-1 over the incidents whose root raised no alert (truth's
  ``silent_root``), **suspect change** top-1 and top-3 (over incidents with a causal change),
  **priority** accuracy and its confusion matrix;
* **time to detect**: from the first delivery of a true incident's alerts to the first event
  of a paged incident containing one of them.

**The final grouping.** Incidents merge (an event with ``merged_into``) and split (an
``incident.updated`` whose ``fingerprints`` no longer hold some alerts, which appear in a new
incident). Each fingerprint belongs to the *last* paged incident whose event listed it,
followed through merges to the surviving incident (a fingerprint no paged incident ever
listed keeps the last incident that did). Before splits existed, a fingerprint counted in the
*first* incident it appeared in; a split incident would then have kept the alerts it gave
away. Matching, recall and the per-incident ``split_into`` use the same final grouping.

``meets`` checks a result against targets: minimums (``TARGETS``, as before), maximums
(``MAX_TARGETS``: pages per incident, noise page share, noise pages at P1/P2), or any mapping
of ``key -> (">=" | "<=", bound)`` such as ``QUALITY_TARGETS``, the quality issue's set.

>>> truth = {"counts": {"alerts_in": 40}, "incidents": [
...     {"id": "t1", "root_cause": "db", "cause_change": "c1", "priority": "P1",
...      "first_alert_at": 0.0, "fingerprints": ["a", "b"]}],
...     "alerts": {"a": {"incident": "t1"}, "b": {"incident": "t1"},
...                "n": {"incident": None, "noise": "spike"}}}
>>> ev = {"type": "incident.created", "at": "1970-01-01T00:00:30Z", "incident": {
...     "id": "i1", "status": "open", "priority": "P1", "fingerprints": ["a", "b"],
...     "root_cause": {"service": "db", "confidence": 0.8}, "suspect_changes": [{"id": "c1"}],
...     "merged_into": None}}
>>> s = score(truth, [ev])
>>> s["compression_ratio"], s["incident_recall"], s["root_cause_top1"], s["detect_p50_s"]
(40.0, 1.0, 1.0, 30.0)
>>> s["pages_per_incident"], s["noise_page_share"], s["incidents"][0]["root_confidence"]
(1.0, 0.0, 0.8)
>>> meets(s, QUALITY_TARGETS)["pages_per_incident"]
True
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from triage.core.timeutil import parse_timestamp

PRIORITIES = ("P1", "P2", "P3", "P4")
TARGETS: dict[str, float] = {"compression": 0.95, "incident_recall": 0.99,
                             "root_cause_top1": 0.90, "priority_accuracy": 0.90,
                             "suspect_top1": 0.90}
"""Minimum targets (a value meets its target when ``value >= target``)."""
MAX_TARGETS: dict[str, float] = {"pages_per_incident": 1.2, "noise_page_share": 0.10,
                                 "noise_pages_p1p2": 0.0}
"""Maximum targets (a value meets its target when ``value <= target``)."""
Bound = tuple[Literal[">=", "<="], float]
QUALITY_TARGETS: dict[str, Bound] = {
    "incident_recall": (">=", 0.99), "root_cause_top1": (">=", 0.90),
    "root_cause_top3": (">=", 0.97), "suspect_top1": (">=", 0.85),
    "pages_per_incident": ("<=", 1.2), "grouping_purity": (">=", 0.85),
    "noise_page_share": ("<=", 0.10), "noise_pages_p1p2": ("<=", 0.0)}
"""The incident-quality issue's targets, each with its direction (the quality benchmark's)."""


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _at(event: Mapping[str, Any]) -> float:
    t = parse_timestamp(event.get("at"), "at")
    return float(t) if t is not None else 0.0


def _service(candidate: Any) -> Any:
    """A candidate as events carry it: a service name, or an object with ``service``."""
    return candidate.get("service") if isinstance(candidate, Mapping) else candidate


class _Incidents:
    """Incident events folded into what the scorer needs."""

    def __init__(self, events: Iterable[Mapping[str, Any]]) -> None:
        self.fps: dict[str, set[str]] = defaultdict(set)  # every fingerprint ever listed
        self.last: dict[str, Mapping[str, Any]] = {}  # last state before any merge
        self.paged: dict[str, float] = {}
        self.repages = 0
        self.merged_into: dict[str, str] = {}
        self.fp_first_event: dict[str, float] = {}  # fp -> first event (paged incidents)
        self.events = 0
        listings: list[tuple[float, str, list[str]]] = []
        for ev in events:
            inc = ev.get("incident") or {}
            iid = inc.get("id")
            if not iid:
                continue
            self.events += 1
            at = _at(ev)
            fps = list(inc.get("fingerprints") or [])
            self.fps[iid].update(fps)
            if ev.get("type") == "incident.created":
                self.paged.setdefault(iid, at)
            elif ev.get("page"):
                self.repages += 1
            if inc.get("merged_into"):
                self.merged_into[iid] = inc["merged_into"]
            else:
                self.last[iid] = inc
            listings.append((at, iid, fps))
        # the final grouping: the last listing by a paged incident, else the last at all
        paged_last: dict[str, str] = {}
        any_last: dict[str, str] = {}
        for at, iid, fps in listings:
            paged = iid in self.paged or self.survivor(iid) in self.paged
            for fp in fps:
                any_last[fp] = iid
                if paged:
                    paged_last[fp] = iid
                    if fp not in self.fp_first_event or at < self.fp_first_event[fp]:
                        self.fp_first_event[fp] = at
        self.fp_cluster: dict[str, str] = {
            fp: self.survivor(paged_last.get(fp, iid)) for fp, iid in any_last.items()}

    def survivor(self, iid: str) -> str:
        seen = {iid}
        while iid in self.merged_into and self.merged_into[iid] not in seen:
            iid = self.merged_into[iid]
            seen.add(iid)
        return iid

    def clusters(self) -> dict[str, set[str]]:
        """Surviving incident id -> its fingerprints in the final grouping."""
        out: dict[str, set[str]] = defaultdict(set)
        for fp, cid in self.fp_cluster.items():
            out[cid].add(fp)
        return out

    def cluster_paged(self) -> set[str]:
        return {self.survivor(i) for i in self.paged}

    def final(self, iid: str) -> Mapping[str, Any]:
        """The incident's last state (the survivor's, if it merged)."""
        return self.last.get(self.survivor(iid)) or self.last.get(iid) or {}


def score(truth: Mapping[str, Any], events: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Every metric for ``events`` (incident events, in order) against ``truth``."""
    inc = _Incidents(events)
    alerts: Mapping[str, Mapping[str, Any]] = truth.get("alerts", {})
    true_incidents = list(truth.get("incidents", []))
    alerts_in = int(truth.get("counts", {}).get("alerts_in", 0))
    pages = len(inc.paged)

    def label(fp: str) -> str:
        a = alerts.get(fp)
        if a is None:
            return "unknown:" + fp
        return str(a["incident"]) if a.get("incident") else "noise:" + fp

    # noise pages: paged incidents whose own alerts are all noise (or unknown)
    noise_paged = [iid for iid in inc.paged
                   if inc.fps[iid] and all(label(fp).startswith(("noise:", "unknown:"))
                                           for fp in inc.fps[iid])]
    noise_pages = len(noise_paged)
    noise_p1p2 = sum(1 for iid in noise_paged
                     if (inc.last.get(iid) or inc.final(iid)).get("priority") in ("P1", "P2"))
    # grouping over the final clusters
    clusters = inc.clusters()
    table: Counter[tuple[str, str]] = Counter()
    for cid, fps in clusters.items():
        for fp in fps:
            table[(cid, label(fp))] += 1
    n_items = sum(table.values())
    best: dict[str, int] = defaultdict(int)
    for (cid, _), n in table.items():
        best[cid] = max(best[cid], n)
    purity = sum(best.values()) / n_items if n_items else 1.0
    by_cluster: Counter[str] = Counter()
    by_class: Counter[str] = Counter()
    for (cid, cls), n in table.items():
        by_cluster[cid] += n
        by_class[cls] += n
    tp = sum(_pairs(n) for n in table.values())
    pred = sum(_pairs(n) for n in by_cluster.values())
    real = sum(_pairs(n) for n in by_class.values())
    precision = tp / pred if pred else 1.0
    recall_pairs = tp / real if real else 1.0
    f1 = (2 * precision * recall_pairs / (precision + recall_pairs)
          if precision + recall_pairs else 0.0)

    paged_clusters = inc.cluster_paged()
    rows: list[dict[str, Any]] = []
    confusion: dict[str, Counter[str]] = {p: Counter() for p in PRIORITIES}
    detect: list[float] = []
    for t in true_incidents:
        true_fps: list[str] = list(t.get("fingerprints") or [])
        # the paged incidents of the final grouping that hold its alerts
        holders: Counter[str] = Counter()
        for fp in true_fps:
            held = inc.fp_cluster.get(fp)
            if held is not None and held in paged_clusters:
                holders[held] += 1
        row: dict[str, Any] = {"id": t["id"], "alerts": len(true_fps),
                               "root_cause": t["root_cause"], "cause_change": t.get("cause_change"),
                               "priority": t.get("priority"), "recalled": bool(holders),
                               "silent_root": t.get("silent_root")}
        if not holders:
            confusion.setdefault(t.get("priority") or "P4", Counter())["missed"] += 1
            rows.append(row)
            continue
        matched = min(holders, key=lambda s: (-holders[s], inc.paged.get(s, float("inf")), s))
        final = inc.final(matched)
        root = (final.get("root_cause") or {})
        candidates = [_service(c) for c in root.get("candidates") or []] or [root.get("service")]
        suspects = [s.get("id") for s in final.get("suspect_changes") or []]
        firsts = [inc.fp_first_event[fp] for fp in true_fps if fp in inc.fp_first_event]
        # event times are kept to the millisecond: never report a detection before the alert
        ttd = (max(0.0, round(min(firsts) - float(t["first_alert_at"]), 1))
               if firsts and t.get("first_alert_at") is not None else None)
        if ttd is not None:
            detect.append(ttd)
        confidence = root.get("confidence")
        row.update({
            "incident": matched, "split_into": len(holders), "alerts_in_matched": holders[matched],
            "matched_size": len(clusters.get(matched, ())),
            "triage_root_cause": root.get("service"), "root_top1": root.get("service")
            == t["root_cause"], "root_top3": t["root_cause"] in candidates[:3],
            "root_confidence": float(confidence) if isinstance(confidence, int | float)
            else None,
            "triage_suspects": suspects,
            "suspect_top1": bool(suspects) and suspects[0] == t.get("cause_change"),
            "suspect_top3": t.get("cause_change") in suspects[:3],
            "triage_priority": final.get("priority"),
            "detect_s": ttd})
        confusion.setdefault(t.get("priority") or "P4", Counter())[
            final.get("priority") or "none"] += 1
        rows.append(row)
    recalled = [r for r in rows if r["recalled"]]
    with_cause = [r for r in recalled if r.get("cause_change")]
    silent = [r for r in recalled if r.get("silent_root")]

    def rate(items: list[dict[str, Any]], key: str) -> float | None:
        return sum(1 for r in items if r.get(key)) / len(items) if items else None

    return {
        "alerts_in": alerts_in,
        "distinct_alerts": len(alerts),
        "true_incidents": len(true_incidents),
        "pages": pages,
        "repages": inc.repages,
        "events": inc.events,
        "compression_ratio": alerts_in / pages if pages else None,
        "compression": 1.0 - pages / alerts_in if alerts_in else None,
        "pages_per_incident": pages / len(true_incidents) if true_incidents else None,
        "incident_recall": len(recalled) / len(rows) if rows else None,
        "noise_pages": noise_pages,
        "true_pages": pages - noise_pages,
        "noise_page_share": noise_pages / pages if pages else None,
        "noise_pages_p1p2": noise_p1p2,
        "grouping_purity": purity,
        "pairwise_precision": precision,
        "pairwise_recall": recall_pairs,
        "pairwise_f1": f1,
        "root_cause_top1": rate(recalled, "root_top1"),
        "root_cause_top3": rate(recalled, "root_top3"),
        "root_cause_top1_silent": rate(silent, "root_top1"),
        "incidents_with_silent_root": len(silent),
        "suspect_top1": rate(with_cause, "suspect_top1"),
        "suspect_top3": rate(with_cause, "suspect_top3"),
        "incidents_with_cause_change": len(with_cause),
        "priority_accuracy": (sum(1 for r in recalled if r["triage_priority"] == r["priority"])
                              / len(recalled) if recalled else None),
        "priority_confusion": {k: dict(v) for k, v in sorted(confusion.items())},
        "detect_p50_s": statistics.median(detect) if detect else None,
        "detect_p90_s": _quantile(detect, 0.9),
        "detect_max_s": max(detect) if detect else None,
        "incidents": rows,
    }


def _quantile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[k]


def meets(result: Mapping[str, Any], targets: Mapping[str, Bound] | None = None
          ) -> dict[str, bool | None]:
    """Whether each target metric is met (None when there was nothing to measure).

    ``targets`` maps a key to ``(">=", minimum)`` or ``("<=", maximum)``; by default
    ``TARGETS`` (minimums) and ``MAX_TARGETS`` (maximums).

    >>> meets({"pages_per_incident": 1.5, "noise_pages_p1p2": 0},
    ...       {"pages_per_incident": ("<=", 1.2), "noise_pages_p1p2": ("<=", 0.0)})
    {'pages_per_incident': False, 'noise_pages_p1p2': True}
    """
    if targets is None:
        targets = {**{k: (">=", v) for k, v in TARGETS.items()},
                   **{k: ("<=", v) for k, v in MAX_TARGETS.items()}}
    out: dict[str, bool | None] = {}
    for key, (op, bound) in targets.items():
        value = result.get(key)
        if value is None:
            out[key] = None
        else:
            out[key] = value <= bound if op == "<=" else value >= bound
    return out


def reliability(pairs: Iterable[tuple[float, bool]], bins: int = 5) -> dict[str, Any]:
    """Calibration of stated confidences against outcomes: a reliability table (equal-width
    confidence bins: count, mean confidence, observed accuracy), the Brier score and the
    expected calibration error (ECE, the count-weighted gap between confidence and accuracy).

    >>> r = reliability([(0.9, True), (0.9, True), (0.1, False), (0.3, True)], bins=2)
    >>> [(b["count"], b["accuracy"]) for b in r["bins"]]
    [(2, 0.5), (2, 1.0)]
    >>> round(r["brier"], 3), round(r["ece"], 3)
    (0.13, 0.2)
    """
    items = [(min(1.0, max(0.0, float(c))), bool(ok)) for c, ok in pairs]
    table: list[dict[str, Any]] = []
    filled: list[tuple[list[tuple[float, bool]], float, float]] = []
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = [(c, ok) for c, ok in items
                  if lo <= c < hi or (b == bins - 1 and c == hi)]
        n = len(inside)
        conf = sum(c for c, _ in inside) / n if n else None
        acc = sum(ok for _, ok in inside) / n if n else None
        table.append({"lo": lo, "hi": hi, "count": n, "confidence": conf, "accuracy": acc})
        if conf is not None and acc is not None:
            filled.append((inside, conf, acc))
    n = len(items)
    brier = sum((c - ok) ** 2 for c, ok in items) / n if n else None
    ece = (sum(len(inside) * abs(c - a) for inside, c, a in filled) / n if n else None)
    return {"n": n, "bins": table, "brier": brier, "ece": ece,
            "accuracy": sum(ok for _, ok in items) / n if n else None,
            "mean_confidence": sum(c for c, _ in items) / n if n else None}
