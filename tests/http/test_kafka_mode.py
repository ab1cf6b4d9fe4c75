"""``triage serve --mode kafka`` against a producer stub that fails with aiokafka's own error
types, so the translation in ``triage.streams.publisher`` is exercised as it runs. The real
broker is exercised in ``tests/integration`` (the streaming runtime's tests)."""

from __future__ import annotations

import asyncio

import orjson
import pytest
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    NotEnoughReplicasError,
)

from tests.http.conftest import (
    Clock,
    StubProducer,
    fresh_metrics,
    kafka_backend,
    sample,
    served,
)
from triage.app.settings import KafkaSettings
from triage.core.fingerprint import labelset_fingerprint
from triage.streams.publisher import Publisher, PublishError, producer_options

ALERT = {"alertname": "DiskFull", "service": "db"}


def test_accepted_bodies_are_published_in_an_envelope_after_the_ack() -> None:
    async def body() -> None:
        metrics, clock, producer = fresh_metrics(), Clock(), StubProducer()
        backend = kafka_backend(producer, metrics, clock)
        async with served(backend, metrics, clock=clock) as client:
            resp = await client.post("/api/v1/alerts", data=orjson.dumps(ALERT))
            assert resp.status == 202
            assert await resp.json() == {"status": "accepted", "queued": True}
            resp = await client.post("/api/v2/alerts", data=b'[{"labels": {"alertname": "X"}}]')
            assert resp.status == 200 and await resp.read() == b""
            assert (await client.get("/-/ready")).status == 200
        topic, value, key = producer.sent[0]
        assert topic == "alerts.raw" and key == labelset_fingerprint(ALERT).encode()
        assert orjson.loads(value) == {"received_at": "2027-01-15T08:00:00.000Z",
                                       "payload": ALERT}
        assert producer.stopped == 1  # flushed and closed on shutdown

    asyncio.run(body())


@pytest.mark.parametrize("error", [KafkaConnectionError("connect failed"),
                                   KafkaTimeoutError(), NotEnoughReplicasError()])
def test_a_failed_send_is_503_with_retry_after(error: Exception) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        producer = StubProducer(fail_send=error)
        async with served(kafka_backend(producer, metrics, clock), metrics,
                          clock=clock) as client:
            resp = await client.post("/webhook", data=orjson.dumps(ALERT))
            assert resp.status == 503
            assert resp.headers["Retry-After"] == "2"
            got = await resp.json()
            assert got["error"] == "KafkaUnavailable" and "retry" in got["message"]
            assert (await client.get("/-/ready")).status == 503
            assert (await client.get("/-/healthy")).status == 200
        assert sample(metrics, "triage_http_requests_total", handler="webhook",
                      code="503") == 1

    asyncio.run(body())


def test_broker_down_at_start_is_503_then_recovers() -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        monotonic = Clock(0.0)
        producer = StubProducer(fail_start=KafkaConnectionError("Unable to bootstrap"))
        backend = kafka_backend(producer, metrics, clock, monotonic=monotonic)
        async with served(backend, metrics, clock=clock) as client:  # starts anyway
            resp = await client.post("/api/v1/alerts", data=orjson.dumps(ALERT))
            assert resp.status == 503
            message = (await resp.json())["message"]
            assert "cannot connect to Kafka" in message and "Unable to bootstrap" in message
            starts = producer.started
            # within retry_after no reconnect is attempted: refused at once
            resp = await client.post("/api/v1/alerts", data=orjson.dumps(ALERT))
            assert resp.status == 503 and producer.started == starts
            # the broker is back and retry_after has passed
            producer.fail_start = None
            monotonic.now += 3
            resp = await client.post("/api/v1/alerts", data=orjson.dumps(ALERT))
            assert resp.status == 202
        assert len(producer.sent) == 1

    asyncio.run(body())


def test_after_a_failed_send_requests_are_refused_at_once_until_retry_after() -> None:
    async def body() -> None:
        metrics, clock, monotonic = fresh_metrics(), Clock(), Clock(0.0)
        producer = StubProducer(fail_send=KafkaTimeoutError())
        backend = kafka_backend(producer, metrics, clock, monotonic=monotonic)
        async with served(backend, metrics, clock=clock) as client:
            assert (await client.post("/webhook", json=ALERT)).status == 503
            assert (await client.post("/webhook", json=ALERT)).status == 503
            assert producer.attempts == 1  # the second never waited on the broker
            producer.fail_send = None
            monotonic.now += 2.5
            assert (await client.post("/webhook", json=ALERT)).status == 202
            assert producer.attempts == 2

    asyncio.run(body())


def test_a_message_the_broker_will_never_take_is_413() -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        producer = StubProducer(fail_send=MessageSizeTooLargeError())
        async with served(kafka_backend(producer, metrics, clock), metrics,
                          clock=clock) as client:
            resp = await client.post("/api/v1/alerts", data=orjson.dumps(ALERT))
            assert resp.status == 413

    asyncio.run(body())


@pytest.mark.parametrize(("data", "error"), [(b"{oops", "DecodeError"),
                                             (b'{"hello": 1}', "UnknownFormatError")])
def test_bad_bodies_are_refused_at_the_door_and_dead_lettered(data: bytes, error: str) -> None:
    async def body() -> None:
        metrics, clock, producer = fresh_metrics(), Clock(), StubProducer()
        async with served(kafka_backend(producer, metrics, clock), metrics,
                          clock=clock) as client:
            resp = await client.post("/webhook", data=data)
            assert resp.status == 400
            assert (await resp.json())["error"] == error
        [(topic, value, _)] = producer.sent
        record = orjson.loads(value)
        assert topic == "alerts.deadletter"
        assert (record["error"], record["raw"]) == (error, data.decode())
        assert sample(metrics, "triage_alerts_dead_lettered_total", error=error) == 1
        assert sample(metrics, "triage_alerts_received_total", source="unknown") == 1

    asyncio.run(body())


def test_silences_and_change_records_pass_the_door() -> None:
    silence = {"matchers": [{"name": "service", "value": "db", "isRegex": False}],
               "startsAt": "2027-01-15T08:00:00Z", "endsAt": "2027-01-15T09:00:00Z",
               "createdBy": "alice", "comment": "failover"}
    change = {"id": "deploy-1", "service": "db", "kind": "deploy", "at": "2027-01-15T07:00:00Z"}

    async def body() -> None:
        metrics, clock, producer = fresh_metrics(), Clock(), StubProducer()
        async with served(kafka_backend(producer, metrics, clock), metrics,
                          clock=clock, stream_silences=True) as client:  # a trusted stream
            for doc in (silence, change):
                assert (await client.post("/api/v1/alerts", json=doc)).status == 202
        assert len(producer.sent) == 2

    asyncio.run(body())


def test_envelope_over_the_intake_limit_is_413() -> None:
    async def body() -> None:
        metrics, clock, producer = fresh_metrics(), Clock(), StubProducer()
        backend = kafka_backend(producer, metrics, clock, max_payload_bytes=100)
        async with served(backend, metrics, clock=clock) as client:
            resp = await client.post("/api/v1/alerts", json={**ALERT, "pad": "x" * 100})
            assert resp.status == 413
            assert "intake.max_payload_bytes" in (await resp.json())["message"]
        assert producer.sent == []

    asyncio.run(body())


def test_publisher_wraps_aiokafka_errors() -> None:
    async def body() -> None:
        publisher = Publisher(KafkaSettings(), producer_factory=lambda: StubProducer(
            fail_send=KafkaConnectionError("gone")), timeout=1.0)
        with pytest.raises(PublishError) as info:
            await publisher.publish("raw", b"{}")
        assert info.value.retryable
        assert not publisher.connected

    asyncio.run(body())


def test_producer_options_ask_for_acks_all_and_idempotence() -> None:
    opts = producer_options(KafkaSettings(bootstrap="k:9092", security_protocol="SASL_PLAINTEXT",
                                          sasl_mechanism="SCRAM-SHA-256", sasl_username="u",
                                          sasl_password="p"),
                            max_request_size=2 << 20, request_timeout=5.0)
    assert opts["acks"] == "all" and opts["enable_idempotence"] is True
    assert opts["bootstrap_servers"] == "k:9092"
    assert (opts["sasl_mechanism"], opts["sasl_plain_username"]) == ("SCRAM-SHA-256", "u")
    assert opts["request_timeout_ms"] == 5000 and opts["max_request_size"] == 2 << 20


def _am_alert(name: str, instance: str) -> dict:
    return {"status": "firing", "labels": {"alertname": name, "instance": instance},
            "annotations": {}, "startsAt": "2027-01-15T07:59:00Z",
            "endsAt": "0001-01-01T00:00:00Z", "generatorURL": "", "fingerprint": ""}


def test_each_alert_is_published_keyed_by_its_fingerprint() -> None:
    """A body of several alerts is split at the door, one message per alert under its
    fingerprint, so each reaches its owner partition in the order it was received (issue
    12: a forward from another partition arrived behind the owner's backlog)."""
    a, b = {"alertname": "A", "instance": "x"}, {"alertname": "B", "instance": "y"}
    webhook = {"version": "4", "groupKey": '{}/{}:{alertname="A"}', "status": "firing",
               "receiver": "triage", "groupLabels": {"alertname": "A"},
               "commonLabels": {}, "commonAnnotations": {}, "externalURL": "",
               "truncatedAlerts": 0, "alerts": [_am_alert("A", "x"), _am_alert("B", "y")]}
    v2_same = [{"labels": a, "startsAt": "2027-01-15T07:59:00Z"},
               {"labels": a, "startsAt": "2027-01-15T07:59:30Z"}]
    v2_mixed = [{"labels": b, "startsAt": "2027-01-15T07:59:00Z"},
                {"labels": a, "startsAt": "2027-01-15T07:59:00Z"}]
    silence = {"matchers": [{"name": "alertname", "value": "A", "isRegex": False}],
               "startsAt": "2027-01-15T07:00:00Z", "endsAt": "2027-01-15T09:00:00Z",
               "createdBy": "ops", "comment": "maintenance"}
    ka = labelset_fingerprint(a).encode()
    kb = labelset_fingerprint(b).encode()
    kx = labelset_fingerprint(ALERT).encode()
    cases = [
        ("/webhook", webhook, [ka, kb]),
        ("/api/v2/alerts", v2_same, [ka, ka]),
        ("/api/v2/alerts", v2_mixed, [kb, ka]),
        ("/api/v1/alerts", [ALERT, ALERT], [kx, kx]),
        ("/api/v1/alerts", [ALERT], [kx]),  # one alert: the body itself
        ("/api/v1/alerts", silence, [None]),  # no alert in it
    ]

    async def body() -> None:
        metrics, clock, producer = fresh_metrics(), Clock(), StubProducer()
        async with served(kafka_backend(producer, metrics, clock), metrics,
                          clock=clock, stream_silences=True) as client:
            for path, payload, _ in cases:
                resp = await client.post(path, data=orjson.dumps(payload))
                assert resp.status in (200, 202), await resp.text()
        assert [key for _, _, key in producer.sent] == [k for _, _, keys in cases for k in keys]
        parts = [orjson.loads(value) for _, value, _ in producer.sent[:2]]
        # the webhook's two alerts: stage 1's forward records, one source, one time
        assert [p["_triage"] for p in parts] == ["alert", "alert"]
        assert parts[0]["src"] == parts[1]["src"] and parts[0]["src"][0] == -1
        assert parts[0]["t"] == parts[1]["t"]
        assert [p["alert"]["labels"]["alertname"] for p in parts] == ["A", "B"]
        single = orjson.loads(producer.sent[-2][1])
        assert single["payload"] == [ALERT]  # the envelope, as sent

    asyncio.run(body())


def test_the_pipeline_fingerprinter_keys_an_ha_pair_alike() -> None:
    from triage.core.fingerprint import Fingerprinter, FingerprintPolicy
    from triage.streams.keys import partition_key

    ha = Fingerprinter(default=FingerprintPolicy(exclude=frozenset({"replica"})))
    one, two = ({"labels": {"alertname": "A", "replica": r},
                 "startsAt": "2027-01-15T07:59:00Z"} for r in ("a", "b"))
    assert partition_key([one], ha) == partition_key([two], ha)
    assert partition_key([one]) != partition_key([two])  # without the policy they differ
    assert partition_key({"not": "an alert"}) is None
