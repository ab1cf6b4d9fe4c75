"""The scorer on hand-made truth / incident pairs whose scores are worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from triage.core.timeutil import format_timestamp
from triage.simulate.score import meets, score


def ev(kind: str, at: float, iid: str, fps: list[str], *, root: str = "db",
       priority: str = "P1", suspects: list[str] | None = None,
       merged_into: str | None = None, candidates: list[str] | None = None) -> dict[str, Any]:
    rc: dict[str, Any] = {"service": root, "confidence": 0.9, "reason": "test"}
    if candidates:
        rc["candidates"] = [{"service": c} for c in candidates]
    return {"type": kind, "at": format_timestamp(at), "event_id": f"{iid}:{at}",
            "incident": {"id": iid, "status": "merged" if merged_into else "open",
                         "priority": priority, "fingerprints": fps, "root_cause": rc,
                         "suspect_changes": [{"id": s} for s in suspects or []],
                         "merged_into": merged_into}}


TRUTH = {
    "counts": {"alerts_in": 100},
    "incidents": [
        {"id": "t1", "root_cause": "db", "cause_change": "c1", "priority": "P1",
         "first_alert_at": 0.0, "fingerprints": ["a", "b", "c"]},
        {"id": "t2", "root_cause": "web", "cause_change": None, "priority": "P3",
         "first_alert_at": 100.0, "fingerprints": ["d", "e"]},
        {"id": "t3", "root_cause": "q", "cause_change": None, "priority": "P2",
         "first_alert_at": 300.0, "fingerprints": ["f"]},
    ],
    "alerts": {**{f: {"incident": "t1", "noise": None} for f in "abc"},
               **{f: {"incident": "t2", "noise": None} for f in "de"},
               "f": {"incident": "t3", "noise": None},
               "n1": {"incident": None, "noise": "spike"},
               "n2": {"incident": None, "noise": "uncatalogued"}},
}

EVENTS = [
    ev("incident.created", 30, "i1", ["a", "b"], suspects=["c9", "c1"]),
    ev("incident.updated", 60, "i1", ["a", "b", "c", "n1"], suspects=["c9", "c1"]),
    ev("incident.created", 130, "i2", ["d"], root="web", priority="P2"),
    ev("incident.created", 140, "i3", ["e"], root="x", priority="P3"),
    ev("incident.updated", 150, "i3", ["e"], root="x", priority="P3", merged_into="i2"),
    ev("incident.updated", 150, "i2", ["d", "e"], root="api", priority="P2",
       candidates=["api", "web"]),
    ev("incident.created", 200, "i4", ["n2"], root="legacy", priority="P4"),
]


def test_every_metric_on_a_hand_made_pair() -> None:
    s = score(TRUTH, EVENTS)
    assert s["pages"] == 4
    assert s["compression_ratio"] == 25.0
    assert s["compression"] == pytest.approx(0.96)
    assert s["incident_recall"] == pytest.approx(2 / 3)
    assert s["noise_pages"] == 1  # i4; i1 holds noise n1 but also t1's alerts
    # clusters after merges: i1 {a b c n1}, i2 {d e} (e via i3), i4 {n2}
    assert s["grouping_purity"] == pytest.approx(6 / 7)
    assert s["pairwise_precision"] == pytest.approx(4 / 7)
    assert s["pairwise_recall"] == pytest.approx(1.0)
    assert s["pairwise_f1"] == pytest.approx(8 / 11)
    assert s["root_cause_top1"] == pytest.approx(0.5)  # t2's final root is api
    assert s["root_cause_top3"] == pytest.approx(1.0)  # ... with web among the candidates
    assert s["incidents_with_cause_change"] == 1
    assert s["suspect_top1"] == 0.0 and s["suspect_top3"] == 1.0
    assert s["priority_accuracy"] == pytest.approx(0.5)
    assert s["priority_confusion"] == {"P1": {"P1": 1}, "P2": {"missed": 1}, "P3": {"P2": 1},
                                       "P4": {}}
    assert s["detect_p50_s"] == 30.0 and s["detect_max_s"] == 30.0
    rows = {r["id"]: r for r in s["incidents"]}
    assert rows["t2"]["incident"] == "i2" and rows["t2"]["split_into"] == 1
    assert not rows["t3"]["recalled"]
    assert meets(s) == {"compression": True, "incident_recall": False,
                        "root_cause_top1": False, "priority_accuracy": False,
                        "suspect_top1": False}


def test_perfect_triage_scores_one() -> None:
    truth = {"counts": {"alerts_in": 10}, "incidents": [
        {"id": "t", "root_cause": "db", "cause_change": "c", "priority": "P2",
         "first_alert_at": 0.0, "fingerprints": ["a", "b"]}],
        "alerts": {"a": {"incident": "t"}, "b": {"incident": "t"}}}
    s = score(truth, [ev("incident.created", 31, "i", ["a", "b"], priority="P2",
                         suspects=["c"])])
    for key in ("incident_recall", "grouping_purity", "pairwise_f1", "root_cause_top1",
                "suspect_top1", "priority_accuracy"):
        assert s[key] == 1.0, key
    assert s["noise_pages"] == 0 and s["detect_p50_s"] == 31.0


def test_a_split_incident_matches_the_part_holding_most_alerts() -> None:
    truth = {"counts": {"alerts_in": 6}, "incidents": [
        {"id": "t", "root_cause": "db", "priority": "P1", "first_alert_at": 0.0,
         "fingerprints": ["a", "b", "c"]}],
        "alerts": {f: {"incident": "t"} for f in "abc"}}
    s = score(truth, [ev("incident.created", 30, "i1", ["a"], root="web"),
                      ev("incident.created", 40, "i2", ["b", "c"], root="db")])
    row = s["incidents"][0]
    assert row["incident"] == "i2" and row["split_into"] == 2 and row["root_top1"]
    # pairs a-b and a-c are split: 1 of 3 true pairs kept
    assert s["pairwise_recall"] == pytest.approx(1 / 3)
    assert s["pairwise_precision"] == 1.0


def test_no_events_means_nothing_recalled() -> None:
    s = score(TRUTH, [])
    assert s["pages"] == 0 and s["incident_recall"] == 0.0
    assert s["compression_ratio"] is None and s["root_cause_top1"] is None
