"""Deduplication and flap detection, keyed by fingerprint.

Semantics (times are the pipeline's event-time clock, ``now``):

* The first ``firing`` observation of a fingerprint is a new occurrence and is passed on.
  Repeats of a firing alert update ``last_seen`` and ``count`` and are ``Deduplicated``.
* A ``resolved`` observation closes the occurrence (passed on once). Firing again after that
  is a new occurrence (``occurrence`` + 1). Observations older than the state they would
  change (a late replay of an earlier occurrence) are ``Deduplicated`` as stale, which makes
  replaying the same input idempotent.
* A resolved notification for an alert never seen firing is ``Suppressed``
  (``resolved_unseen``): nothing downstream knows it, so there is nothing to close.
* Flapping: more than ``max_changes`` firing/resolved changes within ``window`` marks the alert
  flapping. It is passed on once as ``flapping``; further changes are ``Suppressed`` with
  reason ``flapping`` until no change has happened for ``stable_after``, when one ``stable``
  outcome carries the state it settled in.
* ``keep_firing_for`` (a tuned rule's, ``observe(..., keep=)``): the resolution of a passed
  alert is held that long (``Suppressed`` as ``kept``). Firing again meanwhile continues the
  occurrence (``Deduplicated``: no new page); otherwise the resolution is passed on by
  ``sweep`` when the time is up, with the time it really resolved.
* State is bounded. A firing alert expires into ``resolved`` at its ``endsAt`` when the sender
  gave one (Alertmanager API v2 "valid until"), else after the source's resolve timeout
  without a repeat (as Alertmanager's ``resolve_timeout``). Resolved alerts are forgotten
  ``retention`` after they resolved.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from sys import intern
from typing import Any

from triage.core.types import Alert, Deduplicated, Outcome, Suppressed, Triaged

# Sources that repeat an active alert continuously (every evaluation / resend interval)
# resolve quickly when they stop; notification sources repeat only every repeat_interval
# (Alertmanager's default is 4h) and send explicit resolves, so they get a long timeout.
CONTINUOUS_SOURCES = frozenset({"alertmanager-api-v2", "prometheus-api-v1", "generic"})


@dataclass(frozen=True, slots=True)
class DedupPolicy:
    """Timeouts, in seconds. ``resolve_timeouts`` overrides the timeout per source."""

    resolve_timeout: float = 300.0
    notification_timeout: float = 86400.0
    retention: float = 3600.0
    resolve_timeouts: Mapping[str, float] = field(default_factory=dict)

    def timeout_for(self, source: str) -> float:
        """Seconds without a repeat after which a firing alert from ``source`` resolves."""
        explicit = self.resolve_timeouts.get(source)
        if explicit is not None:
            return explicit
        return self.resolve_timeout if source in CONTINUOUS_SOURCES else self.notification_timeout


@dataclass(frozen=True, slots=True)
class Hold:
    """Keep a new firing occurrence back until ``until`` (a tuned ``for`` duration)."""

    until: float
    detail: str
    by: str | None = None


@dataclass(frozen=True, slots=True)
class FlapPolicy:
    """An alert changing state more than ``max_changes`` times in ``window`` is flapping."""

    enabled: bool = True
    max_changes: int = 4
    window: float = 600.0
    stable_after: float = 600.0


class AlertState:
    """What triage remembers about one fingerprint. Kept small: one per active alert.

    The labels are kept as two tuples, the names shared by every alert with the same label
    names and the values, rather than a dict per alert (104 B instead of 272 B for 7
    labels): ``labels`` rebuilds the dict, which only timeouts, resolves, the persisted
    record and the read API need.
    """

    __slots__ = (
        "changes",
        "count",
        "ends_at",
        "first_seen",
        "flapping",
        "held_until",
        "keep",
        "kept_until",
        "label_names",
        "label_values",
        "last_seen",
        "occurrence",
        "queued",
        "source",
        "starts_at",
        "status",
        "timed_out",
        "timeout",
    )

    def __init__(self, alert: Alert, now: float, timeout: float) -> None:
        self.status = alert.status
        self.starts_at = alert.starts_at
        self.ends_at = alert.ends_at
        self.first_seen = now
        self.last_seen = now
        self.count = 1
        self.occurrence = 1
        self.changes: list[float] | None = None
        self.flapping = False
        self.timed_out = False
        self.held_until: float | None = None
        self.keep = 0.0  # keep_firing_for of the alert's tuned rule
        self.kept_until: float | None = None  # resolved, held until then (keep_firing_for)
        self.label_names, self.label_values = _compact(alert.labels)
        self.source = alert.source
        self.timeout = timeout
        self.queued: float | None = None  # the earliest deadline in the store's sweep heap

    @property
    def labels(self) -> dict[str, str]:
        """The label set (a new dict: change it with ``set_labels``)."""
        return dict(zip(self.label_names, self.label_values, strict=True))

    def set_labels(self, labels: Mapping[str, str]) -> None:
        """Keep ``labels`` (compactly) as this alert's label set."""
        self.label_names, self.label_values = _compact(labels)

    def to_record(self) -> list[Any]:
        """A JSON-ready list (compact: persisted for every active alert)."""
        return [self.status, self.starts_at, self.ends_at, self.first_seen, self.last_seen,
                self.count, self.occurrence, self.changes, self.flapping, self.timed_out,
                self.labels, self.source, self.timeout, self.held_until, self.keep,
                self.kept_until]

    @classmethod
    def from_record(cls, rec: list[Any]) -> AlertState:
        """Inverse of ``to_record``."""
        st = cls.__new__(cls)
        (st.status, st.starts_at, st.ends_at, st.first_seen, st.last_seen, st.count,
         st.occurrence, st.changes, st.flapping, st.timed_out, labels, st.source,
         st.timeout, st.held_until) = rec[:14]
        # records written before keep_firing_for have 14 fields
        st.keep, st.kept_until = (rec[14], rec[15]) if len(rec) > 15 else (0.0, None)
        st.set_labels(labels)
        st.queued = None
        return st


class DedupStore:
    """Dedup and flap state for every known fingerprint.

    >>> from triage.core.types import Alert
    >>> store = DedupStore()
    >>> a = Alert({"alertname": "Up"}, {}, "firing", 0.0, None, 0.0, "generic", fingerprint="f")
    >>> [store.observe(a, now=t).kind for t in (0.0, 30.0)]
    ['triaged', 'deduplicated']
    """

    def __init__(self, policy: DedupPolicy | None = None, flap: FlapPolicy | None = None) -> None:
        self.policy = policy or DedupPolicy()
        self.flap = flap or FlapPolicy()
        self.states: dict[str, AlertState] = {}
        # Fingerprints changed / forgotten since the last ``take_changes`` (for persistence).
        # Not kept until the store is first saved or loaded: a store nobody saves (serve or
        # run without --state) would otherwise remember every fingerprint it ever saw.
        self._dirty: set[str] = _Untracked()
        self._removed: set[str] = _Untracked()
        # When each state next needs the sweep, earliest first. An entry may be early (a
        # repeat moved the deadline later): the sweep looks again and re-queues it. So a
        # sweep costs the states due, not all of them. The earliest entry queued for a
        # state is its ``queued`` (a slot, not a second dict keyed by fingerprint).
        self._due: list[tuple[float, str]] = []

    def __len__(self) -> int:
        return len(self.states)

    def get(self, fingerprint: str) -> AlertState | None:
        """The state of ``fingerprint``, if known."""
        return self.states.get(fingerprint)

    def observe(self, alert: Alert, now: float, hold: Hold | None = None,
                keep: float | None = None) -> Outcome:
        """Apply one observation (``alert.status`` firing or resolved) and say what it was.

        ``hold`` (a tuned ``for`` duration not yet elapsed) keeps a new firing occurrence
        back: it is ``Suppressed`` as ``held`` now and passed on by ``sweep`` at
        ``hold.until`` if it is still firing then; resolved before that, it never pages.
        ``keep`` (a firing alert's tuned ``keep_firing_for``; None: unchanged) holds its
        later resolution.
        """
        out = self._observe(alert, now, hold)
        if keep is not None and alert.status == "firing":
            st = self.states.get(alert.fingerprint)
            if st is not None and st.status == "firing" and st.keep != keep:
                st.keep = keep
                self._dirty.add(alert.fingerprint)
        if not (isinstance(out, Deduplicated) and not out.stale):
            st = self.states.get(alert.fingerprint)
            if st is not None:
                self._plan(alert.fingerprint, st)
        return out

    def _plan(self, fp: str, st: AlertState) -> None:
        due = self._deadline(st)
        if due is None:
            return
        queued = st.queued
        if queued is None or due < queued:
            st.queued = due
            heapq.heappush(self._due, (due, fp))

    def _deadline(self, st: AlertState) -> float | None:
        """When ``sweep`` may next have something to do with ``st``."""
        if st.kept_until is not None:
            return st.kept_until
        if st.held_until is not None and st.status == "firing":
            quiet = st.ends_at if st.ends_at is not None else st.last_seen + st.timeout
            return min(st.held_until, quiet)
        if st.status == "firing" and not st.flapping:
            return st.ends_at if st.ends_at is not None else st.last_seen + st.timeout
        if st.flapping:
            last_change = st.changes[-1] if st.changes else st.last_seen
            return last_change + self.flap.stable_after
        if st.status == "resolved":
            resolved_at = st.ends_at if st.ends_at is not None else st.last_seen
            return resolved_at + self.policy.retention
        return None

    def _observe(self, alert: Alert, now: float, hold: Hold | None = None) -> Outcome:
        fp = alert.fingerprint
        st = self.states.get(fp)
        if st is None:
            st = AlertState(alert, now, self.policy.timeout_for(alert.source))
            if alert.status == "firing" and hold is not None and hold.until > now:
                st.occurrence = 0
                st.held_until = hold.until
                self.states[fp] = st
                self._dirty.add(fp)
                return Suppressed(alert, "held", hold.detail, by=hold.by)
            if alert.status != "firing":
                # Remember it anyway (occurrence 0): a firing of the same occurrence arriving
                # after its own resolve is then recognised as stale, and replays agree.
                st.occurrence = 0
                if st.ends_at is None:
                    st.ends_at = now
                self.states[fp] = st
                self._dirty.add(fp)
                return Suppressed(alert, "resolved_unseen",
                                  "resolved notification for an alert triage never saw firing")
            self.states[fp] = st
            self._dirty.add(fp)
            self._removed.discard(fp)
            return Triaged(alert, "firing", 1, 1, now, now)

        self._dirty.add(fp)
        if alert.status == "firing":
            if st.kept_until is not None:
                return self._continue(fp, st, alert, now)
            if st.status == "firing":
                st.count += 1
                if now > st.last_seen:
                    st.last_seen = now
                if alert.ends_at is not None:
                    moved_back = st.ends_at is not None and alert.ends_at < st.ends_at
                    st.ends_at = alert.ends_at  # "valid until" moves forward with each resend
                    if moved_back:
                        self._plan(fp, st)
                return Deduplicated(alert, st.count)
            if _older_than_resolution(st, alert):
                return Deduplicated(alert, st.count, stale=True)
            return self._change(st, alert, now, hold)

        # resolved
        if st.held_until is not None and st.status == "firing":
            if alert.ends_at is not None and alert.ends_at <= st.starts_at:
                return Deduplicated(alert, st.count, stale=True)
            st.status = "resolved"
            st.ends_at = alert.ends_at if alert.ends_at is not None else now
            st.held_until = None
            return Suppressed(alert, "held", "resolved before its tuned `for` elapsed; "
                                             "never passed on")
        if st.kept_until is not None:  # already resolving (kept): a repeat
            st.count += 1
            return Deduplicated(alert, st.count)
        if st.status == "resolved":
            st.count += 1
            if alert.ends_at is not None and (st.ends_at is None or alert.ends_at > st.ends_at):
                st.ends_at = alert.ends_at  # the latest resolution known bounds what is stale
            return Deduplicated(alert, st.count)
        if alert.ends_at is not None and alert.ends_at <= st.starts_at:
            return Deduplicated(alert, st.count, stale=True)  # closes an older occurrence
        if st.keep and not st.flapping and st.occurrence > 0:
            resolved_at = alert.ends_at if alert.ends_at is not None else now
            self._keep(st, resolved_at)
            return Suppressed(alert, "kept", f"resolved; kept firing until {_dur(st.keep)} "
                                             "after (tuned keep_firing_for): firing again "
                                             "before then is the same page")
        return self._change(st, alert, now)

    @staticmethod
    def _keep(st: AlertState, resolved_at: float) -> None:
        """Hold a resolution for the rule's ``keep_firing_for``."""
        st.ends_at = resolved_at
        st.kept_until = resolved_at + st.keep

    def _continue(self, fp: str, st: AlertState, alert: Alert, now: float) -> Deduplicated:
        """A firing observation while the resolution is kept: the same occurrence goes on,
        unless the observation is older than the resolution (a late or replayed one)."""
        if _older_than_resolution(st, alert):
            return Deduplicated(alert, st.count, stale=True)
        st.kept_until = None
        st.timed_out = False
        st.ends_at = alert.ends_at
        st.count += 1
        st.last_seen = max(st.last_seen, now)
        self._plan(fp, st)
        return Deduplicated(alert, st.count)

    def _change(self, st: AlertState, alert: Alert, now: float,
                hold: Hold | None = None) -> Outcome:
        """A firing↔resolved transition: count it for flap detection, then pass it on."""
        st.status = alert.status
        st.last_seen = max(st.last_seen, now)
        if alert.status == "firing":
            st.set_labels(alert.labels)
            st.starts_at = alert.starts_at
            st.ends_at = alert.ends_at
            st.timed_out = False
        else:
            st.ends_at = alert.ends_at if alert.ends_at is not None else now
            # Resolves may carry only the identifying labels (PagerDuty: dedup_key); what
            # is passed on describes the alert as it fired.
            alert.labels = {**st.labels, **alert.labels}
        flap = self.flap
        if flap.enabled and st.occurrence > 0:
            changes = st.changes or []
            cutoff = now - flap.window
            changes = [t for t in changes if t > cutoff]
            changes.append(now)
            st.changes = changes
            if st.flapping:
                return Suppressed(alert, "flapping",
                                  f"flapping: {len(changes)} state changes in the last "
                                  f"{_dur(flap.window)}; held until stable for "
                                  f"{_dur(flap.stable_after)}")
            if len(changes) > flap.max_changes:
                st.flapping = True
                return Triaged(alert, "flapping", st.occurrence, st.count, st.first_seen, now,
                               flapping=True,
                               reason=f"{len(changes)} state changes in {_dur(flap.window)} "
                                      f"(more than {flap.max_changes})")
        if alert.status == "firing":
            st.count = 1
            st.first_seen = now
            if hold is not None and hold.until > now:
                st.held_until = hold.until
                return Suppressed(alert, "held", hold.detail, by=hold.by)
            st.occurrence += 1
            return Triaged(alert, "firing", st.occurrence, 1, now, now)
        return Triaged(alert, "resolved", st.occurrence, st.count, st.first_seen, now)

    def sweep(self, now: float) -> list[Triaged]:
        """Expire state at ``now``: resolve timed-out firing alerts, end flapping that has
        settled, forget resolved alerts past retention. Returns the changes to pass on, in
        the order they fell due."""
        out: list[Triaged] = []
        due, states = self._due, self.states
        while due and due[0][0] <= now:
            at, fp = heapq.heappop(due)
            st = states.get(fp)
            if st is None or st.queued != at:
                continue  # forgotten, or superseded by an earlier entry
            st.queued = None
            deadline = self._deadline(st)
            if deadline is not None and deadline > now:
                self._plan(fp, st)  # a repeat moved it later
                continue
            if self._expire(fp, st, now, out):
                del self.states[fp]
                self._dirty.discard(fp)
                self._removed.add(fp)
            else:
                self._plan(fp, st)
        return out

    def _expire(self, fp: str, st: AlertState, now: float, out: list[Triaged]) -> bool:
        """What the sweep does to one state that fell due; True: forget it."""
        if st.kept_until is not None:
            if now >= st.kept_until:
                kept = st.kept_until
                st.kept_until = None
                st.status = "resolved"
                self._dirty.add(fp)
                out.append(Triaged(self._synthetic(fp, st, kept), "resolved", st.occurrence,
                                   st.count, st.first_seen, st.last_seen,
                                   reason=f"resolved; keep_firing_for {_dur(st.keep)} "
                                          "elapsed"))
            return False
        if st.held_until is not None and st.status == "firing":
            if now >= st.held_until:
                release = st.held_until
                st.held_until = None
                st.occurrence += 1
                self._dirty.add(fp)
                out.append(Triaged(self._synthetic(fp, st, release), "firing", st.occurrence,
                                   st.count, st.first_seen, st.last_seen,
                                   reason="held until its tuned `for` elapsed"))
                return False
            deadline = st.ends_at if st.ends_at is not None else st.last_seen + st.timeout
            if now >= deadline:  # gone quiet before its `for` elapsed: never pages
                st.status = "resolved"
                st.ends_at = deadline
                st.held_until = None
                st.timed_out = True
                self._dirty.add(fp)
            return False
        if st.status == "firing" and not st.flapping:
            if st.ends_at is not None:
                deadline, reason = st.ends_at, "ends_at_passed"
            else:
                deadline, reason = st.last_seen + st.timeout, "resolve_timeout"
            if now >= deadline:
                st.timed_out = True
                self._dirty.add(fp)
                if st.keep and st.occurrence > 0:
                    self._keep(st, deadline)
                    return False
                st.status = "resolved"
                st.ends_at = deadline
                out.append(Triaged(self._synthetic(fp, st, deadline), "resolved",
                                   st.occurrence, st.count, st.first_seen, st.last_seen,
                                   reason=reason))
            return False
        if st.flapping:
            last_change = st.changes[-1] if st.changes else st.last_seen
            if now - last_change >= self.flap.stable_after:
                st.flapping = False
                st.changes = None
                self._dirty.add(fp)
                out.append(Triaged(self._synthetic(fp, st, now), "stable", st.occurrence,
                                   st.count, st.first_seen, st.last_seen,
                                   reason=f"no state change for {_dur(self.flap.stable_after)}"))
            return False
        resolved_at = st.ends_at if st.ends_at is not None else st.last_seen
        return st.status == "resolved" and now - resolved_at >= self.policy.retention

    @staticmethod
    def _synthetic(fp: str, st: AlertState, at: float) -> Alert:
        return Alert(labels=st.labels, annotations={}, status=st.status,
                     starts_at=st.starts_at, ends_at=st.ends_at, at=at, source=st.source,
                     fingerprint=fp)

    # -- persistence -------------------------------------------------------------------------

    def take_changes(self) -> tuple[dict[str, list[Any]], set[str]]:
        """Records changed and fingerprints forgotten since the last call (then resets).
        The first call, on a store never loaded, returns every state: none was saved."""
        if isinstance(self._dirty, _Untracked):
            changed = {fp: st.to_record() for fp, st in self.states.items()}
        else:
            changed = {fp: self.states[fp].to_record() for fp in self._dirty
                       if fp in self.states}
        removed = set(self._removed)
        self._dirty = set()
        self._removed = set()
        return changed, removed

    def load(self, records: Iterable[tuple[str, list[Any]]]) -> None:
        """Restore state saved with ``take_changes``. Changes are tracked from here on."""
        if isinstance(self._dirty, _Untracked):
            self._dirty, self._removed = set(), set()
        for fp, rec in records:
            st = self.states[fp] = AlertState.from_record(rec)
            self._plan(fp, st)

    def records(self) -> Iterator[tuple[str, list[Any]]]:
        """Every state as (fingerprint, record)."""
        for fp, st in self.states.items():
            yield fp, st.to_record()


def _older_than_resolution(st: AlertState, alert: Alert) -> bool:
    """Whether a firing observation belongs to the occurrence ``st`` resolved (a late or
    replayed copy) rather than a new firing."""
    resolved_at = st.ends_at if st.ends_at is not None else st.last_seen
    if st.timed_out:
        # Triage resolved it, not the sender: it is back only if this observation is newer
        # than the timeout (API v2 resends carry a later "valid until").
        seen = alert.ends_at if alert.ends_at is not None else alert.at
        return seen <= resolved_at
    return alert.starts_at <= resolved_at


class _Untracked(set[str]):
    """The change sets of a store not saved yet: additions are dropped."""

    def add(self, element: str) -> None:
        return None


# Label-name tuples shared by every state whose alert has the same label names. Bounded, so
# a sender inventing label names cannot grow it without end: past the bound a state keeps
# a tuple of its own (correct, only larger).
_NAME_SETS: dict[tuple[str, ...], tuple[str, ...]] = {}
MAX_NAME_SETS = 4096


def _compact(labels: Mapping[str, str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    # State outlives the payload it came from; interning lets thousands of active alerts share
    # one copy of "critical", "prod" or a service name (a third of the memory per alert).
    names = tuple(labels)
    shared = _NAME_SETS.get(names)
    if shared is None:
        shared = tuple(intern(k) for k in names)
        if len(_NAME_SETS) < MAX_NAME_SETS:
            _NAME_SETS[shared] = shared
    return shared, tuple([intern(v) for v in labels.values()])


def _dur(seconds: float) -> str:
    if seconds % 3600 == 0:
        return f"{int(seconds // 3600)}h"
    if seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    return f"{seconds:g}s"
