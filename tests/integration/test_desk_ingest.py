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


def test_desk_publish_puts_every_change_on_the_lifecycle_topic_once(
        kafka_case, tmp_path: Path) -> None:
    """``desk.lifecycle: true``: the changes made through the desk are published by ``triage
    desk publish`` on the lifecycle topic, in order per incident, keyed by the incident, each
    valid against ``schemas/lifecycle-event.schema.json``; a second run publishes nothing."""
    import yaml
    from jsonschema import Draft202012Validator

    from triage.desk import lifecycle as lc
    from triage.streams.topics import consume_records

    case = kafka_case(partitions=3)
    config = yaml.safe_load(case.config.read_text())
    config["desk"] = {"lifecycle": True, "url": f"sqlite:///{tmp_path / 'desk.db'}"}
    case.config.write_text(yaml.safe_dump(config))
    events = triage_events(steps=60)
    with DeskStore(config["desk"]["url"], lifecycle=True) as store:
        store.ingest(events)
        iid = events[0]["incident"]["id"]
        store.act(iid, lambda r, log: lc.add_entry(r, log, "observation", "seen", actor="ana",
                                                   at=r["triggered_at"] + 1))
        logs = {i: store.log(i) for i in {e["incident"]["id"] for e in events}}

    def publish() -> str:
        done = subprocess.run([TRIAGE, "desk", "publish", "--config", str(case.config),
                               "--once"], capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stderr

    total = sum(len(rows) for rows in logs.values())
    assert f"{total:,} lifecycle events published" in publish()
    records = consume_records(case.kafka, case.topics["lifecycle"], timeout=3)
    got = [orjson.loads(r.value) for r in records]
    assert len(got) == total and len({e["event_id"] for e in got}) == total
    schema = orjson.loads((Path(__file__).resolve().parents[2] / "schemas" /
                           "lifecycle-event.schema.json").read_bytes())
    validator = Draft202012Validator(schema)
    assert all(not list(validator.iter_errors(e)) for e in got)
    for r in records:  # keyed by the incident, so one incident's events share a partition
        assert r.key.decode() == orjson.loads(r.value)["incident"]["id"]
    by_incident: dict[str, list[int]] = {}
    for e in got:
        by_incident.setdefault(e["incident"]["id"], []).append(int(e["event_id"].rsplit(":", 1)[1]))
    assert all(seqs == sorted(seqs) for seqs in by_incident.values())
    assert "0 lifecycle events published" in publish()
