"""Kafka mode of ``triage serve``: check each body at the door, wrap it in an envelope and
publish it to ``alerts.raw``; answer 2xx only once the broker acknowledged (``acks=all``).

The workers do the triage. The door refuses, with 400 and a dead letter, what stage 1 could
only dead-letter anyway (not JSON, no known format), so the sender hears about it at once.
While Kafka is unavailable every body is refused with 503 and ``Retry-After``: Alertmanager
and Prometheus keep the alerts and retry, so nothing is lost.

**Keys.** Stage 1 keeps each alert's dedup and flap state on the partition of
``alerts.raw`` its fingerprint hashes to. A body with several alerts (a Prometheus API v2
post, a webhook group) is split at the door, one message per alert keyed by its
fingerprint (``triage.streams.keys.split_payload``, with the pipeline's fingerprinter and
intake limits), so every alert reaches its owner in the order it was received and stage 1
never forwards one behind its owner's backlog (issue 12); the parts are acknowledged
together. A body with one alert is published whole under its fingerprint; one with none (a
silence, a change record) goes unkeyed.

**Feedback** (``POST /api/v1/feedback``) is checked at the door (``feedback_from_dict``; a
bad record refuses the whole body with 400, nothing published), then each record is
published as sent to the ``feedback`` topic, keyed by its fingerprint (else its alertname),
and answered 202 once every one is acknowledged. A partial failure answers 503: the client's
retry may publish some records twice, and ``triage feedback ingest`` stores them once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from triage.core.fingerprint import Fingerprinter
from triage.core.pipeline import Pipeline
from triage.core.render import render_failure
from triage.core.types import Failed
from triage.errors import InputError
from triage.http.intake import Accepted, Rejected, check_format, envelope, too_large
from triage.metrics import TriageMetrics
from triage.models.feedback import Feedback
from triage.streams.keys import split_payload
from triage.streams.publisher import Publisher, PublishError

log = logging.getLogger("triage.http")




class KafkaBackend:
    """Publishes accepted bodies to the ``raw`` topic."""

    mode = "kafka"

    def __init__(self, publisher: Publisher, metrics: TriageMetrics, *,
                 max_payload_bytes: int, clock: Callable[[], float] = time.time,
                 fingerprinter: Fingerprinter | None = None,
                 reader: Pipeline | None = None) -> None:
        # ``fingerprinter``: the pipeline's (per-source policies), so that alerts dedup
        # treats as one (an HA pair's ``replica`` label excluded) get one key; ``reader``
        # splits bodies per alert (``bootstrap.build_reader``: that fingerprinter and the
        # intake limits)
        self.fingerprinter = fingerprinter or Fingerprinter()
        self.reader = reader or Pipeline(fingerprinter=self.fingerprinter)
        self.publisher = publisher
        self.metrics = metrics
        self.max_payload_bytes = max_payload_bytes
        self.clock = clock

    async def start(self) -> None:
        if not await self.publisher.start():
            log.warning("Kafka at %s is unavailable; answering 503 until it is back",
                        self.publisher.settings.bootstrap)

    async def stop(self) -> None:
        await self.publisher.stop()

    async def ready(self) -> bool:
        return await self.publisher.check()

    async def accept(self, body: bytes, *, received_at: float) -> Accepted | Rejected:
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError as exc:
            return await self._refuse(body, "DecodeError", "payload", f"not JSON: {exc}")
        problem: InputError | None = check_format(payload)
        if problem is not None:
            return await self._refuse(body, type(problem).__name__, problem.field,
                                      problem.message)
        wrapped = envelope(body, received_at)
        if len(wrapped) > self.max_payload_bytes:
            return too_large(len(wrapped), self.max_payload_bytes, "intake.max_payload_bytes")
        try:
            await self.publisher.publish_many("raw", split_payload(wrapped, self.reader))
        except PublishError as exc:
            if not exc.retryable:
                return Rejected(413, "PayloadTooLarge", str(exc))
            return Rejected(503, "KafkaUnavailable", f"{exc}; retry later",
                            retry_after=self.publisher.retry_after)
        return Accepted(queued=True)

    async def accept_feedback(self, records: list[Any], feedback: list[Feedback]
                              ) -> Accepted | Rejected:
        """Publish each validated record, as sent, to the ``feedback`` topic (acks=all)."""
        sends = [self.publisher.publish("feedback", orjson.dumps(record),
                                        key=(fb.fingerprint or fb.alertname).encode())
                 for record, fb in zip(records, feedback, strict=True)]
        failures = [r for r in await asyncio.gather(*sends, return_exceptions=True)
                    if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, PublishError):
                raise failure
        if failures:
            exc = failures[0]
            assert isinstance(exc, PublishError)
            if not exc.retryable:
                return Rejected(413, "PayloadTooLarge", str(exc))
            return Rejected(503, "KafkaUnavailable",
                            f"{exc}; {len(records) - len(failures)} of {len(records)} records "
                            "published, retry all of them later (repeats are stored once)",
                            retry_after=self.publisher.retry_after)
        return Accepted(queued=True, counts={"records": len(records)})

    async def dead_letter(self, raw: bytes, error: str, reason: str) -> None:
        """Publish a body refused at the door to the dead-letter topic (best effort: the
        sender was told either way)."""
        failed = Failed(error, "", reason, raw.decode("utf-8", "backslashreplace"))
        self.metrics.observe_outcomes([failed])
        try:
            await self.publisher.publish("deadletter", orjson.dumps(
                render_failure(failed, self.clock())))
        except PublishError as exc:
            log.warning("could not dead-letter a refused body (%s): %s", error, exc)

    async def _refuse(self, body: bytes, error: str, field: str, reason: str) -> Rejected:
        failed = Failed(error, field, reason, body.decode("utf-8", "backslashreplace"))
        # counted here: the workers never see this body
        self.metrics.observe_outcomes([failed])
        try:
            await self.publisher.publish("deadletter", orjson.dumps(
                render_failure(failed, self.clock())))
        except PublishError as exc:
            # the sender is told (400) either way; the dead letter is for the operators
            log.warning("could not dead-letter a refused body (%s): %s", error, exc)
        return Rejected(400, error, reason, field=field or None)
