"""Prometheus metrics for every runtime (``triage serve``, ``triage worker``, ``triage run``).

All metrics are created against a registry that is passed in (``TriageMetrics.create``), so
tests use a fresh ``CollectorRegistry`` and two runtimes in one process never collide. Names
follow the Prometheus conventions: prefix ``triage_``, counters end in ``_total``, durations
are ``_seconds`` histograms. Labels take few values (source, outcome, reason, priority, event
type, stage, topic, handler, status code), never an alert, incident or tenant id.

=====================================================  ======================================
metric                                                 what
=====================================================  ======================================
``triage_alerts_received_total{source}``               alerts in, by detected format
``triage_alerts_outcomes_total{outcome}``              triaged | deduplicated | suppressed |
                                                       failed (sums to received)
``triage_alerts_suppressed_total{reason}``             silence, maintenance, threshold, ...
``triage_alerts_dead_lettered_total{error}``           failures sent to the dead letter, by
                                                       error class
``triage_alerts_swept_total``                          state changes triage decided on its own
                                                       clock (timeouts, holds released)
``triage_incidents_created_total{priority}``           pages, P1..P4
``triage_incident_events_total{type}``                 incident.created / updated / resolved
``triage_stage_seconds{stage}``                        time per payload in ``intake`` (stage
                                                       1) and ``incidents`` (stage 2)
``triage_active_alerts``                               firing alerts in dedup state
``triage_open_incidents``                              open incidents
``triage_silences``                                    silences and maintenance windows
``triage_consumer_lag{topic}``                         messages behind, summed over partitions
                                                       (set by the worker)
``triage_messages_refetched_total{stage}``             input the Kafka consumer skipped, read
                                                       directly by the worker
``triage_recovery_restarts_total``                     table recoveries restarted by the
                                                       worker's watchdog (no progress)
``triage_late_records_total``                          stage-2 records behind its event-time
                                                       clock (their stage-1 partition was
                                                       silent), applied at the clock
``triage_waiting_messages{stage}``                     messages held for the other
                                                       partitions' event time (in memory)
``triage_noise_model_info{version}``                   the noise model in use (``none``)
``triage_noise_model_failures_total{version,stage}``   models not used: refused at ``load``,
                                                       dropped at ``score``, or ``features``
                                                       not built (intake went on)
``triage_http_requests_total{handler,code}``           requests answered by ``triage serve``
``triage_http_request_seconds{handler}``               their latency
``triage_feedback_messages_total{outcome}``            ``triage feedback ingest``: stored |
                                                       repeat | dead_lettered
``triage_feedback_backlog``                            feedback messages not read yet
``triage_feedback_last_batch_timestamp_seconds``       when a batch was last made durable
=====================================================  ======================================

Reconciliation holds on the counters as on the run summary: ``received`` equals the sum of
``outcomes`` over its four values, and ``outcomes{outcome="failed"}`` equals
``dead_lettered`` summed over ``error``.

>>> from prometheus_client import CollectorRegistry
>>> from triage.core.pipeline import Pipeline
>>> registry = CollectorRegistry()
>>> metrics = TriageMetrics.create(registry)
>>> metrics.observe(Pipeline().process(b'{"alertname": "DiskFull", "service": "db", "at": 1}'))
>>> registry.get_sample_value("triage_alerts_received_total", {"source": "generic"})
1.0
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    start_http_server,
)

from triage.core.incidents import Event, IncidentEngine
from triage.core.normalize import BY_NAME
from triage.core.pipeline import Pipeline
from triage.core.types import Failed, Outcome, Suppressed

Stage = Literal["intake", "incidents"]

OUTCOMES = ("triaged", "deduplicated", "suppressed", "failed")
PRIORITIES = ("P1", "P2", "P3", "P4")
EVENT_TYPES = ("incident.created", "incident.updated", "incident.resolved")
STAGES: tuple[Stage, ...] = ("intake", "incidents")
# The reasons the core gives a Suppressed outcome (core.pipeline and core.dedup). Initialised
# at zero so that rate() and the alerting rules see a series before the first suppression.
SUPPRESS_REASONS = ("silence", "maintenance", "threshold", "noise", "flapping", "pending",
                    "resolved_unseen", "held", "kept")
# The InputError classes of triage.errors; anything else is an internal error. Mapped so the
# `error` label cannot take arbitrary exception class names.
INPUT_ERRORS = ("DecodeError", "OversizeError", "UnknownFormatError", "SchemaError",
                "TimestampError")
UNKNOWN_SOURCE = "unknown"  # a payload that failed before its format was known

# Per payload, stage 1 takes microseconds to a few milliseconds and stage 2 up to tens of
# milliseconds in a storm; the default client buckets (5 ms and up) would lump them together.
STAGE_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                 0.25, 0.5, 1.0, 2.5)
HTTP_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                5.0, 10.0)


@dataclass(frozen=True, slots=True)
class TriageMetrics:
    """The metrics of one triage process, registered on one registry."""

    registry: CollectorRegistry
    alerts_received: Counter
    outcomes: Counter
    suppressed: Counter
    dead_lettered: Counter
    swept: Counter
    incidents_created: Counter
    incident_events: Counter
    stage_seconds: Histogram
    active_alerts: Gauge
    open_incidents: Gauge
    silences: Gauge
    consumer_lag: Gauge
    refetched: Counter
    recovery_restarts: Counter
    late_records: Counter
    waiting: Gauge
    noise_model: Info
    noise_model_failures: Counter
    http_requests: Counter
    http_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry) -> TriageMetrics:
        """Create and register every metric on ``registry``, with the few known label values
        initialised at zero (so a series exists before its first event).

        >>> from prometheus_client import CollectorRegistry
        >>> r = CollectorRegistry()
        >>> _ = TriageMetrics.create(r)
        >>> r.get_sample_value("triage_alerts_outcomes_total", {"outcome": "failed"})
        0.0
        """
        r = registry
        m = cls(
            registry=r,
            alerts_received=Counter(
                "triage_alerts_received", "Alerts received, by detected source format "
                "(a payload that could not be read counts once, as source=unknown).",
                ["source"], registry=r),
            outcomes=Counter(
                "triage_alerts_outcomes", "Stage-1 outcome of each alert received: triaged "
                "(a state change passed on), deduplicated, suppressed or failed.",
                ["outcome"], registry=r),
            suppressed=Counter(
                "triage_alerts_suppressed", "Alerts suppressed, by reason.", ["reason"],
                registry=r),
            dead_lettered=Counter(
                "triage_alerts_dead_lettered", "Payloads or alerts sent to the dead letter "
                "with their raw input, by error class.", ["error"], registry=r),
            swept=Counter(
                "triage_alerts_swept", "Alert state changes triage decided on its own clock "
                "(resolve timeouts, holds released, flapping settled).", registry=r),
            incidents_created=Counter(
                "triage_incidents_created", "Incidents created (each one is a page), by "
                "priority.", ["priority"], registry=r),
            incident_events=Counter(
                "triage_incident_events", "Incident events emitted, by type.", ["type"],
                registry=r),
            stage_seconds=Histogram(
                "triage_stage_seconds", "Processing time per payload (intake) or per batch "
                "of stage-1 outcomes (incidents).", ["stage"], buckets=STAGE_BUCKETS,
                registry=r),
            active_alerts=Gauge(
                "triage_active_alerts", "Firing alerts held in dedup state.", registry=r),
            open_incidents=Gauge(
                "triage_open_incidents", "Open incidents.", registry=r),
            silences=Gauge(
                "triage_silences", "Silences and maintenance windows known.", registry=r),
            consumer_lag=Gauge(
                "triage_consumer_lag", "Messages the worker is behind, summed over the "
                "partitions it owns.", ["topic"], registry=r),
            refetched=Counter(
                "triage_messages_refetched", "Input messages the Kafka consumer skipped (or "
                "committed past) that the worker read directly, by stage.", ["stage"],
                registry=r),
            recovery_restarts=Counter(
                "triage_recovery_restarts", "Table recoveries (after a rebalance) that made "
                "no progress and were restarted by the worker's watchdog.", registry=r),
            late_records=Counter(
                "triage_late_records", "Records that reached stage 2 behind its event-time "
                "clock (their stage-1 partition was silent), applied at the clock.",
                registry=r),
            waiting=Gauge(
                "triage_waiting_messages", "Messages a stage holds in memory until the other "
                "partitions' event time reaches theirs, by stage.", ["stage"], registry=r),
            noise_model=Info(
                "triage_noise_model", "The noise model in use (version none: no model).",
                registry=r),
            noise_model_failures=Counter(
                "triage_noise_model_failures",
                "Noise models that could not be used: refused at load (load), failing "
                "while scoring (score), or features not built (features); intake went on "
                "with the previous model or none.",
                ["version", "stage"], registry=r),
            http_requests=Counter(
                "triage_http_requests", "HTTP requests answered, by handler and status code.",
                ["handler", "code"], registry=r),
            http_seconds=Histogram(
                "triage_http_request_seconds", "HTTP request latency, by handler.",
                ["handler"], buckets=HTTP_BUCKETS, registry=r),
        )
        for source in (*BY_NAME, UNKNOWN_SOURCE):
            m.alerts_received.labels(source)
        for outcome in OUTCOMES:
            m.outcomes.labels(outcome)
        for reason in SUPPRESS_REASONS:
            m.suppressed.labels(reason)
        for error in (*INPUT_ERRORS, "internal"):
            m.dead_lettered.labels(error)
        for priority in PRIORITIES:
            m.incidents_created.labels(priority)
        for kind in EVENT_TYPES:
            m.incident_events.labels(kind)
        for stage in STAGES:
            m.stage_seconds.labels(stage)
            m.refetched.labels(stage)
        m.set_model_version(None)
        return m

    # -- updates from core results -------------------------------------------------------

    def observe(
        self,
        outcomes: Sequence[Outcome],
        *,
        swept: int = 0,
        events: Iterable[Event] = (),
        seconds: Mapping[Stage, float] | None = None,
    ) -> None:
        """Count what one ``Pipeline.process`` (and ``IncidentEngine.observe``) returned.

        ``swept`` is how many of the leading ``outcomes`` came from the pipeline's own clock
        rather than the input (the rise of ``pipeline.counts["swept"]`` during the call):
        they are counted apart so that received still equals the sum of outcomes.
        ``seconds`` maps a stage to the time it took.
        """
        if swept:
            self.swept.inc(swept)
        self.observe_outcomes(outcomes[swept:] if swept else outcomes)
        self.observe_events(events)
        if seconds:
            for stage, secs in seconds.items():
                self.stage_seconds.labels(stage).observe(secs)

    def observe_outcomes(self, outcomes: Iterable[Outcome]) -> None:
        """Count input outcomes: received by source, outcome, suppression reason, failures."""
        received: dict[str, int] = {}
        kinds: dict[str, int] = {}
        for o in outcomes:
            if isinstance(o, Failed):
                source = o.source or UNKNOWN_SOURCE
                error = o.error if o.error in INPUT_ERRORS else "internal"
                self.dead_lettered.labels(error).inc()
            else:
                source = o.alert.source
                if isinstance(o, Suppressed):
                    self.suppressed.labels(o.reason).inc()
            received[source] = received.get(source, 0) + 1
            kinds[o.kind] = kinds.get(o.kind, 0) + 1
        # one inc per label value and call, not per alert: a storm payload holds hundreds
        for source, n in received.items():
            self.alerts_received.labels(source).inc(n)
        for kind, n in kinds.items():
            self.outcomes.labels(kind).inc(n)

    def observe_events(self, events: Iterable[Event]) -> None:
        """Count incident events, and incidents created by priority."""
        for event in events:
            kind = event.get("type", "")
            self.incident_events.labels(kind).inc()
            if kind == "incident.created":
                self.incidents_created.labels(event["incident"]["priority"]).inc()

    def observe_seconds(self, stage: Stage, seconds: float) -> None:
        """Record how long ``stage`` took for one payload or batch."""
        self.stage_seconds.labels(stage).observe(seconds)

    # -- state sizes, lag, model ---------------------------------------------------------

    def set_state_sizes(self, *, active_alerts: int | None = None,
                        open_incidents: int | None = None, silences: int | None = None) -> None:
        """Set the state-size gauges (a runtime that owns only part of the state, such as
        one worker's partitions, sets what it owns)."""
        if active_alerts is not None:
            self.active_alerts.set(active_alerts)
        if open_incidents is not None:
            self.open_incidents.set(open_incidents)
        if silences is not None:
            self.silences.set(silences)

    def track_state(self, *, active_alerts: Callable[[], float] | None = None,
                    open_incidents: Callable[[], float] | None = None,
                    silences: Callable[[], float] | None = None) -> None:
        """Compute the state-size gauges at scrape time from the given functions (for a
        runtime holding the state in process), instead of on every payload."""
        for gauge, fn in ((self.active_alerts, active_alerts),
                          (self.open_incidents, open_incidents), (self.silences, silences)):
            if fn is not None:
                gauge.set_function(fn)

    def set_consumer_lag(self, topic: str, lag: float) -> None:
        """Messages behind on ``topic`` (summed over the partitions this worker owns)."""
        self.consumer_lag.labels(topic).set(lag)

    def set_model_version(self, version: str | None) -> None:
        """The noise model version in use; ``None`` when there is none."""
        self.noise_model.info({"version": version or "none"})

    def noise_model_failed(self, version: str, stage: str) -> None:
        """A noise model refused at load or failing while scoring (intake went on)."""
        self.noise_model_failures.labels(version, stage).inc()

    def observe_http(self, handler: str, code: int, seconds: float) -> None:
        """One HTTP request answered."""
        self.http_requests.labels(handler, str(code)).inc()
        self.http_seconds.labels(handler).observe(seconds)


def track_embedded_state(metrics: TriageMetrics, pipeline: Pipeline,
                         engine: IncidentEngine | None) -> None:
    """Point the state-size gauges at an in-process ``Pipeline`` (and ``IncidentEngine``).

    Counted at scrape time: O(state) per scrape, nothing per alert.
    """
    metrics.track_state(
        active_alerts=lambda: sum(1 for st in pipeline.dedup.states.values()
                                  if st.status == "firing"),
        silences=lambda: len(pipeline.silences),
        open_incidents=(lambda: sum(1 for i in engine.incidents.values() if i.status == "open"))
        if engine is not None else None,
    )


FEEDBACK_OUTCOMES = ("stored", "repeat", "dead_lettered")


@dataclass(frozen=True, slots=True)
class FeedbackMetrics:
    """The metrics of ``triage feedback ingest``: what each batch did, once it is durable
    (stored and committed), how much is left to read, and when a batch last got through (a
    stalled ingest shows as an old timestamp while the backlog grows).

    >>> from prometheus_client import CollectorRegistry
    >>> r = CollectorRegistry()
    >>> m = FeedbackMetrics.create(r)
    >>> m.observe(stored=3, repeats=1, dead_lettered=2, backlog=10, now=5.0)
    >>> r.get_sample_value("triage_feedback_messages_total", {"outcome": "repeat"})
    1.0
    """

    messages: Counter
    backlog: Gauge
    last_batch: Gauge

    @classmethod
    def create(cls, registry: CollectorRegistry) -> FeedbackMetrics:
        """Create and register the metrics on ``registry`` (outcomes initialised at 0)."""
        m = cls(
            messages=Counter(
                "triage_feedback_messages", "Feedback messages made durable, by outcome: "
                "stored (new judgement), repeat (already in the history), dead_lettered.",
                ["outcome"], registry=registry),
            backlog=Gauge(
                "triage_feedback_backlog", "Feedback messages on the topic not read yet "
                "(partitions this ingest owns).", registry=registry),
            last_batch=Gauge(
                "triage_feedback_last_batch_timestamp_seconds", "When the last batch was "
                "stored and its offsets committed (Unix time).", registry=registry),
        )
        for outcome in FEEDBACK_OUTCOMES:
            m.messages.labels(outcome)
        return m

    def observe(self, *, stored: int, repeats: int, dead_lettered: int,
                backlog: int | None, now: float) -> None:
        """One durable batch's counts (not running totals), and the backlog after it."""
        for outcome, n in zip(FEEDBACK_OUTCOMES, (stored, repeats, dead_lettered),
                              strict=True):
            if n:
                self.messages.labels(outcome).inc(n)
        if backlog is not None:
            self.backlog.set(backlog)
        self.last_batch.set(now)


def serve_registry(host: str, port: int) -> tuple[Any, CollectorRegistry]:
    """A fresh registry with the process collectors the default registry has (CPU, memory,
    file descriptors, platform), served on ``http://host:port/metrics`` by a background
    thread; returns the server (``shutdown()``, ``server_close()``) and the registry.
    ``OSError`` if the port is taken."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server, registry
