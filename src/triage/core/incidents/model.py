"""The incident stage's state: what an incident remembers of its alerts, and the incident with
every decision about it. Each type's record encoding (``to_record`` / ``from_record``) sits
beside it; the state stores (state file, Kafka tables) keep these records as they are.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

from triage.core.incidents.evidence import SEVERITY_NAMES
from triage.core.incidents.rootcause import Evidence, RootCause, Suspect
from triage.core.topology import Topology

# 1: before evidence kinds, episodes and splits; 2: alerts inside the incident's record;
# 3: alerts may be rows of their own (``alert_row``), so a commit writes what changed
RECORD_VERSION = 3


class AlertInfo:
    """What an incident remembers of one of its alerts."""

    __slots__ = ("first_seen", "flapped", "flapping", "kind", "last_seen", "level", "name",
                 "onset", "service", "status", "strong")

    def __init__(self, service: str, name: str, level: int, kind: str, strong: bool,
                 now: float) -> None:
        self.service = service
        self.name = name
        self.level = level
        self.kind = kind
        # page-worthy evidence (evidence.page_worthy) and not flapped
        self.strong = strong
        self.status = "firing"
        self.onset = now  # start of the current firing occurrence
        self.first_seen = now
        self.last_seen = now
        self.flapping = False
        # Once an alert has flapped it is not evidence of a failure: it never makes its
        # service the root cause nor raises the priority (simulated storms showed flapping
        # noise alerts as 28 of 29 wrong root causes before this).
        self.flapped = False

    @property
    def severity(self) -> str:
        """The severity name (``unknown`` when the alert carried none)."""
        return SEVERITY_NAMES[self.level]

    def to_record(self) -> list[Any]:
        return [self.service, self.name, self.level, self.kind, self.strong, self.status,
                self.onset, self.first_seen, self.last_seen, self.flapping, self.flapped]

    @classmethod
    def from_record(cls, rec: list[Any]) -> AlertInfo:
        info = cls(rec[0], rec[1], rec[2], rec[3], rec[4], rec[7])
        (info.status, info.onset, info.last_seen, info.flapping,
         info.flapped) = rec[5], rec[6], rec[8], rec[9], rec[10]
        return info


class Incident:
    """One incident and every decision about it, with the reasons.

    An incident lives in *episodes*: it opens with one, and each recurrence (an alert of it
    firing again after it resolved, within the recurrence window) starts a new one. Evidence
    for the root cause, the priority and joining is the current episode's strong alerts.
    """

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
        self.episode = now  # start of the current episode
        self.onsets: dict[str, float] = {}  # service -> first strong onset in this episode
        self.last_onset = now  # the latest strong onset: joining is measured from it
        self.root: RootCause | None = None
        self.suspects: list[Suspect] = []
        self.priority = "P4"
        self.priority_since = now
        self.priority_reasons: list[str] = []
        self.impact = ""
        self.urgency = ""
        self.users_affected = 0
        self.users_at_risk = 0
        self.at_risk: list[str] = []
        self.owner_team: str | None = None
        self.owner_person: str | None = None
        self.owner_reason = ""
        self.war_room_open = False
        self.war_room_reason = ""
        self.war_room_at: float | None = None
        self.war_room_checked = float("-inf")  # when its reason was last brought up to date
        self.version = 0  # bumped by every change to its alerts (caches below follow it)
        self._cache: tuple[int, dict[str, Evidence], dict[str, frozenset[str]]] | None = None
        # kinds of each evidence service's page-worthy alerts, kept as alerts fire; None:
        # rebuild (after a flap, merge, split or reopening took some away)
        self._kinds: dict[str, set[str]] | None = None
        self.merged_into: str | None = None
        self.split_from: str | None = None
        self.split_into: list[str] = []
        self.reopened = 0
        self.reactivated = 0  # a service whose alerts had all resolved fired again
        self.pages = 0
        self.paged_priority: str | None = None  # the highest priority paged so far
        self.repage = False  # the next event pages again (an escalation after a recurrence)
        self.regroup = False  # evidence was withdrawn (a flap): look for groups to split
        self.needs_decision = True
        self.decided_at: float | None = None
        self.update_pending = False
        self.emitted: tuple[Any, ...] = ()
        # restored from a record that held its alerts (format 2): its alerts have no rows of
        # their own, so its record keeps carrying them until it is forgotten
        self.alerts_inline = False

    # -- views ----------------------------------------------------------------------------

    @property
    def firing(self) -> int:
        """Alerts firing now (weak ones included)."""
        return sum(1 for a in self.alerts.values() if a.status == "firing")

    @property
    def strong_firing(self) -> bool:
        """Whether page-worthy evidence is firing: what keeps an incident alive."""
        return any(a.strong and a.status == "firing" and not a.flapping
                   for a in self.alerts.values())

    def active_services(self) -> list[str]:
        """Services with a firing alert, sorted."""
        return sorted({a.service for a in self.alerts.values() if a.status == "firing"})

    def touch(self) -> None:
        """Its alerts changed: derived views are recomputed when next asked for."""
        self.version += 1

    def evidence(self) -> dict[str, Evidence]:
        """The current episode's page-worthy evidence, per service."""
        return self._derived()[1]

    def kinds(self) -> Mapping[str, set[str]]:
        """The kinds of each evidence service's page-worthy alerts (a live view: do not
        change it)."""
        if self._kinds is None:
            kinds: dict[str, set[str]] = {}
            for a in self.alerts.values():
                if a.strong and a.service in self.onsets:
                    kinds.setdefault(a.service, set()).add(a.kind)
            self._kinds = kinds
        return self._kinds

    def note_kind(self, service: str, kind: str) -> None:
        """A page-worthy alert of ``kind`` fires on evidence service ``service``."""
        if self._kinds is not None:
            self._kinds.setdefault(service, set()).add(kind)

    def forget_kinds(self) -> None:
        """Evidence was taken away: rebuild the kinds when next asked."""
        self._kinds = None

    def _derived(self) -> tuple[int, dict[str, Evidence], dict[str, frozenset[str]]]:
        cache = self._cache
        if cache is not None and cache[0] == self.version:
            return cache
        level: dict[str, int] = {}
        kinds: dict[str, set[str]] = {}
        firing: dict[str, bool] = {}
        onsets, episode = self.onsets, self.episode
        for a in self.alerts.values():
            s = a.service
            if not a.strong or s not in onsets or (a.status != "firing" and a.onset < episode):
                continue
            level[s] = min(level.get(s, 99), a.level)
            kinds.setdefault(s, set()).add(a.kind)
            firing[s] = firing.get(s, False) or (a.status == "firing" and not a.flapping)
        frozen = {s: frozenset(k) for s, k in kinds.items()}
        evidence = {s: Evidence(s, onsets[s], level[s], frozen[s], firing[s])
                    for s in sorted(level)}
        self._cache = (self.version, evidence, frozen)
        return self._cache

    def teams(self, topology: Topology) -> list[str]:
        return sorted({t for s in self.first_seen if (t := topology.info(s).team)})

    def material(self) -> tuple[Any, ...]:
        """The fields whose change is worth an event."""
        return (self.status, tuple(sorted(self.first_seen)), self.root and self.root.service,
                self.priority, self.owner_team, self.owner_person, self.war_room_open,
                tuple(s.id for s in self.suspects), self.merged_into, self.reopened,
                self.reactivated, tuple(self.split_into), self.pages)

    # -- records --------------------------------------------------------------------------

    def to_record(self, *, with_alerts: bool = True) -> dict[str, Any]:
        """The incident as a JSON-ready dict. ``with_alerts=False`` leaves its alerts out:
        the engine persists them as rows of their own (``alert_row``), since a record that
        holds them all costs O(alerts) at each change of a storm's incident."""
        # copies: a record must not change with the live incident it was taken from
        rec = {k: _copy(getattr(self, k)) for k in _PLAIN}
        rec["v"] = RECORD_VERSION
        if with_alerts:
            rec["alerts"] = {fp: a.to_record() for fp, a in self.alerts.items()}
        rec["root"] = asdict(self.root) if self.root else None
        rec["suspects"] = [asdict(s) for s in self.suspects]
        rec["emitted"] = list(self.emitted)
        return rec

    @classmethod
    def from_record(cls, rec: dict[str, Any]) -> Incident:
        version = rec.get("v", 1)
        if version == 1:
            rec = _upgrade_v1(rec)
        elif version not in (2, RECORD_VERSION):
            raise ValueError(f"incident record version {version}, expected {RECORD_VERSION} "
                             "(written by a newer triage?)")
        inc = cls(rec["id"], rec["opened_at"])
        for k in _PLAIN:
            setattr(inc, k, rec[k])
        if "alerts" in rec:
            inc.alerts = {fp: AlertInfo.from_record(a) for fp, a in rec["alerts"].items()}
            inc.alerts_inline = True
        root = rec["root"]
        inc.root = (RootCause(**{**root, "candidates": tuple(root.get("candidates", ()))})
                    if root else None)
        inc.suspects = [Suspect(**s) for s in rec["suspects"]]
        inc.emitted = _tuplify(rec["emitted"])
        return inc


def alert_row_key(incident_id: str, fp: str) -> str:
    """The key of an alert's row beside its incident's record (``incident-id/fingerprint``)."""
    return f"{incident_id}/{fp}"


def alert_row(incident_id: str, fp: str, info: AlertInfo) -> dict[str, Any]:
    """One alert of an incident as a record of its own (``is_alert_row`` tells it apart)."""
    return {"incident": incident_id, "fp": fp, "alert": info.to_record()}


def is_alert_row(rec: dict[str, Any]) -> bool:
    """Whether a stored record is an ``alert_row`` rather than an incident."""
    return "alert" in rec and "incident" in rec


_PLAIN = ("id", "seq", "status", "opened_at", "last_seen", "resolved_at", "quiet_since",
          "first_seen", "episode", "onsets", "last_onset", "priority", "priority_since",
          "priority_reasons", "impact", "urgency", "users_affected", "users_at_risk", "at_risk",
          "owner_team", "owner_person", "owner_reason", "war_room_open", "war_room_reason",
          "war_room_at", "merged_into", "split_from", "split_into", "reopened", "reactivated",
          "pages", "paged_priority", "repage", "regroup", "decided_at", "update_pending",
          "needs_decision")


def _upgrade_v1(rec: dict[str, Any]) -> dict[str, Any]:
    """A record written before evidence kinds and episodes: its alerts get a kind and a
    strength from their name and severity, and the whole incident is one episode."""
    from triage.core.incidents.evidence import classify_kind, page_worthy, severity_level

    alerts = {}
    for fp, a in rec["alerts"].items():
        service, name, severity, status, first, last, flapping, flapped = a
        level = severity_level(severity)
        kind = classify_kind(name)
        strong = page_worthy(kind, level) and not flapped
        alerts[fp] = [service, name, level, kind, strong, status, first, first, last,
                      flapping, flapped]
    out = dict(rec, alerts=alerts, v=RECORD_VERSION, episode=rec["opened_at"],
               onsets=dict(rec["first_seen"]), last_onset=rec["last_seen"],
               users_at_risk=0, at_risk=[], split_from=None, split_into=[],
               pages=1 if rec.get("emitted") else 0, regroup=False,
               paged_priority=rec["priority"] if rec.get("emitted") else None, repage=False)
    root = out.get("root")
    if root:
        out["root"] = {**root, "inferred": False}
    emitted = list(out.get("emitted") or [])
    if emitted:  # material() grew two fields: split_into, pages
        out["emitted"] = [*emitted, [], out["pages"]]
    return out


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
