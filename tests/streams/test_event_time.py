"""Event time over several partitions (issue 12): stage 2's clock is the minimum of its
upstreams' low marks, records ahead of it wait, and nothing it holds is lost in a restart.
In process, no broker: the partitions are read in random orders (``harness.Streams``)."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.integration.conftest import CONFIG
from tests.integration.storms import storm, without_sentinel
from tests.streams.harness import Streams, embedded, outcome, services_yaml
from triage.streams.eventtime import UpstreamClock
from triage.streams.stages import StateWrite


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("event-time")
    (tmp / "services.yaml").write_text(yaml.safe_dump(services_yaml()))
    path = tmp / "triage.yaml"
    path.write_text(yaml.safe_dump({**CONFIG, "topology": {"file": str(tmp / "services.yaml")}}))
    return path


LINES = storm(steps=60)


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
        clock.hold(t, up, 0, b"{}", (t, up))
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


def test_held_records_survive_a_restart(config: Path) -> None:
    """Records waiting for a slow upstream are state: a stage-2 partition rebuilt from its
    table has them, and releases them when the clock comes."""
    rng = random.Random(7)
    streams = Streams(config, 3, 1)
    streams.produce(LINES, rng)
    # read partition 0 of raw far ahead of the others, and stage 2 in the middle of it
    streams.step("raw", 0, 10_000)
    streams.step("raw", 1, 5)
    streams.step("keyed", 0, 10_000)
    stage = streams.incidents
    held = len(stage.parts[0].upstream.held)
    assert held > 0
    writes: list[StateWrite] = stage.take_state(0)
    table = {key: value for key, value in writes if value is not None}
    stage.drop(0)
    part = stage.restore(0, list(table.items()), wall=streams.wall)
    assert len(part.upstream.held) == held
    assert orjson.loads(table[b"0|m"])["upstream"]["n"] == 3
    streams.run(rng)
    assert streams.incidents.counts()["late_records"] == 0
    assert [e for e in streams.events if e["type"] == "incident.created"]


def test_records_of_a_stage_one_that_names_no_upstream_are_counted_late(config: Path) -> None:
    """The measure of the bug: the same storm through the old clock (records without the
    upstream marker, as before issue 12) puts many records behind stage 2's clock."""
    rng = random.Random(1)
    streams = Streams(config, 6, 3, legacy=True)
    streams.produce(LINES, rng)
    streams.run(rng, skew=6.0)
    assert streams.incidents.counts()["late_records"] > 10
