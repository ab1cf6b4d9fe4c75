"""Scenarios: injected failures, background noise and change records on a topology.

A scenario is built from one ``random.Random(seed)`` in a fixed order, so a seed always gives
the same storm. It is meant to be hard in the ways the world is (docs/simulation.md):

* **incidents**: a root-cause service fails, after a change record on it in most cases; the
  failure climbs to the services that depend on it, 1 to 4 hops of callers with 30 s to 5 min
  per hop; every affected service fires a few rule types across its instances; all resolve
  after mitigation. In 20% of those with a caller reached, the root raises no alert at all
  (a *silent root*). About 30% of incidents are one of a pair started within 3 minutes of
  each other, half of the pairs on roots that call one same service; the two never reach a
  same service. Decoy changes land on the root's neighbours.
* **noise**: continuous background noise (info and warning resource trends firing for hours)
  on a quarter of the services, known-noisy resource rules, short latency spikes, flapping
  probes, alerts inside maintenance windows, alerts for services missing from the catalog,
  and the always-firing Watchdog.
* **changes**: the causal changes, the decoys and a background of unrelated deploys, config
  changes and flag flips across the fleet.
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

NOISE_KINDS = ("noisy_rule", "spike", "flapping", "background", "maintenance", "uncatalogued",
               "watchdog")
# Tuned thresholds written for the noisy and spike rules (value units of the rule), and the
# false-positive rates the simulator gives them.
NOISY_THRESHOLD = 0.9
SPIKE_THRESHOLD = 1.0
NOISY_FP_AFTER = 0.1  # share of noisy-rule alerts whose value still crosses the threshold
SPIKE_FP_AFTER = 0.05
# A caller counts as reached only if it notices this long before the mitigation: its symptom
# alerts then fire for more than a group interval (5 min), so they are surely delivered.
LAST_NOTICE = 300.0
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
    """Knobs of a scenario; ``None`` rates scale with the topology (see ``rates``)."""

    minutes: float = 120.0
    seed: int = 0
    incidents_per_hour: float | None = None
    noise_per_hour: float | None = None
    changes_per_hour: float | None = None
    cause_change_rate: float = 0.75
    major_rate: float = 0.5
    max_depth: int = 4  # symptoms climb 1 to 4 hops of callers
    hop_delay: tuple[float, float] = (30.0, 300.0)  # seconds per hop, drawn per service
    hop_reach: tuple[float, ...] = (1.0, 0.8, 0.6, 0.45, 0.3)  # P(a caller at hop 1, 2, ...)
    max_affected: int = 30
    separation: int = 1  # incidents overlapping by chance stay this far apart
    concurrent_rate: float = 0.3  # share of incidents in a pair started within 3 minutes
    shared_dependency_rate: float = 0.5  # ... of those pairs, on roots calling one service
    silent_root_rate: float = 0.2  # of incidents with a caller reached: the root is silent
    decoy_rate: float = 0.7  # change records on the root's neighbours before it fails
    background_share: float = 0.25  # services with long-running background noise
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


@dataclass(slots=True)
class _Spread:
    """How one failure spreads: hops from the root, when each service noticed, and the
    dependency it noticed through."""

    root: str
    hops: dict[str, int] = field(default_factory=dict)
    when: dict[str, float] = field(default_factory=dict)
    via: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.hops.setdefault(self.root, 0)


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
        self.root_weights = [1.0 + 3.0 * min(1, topology.graph.in_degree(s))
                             for s in self.services]
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
            truth: str, *, value: float | None = None, route: str = "default",
            extra: dict[str, str] | None = None) -> Series:
        labels = self.labels(rule, service, instance)
        if extra:
            labels.update(extra)
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
        # (from, to, affected services) of incidents placed so far; one overlapping another
        # by chance stays `separation` hops away, else it waits until that one is over
        busy: list[tuple[float, float, set[str]]] = []
        # a pair takes two planned starts: pairing this share of the starts puts about
        # `concurrent_rate` of the incidents in pairs
        rate = min(1.0, max(0.0, o.concurrent_rate))
        p_pair = rate / (2.0 - rate)
        k = 0
        while k < len(starts):
            pair = k + 1 < len(starts) and rng.random() < p_pair
            first = self.place(starts[k], busy, last_start)
            k += 1
            if first is None or not pair:
                continue
            second = self.place_beside(first, busy)
            if second is not None:
                first.paired_with, second.paired_with = second.id, first.id
                first.shared_dependency = second.shared_dependency
                k += 1  # it took the next planned start's place
        for inc in sc.incidents:
            inc.concurrent_with = [x.id for x in sc.incidents if x is not inc
                                   and x.started_at < inc.mitigated_at
                                   and inc.started_at < x.mitigated_at]

    def place(self, t_planned: float, busy: list[tuple[float, float, set[str]]],
              last_start: float) -> TrueIncident | None:
        rng = self.rng
        duration = rng.uniform(8, 30) * 60
        t_fail = t_planned
        while t_fail <= last_start:
            later: list[float] = []
            for _ in range(25):
                # most failures are noticed upstream: roots with callers are likelier
                root = rng.choices(self.services, self.root_weights)[0]
                if self.in_maintenance(root, t_fail - 900, t_fail + duration + 900):
                    continue
                spread = self.propagate(root, t_fail, t_fail + duration, set())
                zone = self.zone(spread.hops)
                clash = [b for a, b, other in busy
                         if a < t_fail + duration + 600 and t_fail - 300 < b and zone & other]
                if clash:
                    later.append(max(clash))
                    continue
                return self.commit(t_fail, duration, spread, busy, silent_ok=True)
            t_fail = (min(later) if later else t_fail) + 300 + rng.uniform(0, 300)
        return None

    def place_beside(self, first: TrueIncident, busy: list[tuple[float, float, set[str]]]
                     ) -> TrueIncident | None:
        """A second failure starting within 3 minutes of ``first``: with
        ``shared_dependency_rate`` on a root that calls a service ``first``'s root also
        calls (which itself does not fail), else half the time on a root 2 or 3 hops from it,
        half anywhere.

        Truth stays unambiguous: the second root is none of the services failing then, and
        neither root is within ``max_depth`` calls of the other (neither could have reached
        the other); the second failure skips every service failing then (the first's
        included), so no service is reached by both."""
        rng, graph, o = self.rng, self.t.graph, self.o
        t_fail = first.started_at + rng.uniform(0, 180)
        duration = rng.uniform(8, 30) * 60
        taken = set(first.hops)
        for a, b, other in busy:
            if a < t_fail + duration + 600 and t_fail - 300 < b:
                taken |= other
        r1 = first.root_cause
        related = (set(nx.single_source_shortest_path_length(graph, r1, cutoff=o.max_depth))
                   | set(nx.single_source_shortest_path_length(graph.reverse(copy=False), r1,
                                                               cutoff=o.max_depth)))
        pool: list[tuple[str, str | None]] = []
        if rng.random() < o.shared_dependency_rate:
            pool = [(c, dep) for dep in sorted(graph.successors(r1)) if dep not in taken
                    for c in sorted(graph.predecessors(dep))]
        elif rng.random() < 0.5:
            dist = nx.single_source_shortest_path_length(self.undirected, r1, cutoff=3)
            pool = [(x, None) for x in sorted(dist) if dist[x] >= 2]
        pool = [(x, dep) for x, dep in pool if x not in taken and x not in related]
        if not pool:
            pool = [(x, None) for x in self.services if x not in taken and x not in related]
        for _ in range(25):
            if not pool:
                return None
            root, dep = rng.choice(pool)
            if self.in_maintenance(root, t_fail - 900, t_fail + duration + 900):
                continue
            spread = self.propagate(root, t_fail, t_fail + duration, taken)
            if dep is not None and dep in spread.hops:
                continue  # a cycle: the shared dependency would fail too
            inc = self.commit(t_fail, duration, spread, busy, silent_ok=not first.silent_root)
            inc.shared_dependency = dep
            return inc
        return None

    def commit(self, t_fail: float, duration: float, spread: _Spread,
               busy: list[tuple[float, float, set[str]]], *, silent_ok: bool) -> TrueIncident:
        n = len(self.sc.incidents) + 1
        # only a root with a caller reached can be silent: someone has to notice it
        silent = (silent_ok and len(spread.hops) > 1
                  and self.rng.random() < self.o.silent_root_rate)
        inc = self.incident(n, t_fail, duration, spread, silent=silent)
        self.sc.incidents.append(inc)
        busy.append((t_fail - 300, t_fail + duration + 600, set(spread.hops)))
        return inc

    def zone(self, services: Iterable[str]) -> set[str]:
        out: set[str] = set()
        for s in services:
            out |= set(nx.single_source_shortest_path_length(self.undirected, s,
                                                             cutoff=self.o.separation))
        return out

    def propagate(self, root: str, t_fail: float, t_mit: float, taken: set[str]) -> _Spread:
        """The services a failure of ``root`` reaches, hop by hop up the callers, and when
        each notices: 30 s to 5 min after the dependency it noticed through. ``taken``: the
        services a concurrent failure holds, skipped so truth stays unambiguous; a caller
        that would notice within ``LAST_NOTICE`` of the mitigation never does."""
        rng, o = self.rng, self.o
        lo, hi = o.hop_delay
        sp = _Spread(root)
        sp.when[root] = t_fail
        frontier = [root]
        for hop in range(1, o.max_depth + 1):
            p_hop = o.hop_reach[min(hop, len(o.hop_reach)) - 1] if o.hop_reach else 1.0
            nxt: list[str] = []
            for s in sorted(frontier, key=lambda x: (sp.when[x], x)):
                for p in sorted(self.t.graph.predecessors(s)):
                    if p in sp.hops or p in taken or len(sp.hops) >= o.max_affected:
                        continue
                    if rng.random() >= p_hop:
                        continue
                    at = sp.when[s] + rng.uniform(lo, hi)
                    if at > t_mit - LAST_NOTICE or self.in_maintenance(p, t_fail, t_mit + 600):
                        continue
                    sp.hops[p], sp.when[p], sp.via[p] = hop, at, s
                    nxt.append(p)
            frontier = nxt
        return sp

    def incident(self, n: int, t_fail: float, duration: float, spread: _Spread, *,
                 silent: bool = False) -> TrueIncident:
        rng, o = self.rng, self.o
        inc_id = f"sim-{n:03d}"
        root, hops = spread.root, spread.hops
        major = rng.random() < o.major_rate
        t_mit = t_fail + duration
        severities: dict[str, str] = {}
        for s in sorted(hops, key=lambda x: (hops[x], x)):
            rules = self.failure_rules(s, root=s == root, major=major)
            if s == root and silent:
                severities[s] = "none"  # it failed, but no rule of it fired
                continue
            worst = "info"
            first = True
            for rule in rules:
                k = self.instances[s]
                chosen = sorted(rng.sample(range(k), rng.randint(max(1, k - 1), k)
                                           if s == root else rng.randint(1, k)))
                for i in chosen:
                    # its first alert fires when it notices, the others within 90 s
                    a = spread.when[s] + (0.0 if first else rng.uniform(0, 90))
                    first = False
                    b = t_mit + (rng.uniform(0, 60) if s == root else rng.uniform(30, 180))
                    value = rng.uniform(1.5, 4.0) * SPIKE_THRESHOLD
                    # a symptom names the dependency it noticed through, as a mesh's
                    # per-upstream metrics do
                    self.add(rule, s, i, [(a, b)], inc_id, value=value,
                             extra={"upstream": spread.via[s]} if s in spread.via else None)
                worst = _worse(worst, rule.severity)
            severities[s] = worst
        cause = None
        if rng.random() < o.cause_change_rate:
            kind = rng.choices(("deploy", "config", "feature_flag"), (0.7, 0.2, 0.1))[0]
            cause = self.change(root, t_fail - rng.uniform(60, 1200), kind)
        decoys: list[str] = []
        if rng.random() < o.decoy_rate:
            graph = self.t.graph
            near = sorted(set(graph.predecessors(root)) | set(graph.successors(root)))
            on_path = [x for x in near if x in hops]
            for _ in range(rng.randint(1, 2)):
                pool = on_path if on_path and rng.random() < 0.5 else near
                if not pool:
                    break
                kind = rng.choices(("deploy", "config", "feature_flag"), (0.7, 0.2, 0.1))[0]
                decoys.append(self.change(rng.choice(pool), t_fail - rng.uniform(60, 1800),
                                          kind))
        priority, reasons = true_priority(severities, self.t)
        inc = TrueIncident(inc_id, root, t_fail, t_mit, cause, priority, reasons,
                           "major" if major else "minor", severities, dict(hops))
        inc.silent_root = silent
        inc.decoy_changes = decoys
        return inc

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
                rule = self.rules.pick("probe", rng.randrange(1000))
                intervals = []
                t = a
                stop = a + rng.uniform(10, 30) * 60
                while t < stop:
                    up = rng.uniform(20, 90)
                    intervals.append((t, t + up))
                    t += up + rng.uniform(20, 90)
                # a black-box probe of one of its endpoints, not the instance's own metrics
                self.add(rule, service, inst, intervals, "noise:flapping", route="fast",
                         extra={"job": "blackbox",
                                "instance": f"https://{service}-{inst}.prod.svc/healthz"})
            else:
                rule = self.rules.pick(rng.choice(("app_failure", "noisy")), rng.randrange(1000))
                name = rng.choice(legacy)
                self.add(rule, name, rng.randrange(2), [(a, a + rng.uniform(3, 30) * 60)],
                         "noise:uncatalogued")
        self.background()
        watchdog = Rule("Watchdog", "none", "kube-prometheus",
                        "An alert that should always be firing (dead man's switch)")
        labels = {"alertname": "Watchdog", "severity": "none", "namespace": "monitoring"}
        sc.series.append(Series(labels, watchdog.annotations(labels, None),
                                [(sc.start - 3600, sc.end + 7200)], "noise:watchdog"))
        sc.thresholds = {r.name: (NOISY_THRESHOLD, 0.8, NOISY_FP_AFTER)
                         for r in self.rules.roles["noisy"]}
        sc.thresholds.update({r.name: (SPIKE_THRESHOLD, 0.7, SPIKE_FP_AFTER)
                              for r in self.rules.roles["spike"]})

    def background(self) -> None:
        """Resource trends firing for hours on a share of the services, 1 or 2 each, info or
        warning: about half one stretch of 1 to 6 hours (some from before the storm to after
        it), half on and off in 5 to 60 minute stretches; every one fires during the storm."""
        rng, sc = self.rng, self.sc
        pool = self.rules.roles.get("background") or []
        if not pool or self.o.background_share <= 0:
            return
        n = max(1, math.ceil(self.o.background_share * len(self.services)))
        for service in sorted(rng.sample(self.services, min(n, len(self.services)))):
            for rule in rng.sample(pool, min(len(pool), rng.randint(1, 2))):
                if rng.random() < 0.4:
                    rule = Rule(rule.name, "info", rule.family, rule.summary,
                                rule.description, rule.expr)
                inst = rng.randrange(self.instances[service])
                if rng.random() < 0.5:
                    length = rng.uniform(1.0, 6.0) * 3600
                    a = rng.uniform(sc.start - length + 600, sc.end - 600)
                    intervals = [(a, a + length)]
                else:
                    intervals = []
                    t = sc.start + rng.uniform(-0.5, 0.5) * min(3600.0, sc.end - sc.start)
                    while t < sc.end:
                        up = rng.uniform(5, 60) * 60
                        if not intervals:  # the first stretch reaches into the storm
                            up = max(up, sc.start - t + 60)
                        intervals.append((t, t + up))
                        t += up + rng.uniform(10, 90) * 60
                self.add(rule, service, inst, intervals, "noise:background")

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
            inc.decoy_changes = [key[d]["id"] for d in inc.decoy_changes]


def _worse(a: str, b: str) -> str:
    order = ("critical", "error", "warning", "info", "none")
    return a if order.index(a if a in order else "none") <= order.index(
        b if b in order else "none") else b


def build_scenario(topology: Topology, rules: RuleCatalog, opts: ScenarioOptions) -> Scenario:
    """Inject incidents, noise and changes on ``topology``; deterministic for ``opts.seed``.

    >>> from triage.simulate.graphs import layered_topology
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
