"""The noise model's schema: the features the pipeline sends a model, their types, and the
classes it must answer for. A model is held to it at training (``register_model``), at
``triage model promote`` and at every load, so a model the pipeline cannot use is refused
before it scores anything, with what differs named.

The schema is written into the version's ``metadata.json`` at training (``"schema"``)::

    {"features": [{"name": "alertname", "type": "string"}, ...,
                  {"name": "value_ratio", "type": "number"}, ...],
     "classes": [{"value": 0, "label": "actionable"}, {"value": 1, "label": "noise"}]}

A fitted estimator records its input columns (``feature_names_in_``, or only their count in
``n_features_in_``) and its classes (``classes_``), but not what type each column was, so
types are checked by use: the model scores synthetic alert rows built by the live feature
code (``alert_features``), one with the gaps a live alert has (no value, no change index)
and one without. A model that raises, or answers anything but one probability per class,
is refused.

>>> [f["name"] for f in pipeline_schema()["features"]][:4]
['alertname', 'service', 'tier', 'rule']
>>> metadata_problems({"schema": {**pipeline_schema(), "classes": [
...     {"value": 0, "label": "ok"}, {"value": 1, "label": "page"}]}})
["classes [(0, 'ok'), (1, 'page')], the pipeline expects [(0, 'actionable'), (1, 'noise')]"]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

import numpy as np
import pandas as pd

from triage.core.types import Alert
from triage.models.noise import FEATURES, NUMERIC, alert_features

# The column each feature is in the frame the pipeline builds (``alert_features``).
FEATURE_TYPES: Final[dict[str, str]] = {
    name: ("number" if name in NUMERIC else "string") for name in FEATURES}

# What ``predict_proba``'s columns mean: the gate reads column 1 as the noise probability.
CLASSES: Final[tuple[tuple[int, str], ...]] = ((0, "actionable"), (1, "noise"))


def pipeline_schema() -> dict[str, Any]:
    """The schema the running pipeline expects, as written into ``metadata.json``."""
    return {"features": [{"name": n, "type": t} for n, t in FEATURE_TYPES.items()],
            "classes": [{"value": v, "label": label} for v, label in CLASSES]}


def metadata_problems(metadata: Mapping[str, Any]) -> list[str]:
    """How the schema a version's metadata records differs from the pipeline's.

    Metadata written before schemas were recorded has only ``features`` (names); it is held
    to those, and the model itself is checked by ``model_problems`` either way.
    """
    schema = metadata.get("schema")
    if schema is None:
        if "features" not in metadata:
            return ["metadata.json records no schema and no features"]
        return _name_problems("metadata lists features", metadata.get("features"))
    if not isinstance(schema, Mapping):
        return [f"metadata schema is {type(schema).__name__}, not an object"]
    features = schema.get("features")
    if not isinstance(features, list) or not all(
            isinstance(f, Mapping) and isinstance(f.get("name"), str) for f in features):
        return ["metadata schema: features is not a list of {name, type}"]
    problems = _name_problems("metadata lists features", [f["name"] for f in features])
    for f in features:
        expected = FEATURE_TYPES.get(f["name"])
        if expected is not None and f.get("type") != expected:
            problems.append(f"feature {f['name']} is recorded as {f.get('type')}, the pipeline "
                            f"sends a {expected}")
    classes = schema.get("classes")
    recorded = [(c.get("value"), c.get("label")) for c in classes if isinstance(c, Mapping)] \
        if isinstance(classes, list) else classes
    if recorded != list(CLASSES):
        problems.append(f"classes {recorded}, the pipeline expects {list(CLASSES)}")
    return problems


def model_problems(model: Any) -> list[str]:
    """What keeps a fitted ``model`` from scoring the pipeline's alerts: its columns, its
    classes, then the synthetic alert rows (only when the first two fit)."""
    if not callable(getattr(model, "predict_proba", None)):
        return ["not a probabilistic classifier (no predict_proba)"]
    problems = _name_problems("fitted on columns", getattr(model, "feature_names_in_", None))
    count = getattr(model, "n_features_in_", None)
    if getattr(model, "feature_names_in_", None) is None and count is not None \
            and count != len(FEATURES):
        problems.append(f"fitted on {count} features, the pipeline sends {len(FEATURES)}")
    classes = getattr(model, "classes_", None)
    if classes is not None:
        values = [c.item() if isinstance(c, np.generic) else c for c in classes]
        if len(values) != 2 or values != [v for v, _ in CLASSES]:
            problems.append(f"classes {values}; a noise model has two, "
                            f"{[v for v, _ in CLASSES]} (actionable, noise)")
    if problems:
        return problems
    rows = probe_rows()
    try:
        proba = np.asarray(model.predict_proba(pd.DataFrame(rows)), dtype=float)
    except Exception as exc:  # whatever the estimator raises: it cannot score
        return [f"fails on a synthetic alert ({type(exc).__name__}: {exc})"]
    if proba.shape != (len(rows), 2) or not np.all(np.isfinite(proba)) \
            or not np.all((proba >= 0.0) & (proba <= 1.0)):
        return [f"scores {len(rows)} synthetic alerts as {proba.tolist()}, not one "
                f"probability per class each"]
    return []


def schema_problems(model: Any, metadata: Mapping[str, Any] | None = None) -> list[str]:
    """Both checks: the recorded schema (when ``metadata`` is given), then the model.
    Empty when the pipeline can use it.

    >>> from sklearn.linear_model import LogisticRegression
    >>> m = LogisticRegression().fit(np.array([[0, 1, 2], [1, 0, 2]]), [0, 1])
    >>> schema_problems(m)  # the red team's: numeric columns, not the pipeline's
    ['fitted on 3 features, the pipeline sends 11']
    """
    problems = metadata_problems(metadata) if metadata is not None else []
    return problems + model_problems(model)


def probe_rows() -> list[dict[str, Any]]:
    """Feature rows for two synthetic alerts, built by the live feature code: one bare (no
    value, no change index: the gaps are NaN, as for most live alerts) and one complete."""
    bare = Alert(labels={"alertname": "SchemaProbe", "service": "probe"}, annotations={},
                 status="firing", starts_at=0.0, ends_at=None, at=0.0, source="generic")
    full = Alert(labels=dict(bare.labels), annotations={}, status="firing", starts_at=0.0,
                 ends_at=None, at=0.0, source="generic", value=2.0)
    return [alert_features(bare, None, 0.0, thresholds={}),
            alert_features(full, None, 43_200.0, thresholds={"SchemaProbe": 1.0},
                           recent_changes=lambda _service, _now: 1)]


def _name_problems(what: str, names: Any) -> list[str]:
    """The feature names ``names`` against the pipeline's: missing, unknown, or reordered."""
    if names is None:
        return []
    if not isinstance(names, list | tuple | np.ndarray):
        return [f"{what} {names!r}, not a list"]
    got = [str(n) for n in names]
    if got == list(FEATURES):
        return []
    missing = [n for n in FEATURES if n not in got]
    unknown = [n for n in got if n not in FEATURES]
    if not missing and not unknown:
        return [f"{what} in another order than the pipeline's ({', '.join(FEATURES)})"]
    shown = ", ".join(got[:6]) + (", ..." if len(got) > 6 else "")
    detail = "; ".join(part for part in (
        f"missing {', '.join(missing)}" if missing else "",
        f"unknown {', '.join(unknown[:6])}{', ...' if len(unknown) > 6 else ''}"
        if unknown else "") if part)
    return [f"{what} [{shown}] ({len(got)}), the pipeline sends {len(FEATURES)}: {detail}"]
