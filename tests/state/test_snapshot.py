"""One snapshot format for both state stores (issue 12, part 3): the SQLite state file of
``triage run``/``serve`` and the Kafka stages' tables hold the same records, and either
brings back the same pipeline and engine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from tests.integration.storms import storm
from triage.core import snapshot
from triage.core.incidents import IncidentEngine
from triage.core.matchers import parse_matchers
from triage.core.pipeline import Pipeline
from triage.core.silences import Silence
from triage.core.triage import Triage
from triage.state.statefile import StateFile
from triage.streams.stages import (
    IncidentStage,
    IntakeStage,
    stored_tables,
    stored_writes,
)


def state_of(pipeline: Pipeline, engine: IncidentEngine | None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "alerts": sorted(pipeline.dedup.records()),
        "silences": [s.to_record() for s in pipeline.silences],
        "clock": pipeline.clock_state()}
    if engine is not None:
        state.update(timers=engine.timers(), counts=dict(engine.counts),
                     incidents=sorted(engine.incidents))
    return state


def test_sqlite_and_stage_tables_restore_the_same(tmp_path: Path) -> None:
    """One snapshot of a storm's state (alerts, a silence, incidents with pages pending),
    stored in the SQLite state file and as a Kafka stage table's records: restored from
    either, the pipeline and the engine are the storm's."""
    t = Triage(Pipeline(), IncidentEngine())
    t.pipeline.add_silence(Silence("quiet", parse_matchers('service="svc-03"'), 0.0, 2e9))
    for line in storm(steps=60):
        t.process(line)
    assert t.engine is not None and t.engine.incidents and t.engine.timers()
    want = state_of(t.pipeline, t.engine)
    delta = snapshot.take(t.pipeline, t.engine)  # the first take: everything

    with StateFile(tmp_path / "state.db") as sf:
        sf.write(delta)
    from_file = Pipeline(), IncidentEngine()
    with StateFile(tmp_path / "state.db") as sf:
        sf.restore(*from_file)

    items = stored_writes(0, snapshot.Delta.decode(delta.encode()), {"offset": 41})
    from_table = Pipeline(), IncidentEngine()
    meta = snapshot.restore(stored_tables(items), *from_table)

    assert state_of(*from_file) == state_of(*from_table) == want
    assert meta["offset"] == 41

    # and each Kafka stage reads its half of the same records
    intake = IntakeStage(Pipeline(), domain_of=lambda labels: "")
    part = intake.restore(0, items)
    assert (part.offset, state_of(part.pipeline, None)) == (41, state_of(t.pipeline, None))


def test_stage_two_state_saved_before_the_shared_format_still_loads() -> None:
    """The incident stage's meta record named the engine's timers and counters ``timers``
    and ``counts`` before it used the shared format: a worker upgraded over such a
    changelog keeps its pending pages."""
    t = Triage(Pipeline(), IncidentEngine())
    for line in storm(steps=60):
        t.process(line)
    engine = t.engine
    assert engine is not None and engine.timers()
    items = stored_writes(3, snapshot.take(None, engine), {
        "offset": 9, "clock": t.clock, "upstream": {}, "applied": {}})
    old = []
    for key, value in items:
        if key == b"3|m":
            meta = orjson.loads(value)
            meta["timers"], meta["counts"] = meta.pop("engine_timers"), meta.pop(
                "engine_counts")
            value = orjson.dumps(meta)
        old.append((key, value))
    stage = IncidentStage(IncidentEngine())
    part = stage.restore(3, old)
    assert part.offset == 9 and part.clock == t.clock
    assert part.engine.timers() == engine.timers()
    assert dict(part.engine.counts) == dict(engine.counts)
    assert sorted(part.engine.incidents) == sorted(engine.incidents)
