"""The noise gate wired from config: a promoted model in the registry is used by triage run."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.app.bootstrap import build_pipeline
from triage.app.settings import load_settings
from triage.models.noise import TrainedModel
from triage.models.registry import promote, register_model


def test_no_registry_means_no_noise_gate(tmp_path: Path) -> None:
    pipeline = build_pipeline(load_settings(None))
    assert pipeline.noise_scorer is None


def test_registry_in_config_enables_the_gate_at_the_models_threshold(
        tmp_path: Path, trained: TrainedModel) -> None:
    registry = tmp_path / "models"
    version = register_model(registry, trained, registered_at=0.0)
    promote(registry, version)
    cfg = tmp_path / "triage.yaml"
    cfg.write_text("noise:\n  registry: models\n")
    pipeline = build_pipeline(load_settings(cfg))
    assert pipeline.noise_scorer is not None
    recommended = trained.metrics["at_floor_threshold"]
    assert pipeline.noise_threshold == pytest.approx(recommended)
    cfg.write_text("noise:\n  registry: models\n  threshold: 0.999\n")
    assert build_pipeline(load_settings(cfg)).noise_threshold == 0.999


def test_a_tampered_promoted_model_is_refused_and_intake_starts_without_it(
        tmp_path: Path, trained: TrainedModel) -> None:
    registry = tmp_path / "models"
    version = register_model(registry, trained, registered_at=0.0)
    promote(registry, version)
    artifact = registry / version / "model.skops"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    cfg = tmp_path / "triage.yaml"
    cfg.write_text("noise:\n  registry: models\n")
    pipeline = build_pipeline(load_settings(cfg))  # fail open (issue 15): not a config error
    scorer = pipeline.noise_scorer
    assert scorer is not None and getattr(scorer, "version", "?") is None
    assert "SHA-256" in getattr(scorer, "fallbacks", [""])[0]
    (out,) = pipeline.process({"alertname": "HighCPU", "service": "db", "at": 1.0})
    assert out.kind == "triaged"  # no model: every alert passes the noise gate
