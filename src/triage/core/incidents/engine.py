"""Stage 2: turn stage-1 alert state changes into incidents, and incidents into events.

The engine composes the decisions, each in its own module:

* ``evidence``: what one alert says (its kind, its severity, whether it is page-worthy);
* ``correlate``: which incident it joins, when incidents merge and when they split;
* ``rootcause``: the probable root cause (possibly silent) and the suspect changes;
* ``priority``: P1-P4 from observed impact, with the blast radius as risk;
* ``warroom``: whether everyone gets in one room;
* ``event``: the published record.

The life of an incident: a page-worthy alert that joins nothing opens one. It pages
(``incident.created``) ``page_delay`` after its first alert if page-worthy evidence is still
firing and not flapping; an incident whose only evidence is one alert below critical pages once
that alert has fired ``lone_delay`` without a break, so a lone warning blip never pages, and a
lone alert of a service the topology does not know waits for a second one. It resolves once no
page-worthy alert has fired for ``quiet_period`` (weak alerts never keep it alive). If one of
its alerts fires again within ``recurrence_window`` of the resolution, the incident reopens in
a new *episode* (``incident.updated``, ``reopened``) instead of paging again; it pages again
only if its priority escalates above what was paged (an event with ``page: true``).

Events are emitted on material changes only (services, root cause, priority, owner, war room,
suspects, status, merges, splits), not for every repeat, and carry deterministic ids
(incident id + sequence), so consumers can drop duplicates. Decisions on a growing incident
are re-made at most every ``update_interval`` of event time.

Correlation cost per alert does not grow with the number of open incidents: candidates come
from indexes of open incidents by anchor service, by services with firing evidence and by
possible silent dependencies, probed over the alert's service and its neighbours; incidents
too old to join leave the anchor index the first time a search passes them.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from triage.core.changes import ChangeIndex, ChangeRecord
from triage.core.incidents.correlate import (
    SAME,
    SIBLING,
    Candidate,
    choose,
    groups,
    relation,
)
from triage.core.incidents.event import SCHEMA_VERSION, Event, changed_fields, render_event
from triage.core.incidents.evidence import (
    CRITICAL,
    SELF_KINDS,
    SEVERITY_NAMES,
    UNKNOWN,
    KindRules,
    page_worthy,
    severity_level,
)
from triage.core.incidents.model import (
    AlertInfo,
    Incident,
    alert_row,
    alert_row_key,
    is_alert_row,
)
from triage.core.incidents.priority import (
    Classification,
    PriorityPolicy,
    classify_priority,
    keep_highest,
    rank,
)
from triage.core.incidents.rootcause import RootWeights, find_suspects, rank_root_causes
from triage.core.incidents.warroom import WarRoomPolicy, decide_war_room, next_check
from triage.core.oncall import OnCallSchedule
from triage.core.services import ServiceMapper
from triage.core.timeutil import format_timestamp
from triage.core.topology import Topology
from triage.core.types import Outcome, Triaged

__all__ = ["SCHEMA_VERSION", "CorrelationPolicy", "Event", "Incident", "IncidentEngine",
           "render_event"]


@dataclass(frozen=True, slots=True)
class CorrelationPolicy:
    """How alerts group into incidents, when they page and when they end (durations in
    seconds). The defaults were chosen on the tuning set only (BENCHMARKS.md)."""

    window: float = 600.0  # a new service joins within this of the incident's latest onset
    horizon: float = 1800.0  # ... and of its episode's first onset
    hops: int = 1
    # Like Alertmanager's group_wait: a new incident pages only if, this long after its first
    # alert, page-worthy evidence is still firing and not flapping. Blips never page.
    page_delay: float = 30.0
    # An incident whose only evidence is one alert pages once that alert has fired this long
    # without a break (a critical one: lone_critical_delay), not after page_delay.
    lone_delay: float = 600.0
    lone_critical_delay: float = 120.0
    # Alerts of services a configured topology does not know page on their own (else they
    # are held, counted and reported; with no topology at all, everything pages).
    page_unknown_services: bool = False
    # Decisions on a growing incident (root cause, priority, suspects, owner) are re-made at
    # most this often in event time; the next event carries everything that changed. Keeps a
    # storm that touches hundreds of services from recomputing them for every alert.
    update_interval: float = 10.0
    merge: bool = True
    split: bool = True
    attach_weak: bool = True  # weak alerts join as context where their service has evidence
    quiet_period: float = 600.0
    recurrence_window: float = 3600.0  # an alert firing again this soon reopens its incident
    change_lookback: float = 7200.0
    change_hops: int = 1
    max_suspects: int = 3
    retention: float = 3600.0  # resolved incidents are forgotten this long after
    kinds: KindRules = field(default_factory=KindRules)
    weights: RootWeights = field(default_factory=RootWeights)


@dataclass(slots=True)
class _Keys:
    """Where an open incident is indexed."""

    anchors: set[str] = field(default_factory=set)
    siblings: set[str] = field(default_factory=set)


def _service_id(service: str, now: float) -> str:
    """The id of an incident opened by ``service`` at ``now``."""
    return "inc-" + hashlib.sha1(f"{service}|{now:.3f}".encode()).hexdigest()[:12]


class IncidentEngine:
    """Correlates stage-1 outcomes into incidents.

    ``observe(outcomes, now)`` and ``tick(now)`` return incident events (dicts following
    ``schemas/incident-event.schema.json``). Deterministic: the same outcomes at the same
    times give the same events.
    """

    def __init__(
        self,
        *,
        topology: Topology | None = None,
        mapper: ServiceMapper | None = None,
        changes: ChangeIndex | None = None,
        policy: CorrelationPolicy | None = None,
        priority: PriorityPolicy | None = None,
        war_room: WarRoomPolicy | None = None,
        oncall: OnCallSchedule | None = None,
    ) -> None:
        self.topology = topology if topology is not None else Topology()  # has a length
        self.mapper = mapper or ServiceMapper(("service", "app", "job"), {})
        self.changes = changes if changes is not None else ChangeIndex()
        self.policy = policy or CorrelationPolicy()
        self.priority_policy = priority or PriorityPolicy()
        self.war_room_policy = war_room or WarRoomPolicy()
        self.oncall = oncall
        self.incidents: dict[str, Incident] = {}
        self.alert_incident: dict[str, str] = {}
        self.anchors: dict[str, set[str]] = {}  # service -> open incidents anchored there
        self.active: dict[str, set[str]] = {}  # service -> incidents where it fires evidence
        self.siblings: dict[str, set[str]] = {}  # possible silent dependency -> incidents
        self._keys: dict[str, _Keys] = {}
        self._timers: list[tuple[float, str]] = []
        self._timer_set: set[tuple[float, str]] = set()  # one entry per (time, incident)
        self.counts: Counter[str] = Counter()
        self.unknown_services: Counter[str] = Counter()
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        # An incident's alerts are persisted as rows of their own, so a commit costs the
        # alerts that changed, not every alert of a storm's incident: incident id -> the
        # fingerprints changed since ``take_changes``, and the rows to delete. Kept only
        # once the engine is saved or loaded (``_tracking``): an engine nobody saves (serve
        # or run without --state) would otherwise remember every alert it ever saw.
        self._dirty_alerts: dict[str, set[str]] = {}
        self._gone_alerts: set[str] = set()
        self._tracking = False
        self._pending: list[Incident] = []  # merged or split away, to announce

    def spawn(self, changes: ChangeIndex | None = None) -> IncidentEngine:
        """An engine configured like this one (topology, service mapping, policies, on-call),
        with incidents of its own, and ``changes`` as its change index (default: this
        one's, shared): one per partition of a partitioned runtime. Every setting is
        carried over here, beside ``__init__``."""
        return IncidentEngine(topology=self.topology, mapper=self.mapper,
                              changes=self.changes if changes is None else changes,
                              policy=self.policy, priority=self.priority_policy,
                              war_room=self.war_room_policy, oncall=self.oncall)

    # -- input ---------------------------------------------------------------------------

    def observe(self, outcomes: Iterable[Outcome], now: float) -> list[Event]:
        """Apply stage-1 outcomes (only ``Triaged`` ones matter) at event time ``now``."""
        events = self.tick(now)
        touched: dict[str, None] = {}
        for outcome in outcomes:
            if isinstance(outcome, Triaged):
                inc_id = self._apply(outcome, now)
                if inc_id is not None:
                    touched[inc_id] = None
        for inc_id in touched:
            inc = self.incidents.get(inc_id)
            if inc is not None and inc.status != "merged":
                events.extend(self._refresh(inc, now))
        return events

    def add_change(self, record: ChangeRecord) -> None:
        """Index a change record (config file, input line or the ``changes`` topic)."""
        self.changes.add(record)

    def flush_pages(self, now: float) -> list[Event]:
        """End of input: decide now the pages still waiting for their page delay, as if the
        delay had passed with nothing new (a replayed file stops; its alerts did not resolve).
        Each event is dated when its delay ends."""
        events: list[Event] = []
        waiting = [i for i in self.incidents.values() if not i.emitted and i.status == "open"]
        for inc in sorted(waiting, key=lambda i: (i.opened_at, i.id)):
            if inc.id in self.incidents:
                events.extend(self._refresh(inc, max(now, self._page_due(inc))))
        return events

    def tick(self, now: float) -> list[Event]:
        """Run the timers due by ``now``: paging, quiet-period resolution, war-room rules,
        expiry."""
        events: list[Event] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            entry = heapq.heappop(timers)
            self._timer_set.discard(entry)
            inc_id = entry[1]
            inc = self.incidents.get(inc_id)
            if inc is not None:
                events.extend(self._on_timer(inc, now))
        return events

    # -- correlation ---------------------------------------------------------------------

    def service_of(self, labels: dict[str, str]) -> str:
        """The service an alert belongs to; unmapped alerts get ``alert:<alertname>``."""
        service = self.mapper.service_of(labels)
        if service is None:
            self.counts["unmapped_alerts"] += 1
            return "alert:" + labels.get("alertname", "?")
        if service not in self.topology:
            self.unknown_services[service] += 1
        return service

    def _apply(self, outcome: Triaged, now: float) -> str | None:
        alert = outcome.alert
        fp = alert.fingerprint
        inc = self._incident_of(fp)
        if outcome.change == "flapping":
            self.counts["flapping_held"] += 1
            if inc is not None and inc.status == "open" and fp in inc.alerts:
                self._flapped(inc, inc.alerts[fp], now)
                self._alert_changed(inc.id, fp)
                return inc.id
            return None  # a flapping alert never opens an incident
        if alert.status == "resolved":
            if inc is None or inc.status != "open" or fp not in inc.alerts:
                return None
            self._resolved(inc, inc.alerts[fp], now)
            self._alert_changed(inc.id, fp)
            return inc.id
        # firing: a new occurrence, or a flapping alert that settled firing
        labels = alert.labels
        name = alert.name
        service = self.service_of(labels)
        kind = self.policy.kinds.kind_of(name, labels)
        level = severity_level(alert.severity)
        strong = page_worthy(kind, level)
        known = inc.alerts.get(fp) if inc is not None else None
        if known is not None and known.flapped:
            strong = False  # once flapped, never evidence again in this incident
        if inc is not None and inc.status == "open":
            target = inc
        elif not strong:
            return self._attach_weak(fp, service, name, level, kind, now)
        else:
            recurring = (inc if inc is not None and inc.status == "resolved"
                         and inc.resolved_at is not None
                         and now - inc.resolved_at <= self.policy.recurrence_window else None)
            # a live failure it belongs to comes first; else a recurrence reopens
            target = self._join_or_open(fp, service, kind, level, now, recurring)
            self._fire(target, fp, service, name, level, kind, strong, now)
            self._name_for_ties(target, now)
            return target.id
        self._fire(target, fp, service, name, level, kind, strong, now)
        return target.id

    def _incident_of(self, fp: str) -> Incident | None:
        inc_id = self.alert_incident.get(fp)
        inc = self.incidents.get(inc_id) if inc_id else None
        seen = 0
        while inc is not None and inc.status == "merged" and inc.merged_into and seen < 8:
            inc = self.incidents.get(inc.merged_into)
            seen += 1
        return inc

    def _fire(self, inc: Incident, fp: str, service: str, name: str, level: int, kind: str,
              strong: bool, now: float) -> None:
        info = inc.alerts.get(fp)
        had_evidence = service in self.active and inc.id in self.active[service]
        new = info is None
        if info is None:
            info = AlertInfo(service, name, level, kind, strong, now)
            inc.alerts[fp] = info
        elif info.status != "firing":
            info.onset = now  # a new occurrence
        info.status = "firing"
        info.flapping = False
        info.last_seen = now
        inc.last_seen = now
        inc.touch()
        self.alert_incident[fp] = inc.id
        self._dirty.add(inc.id)
        self._alert_changed(inc.id, fp)
        if service not in inc.first_seen:
            inc.first_seen[service] = now
            inc.needs_decision = True
        if not info.strong:
            return
        if not had_evidence and service in inc.onsets and inc.status == "open":
            inc.reactivated += 1  # a new failure on a service that had recovered: say so
        inc.last_onset = max(inc.last_onset, now)
        inc.quiet_since = None
        self.active.setdefault(service, set()).add(inc.id)
        if service not in inc.onsets:
            inc.onsets[service] = now
            inc.touch()
            inc.note_kind(service, info.kind)
            inc.needs_decision = True
            self._reindex(inc)
        elif new:
            inc.needs_decision = True  # another alert on it: its kinds or severity may change
            inc.note_kind(service, info.kind)
        elif inc.id not in self._keys or service not in self._keys[inc.id].anchors:
            self._reindex(inc)  # pruned from the anchor index while quiet: back in it

    def _attach_weak(self, fp: str, service: str, name: str, level: int, kind: str,
                     now: float) -> str | None:
        ids = self.active.get(service)
        if not self.policy.attach_weak or not ids:
            self.counts["weak_held"] += 1
            return None
        target = max((self.incidents[i] for i in ids),
                     key=lambda i: (i.last_onset, i.opened_at, i.id))
        self._fire(target, fp, service, name, level, kind, False, now)
        self.counts["weak_attached"] += 1
        return target.id

    def _join_or_open(self, fp: str, service: str, kind: str, level: int, now: float,
                      recurring: Incident | None = None) -> Incident:
        found = self._search(service, kind, now)
        if not found:
            if recurring is not None:
                return self._reopen(recurring, now)
            return self._open(service, fp, now)
        explains = kind in SELF_KINDS or level == CRITICAL
        items = list(found.values())
        sib_via = {via for c, via in items if c.relation == SIBLING}
        if len(sib_via) > 1:  # siblings through different dependencies are not one failure
            items = [(c, via) for c, via in items if c.relation != SIBLING]
            if not items:
                items = [next((c, via) for c, via in found.values() if c.relation == SIBLING)]
        target, merges = choose((c for c, _ in items),
                                explains=explains or bool(sib_via),
                                merge=self.policy.merge)
        if merges:
            bound = [self.incidents[c.incident] for c in (target, *merges)]
            # the survivor is a paged one when there is one, so nothing pages twice
            survivor = min(bound, key=lambda i: (not i.emitted, i.opened_at, i.id))
            for other in bound:
                if other is not survivor:
                    self._merge(other, into=survivor, now=now)
            return survivor
        return self.incidents[target.incident]

    def _search(self, service: str, kind: str, now: float
                ) -> dict[str, tuple[Candidate, str]]:
        """Open incidents the alert relates to, with the relation (and through what)."""
        topology, hops = self.topology, self.policy.hops
        found: dict[str, tuple[Candidate, str]] = {}

        def offer(inc: Incident, rel: int, via: str) -> None:
            had = found.get(inc.id)
            if had is None or rel < had[0].relation:
                found[inc.id] = (Candidate(inc.id, rel, inc.last_onset, inc.opened_at), via)

        for inc_id in self.active.get(service, ()):
            offer(self.incidents[inc_id], SAME, service)
        near = topology.within(service, hops) if hops > 1 else (
            service, *sorted(topology.neighbours(service)))
        for other in near:
            ids = self.anchors.get(other)
            if not ids:
                continue
            for inc_id in list(ids):
                inc = self.incidents[inc_id]
                if not self._time_near(inc, now):
                    # event time only moves forward: it will not be joinable through here
                    # again unless it gets a new onset, which re-indexes it
                    ids.discard(inc_id)
                    self._keys[inc_id].anchors.discard(other)
                    continue
                rel = relation(topology, service, other, hops)
                if rel is not None:
                    offer(inc, rel, other)
            if not ids:
                del self.anchors[other]
        if kind not in SELF_KINDS:
            for callee in sorted(topology.callees(service)):
                for inc_id in self.siblings.get(callee, ()):
                    inc = self.incidents[inc_id]
                    if self._time_near(inc, now):
                        offer(inc, SIBLING, callee)
        return found

    def _time_near(self, inc: Incident, now: float) -> bool:
        p = self.policy
        return (inc.status == "open" and now - inc.last_onset <= p.window
                and now - inc.episode <= p.horizon)

    def _open(self, service: str, fp: str, now: float) -> Incident:
        # Named by its service and time, not by which of the alerts that opened it at that
        # time came first: a partitioned runtime cannot know the input order of two alerts
        # stamped alike that arrived on different partitions (docs/streaming.md). When
        # several services open it at one time, the least of them names it
        # (``_name_for_ties``).
        inc_id = _service_id(service, now)
        if inc_id in self.incidents:  # opened twice for a service at one time
            inc_id = "inc-" + hashlib.sha1(f"{service}|{fp}|{now:.3f}".encode()).hexdigest()[:12]
        inc = Incident(inc_id, now)
        self.incidents[inc.id] = inc
        self._keys[inc.id] = _Keys()
        self.counts["incidents"] += 1
        return inc

    def _reopen(self, inc: Incident, now: float) -> Incident:
        inc.status = "open"
        inc.resolved_at = None
        inc.quiet_since = None
        inc.reopened += 1
        inc.episode = now
        inc.onsets = {}
        inc.last_onset = now
        inc.touch()
        inc.forget_kinds()
        inc.needs_decision = True
        self._keys.setdefault(inc.id, _Keys())
        self.counts["reopened"] += 1
        return inc

    def _name_for_ties(self, inc: Incident, now: float) -> None:
        """Strong alerts of several services opened ``inc`` at one time: name it by the
        least of them, whichever came first. ``triage run`` reads them in the file's order,
        a partitioned runtime in the order its partitions happened to deliver them (alerts
        stamped alike on different partitions), and both must give the incident one id.
        Only before its first event: an id once published never changes."""
        if inc.seq or inc.opened_at != now or len(inc.onsets) < 2:
            return
        at_open = sorted(s for s, t in inc.onsets.items() if t == now)
        if len(at_open) < 2:
            return
        if inc.id not in {_service_id(s, now) for s in at_open}:
            return  # named otherwise (a second incident of a service at one time): kept
        new_id = _service_id(at_open[0], now)
        if new_id != inc.id and new_id not in self.incidents:
            self._rename(inc, new_id)

    def _rename(self, inc: Incident, new_id: str) -> None:
        """Give ``inc`` (no event published yet) the id ``new_id``, everywhere it is
        indexed; a saved record under the old id is deleted with the next changes."""
        old = inc.id
        del self.incidents[old]
        inc.id = new_id
        self.incidents[new_id] = inc
        if old in self._keys:
            self._keys[new_id] = self._keys.pop(old)
        for fp in inc.alerts:
            if self.alert_incident.get(fp) == old:
                self.alert_incident[fp] = new_id
        for index in (self.anchors, self.active, self.siblings):
            for ids in index.values():
                if old in ids:
                    ids.discard(old)
                    ids.add(new_id)
        if any(i == old for _, i in self._timer_set):
            self._timers = [(t, new_id if i == old else i) for t, i in self._timers]
            heapq.heapify(self._timers)
            self._timer_set = set(self._timers)
        for other in self.incidents.values():
            if other.merged_into == old:
                other.merged_into = new_id
            if other.split_from == old:
                other.split_from = new_id
            if old in other.split_into:
                other.split_into = [new_id if i == old else i for i in other.split_into]
        self._dirty.discard(old)
        self._dirty.add(new_id)
        self._dirty_alerts.pop(old, None)
        if self._tracking:
            self._removed.add(old)
            self._gone_alerts.update(alert_row_key(old, fp) for fp in inc.alerts)
            self._dirty_alerts[new_id] = set(inc.alerts)
        self.counts["renamed_for_ties"] += 1

    def _merge(self, absorbed: Incident, *, into: Incident, now: float) -> None:
        self._unindex(absorbed)
        for fp, info in absorbed.alerts.items():
            into.alerts.setdefault(fp, info)
            self.alert_incident[fp] = into.id
        if self._tracking:
            self._dirty_alerts.setdefault(into.id, set()).update(absorbed.alerts)
        for service, t in absorbed.first_seen.items():
            into.first_seen[service] = min(t, into.first_seen.get(service, t))
        for service, t in absorbed.onsets.items():
            into.onsets[service] = min(t, into.onsets.get(service, t))
        for service in {i.service for i in absorbed.alerts.values()
                        if i.strong and i.status == "firing"}:
            self.active.setdefault(service, set()).add(into.id)
        into.episode = min(into.episode, absorbed.episode)
        into.last_onset = max(into.last_onset, absorbed.last_onset)
        into.opened_at = min(into.opened_at, absorbed.opened_at)
        into.last_seen = max(into.last_seen, absorbed.last_seen)
        into.quiet_since = None if into.strong_firing else into.quiet_since
        if absorbed.emitted and rank(absorbed.priority) < rank(into.priority):
            into.priority = absorbed.priority  # never falls: the merged incident keeps the max
            into.priority_reasons = absorbed.priority_reasons
        into.needs_decision = True
        into.touch()
        into.forget_kinds()
        absorbed.status = "merged"
        absorbed.merged_into = into.id
        absorbed.resolved_at = now
        self._dirty.add(absorbed.id)
        self._dirty.add(into.id)
        self._pending.append(absorbed)
        self._reindex(into)
        self.counts["merged"] += 1

    def _split(self, inc: Incident, services: set[str], now: float) -> Incident:
        key = ",".join(sorted(services))
        digest = hashlib.sha1(f"{inc.id}|{key}|{now:.3f}".encode()).hexdigest()[:12]
        new = Incident(f"inc-{digest}", min(inc.onsets[s] for s in services if s in inc.onsets))
        self.incidents[new.id] = new
        self._keys[new.id] = _Keys()
        for fp, info in list(inc.alerts.items()):
            if info.service in services:
                new.alerts[fp] = inc.alerts.pop(fp)
                self.alert_incident[fp] = new.id
        if self._tracking:
            self._dirty_alerts.setdefault(new.id, set()).update(new.alerts)
            self._gone_alerts.update(alert_row_key(inc.id, fp) for fp in new.alerts)
        for s in services:
            if s in inc.first_seen:
                new.first_seen[s] = inc.first_seen.pop(s)
            if s in inc.onsets:
                new.onsets[s] = inc.onsets.pop(s)
            ids = self.active.get(s)
            if ids is not None and inc.id in ids:
                ids.discard(inc.id)
                ids.add(new.id)
        new.episode = min(new.onsets.values())
        new.last_onset = max(new.onsets.values())
        new.last_seen = max(i.last_seen for i in new.alerts.values())
        new.split_from = inc.id
        inc.split_into.append(new.id)
        inc.touch()
        inc.forget_kinds()
        new.priority, new.priority_reasons = inc.priority, list(inc.priority_reasons)
        self._reindex(inc)
        self._reindex(new)
        self._dirty.update((inc.id, new.id))
        self._pending.append(new)
        self.counts["split"] += 1
        return new

    def _flapped(self, inc: Incident, info: AlertInfo, now: float) -> None:
        inc.touch()
        inc.forget_kinds()
        was_strong = info.strong
        info.flapping = True
        info.flapped = True
        info.strong = False
        self._dirty.add(inc.id)
        if not was_strong:
            return
        s = info.service
        if not any(a.strong and a.service == s for a in inc.alerts.values()):
            inc.onsets.pop(s, None)  # no evidence left on this service
            inc.touch()
            inc.needs_decision = True
            inc.regroup = True
        self._update_active(inc, s)
        self._reindex(inc)
        if not inc.strong_firing and inc.quiet_since is None:
            inc.quiet_since = now
            self._schedule(now + self.policy.quiet_period, inc.id)

    def _resolved(self, inc: Incident, info: AlertInfo, now: float) -> None:
        inc.touch()
        info.status = "resolved"
        info.last_seen = now
        info.flapping = False
        self._dirty.add(inc.id)
        if not info.strong:
            return
        self._update_active(inc, info.service)
        if not inc.strong_firing and inc.quiet_since is None:
            inc.quiet_since = now
            self._schedule(now + self.policy.quiet_period, inc.id)

    # -- indexes -------------------------------------------------------------------------

    def _update_active(self, inc: Incident, service: str) -> None:
        firing = any(a.strong and a.status == "firing" and a.service == service
                     for a in inc.alerts.values())
        ids = self.active.get(service)
        if firing:
            self.active.setdefault(service, set()).add(inc.id)
        elif ids is not None:
            ids.discard(inc.id)
            if not ids:
                del self.active[service]

    def _wanted(self, inc: Incident) -> _Keys:
        if inc.status != "open":
            return _Keys()
        anchors = set(inc.onsets)
        root = inc.root
        kinds = inc.kinds()
        siblings: set[str] = set()
        if root is not None:
            # the runners-up too: a caller of the second candidate still belongs here while
            # the evidence settles which one it is
            anchors.update(root.candidates[:2] or (root.service,))
        # a root that only shows symptoms may be the caller of a silent root, which its
        # other callers would show too (before the first decision: any such member)
        leads = [root.service] if root is not None else list(inc.onsets)
        if root is None or not root.inferred:
            for lead in leads:
                if kinds.get(lead) and not kinds[lead] & SELF_KINDS:
                    siblings |= self.topology.callees(lead)
            siblings -= anchors
        return _Keys(anchors, siblings)

    def _reindex(self, inc: Incident) -> None:
        have = self._keys.setdefault(inc.id, _Keys())
        want = self._wanted(inc)
        for index, old, new in ((self.anchors, have.anchors, want.anchors),
                                (self.siblings, have.siblings, want.siblings)):
            for s in old - new:
                ids = index.get(s)
                if ids is not None:
                    ids.discard(inc.id)
                    if not ids:
                        del index[s]
            for s in new - old:
                index.setdefault(s, set()).add(inc.id)
        self._keys[inc.id] = want

    def _unindex(self, inc: Incident) -> None:
        have = self._keys.pop(inc.id, _Keys())
        for index, keys in ((self.anchors, have.anchors), (self.siblings, have.siblings)):
            for s in keys:
                ids = index.get(s)
                if ids is not None:
                    ids.discard(inc.id)
                    if not ids:
                        del index[s]
        for s in {a.service for a in inc.alerts.values()}:
            ids = self.active.get(s)
            if ids is not None:
                ids.discard(inc.id)
                if not ids:
                    del self.active[s]

    # -- decisions -----------------------------------------------------------------------

    def _lone(self, inc: Incident) -> AlertInfo | None:
        """The incident's only page-worthy alert, if it has just one."""
        found = None
        for a in inc.alerts.values():
            if a.strong:
                if found is not None:
                    return None
                found = a
        return found

    def _page_due(self, inc: Incident) -> float:
        p = self.policy
        lone = self._lone(inc)
        if lone is None:
            return inc.opened_at + p.page_delay
        wait = p.lone_critical_delay if lone.level == CRITICAL else p.lone_delay
        return max(inc.opened_at + p.page_delay, lone.onset + wait)

    def _pageable(self, inc: Incident) -> bool:
        """Whether a due incident pages: page-worthy evidence firing and not flapping, and
        not only from services a configured topology does not know (nobody owns them and no
        neighbour corroborates them: held, counted and reported, unless
        ``page_unknown_services``)."""
        if not inc.strong_firing:
            return False
        topology = self.topology
        if self.policy.page_unknown_services or not len(topology):
            return True
        return any(a.service in topology for a in inc.alerts.values() if a.strong)

    def _drain(self, now: float, skip: str) -> list[Event]:
        """Events of incidents merged away or split off since the last call."""
        events: list[Event] = []
        while self._pending:
            other = self._pending.pop(0)
            if other.status == "merged":
                if not other.emitted:  # never paged: nobody needs to hear it was absorbed
                    self._forget(other)
                    continue
                events.append(self._event(other, "incident.updated", now,
                                          ["merged_into", "status"]))
                other.emitted = other.material()
                self._schedule(now + self.policy.retention, other.id)
            elif other.id != skip and other.id in self.incidents:
                events.extend(self._refresh(other, now))  # split off: a failure of its own
        return events

    def _refresh(self, inc: Incident, now: float) -> list[Event]:
        events = self._drain(now, inc.id)
        if inc.id not in self.incidents or inc.status == "merged":
            return events
        events.extend(self._refresh_one(inc, now))
        events.extend(self._drain(now, inc.id))
        return events

    def _refresh_one(self, inc: Incident, now: float) -> list[Event]:
        events: list[Event] = []
        if not inc.emitted:
            due = self._page_due(inc)
            if now < due:
                self._schedule(due, inc.id)
                return events
            if not self._pageable(inc):
                if inc.strong_firing:
                    # only services the topology does not know: held while it fires
                    self.counts["held_unknown_service"] += 1
                    return events
                self.counts["not_paged"] += 1  # resolved or flapping within the page delay
                self._forget(inc)
                return events
        if inc.status == "open":
            last = inc.decided_at
            if inc.emitted and last is not None and now < last + self.policy.update_interval:
                if not inc.update_pending:
                    inc.update_pending = True
                    self._schedule(last + self.policy.update_interval, inc.id)
                return events
            inc.update_pending = False
            if inc.needs_decision:
                inc.decided_at = now
                inc.needs_decision = False
                self._decide(inc, now)
            elif not inc.war_room_open:  # nothing new: only the war room changes with time
                check = next_check(priority=inc.priority, opened_at=inc.opened_at,
                                   policy=self.war_room_policy,
                                   priority_since=inc.priority_since)
                if check is not None and check <= now:
                    self._decide_war_room(inc, now)
        if not inc.emitted:
            inc.pages = 1
            inc.paged_priority = inc.priority
        elif inc.repage:
            inc.pages += 1
            inc.paged_priority = inc.priority
        material = inc.material()
        if material == inc.emitted:
            return events
        if (not inc.war_room_open and inc.status == "open"
                and inc.war_room_checked < inc.opened_at + self.war_room_policy.decide_within):
            # its reason reads as of this event (after the decision window it stays put)
            inc.war_room_checked = now
            self._decide_war_room(inc, now)
            material = inc.material()
        page = not inc.emitted or inc.repage
        inc.repage = False
        if not inc.emitted:
            kind = "incident.created"
            changed: list[str] = []
        else:
            kind = "incident.resolved" if inc.status == "resolved" else "incident.updated"
            changed = changed_fields(inc.emitted, material)
        inc.emitted = material
        events.append(self._event(inc, kind, now, changed, page=page))
        return events

    def _decide(self, inc: Incident, now: float) -> None:
        topology = self.topology
        evidence = inc.evidence()
        if not evidence:
            return  # nothing page-worthy left (all flapped): keep the last decisions
        weights = self.policy.weights
        root = rank_root_causes(evidence=evidence, topology=topology, changes=self.changes,
                                weights=weights)
        if self.policy.split and inc.regroup and len(evidence) >= 2:
            # a member stopped being evidence (it flapped): what it bridged may fall apart
            inc.regroup = False
            parts = groups([*evidence, *root.candidates[1:]], root.service, topology,
                           self.policy.hops)
            split = False
            for part in parts[1:]:
                services = {s for s in part if s in evidence}
                if any(evidence[s].firing for s in services):
                    self._split(inc, services, now)
                    split = True
            if split:
                evidence = inc.evidence()
                root = rank_root_causes(evidence=evidence, topology=topology,
                                        changes=self.changes, weights=weights)
        inc.root = root
        first_alert = min(e.onset for e in evidence.values())
        inc.suspects = find_suspects(root=root.service, first_alert=first_alert,
                                     changes=self.changes, topology=topology,
                                     lookback=self.policy.change_lookback,
                                     hops=self.policy.change_hops,
                                     limit=self.policy.max_suspects)
        worst = {s: _priority_severity(e.level) for s, e in evidence.items()}
        symptomatic = [s for s, e in evidence.items() if e.kinds - {"resource"}]
        affected = [*evidence, root.service] if root.inferred else list(evidence)
        cls = classify_priority(services=affected, severities=list(worst.values()),
                                topology=topology, policy=self.priority_policy,
                                service_severities=worst, symptomatic=symptomatic)
        previous = Classification(inc.priority, inc.impact, inc.urgency,
                                  tuple(inc.priority_reasons), inc.users_affected, (),
                                  inc.users_at_risk, tuple(inc.at_risk)
                                  ) if inc.priority_reasons else None
        kept = keep_highest(previous, cls)
        if kept.priority != inc.priority or previous is None:
            inc.priority_since = now
        inc.priority = kept.priority
        inc.priority_reasons = list(kept.reasons)
        inc.impact, inc.urgency = kept.impact, kept.urgency
        inc.users_affected = max(inc.users_affected, cls.users_affected)
        inc.users_at_risk = max(inc.users_at_risk, cls.users_at_risk)
        inc.at_risk = sorted(set(inc.at_risk) | set(cls.at_risk))
        if (inc.emitted and inc.reopened and inc.paged_priority is not None
                and rank(inc.priority) < rank(inc.paged_priority)):
            inc.repage = True  # a recurrence that escalated pages again
        team = topology.info(root.service).team
        person = None
        if team is None:
            reason = f"{root.service} has no team in the service catalog"
        elif self.oncall is None:
            reason = f"team {team} owns {root.service}; no on-call rotations configured"
        else:
            on_call = self.oncall.on_call(team, inc.opened_at)
            person = on_call.person if on_call else None
            at = (format_timestamp(inc.opened_at) or "")[11:19]
            reason = (f"team {team} owns {root.service}, the root cause; "
                      + (f"{person} was on call at {at}" if person
                         else f"nobody on call for {team} at {at}"))
        inc.owner_team, inc.owner_person, inc.owner_reason = team, person, reason
        self._decide_war_room(inc, now)
        self._reindex(inc)

    def _decide_war_room(self, inc: Incident, now: float) -> None:
        if inc.war_room_open:
            return  # once opened, a war room stays open for the incident's life
        decision = decide_war_room(priority=inc.priority, opened_at=inc.opened_at, now=now,
                                   teams=inc.teams(self.topology), policy=self.war_room_policy,
                                   priority_since=inc.priority_since)
        inc.war_room_reason = decision.reason
        if decision.open:
            inc.war_room_open = True
            inc.war_room_at = decision.at
        else:
            check = next_check(priority=inc.priority, opened_at=inc.opened_at,
                               policy=self.war_room_policy, priority_since=inc.priority_since)
            if check is not None and check > now:
                self._schedule(check, inc.id)

    def _on_timer(self, inc: Incident, now: float) -> list[Event]:
        policy = self.policy
        if inc.status in ("resolved", "merged"):
            done = inc.resolved_at if inc.resolved_at is not None else now
            keep = policy.recurrence_window if inc.status == "resolved" else 0.0
            if now >= done + max(policy.retention, keep):
                self._forget(inc)
            return []
        quiet = inc.quiet_since
        if (quiet is not None and not inc.strong_firing and now >= quiet + policy.quiet_period
                and inc.emitted):
            inc.status = "resolved"
            inc.resolved_at = quiet + policy.quiet_period
            self._dirty.add(inc.id)
            self._unindex(inc)
            self._schedule(inc.resolved_at + max(policy.retention, policy.recurrence_window),
                           inc.id)
            return self._refresh(inc, now)
        self._dirty.add(inc.id)
        return self._refresh(inc, now)

    def _forget(self, inc: Incident) -> None:
        self._unindex(inc)
        for fp in inc.alerts:
            if self.alert_incident.get(fp) == inc.id:
                del self.alert_incident[fp]
        self.incidents.pop(inc.id, None)
        self._dirty.discard(inc.id)
        self._dirty_alerts.pop(inc.id, None)
        if self._tracking:
            self._removed.add(inc.id)
            self._gone_alerts.update(alert_row_key(inc.id, fp) for fp in inc.alerts)

    def _alert_changed(self, inc_id: str, fp: str) -> None:
        """``fp``'s record in incident ``inc_id`` changed: its row goes in the next commit."""
        if not self._tracking:
            return
        fps = self._dirty_alerts.get(inc_id)
        if fps is None:
            fps = self._dirty_alerts[inc_id] = set()
        fps.add(fp)

    def _schedule(self, at: float, inc_id: str) -> None:
        entry = (at, inc_id)
        if entry not in self._timer_set:
            self._timer_set.add(entry)
            heapq.heappush(self._timers, entry)

    # -- output --------------------------------------------------------------------------

    def _event(self, inc: Incident, kind: str, now: float, changed: list[str], *,
               page: bool = False) -> Event:
        inc.seq += 1
        self._dirty.add(inc.id)
        self.counts[kind] += 1
        if page:
            self.counts["pages"] += 1
        return render_event(inc, kind, now, changed, self.topology, page=page)

    # -- persistence ---------------------------------------------------------------------

    def take_changes(self) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Records changed and keys forgotten since the last call (then resets): each
        changed incident without its alerts, keyed by its id, and each changed alert of an
        incident as a row of its own (``model.alert_row``, keyed ``incident-id/fp``). So a
        commit costs what changed, however many alerts a storm's incident holds. The first
        call, on an engine never loaded, returns everything: nothing was saved."""
        incidents = self.incidents
        if not self._tracking:
            self._tracking = True
            self._dirty = set(incidents)
            self._dirty_alerts = {i: set(inc.alerts) for i, inc in incidents.items()}
        changed = {i: incidents[i].to_record(with_alerts=incidents[i].alerts_inline)
                   for i in self._dirty if i in incidents}
        for inc_id, fps in self._dirty_alerts.items():
            inc = incidents.get(inc_id)
            if inc is None:
                continue
            for fp in fps:
                info = inc.alerts.get(fp)
                if info is not None:
                    changed[alert_row_key(inc_id, fp)] = alert_row(inc_id, fp, info)
        removed = (self._removed | self._gone_alerts) - changed.keys()
        self._dirty, self._removed = set(), set()
        self._dirty_alerts, self._gone_alerts = {}, set()
        return changed, removed

    def load(self, records: Iterable[dict[str, Any]], timers: Iterable[list[Any]]) -> None:
        """Restore incidents (and their timers) saved with ``take_changes``: incident
        records and alert rows in any order; records of the older format, with the alerts
        inside, too. Changes are tracked from here on."""
        self._tracking = True
        loaded: list[Incident] = []
        rows: list[dict[str, Any]] = []
        for rec in records:
            if is_alert_row(rec):
                rows.append(rec)
            else:
                loaded.append(Incident.from_record(rec))
        for inc in loaded:
            self.incidents[inc.id] = inc
        for row in rows:
            owner = self.incidents.get(row["incident"])
            if owner is not None:
                owner.alerts[row["fp"]] = AlertInfo.from_record(row["alert"])
        for inc in loaded:
            if inc.status in ("open", "resolved"):
                for fp in inc.alerts:
                    self.alert_incident[fp] = inc.id
            if inc.status == "open":
                for a in inc.alerts.values():
                    if a.strong and a.status == "firing":
                        self.active.setdefault(a.service, set()).add(inc.id)
                self._reindex(inc)
        for at, inc_id in timers:
            if inc_id in self.incidents:
                self._schedule(at, inc_id)

    def timers(self) -> list[tuple[float, str]]:
        """Pending timers, for persistence."""
        return sorted(self._timers)


def _priority_severity(level: int) -> str:
    """The priority module's severity name for an evidence level (unknown counts as none)."""
    return "none" if level == UNKNOWN else SEVERITY_NAMES[level]

