"""Publish raw payloads to Kafka for ``triage serve --mode kafka``: an aiokafka producer with
``acks=all`` and idempotence, so a message counts as accepted only once every in-sync
replica has it.

``Publisher.publish`` returns only after the broker acknowledged, and turns every aiokafka
failure into ``PublishError`` (``retryable`` or not), so the HTTP layer, which must not import
Kafka clients, can answer 503 with ``Retry-After`` and the sender keeps the alert and retries.
The server starts while Kafka is down: the producer is (re)connected lazily, at most once per
``retry_after`` seconds, and every request in between is refused quickly instead of hanging.

Delivery is at least once: a send that times out here may still reach the broker, and the
sender's retry then publishes the payload again; stage 1 recognises the repeat (dedup).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, MessageSizeTooLargeError
from aiokafka.helpers import create_ssl_context

from triage.app.settings import KafkaSettings
from triage.errors import TriageError

ProducerFactory = Callable[[], Any]  # returns an object with AIOKafkaProducer's async API


class PublishError(TriageError):
    """Kafka did not acknowledge a message. ``retryable``: the same message may succeed later
    (broker down, not enough replicas, timeout); otherwise it never will (too large)."""

    def __init__(self, message: str, *, retryable: bool = True) -> None:
        super().__init__(message)
        self.retryable = retryable


def producer_options(settings: KafkaSettings, *, max_request_size: int,
                     request_timeout: float) -> dict[str, Any]:
    """AIOKafkaProducer keyword arguments for ``settings`` (connection, auth, acks=all)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.bootstrap,
        "client_id": f"{settings.app_id}-serve",
        "acks": "all",
        # the producer's own retries never duplicate or reorder within a partition
        "enable_idempotence": True,
        "max_request_size": max_request_size,
        "request_timeout_ms": int(request_timeout * 1000),
        "security_protocol": settings.security_protocol,
    }
    if settings.sasl_mechanism:
        options.update(sasl_mechanism=settings.sasl_mechanism,
                       sasl_plain_username=settings.sasl_username,
                       sasl_plain_password=settings.sasl_password)
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(
            cafile=settings.ssl_cafile, certfile=settings.ssl_certfile,
            keyfile=settings.ssl_keyfile)
    return options


class Publisher:
    """Publishes to the topics named in ``KafkaSettings.topics`` (by role: ``raw``,
    ``deadletter``, ...).

    >>> from triage.app.settings import KafkaSettings
    >>> Publisher(KafkaSettings()).topic("raw")
    'alerts.raw'
    """

    def __init__(
        self,
        settings: KafkaSettings,
        *,
        producer_factory: ProducerFactory | None = None,
        timeout: float = 5.0,
        retry_after: float = 5.0,
        max_request_size: int = 1 << 20,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        # Under Alertmanager's and Prometheus's default 10 s client timeout, so the sender
        # hears 503 and retries rather than timing out itself.
        self.timeout = timeout
        self.retry_after = retry_after
        self._factory = producer_factory or (lambda: AIOKafkaProducer(**producer_options(
            settings, max_request_size=max_request_size, request_timeout=timeout)))
        self._clock = clock
        self._producer: Any = None
        self._down_until = 0.0
        self._last_error = "Kafka is unavailable"
        self._lock = asyncio.Lock()
        self.connected = False

    def topic(self, role: str) -> str:
        """The topic name for ``role`` (``raw``, ``deadletter``, ...)."""
        return self.settings.topics[role]

    async def start(self) -> bool:
        """Connect now if possible; a broker that is down is not an error here (the server
        still starts, answers 503 and reconnects on a later request). Returns ``connected``."""
        try:
            await self._ensure_started()
        except PublishError:
            return False
        return True

    async def stop(self) -> None:
        """Flush what is in flight and close the producer."""
        producer, self._producer, self.connected = self._producer, None, False
        if producer is not None:
            # closing a producer whose broker is gone: nothing left to save
            with contextlib.suppress(KafkaError):
                await producer.stop()

    async def publish(self, role: str, value: bytes, key: bytes | None = None) -> None:
        """Send ``value`` to the topic for ``role`` and wait for ``acks=all``.

        Raises ``PublishError`` when the broker did not acknowledge in time.
        """
        await self.publish_many(role, [(key, value)])

    async def publish_many(self, role: str, messages: list[tuple[bytes | None, bytes]]) -> None:
        """Send every (key, value) to the topic for ``role`` at once, and wait until the
        broker acknowledged them all (``acks=all``). ``PublishError`` if any was not: the
        caller answers the sender with a retry, and a retry may publish some twice (stage 1
        takes a repeat as a repeat)."""
        producer = await self._ensure_started()
        now = self._clock()
        if not self.connected and now < self._down_until:
            # a send failed moments ago: refuse at once rather than make every request
            # wait out the timeout while the broker is away
            raise PublishError(self._refusal())
        topic = self.topic(role)

        async def send_all() -> None:
            acks = [await producer.send(topic, value, key=key) for key, value in messages]
            for ack in acks:
                await ack

        try:
            await asyncio.wait_for(send_all(), self.timeout)
        except MessageSizeTooLargeError as exc:
            raise PublishError(f"Kafka refused the message size: {exc}",
                               retryable=False) from None
        except (KafkaError, TimeoutError) as exc:
            self.connected = False
            self._down_until = now + self.retry_after
            why = (f"no acknowledgement within {self.timeout:g}s" if isinstance(exc, TimeoutError)
                   else _describe(exc))
            self._last_error = f"Kafka did not acknowledge: {why}"
            raise PublishError(self._last_error) from None
        self.connected = True

    async def check(self) -> bool:
        """Whether the broker answers now (a metadata round trip), for readiness probes."""
        try:
            producer = await self._ensure_started()
            ok = await asyncio.wait_for(producer.client.force_metadata_update(), self.timeout)
        except (PublishError, KafkaError, TimeoutError):
            ok = False
        self.connected = bool(ok)
        return self.connected

    def _refusal(self) -> str:
        return f"{self._last_error} (next attempt within {self.retry_after:g}s)"

    async def _ensure_started(self) -> Any:
        if self._producer is not None:
            return self._producer
        async with self._lock:
            if self._producer is not None:
                return self._producer
            now = self._clock()
            if now < self._down_until:
                raise PublishError(self._refusal())
            producer = self._factory()
            try:
                await asyncio.wait_for(producer.start(), self.timeout)
            except (KafkaError, TimeoutError, OSError) as exc:
                self._down_until = now + self.retry_after
                with contextlib.suppress(Exception):  # a half-started producer may not close
                    await producer.stop()
                self._last_error = (f"cannot connect to Kafka at {self.settings.bootstrap}: "
                                    f"{_describe(exc)}")
                raise PublishError(self._last_error) from None
            self._producer = producer
            self.connected = True
            return producer


def _describe(exc: BaseException) -> str:
    return str(exc) or type(exc).__name__
