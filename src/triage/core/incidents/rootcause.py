"""Probable root cause and suspect changes of an incident, explained.

**Root cause** is ranked over the incident's page-worthy evidence (``Evidence``: per service,
the onset of its first strong alert in this episode, its worst severity and the kinds of its
alerts), never over weak, flapped or earlier-episode alerts. Each candidate gets a score, a
sum of weighted features a responder can check (``RootWeights``):

* **explains** (``coverage``): the share of the other failing services that depend on it
  (directly or within ``depth`` hops), each counted by *temporal precedence*: a callee fails
  before its callers, so a dependency that started alerting after them explains them less
  (fully up to ``tolerance`` seconds late, then decaying). Over an undirected link there is no
  direction: time decides, and only a peer that started later is explained;
* **sink**: nothing it depends on failed before it (it is the bottom of the failing subgraph);
* **first**: it alerted first;
* **kind**: a crash or saturation on the service itself counts for it; alerts that only say
  "my dependency is failing" (upstream errors, timeouts) count against it, and *for* the
  dependency they point at (``pointed``);
* **severity** of its worst alert; **firing** now;
* **change**: a change record on it shortly before its onset.

**Silent roots.** A failing service may raise no alert at all. A service that raised none is
a candidate when two or more failing services call it directly, or one does and says its
dependency is failing; it carries a penalty (``silent``), so it wins only when it explains
clearly more than any alerting service does. Its event says ``inferred``.

The confidence is the softmax of the scores (temperature ``weights.temperature``), so it reads
as the probability the top candidate is right; the quality benchmark reports its reliability.

**Suspect changes**: change records on the root cause, or what it depends on or links to
within ``hops``, inside the lookback before the incident's first onset, scored by time
proximity and graph distance (a change on the root itself weighs most: decoys sit on its
neighbours).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from triage.core.changes import ChangeIndex
from triage.core.incidents.evidence import (
    CRITICAL,
    DOWNWARD_KINDS,
    ERROR,
    SELF_KINDS,
    UNKNOWN,
    WARNING,
)
from triage.core.timeutil import format_timestamp
from triage.core.topology import Topology


@dataclass(frozen=True, slots=True)
class Evidence:
    """One service's page-worthy evidence in an incident's current episode."""

    service: str
    onset: float  # when its first strong alert of the episode started firing
    level: int  # worst severity level (evidence.CRITICAL ... )
    kinds: frozenset[str]
    firing: bool = True


@dataclass(frozen=True, slots=True)
class RootCause:
    """The probable root-cause service, how sure triage is (0..1), and why."""

    service: str
    confidence: float
    reason: str
    candidates: tuple[str, ...] = ()  # the top 3 in rank order (the first is ``service``)
    inferred: bool = False  # the service raised no alert: inferred from its callers


@dataclass(frozen=True, slots=True)
class Suspect:
    """A change record suspected of causing the incident."""

    id: str
    service: str
    kind: str
    at: float
    score: float
    reason: str


@dataclass(frozen=True, slots=True)
class RootWeights:
    """Feature weights of the root-cause score (log-odds scale). Chosen on the tuning set
    (Online Boutique and generated graphs; BENCHMARKS.md)."""

    coverage: float = 3.0
    sink: float = 1.2
    first: float = 0.8
    self_kind: float = 1.0
    downward: float = -1.5
    pointed: float = 1.5
    severity: float = 0.5
    firing: float = 0.3
    change: float = 1.5
    silent: float = -1.5
    temperature: float = 1.0
    # the score of "a cause none of the candidates is" (a silent service nobody points at,
    # something outside the graph): it keeps the confidence of a lone candidate below 1
    unseen: float = 2.0
    depth: int = 4  # hops a failure climbs through callers
    tolerance: float = 30.0  # a dependency may start alerting this much after its callers
    decay: float = 60.0  # ... beyond that its precedence decays with this time constant
    change_tau: float = 1800.0  # change proximity: exp(-age / change_tau)
    change_lookback: float = 7200.0


_SEVERITY_FEATURE = {CRITICAL: 1.0, ERROR: 0.75, WARNING: 0.4, UNKNOWN: 0.4}


def _precedence(cause: float, effect: float, w: RootWeights) -> float:
    """1 when ``cause`` started no later than ``effect`` + tolerance, then decaying."""
    late = cause - effect - w.tolerance
    return 1.0 if late <= 0 else math.exp(-late / w.decay)


def rank_root_causes(
    *,
    evidence: Mapping[str, Evidence],
    topology: Topology,
    changes: ChangeIndex | None = None,
    weights: RootWeights | None = None,
) -> RootCause:
    """Rank the candidates for the root cause of one incident.

    >>> import networkx as nx
    >>> t = Topology(nx.DiGraph([("web", "cart"), ("checkout", "cart"), ("cart", "redis")]))
    >>> ev = {"web": Evidence("web", 40.0, 2, frozenset({"errors"})),
    ...       "checkout": Evidence("checkout", 30.0, 2, frozenset({"dependency"})),
    ...       "cart": Evidence("cart", 0.0, 0, frozenset({"crash"}))}
    >>> rc = rank_root_causes(evidence=ev, topology=t)
    >>> rc.service, rc.candidates[:2], rc.inferred
    ('cart', ('cart', 'web'), False)
    >>> silent = {"web": Evidence("web", 40.0, 2, frozenset({"errors"})),
    ...           "checkout": Evidence("checkout", 30.0, 2, frozenset({"dependency"}))}
    >>> rank_root_causes(evidence=silent, topology=t).service
    'cart'
    """
    w = weights or RootWeights()
    if not evidence:
        raise ValueError("no evidence to rank")
    ctx = _Context(evidence, topology, changes, w)
    candidates = _candidates(evidence, topology)
    if len(candidates) > _EXACT:
        # a big incident: score exactly only the candidates whose upper bound can still win
        bound = sorted(candidates, key=lambda c: (-ctx.bound(c), c))
        candidates = bound[:_EXACT]
    scored = [(ctx.score(c), c) for c in candidates]
    scored.sort(key=lambda x: (-x[0].total, x[1]))
    best, service = scored[0]
    top = max(s.total for s, _ in scored)
    z = sum(math.exp((s.total - top) / w.temperature) for s, _ in scored)
    z += math.exp((w.unseen - top) / w.temperature)
    confidence = round(1.0 / z, 2)
    top3 = tuple(c for _, c in scored[:3])
    reason = _reason(service, best, evidence, scored)
    return RootCause(service, confidence, reason, top3, inferred=service not in evidence)


def _candidates(evidence: Mapping[str, Evidence], topology: Topology) -> list[str]:
    """Alerting services, and silent services that failing callers point at."""
    out = list(evidence)
    callers_of: dict[str, int] = {}
    pointed: set[str] = set()
    for s, ev in evidence.items():
        down = bool(ev.kinds & DOWNWARD_KINDS)
        for callee in topology.callees(s):
            if callee in evidence:
                continue
            callers_of[callee] = callers_of.get(callee, 0) + 1
            if down:
                pointed.add(callee)
    out += sorted(c for c, n in callers_of.items() if n >= 2 or c in pointed)
    return out


@dataclass(slots=True)
class _Score:
    total: float
    explained: list[str]
    coverage: float
    sink: bool
    first: bool
    self_kind: bool
    downward: bool
    pointed: float
    change: tuple[float, str] | None


_EXACT = 24  # candidates scored exactly in a big incident (by an upper bound first)


class _Context:
    """What every candidate's score of one incident shares."""

    def __init__(self, evidence: Mapping[str, Evidence], topology: Topology,
                 changes: ChangeIndex | None, w: RootWeights) -> None:
        self.evidence = evidence
        self.topology = topology
        self.changes = changes
        self.w = w
        self.names = frozenset(evidence)
        self.first_onset = min(e.onset for e in evidence.values())
        self.links = topology.has_links

    def bound(self, c: str) -> float:
        """An upper bound of ``score(c).total``: full precedence, a sink, first."""
        w, t = self.w, self.topology
        up = t.dependents_within(c, w.depth) & self.names
        if self.links:
            up = up | (t.links_within(c, w.depth) & self.names)
        n = len(self.names) - (1 if c in self.names else 0)
        cov = len(up - {c}) / n if n else 1.0
        return (w.coverage * cov + w.sink + w.first + w.self_kind + w.pointed + w.severity
                + w.firing + w.change + (w.silent if c not in self.names else 0.0))

    def score(self, c: str) -> _Score:
        evidence, topology, w = self.evidence, self.topology, self.w
        ev = evidence.get(c)
        silent = ev is None
        names = self.names
        upstream = topology.dependents_within(c, w.depth) & names
        peers = (topology.links_within(c, w.depth) & names) if self.links else frozenset()
        n_others = len(names) - (0 if silent else 1)
        first_onset = self.first_onset
        # a silent service has no onset of its own: take it as just before what it explains
        onset = ev.onset if ev is not None else min(
            (evidence[s].onset for s in upstream), default=first_onset)
        credit = 0.0
        explained: list[str] = []
        for s in sorted(upstream):
            p = _precedence(onset, evidence[s].onset, w)
            if p > 0.0:
                credit += p
                explained.append(s)
        for s in sorted(peers - upstream):
            if onset <= evidence[s].onset:  # no direction: only a later peer is explained
                credit += 1.0
                explained.append(s)
        coverage = credit / n_others if n_others else 1.0
        # sink: nothing below it (or linked to it) failed before it
        below = 0.0
        for s in topology.descendants_within(c, w.depth) & names:
            below = max(below, _precedence(evidence[s].onset, onset, w))
        if below < 1.0:
            for s in peers - upstream:
                if evidence[s].onset < onset:
                    below = 1.0
                    break
        kinds = ev.kinds if ev is not None else frozenset()
        self_kind = bool(kinds & SELF_KINDS)
        downward = bool(kinds) and kinds <= DOWNWARD_KINDS
        callers = topology.callers(c) & names
        # callers saying "my dependency is failing" point here, unless this one says so too
        pointed = (sum(1 for s in callers if evidence[s].kinds & DOWNWARD_KINDS) / len(callers)
                   if callers and not downward else 0.0)
        change = _change_near(c, onset, self.changes, w)
        first = onset <= first_onset + w.tolerance
        total = (w.coverage * coverage + w.sink * (1.0 - below) + w.first * first
                 + w.self_kind * self_kind + w.downward * downward + w.pointed * pointed
                 + w.severity * (_SEVERITY_FEATURE.get(ev.level, 0.0) if ev is not None
                                 else 0.0)
                 + w.firing * (1.0 if ev is not None and ev.firing else 0.0)
                 + w.change * (change[0] if change else 0.0)
                 + w.silent * silent)
        return _Score(total, explained, coverage, below < 0.5, first, self_kind, downward,
                      pointed, change)


def _change_near(service: str, onset: float, changes: ChangeIndex | None, w: RootWeights
                 ) -> tuple[float, str] | None:
    if changes is None or not len(changes):
        return None
    best: tuple[float, str] | None = None
    for rec in changes.between(service, onset - w.change_lookback, onset):
        near = math.exp(-(onset - rec.at) / w.change_tau)
        if best is None or near > best[0]:
            best = (near, rec.id)
    return best


def _reason(service: str, s: _Score, evidence: Mapping[str, Evidence],
            scored: list[tuple[_Score, str]]) -> str:
    others = len(evidence) - (1 if service in evidence else 0)
    parts: list[str] = []
    if service not in evidence:
        parts.append(f"{service} raised no alert, but {len(s.explained)} failing service"
                     f"{'s' if len(s.explained) != 1 else ''} depend on it "
                     f"({_names(s.explained)})")
        if s.pointed:
            parts.append("their alerts say a dependency is failing")
    elif others == 0:
        parts.append(f"{service} is the only failing service")
    elif s.explained:
        n = len(s.explained)
        parts.append(f"{n} of {others} other failing service{'s' if others != 1 else ''} "
                     f"depend on {service} and started after it ({_names(s.explained)})")
    else:
        parts.append(f"no other failing service depends on {service}")
    ev = evidence.get(service)
    if ev is not None:
        when = (format_timestamp(ev.onset) or "")[11:19]
        parts.append(f"it alerted first, at {when}" if s.first else f"it alerted at {when}")
        if s.self_kind:
            parts.append(f"its own alerts say it failed ({', '.join(sorted(ev.kinds))})")
        if s.downward:
            parts.append("its alerts only say a dependency of it is failing")
    if s.sink and others:
        parts.append("nothing it depends on failed before it")
    if s.change is not None:
        parts.append(f"change {s.change[1]} on it shortly before")
    if len(scored) > 1:
        parts.append(f"next: {scored[1][1]}")
    return "; ".join(parts)


def _names(items: Iterable[str], limit: int = 5) -> str:
    names = sorted(items)
    return ", ".join(names[:limit]) + (", ..." if len(names) > limit else "")


def find_suspects(
    *,
    root: str,
    first_alert: float,
    changes: ChangeIndex,
    topology: Topology,
    lookback: float = 7200.0,
    hops: int = 1,
    limit: int = 3,
    distance_factor: float = 0.35,
) -> list[Suspect]:
    """Top ``limit`` change records on ``root`` or its dependencies and links before
    ``first_alert``.

    Score = ``exp(-age / (lookback / 4)) * distance_factor ** hops`` where age is the time from
    the change to the first alert: a change on the root itself weighs most; one on a
    neighbour must be much closer in time to outrank it.

    >>> from triage.core.changes import ChangeRecord
    >>> idx = ChangeIndex(); _ = idx.add(ChangeRecord("d1", "cart", "deploy", 1000.0))
    >>> [s.id for s in find_suspects(root="cart", first_alert=1300.0, changes=idx,
    ...                               topology=Topology())]
    ['d1']
    """
    if not len(changes):
        return []
    tau = lookback / 4.0
    near: dict[str, int] = dict(topology.dependencies_within(root, hops))
    if topology.has_links:
        for peer in topology.links_within(root, hops):
            near.setdefault(peer, 1)
    found: list[Suspect] = []
    for service, dist in near.items():
        for rec in changes.between(service, first_alert - lookback, first_alert):
            age = first_alert - rec.at
            score = round(math.exp(-age / tau) * distance_factor ** dist, 3)
            where = ("on the root-cause service" if dist == 0 else
                     f"on {service}, which {root} depends on"
                     + (f" ({dist} hops)" if dist > 1 else ""))
            if service in topology.linked(root):
                where = f"on {service}, linked to {root}"
            what = f"{rec.kind.replace('_', ' ')} {rec.id}"
            if rec.description:
                what += f" ({rec.description})"
            found.append(Suspect(rec.id, rec.service, rec.kind, rec.at, score,
                                 f"{what} {_ago(age)} before the first alert, {where}"))
    found.sort(key=lambda s: (-s.score, -s.at, s.id))
    return found[:limit]


def _ago(seconds: float) -> str:
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def find_root_cause(*, first_seen: Mapping[str, float], topology: Topology) -> RootCause:
    """Transitional: rank ``first_seen`` (service -> first alert) as unknown-kind evidence."""
    return rank_root_causes(evidence={s: Evidence(s, t, UNKNOWN, frozenset())
                                      for s, t in first_seen.items()}, topology=topology)
