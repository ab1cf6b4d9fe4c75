"""Kafka topics and plain clients (kafka-python): ``triage topics create``, ``produce``,
``consume``, and the client settings every Kafka client of triage shares.

The six topics of DESIGN.md, by logical name (``kafka.topics`` in the config maps each to
its real name, so tests and tenants can use their own names):

=============  =====================================================================
``raw``        monitoring's payloads, any format, as received (key: optional)
``keyed``      stage-1 state changes, keyed by correlation domain
``changes``    change records (deploys, config, flags), keyed by change id
``feedback``   responders' judgements (learning stage)
``incidents``  incident events, keyed by incident id
``deadletter`` failures with the raw payload and the reason
=============  =====================================================================

Creating topics is idempotent: existing topics are reported, not an error.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import IO, Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaConnectionError, KafkaError, TopicAlreadyExistsError

from triage.app.settings import KafkaSettings

LOGICAL_TOPICS = ("raw", "keyed", "changes", "feedback", "incidents", "deadletter",
                  "lifecycle")


def client_config(kafka: KafkaSettings) -> dict[str, Any]:
    """kafka-python client arguments (bootstrap, SASL, TLS) for ``kafka``.

    >>> client_config(KafkaSettings(bootstrap="a:9092,b:9092"))["bootstrap_servers"]
    ['a:9092', 'b:9092']
    """
    cfg: dict[str, Any] = {
        "bootstrap_servers": [s.strip() for s in kafka.bootstrap.split(",") if s.strip()],
        "security_protocol": kafka.security_protocol,
    }
    if kafka.sasl_mechanism:
        cfg["sasl_mechanism"] = kafka.sasl_mechanism
        cfg["sasl_plain_username"] = kafka.sasl_username
        cfg["sasl_plain_password"] = kafka.sasl_password
    for key in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
        value = getattr(kafka, key)
        if value is not None:
            cfg[key] = str(value)
    return cfg


class _ConnectionErrors(logging.Handler):
    """Why kafka-python lost its connections, from what it logged: it retries a failed
    bootstrap until its timeout and then raises only "Unable to bootstrap", but it logs why
    each attempt failed (a rejected SASL login, a TLS error), or only that the broker closed
    the connection."""

    # "Connection lost: [Error 58] SaslAuthenticationFailedError: SaslAuthenticationFailedError:
    # Authentication failed: Invalid username or password"
    PATTERN = re.compile(r"\[Error -?\d+\] (\w+): (?:\1: )?(.+?)\)?$")

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reason: str | None = None
        self.disconnected = False  # the broker closed a connection (no reason given)

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        found = self.PATTERN.search(message)
        if found is None:
            if "socket disconnected" in message:
                self.disconnected = True
            return
        # the first reason, unless a later one is an authentication failure (the root cause
        # when an earlier attempt only saw the socket close)
        if self.reason is None or "Authentication" in found.group(1):
            self.reason = f"{found.group(1)}: {found.group(2)}"


@contextmanager
def explained(kafka: KafkaSettings) -> Iterator[None]:
    """Re-raise a Kafka client error with the reason the connection failed, when the client
    only logged it: a wrong SASL password is otherwise a 30 s wait and "Unable to
    bootstrap". The message names the settings to check."""
    handler = _ConnectionErrors()
    logger = logging.getLogger("kafka")
    logger.addHandler(handler)
    try:
        yield
    except KafkaError as exc:
        reason = handler.reason
        credentials = (f"security_protocol {kafka.security_protocol}, mechanism "
                       f"{kafka.sasl_mechanism}, user {kafka.sasl_username!r}: check "
                       "kafka.sasl_username and kafka.sasl_password")
        sasl = kafka.security_protocol.startswith("SASL")
        if reason is None and handler.disconnected and sasl:
            # kafka-python, on a loaded machine, can see the close of a connection whose
            # SASL login the broker rejected before it reads the broker's reason
            raise KafkaConnectionError(
                f"{exc}; the broker closed every connection, which is "
                f"how a rejected SASL authentication can look ({credentials})") from exc
        if reason is None or reason in str(exc):
            raise
        hint = ""
        if "Authentication" in reason:
            hint = f" ({credentials})"
        elif sasl and "TimedOut" in reason:
            # the broker answers a rejected login only after
            # connection.failed.authentication.delay.ms (100 ms by default), which a
            # client short of time can give up on first
            hint = (" (a broker that rejects a SASL authentication answers late, so this "
                    f"can be a wrong login: {credentials})")
        raise KafkaConnectionError(f"{reason}{hint}") from exc
    finally:
        logger.removeHandler(handler)


def topic_name(kafka: KafkaSettings, name: str) -> str:
    """The real topic for a logical name (``raw``, ``incidents`` ...); other names as given.

    >>> topic_name(KafkaSettings(), "incidents"), topic_name(KafkaSettings(), "my.topic")
    ('incidents', 'my.topic')
    """
    return kafka.topics.get(name, name)


@dataclass(frozen=True, slots=True)
class TopicReport:
    """What ``create_topics`` did for one topic."""

    logical: str
    name: str
    status: str  # created | exists
    partitions: int
    note: str = ""


def create_topics(
    kafka: KafkaSettings,
    *,
    partitions: int | None = None,
    replication: int | None = None,
    retention: float | None = None,
    names: Iterable[str] = LOGICAL_TOPICS,
    timeout: float = 30.0,
) -> list[TopicReport]:
    """Create the topics that do not exist yet; report the ones that do.

    ``partitions``, ``replication`` and ``retention`` (seconds) default to ``kafka``'s.
    """
    parts = partitions or kafka.partitions
    repl = replication or kafka.replication
    keep_ms = int(1000 * (retention if retention is not None else kafka.retention))
    wanted = {topic_name(kafka, n): n for n in names}
    admin = KafkaAdminClient(**client_config(kafka), client_id="triage-topics",
                             request_timeout_ms=int(timeout * 1000))
    try:
        existing = set(admin.list_topics())
        reports: list[TopicReport] = []
        for name, logical in wanted.items():
            if name in existing:
                reports.append(_existing(admin, logical, name, parts))
                continue
            topic = NewTopic(name, parts, repl, topic_configs={
                "retention.ms": str(keep_ms), "cleanup.policy": "delete"})
            try:
                admin.create_topics([topic], timeout_ms=int(timeout * 1000))
            except TopicAlreadyExistsError:  # another process created it meanwhile
                reports.append(_existing(admin, logical, name, parts))
                continue
            reports.append(TopicReport(logical, name, "created", parts))
        _wait_for_leaders(admin, [r.name for r in reports], timeout)
        return reports
    finally:
        admin.close()


def changelog_topic(app_id: str, table: str) -> str:
    """The changelog topic faust gives ``table`` of app ``app_id``.

    >>> changelog_topic("triage", "intake-state")
    'triage-intake-state-changelog'
    """
    return f"{app_id}-{table}-changelog"


def create_changelogs(kafka: KafkaSettings, wanted: dict[str, int],
                      timeout: float = 30.0) -> None:
    """Create the state tables' changelog topics (real name -> partitions) that do not exist
    yet, compacted as faust makes them, and wait for their leaders."""
    admin = KafkaAdminClient(**client_config(kafka), client_id="triage-topics",
                             request_timeout_ms=int(timeout * 1000))
    try:
        existing = set(admin.list_topics())
        for name, count in wanted.items():
            if name in existing:
                continue
            # a worker starting beside this one may have made it meanwhile
            with suppress(TopicAlreadyExistsError):
                admin.create_topics([NewTopic(name, count, kafka.replication, topic_configs={
                    "cleanup.policy": "compact"})], timeout_ms=int(timeout * 1000))
        _wait_for_leaders(admin, list(wanted), timeout)
    finally:
        admin.close()


def _existing(admin: KafkaAdminClient, logical: str, name: str, wanted: int) -> TopicReport:
    described = admin.describe_topics([name])
    have = len(described[0].get("partitions") or []) if described else 0
    note = f"has {have} partitions ({wanted} configured); the worker follows the topic" \
        if have and have != wanted else ""
    return TopicReport(logical, name, "exists", have, note)


def _wait_for_leaders(admin: KafkaAdminClient, names: list[str], timeout: float) -> None:
    # A topic just created answers "leader not available" for a moment; clients that start
    # right after (tests, a worker) should not see that.
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        described = admin.describe_topics(names)
        if all(t.get("partitions") and all(p.get("leader_id", -1) >= 0 for p in t["partitions"])
               for t in described):
            return
        time.sleep(0.1)


def delete_topics(kafka: KafkaSettings, names: Iterable[str], timeout: float = 30.0) -> None:
    """Delete topics (real names) that exist; for tests and resets."""
    admin = KafkaAdminClient(**client_config(kafka), client_id="triage-topics")
    try:
        present = set(admin.list_topics())
        doomed = [n for n in names if n in present]
        if doomed:
            admin.delete_topics(doomed, timeout_ms=int(timeout * 1000))
    finally:
        admin.close()


def produce_lines(
    kafka: KafkaSettings,
    topic: str,
    lines: Iterable[bytes],
    *,
    key: str | None = None,
    key_field: str | None = None,
    key_of: Callable[[bytes], bytes | None] | None = None,
) -> int:
    """Send each non-empty line as one message, its bytes unchanged; returns the count.

    ``key`` keys every message; ``key_field`` keys each by that top-level field of the
    line's JSON (lines that are not JSON objects or lack it go unkeyed); else ``key_of``
    computes each line's key.
    """
    producer = KafkaProducer(**client_config(kafka), acks="all", linger_ms=5,
                             client_id="triage-produce")
    sent = 0
    try:
        fixed = key.encode() if key is not None else None
        for line in lines:
            value = line.rstrip(b"\r\n")
            if not value.strip():
                continue
            if key_field is not None:
                line_key = _field_key(value, key_field)
            elif fixed is None and key_of is not None:
                line_key = key_of(value)
            else:
                line_key = fixed
            producer.send(topic, value=value, key=line_key)
            sent += 1
        producer.flush()
    finally:
        producer.close()
    return sent


def _field_key(value: bytes, field: str) -> bytes | None:
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    found = obj.get(field) if isinstance(obj, dict) else None
    return None if found is None else str(found).encode()


@dataclass(frozen=True, slots=True)
class Record:
    """One consumed message."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    timestamp_ms: int


def consume_records(
    kafka: KafkaSettings,
    topic: str,
    *,
    max_records: int | None = None,
    timeout: float = 5.0,
) -> Iterator[Record]:
    """Every message of ``topic`` from the beginning (no consumer group, nothing committed),
    until ``max_records`` or until nothing arrives for ``timeout`` seconds."""
    consumer = KafkaConsumer(**client_config(kafka), group_id=None, enable_auto_commit=False,
                             auto_offset_reset="earliest", client_id="triage-consume")
    try:
        parts = _partitions(consumer, topic, timeout)
        if not parts:
            return
        consumer.assign(parts)
        consumer.seek_to_beginning(*parts)
        count = 0
        idle_since = time.monotonic()
        while max_records is None or count < max_records:
            batch = consumer.poll(timeout_ms=200)
            if not batch:
                if time.monotonic() - idle_since >= timeout:
                    return
                continue
            idle_since = time.monotonic()
            for msgs in batch.values():
                for m in msgs:
                    yield Record(m.partition, m.offset, m.key, m.value, m.timestamp)
                    count += 1
                    if max_records is not None and count >= max_records:
                        return
    finally:
        consumer.close()


def _partitions(consumer: KafkaConsumer, topic: str, timeout: float) -> list[TopicPartition]:
    deadline = time.monotonic() + timeout
    while True:
        found = consumer.partitions_for_topic(topic)
        if found:
            return [TopicPartition(topic, p) for p in sorted(found)]
        if time.monotonic() >= deadline:
            return []
        time.sleep(0.2)


def write_records(records: Iterable[Record], out: IO[bytes], *, meta: bool = False,
                  on_record: Callable[[Record], None] | None = None) -> int:
    """Write values as JSON Lines (with ``meta``: partition, offset, key, value)."""
    n = 0
    for r in records:
        if meta:
            value: Any = None
            if r.value is not None:
                try:
                    value = orjson.loads(r.value)
                except orjson.JSONDecodeError:
                    value = r.value.decode("utf-8", "backslashreplace")
            out.write(orjson.dumps({
                "partition": r.partition, "offset": r.offset,
                "key": r.key.decode("utf-8", "backslashreplace") if r.key is not None else None,
                "timestamp_ms": r.timestamp_ms, "value": value}) + b"\n")
        else:
            out.write((r.value or b"") + b"\n")
        n += 1
        if on_record is not None:
            on_record(r)
    out.flush()
    return n
