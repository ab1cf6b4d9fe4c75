"""Streaming commands: ``topics create``, ``worker``, ``produce``, ``consume``.

Kafka settings come from the config's ``kafka:`` section (or ``TRIAGE_KAFKA__...``);
``--bootstrap`` overrides the brokers for a quick test by hand::

    deploy/kafka/kafka-local start
    triage topics create
    triage worker --config triage.yaml &
    triage produce --topic raw --input alerts.jsonl
    triage consume --topic incidents --timeout 10
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from triage.app.settings import Settings, load_settings
from triage.cli.app import app, err, fail
from triage.errors import ConfigError

topics_app = typer.Typer(no_args_is_help=True, help="Create the Kafka topics triage uses.")
app.add_typer(topics_app, name="topics")

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.",
                                                exists=True, dir_okay=False)]
BootstrapOpt = Annotated[str | None, typer.Option(
    "--bootstrap", "-b", help="Kafka brokers host:port[,host:port] (overrides kafka.bootstrap).")]
TopicOpt = Annotated[str, typer.Option(
    "--topic", "-t", help="A logical topic (raw, keyed, changes, feedback, incidents, "
    "deadletter) or a real topic name.")]


def _settings(config: Path | None, bootstrap: str | None) -> Settings:
    try:
        settings = load_settings(config)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if bootstrap:
        settings = settings.model_copy(update={
            "kafka": settings.kafka.model_copy(update={"bootstrap": bootstrap})})
    return settings


def _kafka_unavailable(exc: Exception, settings: Settings) -> typer.Exit:
    text = str(exc)
    name = type(exc).__name__
    if not text.startswith(name):  # kafka-python's messages often start with it already
        text = f"{name}: {text}" if text else name
    return fail(f"Kafka at {settings.kafka.bootstrap}: {text}", 1)


@topics_app.command("create")
def topics_create(
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    partitions: Annotated[int | None, typer.Option(
        min=1, help="Partitions per topic (default: kafka.partitions).")] = None,
    replication: Annotated[int | None, typer.Option(
        min=1, help="Replication factor (default: kafka.replication).")] = None,
    retention: Annotated[str | None, typer.Option(
        help="Retention, e.g. 7d or 36h (default: kafka.retention).")] = None,
) -> None:
    """Create alerts.raw, alerts.keyed, changes, feedback, incidents, alerts.deadletter.

    Idempotent: topics that exist already are reported, not an error.
    """
    from kafka.errors import KafkaError

    from triage.core.timeutil import parse_duration
    from triage.errors import InputError
    from triage.streams.topics import create_topics, explained

    settings = _settings(config, bootstrap)
    try:
        keep = parse_duration(retention, "--retention") if retention is not None else None
    except InputError as exc:
        raise fail(str(exc)) from None
    try:
        with explained(settings.kafka):
            reports = create_topics(settings.kafka, partitions=partitions,
                                    replication=replication, retention=keep)
    except KafkaError as exc:
        raise _kafka_unavailable(exc, settings) from None
    table = Table("topic", "name", "status", "partitions", "note",
                  title=f"Kafka topics at {settings.kafka.bootstrap}")
    for r in reports:
        table.add_row(r.logical, r.name, r.status, str(r.partitions), r.note)
    Console().print(table)


@app.command()
def produce(
    topic: TopicOpt = "raw",
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    input: Annotated[str, typer.Option("--input", "-i", help="JSON Lines file, or - for stdin.")
                     ] = "-",
    key: Annotated[str | None, typer.Option(help="Key every message with this.")] = None,
    key_field: Annotated[str | None, typer.Option(
        "--key-field", help="Key each message by this top-level field of its JSON.")] = None,
) -> None:
    """Send JSON Lines to a topic, one message per line, bytes unchanged (for testing).

    Messages to alerts.raw are keyed by the fingerprint of their first alert (with the
    configured fingerprint policies), so each lands on the partition that owns its alert,
    unless --key or --key-field says otherwise.
    """
    import orjson
    from kafka.errors import KafkaError

    from triage.app.bootstrap import build_fingerprinter
    from triage.streams.keys import partition_key
    from triage.streams.topics import explained, produce_lines, topic_name

    settings = _settings(config, bootstrap)
    name = topic_name(settings.kafka, topic)
    key_of = None
    if name == topic_name(settings.kafka, "raw"):
        fingerprinter = build_fingerprinter(settings)

        def key_of(value: bytes) -> bytes | None:
            try:
                return partition_key(orjson.loads(value), fingerprinter)
            except orjson.JSONDecodeError:
                return None  # stage 1 dead-letters it wherever it lands

    if input != "-" and not Path(input).is_file():
        raise fail(f"--input {input}: no such file")
    try:
        with explained(settings.kafka):
            if input == "-":
                n = produce_lines(settings.kafka, name, sys.stdin.buffer, key=key,
                                  key_field=key_field, key_of=key_of)
            else:
                with open(input, "rb") as fh:
                    n = produce_lines(settings.kafka, name, fh, key=key, key_field=key_field,
                                      key_of=key_of)
    except KafkaError as exc:
        raise _kafka_unavailable(exc, settings) from None
    err.print(f"{n:,} messages sent to {name}")


@app.command()
def consume(
    topic: TopicOpt = "incidents",
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    max_records: Annotated[int | None, typer.Option(
        "--max", min=1, help="Stop after this many messages.")] = None,
    timeout: Annotated[float, typer.Option(
        help="Stop when nothing arrives for this many seconds.")] = 5.0,
    meta: Annotated[bool, typer.Option(
        "--meta", help="Wrap each value with its partition, offset and key.")] = False,
) -> None:
    """Print a topic from the beginning as JSON Lines (no consumer group, nothing committed)."""
    from kafka.errors import KafkaError

    from triage.streams.topics import consume_records, explained, topic_name, write_records

    settings = _settings(config, bootstrap)
    name = topic_name(settings.kafka, topic)
    try:
        with explained(settings.kafka):
            n = write_records(consume_records(settings.kafka, name, max_records=max_records,
                                              timeout=timeout), sys.stdout.buffer, meta=meta)
    except KafkaError as exc:
        raise _kafka_unavailable(exc, settings) from None
    err.print(f"{n:,} messages from {name}")


@app.command()
def worker(
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error.")] = "info",
    session_timeout: Annotated[float, typer.Option(
        help="Seconds after which a silent worker's partitions move to the others.")] = 10.0,
    idle_after: Annotated[float, typer.Option(
        help="Wall seconds without input after which a partition's event-time clock moves "
        "on with the wall clock (so pages and timeouts fire without new input).")] = 1.0,
    metrics_host: Annotated[str, typer.Option(
        help="Address the /metrics exporter listens on.")] = "127.0.0.1",
    metrics_port: Annotated[int, typer.Option(
        min=0, max=65535, help="Port of the /metrics exporter (Prometheus); 0: off.")] = 9095,
    recovery_stall_after: Annotated[float, typer.Option(
        min=0, help="Seconds a table recovery may make no progress before the worker "
        "restarts it; after 3 restarts in vain the worker exits with code 1. 0: off.")
    ] = 15.0,
) -> None:
    """Run the faust worker: stage 1 on alerts.raw, stage 2 on alerts.keyed and changes.

    Serves Prometheus metrics on http://--metrics-host:--metrics-port/metrics.
    """
    from kafka.errors import KafkaError

    from triage.app.bootstrap import build_engine, build_pipeline
    from triage.streams.worker import run_worker

    settings = _settings(config, bootstrap)
    notes: list[str] = []
    try:
        engine = build_engine(settings, report=notes)
        pipeline = build_pipeline(settings, changes=engine.changes)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    for note in notes:
        err.print(f"[yellow]note:[/] {note}")
    try:
        code = run_worker(settings, pipeline=pipeline, engine=engine, log_level=log_level,
                          session_timeout=session_timeout, idle_after=idle_after,
                          metrics_host=metrics_host, metrics_port=metrics_port,
                          recovery_stall_after=recovery_stall_after)
    except KafkaError as exc:  # before faust starts: the topics could not be made ready
        raise _kafka_unavailable(exc, settings) from None
    raise typer.Exit(code)
