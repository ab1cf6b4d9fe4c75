"""Scenarios: injected failures, background noise and change records on a topology.

A scenario is built from one ``random.Random(seed)`` in a fixed order, so a seed always gives
the same storm. What it injects (docs/simulation.md):

* **incidents**: a root-cause service fails, after a change record on it in most cases; the
  failure reaches the services that depend on it (each dependent with a probability that
  falls per hop, with a delay per hop, at most ``max_depth`` hops and ``max_affected``
  services); every affected service fires a few rule types across its instances; all resolve
  after mitigation. Incidents that overlap in time are placed at least ``separation`` hops
  apart, so each one is a separable failure.
* **noise**: known-noisy resource rules (values mostly below their tuned threshold), short
  latency spikes below any real incident, flapping alerts, alerts inside maintenance windows,
  alerts for services missing from the catalog, and the always-firing Watchdog.
* **changes**: the causal changes and a background of unrelated deploys, config changes and
  flag flips across the fleet.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from triage.core.topology import Topology
from triage.simulate.deliver import Series
from triage.simulate.rules import STORE_FAMILIES, Rule, RuleCatalog
from triage.simulate.truth import TrueIncident, true_priority

NOISE_KINDS = ("noisy_rule", "spike", "flapping", "maintenance", "uncatalogued", "watchdog")
# Tuned thresholds written for the noisy and spike rules (value units of the rule), and the
# false-positive rates the simulator gives them.
NOISY_THRESHOLD = 0.9
SPIKE_THRESHOLD = 1.0
NOISY_FP_AFTER = 0.1  # share of noisy-rule alerts whose value still crosses the threshold
SPIKE_FP_AFTER = 0.05
_HOP_P = (1.0, 0.75, 0.55, 0.35)  # probability that a dependent at hop k is affected
_STORE_HINTS = {"redis": "redis", "postgres": "postgresql", "pg": "postgresql",
                "mysql": "mysql", "mongo": "mongodb", "rabbit": "rabbitmq", "kafka": "kafka",
                "memcache": "memcached", "elastic": "elasticsearch", "cassandra": "cassandra",
                "store-": "", "-db": "postgresql"}
_LEGACY = ("legacy-billing-batch", "tmp-migration-job", "old-search-indexer",
           "reports-cron", "edge-cache-canary", "ml-feature-backfill", "vpn-gateway",
           "ldap-sync")
_CHANGE_TEXT = {"deploy": ("rollout {v}", "hotfix {v}", "canary promoted to 100% ({v})"),
                "config": ("connection pool size", "timeout tuning", "log level",
                           "cache TTL"),
                "feature_flag": ("flag new-checkout-flow", "flag async-writes",
                                 "flag recs-v2"),
                "infra": ("node pool upgrade", "kernel patch", "autoscaler limits")}


@dataclass(frozen=True, slots=True)
class ScenarioOptions:
    """Knobs of a scenario; ``None`` rates scale with the topology (see ``resolved``)."""

    minutes: float = 120.0
    seed: int = 0
    incidents_per_hour: float | None = None
    noise_per_hour: float | None = None
    changes_per_hour: float | None = None
    cause_change_rate: float = 0.75
    major_rate: float = 0.5
    max_depth: int = 3
    max_affected: int = 30
    separation: int = 3
    start: float = 1795773600.0  # 2026-11-27T10:00:00Z

    def rates(self, n_services: int) -> tuple[float, float, float]:
        """Incidents, noise alerts and change records per hour for a topology size."""
        inc = self.incidents_per_hour if self.incidents_per_hour is not None else (
            2.0 * max(1.0, math.sqrt(n_services / 50)))
        noise = self.noise_per_hour if self.noise_per_hour is not None else (
            12.0 + 0.15 * n_services)
        changes = self.changes_per_hour if self.changes_per_hour is not None else (
            max(6.0, 0.06 * n_services))
        return inc, noise, changes


@dataclass(slots=True)
class Scenario:
    """What one simulation injected, before delivery."""

    series: list[Series] = field(default_factory=list)
    incidents: list[TrueIncident] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    maintenance: list[dict[str, Any]] = field(default_factory=list)
    thresholds: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    start: float = 0.0
    end: float = 0.0
    uncatalogued: list[str] = field(default_factory=list)


class _Builder:
    def __init__(self, topology: Topology, rules: RuleCatalog, opts: ScenarioOptions) -> None:
        self.t = topology
        self.rules = rules
        self.o = opts
        self.rng = random.Random(opts.seed)
        self.services = sorted(topology.graph.nodes)
        self.undirected = topology.graph.to_undirected(as_view=True)
        rng = self.rng
        self.instances = {s: rng.randint(2, 4) for s in self.services}
        self.family = {s: self._store_family(s, i) for i, s in enumerate(self.services)}
        self.sc = Scenario(start=opts.start, end=opts.start + opts.minutes * 60)

    def _store_family(self, service: str, i: int) -> str | None:
        name = service.lower()
        for hint, family in _STORE_HINTS.items():
            if hint in name:
                return family or STORE_FAMILIES[i % len(STORE_FAMILIES)]
        return None

    # -- labels --------------------------------------------------------------------------

    def labels(self, rule: Rule, service: str, instance: int) -> dict[str, str]:
        return {"alertname": rule.name, "service": service, "severity": rule.severity,
                "instance": f"{service}-{instance}:9090", "job": service,
                "namespace": "prod"}

    def add(self, rule: Rule, service: str, instance: int, intervals: list[tuple[float, float]],
            truth: str, *, value: float | None = None, route: str = "default") -> Series:
        labels = self.labels(rule, service, instance)
        s = Series(labels, rule.annotations(labels, value), intervals, truth, route)
        self.sc.series.append(s)
        return s

    # -- maintenance ---------------------------------------------------------------------

    def maintenance(self) -> None:
        rng, sc = self.rng, self.sc
        count = max(1, round(self.o.minutes / 90))
        for k in range(count):
            service = rng.choice(self.services)
            begin = sc.start + rng.uniform(0.05, 0.8) * (sc.end - sc.start)
            end = begin + rng.uniform(20, 45) * 60
            sc.maintenance.append({"id": f"sim-maintenance-{k + 1}", "service": service,
                                   "starts_at": begin, "ends_at": end})
            for i in range(rng.randint(2, 4)):
                rule = self.rules.pick("app_failure", rng.randrange(1000))
                a = rng.uniform(begin + 60, end - 600)
                self.add(rule, service, i % self.instances[service],
                         [(a, min(end - 30, a + rng.uniform(120, 900)))], "noise:maintenance")

    def in_maintenance(self, service: str, a: float, b: float) -> bool:
        return any(m["service"] == service and a < m["ends_at"] and b > m["starts_at"]
                   for m in self.sc.maintenance)

    # -- incidents -----------------------------------------------------------------------

    def incidents(self, per_hour: float) -> None:
        rng, sc, o = self.rng, self.sc, self.o
        count = max(1, round(per_hour * o.minutes / 60))
        span = sc.end - sc.start
        last_start = sc.start + 0.9 * span
        starts = sorted(sc.start + rng.uniform(0.03, 0.85) * span for _ in range(count))
        # (from, to, affected services) of incidents placed so far; another one overlapping
        # in time must stay `separation` hops away, else it waits until that one is over
        busy: list[tuple[float, float, set[str]]] = []
        for t_planned in starts:
            duration = rng.uniform(8, 30) * 60
            t_fail = t_planned
            placed = False
            while not placed and t_fail <= last_start:
                later: list[float] = []
                for _ in range(25):
                    root = rng.choice(self.services)
                    if self.in_maintenance(root, t_fail - 900, t_fail + duration + 900):
                        continue
                    hops = self.propagate(root, t_fail, duration)
                    zone = self.zone(hops)
                    clash = [b for a, b, other in busy
                             if a < t_fail + duration + 1500 and t_fail - 900 < b
                             and zone & other]
                    if clash:
                        later.append(max(clash))
                        continue
                    n = len(sc.incidents) + 1
                    sc.incidents.append(self.incident(n, root, t_fail, duration, hops))
                    busy.append((t_fail - 900, t_fail + duration + 1500, set(hops)))
                    placed = True
                    break
                if not placed:
                    t_fail = (min(later) if later else t_fail) + 900 + rng.uniform(0, 300)

    def zone(self, services: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for s in services:
            out |= set(nx.single_source_shortest_path_length(self.undirected, s,
                                                             cutoff=self.o.separation))
        return out

    def propagate(self, root: str, t_fail: float, duration: float) -> dict[str, int]:
        rng = self.rng
        hops = {root: 0}
        frontier = [root]
        for hop in range(1, self.o.max_depth + 1):
            nxt: list[str] = []
            for s in frontier:
                for p in sorted(self.t.graph.predecessors(s)):
                    if p in hops or len(hops) >= self.o.max_affected:
                        continue
                    if rng.random() < _HOP_P[min(hop, len(_HOP_P) - 1)] and not \
                            self.in_maintenance(p, t_fail, t_fail + duration + 600):
                        hops[p] = hop
                        nxt.append(p)
            frontier = nxt
        return hops

    def incident(self, n: int, root: str, t_fail: float, duration: float,
                 hops: dict[str, int]) -> TrueIncident:
        rng, o = self.rng, self.o
        inc_id = f"sim-{n:03d}"
        major = rng.random() < o.major_rate
        t_mit = t_fail + duration
        severities: dict[str, str] = {}
        when: dict[str, float] = {root: t_fail}
        for s in sorted(hops, key=lambda x: (hops[x], x)):
            if s != root:
                # a dependent notices one hop after what it depends on noticed
                parents = [when[d] for d in self.t.graph.successors(s) if d in when]
                when[s] = min(parents, default=t_fail) + rng.uniform(20, 120)
            rules = self.failure_rules(s, root=s == root, major=major)
            worst = "info"
            for rule in rules:
                k = self.instances[s]
                chosen = sorted(rng.sample(range(k), rng.randint(max(1, k - 1), k)
                                           if s == root else rng.randint(1, k)))
                for i in chosen:
                    a = when[s] + rng.uniform(0, 90)
                    b = t_mit + (rng.uniform(0, 60) if s == root else rng.uniform(30, 180))
                    value = rng.uniform(1.5, 4.0) * SPIKE_THRESHOLD
                    self.add(rule, s, i, [(a, b)], inc_id, value=value)
                worst = _worse(worst, rule.severity)
            severities[s] = worst
        cause = None
        if rng.random() < o.cause_change_rate:
            kind = rng.choices(("deploy", "config", "feature_flag"), (0.7, 0.2, 0.1))[0]
            cause = self.change(root, t_fail - rng.uniform(60, 1200), kind)
        priority, reasons = true_priority(severities, self.t)
        return TrueIncident(inc_id, root, t_fail, t_mit, cause, priority, reasons,
                            "major" if major else "minor", severities, dict(hops))

    def failure_rules(self, service: str, *, root: bool, major: bool) -> list[Rule]:
        rng = self.rng
        family = self.family.get(service)
        if root and family is not None:
            pool = self.rules.store_rules(family)
        elif root:
            pool = self.rules.roles["app_failure"]
        else:
            pool = self.rules.roles["symptom"]
        if not major:
            pool = [r for r in pool if r.severity != "critical"] or pool
        want = rng.randint(2, 3) if root else rng.randint(1, 2)
        picked = rng.sample(pool, min(want, len(pool)))
        if major and root and not any(r.severity == "critical" for r in picked):
            crit = [r for r in pool if r.severity == "critical"]
            if crit:
                picked[0] = rng.choice(crit)
        return picked

    # -- noise ---------------------------------------------------------------------------

    def noise(self, per_hour: float) -> None:
        rng, sc = self.rng, self.sc
        count = round(per_hour * self.o.minutes / 60)
        kinds = ("noisy_rule", "spike", "flapping", "uncatalogued")
        weights = (0.45, 0.33, 0.08, 0.14)
        legacy = list(_LEGACY)
        sc.uncatalogued = legacy
        for _ in range(count):
            kind = rng.choices(kinds, weights)[0]
            a = sc.start + rng.uniform(0.0, 0.95) * (sc.end - sc.start)
            service = rng.choice(self.services)
            inst = rng.randrange(self.instances[service])
            if kind == "noisy_rule":
                rule = self.rules.pick("noisy", rng.randrange(1000))
                crosses = rng.random() < NOISY_FP_AFTER
                value = NOISY_THRESHOLD * (rng.uniform(1.0, 1.15) if crosses
                                           else rng.uniform(0.55, 0.97))
                self.add(rule, service, inst, [(a, a + rng.uniform(5, 40) * 60)],
                         "noise:noisy_rule", value=value)
            elif kind == "spike":
                rule = self.rules.pick("spike", rng.randrange(1000))
                crosses = rng.random() < SPIKE_FP_AFTER
                value = SPIKE_THRESHOLD * (rng.uniform(1.0, 1.3) if crosses
                                           else rng.uniform(0.4, 0.95))
                self.add(rule, service, inst, [(a, a + rng.uniform(40, 240))], "noise:spike",
                         value=value)
            elif kind == "flapping":
                rule = self.rules.pick("app_failure", rng.randrange(1000))
                intervals = []
                t = a
                stop = a + rng.uniform(10, 30) * 60
                while t < stop:
                    up = rng.uniform(20, 90)
                    intervals.append((t, t + up))
                    t += up + rng.uniform(20, 90)
                self.add(rule, service, inst, intervals, "noise:flapping", route="fast")
            else:
                rule = self.rules.pick(rng.choice(("app_failure", "noisy")), rng.randrange(1000))
                name = rng.choice(legacy)
                self.add(rule, name, rng.randrange(2), [(a, a + rng.uniform(3, 30) * 60)],
                         "noise:uncatalogued")
        watchdog = Rule("Watchdog", "none", "kube-prometheus",
                        "An alert that should always be firing (dead man's switch)")
        labels = {"alertname": "Watchdog", "severity": "none", "namespace": "monitoring"}
        sc.series.append(Series(labels, watchdog.annotations(labels, None),
                                [(sc.start - 3600, sc.end + 7200)], "noise:watchdog"))
        sc.thresholds = {r.name: (NOISY_THRESHOLD, 0.8, NOISY_FP_AFTER)
                         for r in self.rules.roles["noisy"]}
        sc.thresholds.update({r.name: (SPIKE_THRESHOLD, 0.7, SPIKE_FP_AFTER)
                              for r in self.rules.roles["spike"]})

    # -- changes -------------------------------------------------------------------------

    def change(self, service: str, at: float, kind: str) -> str:
        rng = self.rng
        text = rng.choice(_CHANGE_TEXT[kind]).format(
            v=f"v{rng.randint(1, 4)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}")
        record = {"id": "", "service": service, "kind": kind, "at": at, "description": text,
                  "author": rng.choice(("ci-bot", "ana", "ben", "chen", "dana"))}
        self.sc.changes.append(record)
        return str(id(record))  # replaced by the real id once all changes are numbered

    def background_changes(self, per_hour: float) -> None:
        rng, sc = self.rng, self.sc
        begin = sc.start - 7200
        count = round(per_hour * (sc.end - begin) / 3600)
        for _ in range(count):
            kind = rng.choices(("deploy", "config", "feature_flag", "infra"),
                               (0.6, 0.2, 0.1, 0.1))[0]
            self.change(rng.choice(self.services), rng.uniform(begin, sc.end), kind)

    def number_changes(self) -> None:
        # ids do not reveal which change is causal: numbered in time order after the fact
        key = {str(id(c)): c for c in self.sc.changes}
        self.sc.changes.sort(key=lambda c: (c["at"], c["service"]))
        for i, c in enumerate(self.sc.changes):
            c["id"] = f"chg-{i + 1:05d}"
        for inc in self.sc.incidents:
            if inc.cause_change is not None:
                inc.cause_change = key[inc.cause_change]["id"]


def _worse(a: str, b: str) -> str:
    order = ("critical", "error", "warning", "info", "none")
    return a if order.index(a if a in order else "none") <= order.index(
        b if b in order else "none") else b


def build_scenario(topology: Topology, rules: RuleCatalog, opts: ScenarioOptions) -> Scenario:
    """Inject incidents, noise and changes on ``topology``; deterministic for ``opts.seed``.

    >>> from triage.enrich.synthetic import layered_topology
    >>> sc = build_scenario(layered_topology(100, seed=1), RuleCatalog.builtin(),
    ...                     ScenarioOptions(minutes=60, seed=3))
    >>> len(sc.incidents) > 0 and all(i.root_cause in i.services for i in sc.incidents)
    True
    """
    if len(topology) == 0:
        raise ValueError("the topology has no services")
    b = _Builder(topology, rules, opts)
    inc_rate, noise_rate, change_rate = opts.rates(len(topology))
    b.maintenance()
    b.incidents(inc_rate)
    b.noise(noise_rate)
    b.background_changes(change_rate)
    b.number_changes()
    return b.sc
