"""End to end: `triage run` as a user runs it, including kill -9 and restart."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from triage.simulate.storms import demo_storm, repeat_storm
from triage.state.statefile import StateFile

pytestmark = pytest.mark.slow
TRIAGE = [sys.executable, "-m", "triage.cli"]


def triage(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*TRIAGE, *args], input=stdin, capture_output=True, timeout=300,
                          check=False)


def records(path: Path) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in path.read_bytes().splitlines()]


def test_run_on_every_format_with_malformed_lines(tmp_path: Path) -> None:
    storm = tmp_path / "storm.jsonl"
    lines = demo_storm()
    storm.write_bytes(b"\n".join(lines) + b"\n")
    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    incidents = tmp_path / "incidents.jsonl"
    from triage.app.demo import demo_config_path

    proc = triage("run", "--config", str(demo_config_path()), "--input", str(storm),
                  "--output", str(incidents), "--outcomes", str(out),
                  "--dead-letter", str(dead))
    assert proc.returncode == 0, proc.stderr.decode()
    summary = proc.stderr.decode()
    assert "reconciled" in summary

    recs = records(out)
    sources = {r["source"] for r in recs if r["kind"] == "alert"}
    assert sources >= {"alertmanager-webhook", "alertmanager-api-v2", "grafana-webhook",
                       "pagerduty-events-v2", "cloudwatch-sns", "generic"}
    failures = records(dead)
    assert [f["error"] for f in failures] == ["DecodeError", "SchemaError", "TimestampError",
                                              "UnknownFormatError", "SchemaError"]
    # every failure keeps its raw line exactly, and says which line and field
    raw_lines = {line.decode() for line in lines}
    for f in failures:
        assert f["raw"] in raw_lines or f["source"] is not None
        assert f["reason"] and f["line"]
    assert failures[1]["field"] == "alerts[0].labels"
    assert [r for r in recs if r["kind"] == "failed"] == failures

    reasons = Counter(r["reason"] for r in recs if r["kind"] == "suppressed")
    assert reasons["silence"] >= 2 and reasons["maintenance"] == 2
    assert reasons["threshold"] == 1 and reasons["flapping"] >= 1
    flapping = [r for r in recs if r.get("change") == "flapping"]
    assert len(flapping) == 1
    # cartservice: 3 instances x 2 HA peers x 19 resends -> 3 new alerts, then 3 resolves
    cart = [r for r in recs if r["kind"] == "alert" and r["labels"].get("service") == "cartservice"]
    assert Counter(r["change"] for r in cart) == {"firing": 3, "resolved": 3}


def test_counts_reconcile_exactly(tmp_path: Path) -> None:
    storm = tmp_path / "storm.jsonl"
    storm.write_bytes(b"\n".join([*demo_storm(), *repeat_storm(2000, seed=3)]) + b"\n")
    out = tmp_path / "out.jsonl"
    from triage.app.bootstrap import build_pipeline
    from triage.app.demo import demo_config_path
    from triage.app.runtime import run_embedded
    from triage.app.settings import load_settings

    pipeline = build_pipeline(load_settings(demo_config_path()))
    result = run_embedded(pipeline, input_path=str(storm), output=str(out))
    c = result.counts
    written = Counter(r["kind"] for r in records(out))
    expired = c["swept"]
    assert c["in"] == c["triaged"] + c["deduplicated"] + c["suppressed"] + c["failed"]
    assert written["alert"] == c["triaged"] + expired
    assert written["suppressed"] == c["suppressed"] and written["failed"] == c["failed"]


def test_replay_is_deterministic(tmp_path: Path) -> None:
    from triage.app.demo import demo_config_path
    from triage.simulate.storms import boutique_storm

    storm = tmp_path / "storm.jsonl"
    storm.write_bytes(b"\n".join([*demo_storm(), *boutique_storm()]) + b"\n")
    outputs = []
    for run in ("a", "b"):
        inc, outc = tmp_path / f"{run}-incidents.jsonl", tmp_path / f"{run}-outcomes.jsonl"
        assert triage("run", "-q", "-c", str(demo_config_path()), "-i", str(storm),
                      "-o", str(inc), "--outcomes", str(outc)).returncode == 0
        outputs.append((inc.read_bytes(), outc.read_bytes()))
    assert outputs[0] == outputs[1]
    assert outputs[0][0].count(b"incident.created") >= 2


def _big_storm(path: Path) -> None:
    # one alert per line, 30% new: long enough to be killed mid-run, with real state
    with path.open("wb") as fh:
        for line in repeat_storm(60_000, repeat_fraction=0.7, per_payload=1, seed=11):
            fh.write(line + b"\n")


def _lines_done(state: Path) -> int:
    try:
        checkpoint = StateFile.last_checkpoint(state)
    except sqlite3.Error:
        return 0
    return checkpoint.lines_done if checkpoint else 0


def _kill_mid_run(args: list[str], state: Path) -> None:
    proc = subprocess.Popen([*TRIAGE, *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while _lines_done(state) < 2000 and time.monotonic() < deadline:
        assert proc.poll() is None, "run finished before it could be killed; enlarge the input"
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL
    assert 0 < _lines_done(state) < 60_000


def test_kill_9_and_rerun_emits_everything_exactly_once(tmp_path: Path) -> None:
    storm = tmp_path / "storm.jsonl"
    _big_storm(storm)
    reference, ref_outcomes = tmp_path / "reference.jsonl", tmp_path / "ref-outcomes.jsonl"
    assert triage("run", "-q", "-i", str(storm), "-o", str(reference),
                  "--outcomes", str(ref_outcomes)).returncode == 0

    out, outcomes = tmp_path / "out.jsonl", tmp_path / "outcomes.jsonl"
    state = tmp_path / "state.db"
    args = ["run", "-q", "-i", str(storm), "-o", str(out), "--outcomes", str(outcomes),
            "--state", str(state), "--checkpoint-every", "500"]
    _kill_mid_run(args, state)
    resumed = triage(*args[:1], *args[2:])  # same command, with the summary this time
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert "resumed after line" in resumed.stderr.decode()
    # byte for byte what an uninterrupted run writes: nothing twice, nothing lost, and
    # incidents (ids, sequence numbers) carried across the crash by the state file
    assert outcomes.read_bytes() == ref_outcomes.read_bytes()
    assert out.read_bytes() == reference.read_bytes()
    assert out.read_bytes().count(b"incident.created") > 100


def test_kill_9_then_replaying_all_input_on_stdin_pages_nothing_twice(tmp_path: Path) -> None:
    storm = tmp_path / "storm.jsonl"
    _big_storm(storm)
    reference = tmp_path / "reference.jsonl"
    assert triage("run", "-q", "-i", str(storm), "-o", "/dev/null", "--outcomes",
                  str(reference)).returncode == 0

    out, incidents, state = (tmp_path / "out.jsonl", tmp_path / "incidents.jsonl",
                             tmp_path / "state.db")
    _kill_mid_run(["run", "-q", "-i", str(storm), "-o", str(incidents), "--outcomes", str(out),
                   "--state", str(state), "--checkpoint-every", "500"], state)
    # the sender does not know where we stopped: it sends everything again, on stdin
    again = triage("run", "-q", "-i", "-", "-o", str(incidents), "--outcomes", str(out),
                   "--state", str(state), stdin=storm.read_bytes())
    assert again.returncode == 0, again.stderr.decode()
    created = [r["incident"]["id"] for r in records(incidents) if r["type"] == "incident.created"]
    assert len(created) == len(set(created)), "an incident was created (paged) twice"

    def new_alerts(path: Path) -> list[tuple[object, ...]]:
        return [(r["fingerprint"], r["change"], r["occurrence"]) for r in records(path)
                if r["kind"] == "alert"]

    got = new_alerts(out)
    assert len(got) == len(set(got)), "an alert state change was emitted twice"
    assert sorted(got) == sorted(new_alerts(reference))


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "triage.yaml"
    cfg.write_text("dedup:\n  resolve_timeout: five minutes\n")
    proc = triage("run", "--config", str(cfg), "-i", "-", "-o", "-", stdin=b"")
    assert proc.returncode == 2
    assert "dedup.resolve_timeout" in proc.stderr.decode()


def test_env_overrides_file(tmp_path: Path) -> None:
    from triage.app.settings import load_settings

    cfg = tmp_path / "triage.yaml"
    cfg.write_text("dedup:\n  resolve_timeout: 5m\n")
    os.environ["TRIAGE_DEDUP__RESOLVE_TIMEOUT"] = "10m"
    try:
        assert load_settings(cfg).dedup.resolve_timeout == 600.0
    finally:
        del os.environ["TRIAGE_DEDUP__RESOLVE_TIMEOUT"]


def test_corrupt_state_file_is_a_clear_error(tmp_path: Path) -> None:
    state = tmp_path / "state.db"
    state.write_bytes(b"definitely not sqlite" * 100)
    proc = triage("run", "-i", "-", "-o", "-", "--state", str(state), stdin=b"")
    assert proc.returncode == 2
    assert "not a triage state file" in proc.stderr.decode()


def test_readme_config_example_is_valid(tmp_path: Path) -> None:
    import re

    from triage.app.settings import load_settings

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"## Configuration.*?```yaml\n(.*?)```", readme, re.S)
    assert block is not None
    (tmp_path / "silences.json").write_text("[]")
    (tmp_path / "thresholds.yaml").write_text("version: 1\nrules: []\n")
    (tmp_path / "services.yaml").write_text(
        "services:\n  cart: {depends_on: [redis], team: cart, tier: 1}\n  redis: {tier: 2}\n")
    (tmp_path / "changes.jsonl").write_text(
        '{"id": "d1", "service": "cart", "kind": "deploy", "at": "2026-11-27T10:00:00Z"}\n')
    cfg = tmp_path / "triage.yaml"
    cfg.write_text(block.group(1))
    settings = load_settings(cfg)
    from triage.app.bootstrap import build_pipeline

    pipeline = build_pipeline(settings)
    assert len(pipeline.silences) == 2 and settings.dedup.notification_timeout == 86400.0
    from triage.app.bootstrap import build_engine

    engine = build_engine(settings)
    assert engine.topology.depends_on("cart", "redis") and len(engine.changes) == 1
    assert engine.oncall is not None and engine.oncall.on_call("cart", 1795773600.0)
    assert engine.priority_policy.matrix["critical"]["low"] == "P2"


def test_a_bug_in_the_incident_stage_dead_letters_the_line_and_the_run_goes_on(
        tmp_path: Path) -> None:
    from triage.app.runtime import run_embedded
    from triage.core.incidents import IncidentEngine
    from triage.core.pipeline import Pipeline

    storm = tmp_path / "storm.jsonl"
    storm.write_bytes(b'{"alertname": "A", "at": 1800000000}\n'
                      b'{"alertname": "Boom", "at": 1800000010}\n'
                      b'{"alertname": "C", "at": 1800000020}\n')

    class Flaky(IncidentEngine):
        def observe(self, outcomes, now):  # type: ignore[no-untyped-def]
            if any(getattr(o, "alert", None) and o.alert.name == "Boom" for o in outcomes):
                raise RuntimeError("bug")
            return super().observe(outcomes, now)

    out, dead = tmp_path / "out.jsonl", tmp_path / "dead.jsonl"
    result = run_embedded(Pipeline(), engine=Flaky(), input_path=str(storm), output=str(out),
                          dead_letter=str(dead))
    (failure,) = records(dead)
    assert failure["error"] == "RuntimeError" and failure["line"] == 2
    assert "Boom" in failure["raw"] and "incident stage" in failure["reason"]
    assert result.lines == 3 and out.read_bytes().count(b"incident.created") == 2
