"""Event time over several partitions (issue 12): stage 2's clock is the minimum of its
upstreams' low marks, records ahead of it wait, and nothing it holds is lost in a restart.
In process, no broker: the partitions are read in random orders (``harness.Streams``)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.conftest import CONFIG
from tests.integration.storms import storm, summary, without_sentinel
from tests.streams.harness import Streams, embedded, outcome, services_yaml
from triage.streams.eventtime import UpstreamClock


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("event-time")
    (tmp / "services.yaml").write_text(yaml.safe_dump(services_yaml()))
    path = tmp / "triage.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "topology": {"file": str(tmp / "services.yaml")}}))
    return path


LINES = storm(steps=60)
MALFORMED = 6  # storm(): one malformed line every 10 steps


def test_a_silent_upstream_stops_holding_the_clock_after_the_idle_timeout() -> None:
    clock = UpstreamClock(started=0.0, idle_timeout=30.0)
    clock.note(0, 2, 100.0, False, wall=0.0)
    assert clock.safe_time(0.0, wall=29.0) == 0.0  # partition 1 never heard: waited for
    assert clock.safe_time(0.0, wall=31.0) == 100.0  # ... until the idle timeout
    clock.note(1, 2, 50.0, False, wall=31.0)  # back: it holds the clock again
    assert clock.safe_time(100.0, wall=31.0) == 100.0  # which never goes back


def test_held_records_come_out_in_event_time_order() -> None:
    clock = UpstreamClock(started=0.0)
    for t, up in [(30.0, 1), (10.0, 0), (20.0, 1), (10.0, 1), (20.0, 0)]:
        clock.hold(t, up, 0, (t, up))
    assert [h.item for h in clock.due(20.0)] == [(10.0, 0), (10.0, 1), (20.0, 0), (20.0, 1)]
    assert [h.item for h in clock.due(100.0)] == [(30.0, 1)]


def test_one_raw_partition_gives_the_embedded_result_whatever_the_order(config: Path) -> None:
    want = outcome(without_sentinel(embedded(config, LINES)))
    for seed in range(3):
        rng = random.Random(seed)
        streams = Streams(config, 1, 3)
        streams.produce(LINES, rng)
        streams.run(rng)
        assert outcome(without_sentinel(streams.events)) == want


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), raw=st.sampled_from([3, 6]))
def test_stage_two_never_runs_ahead_of_a_busy_upstream(config: Path, seed: int,
                                                       raw: int) -> None:
    """The bug of issue 12: one stage-2 partition followed the fastest of six stage-1
    partitions, so everything from the others came "late" (11 of 12 failures lost). Now
    no record reaches stage 2 behind its clock while its upstream is busy, whatever the
    order partitions are read in; and every incident is announced once."""
    rng = random.Random(seed)
    streams = Streams(config, raw, 3)
    streams.produce(LINES, rng)
    streams.run(rng, skew=6.0)
    assert streams.incidents.counts()["late_records"] == 0
    created = [e["incident"]["id"] for e in streams.events if e["type"] == "incident.created"]
    assert len(created) == len(set(created)) > 0
    assert not [d for d in streams.dead if d.get("topic") == "keyed"]


def identical(config: Path, streams: Streams) -> tuple[int, int]:
    want = outcome(without_sentinel(embedded(config, LINES)))
    got = outcome(without_sentinel(streams.events))
    return sum(1 for k, v in want.items() if got.get(k) == v), len(want)


def test_held_records_survive_a_restart(config: Path) -> None:
    """What either stage holds for a slower partition is in memory only, and in Kafka: a
    partition rebuilt from its table reads it again from the offset its state names, skips
    what it had applied after it, and the incidents are those of ``triage run``."""
    rng = random.Random(7)
    streams = Streams(config, 3, 2)
    streams.produce(LINES, rng, keyed=True)
    restarted: set[tuple[str, int]] = set()
    while streams.pending() and len(restarted) < 4:
        topic, partition = rng.choice(streams.pending())
        streams.step(topic, partition, rng.randint(1, 50))
        for p, part in list(streams.intake.parts.items()):
            if len(part.queue) > 5 and ("raw", p) not in restarted:
                assert streams.restart("raw", p) >= len(part.queue) > 0
                assert not streams.intake.parts[p].queue
                restarted.add(("raw", p))
        for q, ipart in list(streams.incidents.parts.items()):
            if ipart.upstream.held and ("keyed", q) not in restarted:
                assert streams.restart("keyed", q) >= len(ipart.upstream.held) > 0
                restarted.add(("keyed", q))
    assert {topic for topic, _ in restarted} >= {"raw"}  # the order made stage 1 wait
    streams.run(rng)
    assert streams.incidents.counts()["late_records"] == 0
    # A malformed message read behind a waiting one is dead-lettered after it, so the
    # restart reads it again without dead-lettering it twice (two workers sharing the
    # storm did, on a loaded machine: 16 dead letters for 12 malformed lines).
    dead = [(d["topic"], d["partition"], d["offset"]) for d in streams.dead]
    assert len(dead) == len(set(dead)) == MALFORMED
    assert summary(without_sentinel(streams.events)) == summary(
        without_sentinel(embedded(config, LINES)))


def test_a_crash_of_stage_one_mid_storm_changes_no_incident(config: Path) -> None:
    """Stage 1 rebuilt from its table sends what it had sent since again; stage 2 skips
    the copies (``RecentRecords``), and the incidents are those of ``triage run``."""
    rng = random.Random(11)
    streams = Streams(config, 3, 2)
    streams.produce(LINES, rng, keyed=True)
    for _ in range(40):
        topic, partition = rng.choice(streams.pending())
        streams.step(topic, partition, rng.randint(1, 30))
    streams.restart("raw", 1)
    streams.run(rng)
    same, total = identical(config, streams)
    assert same >= total - 1


@pytest.mark.parametrize("produced", ["keyed", "unkeyed"])
@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), raw=st.sampled_from([3, 6]), keyed=st.sampled_from([2, 3]))
def test_several_partitions_give_the_embedded_incidents(config: Path, seed: int, raw: int,
                                                        keyed: int, produced: str) -> None:
    """Issue 12's equivalence, in process: the alerts keyed by fingerprint (as ``triage
    serve`` and ``triage produce`` publish them) give the incidents of ``triage run`` (ids,
    root causes and priorities at creation and at the end, services, alerts, final status,
    event types), whatever order and pace the partitions are read in. So does every line
    on a random partition (kcat, a load balancer), on one worker: a partition triages the
    alerts other partitions of the worker own on them, at the line's time
    (``IntakeStage._hand_over``)."""
    rng = random.Random(seed)
    streams = Streams(config, raw, keyed)
    streams.produce(LINES, rng, keyed=produced == "keyed")
    streams.run(rng, skew=6.0)
    want = without_sentinel(embedded(config, LINES))
    got = without_sentinel(streams.events)
    assert outcome(got) == outcome(want)
    assert summary(got) == summary(want)
    assert streams.incidents.counts()["late_records"] == 0
    counts = streams.intake.counts()
    assert counts["forwarded"] == 0
    assert (counts["handed_over"] > len(LINES) // 2) == (produced == "unkeyed")


@settings(max_examples=6, deadline=None)
@given(seed=st.integers(0, 10_000), raw=st.sampled_from([2, 4, 6]))
def test_keyed_input_over_two_workers_gives_the_embedded_incidents(config: Path, seed: int,
                                                                   raw: int) -> None:
    """docs/streaming.md's claim for several workers: input keyed by fingerprint, spread
    over two workers holding one or more partitions of both topics, each with its own
    stages (they hear each other only through alerts.keyed), gives ``triage run``'s
    incidents."""
    rng = random.Random(seed)
    streams = Streams(config, raw, 3, workers=2)
    streams.produce(LINES, rng, keyed=True)
    streams.run(rng, skew=6.0)
    want = without_sentinel(embedded(config, LINES))
    got = without_sentinel(streams.events)
    assert outcome(got) == outcome(want)
    assert summary(got) == summary(want)
    assert streams.counts("keyed")["late_records"] == 0


def test_records_of_a_stage_one_that_names_no_upstream_are_counted_late(config: Path) -> None:
    """The measure of the bug: the same storm through the old clock (records without the
    upstream marker, as before issue 12) puts many records behind stage 2's clock."""
    rng = random.Random(1)
    streams = Streams(config, 6, 3, legacy=True, hand_over=False)
    streams.produce(LINES, rng)
    streams.run(rng, skew=6.0)
    assert streams.incidents.counts()["late_records"] > 10


def test_keyed_input_with_clock_only_payloads_resolves_as_triage_run(tmp_path: Path) -> None:
    """The rebalance test's stream in process: alerts keyed by fingerprint, and on every
    partition a payload with no alert that only moves the clock. Timeouts must expire as
    the low mark passes them, not wait for an alert to arrive (they did: the last
    episodes never resolved)."""
    from tests.integration.test_rebalance import (
        PARTITIONS,
        embedded_input,
        heartbeat,
        paced_storm,
    )
    from tests.streams.harness import kafka_partition

    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "correlation": {
        **CONFIG["correlation"], "recurrence_window": "0s"}}))
    steps = paced_storm()
    want = {(e["incident"]["id"], e["type"]) for e in embedded(path, embedded_input(steps))}
    streams = Streams(path, PARTITIONS, PARTITIONS)
    for step in steps:
        for p in range(PARTITIONS):
            streams.raw[p].append(heartbeat(step.t))
        for fp, line in step.alerts:
            streams.raw[kafka_partition(fp.encode(), PARTITIONS)].append(line)
    streams.run(random.Random(3))
    assert {(e["incident"]["id"], e["type"]) for e in streams.events} == want
