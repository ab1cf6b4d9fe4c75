"""``serve --state`` journals its inputs and takes the state only now and then: a crash between
two snapshots is undone by running the journaled requests and clock ticks again, which must
give exactly what the uninterrupted server gave."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from tests.http.conftest import Clock, embedded_backend, fresh_metrics
from triage.http import embedded
from triage.http.embedded import EmbeddedBackend
from triage.simulate.storms import repeat_storm
from triage.state.statefile import Journaled, StateFile

BODIES = list(repeat_storm(3_000, repeat_fraction=0.5, per_payload=10, seed=11))


def feed(backend: EmbeddedBackend, clock: Clock, bodies: list[bytes]) -> None:
    """Each body one second after the last, with a clock tick every third (pages fire)."""
    async def go() -> None:
        for i, body in enumerate(bodies):
            clock.now += 1.0
            await backend.accept(body, received_at=clock.now)
            if i % 3 == 2:
                backend.tick(clock.now)
        await backend.durable()
    asyncio.get_event_loop().run_until_complete(go())


def crash(backend: EmbeddedBackend) -> None:
    """What kill -9 leaves: the last commit, nothing of stop()."""
    assert backend.state is not None and backend._io is not None
    backend._io.shutdown()
    backend.state._db.close()
    for sink in backend._sinks.values():
        sink.close()


def start(tmp: Path, clock: Clock, state: Path) -> EmbeddedBackend:
    backend = embedded_backend(tmp, fresh_metrics(), clock, state=state, page_delay=20)
    asyncio.get_event_loop().run_until_complete(backend.start())
    return backend


@pytest.fixture(autouse=True)
def loop() -> None:
    asyncio.set_event_loop(asyncio.new_event_loop())


@pytest.mark.parametrize("snapshot_every", [40, 1_000_000])
def test_a_crash_between_snapshots_replays_to_the_same_outputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
        snapshot_every: int) -> None:
    monkeypatch.setattr(embedded, "SNAPSHOT_EVERY", snapshot_every)
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    whole.mkdir(), cut.mkdir()
    clock = Clock()
    backend = start(whole, clock, whole / "state.db")
    feed(backend, clock, BODIES)
    asyncio.get_event_loop().run_until_complete(backend.stop())

    clock = Clock()
    half = len(BODIES) // 2
    backend = start(cut, clock, cut / "state.db")
    feed(backend, clock, BODIES[:half])
    crash(backend)
    with StateFile(cut / "state.db") as sf:  # the crash left inputs only the journal has
        journaled = sum(len(row.inputs) for row in sf.journal(0))
    assert journaled > 0
    with caplog.at_level(logging.INFO, logger="triage.http"):
        backend = start(cut, clock, cut / "state.db")
    assert any("replayed" in r.getMessage() and "journaled" in r.getMessage()
               for r in caplog.records)
    assert not any(r.levelno >= logging.WARNING for r in caplog.records)
    feed(backend, clock, BODIES[half:])
    asyncio.get_event_loop().run_until_complete(backend.stop())

    events = (whole / "events.jsonl").read_bytes()
    assert events.count(b"incident.created") >= 5
    assert (cut / "events.jsonl").read_bytes() == events
    assert (cut / "dead.jsonl").read_bytes() == (whole / "dead.jsonl").read_bytes()
    assert saved(cut / "state.db") == saved(whole / "state.db")


def saved(path: Path) -> dict[str, object]:
    """Every table of a state file, without where its outputs were."""
    with StateFile(path) as sf:
        tables, silences = sf._state()
    tables["meta"].pop("checkpoint")
    return {**tables, "silences": silences}


def test_a_journal_row_keeps_every_input_byte_for_byte() -> None:
    from triage.state.statefile import Checkpoint
    inputs = [("r", 1.5, b'{"a": 1}'), ("t", 2.0, b""), ("d", 3.0, bytes(range(256)))]
    cp = Checkpoint("triage serve", 2, {"output": ("/x", 10)}, inputs=7)
    row = Journaled.decode(Journaled(4, inputs, cp, "v3").encode())
    assert (row.first, row.inputs, row.checkpoint, row.model) == (4, inputs, cp, "v3")
