"""``triage worker``: one faust worker running both stages, started programmatically (no
``app.main()``, no faust command line).

Start as many as there are partitions to share; Kafka assigns each worker its partitions of
``alerts.raw`` and ``alerts.keyed`` and moves them when a worker joins or leaves.
"""

from __future__ import annotations

import logging
from typing import Any

from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.settings import Settings
from triage.streams.agents import Streams, wire
from triage.streams.app import build_app
from triage.streams.stages import IncidentStage, IntakeStage, domain_mapper
from triage.streams.topics import create_topics

log = logging.getLogger("triage.streams")


def build_streams(settings: Settings, *, pipeline: Pipeline, engine: IncidentEngine,
                  session_timeout: float = 10.0, partitions: dict[str, int] | None = None,
                  **wire_options: Any) -> Streams:
    """The app with both stages wired, ``pipeline`` and ``engine`` as templates."""
    app = build_app(settings, session_timeout=session_timeout)
    intake = IntakeStage(pipeline, domain_of=domain_mapper(engine))
    incidents = IncidentStage(engine)
    return wire(app, settings, intake=intake, incidents=incidents, partitions=partitions,
                **wire_options)


def ensure_topics(settings: Settings) -> dict[str, int]:
    """Create missing topics (idempotent) and return the real partition counts by logical
    name: the state tables must have as many partitions as their input topics."""
    reports = create_topics(settings.kafka)
    for r in reports:
        if r.note:
            log.warning("topic %s %s", r.name, r.note)
    return {r.logical: r.partitions for r in reports}


def run_worker(settings: Settings, *, pipeline: Pipeline, engine: IncidentEngine,
               log_level: str = "info", session_timeout: float = 10.0,
               idle_after: float = 1.0) -> int:
    """Run until SIGTERM/SIGINT; returns the exit code."""
    from faust import Worker

    logging.basicConfig(level=log_level.upper(),
                        format="[%(asctime)s] %(levelname)s %(name)s: %(message)s")
    # kafka-python (topic creation) narrates every connection at INFO
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))
    partitions = ensure_topics(settings)
    streams = build_streams(settings, pipeline=pipeline, engine=engine,
                            session_timeout=session_timeout, partitions=partitions,
                            idle_after=idle_after)
    worker = Worker(streams.app, loglevel=log_level, quiet=True, redirect_stdouts=False)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        return int(exc.code or 0) if isinstance(exc.code, int | None) else 1
    return 0
