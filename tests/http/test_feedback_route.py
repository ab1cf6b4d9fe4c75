"""``POST /api/v1/feedback`` in both modes, through aiohttp's test client: embedded appends to
the feedback history in ``tmp_path``; Kafka mode publishes to the ``feedback`` topic through
a producer stub that fails with aiokafka's own errors. The real broker path (publish, then
``triage feedback ingest``) is in ``tests/integration/test_feedback.py``."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiokafka.errors import KafkaConnectionError, MessageSizeTooLargeError

from tests.http.conftest import Clock, StubProducer, fresh_metrics, kafka_backend, sample, served
from tests.http.tools import free_port, http, triage_serve
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.http.embedded import EmbeddedBackend
from triage.models.feedback import FeedbackStore

PATH = "/api/v1/feedback"


def judgement(n: int, **overrides: Any) -> dict[str, Any]:
    return {"at": "2027-01-15T08:00:00Z", "label": "noise", "alertname": "HighCPU",
            "service": f"svc{n}", "value": 0.81, "threshold": 0.8,
            "fingerprint": f"{n:016x}", **overrides}


def embedded(tmp_path: Path, metrics: Any, clock: Clock, *, store: bool = True
             ) -> EmbeddedBackend:
    return EmbeddedBackend(Pipeline(), IncidentEngine(), metrics,
                           output=str(tmp_path / "events.jsonl"),
                           dead_letter=str(tmp_path / "dead.jsonl"), tick_interval=0,
                           clock=clock, feedback_store=tmp_path / "fb.db" if store else None)


def test_embedded_appends_one_record_or_an_array_and_counts_repeats(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        async with served(embedded(tmp_path, metrics, clock), metrics, clock=clock) as client:
            resp = await client.post(PATH, data=orjson.dumps(judgement(0)))
            assert resp.status == 200
            assert await resp.json() == {"status": "success", "records": 1, "stored": 1,
                                         "repeats": 0}
            # a retry of the first plus two new ones: the first is not stored twice
            resp = await client.post(PATH, data=orjson.dumps(
                [judgement(0), judgement(1), judgement(2, label="actionable")]))
            assert resp.status == 200
            assert await resp.json() == {"status": "success", "records": 3, "stored": 2,
                                         "repeats": 1}
        history = FeedbackStore(tmp_path / "fb.db").read()
        assert list(history["service"]) == ["svc0", "svc1", "svc2"]
        assert list(history["label"]) == ["noise", "noise", "actionable"]
        assert sample(metrics, "triage_http_requests_total", handler="api_v1_feedback",
                      code="200") == 2

    asyncio.run(body())


@pytest.mark.parametrize(("payload", "error", "field"), [
    (judgement(0, label="maybe"), "SchemaError", "label"),
    ([judgement(0), judgement(1, value="high")], "SchemaError", "[1].value"),
    ([judgement(0), {"label": "noise", "alertname": "X"}], "SchemaError", "[1].at"),
    (judgement(0, at="yesterday"), "TimestampError", "at"),
    ([judgement(0), "noise"], "SchemaError", "[1]"),
    ([], "SchemaError", None),
    (b"{not json", "DecodeError", None),
])
def test_bad_feedback_is_400_naming_the_field_and_nothing_is_stored(
        tmp_path: Path, payload: Any, error: str, field: str | None) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        data = payload if isinstance(payload, bytes) else orjson.dumps(payload)
        async with served(embedded(tmp_path, metrics, clock), metrics, clock=clock) as client:
            resp = await client.post(PATH, data=data)
            assert resp.status == 400
            got = await resp.json()
        assert got["error"] == error and got.get("field") == field
        assert got["message"].startswith("feedback ")
        if field:
            assert field in got["message"]
        assert not (tmp_path / "fb.db").exists() or FeedbackStore(tmp_path / "fb.db").read(
        ).empty

    asyncio.run(body())


def test_feedback_needs_the_token_and_keeps_the_body_limit(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded(tmp_path, metrics, clock)
        async with served(backend, metrics, clock=clock, token="s3cret",
                          max_body_bytes=1000) as client:
            resp = await client.post(PATH, data=orjson.dumps(judgement(0)))
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
            auth = {"Authorization": "Bearer s3cret"}
            big = orjson.dumps([judgement(n) for n in range(20)])
            resp = await client.post(PATH, data=big, headers=auth)
            assert resp.status == 413
            assert (await resp.json())["error"] == "PayloadTooLarge"
            resp = await client.post(PATH, data=orjson.dumps(judgement(0)), headers=auth)
            assert resp.status == 200
        assert len(FeedbackStore(tmp_path / "fb.db").read()) == 1

    asyncio.run(body())


def test_embedded_without_a_store_says_how_to_configure_one(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded(tmp_path, metrics, clock, store=False)
        async with served(backend, metrics, clock=clock) as client:
            resp = await client.post(PATH, data=orjson.dumps(judgement(0)))
            assert resp.status == 501
            assert "feedback.store" in (await resp.json())["message"]

    asyncio.run(body())


def test_kafka_mode_publishes_each_record_as_sent_after_the_ack() -> None:
    async def body() -> None:
        metrics, clock, producer = fresh_metrics(), Clock(), StubProducer()
        async with served(kafka_backend(producer, metrics, clock), metrics,
                          clock=clock) as client:
            records = [judgement(0), judgement(1, fingerprint="", duration="2m")]
            resp = await client.post(PATH, data=orjson.dumps(records))
            assert resp.status == 202
            assert await resp.json() == {"status": "accepted", "queued": True, "records": 2}
        sent = sorted(producer.sent, key=lambda s: s[1])
        assert [(t, orjson.loads(v), k) for t, v, k in sent] == [
            ("feedback", records[0], b"0000000000000000"),
            ("feedback", records[1], b"HighCPU")]  # no fingerprint: keyed by alertname

    asyncio.run(body())


def test_kafka_mode_refuses_bad_feedback_at_the_door_and_publishes_nothing() -> None:
    async def body() -> None:
        metrics, clock, producer = fresh_metrics(), Clock(), StubProducer()
        async with served(kafka_backend(producer, metrics, clock), metrics,
                          clock=clock) as client:
            resp = await client.post(PATH, data=orjson.dumps(
                [judgement(0), judgement(1, direction="sideways")]))
            assert resp.status == 400
            got = await resp.json()
            assert got["field"] == "[1].direction" and "sideways" in got["message"]
        assert producer.sent == [] and producer.attempts == 0

    asyncio.run(body())


@pytest.mark.parametrize(("error", "status"), [
    (KafkaConnectionError("connect failed"), 503), (MessageSizeTooLargeError(), 413)])
def test_kafka_mode_answers_503_with_retry_after_while_kafka_is_down(
        error: Exception, status: int) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        producer = StubProducer(fail_send=error)
        async with served(kafka_backend(producer, metrics, clock), metrics,
                          clock=clock) as client:
            resp = await client.post(PATH, data=orjson.dumps(judgement(0)))
            assert resp.status == status
            got = await resp.json()
            if status == 503:
                assert resp.headers["Retry-After"] == "2"
                assert got["error"] == "KafkaUnavailable" and "retry" in got["message"]
            else:
                assert got["error"] == "PayloadTooLarge"

    asyncio.run(body())


def test_serve_feedback_store_option_wires_the_route(tmp_path: Path) -> None:
    port = free_port()
    store = tmp_path / "history" / "fb.db"
    with triage_serve(tmp_path, port=port, config="{}\n",
                      extra=("--feedback-store", str(store))):
        status, body = http("POST", f"http://127.0.0.1:{port}{PATH}",
                            orjson.dumps([judgement(0), judgement(1)]))
        assert status == 200, body
        assert orjson.loads(body)["stored"] == 2
    assert len(FeedbackStore(store).read()) == 2
