"""Run ``triage serve``: build the backend for the mode, listen, stop cleanly on SIGTERM or
SIGINT (outputs flushed and state committed before exit)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from aiohttp import web
from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector

from triage.bootstrap import build_fingerprinter
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.http.app import create_app
from triage.http.embedded import EmbeddedBackend
from triage.http.intake import Backend
from triage.http.relay import KafkaBackend
from triage.metrics import TriageMetrics
from triage.settings import Settings
from triage.statefile import Durability
from triage.streams.publisher import Publisher

log = logging.getLogger("triage.http")


@dataclass(frozen=True, slots=True)
class ServeOptions:
    """What ``triage serve`` takes besides the settings (``settings.http`` holds host, port,
    token, body limit and mode, already overridden from the command line)."""

    state: Path | None = None
    output: str = "-"
    dead_letter: str | None = None
    tick_interval: float = 1.0
    outcomes: str | None = None
    durability: Durability = "power"
    force: bool = False


def build_backend(settings: Settings, options: ServeOptions, metrics: TriageMetrics, *,
                  pipeline: Pipeline | None = None, engine: IncidentEngine | None = None,
                  clock: Callable[[], float] = time.time) -> Backend:
    """The backend for ``settings.http.mode``; embedded mode needs ``pipeline`` and
    ``engine`` (built by ``triage.bootstrap``)."""
    if settings.http.mode == "kafka":
        limit = settings.intake.max_payload_bytes
        # the producer must carry whatever the door lets through, envelope included
        publisher = Publisher(settings.kafka, max_request_size=limit + 4096)
        return KafkaBackend(publisher, metrics, max_payload_bytes=limit, clock=clock,
                            fingerprinter=build_fingerprinter(settings))
    if pipeline is None or engine is None:
        raise ValueError("embedded mode needs a pipeline and an incident engine")
    return EmbeddedBackend(pipeline, engine, metrics, output=options.output,
                           dead_letter=options.dead_letter, state_path=options.state,
                           tick_interval=options.tick_interval, clock=clock,
                           feedback_store=settings.feedback.store, outcomes=options.outcomes,
                           durability=options.durability, force=options.force)


async def serve(settings: Settings, backend: Backend, metrics: TriageMetrics,
                stop: asyncio.Event | None = None) -> None:
    """Listen on ``settings.http.host:port`` until ``stop`` is set or a SIGTERM/SIGINT."""
    http = settings.http
    app = create_app(backend, metrics, token=http.token, max_body_bytes=http.max_body_bytes)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()  # starts the backend: state restored before the port opens
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        site = web.TCPSite(runner, http.host, http.port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else http.port  # --port 0: picked
        print(f"triage serve: {backend.mode} mode, listening on http://{http.host}:{port}",
              file=sys.stderr, flush=True)
        await stop.wait()
        log.info("stopping")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        await runner.cleanup()  # stops the backend: outputs flushed, state committed


def run(settings: Settings, options: ServeOptions, *, pipeline: Pipeline | None = None,
        engine: IncidentEngine | None = None) -> None:
    """Blocking entry point for the CLI."""
    registry = CollectorRegistry()
    # the process's own CPU, memory and file descriptors, as the default registry would have
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    metrics = TriageMetrics.create(registry)
    backend = build_backend(settings, options, metrics, pipeline=pipeline, engine=engine)
    asyncio.run(serve(settings, backend, metrics))
