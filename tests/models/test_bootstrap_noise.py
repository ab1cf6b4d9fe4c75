"""The noise gate wired from config: a promoted model in the registry is used by triage run."""

from __future__ import annotations

from pathlib import Path

import pytest

from triage.bootstrap import build_pipeline
from triage.errors import ConfigError
from triage.models.noise import TrainedModel
from triage.models.registry import promote, register_model
from triage.settings import load_settings


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


def test_a_tampered_promoted_model_is_a_config_error(tmp_path: Path,
                                                      trained: TrainedModel) -> None:
    registry = tmp_path / "models"
    version = register_model(registry, trained, registered_at=0.0)
    promote(registry, version)
    artifact = registry / version / "model.skops"
    data = bytearray(artifact.read_bytes())
    data[len(data) // 2] ^= 0xFF
    artifact.write_bytes(bytes(data))
    cfg = tmp_path / "triage.yaml"
    cfg.write_text("noise:\n  registry: models\n")
    with pytest.raises(ConfigError, match=r"noise\.registry"):
        build_pipeline(load_settings(cfg))
