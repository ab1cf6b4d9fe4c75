"""Alertmanager's notification timing, replayed offline: which alerts a receiver gets, when.

An alert *series* is one label set with the intervals in which its rule was firing. Alerts
are grouped by ``group_by`` labels; a group's first notification goes out ``group_wait``
after its first alert, then the group is flushed every ``group_interval``. A flush sends a
notification when the group changed (an alert started or resolved since the last one) or,
with firing alerts, when ``repeat_interval`` passed since the last one; resolved alerts are
sent once, then leave the group; an empty group is deleted (Alertmanager's dispatcher and
its dedup stage, ``send_resolved: true``). An alert that fires and resolves between two
flushes, without ever being notified, is never seen by the receiver (as in Alertmanager).

The simulator uses it twice: with ``repeat_interval == group_interval`` to write the storm
triage receives (every firing alert re-sent at each group interval), and with Alertmanager's
defaults (30s, 5m, 4h) to count the notifications Alertmanager's grouping would send.

>>> s = Series({"alertname": "A", "service": "x"}, {}, [(0.0, 400.0)], "noise:test")
>>> [(n.at, len(n.firing), len(n.resolved)) for n in dispatch([s], group_wait=30,
...  group_interval=300, repeat_interval=300)]
[(30.0, 1, 0), (330.0, 1, 0), (630.0, 0, 1)]
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field


@dataclass(slots=True)
class Series:
    """One alert (label set) and when it fired; ``truth`` is an incident id or
    ``noise:<kind>``; ``route`` picks the route's timers (``fast`` for flapping rules)."""

    labels: dict[str, str]
    annotations: dict[str, str]
    intervals: list[tuple[float, float]]  # [start, end) firing, sorted, disjoint
    truth: str
    route: str = "default"
    _starts: list[float] = field(default_factory=list, repr=False)

    def firing_at(self, t: float) -> tuple[float, float] | None:
        """The firing interval containing ``t``, if any."""
        if len(self.intervals) == 1:
            a, b = self.intervals[0]
            return self.intervals[0] if a <= t < b else None
        if not self._starts:
            self._starts = [a for a, _ in self.intervals]
        i = bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.intervals[i][1]:
            return self.intervals[i]
        return None

    def last_end_before(self, t: float) -> float:
        """End of the last interval that ended at or before ``t``."""
        ends = [b for _, b in self.intervals if b <= t]
        return ends[-1] if ends else t


@dataclass(slots=True)
class Notification:
    """One webhook notification: the group, when, and the alerts in it (series indexes)."""

    at: float
    group: tuple[str, ...]
    firing: list[int]
    resolved: list[int]
    route: str = "default"


@dataclass(frozen=True, slots=True)
class Timers:
    group_wait: float = 30.0
    group_interval: float = 300.0
    repeat_interval: float = 14400.0


def dispatch(
    series: Sequence[Series],
    *,
    group_by: tuple[str, ...] = ("alertname", "service"),
    group_wait: float = 30.0,
    group_interval: float = 300.0,
    repeat_interval: float = 14400.0,
    routes: dict[str, Timers] | None = None,
    muted: Callable[[Series], bool] | None = None,
) -> list[Notification]:
    """Every notification Alertmanager would send for ``series``, in time order.

    ``routes`` overrides the timers for series whose ``route`` names one; ``muted`` series
    (silenced) are never sent."""
    default = Timers(group_wait, group_interval, repeat_interval)
    groups: dict[tuple[str, ...], list[int]] = {}
    for i, s in enumerate(series):
        if muted is not None and muted(s):
            continue
        key = (s.route, *(s.labels.get(k, "") for k in group_by))
        groups.setdefault(key, []).append(i)
    out: list[Notification] = []
    for key, members in groups.items():
        timers = (routes or {}).get(key[0], default)
        out += _group(series, key, members, timers)
    out.sort(key=lambda n: (n.at, n.group))
    return out


def _group(series: Sequence[Series], key: tuple[str, ...], members: list[int],
           timers: Timers) -> list[Notification]:
    starts = sorted((a, i) for i in members for a, _ in series[i].intervals)
    out: list[Notification] = []
    pos = 0
    while pos < len(starts):
        created = starts[pos][0]
        flush = created + timers.group_wait
        notified: set[int] = set()
        last_sent = float("-inf")
        while True:
            firing = {i for i in members if series[i].firing_at(flush) is not None}
            resolved = notified - firing
            changed = firing != notified
            if (firing or resolved) and (changed or (
                    firing and flush - last_sent >= timers.repeat_interval - 1e-9)):
                out.append(Notification(flush, key[1:], sorted(firing), sorted(resolved),
                                        key[0]))
                last_sent = flush
                notified = firing
            if not firing:
                break
            flush += timers.group_interval
        while pos < len(starts) and starts[pos][0] < flush:
            pos += 1  # alerts that started while the group existed were handled by it
    return out
