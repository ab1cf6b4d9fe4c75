"""The worker on a real broker: same result as the embedded runtime, and the faults of
issue 5 (kill -9 mid-stream, broker restart, malformed floods)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from pathlib import Path

import orjson
import pytest
import yaml
from kafka import KafkaConsumer, TopicPartition
from kafka.structs import OffsetAndMetadata

from tests.integration.storms import (
    check_effectively_once,
    embedded,
    storm,
    summary,
    without_sentinel,
)
from triage.streams.agents import INCIDENT_STATE, INTAKE_STATE
from triage.streams.topics import changelog_topic, client_config, consume_records

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def expected(case, lines: list[bytes], tmp: Path) -> dict[str, dict]:
    return {e["event_id"]: e for e in without_sentinel(embedded(case.config, lines, tmp))}


def same_incidents(got: list[dict], want: dict[str, dict]) -> None:
    """Every incident of the embedded run, with all its alerts, and no other; each created
    once, every duplicate an exact copy. (Update timing may differ by a batch boundary: a
    live stream is cut into batches where a file is not.)"""
    by_id = check_effectively_once(without_sentinel(got))
    assert summary(list(by_id.values())) == summary(list(want.values()))


class all_incidents_in:
    """Every (incident id, event type) of the embedded run is in the records, and each
    incident's latest status is the embedded run's (a recurring incident resolves, reopens
    and resolves again: the first ``resolved`` is not the end). Its ``repr`` (in a timeout's
    message) names the ones still missing from the last look."""

    def __init__(self, want: dict[str, dict]) -> None:
        self.ids = {(e["incident"]["id"], e["type"]) for e in want.values()}
        self.final = _final_status(want.values())
        self.missing: set[tuple[str, str]] = set(self.ids)

    def __call__(self, records: list[dict]) -> bool:
        self.missing = self.ids - {(e["incident"]["id"], e["type"]) for e in records}
        final = _final_status(records)
        self.missing |= {(i, f"status {s}") for i, s in self.final.items() if final.get(i) != s}
        return not self.missing

    def __repr__(self) -> str:
        return f"missing {sorted(self.missing)[:10]} ({len(self.missing)} in all)"


def _final_status(events: Iterable[dict]) -> dict[str, str]:
    latest: dict[str, tuple[int, str]] = {}
    for e in events:
        inc = e["incident"]
        if inc["sequence"] >= latest.get(inc["id"], (0, ""))[0]:
            latest[inc["id"]] = (inc["sequence"], inc["status"])
    return {i: s for i, (_, s) in latest.items()}


def pairs_topology(tmp: Path) -> Path:
    """svc01 calls svc02, svc03 calls svc04, ...: incidents that span two services, with a
    root cause to find."""
    services: dict[str, dict[str, list[str]]] = {
        f"svc{s:02d}": {"depends_on": [f"svc{s + 1:02d}"]} for s in range(1, 29, 2)}
    services.update({f"svc{s:02d}": {} for s in range(0, 30, 2)})
    path = tmp / "services.yaml"
    path.write_text(yaml.safe_dump({"services": services}))
    return path


@pytest.mark.parametrize(("partitions", "workers", "keyed"), [
    (1, 1, True), (3, 1, True), (6, 1, True), (6, 2, True), (3, 1, False), (6, 1, False)])
def test_worker_gives_the_embedded_result(kafka_case, tmp_path: Path, partitions: int,
                                          workers: int, keyed: bool) -> None:
    """Issue 12's equivalence on the broker: the storm keyed by fingerprint (as ``triage
    produce`` and ``triage serve`` publish it), on 1, 3 and 6 partitions and with two
    workers, gives the incidents of ``triage run``: ids, alerts, services, status, event
    types, and root causes and priorities. Unkeyed (as kcat sends a file: the issue's own
    reproduction), on one worker, too."""
    topology = {"topology": {"file": str(pairs_topology(tmp_path))}}
    case = kafka_case(partitions=partitions, extra=topology)
    lines = storm(steps=120)
    want = expected(case, lines, tmp_path)
    case.produce(lines, keyed=keyed)
    worker = case.start_worker("--idle-after", "600")
    for _ in range(workers - 1):
        case.start_worker("--idle-after", "600")
    got = case.wait_for("incidents", all_incidents_in(want), timeout=120, worker=worker)
    same_incidents(got, want)

    def decisions(events: Iterable[dict]) -> dict[str, tuple[object, ...]]:
        out: dict[str, tuple[object, ...]] = {}
        for e in sorted(events, key=lambda e: e["incident"]["sequence"]):
            inc = e["incident"]
            out[inc["id"]] = ((inc.get("root_cause") or {}).get("service"), inc["priority"])
        return out

    assert decisions(without_sentinel(got)) == decisions(want.values())
    dead = case.wait_for("deadletter", lambda r: len(r) >= 12, timeout=10)
    assert {d["error"] for d in dead} == {"TimestampError"} and len(dead) == 12


def produce_slowly(case, lines: list[bytes], chunks: int, pause: float) -> threading.Thread:
    """Publish ``lines`` in ``chunks`` with pauses, in the background (a live stream)."""
    size = -(-len(lines) // chunks)

    def run() -> None:
        for i in range(0, len(lines), size):
            case.produce(lines[i:i + size])
            time.sleep(pause)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_kill_9_mid_stream_loses_nothing_and_pages_once(kafka_case, tmp_path: Path) -> None:
    case = kafka_case()
    lines = storm(steps=480)
    want = expected(case, lines, tmp_path)
    producer = produce_slowly(case, lines, chunks=30, pause=0.7)
    first = case.start_worker("--idle-after", "600")
    case.wait_for("incidents", lambda r: len(r) >= len(want) // 5, timeout=60, worker=first)
    first.kill9()
    assert producer.is_alive(), "the stream ended before the worker was killed"
    second = case.start_worker("--idle-after", "600")
    producer.join(60)
    got = case.wait_for("incidents", all_incidents_in(want), timeout=120, worker=second)
    same_incidents(got, want)  # nothing lost, nothing paged twice
    dead = case.wait_for("deadletter", lambda r: len({(d["offset"]) for d in r}) >= 48,
                         timeout=10)
    assert len({d["offset"] for d in dead}) == 48


def commit_past_state(case, logical: str, table: str, by: int) -> None:
    """Set the worker group's committed offset of ``logical`` partition 0 to ``by`` messages
    past the position the stage's state records (its last meta record in ``table``'s
    changelog), as an offset reset, or faust stepping over a hole, would. No worker runs."""
    metas = [orjson.loads(r.value)["offset"] for r in consume_records(
        case.kafka, changelog_topic(case.app_id, table), timeout=2) if r.key == b"0|m"]
    assert metas, f"no state written for {logical}"
    consumer = KafkaConsumer(**client_config(case.kafka), group_id=case.app_id,
                             enable_auto_commit=False)
    try:
        tp = TopicPartition(case.topics[logical], 0)
        consumer.assign([tp])
        target = metas[-1] + 1 + by
        consumer.commit({tp: OffsetAndMetadata(target, "", -1)})  # raises if refused
    finally:
        consumer.close()


def test_the_state_not_the_committed_offset_says_where_a_worker_resumes(
        kafka_case, tmp_path: Path) -> None:
    """The group's committed offsets jump ahead of the workers' state while no worker runs:
    the next worker reads the skipped messages itself, and nothing is lost. (Without that,
    this loses 4 incident events. faust does not always start at the committed offset: on
    a loaded machine it sometimes reads a partition from its beginning first, which the
    state skips as replays; so the test asserts the result, not the log line.)"""
    case = kafka_case()
    lines = storm(steps=240)
    want = expected(case, lines, tmp_path)
    half = len(lines) // 2
    case.produce(lines[:half])
    first = case.start_worker("--idle-after", "600")
    case.wait_for("keyed", lambda r: len(r) >= 100, timeout=60, worker=first)
    first.stop()  # a clean stop commits what was processed
    commit_past_state(case, "raw", INTAKE_STATE, 30)
    commit_past_state(case, "keyed", INCIDENT_STATE, 10)
    case.produce(lines[half:])
    second = case.start_worker("--idle-after", "600")
    got = case.wait_for("incidents", all_incidents_in(want), timeout=90, worker=second)
    same_incidents(got, want)


def test_broker_restart_mid_stream_the_worker_recovers(kafka_case, own_broker,
                                                       tmp_path: Path) -> None:
    case = kafka_case(bootstrap=own_broker.bootstrap)
    lines = storm(steps=240)
    want = expected(case, lines, tmp_path)
    half = len(lines) // 2
    case.produce(lines[:half])
    worker = case.start_worker("--idle-after", "600")
    case.wait_for("incidents", lambda r: len(r) >= 10, timeout=60, worker=worker)
    own_broker.stop()
    time.sleep(3)  # the worker runs on without a broker for a while
    own_broker.start()
    case.produce(lines[half:])
    got = case.wait_for("incidents", all_incidents_in(want), timeout=120, worker=worker)
    assert worker.alive()
    same_incidents(got, want)
    worker.stop()  # while its broker is still up: a clean shutdown commits


def malformed(i: int) -> bytes:
    kinds = (b"{oops %d" % i,  # DecodeError
             b'{"unrecognised": %d}' % i,  # UnknownFormatError
             b'{"alertname": "X", "service": "s", "at": "never-%d"}' % i,  # TimestampError
             b"\xff\xfe%d" % i)  # not UTF-8
    return kinds[i % len(kinds)]


MALFORMED = 100_000


def test_malformed_flood_is_dead_lettered_and_the_good_ones_triaged(kafka_case,
                                                                    tmp_path: Path) -> None:
    case = kafka_case()
    good = storm(steps=120, malformed_every=0)
    lines: list[bytes] = []
    per_good = MALFORMED // len(good) + 1
    bad = 0
    for line in good:
        lines.append(line)
        for _ in range(per_good):
            if bad < MALFORMED:
                lines.append(malformed(bad))
                bad += 1
    want = expected(case, good, tmp_path)
    case.produce(lines)
    worker = case.start_worker("--idle-after", "600")
    got = case.wait_for("incidents", all_incidents_in(want), timeout=120, worker=worker)
    same_incidents(got, want)
    dead = case.wait_for("deadletter", lambda r: len(r) >= MALFORMED, timeout=60,
                         worker=worker)
    assert len({d["offset"] for d in dead}) == MALFORMED
    assert {d["error"] for d in dead} == {"DecodeError", "UnknownFormatError",
                                         "TimestampError"}
    assert all(d["reason"] and d["raw"] for d in dead)
    assert worker.alive()
