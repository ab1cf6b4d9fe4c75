"""Fixtures for the learning stage: simulated histories and one trained model per session."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from triage.models.noise import TrainedModel, train_noise_model
from triage.simulate.feedback import simulate_feedback

NAB = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "nab-dev"


@pytest.fixture(scope="session")
def history() -> pd.DataFrame:
    return simulate_feedback(days=30, seed=7)


@pytest.fixture(scope="session")
def trained(history: pd.DataFrame) -> TrainedModel:
    return train_noise_model(history, seed=0)


@pytest.fixture
def nab_root() -> Path:
    if not NAB.is_dir():
        pytest.skip("../shared/data/nab-dev is not beside the repository")
    return NAB
