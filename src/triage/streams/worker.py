"""``triage worker``: one faust worker running both stages, started programmatically (no
``app.main()``, no faust command line).

Start as many as there are partitions to share; Kafka assigns each worker its partitions of
``alerts.raw`` and ``alerts.keyed`` and moves them when a worker joins or leaves.

``/metrics`` (prometheus-client's exporter, in a thread of its own) serves the worker's
``TriageMetrics`` on ``metrics_host:metrics_port`` (127.0.0.1:9095 by default; port 0: off).
"""

from __future__ import annotations

import logging
from typing import Any

from triage.app.settings import Settings
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.metrics import TriageMetrics, serve_registry
from triage.streams.agents import INCIDENT_STATE, INTAKE_STATE, Streams
from triage.streams.app import build_app
from triage.streams.stages import IncidentStage, IntakeStage, domain_mapper
from triage.streams.topics import changelog_topic, create_changelogs, create_topics, explained
from triage.streams.watchdog import STALL_AFTER
from triage.streams.wiring import wire

log = logging.getLogger("triage.streams")

METRICS_HOST = "127.0.0.1"
METRICS_PORT = 9095


def build_streams(settings: Settings, *, pipeline: Pipeline, engine: IncidentEngine,
                  session_timeout: float = 10.0, partitions: dict[str, int] | None = None,
                  **wire_options: Any) -> Streams:
    """The app with both stages wired, ``pipeline`` and ``engine`` as templates."""
    app = build_app(settings, session_timeout=session_timeout)
    intake = IntakeStage(pipeline, domain_of=domain_mapper(engine))
    incidents = IncidentStage(engine, idle_timeout=settings.kafka.idle_timeout)
    return wire(app, settings, intake=intake, incidents=incidents, partitions=partitions,
                **wire_options)


def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create missing topics (idempotent) and return the real partition counts by logical
    name: the state tables must have as many partitions as their input topics.

    The tables' changelog topics are created here too, with those counts, and their
    leaders awaited: faust creates them itself just before it subscribes, and a worker that
    got its first assignment before the broker's metadata listed them was seen to sit
    "ready" and consume nothing."""
    with explained(settings.kafka):
        reports = create_topics(settings.kafka)
        for r in reports:
            if r.note:
                log.warning("topic %s %s", r.name, r.note)
        partitions = {r.logical: r.partitions for r in reports}
        create_changelogs(settings.kafka, {
            changelog_topic(settings.kafka.app_id, INTAKE_STATE): partitions["raw"],
            changelog_topic(settings.kafka.app_id, INCIDENT_STATE): partitions["keyed"]})
    return partitions


def run_worker(settings: Settings, *, pipeline: Pipeline, engine: IncidentEngine,
               log_level: str = "info", session_timeout: float = 10.0,
               idle_after: float = 1.0, metrics_host: str = METRICS_HOST,
               metrics_port: int = METRICS_PORT,
               recovery_stall_after: float = STALL_AFTER) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    from faust import Worker

    logging.basicConfig(level=log_level.upper(),
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    # kafka-python (topic creation) narrates every connection at INFO
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    metrics: TriageMetrics | None = None
    server: Any = None
    if metrics_port:
        try:
            server, registry = serve_registry(metrics_host, metrics_port)
        except OSError as exc:
            log.error("cannot serve metrics on %s:%d: %s (--metrics-port 0 turns them off)",
                      metrics_host, metrics_port, exc)
            return 2
        metrics = TriageMetrics.create(registry)
        log.info("metrics on http://%s:%d/metrics", metrics_host, metrics_port)
    try:
        partitions = ensure_topics(settings)
        streams = build_streams(settings, pipeline=pipeline, engine=engine,
                                session_timeout=session_timeout, partitions=partitions,
                                idle_after=idle_after, metrics=metrics,
                                recovery_stall_after=recovery_stall_after)
        worker = Worker(streams.app, loglevel=log_level, quiet=True, redirect_stdouts=False)
        # faust's start-up spinner, at WARNING and above, sets the root logger to DEBUG so it
        # can spin on every record: aiokafka then formats a debug record for every message
        # sent (11% of the worker's CPU). No spinner: the root level stays as asked.
        worker.spinner = None
        try:
            worker.execute_from_commandline()
        except SystemExit as exc:
            return int(exc.code or 0) if isinstance(exc.code, int | None) else 1
        return 0
    finally:
        if server is not None:
            server.shutdown()
            server.server_close()
