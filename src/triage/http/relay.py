"""Kafka mode of ``triage serve``: check each body at the door, wrap it in an envelope and
publish it to ``alerts.raw``; answer 2xx only once the broker acknowledged (``acks=all``).

The workers do the triage. The door refuses, with 400 and a dead letter, what stage 1 could
only dead-letter anyway (not JSON, no known format), so the sender hears about it at once.
While Kafka is unavailable every body is refused with 503 and ``Retry-After``: Alertmanager
and Prometheus keep the alerts and retry, so nothing is lost.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import orjson

from triage.core.render import render_failure
from triage.core.types import Failed
from triage.errors import InputError
from triage.http.intake import Accepted, Rejected, check_format, envelope, too_large
from triage.metrics import TriageMetrics
from triage.streams.publisher import Publisher, PublishError

log = logging.getLogger("triage.http")


class KafkaBackend:
    """Publishes accepted bodies to the ``raw`` topic."""

    mode = "kafka"

    def __init__(self, publisher: Publisher, metrics: TriageMetrics, *,
                 max_payload_bytes: int, clock: Callable[[], float] = time.time) -> None:
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
            await self.publisher.publish("raw", wrapped)
        except PublishError as exc:
            if not exc.retryable:
                return Rejected(413, "PayloadTooLarge", str(exc))
            return Rejected(503, "KafkaUnavailable", f"{exc}; retry later",
                            retry_after=self.publisher.retry_after)
        return Accepted(queued=True)

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
