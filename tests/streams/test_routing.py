"""Stage 1 over several partitions of ``alerts.raw``, without Kafka: every alert is triaged
by the partition its fingerprint maps to (the others forward it there), silences reach every
partition, and the totals are what one ``Pipeline`` gives for the same input."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import given, settings
from hypothesis import strategies as st
from kafka.partitioner.default import murmur2

from triage.core.fingerprint import Fingerprinter, FingerprintPolicy
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.timeutil import parse_timestamp
from triage.core.types import Outcome, Suppressed, Triaged
from triage.streams.stages import IntakeStage, Output, domain_mapper, key_partitioner

N = 4
ALL = list(range(N))


def kafka_partition(key: bytes, partitions: int = N) -> int:
    """Where the worker's producer (aiokafka, under faust) puts a keyed message: its own
    default partitioner, not ours."""
    return int(DefaultPartitioner()(key, list(range(partitions)), list(range(partitions))))


def owner(name: str, service: str = "svc") -> int:
    fp = Pipeline().fingerprinter.fingerprint("generic", {"alertname": name, "service": service})
    return kafka_partition(fp.encode())


def names_owned_by(partition: int, count: int = 1, service: str = "svc") -> list[str]:
    found = [n for n in (f"A{i}" for i in range(1000)) if owner(n, service) == partition]
    return found[:count]


def alert(name: str, at: float, status: str = "firing", service: str = "svc") -> dict[str, Any]:
    return {"alertname": name, "service": service, "at": at, "status": status}


def silence(value: str, starts: str = "2020-01-01T00:00:00Z",
            ends: str = "2030-01-01T00:00:00Z") -> bytes:
    return orjson.dumps({"matchers": [{"name": "service", "value": value, "isRegex": False}],
                         "startsAt": starts, "endsAt": ends, "createdBy": "alice",
                         "comment": "maintenance"})


def make_stage(partitions: int = N, *, hand_over: bool = False) -> IntakeStage:
    """Stage 1 on every partition; ``hand_over`` False (the forward path these tests are
    about, as between workers): alerts of other partitions go through ``alerts.raw``."""
    stage = IntakeStage(Pipeline(), domain_of=domain_mapper(IncidentEngine()),
                        raw_partitions=partitions,
                        partition_of=key_partitioner(murmur2, partitions),
                        hand_over=hand_over)
    for p in range(partitions):
        stage.restore(p, [])
    stage.observe = True
    # Routing, not event time (tests/streams/test_event_time.py): no partition waits for
    # the others' time
    stage.idle_timeout = 0.0
    return stage


class RawTopic:
    """``alerts.raw`` in memory: messages per partition, placed as Kafka's producer places
    them; ``drain`` runs the stage until no partition has unprocessed messages."""

    def __init__(self, stage: IntakeStage, partitions: int = N) -> None:
        self.stage = stage
        self.partitions = partitions
        self.logs: list[list[bytes]] = [[] for _ in range(partitions)]
        self.next = [0] * partitions
        self.outputs: list[tuple[int, Output]] = []  # (raw partition, non-raw output)
        self.forwarded: list[Output] = []  # every "raw" output, in order

    def send(self, value: bytes, partition: int) -> None:
        self.logs[partition].append(value)

    def place(self, out: Output) -> None:
        assert out.topic == "raw"
        self.forwarded.append(out)
        if out.partition is not None:
            self.send(out.value, out.partition)
        else:
            assert out.key is not None, "an unkeyed forward would land on a random partition"
            self.send(out.value, kafka_partition(out.key, self.partitions))

    def step(self, partition: int) -> list[Output]:
        offset = self.next[partition]
        if sum(self.next) > 10_000:
            pytest.fail("records keep coming back to alerts.raw: a forwarding loop")
        self.next[partition] += 1
        outs = self.stage.process(partition, offset, self.logs[partition][offset])
        for out in outs:
            if out.topic == "raw":
                self.place(out)
            else:
                self.outputs.append((partition, out))
        return outs

    def drain(self, order: Iterable[int] | None = None) -> None:
        while True:
            pending = [p for p in (order or range(self.partitions))
                       if self.next[p] < len(self.logs[p])]
            if not pending:
                return
            for p in pending:
                while self.next[p] < len(self.logs[p]):
                    self.step(p)

    def keyed(self) -> list[dict[str, Any]]:
        return [orjson.loads(o.value) for _, o in self.outputs
                if o.topic == "keyed" and o.key is not None]

    def dead(self) -> list[tuple[int, dict[str, Any]]]:
        return [(p, orjson.loads(o.value)) for p, o in self.outputs if o.topic == "deadletter"]


def summary(outcomes: Iterable[Outcome]) -> Counter[tuple[str, str, str]]:
    """What a user sees of each outcome: the alert, the kind, what changed or why."""
    out: Counter[tuple[str, str, str]] = Counter()
    for o in outcomes:
        if isinstance(o, Triaged):
            out[(o.alert.fingerprint, o.kind, o.change)] += 1
        elif isinstance(o, Suppressed):
            out[(o.alert.fingerprint, o.kind, o.reason)] += 1
        elif o.kind == "failed":
            out[("", o.kind, o.error)] += 1
        else:
            out[(o.alert.fingerprint, o.kind, "")] += 1
    return out


def test_key_partitioner_is_kafkas_default_partitioner() -> None:
    for n in (1, 2, 3, 4, 12):
        ours = key_partitioner(murmur2, n)
        for i in range(300):
            key = Pipeline().fingerprinter.fingerprint("generic", {"alertname": f"A{i}"})
            assert ours(key.encode()) == kafka_partition(key.encode(), n)


def test_a_multi_alert_payload_keeps_its_own_alerts_and_forwards_the_others() -> None:
    stage = make_stage()
    names = [n for p in ALL for n in names_owned_by(p, 2)]
    payload = orjson.dumps([alert(n, 100.0) for n in names])
    out = stage.process(0, 0, payload)

    keyed = [orjson.loads(o.value) for o in out if o.topic == "keyed" and o.key is not None]
    assert sorted(r["labels"]["alertname"] for r in keyed) == sorted(names_owned_by(0, 2))
    forwards = [o for o in out if o.topic == "raw"]
    assert len(forwards) == 6
    for o in forwards:
        rec = orjson.loads(o.value)
        assert o.partition is None and o.key == rec["alert"]["fingerprint"].encode()
        assert kafka_partition(o.key) != 0
        assert rec["t"] == 100.0 and rec["src"] == [0, 0]
    # counted once, by whoever triages: here only the two it owns
    assert stage.counts()["in"] == 2 and stage.counts()["forwarded"] == 6
    assert len(stage.take_observations().outcomes) == 2


def mixed_payload() -> list[dict[str, Any]]:
    """Alerts owned by every partition, firing and resolved-unseen, one repeated inside the
    payload, and a bad one."""
    names = [n for p in ALL for n in names_owned_by(p, 3)]
    items = [alert(n, 100.0 + i) for i, n in enumerate(names)]
    items[3]["status"] = "resolved"
    items.append(alert(names[5], 120.0))  # the same alert twice in one payload: a repeat
    items.append({"alertname": "Broken", "service": "svc", "at": "soon"})
    return items


@pytest.mark.parametrize("hand_over", [False, True], ids=["forwarded", "handed-over"])
@pytest.mark.parametrize("received_on", ALL)
def test_partitioned_outcomes_equal_a_single_pipelines(received_on: int,
                                                       hand_over: bool) -> None:
    payload = orjson.dumps(mixed_payload())
    single = Pipeline()
    want = summary(single.process(payload))

    stage = make_stage(hand_over=hand_over)
    topic = RawTopic(stage)
    topic.send(payload, received_on)
    topic.drain()
    got = summary(stage.take_observations().outcomes)
    assert got == want
    assert sum(got.values()) == len(mixed_payload())
    # reconciliation over all partitions: each alert counted once
    c = stage.counts()
    for key in ("in", "triaged", "deduplicated", "suppressed", "failed"):
        assert c[key] == single.counts[key], key
    assert c["in"] == c["triaged"] + c["deduplicated"] + c["suppressed"] + c["failed"]
    # the bad alert is dead-lettered once, by the partition that received the payload
    dead = topic.dead()
    assert [(p, d["error"], d["partition"], d["offset"]) for p, d in dead] == [
        (received_on, "TimestampError", received_on, 0)]
    # and each alert's state is held by its owner only
    for p, part in stage.parts.items():
        assert all(kafka_partition(fp.encode()) == p for fp in part.pipeline.dedup.states)


def test_forwarded_records_name_the_original_message_and_time() -> None:
    stage = make_stage()
    topic = RawTopic(stage)
    name = names_owned_by(3)[0]
    envelope = {"received_at": "2026-11-27T10:02:11.250Z",
                "payload": [alert(names_owned_by(0)[0], 1.0), alert(name, 2.0)]}
    topic.send(orjson.dumps(envelope), 0)
    topic.drain()
    by_name = {r["labels"]["alertname"]: r for r in topic.keyed()}
    # both observed at the envelope's time, as one Pipeline observes them
    assert by_name[name]["t"] == by_name[names_owned_by(0)[0]]["t"] == parse_timestamp(
        envelope["received_at"], "received_at")
    assert by_name[name]["src"] == [0, 0]  # stage 2 groups it with its payload


def test_the_same_alert_in_payloads_on_two_partitions_pages_once() -> None:
    shared = names_owned_by(2)[0]
    first = orjson.dumps([alert(names_owned_by(0)[0], 100.0), alert(shared, 100.0)])
    second = orjson.dumps([alert(names_owned_by(1)[0], 130.0), alert(shared, 130.0)])

    stage = make_stage()
    topic = RawTopic(stage)
    topic.send(first, 0)
    topic.send(second, 1)
    topic.drain()
    firing = [r for r in topic.keyed() if r["labels"]["alertname"] == shared]
    assert [(r["change"], r["occurrence"]) for r in firing] == [("firing", 1)]
    assert stage.counts()["deduplicated"] == 1 and stage.counts()["in"] == 4

    # the failure this prevents: each partition deduplicating on its own pages twice
    alone = IntakeStage(Pipeline(), domain_of=domain_mapper(IncidentEngine()))
    alone.restore(0, [])
    alone.restore(1, [])
    twice = alone.process(0, 0, first) + alone.process(1, 0, second)
    assert sum(1 for o in twice if o.topic == "keyed" and o.key is not None
               and orjson.loads(o.value)["labels"]["alertname"] == shared) == 2


def test_a_silence_on_one_partition_silences_alerts_on_all() -> None:
    stage = make_stage()
    topic = RawTopic(stage)
    topic.send(silence("db"), 2)
    out = topic.step(2)
    copies = [o for o in out if o.topic == "raw"]
    assert sorted(o.partition for o in copies) == [0, 1, 3]
    assert all(o.key is None for o in copies)
    topic.drain()
    # copies are not copied again
    assert len(topic.forwarded) == 3
    for p in ALL:  # an alert owned by each partition, sent straight to its owner
        name = names_owned_by(p, service="db")[0]
        topic.send(orjson.dumps(alert(name, 1_800_000_000.0, service="db")), p)
    topic.drain()
    outcomes = stage.take_observations().outcomes
    assert [(o.kind, getattr(o, "reason", None)) for o in outcomes] == [
        ("suppressed", "silence")] * 4
    assert not topic.keyed()
    c = stage.counts()
    assert (c["silences_added"], c["silences_copied"], c["suppressed.silence"]) == (1, 3, 4)
    # each partition persists its own copy, and a restored partition still has it
    for p in ALL:
        writes = dict(stage.take_state(p))
        assert b"%d|s" % p in writes
        again = make_stage()
        again.restore(p, [(k, v) for k, v in writes.items() if v is not None])
        assert len(again.parts[p].pipeline.silences) == 1


def test_a_bad_silence_is_dead_lettered_where_it_landed_and_not_copied() -> None:
    stage = make_stage()
    out = stage.process(1, 0, orjson.dumps({"matchers": [], "createdBy": "x"}))
    assert [o.topic for o in out] == ["deadletter"]


def test_a_replay_forwards_exact_duplicates_that_the_owner_takes_as_repeats() -> None:
    names = [names_owned_by(p)[0] for p in ALL]
    payload = orjson.dumps([alert(n, 100.0) for n in names])
    later = orjson.dumps([alert(n, 160.0) for n in names])

    stage = make_stage()
    stage.process(0, 0, orjson.dumps(alert(names[0], 50.0)))  # the clock: not fresh
    saved = dict(stage.take_state(0))
    first = stage.process(0, 1, payload)
    stage.process(0, 2, later)
    # crashed before writing state: the replay starts from the saved state
    stage.restore(0, [(k, v) for k, v in saved.items() if v is not None])
    replay = stage.process(0, 1, payload)
    assert [o for o in replay if o.topic == "raw"] == [o for o in first if o.topic == "raw"]

    # the owner of names[1] gets the forward, the later one, then the replayed forward
    fwd = next(o for o in first if o.topic == "raw" and kafka_partition(o.key) == 1)
    fwd_later = next(o for o in stage.process(0, 2, later)
                     if o.topic == "raw" and kafka_partition(o.key) == 1)
    got = []
    for i, value in enumerate([fwd.value, fwd_later.value, fwd.value]):
        stage.take_observations()
        out = stage.process(1, i, value)
        got.append(([o.kind for o in stage.take_observations().outcomes],
                    [o.topic for o in out if o.key is not None]))
    assert got == [(["triaged"], ["keyed"]), (["deduplicated"], []), (["deduplicated"], [])]


def test_a_forward_landing_on_another_partition_is_triaged_there_and_counted() -> None:
    stage = make_stage()
    out = stage.process(0, 0, orjson.dumps([alert(names_owned_by(3)[0], 100.0)]))
    (fwd,) = [o for o in out if o.topic == "raw"]
    landed = stage.process(2, 0, fwd.value)  # e.g. the partition count changed since
    assert [o.topic for o in landed if o.key is not None] == ["keyed"]
    assert not [o for o in landed if o.topic == "raw"]  # never forwarded twice
    assert stage.misrouted == 1
    assert stage.counts()["in"] == 1


@pytest.mark.parametrize("value", [
    b'{"_triage":"alert","v":1,"src":[0,1],"t":5,"alert":{"labels":{}}}',
    b'{"_triage":"alert","v":1,"src":[0,1],"t":"x"}',
    b'{"_triage":"nonsense","v":1,"src":[0,1]}',
    b'{"_triage":"silence","v":1,"src":[0,1],"silence":{"id":"s"}}',
    b'{"_triage": broken',
])
def test_a_bad_internal_record_is_dead_lettered_and_counted(value: bytes) -> None:
    stage = make_stage()
    out = stage.process(1, 7, value)
    (dead,) = [orjson.loads(o.value) for o in out if o.topic == "deadletter"]
    assert (dead["source"], dead["raw"], dead["offset"]) == ("triage-internal", value.decode(),
                                                              7)
    assert stage.counts()["in"] == stage.counts()["failed"] == 1


def test_one_partition_never_forwards_or_copies() -> None:
    stage = IntakeStage(Pipeline(), domain_of=domain_mapper(IncidentEngine()))
    stage.restore(0, [])
    reference = Pipeline()
    payload = orjson.dumps(mixed_payload())
    out = stage.process(0, 0, payload) + stage.process(0, 1, silence("db"))
    assert not [o for o in out if o.topic == "raw"]
    reference.process(payload)
    reference.process(silence("db"))
    assert stage.counts() == reference.counts
    assert "forwarded" not in stage.counts() and stage.misrouted == 0


# -- property: any payloads, received anywhere, give one Pipeline's outcomes --------------

NAMES = [f"A{i}" for i in range(12)]
payload_st = st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(["firing",
                                                                          "resolved"])),
                      min_size=1, max_size=6)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(payload_st, st.integers(0, N - 1), st.booleans()),
                min_size=1, max_size=12))
def test_partitioned_stage_one_matches_a_single_pipeline(
        payloads: list[tuple[list[tuple[str, str]], int, bool]]) -> None:
    """Payloads in event-time order (within the resolve timeout, so no sweep decides
    anything), each received on any partition: when forwards are processed before the next
    payload, each alert's outcomes, in order, are one Pipeline's; whatever the order, every
    alert is counted once and its state is held by its owner only."""
    single = Pipeline()
    stage = make_stage()
    topic = RawTopic(stage)
    want: dict[str, list[tuple[str, str]]] = {}
    got: dict[str, list[tuple[str, str]]] = {}
    items_in = 0
    for i, (items, received_on, drain_now) in enumerate(payloads):
        value = orjson.dumps([alert(n, 100.0 + i, status) for n, status in items])
        items_in += len(items)
        for o in single.process(value):
            want.setdefault(o.alert.fingerprint, []).append(_what(o))  # type: ignore[union-attr]
        topic.send(value, received_on)
        if drain_now:
            topic.drain()
    topic.drain()
    for o in stage.take_observations().outcomes:
        got.setdefault(o.alert.fingerprint, []).append(_what(o))  # type: ignore[union-attr]
    if all(drain for _, _, drain in payloads):
        assert got == want
    # Forwards delayed behind later input of their owner are observed late, as on a single
    # partition input arriving out of order is: outcomes may differ, never the totals.
    c = stage.counts()
    assert c["in"] == items_in == single.counts["in"]
    assert c["in"] == c["triaged"] + c["deduplicated"] + c["suppressed"] + c["failed"]
    for p, part in stage.parts.items():
        assert all(kafka_partition(fp.encode()) == p for fp in part.pipeline.dedup.states)


def _what(o: Outcome) -> tuple[str, str]:
    if isinstance(o, Triaged):
        return o.kind, o.change
    if isinstance(o, Suppressed):
        return o.kind, o.reason
    return o.kind, ""


def test_the_sources_fingerprint_policy_decides_the_owner() -> None:
    """HA Prometheus pairs differ only by ``replica``: excluded from the fingerprint, their
    alerts are one alert, whichever partitions their batches land on."""
    policy = FingerprintPolicy(exclude=frozenset({"replica"}))
    stage = IntakeStage(Pipeline(fingerprinter=Fingerprinter(default=policy)),
                        domain_of=domain_mapper(IncidentEngine()), raw_partitions=N,
                        partition_of=key_partitioner(murmur2, N))
    for p in ALL:
        stage.restore(p, [])
    stage.idle_timeout = 0.0  # routing, not event time (as make_stage)
    topic = RawTopic(stage)
    for p, replica in ((0, "a"), (1, "b"), (2, "a"), (3, "b")):
        # a Prometheus POST /api/v2/alerts batch
        batch = [{"labels": {"alertname": name, "service": "svc", "replica": replica},
                  "startsAt": f"2026-11-27T10:00:0{p}Z"} for name in ("Up", f"Other{p}")]
        topic.send(orjson.dumps(batch), p)
    topic.drain()
    up = [r for r in topic.keyed() if r["labels"]["alertname"] == "Up"]
    assert [(r["change"], r["labels"]["replica"]) for r in up] == [("firing", "a")]
    assert stage.counts()["in"] == 8 and stage.counts()["deduplicated"] == 3


# -- hand-over: the owner is a partition of the same worker ---------------------------------


def test_alerts_owned_by_partitions_of_this_worker_are_triaged_there_at_once() -> None:
    """Unkeyed input on one worker: a payload's alerts owned by the worker's other
    partitions are triaged on them when the payload is, at its time (no forward through
    alerts.raw arriving after what the owner read meanwhile). Their records go out as the
    owner's (its upstream mark, as if keyed to it) and name the payload as their source."""
    stage = make_stage(hand_over=True)
    names = {p: names_owned_by(p, 2) for p in ALL}
    payload = orjson.dumps([alert(n, 100.0) for p in ALL for n in names[p]])
    out = stage.process(0, 7, payload)

    assert [o for o in out if o.topic == "raw"] == []  # nothing forwarded
    keyed = [orjson.loads(o.value) for o in out if o.topic == "keyed" and o.key is not None]
    assert sorted(r["labels"]["alertname"] for r in keyed) == sorted(
        n for p in ALL for n in names[p])
    for r in keyed:
        assert r["up"][0] == kafka_partition(r["fingerprint"].encode())
        assert r["src"] == [0, 7] and r["t"] == 100.0
    # each alert's state and count on its owner; the receiver counts what it handed over
    for p, part in stage.parts.items():
        assert set(part.pipeline.dedup.states) == {
            r["fingerprint"] for r in keyed if r["up"][0] == p}
        assert part.pipeline.counts["in"] == 2
    assert stage.parts[0].pipeline.counts["handed_over"] == 6
    assert stage.take_handed() == {0} and {1, 2, 3} <= stage.take_released()


def test_alerts_of_another_workers_partition_are_still_forwarded() -> None:
    stage = make_stage(hand_over=True)
    stage.drop(3)  # partition 3 is another worker's
    payload = orjson.dumps([alert(names_owned_by(p)[0], 100.0) for p in ALL])
    out = stage.process(0, 0, payload)
    assert [kafka_partition(o.key) for o in out if o.topic == "raw"] == [3]
    assert stage.parts[0].pipeline.counts["handed_over"] == 2


def test_a_sender_replayed_after_a_crash_does_not_apply_its_hand_over_twice() -> None:
    """The owners' state was written, the sender's meta record was not (the crash came
    between the two writes ``StageRunner`` orders): the replayed payload is applied on
    the sender alone, and its owners' records are not sent again."""
    stage = make_stage(hand_over=True)
    owned = {p: names_owned_by(p)[0] for p in ALL}
    stage.process(0, 0, orjson.dumps(alert(names_owned_by(0, 2)[1], 50.0)))
    saved = {p: dict(stage.take_state(p)) for p in ALL}
    payload = orjson.dumps([alert(owned[p], 100.0) for p in ALL])
    first = stage.process(0, 1, payload)
    for p in (1, 2, 3):  # the owners' state reached the table; the sender's did not
        saved[p] = dict(stage.take_state(p))
    for p in ALL:
        stage.restore(p, [(k, v) for k, v in saved[p].items() if v is not None])
    replay = stage.process(0, 1, payload)

    def names(out: list[Output]) -> list[str]:
        return sorted(orjson.loads(o.value)["labels"]["alertname"]
                      for o in out if o.topic == "keyed" and o.key is not None)

    assert names(first) == sorted(owned.values())
    assert names(replay) == [owned[0]]  # the sender's own alert, triaged again
    assert [stage.parts[p].pipeline.counts["in"] for p in (1, 2, 3)] == [1, 1, 1]


def test_an_owner_that_said_it_was_idle_says_it_is_not_when_handed_alerts() -> None:
    """A partition idle toward stage 2 (which then stops waiting for it) gets an alert
    handed over: its record says it is not idle, so it must say so in its clock too, and
    say idle again later; else stage 2 waits for it, hearing nothing, until the idle
    timeout (30 s of stalled incidents)."""
    stage = make_stage(hand_over=True)
    stage.idle_timeout = 30.0
    for wall in (5.0, 6.0):
        for p in ALL:
            stage.tick_idle(p, wall, idle_after=600.0)
    assert all(part.idle_sent for part in stage.parts.values())
    name = names_owned_by(1)[0]
    out = stage.process(0, 0, orjson.dumps(alert(name, 100.0)), wall=7.0)

    def clocks(out: list[Output] | None, upstream: int) -> list[bool]:
        return [rec["up"][2] for rec in (orjson.loads(o.value) for o in out or ()
                                         if o.topic == "keyed" and o.key is None)
                if rec["up"][0] == upstream]

    assert [orjson.loads(o.value)["up"][:3] for o in out if o.topic == "keyed" and o.key
            ] == [[1, N, False]]
    assert not stage.parts[1].idle_sent
    later = [stage.tick_idle(p, wall, idle_after=600.0) for wall in (9.0, 10.0) for p in ALL]
    assert True in [idle for out in later for idle in clocks(out, 1)]
    assert stage.parts[1].idle_sent
