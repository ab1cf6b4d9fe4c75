"""A noise model the pipeline cannot use never stops intake: refused at promote and load
when its schema is wrong, dropped (fail open) when it fails while scoring."""

from __future__ import annotations

import hashlib
import json
import shutil
import signal
import subprocess
from pathlib import Path

import numpy as np
import orjson
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from tests.faults.conftest import TRIAGE, Losses
from tests.faults.test_disk_full import run
from tests.http.tools import free_port, http, ready, wait_until
from triage.core.types import Alert
from triage.models.noise import FEATURES, alert_features

pytestmark = pytest.mark.slow


def write_version(registry: Path, version: str, model: object) -> None:
    """A registry version written by hand: a real skops artifact, its true SHA-256, and
    metadata claiming the pipeline's features (what a careless or hostile user can do)."""
    path = registry / version
    path.mkdir(parents=True)
    sio.dump(model, path / "model.skops")
    digest = hashlib.sha256((path / "model.skops").read_bytes()).hexdigest()
    (path / "metadata.json").write_text(json.dumps({
        "name": "noise", "features": list(FEATURES), "thresholds": {},
        "artifact": {"file": "model.skops", "sha256": digest, "format": "skops"}}))


def numeric_lr() -> LogisticRegression:
    """The red team's: hash-valid, loads, fitted on 3 numeric columns."""
    return LogisticRegression().fit(np.array([[0.0, 1, 2], [1, 0, 2], [2, 2, 0]]), [0, 1, 0])


def fails_on_real_alerts() -> Pipeline:
    """Right columns, right classes, scores the schema probe, and raises on any alert name
    it never saw (OneHotEncoder(handle_unknown="error")): it fails only in production."""
    probe = Alert(labels={"alertname": "SchemaProbe", "service": "probe"}, annotations={},
                  status="firing", starts_at=0.0, ends_at=None, at=0.0, source="generic")
    row = alert_features(probe, None, 0.0, thresholds={})
    frame = pd.DataFrame([row, {**row, "tier": "other"}])[list(FEATURES)]
    model = Pipeline([("cat", ColumnTransformer(
        [("onehot", OneHotEncoder(handle_unknown="error"), ["alertname", "tier"])])),
        ("lr", LogisticRegression())])
    return model.fit(frame, [0, 1])


def test_a_model_fitted_on_the_wrong_columns_is_refused_at_promote(tmp_path: Path) -> None:
    registry = tmp_path / "models"
    write_version(registry, "v0001", numeric_lr())
    proc = subprocess.run([*TRIAGE, "model", "promote", "v0001", "--registry", str(registry)],
                          capture_output=True, timeout=120, check=False)
    message = " ".join(proc.stderr.decode().split())
    assert proc.returncode != 0
    assert "fitted on 3 features, the pipeline sends 11" in message
    assert not (registry / "PROMOTED").exists()


def serve_with(registry: Path, tmp: Path) -> tuple[subprocess.Popen[bytes], int]:
    config = tmp / "triage.yaml"
    config.write_text(f"noise:\n  registry: {registry}\n  check_every: 0s\n")
    port = free_port()
    proc = subprocess.Popen([*TRIAGE, "serve", "--config", str(config), "--port", str(port),
                             "--output", str(tmp / "inc.jsonl"), "--dead-letter",
                             str(tmp / "dead.jsonl")],
                            stdout=(tmp / "serve.log").open("wb"), stderr=subprocess.STDOUT)
    wait_until(lambda: ready(f"http://127.0.0.1:{port}/-/ready"), timeout=30, what="serve",
               proc=proc)
    return proc, port


def alerts(n: int, offset: int = 0) -> bytes:
    return orjson.dumps([{"labels": {"alertname": f"Rule{i}", "service": "db"}}
                         for i in range(offset, offset + n)])


def metric(port: int, name: str) -> float:
    _, body = http("GET", f"http://127.0.0.1:{port}/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in body.decode().splitlines()
               if line.startswith(name))


def test_bad_models_promoted_behind_serves_back_never_stop_intake(
        tmp_path: Path, losses: Losses) -> None:
    registry = tmp_path / "models"
    write_version(registry, "v0001", numeric_lr())
    write_version(registry, "v0002", fails_on_real_alerts())
    proc, port = serve_with(registry, tmp_path)
    url = f"http://127.0.0.1:{port}/api/v2/alerts"
    triaged = 0
    try:
        # 1. a pointer set by hand to a model the pipeline cannot use: refused, said so
        (registry / "PROMOTED").write_text('{"version": "v0001"}')
        for k in range(3):
            status, body = http("POST", url, alerts(10, 10 * k))
            assert status == 200
            triaged += orjson.loads(body)["counts"]["accepted"]
        assert metric(port, 'triage_noise_model_failures_total{stage="load",version="v0001"}') == 1
        # 2. one that passes every check at promote and fails on real alerts: dropped
        assert subprocess.run([*TRIAGE, "model", "promote", "v0002", "--registry",
                               str(registry)], capture_output=True, timeout=120).returncode == 0
        for k in range(3, 6):
            status, body = http("POST", url, alerts(10, 10 * k))
            assert status == 200, body
            triaged += orjson.loads(body)["counts"]["accepted"]
        assert metric(port, 'triage_noise_model_failures_total{stage="score",version="v0002"}') == 1
        assert http("GET", f"http://127.0.0.1:{port}/-/healthy")[0] == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert losses.record("serve: bad noise models promoted (alerts triaged)", 60, triaged) == 0
    log = (tmp_path / "serve.log").read_text()
    assert log.count("failed while scoring") == 1  # one line, not one per alert
    assert "v0001 is promoted but refused" in log


def test_run_with_a_model_failing_at_score_time_triages_everything(tmp_path: Path) -> None:
    registry = tmp_path / "models"
    write_version(registry, "v0002", fails_on_real_alerts())
    (registry / "PROMOTED").write_text('{"version": "v0002"}')
    config = tmp_path / "triage.yaml"
    config.write_text(f"noise:\n  registry: {registry}\n")
    storm = tmp_path / "storm.jsonl"
    storm.write_bytes(b"\n".join(orjson.dumps({"alertname": f"R{i}", "service": "db",
                                               "at": 1000 + i}) for i in range(50)) + b"\n")
    out = tmp_path / "outcomes.jsonl"
    done = run("-c", str(config), "-i", str(storm), "-o", str(tmp_path / "inc.jsonl"),
               "--outcomes", str(out))
    assert done.returncode == 0, done.stderr.decode()
    assert out.read_bytes().count(b'"kind":"alert"') == 50
    assert "failed while scoring" in done.stderr.decode()
    shutil.rmtree(registry)
