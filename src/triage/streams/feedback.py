"""``triage feedback ingest``: responders' judgements from the ``feedback`` topic into the
feedback history (``triage.models.feedback.FeedbackStore``).

Each message is one feedback record (JSON, the fields of ``feedback_from_dict``). A good one
is appended to the store; a bad one (not JSON, or a field ``feedback_from_dict`` refuses) is
dead-lettered to ``alerts.deadletter`` with its raw bytes and a reason naming the field, and
the ingest goes on.

**Nothing is lost.** The consumer group's offsets are committed only after a batch's dead
letters are acknowledged (``acks=all``) and its records are committed to the store, so a
crash, even ``kill -9``, at any point leaves the batch to be read again. **Nothing is
doubled.** The store's ``append_new`` skips judgements it holds already (a record's id is
its content, ``feedback_id``), so the replay appends only what the crash lost; a replayed bad
record is dead-lettered again (dead letters are at least once).

The loop (``run_ingest``) takes its source, store, dead-letter sink, clock and stop flag as
arguments, so it runs in tests without a broker; ``KafkaFeedbackSource`` and
``KafkaDeadLetters`` are the kafka-python ends.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CommitFailedError, KafkaError, KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from triage.app.settings import KafkaSettings
from triage.core.render import render_failure
from triage.core.types import Failed
from triage.errors import DecodeError, InputError
from triage.metrics import FeedbackMetrics
from triage.models.feedback import Feedback, FeedbackStore, feedback_from_dict
from triage.streams.topics import Record, client_config, topic_name

log = logging.getLogger("triage.feedback")


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


def parse_feedback(value: bytes | None) -> Feedback:
    """One message's value as a validated ``Feedback``; ``InputError`` names the field.

    >>> parse_feedback(b'{"at": 0, "label": "noise", "alertname": "HighCPU"}').label
    'noise'
    >>> parse_feedback(b'{"at": 0, "label": "noise"}')
    Traceback (most recent call last):
    ...
    triage.errors.SchemaError: alertname: missing
    >>> parse_feedback(b'{"at": 0,')
    Traceback (most recent call last):
    ...
    triage.errors.DecodeError: not JSON: unexpected end of data: line 1 column 10 (char 9)
    """
    try:
        obj = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise DecodeError("", f"not JSON: {exc}") from None
    return feedback_from_dict(obj)


def dead_letter(record: Record, exc: InputError, *, topic: str, now: float) -> dict[str, Any]:
    """The dead letter of a refused feedback message: ``render_failure`` (error, field,
    reason, raw) plus where it came from (logical topic, partition, offset).

    >>> r = Record(0, 7, None, b'{"label": "maybe"}', 0)
    >>> d = dead_letter(r, InputError("label", "expected actionable or noise"),
    ...                 topic="feedback", now=0.0)
    >>> d["field"], d["raw"], d["topic"], d["offset"]
    ('label', '{"label": "maybe"}', 'feedback', 7)
    """
    failed = Failed(type(exc).__name__, exc.field, exc.message,
                    (record.value or b"").decode("utf-8", "backslashreplace"), topic)
    return render_failure(failed, now) | {"topic": "feedback", "partition": record.partition,
                                          "offset": record.offset}


def ingest_batch(
    records: Sequence[Record],
    *,
    store: FeedbackStore,
    send_dead_letters: Callable[[list[bytes]], None],
    topic: str,
    now: float,
) -> IngestCounts:
    """Validate ``records``, dead-letter the bad ones, append the good ones to ``store``.

    Returns only once both are durable (``send_dead_letters`` must return only after the
    broker acknowledged), so the caller may then commit the offsets. Raises whatever the
    store or the sink raises; nothing of the batch is then to be considered done.
    """
    good: list[Feedback] = []
    letters: list[bytes] = []
    for record in records:
        try:
            good.append(parse_feedback(record.value))
        except InputError as exc:
            letters.append(orjson.dumps(dead_letter(record, exc, topic=topic, now=now)))
    if letters:
        send_dead_letters(letters)
    stored = store.append_new(good)
    return IngestCounts(read=len(records), stored=stored, repeats=len(good) - stored,
                        dead_lettered=len(letters))


class FeedbackSource(Protocol):
    """Where feedback messages come from (a consumer group on the ``feedback`` topic)."""

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


def run_ingest(
    source: FeedbackSource,
    *,
    store: FeedbackStore,
    send_dead_letters: Callable[[list[bytes]], None],
    topic: str,
    clock: Callable[[], float] = time.time,
    once: bool = False,
    stop: Callable[[], bool] = lambda: False,
    retry_after: float = 5.0,
    sleep: Callable[[float], None] = time.sleep,
    on_batch: Callable[[IngestCounts], None] | None = None,
    poll_timeout: float = 0.5,
) -> IngestCounts:
    """Ingest until ``stop()`` (or, with ``once``, until ``source.drained()``); returns the
    counts. Each batch: validate, dead-letter, store, then commit its offsets.

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
            counts = ingest_batch(batch, store=store, send_dead_letters=send_dead_letters,
                                  topic=topic, now=clock())
        except Exception:
            if once:
                raise
            log.exception("could not store a batch of %d feedback messages; retrying in %gs",
                          len(batch), retry_after)
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


class KafkaFeedbackSource:
    """The ``feedback`` topic through a kafka-python consumer in consumer group ``group``
    (subscribed, so several ingests share the partitions; nothing auto-committed).

    ``session_timeout``: after a crash, the group waits this long for the dead member before
    a restarted ingest gets its partitions (kafka-python's default is 45 s).
    """

    def __init__(self, kafka: KafkaSettings, *, group: str, timeout: float = 30.0,
                 max_records: int = 500, session_timeout: float = 10.0) -> None:
        self.topic = topic_name(kafka, "feedback")
        self.timeout = timeout
        self._consumer = KafkaConsumer(
            **client_config(kafka), group_id=group, enable_auto_commit=False,
            auto_offset_reset="earliest", client_id="triage-feedback-ingest",
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

    def __init__(self, kafka: KafkaSettings, *, timeout: float = 30.0) -> None:
        self.topic = topic_name(kafka, "deadletter")
        self.timeout = timeout
        self._producer = KafkaProducer(**client_config(kafka), acks="all", linger_ms=5,
                                       client_id="triage-feedback-ingest")

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


def default_group(kafka: KafkaSettings, group: str | None) -> str:
    """The ingest's consumer group: ``group``, else ``<kafka.app_id>-feedback``.

    >>> default_group(KafkaSettings(), None), default_group(KafkaSettings(), "mine")
    ('triage-feedback', 'mine')
    """
    return group or f"{kafka.app_id}-feedback"


def metered(metrics: FeedbackMetrics, source: FeedbackSource,
            then: Callable[[IngestCounts], None] | None = None,
            clock: Callable[[], float] = time.time) -> Callable[[IngestCounts], None]:
    """An ``on_batch`` for ``run_ingest`` that feeds ``metrics`` each durable batch's counts
    (``run_ingest`` passes running totals) and the source's backlog, then calls ``then``."""
    seen = IngestCounts()

    def on_batch(total: IngestCounts) -> None:
        nonlocal seen
        metrics.observe(stored=total.stored - seen.stored, repeats=total.repeats - seen.repeats,
                        dead_lettered=total.dead_lettered - seen.dead_lettered,
                        backlog=source.backlog(), now=clock())
        seen = replace(total)
        if then is not None:
            then(total)

    return on_batch
