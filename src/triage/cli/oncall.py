"""``triage oncall``: check on-call rotations for coverage gaps and overlaps."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from triage.app.bootstrap import load_oncall
from triage.app.settings import load_settings
from triage.cli.app import app, fail
from triage.core.oncall import CoverageReport
from triage.core.timeutil import parse_timestamp
from triage.errors import ConfigError, TimestampError

oncall_app = typer.Typer(no_args_is_help=True, help="On-call rotations and overrides.")
app.add_typer(oncall_app, name="oncall")

_DAY = 86400.0


@oncall_app.command("check")
def check(
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML config file.", exists=True, dir_okay=False)] = None,
    days: Annotated[int, typer.Option("--days", min=1, help="How many days to check.")] = 28,
    start: Annotated[str | None, typer.Option(
        "--start", help="Start of the check, ISO 8601 (naive: UTC). Default: now.")] = None,
) -> None:
    """Report coverage gaps and layer overlaps per team; exit 1 on any gap, 2 on bad config."""
    try:
        schedule = load_oncall(load_settings(config))
    except ConfigError as exc:
        raise fail(str(exc)) from None
    if schedule is None or not schedule.teams:
        Console().print("[bold red]no on-call rotations configured[/]: nobody would be paged")
        raise typer.Exit(1)
    if start is None:
        begin = time.time()  # an entry point may read the clock; the core is handed it
    else:
        try:
            parsed = parse_timestamp(start, "--start")
        except TimestampError as exc:
            raise fail(str(exc)) from None
        if parsed is None:
            raise fail("--start: a time is required")
        begin = parsed
    report = schedule.coverage(start=begin, end=begin + days * _DAY)
    console = Console()
    print_report(report, teams=schedule.teams, console=console)
    if not report.ok:
        raise typer.Exit(1)


def print_report(report: CoverageReport, *, teams: tuple[str, ...], console: Console) -> None:
    """A table of gaps and overlaps per team, then a one-line verdict."""
    table = Table(title=f"on-call coverage {_when(report.start)} → {_when(report.end)} UTC",
                  header_style="bold")
    table.add_column("team", no_wrap=True)
    table.add_column("finding", no_wrap=True)
    table.add_column("from (UTC)", no_wrap=True)
    table.add_column("to (UTC)", no_wrap=True)
    table.add_column("length", justify="right", no_wrap=True)
    table.add_column("on call")
    for team in teams:
        rows = [(g.start, "[red]gap[/]", g.end, "nobody") for g in report.gaps if g.team == team]
        rows += [(o.start, "[yellow]overlap[/]", o.end, f"{', '.join(o.people)} "
                  f"({o.people[0]} paged)") for o in report.overlaps if o.team == team]
        if not rows:
            table.add_row(team, "[green]covered[/]", "", "", "", "")
        for s, finding, e, who in sorted(rows, key=lambda row: row[0]):
            table.add_row(team, finding, _when(s), _when(e), _length(e - s), who)
    console.print(table)
    checked = f"checked {len(teams)} teams over {_length(report.end - report.start)}"
    overlaps = f"{len(report.overlaps)} overlap(s)"  # warnings: the first layer is paged
    if report.gaps:
        uncovered = sum(g.end - g.start for g in report.gaps)
        short = ", ".join(sorted({g.team for g in report.gaps}))
        console.print(f"[bold red]✗ {len(report.gaps)} gap(s)[/], {_length(uncovered)} with "
                      f"nobody on call ({short}); {overlaps}; {checked}")
    else:
        console.print(f"[bold green]✓ full coverage[/]; {overlaps}; {checked}")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M")


def _length(seconds: float) -> str:
    minutes = round(seconds / 60)
    d, rest = divmod(minutes, 1440)
    h, m = divmod(rest, 60)
    parts = [f"{d}d" if d else "", f"{h}h" if h else "", f"{m}m" if m else ""]
    return "".join(parts) or f"{seconds:.0f}s"
