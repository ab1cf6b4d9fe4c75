"""An outbox relay: records a store has queued (``fetch``), published to a Kafka topic with
``acks=all``, then marked done (``mark``) only once the broker has them all, so a crash
publishes a batch again rather than losing it (at least once; consumers drop repeats by
their event id). ``triage desk publish`` runs it over the desk's lifecycle events."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from kafka import KafkaProducer
from kafka.errors import KafkaError

from triage.app.settings import KafkaSettings
from triage.streams.topics import client_config, topic_name

log = logging.getLogger("triage.relay")
Queued = tuple[Any, bytes | None, Any]  # (its id in the store, key, JSON value)


def relay(kafka: KafkaSettings, logical: str, *, fetch: Callable[[int], Sequence[Queued]],
          mark: Callable[[list[Any]], None], once: bool = False,
          stop: Callable[[], bool] = lambda: False, batch: int = 500, pause: float = 1.0,
          timeout: float = 30.0, on_batch: Callable[[int], None] | None = None) -> int:
    """Publish what ``fetch`` returns until it returns nothing (``once``) or ``stop()``;
    how many records were published."""
    topic = topic_name(kafka, logical)
    producer = KafkaProducer(**client_config(kafka), acks="all", linger_ms=5,
                             client_id="triage-desk-publish")
    sent = 0
    try:
        while not stop():
            queued = fetch(batch)
            if not queued:
                if once:
                    break
                time.sleep(pause)
                continue
            futures = [producer.send(topic, key=key, value=orjson.dumps(value))
                       for _, key, value in queued]
            producer.flush(timeout=timeout)
            for future in futures:
                future.get(timeout=timeout)  # raises the send's KafkaError: nothing marked
            mark([ident for ident, _, _ in queued])
            sent += len(queued)
            if on_batch is not None:
                on_batch(sent)
    finally:
        try:
            producer.close(timeout=timeout)
        except KafkaError as exc:
            log.warning("closing the relay's producer: %s", exc)
    return sent
