"""Multi-alert payloads and silences on a four-partition ``alerts.raw``, with a real broker
and a real worker: every alert is triaged by the partition its fingerprint maps to (the
others hand it over there, or forward it when another worker owns it), so an alert in
batches landing on different partitions pages once; a silence posted to one partition
silences alerts on all of them.

Needs the worker to route (``IntakeStage.raw_partitions`` and ``partition_of`` set by
``triage.streams.agents.wire``)."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.partitioner import DefaultPartitioner
from kafka import KafkaProducer

from tests.integration.conftest import TRIAGE
from tests.integration.storms import T0
from triage.core.fingerprint import labelset_fingerprint
from triage.core.timeutil import format_timestamp
from triage.streams.topics import client_config, consume_records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

PARTITIONS = 4
SERVICES = 12
NAMES = ("HighLatency", "ErrorRate")


def kafka_partition(key: bytes) -> int:
    """Where the worker's producer (aiokafka) puts a message keyed ``key``."""
    every = list(range(PARTITIONS))
    return int(DefaultPartitioner()(key, every, every))


def labels(name: str, service: str) -> dict[str, str]:
    return {"alertname": name, "service": service}


def batch(step: int) -> list[dict[str, Any]]:
    """A Prometheus ``POST /api/v2/alerts`` body: every alert firing, plus one on the
    silenced service; the first batch also carries a bad alert."""
    starts = format_timestamp(T0 + 2 * step)
    body: list[dict[str, Any]] = [
        {"labels": labels(name, f"svc{s:02d}"), "startsAt": starts}
        for s in range(SERVICES) for name in NAMES]
    body.append({"labels": labels("DiskFull", "db"), "startsAt": starts})
    if step == 0:
        body.append({"labels": labels("Broken", "svc00"), "startsAt": "soon"})
    return body


def silence() -> bytes:
    return orjson.dumps({
        "matchers": [{"name": "service", "value": "db", "isRegex": False}],
        "startsAt": format_timestamp(T0 - 3600), "endsAt": format_timestamp(T0 + 3600),
        "createdBy": "alice", "comment": "db maintenance"})


def silence_copies(records: list[Any]) -> list[dict[str, Any]]:
    return [r for r in records if isinstance(r, dict) and r.get("_triage") == "silence"]


def send(case: Any, values: list[tuple[bytes, int]]) -> None:
    producer = KafkaProducer(**client_config(case.kafka), acks="all")
    try:
        for value, partition in values:
            producer.send(case.topics["raw"], value=value, partition=partition)
        producer.flush()
    finally:
        producer.close()


def test_batches_on_several_partitions_page_each_alert_once(kafka_case,
                                                            tmp_path: Path) -> None:
    case = kafka_case(partitions=PARTITIONS)
    worker = case.start_worker("--idle-after", "600")
    # the silence lands on partition 1 only; its copies must reach the three others before
    # the alerts do (a partition processes its messages in order)
    send(case, [(silence(), 1)])
    copies = case.wait_for("raw", lambda r: len(silence_copies(r)) >= PARTITIONS - 1,
                           timeout=90, worker=worker)
    assert len(silence_copies(copies)) == PARTITIONS - 1
    # every alert in every batch, the batches spread over all partitions
    steps = 8
    send(case, [(orjson.dumps(batch(i)), i % PARTITIONS) for i in range(steps)])
    fingerprints = {labelset_fingerprint(labels(name, f"svc{s:02d}"))
                    for s in range(SERVICES) for name in NAMES}

    def alert_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return [r for r in records if r.get("kind") == "alert"]

    keyed = case.wait_for("keyed", lambda r: {x["fingerprint"] for x in alert_records(r)}
                          >= fingerprints, timeout=90, worker=worker)
    # give stray duplicate pages time to show up before judging
    keyed = alert_records(case.read("keyed", timeout=3.0))
    firing = sorted(r["fingerprint"] for r in keyed if r["change"] == "firing")
    assert firing == sorted(fingerprints), "an alert paged more than once, or never"
    assert not [r for r in keyed if r["labels"].get("service") == "db"], "silence ignored"

    # One worker holds every partition: an alert owned by another partition than the one
    # its batch landed on is handed over to its owner (triaged there at once, its records
    # sent as the owner's), never forwarded through alerts.raw (the forward path, between
    # workers, is tested in tests/streams/test_routing.py).
    forwards = [r for r in consume_records(case.kafka, case.topics["raw"], timeout=2.0)
                if r.value and r.value.startswith(b'{"_triage":"alert"')]
    assert forwards == []
    for r in keyed:
        assert r["up"][0] == kafka_partition(r["fingerprint"].encode())
    assert any(r["src"][0] != r["up"][0] for r in keyed), "nothing was handed over"

    # the bad alert: dead-lettered once, by the partition that received its batch (offset 1:
    # after the silence's copy)
    dead = case.wait_for("deadletter", lambda r: len(r) >= 1, timeout=30, worker=worker)
    assert [(d["error"], d["partition"], d["offset"]) for d in dead] == [
        ("TimestampError", 0, 1)]


def test_triage_produce_keys_raw_messages_by_their_alerts_fingerprint(kafka_case) -> None:
    """Each line lands on the partition that owns its (first) alert, so the worker needs no
    forward for single alerts; other topics are sent unkeyed as before."""
    case = kafka_case(partitions=PARTITIONS)
    alerts = [labels(name, f"svc{i:02d}") for i in range(SERVICES) for name in NAMES]
    lines = [orjson.dumps({**a, "at": T0}) for a in alerts]
    source = case.tmp / "alerts.jsonl"
    source.write_bytes(b"\n".join([*lines, b"{not json"]) + b"\n")
    subprocess.run([TRIAGE, "produce", "--config", str(case.config), "--input", str(source)],
                   check=True, capture_output=True, timeout=60)
    records = consume_records(case.kafka, case.topics["raw"], timeout=3.0)
    keys = {r.value: (r.key, r.partition) for r in records}
    for a, line in zip(alerts, lines, strict=True):
        key = labelset_fingerprint(a).encode()
        assert keys[line] == (key, kafka_partition(key))
    assert keys[b"{not json"][0] is None  # unkeyed: dead-lettered wherever it lands
    assert len({p for _, p in keys.values()}) > 1  # spread over the partitions
