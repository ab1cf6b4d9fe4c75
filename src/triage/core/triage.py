"""Both stages and the glue between them, as one object: what ``triage run``, ``triage serve``
and the benchmarks drive, so that none of them joins the stages itself.

Stage 1 (``Pipeline``) turns a payload into outcomes; stage 2 (``IncidentEngine``) observes
them at stage 1's clock; change records stage 1 finds in the stream go to the engine's change
index. ``Triage.process`` does that for one payload, ``Triage.tick`` moves both clocks with
no input, ``Triage.flush`` decides what waits at the end of an input; ``Triage.snapshot``
and ``Triage.restore`` save and load its state in the one format every state store keeps
(``triage.core.snapshot``). A bug in stage 2 is
caught and returned as a ``Failed`` (the caller dead-letters it): a long replay or a server
never stops on one.

The partitioned Kafka path runs the two stages on different partitions, joined by a topic
(``triage.streams.stages``), so no one object can hold both: its stage 1 is ``Pipeline``,
as here, and its stage 2 goes through ``correlate``, the same step ``Triage`` takes (the
engine at the clock, a bug turned into a ``Failed``). Everything else goes through
``Triage``.

>>> t = Triage(Pipeline(), IncidentEngine())
>>> step = t.process(b'{"alertname": "Down", "service": "db", "severity": "critical", "at": 5}')
>>> [o.kind for o in step.outcomes], step.events, t.clock
(['triaged'], [], 5.0)
>>> [e["type"] for e in t.tick(200.0).events]   # its page delay has passed
['incident.created']
>>> u = Triage(Pipeline(), IncidentEngine()); _ = u.restore(t.snapshot().tables())
>>> u.clock, sorted(u.engine.incidents) == sorted(t.engine.incidents)
(200.0, True)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from time import perf_counter
from typing import Any, NamedTuple

from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.snapshot import Delta, restore_state, take_state
from triage.core.types import Failed, Outcome


def correlate(engine: IncidentEngine, outcomes: Iterable[Outcome], at: float,
              raw: Any = None, source: str | None = None
              ) -> tuple[list[dict[str, Any]], Failed | None]:
    """Stage 2's step: ``engine`` observes stage-1 ``outcomes`` at event time ``at``
    (none: its clock moves to ``at``, and its timers fire). Returns the incident events,
    and a bug of the engine caught as a ``Failed`` naming ``raw`` (what was being
    processed) and ``source``, for the caller to dead-letter: a long replay, a server or a
    worker never stops on one.

    >>> events, failure = correlate(IncidentEngine(), [], 10.0)
    >>> events, failure
    ([], None)
    """
    try:
        return engine.observe(outcomes, at), None
    except Exception as exc:  # the boundary: a bug in stage 2 must not stop the stream
        text = raw.decode("utf-8", "backslashreplace") if isinstance(
            raw, bytes | bytearray) else ("" if raw is None else str(raw))
        return [], Failed(type(exc).__name__, "",
                          f"internal error in the incident stage: {exc!r}", text, source)


class Step(NamedTuple):
    """What one payload (or one clock move) did: stage 1's outcomes, stage 2's events, a
    failure of stage 2 (None if it had none), and the seconds each stage took."""

    outcomes: list[Outcome]
    events: list[dict[str, Any]]
    failure: Failed | None = None
    seconds: tuple[float, float] = (0.0, 0.0)


class Triage:
    """A pipeline and, optionally, an incident engine (stage 1 alone without one)."""

    def __init__(self, pipeline: Pipeline, engine: IncidentEngine | None = None) -> None:
        self.pipeline = pipeline
        self.engine = engine
        if engine is not None:
            pipeline.on_change = engine.add_change  # a deploy in the stream: a suspect

    @property
    def clock(self) -> float:
        """Event time so far (stage 1's watermark)."""
        return self.pipeline.watermark

    def process(self, raw: Any, now: float | None = None) -> Step:
        """Triage one payload (bytes, text or decoded JSON; ``now``: its receive time), then
        correlate its outcomes at the clock."""
        started = perf_counter()
        outcomes = self.pipeline.process(raw, now)
        return self._correlate(outcomes, self.pipeline.watermark, started, raw)

    def tick(self, now: float) -> Step:
        """Move both clocks to ``now`` with no input: alerts time out, holds are released
        (if a sweep is due), pages whose delay has passed are decided."""
        started = perf_counter()
        pipeline = self.pipeline
        swept: list[Outcome] = pipeline.tick(now) if now >= pipeline.next_sweep else []
        return self._correlate(swept, max(now, pipeline.watermark), started, None)

    def flush(self) -> list[dict[str, Any]]:
        """The input has ended: pages still inside their delay are decided now."""
        if self.engine is None:
            return []
        return self.engine.flush_pages(self.pipeline.watermark)

    def snapshot(self) -> Delta:
        """What changed in both stages since the last snapshot (everything, the first time
        after construction), to store."""
        return take_state(self.pipeline, self.engine)

    def restore(self, tables: Mapping[str, Mapping[str, Any]]) -> Mapping[str, Any]:
        """Load stored snapshot tables into both stages; returns the meta table (where the
        store's input stood)."""
        return restore_state(tables, self.pipeline, self.engine)

    def _correlate(self, outcomes: list[Outcome], at: float, started: float,
                   raw: Any) -> Step:
        intake_done = perf_counter()
        if self.engine is None:
            return Step(outcomes, [], None, (intake_done - started, 0.0))
        events, failure = correlate(self.engine, outcomes, at, raw)
        return Step(outcomes, events, failure,
                    (intake_done - started, perf_counter() - intake_done))
