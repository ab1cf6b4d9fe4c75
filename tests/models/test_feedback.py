from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from triage.errors import SchemaError
from triage.models.feedback import (
    COLUMNS,
    Feedback,
    FeedbackStore,
    feedback_from_dict,
    latest_labels,
    read_history,
)
from triage.simulate.feedback import simulate_feedback


def test_store_round_trip_keeps_every_field(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    fb = feedback_from_dict({
        "at": "2026-11-27T10:00:00Z", "label": "noise", "hint": "too_low",
        "labels": {"alertname": "HighCPU", "service": "cart", "tier": "1"},
        "value": 0.82, "threshold": 0.8, "duration": "3m", "fingerprint": "abc",
        "flap_count": 2, "repeat_count": 4, "recent_changes": 1, "responder": "ana",
        "context": {"incident": "i-1"},
    })
    assert store.append([fb]) == 1
    row = store.read().iloc[0]
    assert list(store.read().columns) == list(COLUMNS)
    assert (row["alertname"], row["service"], row["tier"], row["hint"]) == (
        "HighCPU", "cart", "1", "too_low")
    assert (row["value"], row["threshold"], row["duration"]) == (0.82, 0.8, 180.0)
    assert (row["flap_count"], row["repeat_count"], row["recent_changes"]) == (2, 4, 1.0)


def test_history_is_append_only(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    store.append([Feedback(at=1.0, label="noise", alertname="X")])
    with sqlite3.connect(tmp_path / "fb.db") as conn:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("UPDATE feedback SET label = 'actionable'")
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            conn.execute("DELETE FROM feedback")
    assert store.read()["label"].tolist() == ["noise"]


@pytest.mark.parametrize(("record", "field"), [
    ({"at": 0, "label": "noise"}, "alertname"),
    ({"at": 0, "label": "noise", "alertname": "X", "hint": "bad"}, "hint"),
    ({"at": 0, "label": "noise", "alertname": "X", "value": "high"}, "value"),
    ({"at": 0, "label": "noise", "alertname": "X", "duration": "soon"}, "duration"),
    ({"label": "noise", "alertname": "X"}, "at"),
])
def test_invalid_records_name_the_field(record: dict[str, object], field: str) -> None:
    with pytest.raises(SchemaError) as info:
        feedback_from_dict(record)
    assert info.value.field == field


def test_a_correction_is_appended_and_wins(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    store.append([Feedback(at=1.0, label="noise", alertname="X", fingerprint="f1"),
                  Feedback(at=2.0, label="actionable", alertname="X", fingerprint="f1"),
                  Feedback(at=3.0, label="noise", alertname="Y")])
    history = store.read()
    assert len(history) == 3
    assert latest_labels(history)["label"].tolist() == ["actionable", "noise"]


def test_read_history_reads_csv_and_jsonl_like_sqlite(tmp_path: Path) -> None:
    frame = simulate_feedback(days=1, seed=2)
    store = FeedbackStore(tmp_path / "fb.db")
    store.append_frame(frame)
    frame.to_csv(tmp_path / "fb.csv", index=False)
    frame.to_json(tmp_path / "fb.jsonl", orient="records", lines=True)
    from_db = read_history(tmp_path / "fb.db")
    for name in ("fb.csv", "fb.jsonl"):
        other = read_history(tmp_path / name)
        pd.testing.assert_series_equal(other["label"], from_db["label"])
        pd.testing.assert_series_equal(other["value"], from_db["value"])
    with pytest.raises(ValueError, match="unknown history format"):
        (tmp_path / "fb.txt").write_text("x")
        read_history(tmp_path / "fb.txt")


def test_simulated_history_is_deterministic_and_has_the_patterns() -> None:
    a, b = simulate_feedback(days=10, seed=5), simulate_feedback(days=10, seed=5)
    pd.testing.assert_frame_equal(a, b)
    assert not a.equals(simulate_feedback(days=10, seed=6))
    noise, real = a[a["label"] == "noise"], a[a["label"] == "actionable"]
    assert 0.6 < len(noise) / len(a) < 0.95  # most pages are noise, as responders report
    assert (noise["value"] / noise["threshold"]).median() < (
        real["value"] / real["threshold"]).median()
    assert noise["flap_count"].mean() > real["flap_count"].mean()
    assert real["recent_changes"].mean() > noise["recent_changes"].mean()
