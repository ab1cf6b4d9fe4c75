"""The model registry: versioned noise-model artifacts in a directory, promotion, safe loading,
and the hot-reloading scorer the stage-1 noise gate calls.

Layout::

    registry/
      PROMOTED            {"version": "v0002"}   (replaced atomically by ``promote``)
      v0001/
        model.skops       the fitted Pipeline, in skops format (no pickle)
        metadata.json     version, training window, schema (features, types, classes),
                          metrics, params, library versions, static thresholds, and the
                          artifact's SHA-256
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

Fail open. A model is held to the pipeline's schema (``triage.models.schema``) at
``register_model``, ``promote`` and every load; one that is refused, or fails while scoring,
never stops intake: scoring goes on with the model before it, or none (see
``ReloadingNoiseScorer``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import platform
import shutil
import tempfile
from collections import Counter, OrderedDict
from collections.abc import Callable, Iterator, Sequence
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
from triage.models.noise import TrainedModel, alert_features
from triage.models.schema import pipeline_schema, schema_problems

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
            "features": [f["name"] for f in pipeline_schema()["features"]],
            "schema": pipeline_schema(),
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
    except (OSError, ValueError) as exc:
        raise ModelError(f"{path}/{METADATA}: unreadable ({exc})") from None
    if not isinstance(metadata, dict):
        raise ModelError(f"{path}/{METADATA}: not a JSON object")
    recorded = metadata.get("artifact")
    expected = recorded.get("sha256") if isinstance(recorded, dict) else None
    artifact = path / ARTIFACT
    if not artifact.is_file():
        raise ModelError(f"{artifact}: missing")
    try:
        actual = _sha256(artifact)
    except OSError as exc:
        raise ModelError(f"{artifact}: unreadable ({exc})") from None
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


def check_promoted(registry: Path) -> tuple[str | None, str | None]:
    """The promoted version and why it is refused (None when it loads, or none is
    promoted): what ``triage model status`` shows, checked as a worker would load it."""
    try:
        version = promoted_version(Path(registry))
    except ModelError as exc:
        return None, str(exc)
    if version is None:
        return None, None
    try:
        load_model(Path(registry), version)
    except ModelError as exc:
        return version, str(exc)
    return version, None


class ReloadingNoiseScorer:
    """A ``NoiseScorer`` over the registry's promoted model, reloaded on promotion.

    Scores are cached per (model version, fingerprint, occurrence): repeats of a firing alert
    in a storm are answered from the cache (an LRU of ``cache_size``). With no model
    every alert scores 0.0: it passes the noise gate.

    Fail open: nothing a model does stops intake. A promoted version that is missing, fails
    its hash or its schema is refused (one warning; ``on_failure(version, "load")``) and the
    model already loaded goes on scoring, or none. A model that raises while scoring, or
    answers anything but one probability per class, is dropped for the one before it, or
    none (one error line; ``on_failure(version, "score")``), and the batch is scored again.
    A refused version is tried again only when ``PROMOTED`` is written again. ``fallbacks``
    keeps one line per such event, for a run's summary.
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
        self.fallbacks: list[str] = []
        self._on_failure: Callable[[str, str], None] | None = None
        self._unreported: Counter[tuple[str, str]] = Counter()  # before on_failure was set
        # refused versions, with the PROMOTED file as it was then: retried once rewritten
        self._refused: dict[str, tuple[int, int, int] | None] = {}
        self._failing_features: set[str] = set()  # exception types logged already
        self.last_check: float | None = None
        self._cache: OrderedDict[tuple[str, str, int], float] = OrderedDict()
        self._thresholds: dict[str, float] = {}
        self._pinned = False

    @property
    def version(self) -> str | None:
        """The version scoring now, or None."""
        return self.current.version if self.current is not None else None

    @property
    def on_failure(self) -> Callable[[str, str], None] | None:
        """Called with ``(version, stage)`` when a model cannot be used (a metric). Set after
        start-up, so failures before it are reported to it when it is set."""
        return self._on_failure

    @on_failure.setter
    def on_failure(self, callback: Callable[[str, str], None] | None) -> None:
        self._on_failure = callback
        if callback is not None:
            pending, self._unreported = self._unreported, Counter()
            for (version, stage), times in pending.items():
                for _ in range(times):
                    callback(version, stage)

    def refresh(self, now: float | None) -> bool:
        """Re-read the promoted pointer; load a new version. Returns whether it changed.
        ``now`` (event time) is when it was looked at; None at start-up."""
        if now is not None:
            self.last_check = now
        stamp = self._promoted_stamp()
        version: str | None = None
        try:
            version = promoted_version(self.registry)
            if version is None or version == self.version or (
                    version in self._refused and self._refused[version] == stamp):
                return False
            loaded = load_model(self.registry, version)
        except Exception as exc:  # ModelError, or whatever a hand-made registry throws up
            self.last_error = str(exc)  # keep scoring with the model we have
            name = version or PROMOTED
            if name not in self._refused or self._refused[name] != stamp:
                self._refused[name] = stamp
                what = f"{name} is promoted but refused" if version else \
                    f"pointer {PROMOTED} is unreadable"
                self._failed(name, "load", f"noise model {what}; scoring with "
                             f"{self._describe(self.current)}: {exc}", logging.WARNING)
            return False
        self.previous = self.current
        self.current, self._thresholds = loaded, loaded.thresholds
        self._cache.clear()
        self.last_error = None
        return True

    def __call__(self, alert: Alert, state: AlertState | None, now: float) -> float:
        return self.score_batch([alert], [state], now)[0]

    @contextlib.contextmanager
    def pinned(self, version: str | None) -> Iterator[None]:
        """Score with ``version`` (None: no model) and reload nothing meanwhile: for inputs
        replayed after a restart, decided by a model promoted over since. If that version
        cannot be loaded, the current one goes on scoring (a warning says so)."""
        saved = self.current, self.previous, self._thresholds
        if version != self.version:
            try:
                model = load_model(self.registry, version) if version is not None else None
            except Exception as exc:
                log.warning("noise model %s decided the inputs replayed now but cannot be "
                            "loaded (%s): they are decided again with %s", version, exc,
                            self._describe(self.current))
            else:
                self.current, self._thresholds = model, model.thresholds if model else {}
                self._cache.clear()
        self._pinned = True
        try:
            yield
        finally:
            self._pinned = False
            if self.current is not saved[0]:
                self.current, self.previous, self._thresholds = saved
                self._cache.clear()

    def score_batch(self, alerts: Sequence[Alert], states: Sequence[AlertState | None],
                    now: float) -> list[float]:
        """Scores for several alerts with one model call for the ones not cached: a model
        call costs milliseconds whatever the number of rows, so the pipeline batches.
        Never raises: a failing model is dropped and the batch scored again without it."""
        last = self.last_check
        if not self._pinned and (last is None or now - last >= self.check_every
                                 or now < last):
            self.refresh(now)
        while (current := self.current) is not None:
            try:
                return self._score_with(current, alerts, states, now)
            except _ModelFailed as failed:  # fail open: intake never stops for a model
                self._drop(current, failed.__cause__ or failed)
        return [0.0] * len(alerts)

    def _score_with(self, current: LoadedModel, alerts: Sequence[Alert],
                    states: Sequence[AlertState | None], now: float) -> list[float]:
        scores: list[float | None] = []
        missing: list[int] = []
        rows: list[dict[str, Any]] = []
        try:
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
        except Exception as exc:  # not the model's fault: no model can score these
            self._features_failed(current.version, exc)
            return [0.0] * len(alerts)
        if rows:
            try:
                proba = np.asarray(current.model.predict_proba(pd.DataFrame(rows)),
                                   dtype=float)
                if proba.shape != (len(rows), 2) or not np.all(
                        np.isfinite(proba) & (proba >= 0.0) & (proba <= 1.0)):
                    raise ModelError(f"answered {len(rows)} alerts with an array of shape "
                                     f"{proba.shape}, not a probability per class each")
            except Exception as exc:
                raise _ModelFailed from exc
            for i, score in zip(missing, proba[:, 1], strict=True):
                state = states[i]
                key = (current.version, alerts[i].fingerprint,
                       state.occurrence if state is not None else 0)
                self._cache[key] = scores[i] = float(score)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return [s if s is not None else 0.0 for s in scores]

    def _drop(self, failing: LoadedModel, exc: BaseException) -> None:
        """Stop using ``failing``: back to the model before it, or to none (alerts pass)."""
        self._refused[failing.version] = self._promoted_stamp()
        fallback = self.previous if self.previous is not failing else None
        self.current, self.previous = fallback, None
        self._thresholds = fallback.thresholds if fallback else {}
        self._cache.clear()
        self._failed(failing.version, "score",
                     f"noise model {failing.version} failed while scoring "
                     f"({type(exc).__name__}: {exc}); scoring with "
                     f"{self._describe(fallback)} from now on", logging.ERROR)

    def _features_failed(self, version: str, exc: Exception) -> None:
        """Features could not be built (a bug, not a model): these alerts pass the gate;
        logged with its traceback once per exception type."""
        kind = type(exc).__name__
        if kind not in self._failing_features:
            self._failing_features.add(kind)
            log.error("noise gate: could not build features (%s: %s); such alerts pass the "
                      "gate unscored", kind, exc, exc_info=exc)
        self._report(version, "features")

    def _failed(self, version: str, stage: str, message: str, level: int) -> None:
        log.log(level, "%s", message)
        self.fallbacks.append(message)
        self._report(version, stage)

    def _report(self, version: str, stage: str) -> None:
        if self._on_failure is not None:
            self._on_failure(version, stage)
        else:
            self._unreported[version, stage] += 1

    def _promoted_stamp(self) -> tuple[int, int, int] | None:
        try:
            st = (self.registry / PROMOTED).stat()
        except OSError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    @staticmethod
    def _describe(model: LoadedModel | None) -> str:
        return model.version if model is not None else \
            "no model (every alert passes the noise gate)"


class _ModelFailed(Exception):
    """The model raised or answered nonsense while scoring (its cause says how)."""


def load_noise_scorer(registry_dir: Path, *, check_every: float = 60.0,
                      recent_changes: Callable[[str, float], int] | None = None,
                      ) -> NoiseScorer:
    """The scorer for ``Pipeline(noise_scorer=...)``: the promoted model, hot-reloaded.

    Never fails on a model: a promoted version that does not verify is refused with a
    warning (see ``ReloadingNoiseScorer``) and scoring starts without a model, so every
    alert passes the gate until a good version is promoted. ``recent_changes(service,
    now)`` counts changes to a service in the last two hours (e.g. from a ``ChangeIndex``);
    without it the feature is missing and the model treats it as unknown.
    """
    scorer = ReloadingNoiseScorer(registry_dir, check_every=check_every,
                                  recent_changes=recent_changes)
    scorer.refresh(None)
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
