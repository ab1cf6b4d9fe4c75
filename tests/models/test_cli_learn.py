"""The learning-stage commands end to end, in process (typer's CliRunner)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from typer.testing import CliRunner

from triage.cli import app
from triage.core.thresholds import parse_thresholds
from triage.models.feedback import read_history

runner = CliRunner()


def invoke(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input)
    return result.exit_code, result.stdout, result.stderr


def test_feedback_add_import_show(tmp_path: Path) -> None:
    db = str(tmp_path / "fb.db")
    code, _, err = invoke("feedback", "add", "noise", "-a", "HighCPU", "--service", "cart",
                          "--value", "0.81", "--threshold", "0.8", "--duration", "2m",
                          "--hint", "too_low", "--at", "2026-11-27T10:00:00Z", "--store", db)
    assert code == 0, err
    lines = "\n".join(json.dumps({"at": 1_796_000_000 + i, "label": label, "alertname": "Disk",
                                  "service": "db"})
                      for i, label in enumerate(["noise", "actionable"]))
    assert invoke("feedback", "import", "-", "--store", db, input=lines)[0] == 0
    history = read_history(Path(db))
    assert history["label"].tolist() == ["noise", "noise", "actionable"]
    assert history.loc[0, "hint"] == "too_low" and history.loc[0, "duration"] == 120.0
    code, out, _ = invoke("feedback", "show", "--store", db)
    assert code == 0 and "HighCPU" in out and "Disk" in out


def test_bad_feedback_exits_2_and_writes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "fb.db"
    code, _, err = invoke("feedback", "add", "maybe", "-a", "X", "--store", str(db))
    assert code == 2 and "label" in err
    code, _, err = invoke("feedback", "import", "-", "--store", str(db),
                          input='{"at": 1, "label": "noise", "alertname": "X"}\n{"at": 2}\n')
    assert code == 2 and "-:2" in err
    assert not db.exists() or read_history(db).empty


def test_tune_writes_a_thresholds_file_and_suggests_rule_changes(tmp_path: Path) -> None:
    db, out = str(tmp_path / "fb.db"), tmp_path / "thresholds.yaml"
    assert invoke("feedback", "simulate", "--store", db, "--days", "20")[0] == 0
    code, _, err = invoke("tune", "--history", db, "--out", str(out))
    assert code == 0, err
    thresholds = parse_thresholds(yaml.safe_load(out.read_text()))
    assert thresholds.rules and thresholds.generated_by and thresholds.generated_by.startswith(
        "triage tune")
    assert all(r.recall is not None and r.recall >= 0.99 for r in thresholds.rules
               if r.threshold is not None)
    assert "suggested Prometheus rule changes" in err and "(was > " in err
    assert "fewer)" in err
    # Deterministic: the same history gives the same file.
    code, stdout, _ = invoke("tune", "--history", db, "--out", "-")
    assert code == 0 and stdout == out.read_text()


def test_tune_with_a_missing_history_exits_2(tmp_path: Path) -> None:
    code, _, err = invoke("tune", "--history", str(tmp_path / "nope.db"), "--out", "x.yaml")
    assert code == 2 and "nope.db" in err


def test_train_list_promote(tmp_path: Path) -> None:
    db, reg = str(tmp_path / "fb.db"), str(tmp_path / "registry")
    invoke("feedback", "simulate", "--store", db, "--days", "14")
    code, out, err = invoke("train", "--history", db, "--registry", reg)
    assert code == 0, err
    assert out.strip() == "v0001" and "PR-AUC" in err and "fitting" in err
    code, out, _ = invoke("model", "list", "--registry", reg, "--json")
    listed = json.loads(out)
    assert [(m["version"], m["promoted"]) for m in listed] == [("v0001", False)]
    assert invoke("model", "promote", "v0001", "--registry", reg)[0] == 0
    code, out, _ = invoke("model", "list", "--registry", reg)
    assert code == 0 and "*" in out and "v0001" in out
    code, _, err = invoke("model", "promote", "v0042", "--registry", reg)
    assert code == 3 and "no such model version" in " ".join(err.split())


def test_tune_series_writes_one_rule_per_series_in_its_own_scale(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    t0 = 1_700_000_000
    windows = {}
    files = []
    for i, (level, spread) in enumerate(((10.0, 1.0), (5000.0, 300.0), (0.2, 0.01))):
        v = rng.normal(0, 1, 3000)
        for start in rng.choice(np.arange(50, 2900), 10, replace=False):
            for run in range(4):  # bursts of 40-min crossings, 10 min apart: noise
                v[start + run * 10:start + run * 10 + 8] += 12.0
        v[2000:2030] += 12.0  # the incident
        times = t0 + np.arange(3000) * 300
        path = tmp_path / f"s{i}.csv"
        pd.DataFrame({"timestamp": times, "value": level + spread * v}).to_csv(path,
                                                                               index=False)
        windows[path.name] = [[t0 + 1990 * 300, t0 + 2040 * 300]]
        files.append(str(path))
    (tmp_path / "windows.json").write_text(json.dumps(windows))
    out = tmp_path / "thresholds.yaml"
    code, _, err = invoke("tune-series", *files, "--windows", str(tmp_path / "windows.json"),
                          "--out", str(out), "--alertname", "QueueHigh")
    assert code == 0, err
    t = parse_thresholds(yaml.safe_load(out.read_text()))
    assert [r.match["series"] for r in t.rules] == ["s0.csv", "s1.csv", "s2.csv"]
    by = {r.match["series"]: r for r in t.rules}
    assert 10 < by["s0.csv"].threshold < 40 and 5000 < by["s1.csv"].threshold < 15000
    assert all(r.keep_firing_for for r in t.rules)  # the bursts are merged
    assert "windows detected 3 → 3" in err.replace("\n", " ")
    bad = tmp_path / "bad.csv"
    bad.write_text("time,v\n1,2\n")
    code, _, err = invoke("tune-series", str(bad), "--windows", str(tmp_path / "windows.json"),
                          "--out", str(out))
    assert code == 2 and "bad.csv" in err and "timestamp,value" in err


def test_tune_says_when_judgements_were_replaced_as_corrections(tmp_path: Path) -> None:
    # one alert (one fingerprint) judged noise five times without an incident: only the
    # newest counts, and the user is told
    lines = [json.dumps({"at": 1_790_000_000 + i * 3600, "label": "noise",
                         "alertname": "DiskFull", "service": "db", "value": 0.91,
                         "threshold": 0.9, "fingerprint": "fp-1"}) for i in range(5)]
    history = tmp_path / "fb.jsonl"
    history.write_text("\n".join(lines) + "\n")
    code, _, err = invoke("tune", "--history", str(history), "--out", "-")
    assert code == 0, err
    assert "4 of 5 judgements were replaced" in err


def test_feedback_add_keeps_the_series_baseline_for_tune(tmp_path: Path) -> None:
    db = str(tmp_path / "fb.db")
    code, _, err = invoke("feedback", "add", "noise", "-a", "QueueBacklog", "--store", db,
                          "--value", "140", "--threshold", "130", "--baseline", "100",
                          "--scale", "10")
    assert code == 0, err
    (context,) = read_history(Path(db))["context"]
    assert json.loads(context) == {"baseline": 100.0, "scale": 10.0}
    code, _, err = invoke("feedback", "add", "noise", "-a", "X", "--store", db,
                          "--baseline", "1")
    assert code == 2 and "--baseline and --scale go together" in err
