"""Incident-stage benchmark: correlation cost per alert against the number of open incidents.

    python benchmarks/bench_incidents.py [--services 1000] [--alerts 5000] [--repeats 5]

On a generated 1,000-service microservice graph (``triage.simulate.graphs``), fill the
engine with 0, 100, 1,000 and 10,000 open incidents, then time ``IncidentEngine.observe`` for
a stream of new alerts on random services: joining (or opening) incidents, root cause,
suspect changes, priority, owner and war room included. The cost per alert must stay flat as
open incidents grow, because candidates come from indexes by service over the alert's
neighbourhood, and incidents too old to join leave the anchor index.

A service firing in an open incident takes that service's new alerts, so the open incidents
live on services of their own: a second generated graph of as many services, beside the
first (one topology, two components), each still firing, one window apart in time.
"""

from __future__ import annotations

import argparse
import gc
import platform
import random
import statistics
import time

from triage.core.changes import ChangeIndex, ChangeRecord
from triage.core.incidents import CorrelationPolicy, IncidentEngine
from triage.core.services import ServiceMapper
from triage.core.topology import Topology
from triage.core.types import Alert, Triaged
from triage.simulate.graphs import layered_topology


def alert(service: str, i: int, severity: str = "") -> Triaged:
    a = Alert({"alertname": "HighErrorRate", "service": service, "instance": str(i),
               "severity": severity or ("critical", "warning", "error")[i % 3]}, {}, "firing",
              0.0, None, 0.0, "alertmanager-webhook", fingerprint=f"{i:016x}")
    return Triaged(a, "firing", 1, 1, 0.0, 0.0)


def build(n_open: int, n_services: int, seed: int) -> tuple[IncidentEngine, float, list[str]]:
    main = layered_topology(n_services, seed=seed)
    old = layered_topology(max(n_open, 50), seed=seed + 1)
    graph = main.graph.copy()
    graph.add_edges_from((f"old-{a}", f"old-{b}") for a, b in old.graph.edges)
    graph.add_nodes_from(f"old-{n}" for n in old.graph.nodes)
    infos = {**main.services, **{f"old-{k}": v for k, v in old.services.items()}}
    topology = Topology(graph, infos)
    services = sorted(main.services)
    rng = random.Random(seed)
    changes = ChangeIndex()
    for i in range(2000):
        changes.add(ChangeRecord(f"c{i}", rng.choice(services), "deploy", rng.random() * 1e6))
    policy = CorrelationPolicy()
    engine = IncidentEngine(topology=topology, mapper=ServiceMapper(("service",), {}),
                            changes=changes, policy=policy)
    now = 0.0
    for i, svc in enumerate(rng.sample(sorted(old.graph.nodes), n_open)):
        now += policy.window + 1  # each beyond the window of the last: its own incident
        engine.observe([alert(f"old-{svc}", 10_000_000 + i, "critical")], now)
    now += policy.window + policy.lone_critical_delay + 1
    engine.tick(now)
    open_now = sum(1 for inc in engine.incidents.values() if inc.status == "open")
    assert open_now == n_open, (open_now, n_open)
    return engine, now, services


def measure(n_open: int, args: argparse.Namespace) -> float:
    times = []
    for r in range(args.repeats):
        engine, now, services = build(n_open, args.services, seed=args.seed)
        rng = random.Random(args.seed + r)
        batch = [alert(rng.choice(services), i) for i in range(args.alerts)]
        gc.collect()
        start = time.perf_counter()
        for i, a in enumerate(batch):
            engine.observe([a], now + i * 0.2)  # a storm: 5 alerts per second
        times.append((time.perf_counter() - start) / args.alerts)
    return statistics.median(times) * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--services", type=int, default=1000)
    ap.add_argument("--alerts", type=int, default=5000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--open", type=int, nargs="*", default=[0, 100, 1000, 10_000])
    args = ap.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, Python "
          f"{platform.python_version()}; {args.services} services, {args.alerts} new alerts "
          f"per run, median of {args.repeats}")
    base = None
    for n_open in args.open:
        us = measure(n_open, args)
        base = base or us
        print(f"  {n_open:>6,} open incidents: {us:8.1f} us per alert  "
              f"({us / base:.2f}x the cost with {args.open[0]:,})")


if __name__ == "__main__":
    main()
