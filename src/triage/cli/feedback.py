"""``triage feedback ingest``: the ``feedback`` topic into the feedback history
(``triage.streams.feedback``; the other ``feedback`` commands are in ``triage.cli.learn``).

Exit codes: 0 done (``--once``) or stopped by SIGTERM/SIGINT; 1 Kafka unavailable or the
store unusable (``--once``); 2 bad usage or config.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from triage.cli.app import err, fail
from triage.cli.learn import feedback_app
from triage.cli.stream import BootstrapOpt, ConfigOpt, _kafka_unavailable, _settings

if TYPE_CHECKING:
    from triage.metrics import FeedbackMetrics
    from triage.streams.ingest import IngestCounts


@feedback_app.command("ingest")
def feedback_ingest(
    config: ConfigOpt = None,
    bootstrap: BootstrapOpt = None,
    store: Annotated[Path | None, typer.Option(
        "--store", "-s", help="Feedback history (SQLite) to append to (default: "
        "feedback.store).", dir_okay=False)] = None,
    once: Annotated[bool, typer.Option(
        "--once/--follow", help="--once: read what the topic holds now, then exit; "
        "--follow (default): keep reading until SIGTERM/SIGINT.")] = False,
    group: Annotated[str | None, typer.Option(
        help="Consumer group (default: feedback.group, else <kafka.app_id>-feedback).")
    ] = None,
    timeout: Annotated[float, typer.Option(
        min=1.0, help="Seconds to wait for Kafka (partitions assigned, acks).")] = 60.0,
    batch: Annotated[int, typer.Option(
        min=1, help="Most messages per batch (one store transaction, one commit).")] = 500,
    session_timeout: Annotated[float, typer.Option(
        min=1.0, help="Seconds after which a silent (crashed) ingest's partitions move to "
        "the others or to its restart.")] = 10.0,
    metrics_host: Annotated[str, typer.Option(
        help="Address the /metrics exporter listens on.")] = "127.0.0.1",
    metrics_port: Annotated[int, typer.Option(
        min=0, max=65535, help="Port of the /metrics exporter (Prometheus); 0 (default): "
        "off.")] = 0,
) -> None:
    """Append judgements from the feedback topic to the history; dead-letter bad ones.

    Offsets are committed only once a batch is in the store, so a crash loses nothing; a
    replay is not doubled, as the store skips judgements it holds already.
    """
    from kafka.errors import KafkaError

    from triage.models.feedback import FeedbackStore
    from triage.streams.feedback import (
        KafkaFeedbackSource,
        default_group,
        feedback_dead_letters,
        metered,
        run_ingest,
    )
    from triage.streams.topics import explained

    settings = _settings(config, bootstrap)
    path = store or settings.feedback.store
    if path is None:
        raise fail("--store: no feedback history given (or set feedback.store)")
    history = FeedbackStore(path)
    consumer_group = default_group(settings.kafka, group or settings.feedback.group)
    stopping = threading.Event()
    source: KafkaFeedbackSource | None = None
    sink: Any = None
    exporter = _serve_metrics(metrics_host, metrics_port) if metrics_port else None
    try:
        source = KafkaFeedbackSource(settings.kafka, group=consumer_group, timeout=timeout,
                                     max_records=batch, session_timeout=session_timeout)
        sink = feedback_dead_letters(settings.kafka, timeout=timeout)
        err.print(f"feedback ingest: {source.topic} (group {consumer_group}) → {path}"
                  f"{'' if once else '; following until SIGTERM/SIGINT'}", highlight=False)
        if exporter is not None:
            err.print(f"metrics on http://{metrics_host}:{metrics_port}/metrics",
                      highlight=False)

        def observed(then: Callable[[IngestCounts], None] | None
                     ) -> Callable[[IngestCounts], None] | None:
            if exporter is None or source is None:
                return then
            return metered(exporter[1], source, then)

        with _stop_on_signals(stopping), explained(settings.kafka):
            if once and err.is_terminal:
                with Progress(TextColumn("[bold]feedback ingest"), BarColumn(),
                              MofNCompleteColumn(), TextColumn("{task.description}"),
                              console=err, transient=True) as bar:
                    task = bar.add_task("", total=None)

                    def show(c: IngestCounts) -> None:
                        left = source.backlog() if source is not None else None
                        bar.update(task, completed=c.read,
                                   total=None if left is None else c.read + left,
                                   description=f"{c.dead_lettered:,} dead-lettered")

                    counts = run_ingest(source, store=history, send_dead_letters=sink,
                                        topic=source.topic, once=True, stop=stopping.is_set,
                                        on_batch=observed(show))
            elif not once and err.is_terminal:
                with err.status("waiting for feedback") as status:

                    def tell(c: IngestCounts) -> None:
                        status.update(f"read {c.read:,}, stored {c.stored:,}, dead-lettered "
                                      f"{c.dead_lettered:,}; following")

                    counts = run_ingest(source, store=history, send_dead_letters=sink,
                                        topic=source.topic, stop=stopping.is_set,
                                        on_batch=observed(tell))
            else:
                counts = run_ingest(source, store=history, send_dead_letters=sink,
                                    topic=source.topic, once=once, stop=stopping.is_set,
                                    on_batch=observed(None))
    except KafkaError as exc:
        raise _kafka_unavailable(exc, settings) from None
    except (sqlite3.Error, OSError) as exc:
        raise fail(f"--store {path}: {exc}", 1) from None
    finally:
        if sink is not None:
            sink.close()
        if source is not None:
            source.close()
        if exporter is not None:
            exporter[0].shutdown()
            exporter[0].server_close()
    _print_summary(counts, path, stopped=stopping.is_set())


def _serve_metrics(host: str, port: int) -> tuple[Any, FeedbackMetrics]:
    """Start the /metrics exporter of the ingest; fails with exit code 2 if the port is
    taken."""
    from triage.metrics import FeedbackMetrics, serve_registry

    try:
        server, registry = serve_registry(host, port)
    except OSError as exc:
        raise fail(f"--metrics-port {port}: cannot serve metrics on {host}: {exc} "
                   "(0 turns them off)") from None
    return server, FeedbackMetrics.create(registry)


def _print_summary(c: IngestCounts, path: Path, *, stopped: bool) -> None:
    table = Table("feedback messages", "count", title="triage feedback ingest"
                  + (" (stopped)" if stopped else ""), header_style="bold")
    table.add_row("read", f"{c.read:,}")
    table.add_row(f"  stored in {path}", f"{c.stored:,}")
    table.add_row("  already stored (replayed or sent twice)", f"{c.repeats:,}")
    table.add_row("  dead-lettered (invalid)", f"{c.dead_lettered:,}")
    err.print(table)


@contextmanager
def _stop_on_signals(event: threading.Event) -> Iterator[None]:
    # The loop polls with a short timeout and checks the event between batches: a batch in
    # progress is finished and committed before the process exits.
    previous = {sig: signal.signal(sig, lambda *_: event.set())
                for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
