"""Every estimator triage.models defines passes scikit-learn's estimator checks."""

from __future__ import annotations

from typing import Any

from sklearn.utils.estimator_checks import parametrize_with_checks

from triage.models.tuning import ThresholdClassifier


@parametrize_with_checks([ThresholdClassifier(), ThresholdClassifier(duration_column=1)])
def test_sklearn_contract(estimator: Any, check: Any) -> None:
    check(estimator)
