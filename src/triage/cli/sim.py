"""Simulation commands: ``triage simulate`` (storms with ground truth) and ``triage evaluate``
(score incident events against that truth)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import orjson
import typer
from rich.console import Console
from rich.table import Table

from triage.cli.app import app, err, fail
from triage.errors import ConfigError


@app.command()
def simulate(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for alerts.jsonl, "
                                      "changes.jsonl, truth.json and triage.yaml.")],
    topology: Annotated[Path | None, typer.Option(
        "--topology", help="Services YAML, GraphML or Kubernetes manifests.",
        exists=True)] = None,
    catalog: Annotated[Path | None, typer.Option(
        "--catalog", help="Catalog (or services) YAML: team, tier, users, business service.",
        exists=True, dir_okay=False)] = None,
    services: Annotated[int | None, typer.Option(
        "--services", min=10, max=20000,
        help="Instead of --topology: a generated microservice graph of N services.")] = None,
    minutes: Annotated[float, typer.Option("--minutes", min=1, help="Storm length.")] = 120.0,
    seed: Annotated[int, typer.Option("--seed")] = 0,
    rules: Annotated[Path | None, typer.Option(
        "--rules", help="Prometheus rule collection (default: ../shared/data/alert-rules/"
        "awesome-prometheus-alerts if present, else a built-in list).")] = None,
    incidents_per_hour: Annotated[float | None, typer.Option(
        "--incidents-per-hour", min=0.1, help="Default: grows with the topology.")] = None,
    noise_per_hour: Annotated[float | None, typer.Option(
        "--noise-per-hour", min=0, help="Noise alerts per hour (default grows with size).")
    ] = None,
    changes_per_hour: Annotated[float | None, typer.Option(
        "--changes-per-hour", min=0, help="Background change records per hour.")] = None,
    group_interval: Annotated[float, typer.Option(
        "--group-interval", min=1, help="Seconds between re-sends of firing alerts "
        "(Alertmanager's group_interval).")] = 300.0,
    ha_duplicates: Annotated[float, typer.Option(
        "--ha-duplicates", min=0, max=1,
        help="Share of deliveries the second HA peer also sends.")] = 0.3,
    format: Annotated[str, typer.Option(
        "--format", help="alertmanager-webhook (v4) or alertmanager-api-v2.")
    ] = "alertmanager-webhook",
    background_share: Annotated[float, typer.Option(
        "--background-share", min=0, max=1,
        help="Share of services with long-running info/warning background alerts.")] = 0.25,
    silent_root_rate: Annotated[float, typer.Option(
        "--silent-root-rate", min=0, max=1,
        help="Share of incidents (with a caller reached) whose root raises no alert.")] = 0.2,
    concurrent_rate: Annotated[float, typer.Option(
        "--concurrent-rate", min=0, max=1,
        help="Share of incidents in a pair started within 3 minutes of each other.")] = 0.3,
    decoy_rate: Annotated[float, typer.Option(
        "--decoy-rate", min=0, max=1,
        help="Share of incidents with decoy changes on the root's neighbours.")] = 0.7,
    max_depth: Annotated[int, typer.Option(
        "--max-depth", min=0, max=10,
        help="Hops of callers a failure climbs at most.")] = 4,
) -> None:
    """Generate an alert storm with ground truth (deterministic for a seed)."""
    from triage.simulate import (
        DeliveryOptions,
        ScenarioOptions,
        default_rules_dir,
    )
    from triage.simulate import simulate as run_simulation

    if (topology is None) == (services is None):
        raise fail("give exactly one of --topology FILE or --services N")
    rules_dir = rules if rules is not None else default_rules_dir()
    with err.status("simulating ..."):
        try:
            result = run_simulation(
                out, topology=topology, catalog=catalog, services=services,
                rules_dir=rules_dir,
                scenario=ScenarioOptions(minutes=minutes, seed=seed,
                                         incidents_per_hour=incidents_per_hour,
                                         noise_per_hour=noise_per_hour,
                                         changes_per_hour=changes_per_hour,
                                         background_share=background_share,
                                         silent_root_rate=silent_root_rate,
                                         concurrent_rate=concurrent_rate,
                                         decoy_rate=decoy_rate, max_depth=max_depth),
                delivery=DeliveryOptions(group_interval=group_interval,
                                         ha_duplicates=ha_duplicates, format=format,
                                         seed=seed))
        except (ConfigError, ValueError, OSError) as exc:
            raise fail(str(exc)) from None
    counts = result.truth["counts"]
    table = Table(title=f"triage simulate: {len(result.topology)} services, {minutes:g} min, "
                        f"seed {seed}", header_style="bold")
    table.add_column("what")
    table.add_column("count", justify="right")
    table.add_row("alerts in (every alert in every delivery)", f"{counts['alerts_in']:,}")
    table.add_row("deliveries (HA duplicates)", f"{counts['deliveries']:,} "
                  f"({counts['ha_duplicate_deliveries']:,})")
    table.add_row("distinct alerts", f"{counts['distinct_alerts']:,}")
    table.add_row("true incidents", f"{counts['incidents']:,}")
    incs = result.scenario.incidents
    table.add_row("  silent roots", f"{sum(i.silent_root for i in incs):,}")
    table.add_row("  in a concurrent pair (on a shared dependency)",
                  f"{sum(1 for i in incs if i.paired_with):,} "
                  f"({sum(1 for i in incs if i.shared_dependency):,})")
    table.add_row("  with decoy changes", f"{sum(1 for i in incs if i.decoy_changes):,}")
    for kind, n in sorted(counts["noise_alerts"].items()):
        table.add_row(f"  noise: {kind}", f"{n:,}")
    table.add_row("change records", f"{counts['changes']:,}")
    table.add_row("rules from", f"{result.rules.source} ({result.rules.total} rules)")
    err.print(table)
    inc = Table(title="injected incidents", header_style="bold")
    for col in ("id", "root cause", "services", "severity", "priority", "causal change"):
        inc.add_column(col)
    for t in result.truth["incidents"][:40]:
        inc.add_row(t["id"], t["root_cause"], str(len(t["services"])), t["severity"],
                    t["priority"], t["cause_change"] or "-")
    err.print(inc)
    err.print(f"wrote {out}/alerts.jsonl, changes.jsonl, truth.json, triage.yaml; replay with\n"
              f"  triage run --config {out}/triage.yaml --input {out}/alerts.jsonl "
              f"--output {out}/incidents.jsonl")


@app.command()
def evaluate(
    truth: Annotated[Path, typer.Option("--truth", exists=True, dir_okay=False,
                                        help="truth.json from triage simulate.")],
    incidents: Annotated[Path, typer.Option(
        "--incidents", exists=True, dir_okay=False, help="Incident events (JSON Lines).")],
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Write the scores here (default: evaluation.json beside "
        "--incidents).")] = None,
    details: Annotated[bool, typer.Option(
        "--details", help="Also print one row per true incident.")] = False,
) -> None:
    """Score incident events against a simulation's truth; prints a table, writes JSON."""
    from triage.simulate.score import TARGETS, score

    try:
        truth_doc = orjson.loads(truth.read_bytes())
        events = [orjson.loads(line) for line in incidents.read_bytes().splitlines()
                  if line.strip()]
    except orjson.JSONDecodeError as exc:
        raise fail(f"not JSON: {exc}") from None
    result = score(truth_doc, events)
    target = json_out or incidents.with_name("evaluation.json")
    target.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    console = Console()
    console.print(render_scores(result, TARGETS, title=f"triage evaluate: {incidents}"))
    if details:
        console.print(render_details(result))
    err.print(f"wrote {target}")


def _fmt(value: Any, pct: bool = True) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and pct:
        return f"{value:.1%}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def render_scores(r: dict[str, Any], targets: dict[str, float], *, title: str) -> Table:
    """The scores as a rich table, targets beside them."""
    table = Table(title=title, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    table.add_column("target", justify="right")

    def row(name: str, key: str, value: str | None = None) -> None:
        t = targets.get(key)
        v = r.get(key)
        mark = ""
        if t is not None and v is not None:
            mark = " [green]met[/]" if v >= t else " [red]short[/]"
        table.add_row(name, value if value is not None else _fmt(v),
                      (f"≥ {t:.0%}" + mark) if t is not None else "")

    table.add_row("alerts in / distinct / true incidents",
                  f"{r['alerts_in']:,} / {r['distinct_alerts']:,} / {r['true_incidents']:,}", "")
    table.add_row("incidents paged (noise pages)", f"{r['pages']:,} ({r['noise_pages']:,})", "")
    row("compression (1 - pages / alerts in)", "compression")
    table.add_row("  alerts per page", _fmt(r["compression_ratio"], pct=False), "")
    row("incident recall", "incident_recall")
    row("grouping purity", "grouping_purity")
    row("pairwise F1 (precision / recall)", "pairwise_f1",
        f"{_fmt(r['pairwise_f1'])} ({_fmt(r['pairwise_precision'])} / "
        f"{_fmt(r['pairwise_recall'])})")
    row("root cause top-1", "root_cause_top1")
    row("root cause top-3", "root_cause_top3")
    row(f"suspect change top-1 (of {r['incidents_with_cause_change']})", "suspect_top1")
    row("suspect change top-3", "suspect_top3")
    row("priority accuracy", "priority_accuracy")
    table.add_row("time to first event p50 / p90 / max (s)",
                  " / ".join(_fmt(r[k], pct=False) for k in ("detect_p50_s", "detect_p90_s",
                                                              "detect_max_s")), "")
    conf = r["priority_confusion"]
    cols = ["P1", "P2", "P3", "P4", "missed"]
    table.add_row("priority confusion (truth: triage)", "", "")
    for truth_p, counts in conf.items():
        if counts:
            table.add_row(f"  {truth_p}", "  ".join(f"{c}:{counts[c]}" for c in cols
                                                    if counts.get(c)), "")
    return table


def render_details(r: dict[str, Any]) -> Table:
    """One row per true incident: what triage said against the truth."""
    table = Table(title="per true incident", header_style="bold")
    for col in ("id", "alerts", "root (truth)", "root (triage)", "prio", "triage",
                "cause", "top suspect", "split", "detect s"):
        table.add_column(col)
    for row in r["incidents"]:
        if not row["recalled"]:
            table.add_row(row["id"], str(row["alerts"]), row["root_cause"], "[red]missed[/]",
                          row["priority"] or "", "", row["cause_change"] or "-", "", "", "")
            continue
        ok = "" if row["root_top1"] else "[red]"
        table.add_row(row["id"], str(row["alerts"]), row["root_cause"],
                      f"{ok}{row['triage_root_cause']}", row["priority"] or "",
                      row["triage_priority"] or "", row["cause_change"] or "-",
                      (row["triage_suspects"] or ["-"])[0], str(row["split_into"]),
                      _fmt(row["detect_s"], pct=False))
    return table


@app.command("alarms-replay")
def alarms_replay(
    folder: Annotated[Path, typer.Argument(
        exists=True, file_okay=False, help="An alarm set: Alarm.csv, DAG.npy, Topology.npy "
        "(e.g. ../shared/data/alarms/25V_474N_Microwave).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for the replay files.")],
    valid_until: Annotated[bool, typer.Option(
        "--valid-until/--no-valid-until", help="Firing lines carry the alarm's clear time "
        "as ends_at, so triage's resolve timeout does not end a long alarm early.")] = True,
) -> None:
    """Write a real alarm set as a replay: alerts.jsonl, services.yaml, triage.yaml and
    index.json (fingerprint -> [type, device])."""
    from triage.simulate.alarms import load_alarm_set, write_replay

    try:
        alarm_set = load_alarm_set(folder)
        write_replay(alarm_set, out, valid_until=valid_until)
    except (OSError, ValueError, KeyError) as exc:
        raise fail(f"{folder}: {exc}") from None
    with (out / "alerts.jsonl").open("rb") as fh:
        lines = sum(1 for _ in fh)
    err.print(f"{alarm_set.name}: {len(alarm_set.alarms):,} alarms as {lines:,} lines, "
              f"{alarm_set.devices} devices, {len(alarm_set.links)} links; replay with\n"
              f"  triage run --config {out}/triage.yaml --input {out}/alerts.jsonl "
              f"--output {out}/incidents.jsonl\n"
              f"  triage alarms-evaluate {folder} --replay {out}")


@app.command("alarms-evaluate")
def alarms_evaluate(
    folder: Annotated[Path, typer.Argument(exists=True, file_okay=False,
                                           help="The alarm set the replay came from.")],
    replay: Annotated[Path | None, typer.Option(
        "--replay", exists=True, file_okay=False, help="The replay folder: its index.json "
        "maps fingerprints back to alarms, and its incidents.jsonl is the default "
        "--incidents.")] = None,
    incidents: Annotated[Path | None, typer.Option(
        "--incidents", exists=True, dir_okay=False, help="Incident events (JSON Lines).")
    ] = None,
    json_out: Annotated[Path | None, typer.Option(
        "--json", help="Also write the figures here as JSON.")] = None,
) -> None:
    """Judge incidents on a real alarm set: pages, causal consistency against the experts'
    DAG (beside a random root), type coherence and repeated pages, next to the naive baseline
    of the set's README."""
    from triage.simulate.alarms import (
        RANDOM_DRAWS,
        causal_consistency,
        incidents_from_events,
        load_alarm_set,
        naive_baseline,
        read_index,
        repeated_alert_sets,
        repeated_pages,
    )

    source = incidents or (replay / "incidents.jsonl" if replay is not None else None)
    if source is None:
        raise fail("give --incidents, or --replay with an incidents.jsonl in it")
    try:
        alarm_set = load_alarm_set(folder)
        index = read_index(replay) if replay is not None else alarm_set.index
        events = [orjson.loads(line) for line in source.read_bytes().splitlines()
                  if line.strip()]
    except (OSError, ValueError, KeyError, orjson.JSONDecodeError) as exc:
        raise fail(str(exc)) from None
    pages = sum(1 for e in events if e.get("type") == "incident.created")
    ours = causal_consistency(incidents_from_events(events, index, alarm_set), alarm_set.dag,
                              pages=pages)
    ours["repeated_pages"] = repeated_pages(events, index)
    naive_incidents = naive_baseline(alarm_set)
    naive = causal_consistency(naive_incidents, alarm_set.dag)
    naive["repeated_pages"] = repeated_alert_sets(naive_incidents)
    if json_out is not None:
        json_out.write_bytes(orjson.dumps({"set": alarm_set.name, "incidents": str(source),
                                           "triage": ours, "naive_baseline": naive},
                                          option=orjson.OPT_INDENT_2))

    def cell(r: dict[str, Any], key: str) -> str:
        v = r[key]
        return "n/a" if v is None else (f"{v:.3f}" if isinstance(v, float) else f"{v:,}")

    table = Table(title=f"triage alarms-evaluate: {alarm_set.name} "
                        f"({len(alarm_set.alarms):,} alarms)", header_style="bold")
    table.add_column("metric")
    table.add_column("triage", justify="right")
    table.add_column("naive baseline", justify="right")
    for name, key in (("pages (incidents opened)", "pages"),
                      ("incidents after merges", "incidents"),
                      ("repeated pages (alert set paged before)", "repeated_pages"),
                      ("multi-device incidents", "multi_device"),
                      ("causal consistency", "consistency"),
                      (f"  random root (mean of {RANDOM_DRAWS} draws)", "random_root"),
                      ("  random root (expectation)", "random_root_expected"),
                      ("  root outside the incident's devices", "root_outside"),
                      ("type coherence (incidents with 2+ types)", "type_coherence"),
                      ("  incidents with 2+ types", "multi_type")):
        table.add_row(name, cell(ours, key), cell(naive, key))
    Console().print(table)
    if json_out is not None:
        err.print(f"wrote {json_out}")
