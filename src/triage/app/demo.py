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


def serve_desk_demo(out: Path, *, port: int, speed: float, console: Console) -> None:
    """The incident desk over the demo's incidents: a fresh SQLite desk in ``out``, a token
    made for this run, the events fed in at their own pace (``speed`` times faster), served
    on 127.0.0.1:``port`` until Ctrl+C."""
    import asyncio
    import secrets
    import time

    import orjson
    from aiohttp import web

    from triage.core.timeutil import parse_timestamp
    from triage.desk.api import Token, create_desk_app
    from triage.desk.store import DeskStore

    db = out / "desk.db"
    for suffix in ("", "-wal", "-shm"):
        Path(str(db) + suffix).unlink(missing_ok=True)
    events = [orjson.loads(line) for line in (out / "incidents.jsonl").read_bytes().splitlines()]
    store = DeskStore(f"sqlite:///{db}")
    token = Token("you", secrets.token_urlsafe(18), "responder")
    first = (parse_timestamp(events[0]["at"]) or 0.0) if events else 0.0
    state = {"origin": time.time()}

    def now() -> float:  # the storm's clock: its first event when the desk opens
        return first + (time.time() - state["origin"]) * speed

    async def feed(app: web.Application) -> None:
        state["origin"] = time.time()
        for event in events:
            at = parse_timestamp(event["at"]) or first
            delay = (at - first) / speed - (time.time() - state["origin"])
            if delay > 0:
                await asyncio.sleep(delay)
            await asyncio.to_thread(store.ingest, [event])
            console.print(f"desk: {event['type']} {event['incident']['id']} "
                          f"{event['incident']['priority']}", highlight=False)

    async def start(app: web.Application) -> None:
        app["feed"] = asyncio.create_task(feed(app))

    async def stop(app: web.Application) -> None:
        app["feed"].cancel()

    app = create_desk_app(store, [token], clock=now)
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    console.print(f"\n[bold]The desk:[/] http://127.0.0.1:{port}/login, token "
                  f"[bold]{token.secret}[/] (this run only). The incidents arrive {speed:g}x "
                  "faster than the storm raised them. Ctrl+C stops.", highlight=False)
    try:
        web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None)
    finally:
        store.close()
