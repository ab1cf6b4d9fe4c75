"""Reference groupers to run beside triage's incident engine on the same stage-1 output.

* ``BaselineGrouper``, "an afternoon's baseline": *a window from the incident's first alert,
  1 hop, deepest-earliest root, no merges*. A firing alert joins the oldest open incident
  whose first alert is at most ``window`` old and that has a service within ``hops`` hops of
  the alert's service (links count); otherwise it opens one. An incident pages
  (``incident.created``) once ``page_delay`` has passed since its first alert if one of its
  alerts is still firing, so a blip that resolves in time never pages. It resolves (closes)
  once none of its alerts fires; a later occurrence opens or joins another incident. The
  root cause is the deepest service (no dependency of it in the incident), the earliest
  first; the suspects are the latest changes to the root or its dependencies before the
  first alert. It does not classify: every incident is P3.
* ``OracleGrouper``: groups alerts by their *true* incident (the simulator's truth), pages
  each true incident once at its first alert and never pages noise. Its root-cause rule is a
  parameter (``root=``), so a ranker can be measured on perfect groups.

Both consume stage-1 outcomes (``Triaged``; other outcomes and ``flapping`` changes are
ignored, a ``stable`` change counts as the state it settled in) with ``observe(outcomes,
now)`` and end with ``flush(now)``; both return incident events in the published shape
(``schemas/incident-event.schema.json``), an ``incident.updated`` whenever an incident's
fingerprints change, so ``triage.simulate.score`` sees their final grouping. Pure and
deterministic: time is the ``now`` passed in.

>>> import networkx as nx
>>> from triage.core.changes import ChangeIndex
>>> from triage.core.services import ServiceMapper
>>> from triage.core.topology import Topology
>>> from triage.core.types import Alert, Triaged
>>> def fire(fp, service, at):
...     a = Alert({"alertname": "Down", "service": service}, {}, "firing", at, None, at,
...               "test", fingerprint=fp)
...     return Triaged(a, "firing", 1, 1, at, at)
>>> g = BaselineGrouper(topology=Topology(nx.DiGraph([("web", "db")])),
...                     mapper=ServiceMapper(("service",)), changes=ChangeIndex())
>>> g.observe([fire("00000000000000a1", "web", 0.0)], 0.0)
[]
>>> g.observe([fire("00000000000000b2", "db", 20.0)], 20.0)
[]
>>> [(e["type"], e["incident"]["root_cause"]["service"]) for e in g.flush(40.0)]
[('incident.created', 'db')]
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from triage.core.changes import ChangeIndex, ChangeRecord
from triage.core.services import ServiceMapper
from triage.core.timeutil import format_timestamp
from triage.core.topology import Topology
from triage.core.types import Outcome, Triaged

__all__ = ["BaselineGrouper", "Member", "OracleGrouper", "RootFn", "RootGuess",
           "deepest_earliest_root", "rank_deepest_earliest", "recent_changes"]

Event = dict[str, Any]
PRIORITY = "P3"  # neither grouper classifies
CONFIDENCE = 0.5  # nor does it claim to know how sure it is (the schema wants a number)


@dataclass(slots=True)
class Member:
    """One alert in an incident, as a root-cause rule sees it."""

    fingerprint: str
    service: str
    name: str
    severity: str
    labels: Mapping[str, str]
    first_at: float  # when it first fired in this incident
    onset: float  # when its latest occurrence began
    firing: bool = True


@dataclass(frozen=True, slots=True)
class RootGuess:
    """A root-cause decision: the service, a confidence in [0, 1], the top 3 candidates in
    rank order (the first is ``service``) and a reason a responder can check."""

    service: str
    confidence: float
    candidates: tuple[str, ...]
    reason: str


class RootFn(Protocol):
    """A root-cause rule: the incident's alerts in, a ``RootGuess`` out."""

    def __call__(self, *, members: Sequence[Member], topology: Topology,
                 changes: ChangeIndex) -> RootGuess: ...


def rank_deepest_earliest(first_seen: Mapping[str, float], topology: Topology) -> list[str]:
    """Services ranked deepest first (none of its dependencies among ``first_seen``), then by
    first alert, then by name.

    >>> import networkx as nx
    >>> t = Topology(nx.DiGraph([("web", "cart"), ("cart", "redis"), ("web", "ads")]))
    >>> rank_deepest_earliest({"web": 0.0, "cart": 5.0, "ads": 9.0, "redis": 30.0}, t)
    ['ads', 'redis', 'web', 'cart']
    >>> rank_deepest_earliest({"web": 0.0, "cart": 5.0, "redis": 30.0}, t)
    ['redis', 'web', 'cart']
    """
    services = set(first_seen)

    def key(s: str) -> tuple[bool, float, str]:
        return (bool(topology.callees(s) & services), first_seen[s], s)

    return sorted(services, key=key)


def deepest_earliest_root(*, members: Sequence[Member], topology: Topology,
                          changes: ChangeIndex) -> RootGuess:
    """The baseline's rule: the deepest alerting service, the earliest first among equals."""
    first: dict[str, float] = {}
    for m in members:
        first[m.service] = min(first.get(m.service, m.first_at), m.first_at)
    ranked = rank_deepest_earliest(first, topology)
    root = ranked[0]
    deepest = [s for s in ranked if not topology.callees(s) & first.keys()]
    reason = (f"{root}: none of its dependencies in the incident alerts"
              + (f"; first to alert of {len(deepest)} such services" if len(deepest) > 1
                 else "")
              if root in deepest else f"{root}: alerted first")
    return RootGuess(root, CONFIDENCE, tuple(ranked[:3]), reason)


def recent_changes(*, root: str, first_alert: float, changes: ChangeIndex,
                   topology: Topology, lookback: float, limit: int = 3
                   ) -> list[ChangeRecord]:
    """Changes to ``root`` or its direct dependencies in the ``lookback`` seconds before
    ``first_alert``, the most recent first.

    >>> import networkx as nx
    >>> idx = ChangeIndex()
    >>> for r in (ChangeRecord("c1", "db", "deploy", 10.0), ChangeRecord("c2", "disk", "infra",
    ...           50.0), ChangeRecord("c3", "web", "config", 60.0)):
    ...     _ = idx.add(r)
    >>> t = Topology(nx.DiGraph([("web", "db"), ("db", "disk")]))
    >>> [c.id for c in recent_changes(root="db", first_alert=100.0, changes=idx, topology=t,
    ...                               lookback=3600.0)]
    ['c2', 'c1']
    """
    found: list[ChangeRecord] = []
    for s in sorted({root} | topology.callees(root)):
        found.extend(changes.between(s, first_alert - lookback, first_alert))
    found.sort(key=lambda c: (-c.at, c.id))
    return found[:limit]


@dataclass(slots=True)
class _Incident:
    id: str
    opened_at: float
    members: dict[str, Member] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)  # service -> first alert
    status: str = "open"
    paged: bool = False
    seq: int = 0
    last_seen: float = 0.0
    resolved_at: float | None = None
    emitted: tuple[Any, ...] | None = None  # what the last event said

    @property
    def firing(self) -> int:
        return sum(1 for m in self.members.values() if m.firing)

    def add(self, fp: str, service: str, labels: Mapping[str, str], now: float) -> None:
        m = self.members.get(fp)
        if m is None:
            self.members[fp] = Member(fp, service, labels.get("alertname", ""),
                                      labels.get("severity", ""), labels, now, now)
        elif not m.firing:
            m.firing, m.onset = True, now
        self.first_seen.setdefault(service, now)
        self.last_seen = max(self.last_seen, now)


def _states(outcomes: Iterable[Outcome]) -> Iterable[tuple[Triaged, bool]]:
    """The alert state changes that matter: (outcome, firing?)."""
    for o in outcomes:
        if not isinstance(o, Triaged) or o.change == "flapping":
            continue
        if o.alert.status == "firing":
            yield o, True
        elif o.alert.status == "resolved":
            yield o, False


class _Grouper:
    """What both groupers share: service mapping, decisions and events."""

    source = "baseline"

    def __init__(self, *, topology: Topology, mapper: ServiceMapper, changes: ChangeIndex,
                 change_lookback: float, root: RootFn) -> None:
        self.topology = topology
        self.mapper = mapper
        self.changes = changes
        self.change_lookback = change_lookback
        self.root = root
        self.incidents: dict[str, _Incident] = {}
        self.counts: Counter[str] = Counter()

    def service_of(self, labels: Mapping[str, str]) -> str:
        """The alert's service; unmapped alerts get ``alert:<alertname>``."""
        return self.mapper.service_of(labels) or "alert:" + labels.get("alertname", "?")

    def add_change(self, record: ChangeRecord) -> None:
        """Index a change record that arrived with the alerts."""
        self.changes.add(record)

    def _emit(self, inc: _Incident, now: float) -> list[Event]:
        """The event for what changed since the last one (none if nothing did)."""
        guess = self.root(members=list(inc.members.values()), topology=self.topology,
                          changes=self.changes)
        suspects = recent_changes(root=guess.service, first_alert=inc.opened_at,
                                  changes=self.changes, topology=self.topology,
                                  lookback=self.change_lookback)
        fps = tuple(sorted(inc.members))
        state = (inc.status, tuple(sorted(inc.first_seen)), guess.service,
                 tuple(s.id for s in suspects), fps)
        if state == inc.emitted:
            return []
        if inc.emitted is None:
            kind, changed = "incident.created", []
            self.counts["pages"] += 1
        else:
            names = ("status", "services", "root_cause", "suspect_changes", "fingerprints")
            changed = [n for n, a, b in zip(names, inc.emitted, state, strict=True) if a != b]
            kind = "incident.resolved" if inc.status == "resolved" else "incident.updated"
        inc.emitted = state
        inc.seq += 1
        self.counts[kind] += 1
        return [self._render(inc, kind, now, changed, guess, suspects)]

    def _render(self, inc: _Incident, kind: str, now: float, changed: list[str],
                guess: RootGuess, suspects: list[ChangeRecord]) -> Event:
        ts = format_timestamp
        info = self.topology.info(guess.service)
        teams = sorted({t for s in inc.first_seen
                        if (t := self.topology.info(s).team) is not None})
        lookback = self.change_lookback
        return {
            "schema_version": 1,
            "event_id": f"{inc.id}:{inc.seq}",
            "type": kind,
            "at": ts(now),
            "page": kind == "incident.created",
            "changed": changed,
            "incident": {
                "id": inc.id,
                "sequence": inc.seq,
                "status": inc.status,
                "priority": PRIORITY,
                "priority_reasons": [f"{self.source}: no priority classification"],
                "impact": None,
                "urgency": None,
                "users_affected": 0,
                "risk": {"users": 0, "services": []},
                "services": sorted(inc.first_seen),
                "active_services": sorted({m.service for m in inc.members.values()
                                           if m.firing}),
                "teams": teams,
                "root_cause": {"service": guess.service,
                               "confidence": min(1.0, max(0.0, float(guess.confidence))),
                               "reason": guess.reason, "runbook": info.runbook,
                               "candidates": list(guess.candidates[:3]),
                               "inferred": guess.service not in inc.first_seen},
                "alert_count": len(inc.members),
                "firing_count": inc.firing,
                "fingerprints": sorted(inc.members),
                "first_seen": ts(inc.opened_at),
                "last_seen": ts(inc.last_seen),
                "resolved_at": ts(inc.resolved_at),
                "owner": {"team": info.team, "person": None,
                          "reason": (f"team {info.team} owns {guess.service}, the root cause"
                                     if info.team else
                                     f"{guess.service} has no team in the service catalog")},
                "war_room": {"open": False, "reason": f"{self.source}: no war rooms",
                             "at": None},
                "suspect_changes": [
                    {"id": c.id, "service": c.service, "kind": c.kind, "at": ts(c.at),
                     "score": round(max(0.0, 1.0 - (inc.opened_at - c.at) / lookback), 3)
                     if lookback > 0 else 1.0,
                     "reason": f"{c.kind} on {c.service} "
                               f"{(inc.opened_at - c.at) / 60:.0f} min before the first alert"}
                    for c in suspects],
                "merged_into": None,
                "split_from": None,
                "split_into": [],
                "reopened": 0,
                "reactivated": 0,
                "pages": 1,
            },
        }


class BaselineGrouper(_Grouper):
    """A window from the incident's first alert, ``hops`` hops, deepest-earliest root, no
    merges (see the module docstring)."""

    source = "baseline"

    def __init__(self, *, topology: Topology, mapper: ServiceMapper, changes: ChangeIndex,
                 window: float = 900.0, hops: int = 1, page_delay: float = 30.0,
                 change_lookback: float = 7200.0) -> None:
        super().__init__(topology=topology, mapper=mapper, changes=changes,
                         change_lookback=change_lookback, root=deepest_earliest_root)
        self.window = window
        self.hops = hops
        self.page_delay = page_delay
        self._of: dict[str, str] = {}  # fingerprint -> its open incident
        self._by_service: dict[str, dict[str, None]] = {}  # service -> open incidents
        self._waiting: dict[str, None] = {}  # open, not yet paged, oldest first
        self._next = 0

    def observe(self, outcomes: Iterable[Outcome], now: float) -> list[Event]:
        """Apply stage-1 outcomes at event time ``now``; returns the events."""
        events = self._pages_due(now)
        touched: dict[str, _Incident] = {}
        for o, firing in _states(outcomes):
            inc = self._fire(o, now) if firing else self._resolve(o, now)
            if inc is not None:
                touched[inc.id] = inc
        for inc in touched.values():
            events.extend(self._settle(inc, now))
        events.extend(self._pages_due(now))
        return events

    def flush(self, now: float) -> list[Event]:
        """End of input: page the incidents still inside their page delay that have an alert
        firing, each dated when its delay ends (a replayed file stops; its alerts did not
        resolve)."""
        events: list[Event] = []
        for inc_id in list(self._waiting):
            inc = self.incidents[inc_id]
            events.extend(self._page(inc, max(now, inc.opened_at + self.page_delay)))
        return events

    def _fire(self, o: Triaged, now: float) -> _Incident:
        alert = o.alert
        fp = alert.fingerprint
        inc_id = self._of.get(fp)
        if inc_id is not None:  # still in its open incident: a new occurrence there
            known = self.incidents[inc_id]
            known.add(fp, known.members[fp].service, alert.labels, now)
            return known
        service = self.service_of(alert.labels)
        found = self._join(service, now)
        if found is None:
            self._next += 1
            inc = _Incident(f"baseline-{self._next:06d}", now, last_seen=now)
            self.incidents[inc.id] = inc
            self._waiting[inc.id] = None
            self.counts["opened"] += 1
        else:
            inc = found
            self.counts["joined"] += 1
        if service not in inc.first_seen:
            self._by_service.setdefault(service, {})[inc.id] = None
        inc.add(fp, service, alert.labels, now)
        self._of[fp] = inc.id
        return inc

    def _join(self, service: str, now: float) -> _Incident | None:
        """The oldest open incident opened within the window with a service nearby."""
        found: _Incident | None = None
        for near in self.topology.within(service, self.hops):
            for inc_id in self._by_service.get(near, ()):
                inc = self.incidents[inc_id]
                if now - inc.opened_at > self.window:
                    continue
                if found is None or (inc.opened_at, inc.id) < (found.opened_at, found.id):
                    found = inc
        return found

    def _resolve(self, o: Triaged, now: float) -> _Incident | None:
        fp = o.alert.fingerprint
        inc_id = self._of.get(fp)
        if inc_id is None:
            return None
        inc = self.incidents[inc_id]
        inc.members[fp].firing = False
        inc.last_seen = max(inc.last_seen, now)
        return inc

    def _settle(self, inc: _Incident, now: float) -> list[Event]:
        """After a batch: close an incident with nothing firing; report what changed."""
        if inc.status == "open" and not inc.firing:
            self._close(inc, now)
            if not inc.paged:  # resolved inside its page delay: a blip, never paged
                self.counts["not_paged"] += 1
                del self.incidents[inc.id]
                return []
        return self._emit(inc, now) if inc.paged else []

    def _close(self, inc: _Incident, now: float) -> None:
        inc.status = "resolved"
        inc.resolved_at = now
        self._waiting.pop(inc.id, None)
        for fp in inc.members:
            if self._of.get(fp) == inc.id:
                del self._of[fp]
        for s in inc.first_seen:
            ids = self._by_service.get(s)
            if ids is not None:
                ids.pop(inc.id, None)
                if not ids:
                    del self._by_service[s]

    def _pages_due(self, now: float) -> list[Event]:
        events: list[Event] = []
        for inc_id in list(self._waiting):
            inc = self.incidents[inc_id]
            if inc.opened_at + self.page_delay > now:
                break  # opened in time order: the rest are younger
            events.extend(self._page(inc, now))
        return events

    def _page(self, inc: _Incident, now: float) -> list[Event]:
        self._waiting.pop(inc.id, None)
        if not inc.firing:  # cannot happen (closed at the end of its batch), kept for safety
            return []
        inc.paged = True
        return self._emit(inc, now)


class OracleGrouper(_Grouper):
    """Alerts grouped by their true incident (``incident_of``: fingerprint -> true incident
    id, or None for noise). Each true incident pages once, at its first alert; noise and
    unknown alerts never page. ``root`` names the root cause (the baseline's rule unless
    given)."""

    source = "oracle"

    def __init__(self, *, incident_of: Mapping[str, str | None], topology: Topology,
                 mapper: ServiceMapper, changes: ChangeIndex,
                 root: RootFn = deepest_earliest_root,
                 change_lookback: float = 7200.0) -> None:
        super().__init__(topology=topology, mapper=mapper, changes=changes,
                         change_lookback=change_lookback, root=root)
        self.incident_of = incident_of

    def observe(self, outcomes: Iterable[Outcome], now: float) -> list[Event]:
        """Apply stage-1 outcomes at event time ``now``; returns the events."""
        touched: dict[str, _Incident] = {}
        for o, firing in _states(outcomes):
            alert = o.alert
            fp = alert.fingerprint
            true_id = self.incident_of.get(fp)
            if not true_id:
                self.counts["noise_ignored"] += 1
                continue
            inc_id = f"oracle-{true_id}"
            inc = self.incidents.get(inc_id)
            if firing:
                if inc is None:
                    inc = _Incident(inc_id, now, last_seen=now)
                    self.incidents[inc_id] = inc
                known = inc.members.get(fp)
                inc.add(fp, known.service if known else self.service_of(alert.labels),
                        alert.labels, now)
                if inc.status == "resolved":
                    inc.status, inc.resolved_at = "open", None
            elif inc is not None and fp in inc.members:
                inc.members[fp].firing = False
                inc.last_seen = max(inc.last_seen, now)
            else:
                continue
            touched[inc.id] = inc
        events: list[Event] = []
        for inc in touched.values():
            if inc.status == "open" and not inc.firing:
                inc.status, inc.resolved_at = "resolved", now
            inc.paged = True  # at its first alert, even one that resolved at once
            events.extend(self._emit(inc, now))
        return events

    def flush(self, now: float) -> list[Event]:
        """Nothing waits: every true incident paged at its first alert."""
        return []
