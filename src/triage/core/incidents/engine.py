"""Stage 2: turn stage-1 alert state changes into incidents, and incidents into events.

An alert joins an open incident when it arrives within ``window`` of the incident's last
activity and its service is the same as, or within ``hops`` hops (either direction) of, a
service already in the incident; otherwise it opens a new incident, which is a page. When an
alert could join several incidents they have become connected: the oldest absorbs the others
(each absorbed one emits ``incident.updated`` with ``merged_into``). Flapping alerts never open
an incident. An incident resolves once all its alerts are resolved and ``quiet_period`` has
passed; a later alert opens a new incident or, with ``after_resolve: reopen``, reopens it.

Every incident carries its root cause, suspect changes, priority, owner and war-room decision,
each with the reason. Events are emitted on material changes only (services, root cause,
priority, owner, war room, suspects, status), not for every repeat, and carry deterministic
ids (incident id + sequence), so consumers can drop duplicates.

Correlation cost per alert does not grow with the number of open incidents: candidates come
from an index of open incidents by service, probed for the (cached) k-hop neighbourhood.
"""

from __future__ import annotations

import hashlib
import heapq
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from triage.core.changes import ChangeIndex, ChangeRecord
from triage.core.oncall import OnCallSchedule
from triage.core.incidents.priority import (
    Classification,
    PriorityPolicy,
    classify_priority,
    keep_highest,
    rank,
)
from triage.core.incidents.rootcause import RootCause, Suspect, find_root_cause, find_suspects
from triage.core.services import ServiceMapper
from triage.core.timeutil import format_timestamp
from triage.core.topology import Topology
from triage.core.types import Outcome, Triaged
from triage.core.incidents.warroom import WarRoomPolicy, decide_war_room, next_check

Event = dict[str, Any]
SCHEMA_VERSION = 1
_SEVERITY_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3, "none": 4, "": 5}


@dataclass(frozen=True, slots=True)
class CorrelationPolicy:
    """How alerts group into incidents and when incidents end (all durations in seconds)."""

    window: float = 900.0
    hops: int = 2
    # Like Alertmanager's group_wait: a new incident pages only if, this long after its first
    # alert, something in it is still firing and not flapping. Blips never page.
    page_delay: float = 30.0
    # Decisions on a growing incident (root cause, priority, suspects, owner) are re-made at
    # most this often in event time; the next event carries everything that changed. Keeps a
    # storm that touches hundreds of services from recomputing them for every alert.
    update_interval: float = 10.0
    merge: bool = True
    quiet_period: float = 600.0
    after_resolve: str = "new"  # new | reopen
    reopen_within: float = 3600.0
    change_lookback: float = 7200.0
    change_hops: int = 2
    max_suspects: int = 3
    retention: float = 3600.0  # resolved incidents are forgotten this long after


class AlertInfo:
    """What an incident remembers of one of its alerts."""

    __slots__ = ("first_seen", "flapped", "flapping", "last_seen", "name", "service", "severity",
                 "status")

    def __init__(self, service: str, name: str, severity: str, status: str, now: float) -> None:
        self.service = service
        self.name = name
        self.severity = severity
        self.status = status
        self.first_seen = now
        self.last_seen = now
        self.flapping = False
        # Once an alert has flapped it is not evidence of a failure: it never makes its
        # service the root cause nor raises the priority (simulated storms showed flapping
        # noise alerts as 28 of 29 wrong root causes before this).
        self.flapped = False

    def to_record(self) -> list[Any]:
        return [self.service, self.name, self.severity, self.status, self.first_seen,
                self.last_seen, self.flapping, self.flapped]

    @classmethod
    def from_record(cls, rec: list[Any]) -> AlertInfo:
        info = cls(rec[0], rec[1], rec[2], rec[3], rec[4])
        info.last_seen, info.flapping, info.flapped = rec[5], rec[6], rec[7]
        return info


class Incident:
    """One incident and every decision about it, with the reasons."""

    def __init__(self, incident_id: str, now: float) -> None:
        self.id = incident_id
        self.seq = 0
        self.status = "open"
        self.opened_at = now
        self.last_seen = now
        self.resolved_at: float | None = None
        self.quiet_since: float | None = None
        self.alerts: dict[str, AlertInfo] = {}
        self.first_seen: dict[str, float] = {}  # service -> its first alert in this incident
        self.root: RootCause | None = None
        self.suspects: list[Suspect] = []
        self.priority = "P4"
        self.priority_since = now
        self.priority_reasons: list[str] = []
        self.impact = ""
        self.urgency = ""
        self.users_affected = 0
        self.owner_team: str | None = None
        self.owner_person: str | None = None
        self.owner_reason = ""
        self.war_room_open = False
        self.war_room_reason = ""
        self.war_room_at: float | None = None
        self.merged_into: str | None = None
        self.reopened = 0
        # service -> last firing activity: an alert joins only through a member service that
        # is itself still active, so one long incident cannot chain through every service
        # that ever alerted near it
        self.service_last: dict[str, float] = {}
        self.reactivated = 0  # a service whose alerts had all resolved fired again
        self.needs_decision = True
        self.decided_at: float | None = None
        self.update_pending = False
        self.emitted: tuple[Any, ...] = ()

    @property
    def firing(self) -> int:
        return sum(1 for a in self.alerts.values() if a.status == "firing")

    def service_firing(self, service: str) -> bool:
        """Whether ``service`` has a firing alert in this incident."""
        return any(a.status == "firing" and a.service == service for a in self.alerts.values())

    def active_services(self) -> list[str]:
        """Services with a firing alert, sorted."""
        return sorted({a.service for a in self.alerts.values() if a.status == "firing"})

    def evidence(self) -> dict[str, float]:
        """``first_seen`` without services whose alerts all flapped (unless that is all)."""
        solid = {a.service for a in self.alerts.values() if not a.flapped}
        kept = {s: t for s, t in self.first_seen.items() if s in solid}
        return kept or dict(self.first_seen)

    def teams(self, topology: Topology) -> list[str]:
        return sorted({t for s in self.first_seen if (t := topology.info(s).team)})

    def material(self) -> tuple[Any, ...]:
        """The fields whose change is worth an event."""
        return (self.status, tuple(sorted(self.first_seen)), self.root and self.root.service,
                self.priority, self.owner_team, self.owner_person, self.war_room_open,
                tuple(s.id for s in self.suspects), self.merged_into, self.reopened,
                self.reactivated)

    def to_record(self) -> dict[str, Any]:
        # copies: a record must not change with the live incident it was taken from
        rec = {k: _copy(getattr(self, k)) for k in _PLAIN}
        rec["alerts"] = {fp: a.to_record() for fp, a in self.alerts.items()}
        rec["root"] = asdict(self.root) if self.root else None
        rec["suspects"] = [asdict(s) for s in self.suspects]
        rec["emitted"] = list(self.emitted)
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Incident:
        inc = cls(rec["id"], rec["opened_at"])
        for k in _PLAIN:
            setattr(inc, k, rec[k])
        inc.alerts = {fp: AlertInfo.from_record(a) for fp, a in rec["alerts"].items()}
        root = rec["root"]
        inc.root = (RootCause(**{**root, "candidates": tuple(root.get("candidates", ()))})
                    if root else None)
        inc.suspects = [Suspect(**s) for s in rec["suspects"]]
        inc.emitted = _tuplify(rec["emitted"])
        return inc


_PLAIN = ("id", "seq", "status", "opened_at", "last_seen", "resolved_at", "quiet_since",
          "first_seen", "priority", "priority_since", "priority_reasons", "impact", "urgency",
          "users_affected", "owner_team", "owner_person", "owner_reason", "war_room_open",
          "war_room_reason", "war_room_at", "merged_into", "reopened", "decided_at",
          "update_pending", "service_last", "reactivated", "needs_decision")


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return dict(value)
    if isinstance(value, list):
        return list(value)
    return value


def _tuplify(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_tuplify(v) for v in value)
    return value


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
        self.by_service: dict[str, set[str]] = {}
        self.alert_incident: dict[str, str] = {}
        self._timers: list[tuple[float, str]] = []
        self.counts: Counter[str] = Counter()
        self.unknown_services: Counter[str] = Counter()
        self._dirty: set[str] = set()
        self._removed: set[str] = set()
        self._pending_merged: list[Incident] = []

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
            if inc is not None:  # an unpaged incident absorbed by a merge is already gone
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
            events.extend(self._refresh(inc, max(now, inc.opened_at + self.policy.page_delay)))
        return events

    def tick(self, now: float) -> list[Event]:
        """Run the timers due by ``now``: quiet-period resolution, war-room rules, expiry."""
        events: list[Event] = []
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, inc_id = heapq.heappop(timers)
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
        change = outcome.change
        status = alert.status
        current = self.alert_incident.get(fp)
        inc = self.incidents.get(current) if current else None
        if change == "flapping":
            if inc is not None and fp in inc.alerts:
                inc.alerts[fp].flapping = True
                inc.alerts[fp].flapped = True
                inc.needs_decision = True
                self._dirty.add(inc.id)
            self.counts["flapping_held"] += 1
            return None  # a flapping alert never opens an incident
        if status == "resolved":
            if inc is None or inc.status == "merged" or fp not in inc.alerts:
                return None
            info = inc.alerts[fp]
            info.status = "resolved"
            info.last_seen = now
            info.flapping = False
            self._dirty.add(inc.id)
            inc.needs_decision = True
            if inc.status == "open" and not inc.firing:
                inc.quiet_since = now
                self._schedule(now + self.policy.quiet_period, inc.id)
            return inc.id
        # firing: a new occurrence, or a flapping alert that settled firing
        labels = alert.labels
        service = self.service_of(labels)
        joined = inc if inc is not None and inc.status == "open" else self._correlate(service,
                                                                                       now)
        target = joined if joined is not None else self._open(fp, now)
        found = target.alerts.get(fp)
        if (service in target.first_seen and target.status == "open"
                and not target.service_firing(service)
                and (found is None or found.status != "firing")):
            target.reactivated += 1  # a new failure on a service that had recovered: say so
        if found is None:
            info = AlertInfo(service, alert.name, alert.severity or "", "firing", now)
            target.alerts[fp] = info
        else:
            info = found
        info.status = "firing"
        info.flapping = False
        info.last_seen = now
        target.last_seen = now
        target.service_last[service] = now
        target.quiet_since = None
        target.needs_decision = True
        if service not in target.first_seen:
            target.first_seen[service] = now
        self.by_service.setdefault(service, set()).add(target.id)
        self.alert_incident[fp] = target.id
        self._dirty.add(target.id)
        return target.id

    def _correlate(self, service: str, now: float) -> Incident | None:
        policy = self.policy
        found: dict[str, Incident] = {}
        by_service = self.by_service
        for near in self.topology.within(service, policy.hops):
            ids = by_service.get(near)
            if not ids:
                continue
            stale: list[str] = []
            for inc_id in ids:
                inc = self.incidents[inc_id]
                # joinable through `near` only while `near` itself alerted within the window
                # (stage 1 passes on changes, not repeats: a long-firing service is recent
                # activity only when it started)
                live = (inc.status == "open"
                        and now - inc.service_last.get(near, inc.last_seen) <= policy.window)
                reopenable = (inc.status == "resolved" and policy.after_resolve == "reopen"
                              and inc.resolved_at is not None
                              and now - inc.resolved_at <= policy.reopen_within)
                if live or reopenable:
                    found[inc_id] = inc
                elif not (inc.status == "resolved" and policy.after_resolve == "reopen"):
                    # Not joinable through `near` (event time only moves forward): drop the
                    # pair from the index, so the search stays O(active incidents nearby)
                    # however many are open. If `near` fires in it again, it is re-added.
                    stale.append(inc_id)
            for inc_id in stale:
                ids.discard(inc_id)
        if not found:
            return None
        ordered = sorted(found.values(), key=lambda i: (i.opened_at, i.id))
        target = ordered[0]
        if target.status == "resolved":
            target.status = "open"
            target.resolved_at = None
            target.reopened += 1
            self.counts["reopened"] += 1
        if policy.merge:
            for other in ordered[1:]:
                if other.status == "open":
                    self._merge(other, into=target, now=now)
        return target

    def _open(self, fp: str, now: float) -> Incident:
        digest = hashlib.sha1(f"{fp}|{now:.3f}".encode()).hexdigest()[:12]
        inc = Incident(f"inc-{digest}", now)
        self.incidents[inc.id] = inc
        self.counts["incidents"] += 1
        return inc

    def _merge(self, absorbed: Incident, *, into: Incident, now: float) -> None:
        for fp, info in absorbed.alerts.items():
            into.alerts.setdefault(fp, info)
            self.alert_incident[fp] = into.id
        for service, t in absorbed.first_seen.items():
            if service not in into.first_seen or t < into.first_seen[service]:
                into.first_seen[service] = t
            ids = self.by_service.get(service)
            if ids is not None:
                ids.discard(absorbed.id)
                ids.add(into.id)
        for service, t in absorbed.service_last.items():
            into.service_last[service] = max(t, into.service_last.get(service, t))
        into.needs_decision = True
        into.opened_at = min(into.opened_at, absorbed.opened_at)
        into.last_seen = max(into.last_seen, absorbed.last_seen)
        if rank(absorbed.priority) < rank(into.priority):
            into.priority = absorbed.priority  # never falls: the merged incident keeps the max
            into.priority_reasons = absorbed.priority_reasons
        absorbed.status = "merged"
        absorbed.merged_into = into.id
        absorbed.resolved_at = now
        self._dirty.add(absorbed.id)
        self._pending_merged.append(absorbed)
        self.counts["merged"] += 1

    # -- decisions -----------------------------------------------------------------------

    def _refresh(self, inc: Incident, now: float) -> list[Event]:
        events: list[Event] = []
        merged, self._pending_merged = self._pending_merged, []
        for absorbed in merged:
            if not absorbed.emitted:  # never paged: nobody needs to hear it was absorbed
                self._forget(absorbed)
                continue
            events.append(self._event(absorbed, "incident.updated", now, ["merged_into",
                                                                         "status"]))
            absorbed.emitted = absorbed.material()
            self._schedule(now + self.policy.retention, absorbed.id)
        if not inc.emitted:
            due = inc.opened_at + self.policy.page_delay
            if now < due:
                self._schedule(due, inc.id)
                return events
            if not any(a.status == "firing" and not a.flapping for a in inc.alerts.values()):
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
            else:  # a timer with nothing new: only the war room can change with time
                self._decide_war_room(inc, now)
        material = inc.material()
        if material == inc.emitted:
            return events
        if not inc.emitted:
            kind = "incident.created"
            changed: list[str] = []
        else:
            kind = "incident.resolved" if inc.status == "resolved" else "incident.updated"
            changed = _changed(inc.emitted, material)
        inc.emitted = material
        events.append(self._event(inc, kind, now, changed))
        return events

    def _decide(self, inc: Incident, now: float) -> None:
        topology = self.topology
        evidence = inc.evidence()
        services = list(evidence)
        root = find_root_cause(first_seen=evidence, topology=topology)
        if inc.root is None or root != inc.root:
            inc.root = root
        first_alert = min(evidence.values())
        inc.suspects = find_suspects(root=root.service, first_alert=first_alert,
                                     changes=self.changes, topology=topology,
                                     lookback=self.policy.change_lookback,
                                     hops=self.policy.change_hops,
                                     limit=self.policy.max_suspects)
        worst: dict[str, str] = {}
        for a in inc.alerts.values():
            if a.service not in evidence:
                continue
            if _SEVERITY_RANK.get(a.severity, 9) < _SEVERITY_RANK.get(worst.get(a.service, ""), 9):
                worst[a.service] = a.severity
        cls = classify_priority(services=services, severities=list(worst.values()),
                                topology=topology, policy=self.priority_policy,
                                service_severities=worst)
        previous = Classification(inc.priority, inc.impact, inc.urgency,
                                  tuple(inc.priority_reasons), inc.users_affected, ()
                                  ) if inc.priority_reasons else None
        kept = keep_highest(previous, cls)
        if kept.priority != inc.priority or previous is None:
            inc.priority_since = now
        inc.priority = kept.priority
        inc.priority_reasons = list(kept.reasons)
        inc.impact, inc.urgency = kept.impact, kept.urgency
        inc.users_affected = max(inc.users_affected, cls.users_affected)
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
            keep = policy.reopen_within if policy.after_resolve == "reopen" else 0.0
            if now >= done + max(policy.retention, keep):
                self._forget(inc)
            return []
        quiet = inc.quiet_since
        if quiet is not None and not inc.firing and now >= quiet + policy.quiet_period:
            inc.status = "resolved"
            inc.resolved_at = quiet + policy.quiet_period
            self._dirty.add(inc.id)
            if policy.after_resolve != "reopen":
                self._unindex(inc)
            self._schedule(inc.resolved_at + max(policy.retention, policy.reopen_within),
                           inc.id)
            return self._refresh(inc, now)
        self._dirty.add(inc.id)
        return self._refresh(inc, now)

    def _unindex(self, inc: Incident) -> None:
        for service in inc.first_seen:
            ids = self.by_service.get(service)
            if ids is not None:
                ids.discard(inc.id)
                if not ids:
                    del self.by_service[service]
        for fp in inc.alerts:
            if self.alert_incident.get(fp) == inc.id:
                del self.alert_incident[fp]

    def _forget(self, inc: Incident) -> None:
        self._unindex(inc)
        del self.incidents[inc.id]
        self._dirty.discard(inc.id)
        self._removed.add(inc.id)

    def _schedule(self, at: float, inc_id: str) -> None:
        heapq.heappush(self._timers, (at, inc_id))

    # -- output --------------------------------------------------------------------------

    def _event(self, inc: Incident, kind: str, now: float, changed: list[str]) -> Event:
        inc.seq += 1
        self._dirty.add(inc.id)
        self.counts[kind] += 1
        return render_event(inc, kind, now, changed, self.topology)

    # -- persistence ---------------------------------------------------------------------

    def take_changes(self) -> tuple[dict[str, dict[str, Any]], set[str]]:
        """Incidents changed and forgotten since the last call (then resets)."""
        changed = {i: self.incidents[i].to_record() for i in self._dirty if i in self.incidents}
        removed = self._removed
        self._dirty, self._removed = set(), set()
        return changed, removed

    def load(self, records: Iterable[dict[str, Any]], timers: Iterable[list[Any]]) -> None:
        """Restore incidents (and their timers) saved with ``take_changes``."""
        for rec in records:
            inc = Incident.from_record(rec)
            self.incidents[inc.id] = inc
            if inc.status == "open" or (inc.status == "resolved"
                                        and self.policy.after_resolve == "reopen"):
                for service in inc.first_seen:
                    self.by_service.setdefault(service, set()).add(inc.id)
            if inc.status == "open":
                for fp in inc.alerts:
                    self.alert_incident[fp] = inc.id
        for at, inc_id in timers:
            if inc_id in self.incidents:
                heapq.heappush(self._timers, (at, inc_id))

    def timers(self) -> list[tuple[float, str]]:
        """Pending timers, for persistence."""
        return sorted(self._timers)


def _changed(before: tuple[Any, ...], after: tuple[Any, ...]) -> list[str]:
    names = ("status", "services", "root_cause", "priority", "owner", "owner", "war_room",
             "suspect_changes", "merged_into", "reopened", "reactivated")
    out: list[str] = []
    for name, a, b in zip(names, before, after, strict=True):
        if a != b and name not in out:
            out.append(name)
    return out


def render_event(inc: Incident, kind: str, now: float, changed: list[str],
                 topology: Topology) -> Event:
    """The incident event (``schemas/incident-event.schema.json``)."""
    ts: Callable[[float | None], str | None] = format_timestamp
    root = inc.root
    runbook = topology.info(root.service).runbook if root else None
    return {
        "schema_version": SCHEMA_VERSION,
        "event_id": f"{inc.id}:{inc.seq}",
        "type": kind,
        "at": ts(now),
        "changed": changed,
        "incident": {
            "id": inc.id,
            "sequence": inc.seq,
            "status": inc.status,
            "priority": inc.priority,
            "priority_reasons": list(inc.priority_reasons),
            "impact": inc.impact or None,
            "urgency": inc.urgency or None,
            "users_affected": inc.users_affected,
            "services": sorted(inc.first_seen),
            "active_services": inc.active_services(),
            "teams": inc.teams(topology),
            "root_cause": {"service": root.service, "confidence": root.confidence,
                           "reason": root.reason, "runbook": runbook,
                           "candidates": list(root.candidates)} if root else None,
            "alert_count": len(inc.alerts),
            "firing_count": inc.firing,
            "fingerprints": sorted(inc.alerts),
            "first_seen": ts(inc.opened_at),
            "last_seen": ts(inc.last_seen),
            "resolved_at": ts(inc.resolved_at),
            "owner": {"team": inc.owner_team, "person": inc.owner_person,
                      "reason": inc.owner_reason},
            "war_room": {"open": inc.war_room_open, "reason": inc.war_room_reason,
                         "at": ts(inc.war_room_at)},
            "suspect_changes": [{"id": s.id, "service": s.service, "kind": s.kind,
                                 "at": ts(s.at), "score": s.score, "reason": s.reason}
                                for s in inc.suspects],
            "merged_into": inc.merged_into,
            "reopened": inc.reopened,
            "reactivated": inc.reactivated,
        },
    }
