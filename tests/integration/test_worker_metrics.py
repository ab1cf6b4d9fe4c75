"""``triage worker`` serves /metrics: the counters match what was produced, and the
consumer lag per topic is there."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import free_port
from tests.integration.storms import storm, without_sentinel

pytestmark = pytest.mark.kafka


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as resp:
        text = resp.read().decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def total(samples: dict, name: str, **labels: str) -> float:
    return sum(v for (n, ls), v in samples.items()
               if n == name and all(dict(ls).get(k) == want for k, want in labels.items()))


def test_worker_metrics_match_what_was_produced(kafka_case, tmp_path: Path) -> None:
    case = kafka_case()
    lines = storm(steps=40, malformed_every=10)  # 4 malformed lines
    port = free_port()
    case.produce(lines)
    worker = case.start_worker("--idle-after", "600", "--metrics-port", str(port))
    case.wait_for("incidents", lambda r: len(without_sentinel(r)) > 0, timeout=60,
                  worker=worker)
    deadline = time.monotonic() + 20
    samples: dict = {}
    events: list[dict] = []
    while time.monotonic() < deadline:
        try:
            samples = scrape(port)
        except OSError:
            samples = {}
        if (total(samples, "triage_alerts_received_total") >= len(lines)
                and ("triage_consumer_lag", (("topic", case.topics["raw"]),)) in samples):
            # all input in: the events on the topic and the counter must agree
            events = list({e["event_id"]: e for e in case.read("incidents", 0.5)}.values())
            if total(scrape(port), "triage_incident_events_total") == len(events):
                samples = scrape(port)
                break
        time.sleep(0.5)
    else:
        pytest.fail(f"metrics never caught up: {samples}\n{worker.tail()}")
    assert total(samples, "triage_alerts_received_total") == len(lines)
    assert total(samples, "triage_alerts_received_total", source="generic") >= len(lines) - 4
    outcomes = {o: total(samples, "triage_alerts_outcomes_total", outcome=o)
                for o in ("triaged", "deduplicated", "suppressed", "failed")}
    assert sum(outcomes.values()) == len(lines)
    assert outcomes["failed"] == 4
    assert total(samples, "triage_alerts_dead_lettered_total", error="TimestampError") == 4
    assert outcomes["triaged"] > 0
    # every incident event on the topic was counted, no more
    assert total(samples, "triage_incident_events_total") == len(events) > 0
    created = sum(1 for e in events if e["type"] == "incident.created")
    assert total(samples, "triage_incidents_created_total") == created
    assert total(samples, "triage_stage_seconds_count", stage="intake") == len(lines)
    assert total(samples, "triage_stage_seconds_count", stage="incidents") > 0
    for topic in (case.topics["raw"], case.topics["keyed"]):
        assert ("triage_consumer_lag", (("topic", topic),)) in samples
    assert samples[("triage_consumer_lag", (("topic", case.topics["raw"]),))] == 0
    assert ("triage_noise_model_info", (("version", "none"),)) in samples
