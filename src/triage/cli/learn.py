"""Learning-stage commands: feedback, tune, tune-series, train, model list|promote|status
(docs/learning.md).

Exit codes: 0 ok; 2 bad usage or input (a missing file, an invalid record or history);
3 a model that cannot be verified or loaded.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import orjson
import typer
import yaml
from rich.console import Console
from rich.table import Table
from rich.text import Text

from triage import __version__
from triage.cli.app import app, err, fail
from triage.core.thresholds import Thresholds, dump_thresholds, format_duration
from triage.errors import InputError

feedback_app = typer.Typer(no_args_is_help=True,
                           help="Record and inspect responder feedback (append-only history).")
model_app = typer.Typer(no_args_is_help=True, help="List and promote noise-model versions.")
app.add_typer(feedback_app, name="feedback")
app.add_typer(model_app, name="model")

StoreOpt = Annotated[Path, typer.Option("--store", "-s", help="Feedback history (SQLite).",
                                        dir_okay=False)]
RegistryOpt = Annotated[Path, typer.Option("--registry", "-r", help="Model registry directory.",
                                           file_okay=False)]
HistoryOpt = Annotated[Path, typer.Option(
    "--history", help="Feedback history: .db (SQLite), .parquet, .csv or .jsonl.",
    dir_okay=False)]


def write_thresholds(thresholds: Thresholds, out: str) -> None:
    """The thresholds file as YAML, to ``out`` (a path, or - for stdout)."""
    text = yaml.safe_dump(dump_thresholds(thresholds), sort_keys=False, allow_unicode=True)
    if out == "-":
        sys.stdout.write(text)
    else:
        Path(out).write_text(text)


@feedback_app.command("add")
def feedback_add(
    label: Annotated[str, typer.Argument(help="actionable or noise")],
    alertname: Annotated[str, typer.Option("--alertname", "-a", help="The alert rule.")],
    store: StoreOpt = Path("feedback.db"),
    service: Annotated[str, typer.Option(help="The alert's service.")] = "",
    value: Annotated[float | None, typer.Option(help="The alert's value.")] = None,
    threshold: Annotated[float | None, typer.Option(help="The threshold it fired at.")] = None,
    duration: Annotated[str | None, typer.Option(help="How long it fired (5m, 90s).")] = None,
    hint: Annotated[str | None, typer.Option(help="too_low or too_high (the threshold).")] = None,
    at: Annotated[str | None, typer.Option(help="When (RFC 3339); default: now.")] = None,
    fingerprint: Annotated[str, typer.Option(help="The alert's fingerprint.")] = "",
    incident: Annotated[str, typer.Option("--incident", help="The incident id.")] = "",
    responder: Annotated[str, typer.Option(help="Who judged it.")] = "",
    alert_label: Annotated[list[str] | None, typer.Option(
        "--alert-label", help="Another label of the alert, name=value (repeatable).")] = None,
    baseline: Annotated[float | None, typer.Option(
        help="The series' centre when it fired (lets `tune` work in its own units).")] = None,
    scale: Annotated[float | None, typer.Option(
        min=0.0, help="The series' spread when it fired (with --baseline).")] = None,
) -> None:
    """Record one judgement: was this alert actionable or noise?"""
    from triage.models.feedback import FeedbackStore, feedback_from_dict

    labels = {}
    for item in alert_label or []:
        name, sep, val = item.partition("=")
        if not sep or not name:
            raise fail(f"--alert-label {item!r}: expected name=value")
        labels[name] = val
    if (baseline is None) != (scale is None) or (scale is not None and scale <= 0):
        raise fail("--baseline and --scale go together, and --scale must be > 0")
    context = {} if baseline is None else {"baseline": baseline, "scale": scale}
    record = {"label": label, "alertname": alertname, "service": service, "value": value,
              "threshold": threshold, "duration": duration, "hint": hint,
              "at": at if at is not None else time.time(), "fingerprint": fingerprint,
              "incident_id": incident, "responder": responder, "labels": labels,
              "context": context}
    try:
        fb = feedback_from_dict(record)
    except InputError as exc:
        raise fail(f"feedback {exc}") from None
    FeedbackStore(store).append([fb])
    err.print(f"[green]recorded[/] {fb.label} for {fb.alertname}"
              f"{'{service=' + repr(fb.service) + '}' if fb.service else ''} in {store}")


@feedback_app.command("import")
def feedback_import(
    input: Annotated[str, typer.Argument(help="JSON Lines of feedback records, or - (stdin).")],
    store: StoreOpt = Path("feedback.db"),
) -> None:
    """Append feedback records from JSON Lines (all or nothing: a bad line names itself)."""
    from triage.models.feedback import FeedbackStore, feedback_from_dict

    if input != "-" and not Path(input).is_file():
        raise fail(f"{input}: no such file")
    text = sys.stdin.read() if input == "-" else Path(input).read_text()
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            records.append(feedback_from_dict(orjson.loads(line)))
        except (orjson.JSONDecodeError, InputError) as exc:
            raise fail(f"{input}:{number}: {exc}") from None
    n = FeedbackStore(store).append(records)
    err.print(f"[green]appended[/] {n:,} judgements to {store}")


@feedback_app.command("show")
def feedback_show(store: StoreOpt = Path("feedback.db")) -> None:
    """Summarise the history: judgements per rule, noise share."""
    from triage.models.feedback import read_history

    try:
        history = read_history(store)
    except (FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    table = Table("alertname", "judgements", "noise", "noise share", title=str(store))
    for name, rows in history.groupby("alertname"):
        noise = int((rows["label"] == "noise").sum())
        table.add_row(str(name), f"{len(rows):,}", f"{noise:,}", f"{noise / len(rows):.0%}")
    Console().print(table)


@feedback_app.command("simulate")
def feedback_simulate(
    store: StoreOpt = Path("feedback.db"),
    days: Annotated[float, typer.Option(min=0.1, help="Days of history.")] = 30.0,
    seed: Annotated[int, typer.Option(help="Random seed (same seed, same history).")] = 0,
) -> None:
    """Append SIMULATED feedback (triage.simulate.feedback) for demos and trials."""
    from triage.models.feedback import FeedbackStore
    from triage.simulate.feedback import simulate_feedback

    n = FeedbackStore(store).append_frame(simulate_feedback(days=days, seed=seed))
    err.print(f"[yellow]simulated[/] {n:,} judgements appended to {store}")


@app.command()
def tune(
    history: HistoryOpt,
    out: Annotated[str, typer.Option("--out", "-o", help="Thresholds file to write, or -.")],
    recall_floor: Annotated[float, typer.Option(min=0.5, max=1.0,
                                                help="Keep this share of actionable alerts.")]
    = 0.99,
    min_samples: Annotated[int, typer.Option(min=1, help="A rule group (alertname) with fewer "
                                                         "judgements is left alone.")] = 20,
    shrinkage: Annotated[float | None, typer.Option(
        min=0.0, help="Pseudo-count toward the rule group (default 1/(1-floor)).")] = None,
    key: Annotated[str, typer.Option(help="Rule key columns, comma separated.")]
    = "alertname,service",
    no_for: Annotated[bool, typer.Option("--no-for", help="Do not tune `for`.")] = False,
    no_keep: Annotated[bool, typer.Option("--no-keep", help="Do not tune keep_firing_for.")]
    = False,
) -> None:
    """Tune thresholds from the feedback history and write the thresholds file."""
    from triage.models.feedback import read_history
    from triage.models.tuning import tune_thresholds

    try:
        frame = read_history(history)
        keys = tuple(k.strip() for k in key.split(",") if k.strip())
        result = tune_thresholds(frame, key=keys, recall_floor=recall_floor,
                                 min_samples=min_samples, shrinkage=shrinkage,
                                 tune_for=not no_for, tune_keep=not no_keep)
    except (FileNotFoundError, ValueError, KeyError) as exc:
        raise fail(f"--history {history}: {exc}") from None
    from triage.models.feedback import latest_labels

    superseded = len(frame) - len(latest_labels(frame))
    if superseded:
        # Corrections are newer records for the same fingerprint and incident. If these were
        # separate firings (an alert's labelset repeats), they were lost to the tuner.
        err.print(f"[yellow]note:[/] {superseded:,} of {len(frame):,} judgements were replaced "
                  "by newer ones for the same fingerprint and incident_id (corrections). If "
                  "they are separate firings of one alert, give each its incident_id.",
                  highlight=False)
    # Deterministic: the file is stamped with the newest judgement it learned from.
    generated_at = float(frame["at"].max()) if len(frame) else None
    write_thresholds(result.to_thresholds(generated_at=generated_at,
                                          generated_by=f"triage tune {__version__}"), out)
    table = Table("rule", "n", "threshold", "for", "keep", "fp rate", "recall", "noise pages",
                  title=f"triage tune: {len(result.rules)} rules changed, recall floor "
                        f"{recall_floor:g}", header_style="bold")
    for r in result.rules:
        table.add_row(
            r.key + (" *" if r.shrunk else ""), f"{r.samples:,}",
            f"{r.static_threshold:.4g} → {r.threshold:.4g}",
            format_duration(r.for_seconds) if r.for_seconds else "-",
            format_duration(r.keep_seconds) if r.keep_seconds else "-",
            f"{r.fp_rate_before:.0%} → {r.fp_rate_after:.0%}", f"{r.recall:.1%}",
            f"{r.noise_before:,} → {r.noise_after:,}")
    err.print(table)
    err.print("* shrunk toward its rule group (few actionable judgements)")
    noise0 = sum(r.noise_before for r in result.rules)
    noise1 = sum(r.noise_after for r in result.rules)
    if noise0:
        err.print(f"noise pages on the history: {noise0:,} → {noise1:,} "
                  f"({1 - noise1 / noise0:.0%} fewer)")
    for d in result.defaults:
        err.print(f"default for other {d.match['alertname']} series: "
                  + ", ".join(f"{name} {format_duration(v)}" for name, v in (
                      ("for", d.for_seconds), ("keep_firing_for", d.keep_seconds)) if v)
                  + f" ({d.evidence()})", highlight=False, markup=False)
    if result.rules or result.defaults:
        err.print("[bold]suggested Prometheus rule changes[/] (evidence below each)")
        for r in [*result.rules, *result.defaults]:
            err.print("  " + r.suggestion(), highlight=False, markup=False)
            err.print("    " + r.evidence(), highlight=False, markup=False, style="dim")
    for name, why in result.skipped:
        err.print(f"[dim]left alone: {name}: {why}[/]", highlight=False)
    if out != "-":
        err.print(f"wrote {out}")


@app.command("tune-series")
def tune_series_command(
    series: Annotated[list[Path], typer.Argument(help="CSV files of timestamp,value (one "
                                                      "series each, e.g. exported from "
                                                      "Prometheus).", exists=True,
                                                 dir_okay=False)],
    windows: Annotated[Path, typer.Option(
        "--windows", "-w", exists=True, dir_okay=False,
        help="JSON: file name -> [[start, end], ...], when each series was really in trouble "
             "(NAB's combined_windows.json format).")],
    out: Annotated[str, typer.Option("--out", "-o", help="Thresholds file to write, or -.")],
    alertname: Annotated[str, typer.Option(help="The alert rule the series share.")]
    = "ValueHigh",
    shrinkage: Annotated[float, typer.Option(min=0.0, help="Partial pooling: windows a series "
                                                           "needs to move halfway to its own k.")]
    = 5.0,
) -> None:
    """One rule for all the series, in each series' own scale (docs/learning.md): the spec
    with the fewest false positives that keeps every series' detected windows."""
    from triage.models.nab import read_series, tune_series

    try:
        loaded = read_series(series, windows)
    except ValueError as exc:
        raise fail(str(exc)) from None
    with err.status(f"every candidate rule on {len(loaded)} series"):
        result = tune_series(loaded, shrinkage=shrinkage)
    spec = result.choice.spec
    generated_at = max(float(s.times[-1]) for s in loaded) if loaded else None
    write_thresholds(result.thresholds(alertname, generated_at=generated_at,
                                       generated_by=f"triage tune-series {__version__}"), out)
    table = Table("series", "windows", "detected", "false positives", "threshold",
                  title=f"triage tune-series: {spec.describe()} "
                        f"({result.choice.feasible} of the candidates kept every window)",
                  header_style="bold")
    for row in result.table.itertuples():
        table.add_row(Text(str(row.series), overflow="fold"), str(row.windows),
                      f"{row.detected_before} → {row.detected_after}",
                      f"{row.fp_before} → {row.fp_after}",
                      f"{row.threshold_before:.4g} → {row.threshold_after:.4g}")
    err.print(table)
    t = result.table
    err.print(f"on the history: false positives {int(t['fp_before'].sum())} → "
              f"{int(t['fp_after'].sum())}, windows detected {int(t['detected_before'].sum())}"
              f" → {int(t['detected_after'].sum())} of {int(t['windows'].sum())} (measured on "
              "what it was tuned on: `bench_learning.py` measures held-out folds)")
    err.print("[bold]suggested Prometheus rule[/] (per series, or one rule in its own scale):")
    lines = []
    if spec.scale == "sigma":
        lines.append(f"  expr: (x - avg_over_time(x[<history>])) / "
                     f"stddev_over_time(x[<history>]) > {spec.k:g}")
    else:
        lines.append(f"  expr: x > <the series' threshold above> ({spec.describe()})")
    if spec.for_seconds:
        lines.append(f"  for: {format_duration(spec.for_seconds)}")
    if spec.keep_seconds:
        lines.append(f"  keep_firing_for: {format_duration(spec.keep_seconds)}")
    for line in lines:
        err.print(line, highlight=False, markup=False)
    if out != "-":
        err.print(f"wrote {out}")


@app.command()
def train(
    history: HistoryOpt,
    registry: RegistryOpt,
    recall_floor: Annotated[float, typer.Option(min=0.5, max=1.0)] = 0.99,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    promote_it: Annotated[bool, typer.Option("--promote", help="Promote the new version.")]
    = False,
) -> None:
    """Train the noise classifier, report on held-out feedback, register a new version."""
    from triage.models.feedback import read_history
    from triage.models.noise import train_noise_model
    from triage.models.registry import ModelError, promote, register_model
    from triage.models.report import write_model_report

    with err.status("loading the history") as status:

        def progress(message: str) -> None:
            status.update(message)
            err.print(f"  {message}")

        try:
            frame = read_history(history)
            trained = train_noise_model(frame, recall_floor=recall_floor, seed=seed,
                                        progress=progress)
        except (FileNotFoundError, ValueError) as exc:
            raise fail(f"--history {history}: {exc}") from None
        status.update("writing the artifact and the report")
        version = register_model(registry, trained, registered_at=time.time(),
                                 report=write_model_report)
    m = trained.metrics
    err.print(f"[green]registered[/] {registry / version}  PR-AUC {m['pr_auc']:.3f}, "
              f"Brier {m['brier']:.3f}; at threshold {m['at_floor_threshold']:.3f}: "
              f"{m['at_floor_noise_page_reduction']:.0%} fewer noise pages, actionable "
              f"recall {m['at_floor_actionable_recall']:.1%} (held-out)")
    if promote_it:
        try:
            promote(registry, version)
        except ModelError as exc:
            raise fail(str(exc), code=3) from None
        err.print(f"[green]promoted[/] {version}")
    print(version)


@model_app.command("list")
def model_list(registry: RegistryOpt,
               as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """List registered versions; the promoted one is marked."""
    from triage.models.registry import ModelError, list_models

    try:
        models = list_models(registry)
    except ModelError as exc:
        raise fail(str(exc), code=3) from None
    if as_json:
        print(json.dumps([{"version": m.version, "promoted": m.promoted,
                           "metrics": m.metadata.get("metrics", {}),
                           "training_window": m.metadata.get("training_window")}
                          for m in models], indent=2))
        return
    table = Table("", "version", "PR-AUC", "noise pages removed", "recall", "suppress at",
                  "trained on", title=str(registry))
    for m in models:
        metrics = m.metadata.get("metrics", {})
        window = m.metadata.get("training_window") or [None, None]
        table.add_row("*" if m.promoted else "", m.version, _num(metrics.get("pr_auc")),
                      _pct(metrics.get("at_floor_noise_page_reduction")),
                      _pct(metrics.get("at_floor_actionable_recall")),
                      _num(metrics.get("at_floor_threshold")), _days(window))
    Console().print(table)
    if any(m.promoted for m in models):
        _warn_if_refused(registry)


@model_app.command("status")
def model_status(registry: RegistryOpt) -> None:
    """The promoted version, checked as serve and run load it. Exit 3 if it is refused
    (they then score with the model they had, or none: every alert passes the gate)."""
    from triage.models.registry import check_promoted

    version, problem = check_promoted(registry)
    if problem is None:
        print(f"promoted: {version}" if version else "promoted: none (every alert passes "
              "the noise gate)")
        return
    print(f"promoted: {version or '?'} REFUSED")
    raise fail(f"{problem}; serve and run keep the model they had, or score with none "
               "(every alert passes the noise gate)", code=3)


@model_app.command("promote")
def model_promote(version: Annotated[str, typer.Argument(help="e.g. v0002")],
                  registry: RegistryOpt) -> None:
    """Verify a version and make it the one workers load (they pick it up, no restart)."""
    from triage.models.registry import ModelError, promote

    try:
        promote(registry, version)
    except ModelError as exc:
        raise fail(str(exc), code=3) from None
    err.print(f"[green]promoted[/] {version} in {registry}")


def _warn_if_refused(registry: Path) -> None:
    from triage.models.registry import check_promoted

    version, problem = check_promoted(registry)
    if problem is not None:
        err.print(f"[red]promoted {version or '?'} is refused[/]: {problem}", highlight=False)


def _num(value: object) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) else "-"


def _pct(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "-"


def _days(window: list[object]) -> str:
    start, end = window[0], window[1]
    if not isinstance(start, int | float) or not isinstance(end, int | float):
        return "-"
    return f"{(end - start) / 86400:.1f} days"
