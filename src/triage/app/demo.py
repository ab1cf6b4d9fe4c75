"""``triage demo``: the bundled Online Boutique storm through both stages, explained."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from triage.app.bootstrap import build_engine, build_pipeline
from triage.app.runtime import RunResult, run_embedded
from triage.app.settings import load_settings
from triage.simulate.storms import boutique_storm


def demo_config_path() -> Path:
    """The bundled demo config (``src/triage/demo_assets/config.yaml``)."""
    return Path(str(resources.files("triage.demo_assets") / "config.yaml"))


def run_demo(out: Path, console: Console) -> tuple[Path, RunResult]:
    """Write the demo storm to ``out``, triage it, print what happened."""
    out.mkdir(parents=True, exist_ok=True)
    storm = out / "storm.jsonl"
    storm.write_bytes(b"\n".join(boutique_storm()) + b"\n")
    incidents = out / "incidents.jsonl"
    settings = load_settings(demo_config_path())
    engine = build_engine(settings)
    pipeline = build_pipeline(settings, changes=engine.changes)
    result = run_embedded(pipeline, engine=engine, input_path=str(storm),
                          output=str(incidents), outcomes=str(out / "outcomes.jsonl"),
                          dead_letter=str(out / "dead-letter.jsonl"), force=True)
    events = [orjson.loads(line) for line in incidents.read_bytes().splitlines()]
    print_funnel(result, console)
    print_incidents(events, console)
    console.print(f"storm {storm}\nincident events {incidents}\nstage-1 outcomes "
                  f"{out / 'outcomes.jsonl'}\ndead letters {out / 'dead-letter.jsonl'}")
    return incidents, result


def print_funnel(result: RunResult, console: Console) -> None:
    """alerts in → deduplicated → suppressed → failed → incidents."""
    c, ic = result.counts, result.incident_counts
    suppressed = ", ".join(f"{k.split('.', 1)[1]} {v}" for k, v in sorted(c.items())
                           if k.startswith("suppressed."))
    pages = ic.get("incident.created", 0)
    console.print(Panel.fit(
        f"[bold]{c.get('in', 0):,}[/] alerts in  →  [bold]{c.get('deduplicated', 0):,}[/] "
        f"deduplicated  →  [bold]{c.get('suppressed', 0):,}[/] suppressed ({suppressed})  →  "
        f"[bold]{c.get('failed', 0)}[/] dead-lettered  →  [bold]{c.get('triaged', 0):,}[/] "
        f"state changes  →  [bold green]{pages}[/] incidents paged "
        f"({ic.get('flapping_held', 0)} flapping alerts held)",
        title="triage demo: Online Boutique, a bad cartservice deploy"))


def print_incidents(events: list[dict[str, Any]], console: Console) -> None:
    """One row per incident, in its latest state."""
    latest: dict[str, dict[str, Any]] = {}
    for e in events:
        latest[e["incident"]["id"]] = e
    table = Table(header_style="bold", show_lines=True)
    for col in ("incident", "priority", "root cause", "top suspect change", "owner",
                "war room"):
        table.add_column(col, overflow="fold")
    for e in latest.values():
        inc = e["incident"]
        if inc["status"] == "merged":
            continue
        rc = inc["root_cause"] or {}
        suspect = inc["suspect_changes"][0] if inc["suspect_changes"] else None
        owner = inc["owner"]
        wr = inc["war_room"]
        table.add_row(
            f"{inc['id']}\n{inc['status']}, {inc['alert_count']} alerts\n"
            f"{', '.join(inc['services'])}",
            f"[bold]{inc['priority']}[/]\n" + "\n".join(inc["priority_reasons"][:3]),
            f"[bold]{rc.get('service')}[/] ({rc.get('confidence')})\n{rc.get('reason')}",
            f"[bold]{suspect['id']}[/] ({suspect['score']})\n{suspect['reason']}" if suspect
            else "none in the lookback window",
            f"{owner['team']}: [bold]{owner['person']}[/]",
            ("[bold red]open[/]\n" if wr["open"] else "no\n") + wr["reason"],
        )
    console.print(table)
