"""The partitioned stages without Kafka: routing, replay, restore, idle clocks."""

from __future__ import annotations

from collections.abc import Callable

import orjson
import pytest

from triage.core.incidents import CorrelationPolicy, IncidentEngine
from triage.core.pipeline import Pipeline
from triage.streams.codec import triaged_from_record
from triage.streams.stages import (
    IncidentStage,
    IntakeStage,
    Output,
    StateWrite,
    domain_mapper,
)


def alert(name: str, service: str, at: float, status: str = "firing") -> bytes:
    return orjson.dumps({"alertname": name, "service": service, "at": at, "status": status})


@pytest.fixture
def stages() -> Callable[[], tuple[IntakeStage, IncidentStage]]:
    def make() -> tuple[IntakeStage, IncidentStage]:
        engine = IncidentEngine(policy=CorrelationPolicy(page_delay=5.0, lone_delay=0.0,
                                                         lone_critical_delay=0.0))
        return IntakeStage(Pipeline(), domain_of=domain_mapper(engine)), IncidentStage(engine)
    return make


def apply(table: dict[bytes, bytes], writes: list[StateWrite]) -> None:
    for key, value in writes:
        if value is None:
            table.pop(key, None)
        else:
            table[key] = value


def run(intake: IntakeStage, incidents: IncidentStage, messages: list[bytes],
        table1: dict[bytes, bytes], table2: dict[bytes, bytes], start: int = 0,
        keyed_offset: list[int] | None = None) -> list[Output]:
    """Both stages over ``messages`` (all partition 0), persisting after each message."""
    offsets = keyed_offset if keyed_offset is not None else [0]
    out: list[Output] = []
    for i, raw in enumerate(messages, start=start):
        for output in intake.process(0, i, raw):
            out.append(output)
            if output.topic == "keyed":
                value = output.value
                out.extend(incidents.process(0, offsets[0], value))
                offsets[0] += 1
        apply(table1, intake.take_state(0))
        apply(table2, incidents.take_state(0))
    return out


def test_routes_alerts_failures_and_changes(stages) -> None:
    intake, _ = stages()
    intake.restore(0, [])
    out = intake.process(0, 0, alert("Up", "db", 100.0))
    out += intake.process(0, 1, b"{oops")
    out += intake.process(0, 2, orjson.dumps({"id": "d1", "service": "db", "kind": "deploy",
                                              "at": 90}))
    assert [(o.topic, o.key) for o in out] == [
        ("keyed", b"db"), ("keyed", None), ("deadletter", None), ("changes", b"d1")]
    assert orjson.loads(out[1].value) == {"schema_version": 1, "kind": "clock", "t": 100.0,
                                          "up": [0, 1, False, False]}
    dead = orjson.loads(out[2].value)
    assert (dead["error"], dead["raw"], dead["offset"]) == ("DecodeError", "{oops", 1)
    assert triaged_from_record(out[0][2])[1] == 100.0


def test_a_message_at_or_before_the_saved_offset_is_skipped(stages) -> None:
    intake, _ = stages()
    intake.restore(0, [])
    assert intake.process(0, 5, alert("Up", "db", 100.0))
    assert intake.process(0, 5, alert("Other", "db", 100.0)) == []
    assert intake.replayed == 1


def test_restored_state_continues_exactly_like_an_uninterrupted_run(stages) -> None:
    msgs = [alert("A", "cart", 100.0 + i) for i in range(3)] + [
        alert("B", "cart", 110.0), alert("A", "cart", 200.0, "resolved"),
        alert("B", "cart", 1500.0, "resolved"), alert("C", "web", 4000.0)]
    i1, s1 = stages()
    i1.restore(0, [])
    s1.restore(0, [])
    whole = run(i1, s1, msgs, {}, {})

    i2, s2 = stages()
    i2.restore(0, [])
    s2.restore(0, [])
    t1: dict[bytes, bytes] = {}
    t2: dict[bytes, bytes] = {}
    offsets = [0]
    first = run(i2, s2, msgs[:4], t1, t2, keyed_offset=offsets)
    i3, s3 = stages()  # a new worker: only the tables survive
    i3.restore(0, sorted(t1.items()))
    s3.restore(0, sorted(t2.items()))
    rest = run(i3, s3, msgs[4:], t1, t2, start=4, keyed_offset=offsets)
    assert first + rest == whole
    events = [orjson.loads(o.value) for o in whole if o.topic == "incidents"]
    # the last incident still waits for its page delay: no input after it
    assert [e["type"] for e in events] == ["incident.created", "incident.resolved"]


def test_replaying_after_lost_state_gives_exact_duplicates(stages) -> None:
    msgs = [alert("A", "cart", 100.0), alert("B", "cart", 200.0)]
    i1, s1 = stages()
    i1.restore(0, [])
    s1.restore(0, [])
    once = run(i1, s1, msgs, {}, {})
    i2, s2 = stages()  # crashed before any state was written: everything again
    i2.restore(0, [])
    s2.restore(0, [])
    again = run(i2, s2, msgs, {}, {})
    assert once == again


def test_records_a_restarted_stage_1_sends_again_are_skipped_by_stage_2(stages) -> None:
    """Stage 1 lost its state after the last save and replays its input, sending its keyed
    records again, after stage 2 has applied them and newer ones: an old "firing" must not
    undo the "resolved" that followed it (it would reopen the incident)."""
    msgs = [alert("A", "cart", 100.0), alert("B", "cart", 110.0),
            alert("A", "cart", 400.0, "resolved"), alert("B", "cart", 410.0, "resolved")]
    i1, s1 = stages()
    i1.restore(0, [])
    s1.restore(0, [])
    saved: dict[bytes, bytes] = {}
    keyed: list[bytes] = []
    for i, raw in enumerate(msgs):
        keyed += [o.value for o in i1.process(0, i, raw) if o.topic == "keyed"]
        if i == 0:
            apply(saved, i1.take_state(0))  # the last save before the crash
    i2, _ = stages()  # the restarted stage 1: replays from message 1 on
    i2.restore(0, sorted(saved.items()))
    again = [o.value for i, raw in enumerate(msgs[1:], start=1)
             for o in i2.process(0, i, raw) if o.topic == "keyed"]
    assert again == keyed[len(keyed) - len(again):]  # byte-identical copies

    def incidents(records: list[bytes]) -> list[tuple[str, str]]:
        _, s = stages()
        s.restore(0, [])
        out = [o for k, v in enumerate(records) for o in s.process(0, k, v)]
        events = [orjson.loads(o.value) for o in out if o.topic == "incidents"]
        return [(e["type"], e["incident"]["status"]) for e in events]

    # Stage 2 acts on each record as it comes: here the duplicate "B firing" has arrived
    # (the rest of the replay is still on its way) when time moves on
    end = orjson.dumps({"schema_version": 1, "kind": "clock", "t": 5000.0})
    assert orjson.loads(again[0])["change"] == "firing"
    assert incidents([*keyed, *again[:1], end]) == incidents([*keyed, end]) == [
        ("incident.created", "open"), ("incident.resolved", "resolved")]


def test_an_idle_partition_moves_its_clock_with_the_wall(stages) -> None:
    intake, incidents = stages()
    intake.restore(0, [], wall=0.0)
    incidents.restore(0, [], wall=0.0)
    keyed = intake.process(0, 0, alert("A", "cart", 100.0), wall=0.0)[0].value
    assert incidents.process(0, 0, keyed, wall=0.0) == []  # waits 5 s for its page
    assert incidents.tick_idle(0, wall=0.5) is None  # not idle yet
    # stage 1 is still busy as far as stage 2 knows: its clock holds stage 2's
    assert incidents.tick_idle(0, wall=3.0) is None
    said = intake.tick_idle(0, wall=3.0)  # idle: its clock moves 3 s, and it says so
    assert said is not None
    clock = orjson.loads(said[-1].value)
    assert clock["t"] == 103.0 and clock["up"] == [0, 1, True, True]
    assert incidents.process(0, 1, said[-1].value, wall=3.0) == []
    events = incidents.tick_idle(0, wall=6.0)  # no upstream holds it: moves with the wall
    assert events and orjson.loads(events[0].value)["type"] == "incident.created"
    assert orjson.loads(events[0].value)["at"] == "1970-01-01T00:01:46.000Z"
    resolved = intake.tick_idle(0, wall=400.0)  # 5m resolve timeout, no repeat
    assert resolved and orjson.loads(resolved[0].value)["change"] == "resolved"


def test_repeats_move_the_stage_2_clock(stages) -> None:
    """Repeats send nothing downstream but their time: the page is decided at the first
    repeat past the page delay, as the embedded runtime decides it."""
    intake, incidents = stages()
    intake.restore(0, [])
    incidents.restore(0, [])
    events: list[Output] = []
    for i, t in enumerate((100.0, 103.0, 106.0, 109.0)):
        for o in intake.process(0, i, alert("A", "cart", t)):
            events += incidents.process(0, incidents.parts[0].offset + 1, o.value)
    assert [orjson.loads(e.value)["at"] for e in events] == ["1970-01-01T00:01:46.000Z"]


def test_bad_keyed_records_are_dead_lettered(stages) -> None:
    _, incidents = stages()
    incidents.restore(0, [])
    out = incidents.process(0, 0, b'{"kind": "suppressed"}')
    assert out[0].topic == "deadletter"
    assert orjson.loads(out[0].value)["error"] == "SchemaError"
    assert incidents.add_change(b'{"id": "c", "service": "s", "kind": "deploy", "at": 1}')
    assert not incidents.add_change(b"nope")


def test_the_clocks_line_says_what_holds_each_stage_and_is_empty_when_nothing_does(
        stages: Callable[[], tuple[IntakeStage, IncidentStage]]) -> None:
    intake, incidents = stages()
    intake.restore(0, [])
    incidents.restore(0, [])
    assert intake.describe_clocks(0.0) != ""  # a fresh partition has not said it is idle
    run(intake, incidents, [alert("Down", "db", 100.0)], {}, {})
    line = intake.describe_clocks(1.0)
    assert line.startswith("p0 wm=100 q=0 drained=False") and "offset=0" in line
    assert "p0 clock=100" in incidents.describe_clocks(1.0)
    assert "0:100/" in incidents.describe_clocks(1.0)  # what upstream 0 said, how long ago
    for wall in (5.0, 10.0):
        intake.tick_idle(0, wall, idle_after=600.0)
    assert intake.parts[0].idle_sent and intake.describe_clocks(10.0) == ""


def test_the_last_message_of_a_backlog_waits_for_another_workers_partition_still_behind(
        ) -> None:
    """Two workers, each with a partition of a backlog. This one has read all it has; its
    last message is an hour ahead of the rest. The other worker's partition is still
    reading, at a time before it (what its stage 2 heard). Released at once, the message
    would move this partition's clock past that time in one step, and an alert here that
    times out meanwhile would resolve an hour late; ``triage run`` resolves it at the
    other partition's time. It waits, and then steps through that time."""
    from kafka.partitioner.default import murmur2

    from triage.core.dedup import DedupPolicy, DedupStore
    from triage.streams.stages import key_partitioner

    partition_of = key_partitioner(murmur2, 2)
    fingerprint = Pipeline().fingerprinter.fingerprint
    mine = next(f"A{i}" for i in range(50) if partition_of(fingerprint(
        "generic", {"alertname": f"A{i}", "service": "db"}).encode()) == 0)
    pipeline = Pipeline(dedup=DedupStore(DedupPolicy(resolve_timeout=60.0)))
    intake = IntakeStage(pipeline, domain_of=domain_mapper(IncidentEngine()),
                         raw_partitions=2, partition_of=partition_of)
    other = {1: (1000.0 + 3600, False, 0.0)}  # the other worker's partition: reading, behind
    intake.peers = lambda: dict(other)
    intake.caught_up = lambda partition: True  # its consumer has read to the end
    intake.restore(0, [])
    intake.process_many(0, [(0, alert(mine, "db", 1000.0)),
                            (1, alert("Sentinel", "end", 1000.0 + 7200))], wall=0.0)

    def keyed(out: list[Output] | None) -> list[tuple[str, str, float]]:
        return [(r["labels"]["alertname"], r["change"], r["t"]) for r in (
            orjson.loads(o.value) for o in out or () if o.topic == "keyed" and o.key)]

    assert keyed(intake.tick_idle(0, 2.0, idle_after=600.0)) == []
    assert intake.waiting() == 1  # the sentinel waits for the other worker's time
    intake.note_time(1000.0 + 3600)  # (stage 2 tells each mark it hears)
    other[1] = (1000.0 + 3600, True, 3.0)  # that partition has read all it had
    assert keyed(intake.tick_idle(0, 3.0, idle_after=600.0)) == [
        (mine, "resolved", 1000.0 + 3600), ("Sentinel", "firing", 1000.0 + 7200)]


def test_a_bug_in_the_incident_engine_is_dead_lettered_and_the_stage_goes_on(
        stages: Callable[[], tuple[IntakeStage, IncidentStage]]) -> None:
    """Stage 2 takes the step ``Triage`` takes (``triage.core.triage.correlate``): an
    exception in the engine becomes a dead letter naming the keyed record's offset, and the
    next record is correlated as usual."""
    intake, incidents = stages()
    intake.restore(0, [])
    incidents.restore(0, [])
    engine = incidents.parts[0].engine
    real = engine.observe
    calls = []

    def observe(outcomes: object, at: float) -> object:
        calls.append(at)
        if len(calls) == 1:
            raise RuntimeError("bug")
        return real(outcomes, at)  # type: ignore[arg-type]

    engine.observe = observe  # type: ignore[method-assign]
    keyed = [o.value for i, raw in enumerate([alert("Down", "db", 100.0),
                                              alert("Down", "web", 200.0)])
             for o in intake.process(0, i, raw) if o.topic == "keyed" and o.key]
    first = incidents.process(0, 0, keyed[0])
    dead = [orjson.loads(o.value) for o in first if o.topic == "deadletter"]
    assert [(d["error"], d["source"], d["offset"]) for d in dead] == [
        ("RuntimeError", "alerts.keyed", 0)]
    assert "internal error in the incident stage" in dead[0]["reason"]
    incidents.process(0, 1, keyed[1])
    assert "web" in {a.service for inc in engine.incidents.values() for a in inc.alerts.values()}


def test_an_alert_stamped_in_the_future_does_not_move_a_partitions_clock_there() -> None:
    """A line produced with no receive time (kcat) stamped in 2099: the worker's partitions
    bound it by the wall clock as ``triage run`` and ``triage serve`` do (clamped to the
    event time so far), instead of moving their clock 70 years ahead, after which every
    real alert would be late."""
    import time

    intake = IntakeStage(Pipeline(wall_clock=time.time),
                         domain_of=domain_mapper(IncidentEngine()))
    intake.restore(0, [])
    now = time.time() - 3600
    intake.process_many(0, [(0, alert("Down", "db", now)),
                            (1, alert("Down", "web", 4_070_908_800.0))])  # 2099
    pipeline = intake.parts[0].pipeline
    assert pipeline.watermark == now and pipeline.counts["future_clamped"] == 1
