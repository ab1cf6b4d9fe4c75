"""State memory and ingest speed as active alerts pile up (issue 15).

    python benchmarks/bench_state_memory.py [--alerts 10000,100000,300000,1000000]
        [--services 2000] [--path core|serve] [--batch 100] [--gc default|tuned]
        [--tracemalloc [--top 15]] [--repeats 1] [--json FILE]

Builds the pipeline and the incident engine the way ``triage serve`` does in embedded mode
(``triage.app.bootstrap``, a ``triage.yaml`` whose topology is a generated 2,000-service graph),
then feeds distinct firing alerts (API v2 bodies of ``--batch`` alerts, as HTTP bodies are:
every alert a new active alert, labelled with a service of the graph) until the largest
``--alerts`` size. At each size it reports:

* bytes per active alert: RSS growth of this process since before the first alert (and,
  with ``--tracemalloc``, memory traced by Python, with the top allocation sites: slower);
* alerts/s per decile of the run so far, and the time spent in the cyclic garbage
  collector (timed with ``gc.callbacks``), which is where a growing heap shows first.

``--path core`` runs what ``EmbeddedBackend._triage`` runs (parse, ``Pipeline.process``,
``IncidentEngine.observe``); ``--path serve`` runs ``EmbeddedBackend.accept`` itself, with
``--state`` (``durability: process``), outputs to files, metrics and the clock task: the
whole crash-safe receiver but the socket. ``--gc tuned`` applies what ``triage serve``
and ``triage run`` do at start (``triage.app.gctune``); ``--gc default`` leaves Python's
defaults, for the before figure. ``--repeats N`` runs N fresh processes and reports the
median of each figure.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import yaml
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from machine import describe
from triage.app.bootstrap import build_triage
from triage.app.settings import load_settings
from triage.core.timeutil import format_timestamp
from triage.core.triage import Triage
from triage.simulate.emit import services_yaml
from triage.simulate.graphs import layered_topology

console = Console(stderr=True)
RULES = ["HighErrorRate", "HighLatencyP99", "PodCrashLooping", "HostHighCpuLoad",
         "KubePodNotReady", "RedisDown", "TargetDown", "HostOutOfMemory", "DiskWillFillIn4h",
         "UpstreamTimeouts", "CertificateExpiry", "ContainerThrottled"]
PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    """Resident bytes of this process now."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE


def write_config(folder: Path, services: int) -> tuple[Path, list[str]]:
    """A ``triage.yaml`` over a generated graph of ``services`` services; their names."""
    topo = layered_topology(services, seed=1)
    (folder / "services.yaml").write_text(yaml.safe_dump(services_yaml(topo),
                                                         sort_keys=False))
    path = folder / "triage.yaml"
    path.write_text("topology:\n  file: services.yaml\n")
    return path, sorted(topo.services)


class Bodies:
    """API v2 bodies of ``batch`` distinct firing alerts, made on demand (1M alerts held
    as bytes would be most of the RSS being measured)."""

    def __init__(self, services: list[str], batch: int) -> None:
        self.services = services
        self.batch = batch
        now = time.time()
        self.starts, self.ends = format_timestamp(now - 60), format_timestamp(now + 86400)

    def body(self, k: int) -> bytes:
        first = k * self.batch
        return orjson.dumps([self.alert(i) for i in range(first, first + self.batch)])

    def alert(self, i: int) -> dict[str, Any]:
        svc = self.services[(i // len(RULES)) % len(self.services)]
        return {"labels": {"alertname": RULES[i % len(RULES)], "service": svc,
                           "instance": f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:9100",
                           "pod": f"{svc}-{i // (len(RULES) * len(self.services))}",
                           "severity": "critical" if i % 7 == 0 else "warning",
                           "namespace": "prod", "job": "kubernetes-pods"},
                "annotations": {"summary": f"alert {i}"},
                "startsAt": self.starts, "endsAt": self.ends,
                "generatorURL": "http://prometheus:9090/graph"}


class GcTimer:
    """Seconds spent in each generation's collections (``gc.callbacks``)."""

    def __init__(self) -> None:
        self.seconds = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            gen = info["generation"]
            self.seconds[gen] += time.perf_counter() - self._t0
            self.count[gen] += 1


def build(config: Path) -> tuple[Any, Any]:
    triage = build_triage(load_settings(config))
    return triage.pipeline, triage.engine


def core_feeder(pipeline: Any, engine: Any) -> Callable[[bytes], None]:
    """What ``EmbeddedBackend._triage`` does with one body (no outputs, no state)."""
    triage = Triage(pipeline, engine)

    def feed(body: bytes) -> None:
        triage.process(orjson.loads(body), time.time())

    return feed


def run(args: argparse.Namespace, sizes: list[int]) -> dict[str, Any]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-state-"))
    config, services = write_config(tmp, args.services)
    pipeline, engine = build(config)
    bodies = Bodies(services, args.batch)
    if args.gc == "tuned":
        from triage.app.gctune import tune_gc
        tune_gc()
    timer = GcTimer()
    gc.callbacks.append(timer)
    feed: Callable[[bytes], None]
    if args.path == "serve":
        from prometheus_client import CollectorRegistry

        from triage.http.embedded import EmbeddedBackend
        from triage.metrics import TriageMetrics

        backend = EmbeddedBackend(pipeline, engine, TriageMetrics.create(CollectorRegistry()),
                                  output=str(tmp / "incidents.jsonl"),
                                  dead_letter=str(tmp / "dead.jsonl"),
                                  state_path=tmp / "state.db", durability="process")
        loop = asyncio.new_event_loop()
        loop.run_until_complete(backend.start())

        def accept(body: bytes) -> None:
            answer = loop.run_until_complete(backend.accept(body, received_at=time.time()))
            if getattr(answer, "status", 200) != 200:
                raise SystemExit(f"refused: {answer}")

        feed = accept
    else:
        feed = core_feeder(pipeline, engine)
    gc.collect()
    if args.tracemalloc:
        tracemalloc.start()
    base_rss, base_traced = rss(), tracemalloc.get_traced_memory()[0]
    n_batches = max(sizes) // args.batch
    checkpoints = {s // args.batch for s in sizes}
    seconds: list[float] = []  # per batch
    gc_before = (0.0, 0.0)
    rows: list[dict[str, Any]] = []
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[rate]}"),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=True) as bar:
        task = bar.add_task(f"{args.path}, gc {args.gc}", total=n_batches, rate="")
        for k in range(n_batches):
            body = bodies.body(k)
            t0 = time.perf_counter()
            feed(body)
            seconds.append(time.perf_counter() - t0)
            if (k + 1) % 100 == 0:
                recent = seconds[-100:]
                bar.update(task, completed=k + 1,
                           rate=f"{100 * args.batch / sum(recent):,.0f} alerts/s, "
                                f"{len(pipeline.dedup):,} active")
            if k + 1 in checkpoints:
                rows.append(checkpoint(k + 1, args, pipeline, engine, seconds, timer,
                                       base_rss, base_traced, gc_before))
                gc_before = (sum(timer.seconds), timer.seconds[2])
    if args.path == "serve":
        loop.run_until_complete(backend.stop())
        loop.close()
    gc.callbacks.remove(timer)
    if args.tracemalloc:
        top = tracemalloc.take_snapshot().statistics("lineno")[: args.top]
        console.print("top allocation sites (live at the end):")
        for stat in top:
            console.print(f"  {stat.size / len(pipeline.dedup):7.1f} B/alert  "
                          f"{stat.count:>10,}  {stat.traceback[0]}")
        tracemalloc.stop()
    return {"machine": describe(), "path": args.path, "gc": args.gc, "batch": args.batch,
            "services": args.services, "sizes": rows}


def checkpoint(done: int, args: argparse.Namespace, pipeline: Any, engine: Any,
               seconds: list[float], timer: GcTimer, base_rss: int, base_traced: int,
               gc_before: tuple[float, float]) -> dict[str, Any]:
    """Figures for the first ``done`` batches (collected outside the timed region)."""
    active = len(pipeline.dedup)
    grown = rss() - base_rss
    traced = (tracemalloc.get_traced_memory()[0] - base_traced) if args.tracemalloc else None
    tenth = max(1, len(seconds) // 10)
    deciles = [args.batch * len(seconds[i:i + tenth]) / sum(seconds[i:i + tenth])
               for i in range(0, tenth * 10, tenth)]
    in_alerts = sum(len(i.alerts) for i in engine.incidents.values())
    return {"alerts": done * args.batch, "active": active,
            "rss_bytes_per_alert": grown / active,
            "traced_bytes_per_alert": traced / active if traced is not None else None,
            "alerts_per_s": done * args.batch / sum(seconds),
            "deciles_alerts_per_s": deciles,
            "gc_seconds": sum(timer.seconds), "gc_full_seconds": timer.seconds[2],
            "gc_full_collections": timer.count[2],
            "incidents": len(engine.incidents),
            "largest_incident": max((len(i.alerts) for i in engine.incidents.values()),
                                    default=0),
            "alerts_in_incidents": in_alerts,
            "request_p50_ms": statistics.median(seconds[-tenth:]) * 1e3}


def report(result: dict[str, Any]) -> None:
    table = Table(title=f"{result['path']} path, gc {result['gc']}, batch {result['batch']}, "
                        f"{result['services']:,} services")
    for col in ("alerts", "B/alert RSS", "B/alert traced", "alerts/s", "first / last decile",
                "gc s (full)", "incidents (largest)"):
        table.add_column(col, justify="right")
    for r in result["sizes"]:
        traced = r["traced_bytes_per_alert"]
        table.add_row(f"{int(r['alerts']):,}", f"{r['rss_bytes_per_alert']:,.0f}",
                      f"{traced:,.0f}" if traced is not None else "-",
                      f"{r['alerts_per_s']:,.0f}",
                      f"{r['deciles_alerts_per_s'][0]:,.0f} / "
                      f"{r['deciles_alerts_per_s'][-1]:,.0f}",
                      f"{r['gc_seconds']:.1f} ({r['gc_full_seconds']:.1f}, "
                      f"{int(r['gc_full_collections'])})",
                      f"{int(r['incidents']):,} ({int(r['largest_incident']):,})")
    Console(width=130).print(table)
    last = result["sizes"][-1]
    print("alerts/s per decile of the whole run: "
          + ", ".join(f"{d:,.0f}" for d in last["deciles_alerts_per_s"]))


def medians(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure of each size: its median over ``runs`` (fresh processes)."""
    out = dict(runs[0], repeats=len(runs), runs=runs)
    sizes = []
    for rows in zip(*(r["sizes"] for r in runs), strict=True):
        row: dict[str, Any] = {}
        for key, first in rows[0].items():
            if isinstance(first, list):
                row[key] = [statistics.median(v) for v in zip(*(r[key] for r in rows),
                                                               strict=True)]
            elif first is None:
                row[key] = None
            else:
                row[key] = statistics.median(r[key] for r in rows)
        sizes.append(row)
    out["sizes"] = sizes
    return out


def repeated(args: argparse.Namespace) -> dict[str, Any]:
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.repeats):
            path = Path(tmp) / f"run{i}.json"
            cmd = [sys.executable, __file__, "--alerts", args.alerts, "--services",
                   str(args.services), "--batch", str(args.batch), "--path", args.path,
                   "--gc", args.gc, "--json", str(path)]
            console.print(f"run {i + 1} of {args.repeats}")
            subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
            runs.append(orjson.loads(path.read_bytes()))
    return medians(runs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", default="10000,100000,300000,1000000",
                    help="sizes (active alerts) to report at, comma-separated")
    ap.add_argument("--services", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--path", choices=("core", "serve"), default="serve")
    ap.add_argument("--gc", choices=("default", "tuned"), default="tuned")
    ap.add_argument("--tracemalloc", action="store_true")
    ap.add_argument("--top", type=int, default=15)
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    sizes = sorted(int(s) for s in args.alerts.split(","))
    if args.repeats > 1 and args.tracemalloc:
        ap.error("--tracemalloc runs once")
    result = repeated(args) if args.repeats > 1 else run(args, sizes)
    report(result)
    if args.json:
        args.json.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
