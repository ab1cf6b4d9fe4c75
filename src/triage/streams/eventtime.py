"""Stage 2's clock over several upstream partitions: a watermark per stage-1 partition, the
clock their minimum, and the records that arrived ahead of it held back until it passes
them. No Kafka and no event loop here.

**Why.** Every stage-1 partition of ``alerts.raw`` has its own event-time clock (its
pipeline's watermark), and each sends its records, and a clock record now and then, to the
stage-2 partitions. One stage-2 partition so hears from all of them, each in order but
interleaved however the consumers happened to read: with a backlog on six partitions one
stage-1 partition can be two hours of event time ahead of another. A stage-2 clock that
follows the fastest of them made every alert of the others "late", and the incidents
depended on the interleaving (issue 12).

**How** (as Flink's watermarks with idleness):

* each record names its upstream partition, how many there are, whether that upstream is
  idle (caught up with its input, and its clock with the others': nothing earlier can come
  from it) and whether it has read all its input: ``"up": [partition, partitions, idle,
  drained]``; its ``t`` is the upstream's clock, which never goes back;
* the clock is the minimum of the watermarks of the upstreams that are *live*: not idle, and
  heard from within ``idle_timeout`` seconds of wall time (an upstream never heard from
  counts as live, with no watermark, until ``idle_timeout`` after the partition started);
  with no live upstream it is the largest watermark heard. It never goes back;
* a record stamped after the clock is *held*; held records are released in event-time order
  (time, upstream, arrival) once the clock reaches them, so stage 2 sees the stream of all
  upstreams merged in event time, whatever the interleaving;
* a record stamped before the clock (its upstream was idle or silent, and the clock moved
  on without it) is *late*: applied at once at the clock, and counted. Nothing is dropped.

**Held records are not state.** They stay in memory, and in Kafka: the worker acknowledges
a record's offset only once every record up to it has been applied (``safe_offset``), so the
consumer's committed offset never passes a held record, and a restart reads it again. What
was applied after it is recognised on the way by its upstream's applied offset
(``applied``: released in event-time order, an upstream's records are applied in the order
they arrived), and skipped. An earlier design kept the held records in the partition's state
as one value; a backlog on several partitions held most of itself there and the worker
stalled (BENCHMARKS.md, issue 12).

One upstream partition: every record is at the clock, nothing is held, and stage 2 is what
it was.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass, field
from typing import Any

IDLE_TIMEOUT = 30.0  # wall seconds of silence after which an upstream stops holding the clock


@dataclass(order=True, slots=True)
class Held:
    """A record waiting for the clock: ordered by (time, upstream, arrival)."""

    t: float
    upstream: int
    seq: int
    offset: int = field(compare=False)
    item: Any = field(compare=False, default=None)  # the decoded record


class UpstreamClock:
    """Per-upstream watermarks, the clock they allow, and the records held for it.

    >>> c = UpstreamClock(started=0.0)
    >>> c.note(0, 2, 10.0, False, wall=0.0), c.note(1, 2, 4.0, False, wall=0.0)
    (True, True)
    >>> c.safe_time(0.0, wall=0.0)   # the slower upstream holds the clock
    4.0
    >>> c.note(1, 2, 12.0, True, wall=1.0)  # it caught up, and says it is idle
    True
    >>> c.safe_time(4.0, wall=1.0)
    10.0
    """

    __slots__ = ("_reported", "_seq", "ahead", "drained", "heard", "held", "idle",
                 "idle_timeout", "marks", "started", "upstreams")

    def __init__(self, *, started: float, idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.idle_timeout = idle_timeout
        self.started = started
        self.upstreams = 0  # how many stage-1 partitions there are (the largest heard)
        self.marks: dict[int, float] = {}
        self.idle: dict[int, bool] = {}
        # whether it has read all its input (idle may wait for its clock to catch up too)
        self.drained: dict[int, bool] = {}
        # the time of its next waiting message, if later than its clock (for stage 1's
        # partitions to follow each other: IntakeStage.low_mark; not this clock's concern)
        self.ahead: dict[int, float] = {}
        self.heard: dict[int, float] = {}
        self.held: list[Held] = []
        self._reported: list[float] = []  # every time an upstream reported, not passed yet
        self._seq = 0

    def note(self, upstream: int, upstreams: int, t: float, idle: bool, *, wall: float,
             drained: bool | None = None, ahead: float | None = None) -> bool:
        """A record from ``upstream`` (of ``upstreams``) stamped ``t``; True if its clock
        moved."""
        if upstreams > self.upstreams:
            self.upstreams = upstreams
        moved = t > self.marks.get(upstream, float("-inf"))
        if moved:
            self.marks[upstream] = t
            heapq.heappush(self._reported, t)
        self.idle[upstream] = idle
        self.drained[upstream] = idle if drained is None else drained
        if ahead is not None:
            self.ahead[upstream] = ahead
        else:
            self.ahead.pop(upstream, None)
        self.heard[upstream] = wall
        return moved

    def live(self, wall: float) -> list[int]:
        """The upstreams that hold the clock back now."""
        out = []
        for u in range(self.upstreams):
            if self.idle.get(u, False):
                continue
            if wall - self.heard.get(u, self.started) < self.idle_timeout:
                out.append(u)
        return out

    def safe_time(self, clock: float, *, wall: float) -> float:
        """The clock the upstreams allow (never less than ``clock``)."""
        live = self.live(wall)
        if live:
            candidate = min(self.marks.get(u, float("-inf")) for u in live)
        else:
            candidate = max(self.marks.values(), default=clock)
        return candidate if candidate > clock else clock

    def steps(self, after: float, until: float) -> list[float]:
        """The times a clock moving from ``after`` to ``until`` passes on the way: every
        time an upstream reported in between (not only its latest: one upstream may report
        two times before the clock moves), then ``until``. Stage 2's timers so fire at the
        times ``triage run`` would fire them, one line at a time.

        >>> c = UpstreamClock(started=0.0)
        >>> c.note(0, 2, 5.0, True, wall=0.0), c.note(0, 2, 7.0, True, wall=0.0)
        (True, True)
        >>> c.note(1, 2, 9.0, True, wall=0.0)
        True
        >>> c.steps(1.0, 20.0), c.steps(20.0, 20.0)
        ([5.0, 7.0, 9.0, 20.0], [20.0])
        """
        reported = self._reported
        if not reported or reported[0] > until:
            return [until]
        passed = set()
        while reported and reported[0] <= until:
            t = heapq.heappop(reported)
            if t > after:
                passed.add(t)
        passed.add(until)
        return sorted(passed)

    def hold(self, t: float, upstream: int, offset: int, item: Any) -> None:
        self._seq += 1
        heapq.heappush(self.held, Held(t, upstream, self._seq, offset, item))

    def due(self, clock: float) -> list[Held]:
        """Held records stamped at or before ``clock``, in event-time order."""
        out: list[Held] = []
        held = self.held
        while held and held[0].t <= clock:
            out.append(heapq.heappop(held))
        return out

    def lowest_held_offset(self) -> int | None:
        """The smallest input offset among the held records (None: nothing held)."""
        return min((h.offset for h in self.held), default=None)

    # -- state ---------------------------------------------------------------------------

    def marks_record(self) -> dict[str, Any]:
        """The watermarks, for the partition's meta record."""
        return {"n": self.upstreams,
                "marks": {str(u): [t, self.idle.get(u, False)] for u, t in self.marks.items()},
                "reported": sorted(self._reported)}

    def restore_marks(self, rec: dict[str, Any], wall: float) -> None:
        self.upstreams = int(rec.get("n", 0))
        self._reported = [float(t) for t in rec.get("reported") or ()]
        heapq.heapify(self._reported)
        for u, (t, idle) in (rec.get("marks") or {}).items():
            self.marks[int(u)] = float(t)
            self.idle[int(u)] = bool(idle)
            self.heard[int(u)] = wall
