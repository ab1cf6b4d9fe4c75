"""The composition root: build a ``Pipeline`` from ``Settings``. File reading lives here,
so the core stays pure."""

from __future__ import annotations

import time
from pathlib import Path

import orjson
import yaml

from triage.app.settings import Settings, SilenceSettings
from triage.core.changes import ChangeIndex
from triage.core.dedup import DedupPolicy, DedupStore, FlapPolicy
from triage.core.fingerprint import Fingerprinter, FingerprintPolicy
from triage.core.incidents import CorrelationPolicy, IncidentEngine
from triage.core.incidents.evidence import KindRules
from triage.core.incidents.priority import parse_priority
from triage.core.incidents.warroom import parse_war_room
from triage.core.matchers import parse_matchers
from triage.core.normalize import BY_NAME, cloudwatch, pagerduty
from triage.core.oncall import OnCallSchedule, parse_oncall
from triage.core.pipeline import IntakeLimits, NoiseScorer, Pipeline
from triage.core.services import ServiceMapper
from triage.core.silences import Silence, SilenceSet, silence_from_alertmanager
from triage.core.thresholds import Thresholds, parse_thresholds
from triage.core.triage import Triage
from triage.errors import ConfigError, InputError
from triage.loaders.changes import load_changes
from triage.loaders.topology import load_topology

# Sources whose identity is not their whole label set (see each normalizer's docstring).
DEFAULT_IDENTITY: dict[str, tuple[str, ...]] = {
    pagerduty.SOURCE: pagerduty.IDENTIFYING_LABELS,
    cloudwatch.SOURCE: cloudwatch.IDENTIFYING_LABELS,
}


def build_fingerprinter(settings: Settings) -> Fingerprinter:
    """Per-source fingerprint policies: defaults, then the config's ``intake.sources``."""
    ignore = frozenset(settings.intake.ignore_labels)
    policies: dict[str, FingerprintPolicy] = {
        name: FingerprintPolicy(include=frozenset(labels), exclude=ignore)
        for name, labels in DEFAULT_IDENTITY.items()
    }
    for name, src in settings.intake.sources.items():
        if name not in BY_NAME:
            raise ConfigError(f"intake.sources.{name}",
                              f"unknown source; known: {', '.join(BY_NAME)}")
        include = frozenset(src.identifying_labels) if src.identifying_labels is not None else (
            policies[name].include if name in policies else None)
        policies[name] = FingerprintPolicy(include=include,
                                           exclude=ignore | frozenset(src.ignore_labels))
    return Fingerprinter(policies, FingerprintPolicy(exclude=ignore))


def build_silence(s: SilenceSettings, key: str, kind: str) -> Silence:
    """A ``Silence`` from its config entry; errors name ``key``."""
    try:
        items = s.matchers if isinstance(s.matchers, list) else [s.matchers]
        matchers = tuple(m for item in items for m in parse_matchers(item))
        starts, ends = s.starts_at, s.ends_at
        ident = s.id or f"{kind}-{key.rsplit('[', 1)[-1].rstrip(']')}"
        return Silence(id=ident, matchers=matchers, starts_at=starts, ends_at=ends,
                       created_by=s.created_by, comment=s.comment, kind=kind,  # type: ignore[arg-type]
                       repeat_every=s.repeat_every)
    except InputError as exc:
        raise ConfigError(exc.field or key, exc.message) from None
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None


def load_silences(settings: Settings) -> SilenceSet:
    """Silences and maintenance windows from the config and the silences file."""
    silences = SilenceSet()
    for i, s in enumerate(settings.silences):
        silences.add(build_silence(s, f"silences[{i}]", "silence"))
    for i, s in enumerate(settings.maintenance):
        silences.add(build_silence(s, f"maintenance[{i}]", "maintenance"))
    path = settings.silence_store.file
    if path is not None:
        try:
            items = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError) as exc:
            raise ConfigError("silence_store.file", f"{path}: {exc}") from None
        if not isinstance(items, list):
            raise ConfigError("silence_store.file", f"{path}: expected a JSON array of silences")
        for i, obj in enumerate(items):
            try:
                silences.add(silence_from_alertmanager(obj))
            except (InputError, ValueError) as exc:
                raise ConfigError(f"silence_store.file[{i}]", f"{path}: {exc}") from None
    return silences


def load_thresholds(path: Path | None) -> Thresholds | None:
    """The tuned thresholds file (docs/thresholds.md), if configured."""
    if path is None:
        return None
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError("thresholds_file", f"{path}: {exc}") from None
    try:
        return parse_thresholds(data)
    except ConfigError as exc:
        raise ConfigError(f"thresholds_file {path}: {exc.key}", exc.message) from None


def build_noise_gate(settings: Settings, changes: ChangeIndex | None
                     ) -> tuple[NoiseScorer | None, float]:
    """The noise scorer over the configured model registry (hot-reloaded on promotion) and
    the suppression threshold; ``(None, 1.0)`` when no registry is configured. A promoted
    model that does not verify is not a config error: it is refused with a warning and
    scoring starts without it (fail open, docs/learning.md)."""
    noise = settings.noise
    if noise.registry is None:
        return None, 1.0
    from triage.models.registry import load_noise_scorer

    def recent_changes(service: str, now: float) -> int:
        return len(changes.between(service, now - 7200.0, now)) if changes is not None else 0

    scorer = load_noise_scorer(noise.registry, check_every=noise.check_every,
                               recent_changes=recent_changes)
    threshold = noise.threshold
    if threshold is None:
        current = getattr(scorer, "current", None)
        recommended = current.metadata.get("recommended_threshold") if current else None
        threshold = float(recommended) if recommended else 0.95
    return scorer, threshold


def build_pipeline(settings: Settings, *, changes: ChangeIndex | None = None) -> Pipeline:
    """A ready ``Pipeline`` for ``settings`` (state not yet restored). ``changes`` (stage 2's
    change index) feeds the noise model's recent-changes feature."""
    scorer, noise_threshold = build_noise_gate(settings, changes)
    timeouts = {name: src.resolve_timeout for name, src in settings.intake.sources.items()
                if src.resolve_timeout is not None}
    dedup = DedupStore(
        DedupPolicy(resolve_timeout=settings.dedup.resolve_timeout,
                    notification_timeout=settings.dedup.notification_timeout,
                    retention=settings.dedup.retention, resolve_timeouts=timeouts),
        FlapPolicy(enabled=settings.flap.enabled, max_changes=settings.flap.max_changes,
                   window=settings.flap.window, stable_after=settings.flap.stable_after),
    )
    return Pipeline(
        fingerprinter=build_fingerprinter(settings),
        silences=load_silences(settings),
        thresholds=load_thresholds(settings.thresholds_file),
        dedup=dedup,
        limits=intake_limits(settings),
        wall_clock=time.time,
        noise_scorer=scorer,
        noise_threshold=noise_threshold,
    )


def build_triage(settings: Settings) -> Triage:
    """Both stages from ``settings``, joined (``triage.core.triage``)."""
    engine = build_engine(settings)
    return Triage(build_pipeline(settings, changes=engine.changes), engine)


def intake_limits(settings: Settings) -> IntakeLimits:
    """The pipeline's intake limits from ``settings``."""
    return IntakeLimits(max_payload_bytes=settings.intake.max_payload_bytes,
                        sweep_interval=settings.intake.sweep_interval,
                        silence_retention=settings.silence_store.retention,
                        max_future_skew=settings.intake.max_future_skew,
                        future_timestamps=settings.intake.future_timestamps)


def build_reader(settings: Settings) -> Pipeline:
    """A pipeline that only reads (normalizes, fingerprints, bounds future timestamps), for
    ``triage serve`` in Kafka mode to split bodies per alert at the door."""
    return Pipeline(fingerprinter=build_fingerprinter(settings),
                    limits=intake_limits(settings), wall_clock=time.time)


def load_oncall(settings: Settings) -> OnCallSchedule | None:
    """On-call rotations from ``oncall`` or ``oncall_file`` (whose top level may be
    ``oncall:``), or None when neither is set."""
    data: object = settings.oncall or None
    if settings.oncall_file is not None:
        try:
            doc = yaml.safe_load(settings.oncall_file.read_text())
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError("oncall_file", f"{settings.oncall_file}: {exc}") from None
        data = doc.get("oncall", doc) if isinstance(doc, dict) else doc
    if not data:
        return None
    return parse_oncall(data)


def build_engine(settings: Settings, *, report: list[str] | None = None) -> IncidentEngine:
    """The incident stage for ``settings``. What the loaders noticed (unresolved references,
    services missing from the catalog, bad change lines) is appended to ``report``."""
    topology, notes = load_topology(settings.topology)
    changes = ChangeIndex()
    if settings.changes_file is not None:
        changes, bad = load_changes(settings.changes_file)
        notes = [*notes, *bad]
    if report is not None:
        report.extend(notes)
    c = settings.correlation
    recurrence = c.recurrence_window
    if c.reopen_within is not None:
        recurrence = c.reopen_within
    if c.after_resolve == "new":
        recurrence = 0.0
    try:
        kinds = KindRules.create(c.kinds, c.kind_label)
    except ValueError as exc:
        raise ConfigError("correlation.kinds", str(exc)) from None
    return IncidentEngine(
        topology=topology,
        mapper=ServiceMapper.create(settings.topology.service_labels,
                                    settings.topology.service_aliases),
        changes=changes,
        policy=CorrelationPolicy(window=c.window, horizon=c.horizon, hops=c.hops,
                                 page_delay=c.page_delay, lone_delay=c.lone_delay,
                                 lone_critical_delay=c.lone_critical_delay,
                                 page_unknown_services=c.page_unknown_services,
                                 update_interval=c.update_interval, merge=c.merge,
                                 split=c.split, attach_weak=c.attach_weak,
                                 quiet_period=c.quiet_period, recurrence_window=recurrence,
                                 change_lookback=c.change_lookback, change_hops=c.change_hops,
                                 max_suspects=c.max_suspects, kinds=kinds),
        priority=parse_priority(settings.priority),
        war_room=parse_war_room(settings.war_room),
        oncall=load_oncall(settings),
    )
