"""Feedback on a real broker: ``triage feedback ingest`` (its own consumer group, dead letters,
commit after store, kill -9 and re-run) and ``triage serve --mode kafka`` publishing
``POST /api/v1/feedback`` to the ``feedback`` topic."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.http.tools import free_port, http, wait_until
from tests.integration.conftest import TRIAGE, KafkaCase
from triage.models.feedback import FeedbackStore
from triage.streams.topics import produce_lines

pytestmark = pytest.mark.kafka


def judgement(n: int, **overrides: Any) -> dict[str, Any]:
    return {"at": 1_800_000_000 + n, "label": "noise" if n % 3 else "actionable",
            "alertname": "HighCPU", "service": f"svc{n % 7}", "value": 0.8 + n / 10_000,
            "threshold": 0.8, "fingerprint": f"{n:016x}", "responder": "ana", **overrides}


BAD = [
    b'{"at": 0, "label": "maybe", "alertname": "X"}',  # label
    b'{"at": 0, "label": "noise"}',  # alertname missing
    b"not json at all",
]


def ingest(case: KafkaCase, store: Path, *extra: str, timeout: float = 120
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRIAGE, "feedback", "ingest", "--config", str(case.config),
                           "--store", str(store), "--once", *extra],
                          capture_output=True, text=True, timeout=timeout)


def stored(store: Path) -> int:
    if not store.exists():
        return 0
    try:
        with sqlite3.connect(store, timeout=5) as conn:
            return int(conn.execute("SELECT count(*) FROM feedback").fetchone()[0])
    except sqlite3.OperationalError:  # not created yet
        return 0


def test_ingest_once_stores_good_feedback_and_dead_letters_bad(
        kafka_case: Callable[..., KafkaCase], tmp_path: Path) -> None:
    case = kafka_case(partitions=2)
    good = [orjson.dumps(judgement(n)) for n in range(40)]
    produce_lines(case.kafka, case.topics["feedback"], good[:20] + BAD + good[20:],
                  key_field="fingerprint")
    store = tmp_path / "fb.db"
    done = ingest(case, store)
    assert done.returncode == 0, done.stderr
    assert "read" in done.stderr and "43" in done.stderr  # the summary
    history = FeedbackStore(store).read()
    assert sorted(history["fingerprint"]) == sorted(f"{n:016x}" for n in range(40))
    letters = case.wait_for("deadletter", lambda r: len(r) >= 3, timeout=30)
    assert len(letters) == 3
    by_raw = {d["raw"]: d for d in letters}
    assert set(by_raw) == {b.decode() for b in BAD}
    assert by_raw[BAD[0].decode()]["field"] == "label"
    assert by_raw[BAD[1].decode()]["field"] == "alertname"
    assert by_raw["not json at all"]["error"] == "DecodeError"
    assert all(d["topic"] == "feedback" and d["reason"] for d in letters)

    # offsets were committed: a second run reads nothing, more feedback is read once
    produce_lines(case.kafka, case.topics["feedback"], [orjson.dumps(judgement(99))])
    again = ingest(case, store)
    assert again.returncode == 0, again.stderr
    assert len(FeedbackStore(store).read()) == 41
    assert len(case.read("deadletter")) == 3


def test_kill_9_during_ingest_then_rerun_loses_and_doubles_nothing(
        kafka_case: Callable[..., KafkaCase], tmp_path: Path) -> None:
    case = kafka_case(partitions=3)
    total = 3000
    lines = [orjson.dumps(judgement(n)) for n in range(total)]
    lines[1500:1500] = BAD
    produce_lines(case.kafka, case.topics["feedback"], lines, key_field="fingerprint")
    store = tmp_path / "fb.db"
    proc = subprocess.Popen([TRIAGE, "feedback", "ingest", "--config", str(case.config),
                             "--store", str(store), "--once", "--batch", "5"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_until(lambda: stored(store) > 100 or None, timeout=60,
                   what="the ingest to store something", interval=0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert stored(store) < total, "the ingest finished before the kill: no crash tested"
    done = ingest(case, store)
    assert done.returncode == 0, done.stderr
    history = FeedbackStore(store).read()
    assert len(history) == total  # nothing lost, nothing stored twice
    assert history["fingerprint"].nunique() == total
    letters = case.read("deadletter")  # at least once: a replayed bad record is resent
    assert {d["raw"] for d in letters} == {b.decode() for b in BAD}


def test_serve_kafka_mode_publishes_feedback_that_ingest_stores(
        kafka_case: Callable[..., KafkaCase], tmp_path: Path) -> None:
    case = kafka_case()
    port = free_port()
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([TRIAGE, "serve", "--config", str(case.config), "--mode", "kafka",
                             "--port", str(port)], stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http("GET", f"{base}/-/ready")[0] == 200 or None, timeout=30,
                   what="triage serve to be ready", proc=proc)
        status, body = http("POST", f"{base}/api/v1/feedback",
                            orjson.dumps([judgement(0), judgement(1, duration="2m")]))
        assert status == 202, body
        assert orjson.loads(body)["records"] == 2
        status, body = http("POST", f"{base}/api/v1/feedback",
                            orjson.dumps(judgement(2, label="meh")))
        assert status == 400 and orjson.loads(body)["field"] == "label"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
    published = case.read("feedback")
    assert published == [judgement(0), judgement(1, duration="2m")]  # as sent
    store = tmp_path / "fb.db"
    done = ingest(case, store)
    assert done.returncode == 0, done.stderr
    history = FeedbackStore(store).read()
    assert list(history["fingerprint"]) == [f"{0:016x}", f"{1:016x}"]
    assert list(history["duration"])[1] == 120.0
    assert case.read("deadletter", timeout=1.0) == []


def test_ingest_follow_stops_cleanly_on_sigterm(
        kafka_case: Callable[..., KafkaCase], tmp_path: Path) -> None:
    case = kafka_case()
    store = tmp_path / "fb.db"
    port = free_port()
    proc = subprocess.Popen([TRIAGE, "feedback", "ingest", "--config", str(case.config),
                             "--store", str(store), "--metrics-port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        produce_lines(case.kafka, case.topics["feedback"],
                      [orjson.dumps(judgement(n)) for n in [*range(5), 2]])  # 2 sent twice
        wait_until(lambda: stored(store) == 5 or None, timeout=60,
                   what="the following ingest to store the feedback")
        # its /metrics: what got through, and nothing left to read
        wanted = ('triage_feedback_messages_total{outcome="stored"} 5.0',
                  'triage_feedback_messages_total{outcome="repeat"} 1.0',
                  "triage_feedback_backlog 0.0")
        wait_until(lambda: all(w in http("GET", f"http://127.0.0.1:{port}/metrics")[1]
                               .decode() for w in wanted) or None,
                   timeout=30, what="the ingest's metrics", proc=proc)
        time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert b"stopped" in err
    # its offsets were committed: a --once run in the same group finds nothing to read
    done = ingest(case, store)
    assert done.returncode == 0 and len(FeedbackStore(store).read()) == 5
