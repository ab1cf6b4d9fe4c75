"""The model registry: versioned noise-model artifacts in a directory, promotion, safe loading,
and the hot-reloading scorer the stage-1 noise gate calls.

Layout::

    registry/
      PROMOTED            {"version": "v0002"}   (replaced atomically by ``promote``)
      v0001/
        model.skops       the fitted Pipeline, in skops format (no pickle)
        metadata.json     version, training window, features, metrics, params, library
                          versions, static thresholds, and the artifact's SHA-256
        report.json  pr_curve.png  calibration.png

Trust model. Loading never unpickles. ``model.skops`` is read with ``skops.io``, which builds
only objects of types it knows to be safe (scikit-learn, numpy, scipy) plus the types in
``TRUSTED_TYPES``, a fixed, reviewed list in this module; an artifact that needs any other
type is refused. Before that, its SHA-256 must equal the one ``register_model`` recorded in
``metadata.json``, so a corrupt, half-copied or swapped artifact is refused too. The registry
directory itself must be writable only by whoever trains models: someone who can rewrite both
files can still change the model's *behaviour* (never run code through it).

Hot reload. ``load_noise_scorer`` returns a scorer that re-reads ``PROMOTED`` at most every
``check_every`` seconds of the *event time* ``now`` it is called with (no wall clock), and
swaps in a newly promoted version; a version that fails to load is reported in
``last_error`` and the previous model keeps scoring.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import platform
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import pandas as pd
import sklearn
import skops
import skops.io as sio

from triage.core.dedup import AlertState
from triage.core.pipeline import NoiseScorer
from triage.core.types import Alert
from triage.errors import TriageError
from triage.models.noise import FEATURES, TrainedModel, alert_features

ARTIFACT: Final = "model.skops"
METADATA: Final = "metadata.json"
PROMOTED: Final = "PROMOTED"

# Types skops does not trust by default that our Pipeline needs, reviewed by hand: both are
# plain scikit-learn containers of arrays. Anything else in an artifact is refused.
TRUSTED_TYPES: Final = frozenset({
    "sklearn.calibration._CalibratedClassifier",
    # the TargetEncoder's seeded cross-fitting splitter (scikit-learn >= 1.9): plain data
    "sklearn.model_selection._split.KFold",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
})


log = logging.getLogger("triage.models")


class ModelError(TriageError):
    """A model artifact is missing, unverifiable (hash mismatch, untrusted types) or invalid."""


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """One registered version and its metadata."""

    version: str
    path: Path
    metadata: dict[str, Any]
    promoted: bool


@dataclass(frozen=True, slots=True)
class LoadedModel:
    """A verified, loaded model with its metadata."""

    version: str
    model: Any
    metadata: dict[str, Any]

    @property
    def thresholds(self) -> dict[str, float]:
        """The static thresholds by rule key recorded at training (for ``value_ratio``)."""
        return {str(k): float(v) for k, v in self.metadata.get("thresholds", {}).items()}


def schema_problems(model: Any, metadata: dict[str, Any] | None = None) -> list[str]:
    """What keeps ``model`` from scoring the pipeline's alerts: the features it was fitted
    on (names, count), its classes (two: actionable, noise), and a smoke test on one
    synthetic alert. Checked at train, promote and load; empty when it fits.

    >>> from sklearn.linear_model import LogisticRegression
    >>> m = LogisticRegression().fit(np.array([[0, 1, 2], [1, 0, 2]]), [0, 1])
    >>> schema_problems(m)[0]  # the red team's: numeric columns, not the pipeline's
    'fitted on 3 features, the pipeline sends 11'
    """
    problems: list[str] = []
    if metadata is not None and list(metadata.get("features", [])) != list(FEATURES):
        problems.append(f"metadata lists features {metadata.get('features')}, the pipeline "
                        f"sends {list(FEATURES)}")
    if not hasattr(model, "predict_proba"):
        return [*problems, "not a probabilistic classifier (no predict_proba)"]
    names = getattr(model, "feature_names_in_", None)
    count = getattr(model, "n_features_in_", None)
    if names is not None and list(names) != list(FEATURES):
        problems.append(f"fitted on columns {list(names)}, the pipeline sends "
                        f"{list(FEATURES)}")
    elif count is not None and count != len(FEATURES):
        problems.append(f"fitted on {count} features, the pipeline sends {len(FEATURES)}")
    classes = getattr(model, "classes_", None)
    if classes is not None and len(classes) != 2:
        problems.append(f"{len(classes)} classes; a noise model has two (actionable, noise)")
    if problems:
        return problems
    probe = Alert(labels={"alertname": "SchemaProbe", "service": "probe"}, annotations={},
                  status="firing", starts_at=0.0, ends_at=None, at=0.0, source="generic")
    try:
        proba = np.asarray(model.predict_proba(pd.DataFrame(
            [alert_features(probe, None, 0.0, thresholds={})])))
    except Exception as exc:  # whatever the estimator raises: it cannot score
        return [f"fails on an alert: {type(exc).__name__}: {exc}"]
    if proba.shape != (1, 2) or not all(0.0 <= float(p) <= 1.0 and math.isfinite(float(p))
                                        for p in proba[0]):
        problems.append(f"scores an alert as {proba.tolist()}, not one probability per class")
    return problems


def library_versions() -> dict[str, str]:
    """The versions a model was trained with (recorded, and compared on load)."""
    return {"python": platform.python_version(), "scikit-learn": sklearn.__version__,
            "numpy": np.__version__, "pandas": pd.__version__, "skops": skops.__version__}


def register_model(registry: Path, trained: TrainedModel, *, registered_at: float | None = None,
                   name: str = "noise", report: Callable[[TrainedModel, Path], Any] | None = None,
                   ) -> str:
    """Write ``trained`` as the next version (``v0001``, ...); returns the version.

    The version directory is written beside the registry and renamed into place, so a reader
    never sees half a version. ``report(trained, dir)`` may add report files.
    """
    registry = Path(registry)
    problems = schema_problems(trained.model)
    if problems:
        raise ModelError(f"refusing to register a model the pipeline cannot use: "
                         f"{'; '.join(problems)}")
    registry.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=registry))
    try:
        artifact = staging / ARTIFACT
        sio.dump(trained.model, artifact)
        metadata = {
            "name": name,
            "registered_at": registered_at,
            "training_window": list(trained.training_window),
            "features": list(FEATURES),
            "metrics": trained.metrics,
            "params": trained.params,
            "recommended_threshold": trained.metrics.get("at_floor_threshold"),
            "libraries": library_versions(),
            "thresholds": trained.thresholds,
            "artifact": {"file": ARTIFACT, "sha256": _sha256(artifact), "format": "skops"},
        }
        (staging / METADATA).write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
        if report is not None:
            report(trained, staging)
        while True:
            version = f"v{_last_number(registry) + 1:04d}"
            try:
                staging.rename(registry / version)  # fails if a concurrent writer took it
            except OSError:
                if (registry / version).exists():
                    continue
                raise
            return version
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def list_models(registry: Path) -> list[ModelInfo]:
    """Every registered version, oldest first."""
    registry = Path(registry)
    promoted = promoted_version(registry)
    out: list[ModelInfo] = []
    for path in sorted(registry.glob("v[0-9]*")):
        meta_path = path / METADATA
        if not meta_path.is_file():
            continue
        try:
            metadata = json.loads(meta_path.read_text())
        except ValueError:
            metadata = {"error": "unreadable metadata.json"}
        out.append(ModelInfo(path.name, path, metadata, path.name == promoted))
    return out


def promote(registry: Path, version: str) -> None:
    """Make ``version`` the one workers load; verified first, then switched atomically."""
    registry = Path(registry)
    load_model(registry, version)  # refuse to promote what could not be loaded
    tmp = registry / f".{PROMOTED}.tmp"
    tmp.write_text(json.dumps({"version": version}) + "\n")
    os.replace(tmp, registry / PROMOTED)


def promoted_version(registry: Path) -> str | None:
    """The promoted version, or None."""
    try:
        data = json.loads((Path(registry) / PROMOTED).read_text())
    except FileNotFoundError:
        return None
    except ValueError as exc:
        raise ModelError(f"{registry}/{PROMOTED}: unreadable ({exc})") from None
    version = data.get("version") if isinstance(data, dict) else None
    if not isinstance(version, str):
        raise ModelError(f"{registry}/{PROMOTED}: no version")
    return version


def load_model(registry: Path, version: str) -> LoadedModel:
    """Verify and load one version: its SHA-256, then skops with ``TRUSTED_TYPES`` only."""
    if "/" in version or version.startswith("."):
        raise ModelError(f"bad version name {version!r}")
    path = Path(registry) / version
    try:
        metadata = json.loads((path / METADATA).read_text())
    except FileNotFoundError:
        raise ModelError(f"{path}: no such model version") from None
    except ValueError as exc:
        raise ModelError(f"{path}/{METADATA}: unreadable ({exc})") from None
    expected = metadata.get("artifact", {}).get("sha256")
    artifact = path / ARTIFACT
    if not artifact.is_file():
        raise ModelError(f"{artifact}: missing")
    actual = _sha256(artifact)
    if not isinstance(expected, str) or actual != expected:
        raise ModelError(f"{artifact}: SHA-256 {actual[:12]}... does not match the "
                         f"{str(expected)[:12]}... recorded at training; refusing to load")
    try:
        untrusted = set(sio.get_untrusted_types(file=artifact))
    except Exception as exc:  # a malformed archive: refuse, whatever skops raised
        raise ModelError(f"{artifact}: not a readable skops file ({exc})") from None
    unknown = sorted(untrusted - TRUSTED_TYPES)
    if unknown:
        raise ModelError(f"{artifact}: refusing untrusted types {', '.join(unknown)}")
    try:
        model = sio.load(artifact, trusted=sorted(untrusted))
    except Exception as exc:
        raise ModelError(f"{artifact}: cannot load ({exc})") from None
    problems = schema_problems(model, metadata)
    if problems:
        raise ModelError(f"{path}: the pipeline cannot use this model: {'; '.join(problems)}")
    return LoadedModel(version, model, metadata)


class ReloadingNoiseScorer:
    """A ``NoiseScorer`` over the registry's promoted model, reloaded on promotion.

    Scores are cached per (model version, fingerprint, occurrence): repeats of a firing alert
    in a storm are answered from the cache (an LRU of ``cache_size``). With no model
    promoted yet, every alert scores 0.0 (never suppressed).
    """

    def __init__(self, registry: Path, *, check_every: float = 60.0,
                 recent_changes: Callable[[str, float], int] | None = None,
                 cache_size: int = 65536) -> None:
        self.registry = Path(registry)
        self.check_every = check_every
        self.recent_changes = recent_changes
        self.cache_size = cache_size
        self.current: LoadedModel | None = None
        self.previous: LoadedModel | None = None  # what a failing model drops back to
        self.last_error: str | None = None
        # called with (version, "load" | "score") when a model cannot be used (a metric)
        self.on_failure: Callable[[str, str], None] | None = None
        self._refused: set[str] = set()  # versions refused already (logged once each)
        self.last_check: float | None = None
        self._cache: OrderedDict[tuple[str, str, int], float] = OrderedDict()
        self._thresholds: dict[str, float] = {}

    @property
    def version(self) -> str | None:
        """The version scoring now, or None."""
        return self.current.version if self.current is not None else None

    def refresh(self, now: float) -> bool:
        """Re-read the promoted pointer; load a new version. Returns whether it changed."""
        self.last_check = now
        version: str | None = None
        try:
            version = promoted_version(self.registry)
            if version is None or version == self.version or version in self._refused:
                return False
            loaded = load_model(self.registry, version)
        except ModelError as exc:
            self.last_error = str(exc)  # keep scoring with the model we have
            name = version or PROMOTED
            if name not in self._refused:
                self._refused.add(name)
                log.warning("noise model %s is promoted but refused, still scoring with %s: "
                            "%s", name, self.version or "no model", exc)
                self._failed(name, "load")
            return False
        self.previous = self.current
        self.current, self._thresholds = loaded, loaded.thresholds
        self._cache.clear()
        self.last_error = None
        return True

    def __call__(self, alert: Alert, state: AlertState | None, now: float) -> float:
        return self.score_batch([alert], [state], now)[0]

    def score_batch(self, alerts: Sequence[Alert], states: Sequence[AlertState | None],
                    now: float) -> list[float]:
        """Scores for several alerts with one model call for the ones not cached: a model
        call costs milliseconds whatever the number of rows, so the pipeline batches."""
        last = self.last_check
        if last is None or now - last >= self.check_every or now < last:
            self.refresh(now)
        current = self.current
        if current is None:
            return [0.0] * len(alerts)
        scores: list[float | None] = []
        missing: list[int] = []
        rows: list[dict[str, Any]] = []
        for i, (alert, state) in enumerate(zip(alerts, states, strict=True)):
            key = (current.version, alert.fingerprint,
                   state.occurrence if state is not None else 0)
            cached = self._cache.get(key)
            if cached is not None:
                self._cache.move_to_end(key)
            else:
                missing.append(i)
                rows.append(alert_features(alert, state, now, thresholds=self._thresholds,
                                           recent_changes=self.recent_changes))
            scores.append(cached)
        if rows:
            try:
                fresh = current.model.predict_proba(pd.DataFrame(rows))[:, 1]
            except Exception as exc:  # fail open: intake never stops for a model
                self._drop(current, exc)
                return self.score_batch(alerts, states, now)
            for i, score in zip(missing, fresh, strict=True):
                state = states[i]
                key = (current.version, alerts[i].fingerprint,
                       state.occurrence if state is not None else 0)
                self._cache[key] = scores[i] = float(score)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return [s if s is not None else 0.0 for s in scores]


    def _drop(self, failing: LoadedModel, exc: BaseException) -> None:
        """Stop using ``failing``: back to the model before it, or to none (alerts pass)."""
        self._refused.add(failing.version)
        fallback = self.previous if self.previous is not failing else None
        log.error("noise model %s failed while scoring (%s: %s); scoring with %s from now "
                  "on", failing.version, type(exc).__name__, exc,
                  fallback.version if fallback else "no model (every alert passes the gate)")
        self.current, self.previous = fallback, None
        self._thresholds = fallback.thresholds if fallback else {}
        self._cache.clear()
        self._failed(failing.version, "score")

    def _failed(self, version: str, stage: str) -> None:
        if self.on_failure is not None:
            self.on_failure(version, stage)


def load_noise_scorer(registry_dir: Path, *, check_every: float = 60.0,
                      recent_changes: Callable[[str, float], int] | None = None,
                      ) -> NoiseScorer:
    """The scorer for ``Pipeline(noise_scorer=...)``: the promoted model, hot-reloaded.

    Fails fast (``ModelError``) if a promoted version exists but does not verify; with none
    promoted it scores 0.0 until one is. ``recent_changes(service, now)`` counts changes to a
    service in the last two hours (e.g. from a ``ChangeIndex``); without it the feature is
    missing and the model treats it as unknown.
    """
    scorer = ReloadingNoiseScorer(registry_dir, check_every=check_every,
                                  recent_changes=recent_changes)
    version = promoted_version(Path(registry_dir))
    if version is not None:
        scorer.current = load_model(Path(registry_dir), version)
        scorer._thresholds = scorer.current.thresholds
    return scorer


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _last_number(registry: Path) -> int:
    numbers = [int(p.name[1:]) for p in registry.glob("v[0-9]*") if p.name[1:].isdigit()]
    return max(numbers, default=0)
