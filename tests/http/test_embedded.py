"""``triage serve`` in embedded mode: every endpoint and every error, through aiohttp's test
client, on a fake wall clock."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.conftest import webhook
from tests.http.conftest import (
    Clock,
    embedded_backend,
    fresh_metrics,
    records,
    sample,
    served,
)
from triage.core.timeutil import format_timestamp
from triage.http.intake import Accepted, Rejected

STAMP = format_timestamp  # epoch -> RFC 3339, as the receiver stamps received_at


def am_alert(name: str, service: str, *, status: str = "firing", **labels: str
             ) -> dict[str, Any]:
    return {"status": status, "labels": {"alertname": name, "service": service, **labels},
            "annotations": {}, "startsAt": "2027-01-15T07:59:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "fingerprint": "ignored"}


def test_api_v2_alerts_answers_like_alertmanager_and_triages(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock, page_delay=30)
        async with served(backend, metrics, clock=clock) as client:
            postable = [{"labels": {"alertname": "HighLatency", "service": "checkout",
                                    "severity": "critical"},
                         "annotations": {"summary": "p99 > 2s"},
                         "startsAt": "2027-01-15T07:59:30Z", "endsAt": "2027-01-15T08:04:00Z",
                         "generatorURL": "http://prometheus/graph"}]
            resp = await client.post("/api/v2/alerts", data=orjson.dumps(postable))
            assert resp.status == 200
            # 200 like Alertmanager (whose clients ignore the body), saying what was done
            assert (await resp.json())["counts"]["accepted"] == len(postable)
            # the same alert again (Prometheus re-sends every evaluation): a repeat
            resp = await client.post("/api/v2/alerts", data=orjson.dumps(postable))
            assert resp.status == 200
            clock.now += 31
            assert backend.tick(clock.now) == 1  # the page delay passed: one page
        events = records(tmp_path / "events.jsonl")
        assert [e["type"] for e in events] == ["incident.created"]
        assert events[0]["incident"]["services"] == ["checkout"]
        # the incident started when the receiver got the alert: received_at is its clock
        assert events[0]["incident"]["first_seen"] == STAMP(1_800_000_000.0)
        assert sample(metrics, "triage_alerts_received_total",
                      source="alertmanager-api-v2") == 2
        assert sample(metrics, "triage_alerts_outcomes_total", outcome="triaged") == 1
        assert sample(metrics, "triage_alerts_outcomes_total", outcome="deduplicated") == 1
        assert sample(metrics, "triage_incidents_created_total", priority="P4") + sample(
            metrics, "triage_incidents_created_total", priority="P3") + sample(
            metrics, "triage_incidents_created_total", priority="P2") + sample(
            metrics, "triage_incidents_created_total", priority="P1") == 1
        assert sample(metrics, "triage_http_requests_total", handler="api_v2_alerts",
                      code="200") == 2
        assert sample(metrics, "triage_stage_seconds_count", stage="intake") == 2

    asyncio.run(body())


def test_webhook_answers_counts_and_dead_letters_a_bad_alert(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock)
        async with served(backend, metrics, clock=clock) as client:
            payload = webhook(am_alert("A", "cart"), am_alert("B", "cart"),
                              {"status": "firing", "labels": {}, "annotations": {},
                               "startsAt": "2027-01-15T07:59:00Z"})
            resp = await client.post("/webhook", json=payload)
            assert resp.status == 200
            got = await resp.json()
            assert got["alerts"] == 3 and got["triaged"] == 2 and got["failed"] == 1
            assert got["errors"] == [{"error": "SchemaError", "field": "alerts[2].labels",
                                      "reason": got["errors"][0]["reason"]}]
            assert sample(metrics, "triage_active_alerts") == 2
        dead = records(tmp_path / "dead.jsonl")
        assert [(d["error"], d["field"], d["source"]) for d in dead] == [
            ("SchemaError", "alerts[2].labels", "alertmanager-webhook")]
        assert json.loads(dead[0]["raw"])["labels"] == {}
        assert sample(metrics, "triage_alerts_dead_lettered_total", error="SchemaError") == 1

    asyncio.run(body())


def test_grafana_and_generic_formats_are_detected(tmp_path: Path, shared_data: Path) -> None:
    grafana = (shared_data / "payloads" / "grafana-webhook-docs-example.json").read_bytes()

    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock)
        async with served(backend, metrics, clock=clock) as client:
            resp = await client.post("/webhook", data=grafana)
            assert resp.status == 200, await resp.text()
            resp = await client.post("/api/v1/alerts", json={"alertname": "DiskFull",
                                                              "service": "db"})
            assert resp.status == 200
            assert (await resp.json())["triaged"] == 1
        assert sample(metrics, "triage_alerts_received_total", source="grafana-webhook") >= 1
        assert sample(metrics, "triage_alerts_received_total", source="generic") == 1

    asyncio.run(body())


@pytest.mark.parametrize(("data", "error", "field"), [
    (b"{not json", "DecodeError", "payload"),
    (b"", "DecodeError", "payload"),
    (b'{"hello": "world"}', "UnknownFormatError", None),
    (b'"just a string"', "UnknownFormatError", None),
    (b'{"version": "4", "status": "firing"}', "UnknownFormatError", None),
])
def test_bad_bodies_are_400_with_the_problem_named_and_dead_lettered(
        tmp_path: Path, data: bytes, error: str, field: str | None) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock)
        async with served(backend, metrics, clock=clock) as client:
            resp = await client.post("/webhook", data=data)
            assert resp.status == 400
            got = await resp.json()
            assert got["error"] == error and got["code"] == 400 and got["message"]
            assert got.get("field") == field
            # the server is still there
            assert (await client.get("/-/healthy")).status == 200
        dead = records(tmp_path / "dead.jsonl")
        assert len(dead) == 1 and dead[0]["error"] == error
        if error == "DecodeError":
            assert dead[0]["raw"] == data.decode()  # the exact bytes the sender sent
        assert sample(metrics, "triage_alerts_outcomes_total", outcome="failed") == 1
        assert sample(metrics, "triage_http_requests_total", handler="webhook",
                      code="400") == 1

    asyncio.run(body())


def test_bearer_token_is_required_when_configured(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock)
        alert = {"alertname": "DiskFull", "service": "db"}
        async with served(backend, metrics, clock=clock, token="s3cret") as client:
            for headers in ({}, {"Authorization": "Bearer wrong"},
                            {"Authorization": "Basic s3cret"}):
                for path in ("/api/v2/alerts", "/webhook", "/api/v1/alerts"):
                    resp = await client.post(path, json=alert, headers=headers)
                    assert resp.status == 401
                    assert resp.headers["WWW-Authenticate"] == "Bearer"
                    assert (await resp.json())["error"] == "Unauthorized"
            resp = await client.post("/api/v1/alerts", json=alert,
                                     headers={"Authorization": "Bearer s3cret"})
            assert resp.status == 200
            # probes and the scraper need no token
            assert (await client.get("/metrics")).status == 200
            assert (await client.get("/-/ready")).status == 200
        # refused requests never reached the pipeline
        assert sample(metrics, "triage_alerts_received_total", source="generic") == 1

    asyncio.run(body())


def test_body_size_limits(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock, max_payload_bytes=2000)
        async with served(backend, metrics, clock=clock, max_body_bytes=5000) as client:
            big = orjson.dumps({"alertname": "Big", "service": "db", "pad": "x" * 6000})
            resp = await client.post("/api/v1/alerts", data=big)
            assert resp.status == 413
            got = await resp.json()
            assert got["error"] == "PayloadTooLarge" and "http.max_body_bytes" in got["message"]

            async def chunks():  # no Content-Length: the limit holds while reading
                for _ in range(10):
                    yield b" " * 1000

            resp = await client.post("/api/v1/alerts", data=chunks())
            assert resp.status == 413
            # within the HTTP limit but over intake.max_payload_bytes: the pipeline's limit
            medium = orjson.dumps({"alertname": "Big", "service": "db", "pad": "x" * 3000})
            resp = await client.post("/api/v1/alerts", data=medium)
            assert resp.status == 413
            assert (await resp.json())["error"] == "OversizeError"
        # every refused body is dead-lettered: the two over the HTTP limit (their first
        # bytes), the one over the pipeline's
        assert [d["error"] for d in records(tmp_path / "dead.jsonl")] == [
            "PayloadTooLarge", "PayloadTooLarge", "OversizeError"]

    asyncio.run(body())


def test_unknown_paths_and_methods_are_json_errors(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock)
        async with served(backend, metrics, clock=clock) as client:
            resp = await client.get("/api/v1/alerts")
            assert resp.status == 405 and resp.headers["Allow"] == "POST"
            assert "use POST" in (await resp.json())["message"]
            resp = await client.post("/api/v3/alerts", json=[])
            assert resp.status == 404
            assert "/webhook" in (await resp.json())["message"]
        assert sample(metrics, "triage_http_requests_total", handler="other", code="404") == 1

    asyncio.run(body())


def test_health_ready_and_metrics_endpoints(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock)
        async with served(backend, metrics, clock=clock) as client:
            assert (await client.get("/-/healthy")).status == 200
            assert (await client.get("/-/ready")).status == 200
            resp = await client.get("/metrics")
            assert resp.status == 200
            assert resp.headers["Content-Type"].startswith("text/plain; version=")
            text = await resp.text()
            assert 'triage_alerts_outcomes_total{outcome="triaged"} 0.0' in text
            assert 'triage_noise_model_info{version="none"} 1.0' in text

    asyncio.run(body())


class _Exploding:
    mode = "embedded"

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> bool:
        return True

    async def accept(self, body: bytes, *, received_at: float) -> Accepted | Rejected:
        raise RuntimeError("a bug")


def test_an_internal_error_is_a_500_and_the_server_lives_on() -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        async with served(_Exploding(), metrics, clock=clock) as client:
            for _ in range(2):
                resp = await client.post("/webhook", json={"alertname": "X"})
                assert resp.status == 500
                assert (await resp.json())["error"] == "InternalError"
            assert (await client.get("/-/healthy")).status == 200

    asyncio.run(body())


def test_state_survives_a_restart_without_paging_twice(tmp_path: Path) -> None:
    state = tmp_path / "serve.state"
    alert = webhook(am_alert("ErrorRate", "checkout", severity="critical"))

    async def once(clock: Clock, *, tick_to: float | None) -> dict[str, Any]:
        metrics = fresh_metrics()
        backend = embedded_backend(tmp_path, metrics, clock, state=state, page_delay=30)
        async with served(backend, metrics, clock=clock) as client:
            resp = await client.post("/webhook", json=alert)
            got: dict[str, Any] = await resp.json()
            if tick_to is not None:
                clock.now = tick_to
                backend.tick(clock.now)
        return got

    clock = Clock()
    first = asyncio.run(once(clock, tick_to=clock.now + 31))
    assert first["triaged"] == 1
    # a new process on the same state: the repeat is recognised, nothing pages again
    clock.now += 60
    second = asyncio.run(once(clock, tick_to=clock.now + 60))
    assert second["deduplicated"] == 1 and second["triaged"] == 0
    events = records(tmp_path / "events.jsonl")
    assert [e["type"] for e in events] == ["incident.created"]


def test_pending_pages_are_decided_at_shutdown_without_state(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock, page_delay=30)
        async with served(backend, metrics, clock=clock) as client:
            await client.post("/api/v1/alerts", json={"alertname": "Down", "service": "db"})
        # without --state the pending page would be lost on exit: decided at shutdown
        assert [e["type"] for e in records(tmp_path / "events.jsonl")] == ["incident.created"]

    asyncio.run(body())
