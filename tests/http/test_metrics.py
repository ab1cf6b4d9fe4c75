"""``triage.metrics``: names, label values and updates from core results, on a fresh registry
each time; the exposition passes ``promtool check metrics``.

(Lives beside the HTTP tests that expose it; ``triage.metrics`` is used by every runtime.)
"""

from __future__ import annotations

import subprocess

import orjson
from prometheus_client import CollectorRegistry, generate_latest

from tests.conftest import webhook
from tests.http.tools import require_binary
from triage.core.incidents import CorrelationPolicy, IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.silences import silence_from_alertmanager
from triage.metrics import FeedbackMetrics, TriageMetrics, track_embedded_state

T = 1_800_000_000.0


def alert(name: str, service: str, status: str = "firing") -> dict[str, object]:
    return {"status": status, "labels": {"alertname": name, "service": service},
            "annotations": {}, "startsAt": "2027-01-15T07:59:00Z"}


def test_observe_counts_a_payload_by_source_outcome_reason_and_error() -> None:
    registry = CollectorRegistry()
    metrics = TriageMetrics.create(registry)
    pipeline = Pipeline()
    pipeline.silences.add(silence_from_alertmanager({
        "matchers": [{"name": "service", "value": "db", "isRegex": False}],
        "startsAt": "2027-01-15T07:00:00Z", "endsAt": "2027-01-15T09:00:00Z",
        "createdBy": "alice", "comment": "failover"}))
    payload = webhook(alert("A", "cart"), alert("A", "cart"), alert("B", "db"),
                      {"status": "firing", "labels": {}})
    metrics.observe(pipeline.process(orjson.dumps(payload), now=T),
                    seconds={"intake": 0.002})
    metrics.observe(pipeline.process(b"{nope", now=T))
    get = registry.get_sample_value
    assert get("triage_alerts_received_total", {"source": "alertmanager-webhook"}) == 4
    assert get("triage_alerts_received_total", {"source": "unknown"}) == 1
    assert get("triage_alerts_outcomes_total", {"outcome": "triaged"}) == 1
    assert get("triage_alerts_outcomes_total", {"outcome": "deduplicated"}) == 1
    assert get("triage_alerts_outcomes_total", {"outcome": "suppressed"}) == 1
    assert get("triage_alerts_outcomes_total", {"outcome": "failed"}) == 2
    assert get("triage_alerts_suppressed_total", {"reason": "silence"}) == 1
    assert get("triage_alerts_dead_lettered_total", {"error": "SchemaError"}) == 1
    assert get("triage_alerts_dead_lettered_total", {"error": "DecodeError"}) == 1
    assert get("triage_stage_seconds_count", {"stage": "intake"}) == 1
    assert get("triage_stage_seconds_bucket", {"stage": "intake", "le": "0.0025"}) == 1
    # the counters reconcile like the run summary: received = sum of outcomes
    received = sum(get("triage_alerts_received_total", {"source": s}) or 0
                   for s in ("alertmanager-webhook", "unknown"))
    outcomes = sum(get("triage_alerts_outcomes_total", {"outcome": o}) or 0
                   for o in ("triaged", "deduplicated", "suppressed", "failed"))
    assert received == outcomes == 5


def test_swept_changes_are_not_counted_as_received() -> None:
    registry = CollectorRegistry()
    metrics = TriageMetrics.create(registry)
    pipeline = Pipeline()
    metrics.observe(pipeline.process(orjson.dumps(webhook(alert("A", "cart"))), now=T))
    swept = pipeline.tick(T + 86400 * 2)  # notification timeout passed: resolved by triage
    assert len(swept) == 1
    metrics.observe(swept, swept=len(swept))
    assert registry.get_sample_value("triage_alerts_swept_total") == 1
    assert registry.get_sample_value("triage_alerts_received_total",
                                     {"source": "alertmanager-webhook"}) == 1


def test_incidents_by_priority_and_event_type() -> None:
    registry = CollectorRegistry()
    metrics = TriageMetrics.create(registry)
    pipeline = Pipeline()
    engine = IncidentEngine(policy=CorrelationPolicy(page_delay=0, lone_delay=0,
                                                      lone_critical_delay=0))
    outcomes = pipeline.process(orjson.dumps(webhook(alert("A", "cart"))), now=T)
    events = engine.observe(outcomes, T)
    assert [e["type"] for e in events] == ["incident.created"]
    metrics.observe(outcomes, events=events, seconds={"intake": 0.001, "incidents": 0.001})
    priority = events[0]["incident"]["priority"]
    assert registry.get_sample_value("triage_incidents_created_total",
                                     {"priority": priority}) == 1
    assert registry.get_sample_value("triage_incident_events_total",
                                     {"type": "incident.created"}) == 1
    assert registry.get_sample_value("triage_stage_seconds_count", {"stage": "incidents"}) == 1


def test_state_sizes_lag_and_model_version() -> None:
    registry = CollectorRegistry()
    metrics = TriageMetrics.create(registry)
    pipeline = Pipeline()
    engine = IncidentEngine(policy=CorrelationPolicy(page_delay=0, lone_delay=0,
                                                      lone_critical_delay=0))
    track_embedded_state(metrics, pipeline, engine)
    outcomes = pipeline.process(orjson.dumps(webhook(alert("A", "cart"), alert("B", "web"),
                                                     alert("C", "db", "resolved"))), now=T)
    engine.observe(outcomes, T)
    get = registry.get_sample_value
    assert get("triage_active_alerts") == 2  # computed at scrape time
    assert get("triage_open_incidents") == 2
    assert get("triage_silences") == 0
    metrics.set_consumer_lag("alerts.raw", 1234)
    assert get("triage_consumer_lag", {"topic": "alerts.raw"}) == 1234
    assert get("triage_noise_model_info", {"version": "none"}) == 1
    metrics.set_model_version("v0003")
    assert get("triage_noise_model_info", {"version": "v0003"}) == 1
    assert get("triage_noise_model_info", {"version": "none"}) is None
    # a worker owning part of the state sets the sizes itself
    other = TriageMetrics.create(CollectorRegistry())
    other.set_state_sizes(active_alerts=5, open_incidents=2, silences=7)
    assert other.registry.get_sample_value("triage_silences") == 7


def test_two_registries_do_not_collide() -> None:
    a, b = TriageMetrics.create(CollectorRegistry()), TriageMetrics.create(CollectorRegistry())
    a.alerts_received.labels("generic").inc()
    assert b.registry.get_sample_value("triage_alerts_received_total",
                                       {"source": "generic"}) == 0


def test_names_follow_the_prometheus_conventions() -> None:
    metrics = TriageMetrics.create(CollectorRegistry())
    for family in metrics.registry.collect():
        assert family.name.startswith("triage_"), family.name
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        if family.type == "histogram":
            assert family.name.endswith("_seconds"), family.name


def test_exposition_passes_promtool_check_metrics() -> None:
    promtool = require_binary("promtool")
    metrics = TriageMetrics.create(CollectorRegistry())
    pipeline = Pipeline()
    engine = IncidentEngine(policy=CorrelationPolicy(page_delay=0, lone_delay=0,
                                                      lone_critical_delay=0))
    outcomes = pipeline.process(orjson.dumps(webhook(alert("A", "cart"))), now=T)
    metrics.observe(outcomes, events=engine.observe(outcomes, T),
                    seconds={"intake": 0.001, "incidents": 0.002})
    metrics.set_consumer_lag("alerts.raw", 3)
    metrics.observe_http("webhook", 200, 0.004)
    # triage feedback ingest's metrics, exposed by their own process
    feedback = CollectorRegistry()
    FeedbackMetrics.create(feedback).observe(stored=2, repeats=1, dead_lettered=0,
                                              backlog=4, now=T)
    result = subprocess.run([promtool, "check", "metrics"],
                            input=generate_latest(metrics.registry)
                            + generate_latest(feedback), capture_output=True,
                            timeout=30, check=False)
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    # promtool prints lint findings (a non-zero exit aside) on stdout: there must be none
    assert not result.stdout.strip() and not result.stderr.strip(), result
