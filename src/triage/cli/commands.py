"""Core commands: run, demo, formats, check-config, version."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
from rich.table import Table

from triage import __version__
from triage.app.bootstrap import build_engine, build_pipeline
from triage.app.gctune import tune_gc
from triage.app.runtime import RunResult, run_embedded
from triage.app.settings import load_settings
from triage.cli.app import app, err, fail
from triage.errors import ConfigError, OutputConflict, StateError, StorageError

ConfigOpt = Annotated[Path | None, typer.Option("--config", "-c", help="YAML config file.",
                                                exists=True, dir_okay=False)]


@app.command()
def run(
    config: ConfigOpt = None,
    input: Annotated[str, typer.Option(
        "--input", "-i", help="JSON Lines file, or - for stdin.")] = "-",
    output: Annotated[str, typer.Option(
        "--output", "-o", help="Incident events (JSON Lines), or - for stdout.")] = "-",
    outcomes: Annotated[str | None, typer.Option(
        "--outcomes", help="Also write the stage-1 outcome stream (alert state changes, "
        "suppressions, failures) here.")] = None,
    dead_letter: Annotated[str | None, typer.Option(
        "--dead-letter", help="Failures with raw payload and reason (default: stderr).")] = None,
    state: Annotated[Path | None, typer.Option(
        "--state", help="Persist dedup, flap and silence state here (crash-safe, resumable).",
        dir_okay=False)] = None,
    checkpoint_every: Annotated[int, typer.Option(
        "--checkpoint-every", min=1, help="With --state: commit at least every N lines "
        "(and every second).")] = 10_000,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress, no summary.")] = False,
    force: Annotated[bool, typer.Option(
        "--force", help="Start existing outputs over even if the state does not account for "
        "what they hold (by default the run refuses rather than empty them).")] = False,
    durability: Annotated[str | None, typer.Option(
        "--durability", help="With --state: 'power' (fsync; survives power loss) or "
        "'process' (survives a killed process; faster). Default: state.durability.")] = None,
    desk: Annotated[str | None, typer.Option(
        "--desk", help="Then apply the incident events to the incident desk's database "
        "(a SQLAlchemy URL or a SQLite path), each once: a replay changes nothing. Needs "
        "--output FILE.")] = None,
) -> None:
    """Replay alerts from JSON Lines through the pipeline (event time, deterministic)."""
    if desk is not None and output == "-":
        raise fail("--desk: the incident events go to the desk from --output, which is "
                   "stdout here; give --output FILE")
    notes: list[str] = []
    try:
        settings = load_settings(config)
        engine = build_engine(settings, report=notes)
        pipeline = build_pipeline(settings, changes=engine.changes)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if not quiet:
        for note in notes:
            err.print(f"[yellow]note:[/] {note}")
    level = durability or settings.state.durability
    if level not in ("power", "process"):
        raise fail(f"--durability {level}: expected power or process")
    if input != "-" and not Path(input).is_file():
        raise fail(f"--input {input}: no such file")
    show_progress = not quiet and input != "-" and err.is_terminal
    tune_gc()  # replays hold every active alert too (triage.app.gctune)
    try:
        if show_progress:
            total = Path(input).stat().st_size
            with Progress(TextColumn("[bold]triage run"), BarColumn(), TransferSpeedColumn(),
                          TimeRemainingColumn(), console=err, transient=True) as bar:
                task = bar.add_task("run", total=total)
                result = run_embedded(pipeline, engine=engine, input_path=input,
                                      output=output, outcomes=outcomes,
                                      dead_letter=dead_letter, state_path=state,
                                      checkpoint_every=checkpoint_every, force=force,
                                      durability=level,  # type: ignore[arg-type]
                                      progress=lambda n: bar.update(task, completed=n))
        else:
            result = run_embedded(pipeline, engine=engine, input_path=input, output=output,
                                  outcomes=outcomes, dead_letter=dead_letter, state_path=state,
                                  checkpoint_every=checkpoint_every, force=force,
                                  durability=level)  # type: ignore[arg-type]
    except (StateError, OutputConflict) as exc:
        raise fail(str(exc)) from None
    except StorageError as exc:
        raise fail(str(exc), code=75) from None  # EX_TEMPFAIL: try again later
    if desk is not None:
        to_desk(desk, Path(output), settings, quiet=quiet)
    if not quiet:
        print_summary(result)
        for line in getattr(pipeline.noise_scorer, "fallbacks", ()):  # the model fell back
            err.print(f"[yellow]note:[/] {escape(line)}", highlight=False)
        unknown = engine.unknown_services
        if unknown:
            names = ", ".join(f"{name} ({n})" for name, n in unknown.most_common(8))
            more = f" and {len(unknown) - 8} more" if len(unknown) > 8 else ""
            held = engine.counts.get("held_unknown_service", 0)
            err.print(f"[yellow]note:[/] alerts named {len(unknown)} services that are not in "
                      f"the service graph: {names}{more}"
                      + (f"; {held} incident checks held pages of only such services "
                         "(correlation.page_unknown_services: true pages them)" if held else ""))


def to_desk(url: str, events: Path, settings: Any, *, quiet: bool) -> None:
    """Apply a run's incident events to the desk (each once, by event_id)."""
    from sqlalchemy.exc import SQLAlchemyError

    from triage.desk.store import DeskStore
    target = url if "://" in url else f"sqlite:///{url}"
    try:
        with DeskStore(target, lifecycle=settings.desk.lifecycle) as store:
            lines = [line for line in events.read_bytes().splitlines() if line.strip()]
            done = store.ingest(lines)
    except SQLAlchemyError as exc:
        raise fail(f"--desk {url}: {exc}", 1) from None
    if not quiet:
        err.print(f"desk: {done.added:,} incident events applied, {done.duplicates:,} seen "
                  f"before ({target})", highlight=False)


def print_summary(result: RunResult) -> None:
    """The counts of a run, reconciled, on stderr."""
    c = result.counts
    table = Table(title="triage run", show_header=True, header_style="bold")
    table.add_column("outcome")
    table.add_column("alerts", justify="right")
    table.add_row("in", f"{c.get('in', 0):,}")
    table.add_row("  state changes passed on", f"{c.get('triaged', 0):,}")
    table.add_row("  deduplicated", f"{c.get('deduplicated', 0):,}")
    table.add_row("  suppressed", f"{c.get('suppressed', 0):,}")
    for key in sorted(k for k in c if k.startswith("suppressed.")):
        table.add_row(f"    {key.split('.', 1)[1]}", f"{c[key]:,}")
    table.add_row("  failed (dead-lettered)", f"{c.get('failed', 0):,}")
    table.add_row("passed on later by triage (timeouts, holds released, flapping settled)",
                  f"{c.get('swept', 0):,}")
    if c.get("silences_added"):
        table.add_row("silences added from input", f"{c['silences_added']:,}")
    ic = result.incident_counts
    if ic:
        table.add_row("incidents opened (pages)", f"{ic.get('incident.created', 0):,}")
        table.add_row("  updates / resolved / merged",
                      f"{ic.get('incident.updated', 0):,} / {ic.get('incident.resolved', 0):,}"
                      f" / {ic.get('merged', 0):,}")
        if ic.get("flapping_held"):
            table.add_row("  flapping alerts held (no page)", f"{ic['flapping_held']:,}")
        if ic.get("unmapped_alerts"):
            table.add_row("  alerts with no service label", f"{ic['unmapped_alerts']:,}")
    err.print(table)
    accounted = sum(c.get(k, 0) for k in ("triaged", "deduplicated", "suppressed", "failed"))
    rate = result.alerts / result.seconds if result.seconds else 0.0
    status = "[green]reconciled[/]" if accounted == c.get("in", 0) else "[red]MISMATCH[/]"
    resumed = f", resumed after line {result.lines_skipped:,}" if result.lines_skipped else ""
    pages = ic.get("incident.created", 0) if ic else 0
    compression = f"; {c.get('in', 0) / pages:,.1f} alerts per page" if pages else ""
    err.print(f"{result.lines:,} lines, {result.alerts:,} alerts in {result.seconds:.2f}s "
              f"({rate:,.0f} alerts/s){resumed}; counts {status}{compression}")


@app.command()
def formats() -> None:
    """List the alert formats triage detects."""
    from triage.core.normalize import REGISTRY

    table = Table("name", "format", title="detected in this order")
    for n in REGISTRY:
        table.add_row(n.name, n.description)
    Console().print(table)


@app.command("check-config")
def check_config(config: Annotated[Path, typer.Argument(exists=True, dir_okay=False)]) -> None:
    """Validate a config file (and the files it points at); exit 2 naming the bad key."""
    try:
        pipeline = build_pipeline(load_settings(config))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    notes: list[str] = []
    try:
        engine = build_engine(load_settings(config), report=notes)
    except ConfigError as exc:
        raise fail(str(exc)) from None
    rules = len(pipeline.thresholds.rules) if pipeline.thresholds else 0
    Console().print(f"[green]ok[/] {config}: {len(pipeline.silences)} silences/maintenance "
                    f"windows, {rules} threshold rules, {len(engine.topology)} services, "
                    f"{len(engine.changes)} change records, on-call for "
                    f"{len(engine.oncall.teams) if engine.oncall else 0} teams")
    for note in notes:
        Console().print(f"  note: {note}")


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="Where to write the demo files.")] = Path("out/demo"),
    desk: Annotated[bool, typer.Option(
        "--desk", help="Then open the incident desk on the result: the storm's incidents "
        "arrive in it as they were raised (an hour in a minute), in the browser.")] = False,
    port: Annotated[int, typer.Option(min=1, max=65535, help="The desk's port (--desk).")
                    ] = 9095,
    speed: Annotated[float, typer.Option(min=1.0, help="With --desk: how much faster than "
                                         "real time the incidents arrive.")] = 60.0,
) -> None:
    """Triage the bundled Online Boutique storm (no Kafka needed); writes incidents.jsonl."""
    from triage.app.demo import run_demo

    run_demo(out, console=err)
    if desk:
        from triage.app.demo import serve_desk_demo
        serve_desk_demo(out, port=port, speed=speed, console=err)


@app.command()
def version() -> None:
    """Print the version."""
    print(__version__)
