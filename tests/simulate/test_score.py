"""The scorer on hand-made truth / incident pairs whose scores are worked out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from triage.core.timeutil import format_timestamp
from triage.simulate.score import QUALITY_TARGETS, meets, reliability, score


def ev(kind: str, at: float, iid: str, fps: list[str], *, root: str = "db",
       priority: str = "P1", suspects: list[str] | None = None,
       merged_into: str | None = None, candidates: list[Any] | None = None,
       confidence: float = 0.9) -> dict[str, Any]:
    rc: dict[str, Any] = {"service": root, "confidence": confidence, "reason": "test"}
    if candidates:
        rc["candidates"] = [c if isinstance(c, str) else {"service": c[0]} for c in candidates]
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
       candidates=[("api",), ("web",)]),
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
    assert s["pages_per_incident"] == pytest.approx(4 / 3)
    assert s["noise_page_share"] == pytest.approx(0.25)
    assert s["noise_pages_p1p2"] == 0  # i4 is P4
    assert rows["t1"]["root_confidence"] == 0.9 and rows["t1"]["silent_root"] is None
    assert s["root_cause_top1_silent"] is None  # truth says nothing of silent roots
    assert meets(s) == {"compression": True, "incident_recall": False,
                        "root_cause_top1": False, "priority_accuracy": False,
                        "suspect_top1": False, "pages_per_incident": False,
                        "noise_page_share": False, "noise_pages_p1p2": True}


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


def test_the_grouping_is_the_final_one_after_a_split() -> None:
    # i1 first holds t1 and t2's alerts, then splits t2's away into i2
    truth = {"counts": {"alerts_in": 8}, "incidents": [
        {"id": "t1", "root_cause": "db", "priority": "P1", "first_alert_at": 0.0,
         "fingerprints": ["a", "b"]},
        {"id": "t2", "root_cause": "mq", "priority": "P2", "first_alert_at": 5.0,
         "fingerprints": ["c", "d"]}],
        "alerts": {**{f: {"incident": "t1"} for f in "ab"},
                   **{f: {"incident": "t2"} for f in "cd"}}}
    events = [ev("incident.created", 30, "i1", ["a", "b", "c", "d"], root="db"),
              ev("incident.updated", 60, "i1", ["a", "b"], root="db"),
              ev("incident.created", 60, "i2", ["c", "d"], root="mq", priority="P2")]
    s = score(truth, events)
    assert s["pages"] == 2 and s["pages_per_incident"] == 1.0
    # in the first-seen grouping c and d would stay in i1: purity 1/2, not 1
    assert s["grouping_purity"] == 1.0 and s["pairwise_f1"] == 1.0
    rows = {r["id"]: r for r in s["incidents"]}
    assert rows["t2"]["incident"] == "i2" and rows["t2"]["split_into"] == 1
    assert rows["t2"]["root_top1"] and rows["t1"]["root_top1"]
    assert s["priority_accuracy"] == 1.0
    # ... but t2 was detected by i1's page at 30 s
    assert rows["t2"]["detect_s"] == 25.0


def test_a_split_that_is_undone_keeps_the_last_listing() -> None:
    truth = {"counts": {"alerts_in": 4}, "incidents": [
        {"id": "t", "root_cause": "db", "priority": "P1", "first_alert_at": 0.0,
         "fingerprints": ["a", "b"]}],
        "alerts": {f: {"incident": "t"} for f in "ab"}}
    events = [ev("incident.created", 30, "i1", ["a", "b"]),
              ev("incident.updated", 40, "i1", ["a"]),
              ev("incident.created", 40, "i2", ["b"], root="web"),
              ev("incident.updated", 50, "i2", ["b"], root="web", merged_into="i1"),
              ev("incident.updated", 50, "i1", ["a", "b"])]
    s = score(truth, events)
    assert s["pages"] == 2 and s["grouping_purity"] == 1.0 and s["pairwise_recall"] == 1.0
    row = s["incidents"][0]
    assert row["incident"] == "i1" and row["split_into"] == 1 and row["root_top1"]


def test_a_merge_follows_the_survivor_even_when_it_never_relists() -> None:
    truth = {"counts": {"alerts_in": 6}, "incidents": [
        {"id": "t", "root_cause": "db", "cause_change": "c1", "priority": "P2",
         "first_alert_at": 0.0, "fingerprints": ["a", "b", "c"]}],
        "alerts": {f: {"incident": "t"} for f in "abc"}}
    events = [ev("incident.created", 30, "i1", ["a"], priority="P2"),
              ev("incident.created", 35, "i2", ["b", "c"], root="web", priority="P3"),
              # i2's merge event is the last to list b and c: they count in i1
              ev("incident.updated", 60, "i2", ["b", "c"], root="web", merged_into="i1"),
              ev("incident.updated", 61, "i1", ["a"], priority="P2", suspects=["c1"],
                 candidates=["db", "web"], confidence=0.7)]
    s = score(truth, events)
    assert s["pages"] == 2 and s["pages_per_incident"] == 2.0
    assert s["grouping_purity"] == 1.0 and s["pairwise_f1"] == 1.0
    row = s["incidents"][0]
    assert row["incident"] == "i1" and row["split_into"] == 1 and row["alerts_in_matched"] == 3
    assert row["root_top1"] and row["root_top3"] and row["suspect_top1"]
    assert row["root_confidence"] == 0.7 and row["triage_priority"] == "P2"
    assert meets(s, QUALITY_TARGETS)["pages_per_incident"] is False


def test_a_noise_page_at_p2_is_counted() -> None:
    truth = {"counts": {"alerts_in": 10}, "incidents": [
        {"id": "t", "root_cause": "db", "priority": "P1", "first_alert_at": 0.0,
         "fingerprints": ["a"], "silent_root": True}],
        "alerts": {"a": {"incident": "t"}, "n1": {"incident": None, "noise": "noisy_rule"},
                   "n2": {"incident": None, "noise": "spike"},
                   "n3": {"incident": None, "noise": "flapping"}}}
    events = [ev("incident.created", 30, "i1", ["a"], root="db", confidence=0.4),
              ev("incident.created", 40, "n", ["n1"], root="cpu", priority="P3"),
              ev("incident.updated", 50, "n", ["n1", "n2"], root="cpu", priority="P2"),
              ev("incident.created", 60, "m", ["n3"], root="x", priority="P4"),
              # an update that pages again (an escalated recurrence) is a repage
              {**ev("incident.updated", 90, "m", ["n3"], root="x", priority="P1"), "page": True}]
    s = score(truth, events)
    assert s["pages"] == 3 and s["noise_pages"] == 2 and s["repages"] == 1
    assert s["noise_page_share"] == pytest.approx(2 / 3)
    assert s["noise_pages_p1p2"] == 2  # n ended at P2, m at P1 (what they were paged at is moot)
    assert s["root_cause_top1_silent"] == 1.0 and s["incidents_with_silent_root"] == 1
    assert s["incidents"][0]["silent_root"] is True
    met = meets(s, QUALITY_TARGETS)
    assert met["noise_pages_p1p2"] is False and met["noise_page_share"] is False
    assert met["incident_recall"] is True and met["suspect_top1"] is None


def test_noise_in_a_real_incident_is_not_a_noise_page() -> None:
    truth = {"counts": {"alerts_in": 3}, "incidents": [
        {"id": "t", "root_cause": "db", "priority": "P1", "first_alert_at": 0.0,
         "fingerprints": ["a"]}],
        "alerts": {"a": {"incident": "t"}, "n": {"incident": None, "noise": "spike"}}}
    # the page held a real alert at first; it later gave it away and kept only noise
    events = [ev("incident.created", 30, "i1", ["a", "n"], priority="P1"),
              ev("incident.updated", 60, "i1", ["n"], priority="P1"),
              ev("incident.created", 60, "i2", ["a"])]
    s = score(truth, events)
    assert s["noise_pages"] == 0 and s["noise_pages_p1p2"] == 0
    assert s["incidents"][0]["incident"] == "i2"


def test_candidates_may_be_names_or_objects() -> None:
    truth = {"counts": {"alerts_in": 2}, "incidents": [
        {"id": "t", "root_cause": "db", "priority": "P1", "first_alert_at": 0.0,
         "fingerprints": ["a"]}], "alerts": {"a": {"incident": "t"}}}
    for cands in (["web", "db"], [("web",), ("db",)]):
        s = score(truth, [ev("incident.created", 30, "i", ["a"], root="web",
                             candidates=cands)])
        assert s["root_cause_top1"] == 0.0 and s["root_cause_top3"] == 1.0


def test_reliability_bins_brier_and_ece() -> None:
    pairs = [(0.95, True)] * 9 + [(0.95, False)] + [(0.5, True), (0.5, False)] + [(0.0, False)]
    r = reliability(pairs, bins=10)
    assert r["n"] == 13 and sum(b["count"] for b in r["bins"]) == 13
    top = r["bins"][-1]
    assert top["count"] == 10 and top["accuracy"] == pytest.approx(0.9)
    assert r["bins"][5]["count"] == 2 and r["bins"][5]["accuracy"] == 0.5
    assert r["bins"][0]["count"] == 1 and r["bins"][0]["accuracy"] == 0.0
    assert r["brier"] == pytest.approx((9 * 0.05**2 + 0.95**2 + 2 * 0.25) / 13)
    assert r["ece"] == pytest.approx(10 * 0.05 / 13)
    assert reliability([])["brier"] is None and reliability([], bins=3)["ece"] is None
