"""Factories for the HTTP receiver tests: a backend on a fake clock, served by aiohttp's test
server (no real port), and Kafka producer stubs that fail with aiokafka's own errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from triage.app.settings import KafkaSettings
from triage.core.incidents import CorrelationPolicy, IncidentEngine
from triage.core.pipeline import IntakeLimits, Pipeline
from triage.http.app import create_app
from triage.http.embedded import EmbeddedBackend
from triage.http.intake import Backend
from triage.http.relay import KafkaBackend
from triage.metrics import TriageMetrics
from triage.streams.publisher import Publisher

T = 1_800_000_000.0  # 2027-01-15T08:00:00Z, the fake wall clock


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self, now: float = T) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def embedded_backend(tmp_path: Path, metrics: TriageMetrics, clock: Clock, *,
                     state: Path | None = None, max_payload_bytes: int = 1 << 20,
                     page_delay: float = 30.0) -> EmbeddedBackend:
    pipeline = Pipeline(limits=IntakeLimits(max_payload_bytes=max_payload_bytes))
    engine = IncidentEngine(policy=CorrelationPolicy(page_delay=page_delay, lone_delay=0.0,
                                                      lone_critical_delay=0.0))
    # tick_interval 0: no timer task; tests move the clock and call tick() themselves
    return EmbeddedBackend(pipeline, engine, metrics, output=str(tmp_path / "events.jsonl"),
                           dead_letter=str(tmp_path / "dead.jsonl"), state_path=state,
                           tick_interval=0, clock=clock)


@asynccontextmanager
async def served(backend: Backend, metrics: TriageMetrics, *, clock: Clock,
                 token: str | None = None, max_body_bytes: int = 1 << 20,
                 stream_silences: bool = False) -> AsyncIterator[TestClient[Any, Any]]:
    """A test client on the app around ``backend`` (started and stopped with it)."""
    app = create_app(backend, metrics, token=token, max_body_bytes=max_body_bytes, clock=clock,
                     stream_silences=stream_silences)
    async with TestClient(TestServer(app)) as client:
        yield client


def fresh_metrics() -> TriageMetrics:
    return TriageMetrics.create(CollectorRegistry())


def sample(metrics: TriageMetrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    assert value is not None, f"no sample {name}{labels}"
    return value


def records(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


class StubProducer:
    """AIOKafkaProducer's async surface. ``fail_start`` / ``fail_send``: an exception (the
    real aiokafka type) to raise; ``sent`` keeps what was acknowledged."""

    def __init__(self, *, fail_start: BaseException | None = None,
                 fail_send: BaseException | None = None) -> None:
        self.fail_start = fail_start
        self.fail_send = fail_send
        self.sent: list[tuple[str, bytes, bytes | None]] = []
        self.started = self.stopped = self.attempts = 0
        self.client = self

    async def start(self) -> None:
        self.started += 1
        if self.fail_start is not None:
            raise self.fail_start

    async def stop(self) -> None:
        self.stopped += 1

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None) -> None:
        await (await self.send(topic, value, key))

    async def send(self, topic: str, value: bytes, key: bytes | None = None
                   ) -> asyncio.Future[None]:
        """As aiokafka's: queued now, the returned future resolved when acknowledged."""
        self.attempts += 1
        if self.fail_send is not None:
            raise self.fail_send
        self.sent.append((topic, value, key))
        ack: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        ack.set_result(None)
        return ack

    async def force_metadata_update(self) -> bool:  # as producer.client
        return self.fail_start is None and self.fail_send is None


def kafka_backend(producer: StubProducer, metrics: TriageMetrics, clock: Clock, *,
                  max_payload_bytes: int = 1 << 20,
                  monotonic: Callable[[], float] | None = None) -> KafkaBackend:
    publisher = Publisher(KafkaSettings(), producer_factory=lambda: producer, timeout=1.0,
                          retry_after=2.0, clock=monotonic or clock)
    return KafkaBackend(publisher, metrics, max_payload_bytes=max_payload_bytes, clock=clock)
