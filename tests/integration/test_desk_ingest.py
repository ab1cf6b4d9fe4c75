"""``triage desk ingest`` from the ``incidents`` topic on a real broker: each event applied
once, a bad message dead-lettered with its payload, a second run changes nothing."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
from kafka import KafkaProducer

from tests.desk.conftest import triage_events
from tests.integration.conftest import TRIAGE
from triage.desk.store import DeskStore
from triage.streams.topics import client_config


def test_desk_ingest_reads_the_incidents_topic_once(kafka_case, tmp_path: Path) -> None:
    case = kafka_case(partitions=3)
    events = triage_events(steps=120)
    producer = KafkaProducer(**client_config(case.kafka), acks="all")
    for e in events + events[:20]:  # some twice: a producer that retried
        producer.send(case.topics["incidents"], key=e["incident"]["id"].encode(),
                      value=orjson.dumps(e))
    producer.send(case.topics["incidents"], value=b'{"type": "incident.created"}')
    producer.flush()
    producer.close()
    db = f"sqlite:///{tmp_path / 'desk.db'}"

    def ingest() -> str:
        done = subprocess.run([TRIAGE, "desk", "ingest", "--config", str(case.config),
                               "--db", db, "--once", "--batch", "50"],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr

    said = ingest()
    assert f"{len(events):,} events applied, 20 seen before, 1 dead-lettered" in said
    with DeskStore(db) as store:
        assert store.count()[0] == len({e["incident"]["id"] for e in events})
        before = store.count()
    dead = case.wait_for("deadletter", lambda r: len(r) >= 1, timeout=30)
    assert dead[0]["field"] == "event_id" and "incident.created" in dead[0]["raw"]
    assert dead[0]["topic"] == "incidents" and dead[0]["offset"] is not None

    # the group's offsets were committed: a second run reads nothing new
    said = ingest()
    assert "0 events applied, 0 seen before, 0 dead-lettered" in said
    with DeskStore(db) as store:
        assert store.count() == before
