"""``triage serve``: the HTTP receiver (Alertmanager-compatible), embedded or Kafka mode."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from triage.app.bootstrap import build_engine, build_pipeline
from triage.app.settings import load_settings
from triage.cli.app import app, err, fail
from triage.errors import ConfigError, OutputConflict, StateError


@app.command()
def serve(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML config file (http: host, port, token, max_body_bytes, "
        "mode).", exists=True, dir_okay=False)] = None,
    host: Annotated[str | None, typer.Option(help="Listen address (http.host).")] = None,
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Listen port (http.port; 0 picks a free one).")] = None,
    mode: Annotated[str | None, typer.Option(
        help="embedded: triage in process; kafka: publish to alerts.raw (http.mode).")] = None,
    state: Annotated[Path | None, typer.Option(
        help="Embedded: keep state here, committed before each answer (crash-safe).",
        dir_okay=False)] = None,
    output: Annotated[str, typer.Option(
        "--output", "-o", help="Embedded: incident events (JSON Lines), or - for stdout.")
    ] = "-",
    dead_letter: Annotated[str | None, typer.Option(
        "--dead-letter", help="Embedded: failures with raw payload and reason (default: "
        "stderr).")] = None,
    feedback_store: Annotated[Path | None, typer.Option(
        "--feedback-store", help="Embedded: the feedback history POST /api/v1/feedback "
        "appends to (feedback.store).", dir_okay=False)] = None,
    outcomes: Annotated[str | None, typer.Option(
        "--outcomes", help="Embedded: also write the stage-1 outcome stream (alert state "
        "changes, suppressions, failures) here, as `triage run --outcomes` does.")] = None,
    durability: Annotated[str | None, typer.Option(
        "--durability", help="Embedded, with --state: 'power' (fsync; survives power loss) or "
        "'process' (survives a killed process; faster). Default: state.durability.")] = None,
    force: Annotated[bool, typer.Option(
        "--force", help="Embedded: start outputs over even if the state does not account "
        "for what they hold (by default serve refuses to start rather than empty them).")
    ] = False,
    desk: Annotated[str | None, typer.Option(
        "--desk", help="Embedded: apply the incident events to the incident desk's database "
        "(a SQLAlchemy URL or a SQLite path) as they are written, each once. Needs --output "
        "FILE.")] = None,
) -> None:
    """Receive alerts over HTTP: Alertmanager API v2, Alertmanager/Grafana webhooks, generic."""
    from triage.app.gctune import tune_gc
    from triage.app.server import ServeOptions, run

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")
    if mode is not None and mode not in ("embedded", "kafka"):
        raise fail(f"--mode {mode}: use embedded or kafka")
    notes: list[str] = []
    try:
        settings = load_settings(config)
        overrides = {k: v for k, v in (("host", host), ("port", port), ("mode", mode))
                     if v is not None}
        if overrides:
            settings = settings.model_copy(
                update={"http": settings.http.model_copy(update=overrides)})
        if feedback_store is not None:
            settings = settings.model_copy(update={
                "feedback": settings.feedback.model_copy(update={"store": feedback_store})})
        embedded = settings.http.mode == "embedded"
        if not embedded and (state is not None or output != "-" or dead_letter is not None
                             or feedback_store is not None or outcomes is not None):
            raise fail("for embedded mode only: --state, --output, --dead-letter, --outcomes "
                       "and --feedback-store; in Kafka mode the workers own state and outputs, "
                       "and `triage feedback ingest` the feedback history")
        if desk is not None and (not embedded or output == "-"):
            raise fail("--desk: the desk is fed from the incident output: give --output FILE "
                       "(embedded mode; in Kafka mode run `triage desk ingest`)")
        engine = build_engine(settings, report=notes) if embedded else None
        pipeline = build_pipeline(settings, changes=engine.changes) if engine else None
        if pipeline is not None:  # alert senders are not trusted with silences (issue 15)
            pipeline.trust_stream_silences = settings.http.stream_silences
    except ConfigError as exc:
        raise fail(str(exc)) from None
    for note in notes:
        err.print(f"[yellow]note:[/] {note}")
    level = durability or settings.state.durability
    if level not in ("power", "process"):
        raise fail(f"--durability {level}: expected power or process")
    tune_gc()  # a long-lived process holding every active alert (triage.app.gctune)
    try:
        run(settings, ServeOptions(state=state, output=output, dead_letter=dead_letter,
                                   outcomes=outcomes, durability=level,  # type: ignore[arg-type]
                                   force=force, desk=desk),
            pipeline=pipeline, engine=engine)
    except (StateError, OutputConflict) as exc:
        raise fail(str(exc)) from None
    except OSError as exc:  # the port is taken, or an output cannot be opened
        raise fail(str(exc)) from None
