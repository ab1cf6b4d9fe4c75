"""Full-triage throughput, latency and memory on simulated storms (stage 1 + stage 2).

    python benchmarks/bench_storm.py [--sizes 10000,100000,1000000] [--topologies 100,1000,5000]
                                     [--profile] [--json FILE] [--plot FILE]

Storms come from ``triage simulate`` (``triage.simulate``) on a generated microservice graph,
made dense: many incidents and noise alerts per hour, every firing alert re-sent each minute
by Alertmanager, 30% of deliveries duplicated by the HA peer. Each storm is replayed in
process, the way ``triage run`` does (``Pipeline.process`` then ``IncidentEngine.observe``
per line), with its own ``triage.yaml`` (topology, catalog, changes, thresholds, silences,
maintenance windows), the input lines already in memory.

1. throughput (alerts/s) and per-alert latency p50 / p99 (the time to triage the delivery an
   alert arrived in) for storms of ``--sizes`` alerts on a 1,000-service graph;
2. the same for ~100k-alert storms on graphs of ``--topologies`` services, with the peak
   number of open incidents;
3. memory: triage's whole state mid-storm (dedup, incidents, topology caches, change index;
   tracemalloc) and the alerts it holds; the per-active-alert figure beside Alertmanager is
   in ``bench_alertmanager.py``;
4. ``--profile``: where the time goes (pyinstrument if installed, else cProfile).
"""

from __future__ import annotations

import argparse
import gc
import math
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress

from bench_intake import machine
from triage.app.bootstrap import build_triage
from triage.app.settings import load_settings
from triage.core.triage import Triage
from triage.simulate import DeliveryOptions, ScenarioOptions, default_rules_dir, simulate

err = Console(stderr=True)
# A dense storm: per hour and per 1,000 services. Re-sent every minute.
INCIDENTS_PER_HOUR_PER_1K = 60.0
NOISE_PER_HOUR_PER_1K = 3000.0
GROUP_INTERVAL = 60.0


def make_storm(out: Path, services: int, minutes: float, seed: int = 1) -> Path:
    scale = services / 1000
    simulate(out, services=services, rules_dir=default_rules_dir(),
             scenario=ScenarioOptions(minutes=minutes, seed=seed,
                                      incidents_per_hour=max(2.0, INCIDENTS_PER_HOUR_PER_1K
                                                             * math.sqrt(scale)),
                                      noise_per_hour=NOISE_PER_HOUR_PER_1K * scale),
             delivery=DeliveryOptions(group_interval=GROUP_INTERVAL, seed=seed))
    return out


def storm_of(tmp: Path, services: int, alerts: int) -> tuple[Path, int]:
    """A storm of about ``alerts`` alerts: calibrated on a 20-minute probe."""
    probe = make_storm(tmp / f"probe-{services}", services, 20)
    per_minute = orjson.loads((probe / "truth.json").read_bytes())["counts"]["alerts_in"] / 20
    minutes = max(5.0, alerts / per_minute)
    out = make_storm(tmp / f"storm-{services}-{alerts}", services, minutes)
    return out, orjson.loads((out / "truth.json").read_bytes())["counts"]["alerts_in"]


def build(folder: Path) -> Triage:
    return build_triage(load_settings(folder / "triage.yaml"))


def replay(folder: Path, *, label: str) -> dict[str, Any]:
    lines = (folder / "alerts.jsonl").read_bytes().splitlines()
    triage = build(folder)
    pipeline, engine = triage.pipeline, triage.engine
    assert engine is not None
    # warm the topology caches the way a long-running worker has them
    lat: list[float] = []
    sizes: list[int] = []
    peak_open = 0
    gc.collect()
    clock = time.perf_counter
    start = clock()
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task(label, total=len(lines))
        for n, line in enumerate(lines):
            t0 = clock()
            out = triage.process(line).outcomes
            lat.append(clock() - t0)
            sizes.append(len(out))
            if n % 2000 == 0:
                bar.update(task, completed=n)
                opened = sum(1 for i in engine.incidents.values() if i.status == "open")
                peak_open = max(peak_open, opened)
    secs = clock() - start
    alerts = pipeline.counts["in"]
    per_alert = sorted((t, k) for t, k in zip(lat, sizes, strict=True) if k)
    total = sum(k for _, k in per_alert)

    def q(p: float) -> float:
        need, acc = p * total, 0
        for t, k in per_alert:
            acc += k
            if acc >= need:
                return t * 1e6
        return per_alert[-1][0] * 1e6

    return {"alerts": alerts, "lines": len(lines), "seconds": secs, "alerts_per_s": alerts / secs,
            "latency_p50_us": q(0.5), "latency_p99_us": q(0.99),
            "pages": engine.counts.get("incident.created", 0), "peak_open_incidents": peak_open,
            "services": len(engine.topology)}


def memory(folder: Path) -> dict[str, float]:
    """Triage state (dedup + incidents) per alert held in it, with tracemalloc."""
    lines = (folder / "alerts.jsonl").read_bytes().splitlines()
    triage = build(folder)
    pipeline, engine = triage.pipeline, triage.engine
    assert engine is not None
    half = lines[: len(lines) // 2]  # mid-storm: the most alerts firing at once
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for line in half:
        triage.process(line)
    gc.collect()
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    held = len(pipeline.dedup)
    firing = sum(1 for inc in engine.incidents.values() for a in inc.alerts.values()
                 if a.status == "firing")
    return {"bytes": used, "alerts_in_state": held, "firing_in_incidents": firing,
            "bytes_per_alert_in_state": used / max(held, 1)}


def profile(folder: Path, out: Path) -> str:
    lines = (folder / "alerts.jsonl").read_bytes().splitlines()
    triage = build(folder)

    def work() -> None:
        for line in lines:
            triage.process(line)

    try:
        from pyinstrument import Profiler
    except ImportError:
        import cProfile
        import io
        import pstats

        prof = cProfile.Profile()
        prof.runcall(work)
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(30)
        text = buf.getvalue()
    else:
        profiler = Profiler(interval=0.0005)
        profiler.start()
        work()
        profiler.stop()
        text = profiler.output_text(unicode=False, color=False, show_all=False)
    out.write_text(text)
    return text


def quality_sweep(tmp: Path, sizes: list[int], seeds: int, minutes: float,
                  plot_path: Path | None) -> list[dict[str, Any]]:
    """simulate -> triage -> score at realistic density (the simulator's default rates),
    for each topology size and seed; the scores summed over seeds (pooled incidents)."""
    from triage.simulate.score import score

    rows = []
    for services in sizes:
        pooled: dict[str, list[float]] = {}
        for seed in range(1, seeds + 1):
            out = tmp / f"q-{services}-{seed}"
            simulate(out, services=services, rules_dir=default_rules_dir(),
                     scenario=ScenarioOptions(minutes=minutes, seed=seed))
            truth = orjson.loads((out / "truth.json").read_bytes())
            triage = build(out)
            events = []
            for line in (out / "alerts.jsonl").read_bytes().splitlines():
                events += triage.process(line).events
            s = score(truth, events)
            for key in ("alerts_in", "pages", "noise_pages", "true_incidents"):
                pooled.setdefault(key, []).append(float(s[key]))
            for r in s["incidents"]:
                pooled.setdefault("recalled", []).append(float(r["recalled"]))
                if r["recalled"]:
                    pooled.setdefault("root", []).append(float(r["root_top1"]))
                    pooled.setdefault("prio", []).append(
                        float(r["triage_priority"] == r["priority"]))
                    if r["cause_change"]:
                        pooled.setdefault("suspect", []).append(float(r["suspect_top1"]))
            pooled.setdefault("purity", []).append(s["grouping_purity"])
            pooled.setdefault("f1", []).append(s["pairwise_f1"])
        def mean(k: str, pooled: dict[str, list[float]] = pooled) -> float:
            v = pooled.get(k, [])
            return sum(v) / len(v) if v else float("nan")

        row = {"services": services, "alerts_in": sum(pooled["alerts_in"]),
               "pages": sum(pooled["pages"]), "noise_pages": sum(pooled["noise_pages"]),
               "true_incidents": sum(pooled["true_incidents"]),
               "compression": 1 - sum(pooled["pages"]) / sum(pooled["alerts_in"]),
               "recall": mean("recalled"), "root_top1": mean("root"),
               "priority_accuracy": mean("prio"), "suspect_top1": mean("suspect"),
               "purity": mean("purity"), "pairwise_f1": mean("f1")}
        rows.append(row)
        print(f"  {services:>8,} {int(row['true_incidents']):>5} {int(row['alerts_in']):>9,} "
              f"{int(row['pages']):>6} {int(row['noise_pages']):>6} {row['compression']:>7.1%} "
              f"{row['recall']:>7.1%} {row['root_top1']:>7.1%} {row['suspect_top1']:>7.1%} "
              f"{row['priority_accuracy']:>7.1%} {row['purity']:>7.1%} {row['pairwise_f1']:>7.1%}")
    if plot_path is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.8))
        xs = [r["services"] for r in rows]
        for key, label in (("compression", "compression"), ("recall", "incident recall"),
                           ("root_top1", "root cause top-1"),
                           ("suspect_top1", "suspect change top-1"),
                           ("priority_accuracy", "priority accuracy"),
                           ("purity", "grouping purity")):
            ax.plot(xs, [r[key] for r in rows], "o-", label=label)
        ax.set_xscale("log")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel("services in the generated graph")
        ax.set_title(f"triage quality on simulated storms ({minutes:g} min, {seeds} seeds each)")
        ax.legend(fontsize=7, loc="lower left")
        fig.tight_layout()
        fig.savefig(plot_path, dpi=90)
        print(f"  plot: {plot_path}")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="10000,100000,1000000")
    ap.add_argument("--topologies", default="100,1000,5000")
    ap.add_argument("--topology-alerts", type=int, default=100_000)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--quality", default="", help="also score quality on these graph sizes, "
                    "e.g. 100,300,1000,3000")
    ap.add_argument("--quality-seeds", type=int, default=3)
    ap.add_argument("--quality-minutes", type=float, default=120.0)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", default="benchmarks/results/storm_scaling.png",
                    help="where to save the plot (empty: none)")
    args = ap.parse_args()
    print(f"machine: {machine()}")
    results: dict[str, Any] = {"machine": machine(), "sizes": [], "topologies": []}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        print("\n1. storm size, 1,000-service graph (in process, one core):")
        print(f"  {'alerts':>10} {'alerts/s':>10} {'p50 us':>8} {'p99 us':>9} {'pages':>6} "
              f"{'open max':>8}")
        for size in (int(s) for s in args.sizes.split(",") if s):
            with err.status(f"simulating a {size:,}-alert storm ..."):
                folder, _ = storm_of(tmp, 1000, size)
            r = replay(folder, label=f"{size:,} alerts")
            results["sizes"].append(r)
            print(f"  {r['alerts']:>10,} {r['alerts_per_s']:>10,.0f} {r['latency_p50_us']:>8.0f} "
                  f"{r['latency_p99_us']:>9.0f} {r['pages']:>6,} {r['peak_open_incidents']:>8,}")
        print(f"\n2. topology size, ~{args.topology_alerts:,}-alert storms:")
        print(f"  {'services':>8} {'alerts':>9} {'alerts/s':>10} {'p50 us':>8} {'p99 us':>9} "
              f"{'open max':>8} {'state MB':>8} {'alerts held':>11}")
        for services in (int(s) for s in args.topologies.split(",") if s):
            with err.status(f"simulating on {services:,} services ..."):
                folder, _ = storm_of(tmp, services, args.topology_alerts)
            r = replay(folder, label=f"{services:,} services")
            r.update(memory(folder))
            results["topologies"].append(r)
            print(f"  {services:>8,} {r['alerts']:>9,} {r['alerts_per_s']:>10,.0f} "
                  f"{r['latency_p50_us']:>8.0f} {r['latency_p99_us']:>9.0f} "
                  f"{r['peak_open_incidents']:>8,} {r['bytes'] / 1e6:>8.1f} "
                  f"{r['alerts_in_state']:>11,}")
            if args.profile and services == 1000:
                text = profile(folder, Path(tmpdir) / "storm_profile.txt")
                print("\n  profile, top:")
                for line in text.splitlines()[:45]:
                    print("   " + line)
        if args.quality:
            print(f"\n5. quality vs topology size ({args.quality_minutes:g} min storms at the "
                  f"simulator's default density, {args.quality_seeds} seeds each, pooled):")
            print(f"  {'services':>8} {'true':>5} {'alerts in':>9} {'pages':>6} {'noise':>6} "
                  f"{'compr.':>7} {'recall':>7} {'root@1':>7} {'susp@1':>7} {'prio':>7} "
                  f"{'purity':>7} {'pair F1':>7}")
            results["quality"] = quality_sweep(
                tmp, [int(s) for s in args.quality.split(",")], args.quality_seeds,
                args.quality_minutes, Path("benchmarks/results/quality_vs_size.png"))
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    if args.plot and results["topologies"]:
        plot(results, Path(args.plot))


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for key, ax, title in (("sizes", axes[0], "storm size (1,000 services)"),
                           ("topologies", axes[1], "topology size (~100k alerts)")):
        rows = results[key]
        xs = [r["alerts"] if key == "sizes" else r["services"] for r in rows]
        ax.plot(xs, [r["alerts_per_s"] for r in rows], "o-", label="alerts/s")
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_ylabel("alerts / s (one core)")
        ax.set_ylim(bottom=0)
        ax2 = ax.twinx()
        ax2.plot(xs, [r["latency_p99_us"] for r in rows], "s--", color="tab:red",
                 label="p99 latency")
        ax2.set_ylabel("p99 µs per delivery", color="tab:red")
        ax2.set_ylim(bottom=0)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"\nplot: {path}")


if __name__ == "__main__":
    main()
