"""Corrupt state is found and named, never loaded as wrong state; one alert from the future
does not move the clock."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.faults.conftest import FAST_PAGES, Losses
from tests.faults.test_disk_full import run, storm_file
from triage.app.bootstrap import build_engine, build_pipeline
from triage.app.demo import demo_config_path
from triage.app.settings import load_settings
from triage.errors import StateError
from triage.simulate.storms import boutique_storm
from triage.state.statefile import StateFile

pytestmark = pytest.mark.slow


def snapshot(path: Path, config: Path) -> Any:
    """Everything a restore puts in memory, comparable."""
    settings = load_settings(config)
    engine = build_engine(settings)
    pipeline = build_pipeline(settings, changes=engine.changes)
    with StateFile(path) as state:
        checkpoint = state.restore(pipeline, engine)
    return (sorted(pipeline.dedup.records()), pipeline.watermark, pipeline.next_sweep,
            dict(pipeline.counts), sorted(s.id for s in pipeline.silences),
            sorted(orjson.dumps(i.to_record()) for i in engine.incidents.values()),
            sorted(engine.timers()), checkpoint)


def test_bit_flips_in_the_state_file_are_found_or_harmless(tmp_path: Path,
                                                           losses: Losses) -> None:
    """Every single-bit flip either fails the load with a StateError naming the damage, or
    leaves exactly the state that was saved (a flip in free space). Flips inside the rows'
    bytes are always found."""
    config = tmp_path / "triage.yaml"
    config.write_text(FAST_PAGES)
    storm = storm_file(tmp_path / "storm.jsonl")
    state = tmp_path / "state.db"
    assert run("-c", str(config), "-i", str(storm), "-o", str(tmp_path / "inc.jsonl"),
               "--state", str(state)).returncode == 0
    with sqlite3.connect(state) as db:  # everything in the main file, as after a clean stop
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        rows = [r for t in ("alerts", "incidents", "meta")
                for (r,) in db.execute(f"SELECT rec FROM {t}")]
    original = snapshot(state, config)
    data = state.read_bytes()
    # where the rows' bytes are in the file: flips there must be found
    in_rows = [data.find(r) for r in rows if len(r) > 40 and data.find(r) >= 0]
    rng = random.Random(3)
    trials = [("row", pos + rng.randrange(40)) for pos in rng.sample(in_rows, 20)]
    trials += [("anywhere", rng.randrange(len(data))) for _ in range(20)]
    found = wrong = 0
    for kind, offset in trials:
        bad = tmp_path / "bad.db"
        flipped = bytearray(data)
        flipped[offset] ^= 1 << rng.randrange(8)
        bad.write_bytes(bytes(flipped))
        for side in ("bad.db-wal", "bad.db-shm"):
            (tmp_path / side).unlink(missing_ok=True)
        try:
            loaded = snapshot(bad, config)
        except StateError as exc:
            found += 1
            assert str(bad) in str(exc)
            continue
        if kind == "row" or loaded != original:
            wrong += 1
    assert losses.record("state file: 40 single-bit flips, none loaded as wrong state",
                         40, 40 - wrong) == 0
    assert found >= 20  # at least every flip inside a row


def test_a_corrupt_row_is_named(tmp_path: Path) -> None:
    config = tmp_path / "triage.yaml"
    config.write_text(FAST_PAGES)
    state = tmp_path / "state.db"
    storm = storm_file(tmp_path / "storm.jsonl")
    assert run("-c", str(config), "-i", str(storm), "-o", str(tmp_path / "inc.jsonl"),
               "--state", str(state)).returncode == 0
    with sqlite3.connect(state) as db:
        key, rec = db.execute("SELECT key, rec FROM alerts LIMIT 1").fetchone()
        db.execute("UPDATE alerts SET rec = ? WHERE key = ?",
                   (rec.replace(b"firing", b"fiRing", 1), key))
    again = run("-c", str(config), "-i", str(storm), "-o", str(tmp_path / "inc.jsonl"),
                "--state", str(state))
    assert again.returncode == 2
    message = again.stderr.decode().replace("\n", "")
    assert "corrupt row in table alerts" in message and key in message


FUTURE = b'{"alertname": "ClockFromTheFuture", "service": "ghost", "severity": "critical", ' \
         b'"at": "2099-01-01T00:00:00Z"}'


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_one_alert_from_the_future_does_not_move_the_clock(tmp_path: Path, where: str,
                                                           losses: Losses) -> None:
    lines = boutique_storm()
    at = {"first": 0, "middle": len(lines) // 2, "last": len(lines)}[where]
    clean, bad = tmp_path / "clean.jsonl", tmp_path / "bad.jsonl"
    clean.write_bytes(b"\n".join(lines) + b"\n")
    bad.write_bytes(b"\n".join([*lines[:at], FUTURE, *lines[at:]]) + b"\n")
    outputs = {}
    for name, storm in (("clean", clean), ("bad", bad)):
        out = tmp_path / f"{name}-inc.jsonl"
        done = run("-c", str(demo_config_path()), "-i", str(storm), "-o", str(out),
                   "--outcomes", str(tmp_path / f"{name}-outcomes.jsonl"))
        assert done.returncode == 0, done.stderr.decode()
        outputs[name] = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    pages = {k: [(e["at"], e["incident"]["root_cause"]["service"]) for e in v
                 if e["type"] == "incident.created"] for k, v in outputs.items()}
    assert losses.record(f"an alert stamped 2099 ({where} of the demo storm): pages kept",
                         len(pages["clean"]), len(pages["bad"])) == 0
    assert pages["bad"] == pages["clean"]  # same pages at the same times: the clock held
    outcomes = (tmp_path / "bad-outcomes.jsonl").read_bytes()
    assert b"ClockFromTheFuture" in outcomes  # clamped (or, at the start, dead-lettered)
    assert b"2099-01-01" in outcomes
