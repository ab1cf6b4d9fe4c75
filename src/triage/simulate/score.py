"""Score triage's incident events against a simulation's truth. Pure functions, no I/O.

Alerts are matched by fingerprint: each incident event lists the fingerprints of its alerts,
and ``truth.json`` gives each fingerprint's true incident (or noise kind). The metrics:

* **compression**: alerts in / incidents paged (every ``incident.created`` is a page), and as
  a reduction, ``1 - pages / alerts in``;
* **incident recall**: true incidents with at least one alert in a paged incident;
* **noise pages**: paged incidents whose alerts are all noise;
* **grouping**: purity and pairwise precision / recall / F1 of the final grouping of alerts
  (merges followed to the surviving incident; an alert in several incidents counts in the
  first), where every noise alert is a class of its own;
* for each recalled true incident, its *matched* incident (the paged incident, after merges,
  holding most of its alerts), in its final state: **root cause** top-1 (and top-3 when the
  event carries ranked ``root_cause.candidates``, else equal to top-1), **suspect change**
  top-1 and top-3 (over incidents with a causal change), **priority** accuracy and its
  confusion matrix;
* **time to detect**: from the first delivery of a true incident's alerts to the first event
  of a paged incident containing one of them.

>>> truth = {"counts": {"alerts_in": 40}, "incidents": [
...     {"id": "t1", "root_cause": "db", "cause_change": "c1", "priority": "P1",
...      "first_alert_at": 0.0, "fingerprints": ["a", "b"]}],
...     "alerts": {"a": {"incident": "t1"}, "b": {"incident": "t1"},
...                "n": {"incident": None, "noise": "spike"}}}
>>> ev = {"type": "incident.created", "at": "1970-01-01T00:00:30Z", "incident": {
...     "id": "i1", "status": "open", "priority": "P1", "fingerprints": ["a", "b"],
...     "root_cause": {"service": "db"}, "suspect_changes": [{"id": "c1"}],
...     "merged_into": None}}
>>> s = score(truth, [ev])
>>> s["compression_ratio"], s["incident_recall"], s["root_cause_top1"], s["detect_p50_s"]
(40.0, 1.0, 1.0, 30.0)
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from typing import Any

from triage.core.timeutil import parse_timestamp

PRIORITIES = ("P1", "P2", "P3", "P4")
TARGETS: dict[str, float] = {"compression": 0.95, "incident_recall": 0.99,
                             "root_cause_top1": 0.90, "priority_accuracy": 0.90,
                             "suspect_top1": 0.90}


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _at(event: Mapping[str, Any]) -> float:
    t = parse_timestamp(event.get("at"), "at")
    return float(t) if t is not None else 0.0


class _Incidents:
    """Incident events folded into what the scorer needs."""

    def __init__(self, events: Iterable[Mapping[str, Any]]) -> None:
        self.fps: dict[str, set[str]] = defaultdict(set)
        self.last: dict[str, Mapping[str, Any]] = {}
        self.paged: dict[str, float] = {}
        self.merged_into: dict[str, str] = {}
        self.first_seen_fp: dict[str, tuple[float, int, str]] = {}  # fp -> (at, order, id)
        self.fp_first_event: dict[str, float] = {}  # fp -> first event (paged incidents)
        self.events = 0
        pending: list[tuple[float, str, list[str]]] = []
        for order, ev in enumerate(events):
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
            if inc.get("merged_into"):
                self.merged_into[iid] = inc["merged_into"]
            else:
                self.last[iid] = inc
            for fp in fps:
                if fp not in self.first_seen_fp:
                    self.first_seen_fp[fp] = (at, order, iid)
            pending.append((at, iid, fps))
        self.by_fp: dict[str, list[str]] = defaultdict(list)
        for iid, fps_of in self.fps.items():
            for fp in fps_of:
                self.by_fp[fp].append(iid)
        for at, iid, fps in pending:
            if iid in self.paged:
                for fp in fps:
                    if fp not in self.fp_first_event or at < self.fp_first_event[fp]:
                        self.fp_first_event[fp] = at

    def survivor(self, iid: str) -> str:
        seen = {iid}
        while iid in self.merged_into and self.merged_into[iid] not in seen:
            iid = self.merged_into[iid]
            seen.add(iid)
        return iid

    def clusters(self) -> dict[str, set[str]]:
        """Survivor id -> fingerprints, each fingerprint in its first incident only."""
        out: dict[str, set[str]] = defaultdict(set)
        for fp, (_, _, iid) in self.first_seen_fp.items():
            out[self.survivor(iid)].add(fp)
        return out

    def cluster_paged(self) -> set[str]:
        return {self.survivor(i) for i in self.paged}


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
    noise_pages = sum(1 for iid in inc.paged
                      if inc.fps[iid] and all(label(fp).startswith(("noise:", "unknown:"))
                                              for fp in inc.fps[iid]))
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
    fp_cluster = {fp: cid for cid, fps in clusters.items() for fp in fps}
    rows: list[dict[str, Any]] = []
    confusion: dict[str, Counter[str]] = {p: Counter() for p in PRIORITIES}
    detect: list[float] = []
    for t in true_incidents:
        true_fps: list[str] = list(t.get("fingerprints") or [])
        # all paged incidents (after merges) that hold any of its alerts, at any time
        holders: Counter[str] = Counter()
        for fp in true_fps:
            for iid in inc.by_fp.get(fp, ()):
                sid = inc.survivor(iid)
                if sid in paged_clusters:
                    holders[sid] += 1
        row: dict[str, Any] = {"id": t["id"], "alerts": len(true_fps),
                               "root_cause": t["root_cause"], "cause_change": t.get("cause_change"),
                               "priority": t.get("priority"), "recalled": bool(holders)}
        if not holders:
            confusion.setdefault(t.get("priority") or "P4", Counter())["missed"] += 1
            rows.append(row)
            continue
        matched = min(holders, key=lambda s: (-holders[s], inc.paged.get(s, float("inf")), s))
        final = inc.last.get(matched, {})
        root = (final.get("root_cause") or {})
        candidates = [c.get("service") for c in root.get("candidates") or []
                      if isinstance(c, Mapping)] or [root.get("service")]
        suspects = [s.get("id") for s in final.get("suspect_changes") or []]
        in_matched = sum(1 for fp in true_fps if fp_cluster.get(fp) == matched)
        firsts = [inc.fp_first_event[fp] for fp in true_fps if fp in inc.fp_first_event]
        # event times are kept to the millisecond: never report a detection before the alert
        ttd = (max(0.0, round(min(firsts) - float(t["first_alert_at"]), 1))
               if firsts and t.get("first_alert_at") is not None else None)
        if ttd is not None:
            detect.append(ttd)
        row.update({
            "incident": matched, "split_into": len(holders), "alerts_in_matched": in_matched,
            "matched_size": len(clusters.get(matched, ())),
            "triage_root_cause": root.get("service"), "root_top1": root.get("service")
            == t["root_cause"], "root_top3": t["root_cause"] in candidates[:3],
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

    def rate(items: list[dict[str, Any]], key: str) -> float | None:
        return sum(1 for r in items if r.get(key)) / len(items) if items else None

    return {
        "alerts_in": alerts_in,
        "distinct_alerts": len(alerts),
        "true_incidents": len(true_incidents),
        "pages": pages,
        "events": inc.events,
        "compression_ratio": alerts_in / pages if pages else None,
        "compression": 1.0 - pages / alerts_in if alerts_in else None,
        "incident_recall": len(recalled) / len(rows) if rows else None,
        "noise_pages": noise_pages,
        "true_pages": pages - noise_pages,
        "grouping_purity": purity,
        "pairwise_precision": precision,
        "pairwise_recall": recall_pairs,
        "pairwise_f1": f1,
        "root_cause_top1": rate(recalled, "root_top1"),
        "root_cause_top3": rate(recalled, "root_top3"),
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


def meets(result: Mapping[str, Any]) -> dict[str, bool | None]:
    """Whether each target metric is met (None when there was nothing to measure)."""
    out: dict[str, bool | None] = {}
    for key, target in TARGETS.items():
        value = result.get(key)
        out[key] = None if value is None else value >= target
    return out
