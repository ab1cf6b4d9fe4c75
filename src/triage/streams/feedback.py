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

The loop (``run_ingest``, over ``triage.streams.ingest.run_batches``) takes its source,
store, dead-letter sink, clock and stop flag as arguments, so it runs in tests without a
broker; ``KafkaFeedbackSource`` and ``feedback_dead_letters`` are the kafka-python ends.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

import orjson

from triage.app.settings import KafkaSettings
from triage.core.render import render_failure
from triage.core.types import Failed
from triage.errors import DecodeError, InputError
from triage.metrics import FeedbackMetrics
from triage.models.feedback import Feedback, FeedbackStore, feedback_from_dict
from triage.streams.ingest import (
    IngestCounts,
    KafkaDeadLetters,
    KafkaTopicSource,
    Source,
    run_batches,
)
from triage.streams.topics import Record

CLIENT_ID = "triage-feedback-ingest"


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


FeedbackSource = Source  # a consumer group on the ``feedback`` topic


class KafkaFeedbackSource(KafkaTopicSource):
    """The ``feedback`` topic, in consumer group ``group`` (``KafkaTopicSource``)."""

    def __init__(self, kafka: KafkaSettings, *, group: str, timeout: float = 30.0,
                 max_records: int = 500, session_timeout: float = 10.0) -> None:
        super().__init__(kafka, "feedback", group=group, client_id=CLIENT_ID,
                         timeout=timeout, max_records=max_records,
                         session_timeout=session_timeout)


def feedback_dead_letters(kafka: KafkaSettings, *, timeout: float = 30.0) -> KafkaDeadLetters:
    """The dead-letter topic's producer, as the feedback ingest."""
    return KafkaDeadLetters(kafka, client_id=CLIENT_ID, timeout=timeout)


def run_ingest(source: Source, *, store: FeedbackStore,
               send_dead_letters: Callable[[list[bytes]], None], topic: str,
               **loop: Any) -> IngestCounts:
    """``run_batches`` with the feedback ingest's batch (``ingest_batch``): validate,
    dead-letter, append to ``store``; ``loop``: ``run_batches``' options."""
    handle = functools.partial(_handle, store=store, send_dead_letters=send_dead_letters,
                               topic=topic)
    return run_batches(source, handle, what="feedback messages", **loop)


def _handle(batch: Sequence[Record], now: float, *, store: FeedbackStore,
            send_dead_letters: Callable[[list[bytes]], None], topic: str) -> IngestCounts:
    return ingest_batch(batch, store=store, send_dead_letters=send_dead_letters, topic=topic,
                        now=now)


def default_group(kafka: KafkaSettings, group: str | None) -> str:
    """The ingest's consumer group: ``group``, else ``<kafka.app_id>-feedback``.

    >>> default_group(KafkaSettings(), None), default_group(KafkaSettings(), "mine")
    ('triage-feedback', 'mine')
    """
    return group or f"{kafka.app_id}-feedback"


def metered(metrics: FeedbackMetrics, source: Source,
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
