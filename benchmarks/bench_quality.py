"""Incident quality: triage's engine beside a baseline and an oracle, on the same stage-1 output.

    python benchmarks/bench_quality.py [--seeds 5] [--minutes 120] [--workers 2] [--bins 10]
                                       [--json FILE] [--workdir DIR] [--no-alarms] [--no-plots]

For each storm (``triage.simulate``, one per topology and seed 1..``--seeds``) the alerts are
replayed ONCE through stage 1 (the storm's own ``triage.yaml``), and the same outcomes, with
the pipeline's watermark as the clock, go to three groupers:

* ``triage``: the incident engine (``build_engine``), then ``flush_pages`` at the end;
* ``baseline``: ``triage.simulate.baseline.BaselineGrouper``, "an afternoon's baseline"
  (a 15-minute window from the incident's first alert, 1 hop, deepest-earliest root, no
  merges, no priority);
* ``oracle``: alerts grouped by their true incident, each paged once at its first alert,
  noise never paged; its root is named by ``oracle_root`` (replace it to measure a ranker on
  perfect groups).

Each is scored by ``triage.simulate.score.score``. Storms come in two sets, reported apart:
TUNING (Online Boutique and generated graphs of 100, 300 and 1,000 services: what the engine
may be tuned on) and HELD-OUT (Sock Shop, Hotel Reservation, Media Microservices, TeaStore:
never to be tuned on), each with its mean and its worst storm against the issue's targets
(``QUALITY_TARGETS``). Root-confidence calibration (reliability table, Brier score, ECE) is
reported for triage per set. If ``triage.simulate.alarms`` and ``../shared/data/alarms`` are
there, the two real telecom alarm sets (no incident labels) are replayed through the same
stage 1, engine and baseline grouper and judged by pages and causal consistency.

A storm that crashes a grouper is an error row for that grouper, not a dead benchmark.
Storms run in a ``ProcessPoolExecutor`` (``--workers``, default 2). Plots go to
``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import importlib.util
import math
import multiprocessing
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from bench_intake import machine
from triage.core.changes import ChangeIndex
from triage.core.topology import Topology
from triage.simulate.baseline import Member, RootGuess, deepest_earliest_root
from triage.simulate.score import QUALITY_TARGETS, meets, reliability, score

err = Console(stderr=True)
ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
RESULTS = ROOT / "benchmarks" / "results"
GROUPERS = ("triage", "baseline", "oracle")


@dataclass(frozen=True, slots=True)
class Topo:
    """A topology to simulate storms on."""

    name: str
    set: str  # tuning | held-out
    topology: Path | None = None
    catalog: Path | None = None
    services: int | None = None
    cost: float = 1.0  # relative run time, to start the big storms first


TOPOLOGIES = (
    Topo("online-boutique", "tuning",
         topology=SHARED / "topologies/online-boutique/kubernetes-manifests.yaml",
         catalog=ROOT / "src/triage/demo_assets/boutique-services.yaml"),
    Topo("generated-100", "tuning", services=100, cost=1.5),
    Topo("generated-300", "tuning", services=300, cost=2.5),
    Topo("generated-1000", "tuning", services=1000, cost=6.0),
    Topo("sock-shop", "held-out", topology=SHARED / "topologies/sock-shop/services.yaml"),
    Topo("hotel-reservation", "held-out",
         topology=SHARED / "topologies/hotel-reservation/services.yaml"),
    Topo("media-microservices", "held-out",
         topology=SHARED / "topologies/media-microservices/services.yaml"),
    Topo("teastore", "held-out", topology=SHARED / "topologies/teastore/services.yaml"),
)
ALARM_SETS = ("25V_474N_Microwave", "18V_55N_Wireless")

# (score key, column label, "up" when higher is better else "down")
METRICS: tuple[tuple[str, str, str], ...] = (
    ("incident_recall", "recall", "up"),
    ("root_cause_top1", "root@1", "up"),
    ("root_cause_top3", "root@3", "up"),
    ("suspect_top1", "susp@1", "up"),
    ("pages_per_incident", "pages/inc", "down"),
    ("grouping_purity", "purity", "up"),
    ("pairwise_f1", "pair F1", "up"),
    ("noise_page_share", "noise sh", "down"),
    ("noise_pages_p1p2", "noise P12", "down"),
    ("priority_accuracy", "prio acc", "up"),
    ("root_cause_top1_silent", "root@1 sil", "up"),
)
COUNTS = ("noise_pages_p1p2",)  # shown as numbers, not percentages


# -- the oracle's root rule ------------------------------------------------------------------


def oracle_root(*, members: Sequence[Member], topology: Topology, changes: ChangeIndex
                ) -> RootGuess:
    """The root-cause rule the oracle applies to its (perfect) groups: the engine's own
    ranker, over the page-worthy members as evidence. So the oracle's root figures say how
    the ranker does when the grouping is perfect, and the gap to triage's is grouping's."""
    from triage.core.incidents.evidence import classify_kind, page_worthy, severity_level
    from triage.core.incidents.rootcause import Evidence, rank_root_causes

    onset: dict[str, float] = {}
    level: dict[str, int] = {}
    kinds: dict[str, set[str]] = {}
    firing: dict[str, bool] = {}
    for m in members:
        kind, lvl = classify_kind(m.name), severity_level(m.severity)
        if not page_worthy(kind, lvl):
            continue
        onset[m.service] = min(m.first_at, onset.get(m.service, m.first_at))
        level[m.service] = min(lvl, level.get(m.service, lvl))
        kinds.setdefault(m.service, set()).add(kind)
        firing[m.service] = firing.get(m.service, False) or m.firing
    if not onset:
        return deepest_earliest_root(members=members, topology=topology, changes=changes)
    evidence = {s: Evidence(s, onset[s], level[s], frozenset(kinds[s]), firing[s])
                for s in sorted(onset)}
    rc = rank_root_causes(evidence=evidence, topology=topology, changes=changes)
    return RootGuess(rc.service, rc.confidence, rc.candidates, rc.reason)


# -- one storm (runs in a worker process) --------------------------------------------------


@dataclass(slots=True)
class Replay:
    """Stage 1's output for one storm: per input line, its outcomes, the watermark after it
    and the change records that arrived with it."""

    steps: list[tuple[list[Any], float, list[Any]]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def end(self) -> float:
        return self.steps[-1][1] if self.steps else 0.0


def stage1(folder: Path, settings: Any) -> Replay:
    """Replay ``folder/alerts.jsonl`` through stage 1 once."""
    from triage.app.bootstrap import build_pipeline

    pipeline = build_pipeline(settings, changes=load_change_index(settings))
    arrived: list[Any] = []
    pipeline.on_change = arrived.append
    replay = Replay()
    start = time.perf_counter()
    for line in (folder / "alerts.jsonl").read_bytes().splitlines():
        if not line.strip():
            continue
        outcomes = pipeline.process(line)
        replay.steps.append((outcomes, pipeline.watermark, arrived[:]))
        arrived.clear()
    replay.seconds = time.perf_counter() - start
    replay.counts = dict(pipeline.counts)
    return replay


def load_change_index(settings: Any) -> ChangeIndex:
    from triage.loaders.changes import load_changes

    if settings.changes_file is None:
        return ChangeIndex()
    return load_changes(settings.changes_file)[0]


def feed(observe: Callable[[list[Any], float], list[dict[str, Any]]],
         add_change: Callable[[Any], Any], flush: Callable[[float], list[dict[str, Any]]],
         replay: Replay) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for outcomes, now, changes in replay.steps:
        for record in changes:
            add_change(record)
        events.extend(observe(outcomes, now))
    events.extend(flush(replay.end))
    return events


def run_triage(settings: Any, replay: Replay) -> list[dict[str, Any]]:
    from triage.app.bootstrap import build_engine

    engine = build_engine(settings)
    flush = getattr(engine, "flush_pages", None) or engine.tick
    return feed(engine.observe, engine.add_change, flush, replay)


def reference_parts(settings: Any) -> tuple[Topology, Any, ChangeIndex]:
    """Topology, service mapper and change index for a reference grouper, loaded on their
    own (so they do not depend on the engine being buildable)."""
    from triage.core.services import ServiceMapper
    from triage.loaders.topology import load_topology

    topology, _ = load_topology(settings.topology)
    mapper = ServiceMapper.create(settings.topology.service_labels,
                                  settings.topology.service_aliases)
    return topology, mapper, load_change_index(settings)


def run_baseline(settings: Any, replay: Replay) -> list[dict[str, Any]]:
    from triage.simulate.baseline import BaselineGrouper

    topology, mapper, changes = reference_parts(settings)
    g = BaselineGrouper(topology=topology, mapper=mapper, changes=changes)
    return feed(g.observe, g.add_change, g.flush, replay)


def run_oracle(settings: Any, replay: Replay, truth: dict[str, Any]) -> list[dict[str, Any]]:
    from triage.simulate.baseline import OracleGrouper

    topology, mapper, changes = reference_parts(settings)
    incident_of = {fp: a.get("incident") for fp, a in truth.get("alerts", {}).items()}
    g = OracleGrouper(incident_of=incident_of, topology=topology, mapper=mapper,
                      changes=changes, root=oracle_root)
    return feed(g.observe, g.add_change, g.flush, replay)


def error_of(exc: BaseException) -> dict[str, Any]:
    tb = traceback.format_exception(exc)
    return {"error": f"{type(exc).__name__}: {exc}"[:300], "traceback": "".join(tb[-6:])}


def run_storm(job: dict[str, Any]) -> dict[str, Any]:
    """Simulate one storm, replay it through stage 1 once, feed every grouper, score each.
    Never raises: failures are reported in the row."""
    topo: Topo = job["topo"]
    seed: int = job["seed"]
    row: dict[str, Any] = {"kind": "storm", "topology": topo.name, "set": topo.set,
                           "seed": seed, "groupers": {}}
    started = time.perf_counter()
    try:
        from triage.app.settings import load_settings
        from triage.simulate import ScenarioOptions, default_rules_dir, simulate

        out = Path(job["workdir"]) / f"{topo.name}-{seed}"
        t0 = time.perf_counter()
        sim = simulate(out, topology=topo.topology, catalog=topo.catalog,
                       services=topo.services, rules_dir=default_rules_dir(),
                       scenario=ScenarioOptions(minutes=job["minutes"], seed=seed))
        truth = sim.truth
        row["simulate_s"] = time.perf_counter() - t0
        row["services"] = len(sim.topology)
        settings = load_settings(sim.config)
        replay = stage1(out, settings)
        row["stage1_s"] = replay.seconds
        row["stage1"] = {k: replay.counts.get(k, 0) for k in
                         ("in", "triaged", "deduplicated", "suppressed", "failed")}
    except Exception as exc:  # the storm itself could not be made: every grouper errs
        row["error"] = error_of(exc)
        row["seconds"] = time.perf_counter() - started
        return row
    runs: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "triage": lambda: run_triage(settings, replay),
        "baseline": lambda: run_baseline(settings, replay),
        "oracle": lambda: run_oracle(settings, replay, truth),
    }
    for name, fn in runs.items():
        t0 = time.perf_counter()
        try:
            events = fn()
            result = score(truth, events)
            result["seconds"] = time.perf_counter() - t0
            row["groupers"][name] = result
        except Exception as exc:
            row["groupers"][name] = {**error_of(exc), "seconds": time.perf_counter() - t0}
    row["seconds"] = time.perf_counter() - started
    return row


# -- the real alarm sets (held out, no incident labels) ---------------------------------------


def alarms_available() -> str | None:
    """Why the alarm sets cannot run, or None when they can."""
    if importlib.util.find_spec("triage.simulate.alarms") is None:
        return "triage.simulate.alarms is not there yet"
    if not (SHARED / "alarms").is_dir():
        return f"{SHARED / 'alarms'} is not there"
    return None


def _replay_folder(path: Path) -> Path:
    """``write_replay`` names a folder, its ``triage.yaml`` or its alerts file."""
    return path if path.is_dir() else path.parent


def _number(value: Any, *keys: str) -> float | None:
    """A number from a result that may be a number or a dict holding it under ``keys``."""
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, dict):
        for k in keys:
            if isinstance(value.get(k), int | float):
                return float(value[k])
    return None


def run_alarm_set(job: dict[str, Any]) -> dict[str, Any]:
    """Replay one real alarm set through stage 1, the engine and the baseline grouper; pages
    and causal consistency for each, for the README's naive baseline and for random roots."""
    name: str = job["name"]
    row: dict[str, Any] = {"kind": "alarms", "name": name, "set": "held-out", "groupers": {}}
    started = time.perf_counter()
    try:
        from triage.app.settings import load_settings
        alarms = importlib.import_module("triage.simulate.alarms")  # optional, see above

        alarm_set = alarms.load_alarm_set(SHARED / "alarms" / name)
        folder = _replay_folder(Path(alarms.write_replay(alarm_set, Path(job["workdir"]) / name)))
        settings = load_settings(folder / "triage.yaml")
        replay = stage1(folder, settings)
        row["stage1_s"] = replay.seconds
        row["stage1"] = {k: replay.counts.get(k, 0) for k in
                         ("in", "triaged", "deduplicated", "suppressed", "failed")}
        index = getattr(alarm_set, "index", alarm_set)
        dag = getattr(alarm_set, "dag", None)
        naive = alarms.naive_baseline(alarm_set)
        row["naive"] = judge_alarm_incidents(alarms, naive, dag)
    except Exception as exc:
        row["error"] = error_of(exc)
        row["seconds"] = time.perf_counter() - started
        return row
    runs: dict[str, Callable[[], list[dict[str, Any]]]] = {
        "triage": lambda: run_triage(settings, replay),
        "baseline": lambda: run_baseline(settings, replay)}
    for gname, fn in runs.items():
        t0 = time.perf_counter()
        try:
            events = fn()
            incidents = alarms.incidents_from_events(events, index, alarm_set)
            judged = judge_alarm_incidents(alarms, incidents, dag)
            judged["pages"] = sum(1 for e in events if e.get("type") == "incident.created")
            judged["repeated_pages"] = alarms.repeated_pages(events, index)
            judged["events"] = len(events)
            judged["seconds"] = time.perf_counter() - t0
            row["groupers"][gname] = judged
        except Exception as exc:
            row["groupers"][gname] = {**error_of(exc), "seconds": time.perf_counter() - t0}
    row["seconds"] = time.perf_counter() - started
    return row


def judge_alarm_incidents(alarms: Any, incidents: Any, dag: Any) -> dict[str, Any]:
    """Pages and causal consistency (and its random-root reference) of a set of incidents,
    whatever shape ``alarms`` gives them in."""
    pages = (_number(incidents, "pages", "incidents") if isinstance(incidents, dict)
             else float(len(incidents)))
    if isinstance(incidents, dict) and "incidents" in incidents and not isinstance(
            incidents["incidents"], int | float):
        incidents = incidents["incidents"]
        pages = float(len(incidents))
    cc = alarms.causal_consistency(incidents, dag)
    out: dict[str, Any] = {"pages": pages, "consistency": _number(cc, "consistency", "mean",
                                                                  "score"),
                           "random_root": _number(cc, "random_root", "random",
                                                  "random_consistency"),
                           "type_coherence": _number(cc, "type_coherence")}
    if isinstance(cc, dict):
        out["detail"] = {k: v for k, v in cc.items() if isinstance(v, int | float | str)}
    return out


# -- aggregation -----------------------------------------------------------------------------


def _values(rows: Iterable[dict[str, Any]], grouper: str, key: str
            ) -> list[tuple[float, str]]:
    out = []
    for r in rows:
        g = r.get("groupers", {}).get(grouper)
        if g is None or "error" in g:
            continue
        v = g.get(key)
        if isinstance(v, int | float) and not math.isnan(v):
            out.append((float(v), f"{r['topology']}#{r['seed']}"))
    return out


def aggregate(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """For each grouper and metric: mean, worst (with which storm) and how many storms."""
    out: dict[str, Any] = {}
    for g in GROUPERS:
        per: dict[str, Any] = {}
        for key, _, better in METRICS:
            vals = _values(rows, g, key)
            if not vals:
                per[key] = {"mean": None, "worst": None, "worst_storm": None, "n": 0}
                continue
            worst = (min if better == "up" else max)(vals, key=lambda x: x[0])
            per[key] = {"mean": statistics.fmean(v for v, _ in vals), "worst": worst[0],
                        "worst_storm": worst[1], "n": len(vals)}
        errors = sum(1 for r in rows if "error" in r
                     or "error" in r.get("groupers", {}).get(g, {}))
        per["errors"] = errors
        per["storms"] = len(rows)
        per["meets_mean"] = meets({k: per[k]["mean"] for k, _, _ in METRICS},
                                  QUALITY_TARGETS)
        per["meets_worst"] = meets({k: per[k]["worst"] for k, _, _ in METRICS},
                                   QUALITY_TARGETS)
        out[g] = per
    return out


def calibration(rows: list[dict[str, Any]], bins: int) -> dict[str, Any]:
    pairs: list[tuple[float, bool]] = []
    for r in rows:
        g = r.get("groupers", {}).get("triage")
        if g is None or "error" in g:
            continue
        pairs.extend((inc["root_confidence"], bool(inc["root_top1"]))
                     for inc in g.get("incidents", [])
                     if inc.get("recalled") and inc.get("root_confidence") is not None)
    return reliability(pairs, bins=bins)


# -- printing --------------------------------------------------------------------------------


def fmt(value: Any, key: str = "") -> str:
    if value is None:
        return "n/a"
    if key in COUNTS:
        return f"{value:g}" if isinstance(value, int | float) else str(value)
    if key == "pages_per_incident":
        return f"{value:.2f}"
    return f"{value:.1%}" if isinstance(value, float) else str(value)


def mark(ok: bool | None) -> str:
    return {True: "✓", False: "✗", None: " "}[ok]


def print_storms(rows: list[dict[str, Any]]) -> None:
    cols = [m for m in METRICS if m[0] != "root_cause_top1_silent"]
    head = (f"  {'storm':<24} {'grouper':<8} {'alerts':>7} {'true':>4} {'pages':>5} "
            + " ".join(f"{label:>9}" for _, label, _ in cols) + f" {'s':>6}")
    print(head)
    for r in rows:
        name = f"{r['topology']}#{r['seed']}"
        if "error" in r:
            print(f"  {name:<24} {'(storm)':<8} ERROR {r['error']['error']}")
            continue
        for g in GROUPERS:
            s = r["groupers"].get(g, {})
            if "error" in s:
                print(f"  {name:<24} {g:<8} ERROR {s['error']}")
                name = ""
                continue
            print(f"  {name:<24} {g:<8} {s['alerts_in']:>7,} {s['true_incidents']:>4} "
                  f"{s['pages']:>5} "
                  + " ".join(f"{fmt(s.get(k), k):>9}" for k, _, _ in cols)
                  + f" {s['seconds']:>6.2f}")
            name = ""


def print_aggregates(title: str, groups: dict[str, dict[str, Any]], *, targets: bool) -> None:
    """One line per group and grouper: each metric as mean / worst."""
    print(f"\n{title} (each cell: mean / worst"
          + ("; ✓ ✗ against the issue's target" if targets else "") + ")")
    print(f"  {'':<20} {'grouper':<8} {'n':>3} {'err':>3} "
          + " ".join(f"{label:>17}" for _, label, _ in METRICS))
    if targets:
        print(f"  {'target':<20} {'':<8} {'':>3} {'':>3} "
              + " ".join(f"{target_text(k):>17}" for k, _, _ in METRICS))
    for name, agg in groups.items():
        label = name
        for g in GROUPERS:
            a = agg[g]
            cells = []
            for key, _, _ in METRICS:
                v = a[key]
                cell = f"{fmt(v['mean'], key)} / {fmt(v['worst'], key)}"
                if targets and key in QUALITY_TARGETS:
                    cell = (f"{fmt(v['mean'], key)}{mark(a['meets_mean'].get(key))}/"
                            f"{fmt(v['worst'], key)}{mark(a['meets_worst'].get(key))}")
                cells.append(f"{cell:>17}")
            n = max((a[k]["n"] for k, _, _ in METRICS), default=0)
            print(f"  {label:<20} {g:<8} {n:>3} {a['errors']:>3} " + " ".join(cells))
            label = ""
        if targets:
            worst = agg["triage"]
            missed = [f"{lab} {worst[k]['worst_storm']}" for k, lab, _ in METRICS
                      if worst["meets_worst"].get(k) is False]
            if missed:
                print(f"  {'':<20} triage's worst storm per missed target: "
                      + ", ".join(missed))


def target_text(key: str) -> str:
    t = QUALITY_TARGETS.get(key)
    if t is None:
        return ""
    op, bound = t
    shown = f"{bound:g}" if key in COUNTS or key == "pages_per_incident" else f"{bound:.0%}"
    return f"{'≥' if op == '>=' else '≤'} {shown}"


def print_calibration(cal: dict[str, dict[str, Any]]) -> None:
    print("\nroot-cause confidence calibration, triage (recalled incidents; "
          "accuracy = root top-1):")
    for set_name, c in cal.items():
        brier = "n/a" if c["brier"] is None else f"{c['brier']:.3f}"
        ece = "n/a" if c["ece"] is None else f"{c['ece']:.3f}"
        print(f"  {set_name}: n={c['n']}, Brier {brier}, ECE {ece}, mean confidence "
              f"{fmt(c['mean_confidence'])}, accuracy {fmt(c['accuracy'])}")
        print(f"    {'confidence':>12} {'count':>6} {'mean conf':>9} {'accuracy':>9}")
        for b in c["bins"]:
            if b["count"]:
                print(f"    {b['lo']:>5.2f}-{b['hi']:<5.2f}  {b['count']:>6} "
                      f"{fmt(b['confidence']):>9} {fmt(b['accuracy']):>9}")


def print_alarms(rows: list[dict[str, Any]]) -> None:
    print("\nreal alarm sets (held out; no incident labels): pages and causal consistency")
    print(f"  {'set':<22} {'who':<9} {'pages':>8} {'consistency':>11} {'random root':>11} "
          f"{'repeated':>8} {'type coher.':>11}")
    for r in rows:
        if "error" in r:
            print(f"  {r['name']:<22} ERROR {r['error']['error']}")
            continue
        for who, res in (("naive", r.get("naive", {})), *r["groupers"].items()):
            if "error" in res:
                print(f"  {r['name']:<22} {who:<9} ERROR {res['error']}")
                continue
            print(f"  {r['name']:<22} {who:<9} {fmt(res.get('pages'), COUNTS[0]):>8} "
                  f"{_f3(res.get('consistency')):>11} {_f3(res.get('random_root')):>11} "
                  f"{fmt(res.get('repeated_pages'), COUNTS[0]):>8} "
                  f"{_f3(res.get('type_coherence')):>11}")
        if r["name"].startswith("25V"):
            v = r["target"] = alarm_target(r)
            text = ("n/a (" + v["why"] + ")" if v["met"] is None else
                    f"{'met' if v['met'] else 'MISSED'}: consistency {v['consistency']:.3f} "
                    f"{'≥' if v['consistency_ok'] else '<'} {v['needed']:.3f}, pages "
                    f"{v['pages']:g} {'≤' if v['pages_ok'] else '>'} {v['max_pages']:g}")
            print(f"  {'':<22} triage vs the issue's target (consistency ≥ naive + 0.03 "
                  f"with ≤ half its pages): {text}")


def _f3(v: Any) -> str:
    return "n/a" if not isinstance(v, int | float) else f"{v:.3f}"


def alarm_target(row: dict[str, Any]) -> dict[str, Any]:
    naive = row.get("naive", {})
    t = row["groupers"].get("triage", {})
    nc, np_ = naive.get("consistency"), naive.get("pages")
    tc, tp = t.get("consistency"), t.get("pages")
    if None in (nc, np_, tc, tp):
        return {"met": None, "why": "missing figures"}
    ok_c, ok_p = tc >= nc + 0.03, tp <= np_ / 2
    return {"met": ok_c and ok_p, "consistency_ok": ok_c, "pages_ok": ok_p,
            "consistency": tc, "needed": nc + 0.03, "pages": tp, "max_pages": np_ / 2}


# -- plots -----------------------------------------------------------------------------------


def plot_by_topology(by_topology: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [t.name for t in TOPOLOGIES if t.name in by_topology]
    sets = {t.name: t.set for t in TOPOLOGIES}
    fig, axes = plt.subplots(2, 1, figsize=(11.5, 6), sharex=True)
    xs = list(range(len(names)))
    width = 0.38
    for ax, key, title in ((axes[0], "root_cause_top1", "root cause top-1"),
                           (axes[1], "grouping_purity", "grouping purity")):
        for i, n in enumerate(names):
            ax.axvspan(i - 0.5, i + 0.5, color="#dbe9f6" if sets[n] == "tuning" else "#fbe3cf",
                       zorder=0)
        for off, g, color in ((-width / 2, "triage", "tab:blue"),
                              (width / 2, "baseline", "tab:gray")):
            means = [by_topology[n][g][key]["mean"] for n in names]
            worst = [by_topology[n][g][key]["worst"] for n in names]
            ax.bar([x + off for x in xs], [m if m is not None else 0 for m in means], width,
                   color=color, label=f"{g} (mean)", zorder=2)
            ax.plot([x + off for x, w in zip(xs, worst, strict=True) if w is not None],
                    [w for w in worst if w is not None], "v", color="black", ms=5, zorder=3,
                    label="worst seed" if g == "triage" else None)
        oracle = [by_topology[n]["oracle"][key]["mean"] for n in names]
        ax.plot([x for x, o in zip(xs, oracle, strict=True) if o is not None],
                [o for o in oracle if o is not None], "_", color="tab:green", ms=22, mew=2,
                zorder=3, label="oracle (mean)")
        target = QUALITY_TARGETS.get(key)
        if target:
            ax.axhline(target[1], color="tab:red", ls="--", lw=1, label="target")
        ax.set_ylim(0, 1.05)
        ax.set_ylabel(title)
    axes[1].set_xticks(xs, names, rotation=20, ha="right")
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    axes[0].set_title("incident quality per topology: tuning (blue) vs held-out (orange)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_reliability(cal: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(1, 2, figsize=(10, 4))
    ax.plot([0, 1], [0, 1], ":", color="gray", label="perfect calibration")
    for (set_name, c), color in zip(cal.items(), ("tab:blue", "tab:orange"), strict=False):
        filled = [b for b in c["bins"] if b["count"]]
        if not filled:
            continue
        brier = "n/a" if c["brier"] is None else f"{c['brier']:.3f}"
        ece = "n/a" if c["ece"] is None else f"{c['ece']:.3f}"
        ax.plot([b["confidence"] for b in filled], [b["accuracy"] for b in filled], "o-",
                color=color, label=f"{set_name} (n={c['n']}, Brier {brier}, ECE {ece})")
        for b in filled:
            ax.annotate(str(b["count"]), (b["confidence"], b["accuracy"]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        lows = [b["lo"] for b in c["bins"]]
        w = (c["bins"][0]["hi"] - c["bins"][0]["lo"]) / 2.2
        off = 0 if set_name == "tuning" else w
        hist.bar([lo + off for lo in lows], [b["count"] for b in c["bins"]], w, align="edge",
                 color=color, label=set_name)
    ax.set_xlim(0, 1.05)
    ax.set_ylim(0, 1.1)
    ax.set_xlabel("stated root-cause confidence (bin mean)")
    ax.set_ylabel("observed root top-1 accuracy")
    ax.set_title("triage root-cause confidence: reliability")
    ax.legend(fontsize=7, loc="upper left")
    hist.set_xlabel("confidence bin")
    hist.set_ylabel("incidents")
    hist.set_title("incidents per bin")
    hist.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)


# -- main ------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=5, help="seeds 1..N per topology")
    ap.add_argument("--minutes", type=float, default=120.0, help="storm length")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--bins", type=int, default=10, help="confidence bins for calibration")
    ap.add_argument("--json", type=Path, help="write everything here")
    ap.add_argument("--workdir", type=Path, help="keep the storms here (default: a temp dir)")
    ap.add_argument("--no-alarms", action="store_true", help="skip the real alarm sets")
    ap.add_argument("--no-plots", action="store_true")
    args = ap.parse_args()
    command = " ".join(["python", *sys.argv])
    print(f"machine: {machine()}")
    print(f"command: {command}")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmpdir:
        workdir = args.workdir or Path(tmpdir)
        workdir.mkdir(parents=True, exist_ok=True)
        jobs: list[tuple[Callable[[dict[str, Any]], dict[str, Any]], dict[str, Any]]] = [
            (run_storm, {"topo": t, "seed": s, "minutes": args.minutes, "workdir": str(workdir)})
            for t in sorted(TOPOLOGIES, key=lambda t: -t.cost)
            for s in range(1, args.seeds + 1)]
        skipped = "--no-alarms" if args.no_alarms else alarms_available()
        if skipped is None:
            jobs[:0] = [(run_alarm_set, {"name": n, "workdir": str(workdir)})
                        for n in ALARM_SETS]
        results = run_jobs(jobs, args.workers)
    seconds = time.perf_counter() - started
    report(results, args=args, command=command, seconds=seconds, alarms_skipped=skipped)


def run_jobs(jobs: list[tuple[Callable[[dict[str, Any]], dict[str, Any]], dict[str, Any]]],
             workers: int) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn(), TextColumn("{task.fields[last]}"))
    # spawn, not fork: the progress bar runs a thread, and workers need none of its state
    with ProcessPoolExecutor(max_workers=workers,
                             mp_context=multiprocessing.get_context("spawn")) as pool, \
            Progress(*columns, console=err) as bar:
        task = bar.add_task("storms", total=len(jobs), last="")
        futures: dict[Future[dict[str, Any]], dict[str, Any]] = {
            pool.submit(fn, job): job for fn, job in jobs}
        for fut in as_completed(futures):
            job = futures[fut]
            try:
                row = fut.result()
            except Exception as exc:  # a worker died (out of memory, ...)
                row = {"kind": "alarms" if "name" in job else "storm",
                       "topology": job["topo"].name if "topo" in job else job.get("name"),
                       "name": job.get("name"), "seed": job.get("seed"),
                       "set": job["topo"].set if "topo" in job else "held-out",
                       "groupers": {}, "error": error_of(exc)}
            label = row.get("name") or f"{row['topology']}#{row['seed']}"
            bar.update(task, advance=1, last=f"{label} {row.get('seconds', 0):.1f}s"
                       + (" ERROR" if "error" in row else ""))
            results.append(row)
    return results


def report(results: list[dict[str, Any]], *, args: argparse.Namespace, command: str,
           seconds: float, alarms_skipped: str | None) -> None:
    order = {t.name: i for i, t in enumerate(TOPOLOGIES)}
    storms = sorted((r for r in results if r["kind"] == "storm"),
                    key=lambda r: (order.get(r["topology"], 99), r["seed"]))
    alarm_rows = sorted((r for r in results if r["kind"] == "alarms"),
                        key=lambda r: r["name"])
    print(f"\nper storm ({args.minutes:g}-minute storms, seeds 1..{args.seeds}):")
    print_storms(storms)
    by_topology = {t.name: aggregate([r for r in storms if r["topology"] == t.name])
                   for t in TOPOLOGIES}
    by_set = {s: aggregate([r for r in storms if r["set"] == s]) for s in ("tuning", "held-out")}
    print_aggregates("per topology (over seeds)", by_topology, targets=False)
    print_aggregates("per set (over storms)", by_set, targets=True)
    cal = {s: calibration([r for r in storms if r["set"] == s], args.bins)
           for s in ("tuning", "held-out")}
    print_calibration(cal)
    if alarm_rows:
        print_alarms(alarm_rows)
    else:
        print(f"\nreal alarm sets: not run ({alarms_skipped})")
    plots = {}
    if not args.no_plots:
        plots["quality_by_topology"] = RESULTS / "quality_by_topology.png"
        plot_by_topology(by_topology, plots["quality_by_topology"])
        if any(c["n"] for c in cal.values()):
            plots["root_confidence_reliability"] = RESULTS / "root_confidence_reliability.png"
            plot_reliability(cal, plots["root_confidence_reliability"])
        for p in plots.values():
            print(f"plot: {p.relative_to(ROOT)}")
    errors = sum(1 for r in results if "error" in r) + sum(
        1 for r in results for g in r.get("groupers", {}).values() if "error" in g)
    print(f"\n{len(storms)} storms, {len(alarm_rows)} alarm sets, {errors} errors, "
          f"{seconds:.0f} s wall")
    if args.json:
        doc = {"machine": machine(), "command": command, "seconds": seconds,
               "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
               "targets": QUALITY_TARGETS, "storms": storms, "by_topology": by_topology,
               "by_set": by_set, "calibration": cal, "alarms": alarm_rows,
               "alarms_skipped": alarms_skipped,
               "plots": {k: str(v) for k, v in plots.items()}}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(doc, option=orjson.OPT_INDENT_2
                                           | orjson.OPT_SERIALIZE_NUMPY,
                                           default=_jsonable))
        print(f"json: {args.json}")


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, set | frozenset | tuple):
        return sorted(obj, key=str) if isinstance(obj, set | frozenset) else list(obj)
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


if __name__ == "__main__":
    main()
