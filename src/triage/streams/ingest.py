"""A consumer group whose offsets are committed only once each batch is durable: the loop of
``triage feedback ingest`` and ``triage desk ingest``.

``run_batches`` polls a ``Source``, hands each batch to the caller's ``handle`` (which stores
it, and dead-letters what it refuses, and returns only when both are durable), then commits
the batch's offsets. A crash at any point, even ``kill -9``, leaves the batch to be read
again, so ``handle`` must be idempotent (both stores skip what they hold). A batch that
cannot be made durable is read again after a pause. ``KafkaTopicSource`` and
``KafkaDeadLetters`` are the kafka-python ends; tests pass their own.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from triage.app.settings import KafkaSettings
from triage.streams.topics import Record, client_config, topic_name

log = logging.getLogger("triage.ingest")


@dataclass(slots=True)
class IngestCounts:
    """What an ingest did: messages ``read``; of the good ones, ``stored`` (new) and
    ``repeats`` (already in the history: a replay or a resend); ``dead_lettered``."""

    read: int = 0
    stored: int = 0
    repeats: int = 0
    dead_lettered: int = 0

    def add(self, other: IngestCounts) -> None:
        """Add ``other``'s counts to these."""
        self.read += other.read
        self.stored += other.stored
        self.repeats += other.repeats
        self.dead_lettered += other.dead_lettered


class Source(Protocol):
    """Where the messages come from (a consumer group on one topic)."""

    def poll(self, timeout: float) -> list[Record]:
        """The next messages (possibly none within ``timeout`` seconds)."""

    def commit(self, offsets: Mapping[int, int]) -> None:
        """Record, per partition, the offset of the next message to read."""

    def rewind(self, offsets: Mapping[int, int]) -> None:
        """Read again from these offsets (a batch that could not be stored)."""

    def drained(self) -> bool:
        """Whether every message there was at the start has been read (``--once``)."""

    def backlog(self) -> int | None:
        """Messages left until ``drained``; None while unknown."""


def run_batches(
    source: Source,
    handle: Callable[[Sequence[Record], float], IngestCounts],
    *,
    what: str = "messages",
    clock: Callable[[], float] = time.time,
    once: bool = False,
    stop: Callable[[], bool] = lambda: False,
    retry_after: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    on_batch: Callable[[IngestCounts], None] | None = None,
    poll_timeout: float = 0.5,
) -> IngestCounts:
    """Ingest until ``stop()`` (or, with ``once``, until ``source.drained()``); returns the
    counts. Each batch: ``handle(batch, now)`` (which returns once the batch is durable:
    stored, and its dead letters acknowledged), then commit its offsets.

    A batch that cannot be made durable (the store or Kafka fails) is not committed: with
    ``once`` the error propagates; otherwise the source is rewound to the batch's first
    offsets and the batch is retried after ``retry_after`` seconds (appends are idempotent,
    so a batch half-done before the failure is not doubled).
    """
    total = IngestCounts()
    while not stop():
        if once and source.drained():
            break
        batch = source.poll(poll_timeout)
        if not batch:
            continue
        try:
            counts = handle(batch, clock())
        except Exception:
            if once:
                raise
            log.exception("could not store a batch of %d %s; retrying in %gs",
                          len(batch), what, retry_after)
            source.rewind(_first_offsets(batch))
            sleep(retry_after)
            continue
        source.commit(_next_offsets(batch))
        total.add(counts)
        if on_batch is not None:
            on_batch(total)
    return total


def _next_offsets(batch: Iterable[Record]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in batch:
        out[r.partition] = max(out.get(r.partition, 0), r.offset + 1)
    return out


def _first_offsets(batch: Iterable[Record]) -> dict[int, int]:
    out: dict[int, int] = {}
    for r in batch:
        out[r.partition] = min(out.get(r.partition, r.offset), r.offset)
    return out


class KafkaTopicSource:
    """The logical topic ``logical`` through a kafka-python consumer in consumer group
    ``group`` (subscribed, so several ingests share the partitions; nothing auto-committed).

    ``session_timeout``: after a crash, the group waits this long for the dead member before
    a restarted ingest gets its partitions (kafka-python's default is 45 s).
    """

    def __init__(self, kafka: KafkaSettings, logical: str, *, group: str,
                 client_id: str, timeout: float = 30.0, max_records: int = 500,
                 session_timeout: float = 10.0) -> None:
        self.topic = topic_name(kafka, logical)
        self.timeout = timeout
        self._consumer = KafkaConsumer(
            **client_config(kafka), group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", client_id=client_id,
            max_poll_records=max_records, session_timeout_ms=int(session_timeout * 1000),
            heartbeat_interval_ms=max(100, int(session_timeout * 1000) // 3))
        self._consumer.subscribe([self.topic])
        self._ends: dict[TopicPartition, int] = {}
        self._since = time.monotonic()

    def poll(self, timeout: float) -> list[Record]:
        batch = self._consumer.poll(timeout_ms=int(timeout * 1000))
        return sorted((Record(m.partition, m.offset, m.key, m.value, m.timestamp)
                       for msgs in batch.values() for m in msgs),
                      key=lambda r: (r.partition, r.offset))

    def commit(self, offsets: Mapping[int, int]) -> None:
        try:
            self._consumer.commit({TopicPartition(self.topic, p): OffsetAndMetadata(o, "", -1)
                                   for p, o in offsets.items()})
        except CommitFailedError as exc:
            # the group rebalanced meanwhile: the partitions' new owner reads the batch
            # again, and the store already holds it (appends are idempotent)
            log.warning("offsets not committed (%s); the batch will be read again", exc)

    def rewind(self, offsets: Mapping[int, int]) -> None:
        assigned = self._consumer.assignment()
        for p, o in offsets.items():
            tp = TopicPartition(self.topic, p)
            if tp in assigned:
                self._consumer.seek(tp, o)

    def _assigned(self) -> set[TopicPartition]:
        assigned = set(self._consumer.assignment())
        if not assigned and time.monotonic() - self._since > self.timeout:
            raise KafkaTimeoutError(
                f"no partition of {self.topic} assigned within {self.timeout:g}s (does the "
                "topic exist? `triage topics create`)")
        missing = [tp for tp in assigned if tp not in self._ends]
        if missing:  # the end of what is there now, for --once (taken once per partition)
            self._ends.update(self._consumer.end_offsets(missing))
        return assigned

    def backlog(self) -> int | None:
        assigned = self._assigned()
        if not assigned:
            return None
        return sum(max(0, int(self._ends[tp]) - int(self._consumer.position(tp)))
                   for tp in assigned)

    def drained(self) -> bool:
        return self.backlog() == 0

    def close(self) -> None:
        """Leave the group (the offsets were committed batch by batch)."""
        self._consumer.close(autocommit=False)


class KafkaDeadLetters:
    """Sends dead letters to the ``deadletter`` topic and waits for ``acks=all``."""

    def __init__(self, kafka: KafkaSettings, *, client_id: str,
                 timeout: float = 30.0) -> None:
        self.topic = topic_name(kafka, "deadletter")
        self.timeout = timeout
        self._producer = KafkaProducer(**client_config(kafka), acks="all", linger_ms=5,
                                       client_id=client_id)

    def __call__(self, letters: list[bytes]) -> None:
        futures = [self._producer.send(self.topic, value=v) for v in letters]
        self._producer.flush(timeout=self.timeout)
        for future in futures:
            future.get(timeout=self.timeout)  # raises the send's KafkaError

    def close(self) -> None:
        """Flush and close the producer."""
        try:
            self._producer.close(timeout=self.timeout)
        except KafkaError as exc:
            log.warning("closing the dead-letter producer: %s", exc)
