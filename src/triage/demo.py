"""``triage demo``: the bundled storm through the embedded pipeline, explained on screen."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import orjson
from rich.console import Console
from rich.table import Table

from triage.bootstrap import build_pipeline
from triage.runtime import run_embedded
from triage.settings import load_settings
from triage.storm import demo_storm


def demo_config_path() -> Path:
    """The bundled demo config (``src/triage/demo_assets/config.yaml``)."""
    return Path(str(resources.files("triage.demo_assets") / "config.yaml"))


def run_demo(out: Path, console: Console) -> Path:
    """Write the demo storm to ``out``, triage it, print what happened; returns the output."""
    out.mkdir(parents=True, exist_ok=True)
    storm = out / "storm.jsonl"
    storm.write_bytes(b"\n".join(demo_storm()) + b"\n")
    outcomes = out / "outcomes.jsonl"
    dead = out / "dead-letter.jsonl"
    pipeline = build_pipeline(load_settings(demo_config_path()))
    result = run_embedded(pipeline, input_path=str(storm), output=str(outcomes),
                          dead_letter=str(dead))

    table = Table(title="stage 1 output: what would reach the incident stage, and why not",
                  header_style="bold")
    for col in ("at", "outcome", "alert", "service", "why"):
        table.add_column(col, overflow="fold")
    for line in outcomes.read_bytes().splitlines():
        rec = orjson.loads(line)
        labels = rec.get("labels") or {}
        if rec["kind"] == "alert":
            what = f"[bold]{rec['change']}[/]"
            why = rec.get("reason") or f"occurrence {rec['occurrence']}, seen {rec['count']}x"
        elif rec["kind"] == "suppressed":
            what = f"[yellow]suppressed: {rec['reason']}[/]"
            why = rec["detail"]
        else:
            what = f"[red]failed: {rec['error']}[/]"
            why = f"{rec.get('field') or ''} {rec['reason']}".strip()
        table.add_row((rec.get("at") or "")[11:19], what, labels.get("alertname", ""),
                      labels.get("service", ""), why)
    console.print(table)
    from triage.cli.commands import print_summary

    print_summary(result)
    console.print(f"storm: {storm}\noutcomes: {outcomes}\ndead letters: {dead}")
    return outcomes
