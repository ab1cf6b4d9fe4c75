"""A noise model can never stop intake (issue 15, item 4).

The red team's case: a hash-valid LogisticRegression fitted on 3 numeric columns. It must be
refused at training and at promote; forced into the registry by hand, it must be refused at
load while alerts keep flowing; and a model that passes every check and raises while scoring
must be dropped for the one before it, with a metric, and every alert still triaged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pandas as pd
import pytest
import skops.io as sio
from prometheus_client.parser import text_string_to_metric_families
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline as SkPipeline
from sklearn.preprocessing import OneHotEncoder

from tests.http.tools import free_port, http, triage_serve, wait_until
from triage.core.pipeline import Pipeline
from triage.core.types import Alert
from triage.models.noise import FEATURES, TrainedModel
from triage.models.registry import (
    LoadedModel,
    ModelError,
    ReloadingNoiseScorer,
    load_model,
    load_noise_scorer,
    promote,
    register_model,
)
from triage.models.schema import pipeline_schema, probe_rows

TRIAGE = [sys.executable, "-m", "triage.cli"]
NOW = 1_795_000_000.0


# -- models a careless or hostile user can put in a registry -------------------------------

def numeric_lr() -> LogisticRegression:
    """The red team's: hash-valid, loads, fitted on 3 numeric columns."""
    return LogisticRegression().fit(np.array([[0.0, 1, 2], [1, 0, 2], [2, 2, 0]]), [0, 1, 0])


def numeric_only_pipeline() -> LogisticRegression:
    """The pipeline's 11 column names, every one fitted as a number: the names pass, the
    alert names (strings) and the missing values (NaN) of a live alert do not."""
    frame = pd.DataFrame([[float(i + j) for i in range(len(FEATURES))] for j in range(2)],
                         columns=list(FEATURES))
    return LogisticRegression().fit(frame, [0, 1])


def three_classes() -> SkPipeline:
    frame = pd.DataFrame(probe_rows() * 3)[list(FEATURES)]
    return _onehot_lr(frame, [0, 1, 2, 0, 1, 2], handle_unknown="ignore")


def fails_on_real_alerts() -> SkPipeline:
    """Right columns, right classes, scores the synthetic alerts, and raises on any alert
    name it never saw (``handle_unknown="error"``): it fails only in production."""
    rows = probe_rows()
    frame = pd.DataFrame([*rows, *({**r, "tier": "other"} for r in rows)])[list(FEATURES)]
    return _onehot_lr(frame, [0, 0, 1, 1], handle_unknown="error")


def _onehot_lr(frame: pd.DataFrame, y: list[int], *, handle_unknown: str) -> SkPipeline:
    model = SkPipeline([("cat", ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown=handle_unknown), ["alertname", "tier"])])),
        ("lr", LogisticRegression())])
    return model.fit(frame, y)


def force_version(registry: Path, version: str, model: object,
                  metadata: dict[str, Any] | None = None) -> None:
    """A version written by hand, around ``register_model``: a real skops artifact, its true
    SHA-256, and metadata claiming the pipeline's schema."""
    path = registry / version
    path.mkdir(parents=True)
    sio.dump(model, path / "model.skops")
    digest = hashlib.sha256((path / "model.skops").read_bytes()).hexdigest()
    (path / "metadata.json").write_text(json.dumps({
        "name": "noise", "features": list(FEATURES), "schema": pipeline_schema(),
        "thresholds": {}, **(metadata or {}),
        "artifact": {"file": "model.skops", "sha256": digest, "format": "skops"}}))


def point_at(registry: Path, version: str) -> None:
    """``PROMOTED`` set by hand, past ``triage model promote``'s checks."""
    (registry / "PROMOTED").write_text(json.dumps({"version": version}) + "\n")


def alert(name: str, fingerprint: str) -> Alert:
    return Alert({"alertname": name, "service": "db"}, {}, "firing", NOW, None, NOW,
                 "generic", fingerprint=fingerprint)


# -- the schema: written at training, checked at train, promote and load -----------------

def test_training_writes_the_schema_beside_the_model(tmp_path: Path,
                                                     trained: TrainedModel) -> None:
    version = register_model(tmp_path, trained)
    metadata = json.loads((tmp_path / version / "metadata.json").read_text())
    assert metadata["schema"]["classes"] == [{"value": 0, "label": "actionable"},
                                             {"value": 1, "label": "noise"}]
    types = {f["name"]: f["type"] for f in metadata["schema"]["features"]}
    assert types["alertname"] == "string" and types["value_ratio"] == "number"
    assert list(types) == list(FEATURES)


def test_the_red_team_model_is_refused_at_training(tmp_path: Path) -> None:
    bad = TrainedModel(model=numeric_lr(), metrics={},
                       training_window=(0.0, 1.0), thresholds={})
    with pytest.raises(ModelError, match="fitted on 3 features, the pipeline sends 11"):
        register_model(tmp_path / "models", bad)
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize(("model", "says"), [
    (numeric_lr, "fitted on 3 features, the pipeline sends 11"),
    (numeric_only_pipeline, "fails on a synthetic alert (ValueError"),
    (three_classes, "classes [0, 1, 2]; a noise model has two"),
])
def test_a_model_the_pipeline_cannot_use_is_refused_at_promote_naming_why(
        tmp_path: Path, model: Any, says: str) -> None:
    registry = tmp_path / "models"
    force_version(registry, "v0001", model())
    proc = subprocess.run([*TRIAGE, "model", "promote", "v0001", "--registry", str(registry)],
                          capture_output=True, timeout=120, check=False)
    assert proc.returncode == 3
    assert says in " ".join(proc.stderr.decode().split())
    assert not (registry / "PROMOTED").exists()


def test_a_model_fitted_on_other_columns_is_refused_naming_them(tmp_path: Path) -> None:
    frame = pd.DataFrame({"cpu": [0.1, 0.9], "mem": [0.5, 0.2], "disk": [1.0, 0.0]})
    force_version(tmp_path, "v0001", LogisticRegression().fit(frame, [0, 1]))
    with pytest.raises(ModelError) as refused:
        promote(tmp_path, "v0001")
    assert "fitted on columns [cpu, mem, disk] (3), the pipeline sends 11: missing " \
           "alertname, service, tier, rule" in str(refused.value)
    assert "unknown cpu, mem, disk" in str(refused.value)


def test_a_recorded_schema_that_differs_is_refused_at_load(tmp_path: Path,
                                                           trained: TrainedModel) -> None:
    version = register_model(tmp_path, trained)
    meta_path = tmp_path / version / "metadata.json"
    metadata = json.loads(meta_path.read_text())
    schema = metadata["schema"]
    schema["features"] = [{**f, "type": "string"} if f["name"] == "value_ratio" else f
                          for f in schema["features"]]
    schema["classes"] = [{"value": 0, "label": "noise"}, {"value": 1, "label": "actionable"}]
    meta_path.write_text(json.dumps(metadata))  # the model's hash still matches
    with pytest.raises(ModelError) as refused:
        load_model(tmp_path, version)
    message = str(refused.value)
    assert "feature value_ratio is recorded as string, the pipeline sends a number" in message
    assert "classes [(0, 'noise'), (1, 'actionable')]" in message


# -- fail open: at start-up, at hot reload, while scoring ---------------------------------

def test_a_refused_pointer_at_start_up_is_said_once_counted_and_alerts_pass(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    force_version(tmp_path, "v0001", numeric_lr())
    point_at(tmp_path, "v0001")
    with caplog.at_level(logging.WARNING, "triage.models"):
        scorer = load_noise_scorer(tmp_path, check_every=0.0)
        pipeline = Pipeline(noise_scorer=scorer, noise_threshold=0.5)
        outcomes = [o for t in range(5) for o in pipeline.process(
            {"alertname": f"R{t}", "service": "db", "at": NOW + t})]
    assert [o.kind for o in outcomes] == ["triaged"] * 5
    assert len(caplog.records) == 1  # one line, not one per check
    assert "v0001 is promoted but refused; scoring with no model" in caplog.text
    assert "fitted on 3 features, the pipeline sends 11" in caplog.text
    failures: list[tuple[str, str]] = []
    assert isinstance(scorer, ReloadingNoiseScorer)
    scorer.on_failure = lambda version, stage: failures.append((version, stage))
    assert failures == [("v0001", "load")]  # reported once a metric is attached


def test_a_pointer_to_a_missing_version_is_retried_when_promoted_again(
        tmp_path: Path, trained: TrainedModel) -> None:
    point_at(tmp_path, "v0001")  # the pointer copied before the version it names
    scorer = load_noise_scorer(tmp_path, check_every=0.0)
    assert isinstance(scorer, ReloadingNoiseScorer)
    assert "no such model version" in scorer.fallbacks[0]
    assert scorer(alert("HighCPU", "a"), None, NOW) == 0.0
    promote(tmp_path, register_model(tmp_path, trained))  # the same name, now real
    scorer(alert("HighCPU", "b"), None, NOW + 1)
    assert scorer.version == "v0001"


def test_a_model_failing_while_scoring_falls_back_to_the_one_before(
        tmp_path: Path, trained: TrainedModel, caplog: pytest.LogCaptureFixture) -> None:
    good = register_model(tmp_path, trained)
    promote(tmp_path, good)
    scorer = load_noise_scorer(tmp_path, check_every=0.0)
    assert isinstance(scorer, ReloadingNoiseScorer)
    failures: list[tuple[str, str]] = []
    scorer.on_failure = lambda version, stage: failures.append((version, stage))
    before = scorer.score_batch([alert("HighCPU", "x")], [None], NOW)
    force_version(tmp_path, "v0002", fails_on_real_alerts())
    promote(tmp_path, "v0002")  # passes every check: it scores the synthetic alerts
    pipeline = Pipeline(noise_scorer=scorer, noise_threshold=1.0)
    with caplog.at_level(logging.ERROR, "triage.models"):
        outcomes = [o for t in range(20) for o in pipeline.process(
            [{"alertname": f"Rule{t}-{i}", "service": "db", "at": NOW + t} for i in range(5)])]
    assert [o.kind for o in outcomes] == ["triaged"] * 100  # every alert through
    assert scorer.version == good
    assert failures == [("v0002", "score")]
    assert len(caplog.records) == 1
    assert "v0002 failed while scoring (ValueError: Found unknown categories" \
           in caplog.text and f"scoring with {good} from now on" in caplog.text
    assert scorer.score_batch([alert("HighCPU", "x")], [None], NOW + 30) == before


class Nonsense:
    """A model answering without raising, but not with probabilities (a stand-in: a real
    artifact carrying one would be refused at load; the scorer must not rely on that)."""

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        return np.full((len(frame), 2), np.nan)


def test_a_model_answering_nonsense_is_dropped_too(tmp_path: Path) -> None:
    scorer = ReloadingNoiseScorer(tmp_path, check_every=1e9)
    scorer.last_check = NOW
    scorer.current = LoadedModel("v0007", Nonsense(), {})
    assert scorer.score_batch([alert("A", "a"), alert("B", "b")], [None, None], NOW) == [
        0.0, 0.0]
    assert scorer.version is None
    assert "shape (2, 2), not a probability per class" in scorer.fallbacks[0]


# -- through the real `triage serve` and `triage run` ---------------------------------------

def metrics(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    _, body = http("GET", f"http://127.0.0.1:{port}/metrics")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples}


def model_in_use(port: int) -> str | None:
    for name, labels in metrics(port):
        if name == "triage_noise_model_info":
            return dict(labels)["version"]
    return None


def post(port: int, names: list[str]) -> dict[str, int]:
    body = orjson.dumps([{"labels": {"alertname": n, "service": "db"}} for n in names])
    status, answer = http("POST", f"http://127.0.0.1:{port}/api/v2/alerts", body)
    assert status == 200, answer
    counts: dict[str, int] = orjson.loads(answer)["counts"]
    return counts


def failures(port: int, version: str, stage: str) -> float:
    key = ("triage_noise_model_failures_total", (("stage", stage), ("version", version)))
    return metrics(port).get(key, 0.0)


@pytest.mark.slow
def test_serve_refuses_the_red_team_model_and_survives_one_failing_at_score_time(
        tmp_path: Path, trained: TrainedModel) -> None:
    registry = tmp_path / "models"
    force_version(registry, "v0001", numeric_lr())
    point_at(registry, "v0001")  # forced in by hand before serve starts
    port = free_port()
    config = f"noise:\n  registry: {registry}\n  check_every: 0s\n"
    with triage_serve(tmp_path, port=port, config=config):
        counts = post(port, [f"Boot{i}" for i in range(10)])
        assert counts["accepted"] == 10 and counts["refused"] == 0
        assert failures(port, "v0001", "load") == 1
        assert model_in_use(port) == "none"
        # a good model promoted: taken up without a restart
        good = register_model(registry, trained)
        assert subprocess.run([*TRIAGE, "model", "promote", good, "-r", str(registry)],
                              capture_output=True, timeout=120).returncode == 0
        post(port, ["Wake"])
        wait_until(lambda: model_in_use(port) == good, timeout=10, what="the good model")
        # one that passes every check and raises on real alerts: dropped for the good one
        force_version(registry, "v0003", fails_on_real_alerts())
        assert subprocess.run([*TRIAGE, "model", "promote", "v0003", "-r", str(registry)],
                              capture_output=True, timeout=120).returncode == 0
        handled = 0
        for k in range(5):
            counts = post(port, [f"Storm{k}-{i}" for i in range(20)])
            assert counts["refused"] == 0
            handled += counts["accepted"] + counts["suppressed"] + counts["deduplicated"]
        assert handled == 100  # every alert triaged: none lost to the model
        assert failures(port, "v0003", "score") == 1
        wait_until(lambda: model_in_use(port) == good, timeout=10, what="the fallback")
        assert http("GET", f"http://127.0.0.1:{port}/-/healthy")[0] == 200
    log = (tmp_path / "serve.log").read_text()
    assert log.count("v0001 is promoted but refused") == 1
    assert log.count("v0003 failed while scoring") == 1  # one line, not one per alert


@pytest.mark.slow
@pytest.mark.parametrize(("model", "says"), [
    (numeric_lr, "v0001 is promoted but refused; scoring with no model"),
    (fails_on_real_alerts, "v0001 failed while scoring"),
])
def test_run_with_a_bad_model_promoted_triages_every_alert_and_says_so(
        tmp_path: Path, model: Any, says: str) -> None:
    registry = tmp_path / "models"
    force_version(registry, "v0001", model())
    point_at(registry, "v0001")
    config = tmp_path / "triage.yaml"
    config.write_text(f"noise:\n  registry: {registry}\n")
    storm = tmp_path / "storm.jsonl"
    storm.write_bytes(b"".join(orjson.dumps({"alertname": f"R{i}", "service": "db",
                                             "at": 1000 + i}) + b"\n" for i in range(50)))
    out = tmp_path / "outcomes.jsonl"
    done = subprocess.run([*TRIAGE, "run", "-c", str(config), "-i", str(storm), "-o",
                           str(tmp_path / "inc.jsonl"), "--outcomes", str(out)],
                          capture_output=True, timeout=300, check=False)
    stderr = " ".join(done.stderr.decode().split())
    assert done.returncode == 0, stderr
    assert out.read_bytes().count(b'"kind":"alert"') == 50
    assert (tmp_path / "inc.jsonl").stat().st_size > 0
    assert f"note: noise model {says}" in stderr  # in the summary, not only the log
    if model is numeric_lr:
        status = subprocess.run([*TRIAGE, "model", "status", "-r", str(registry)],
                                capture_output=True, timeout=120, check=False)
        assert status.returncode == 3
        assert "fitted on 3 features" in " ".join(status.stderr.decode().split())


def test_the_schema_examples_run() -> None:
    import doctest

    from triage.models import schema

    assert doctest.testmod(schema).failed == 0
