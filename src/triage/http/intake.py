"""What both receiver modes share: the envelope, the checks at the door, and the answer a
backend gives (``Accepted`` or ``Rejected``, errors as values).

The envelope records when the server received a body; the body is embedded byte for byte, so
a dead letter or a replay of ``alerts.raw`` sees exactly what the sender sent::

    {"received_at": "2026-11-27T10:02:11.042Z", "payload": <the body>}
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from triage.core import normalize as normalizers
from triage.core.changes import is_change_record
from triage.core.silences import is_silence_object
from triage.core.timeutil import format_timestamp
from triage.errors import InputError
from triage.models.feedback import Feedback


@dataclass(frozen=True, slots=True)
class Accepted:
    """A body taken in. Embedded mode knows the stage-1 counts; Kafka mode only that the
    broker has it (``queued``)."""

    queued: bool = False
    alerts: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    events: int = 0
    # per-alert failures inside an otherwise good payload (dead-lettered), first few
    errors: list[dict[str, Any]] = field(default_factory=list)
    # what happened to each alert, in input order (embedded): index, fingerprint, outcome
    # (accepted, deduplicated, suppressed, refused) and the reason when there is one
    results: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A body refused: ``status`` is the HTTP status, ``error`` a short class name
    (``DecodeError``, ``UnknownFormatError``, ``PayloadTooLarge``, ``KafkaUnavailable`` ...),
    ``field`` a path into the payload when known. ``retry_after`` in seconds, for 503."""

    status: int
    error: str
    message: str
    field: str | None = None
    retry_after: float | None = None


class Backend(Protocol):
    """Where accepted bodies go: the in-process pipeline, or Kafka."""

    mode: str

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def ready(self) -> bool: ...

    async def accept(self, body: bytes, *, received_at: float) -> Accepted | Rejected: ...

    async def accept_feedback(self, records: list[Any], feedback: list[Feedback]
                              ) -> Accepted | Rejected:
        """Take validated feedback (``records`` as sent, ``feedback`` as validated)."""
        ...

    async def dead_letter(self, raw: bytes, error: str, reason: str) -> None:
        """Keep a body refused at the door (too large) with the reason, for the operators:
        nothing sent is dropped without a trace."""
        ...


def envelope(body: bytes, received_at: float) -> bytes:
    """Wrap a body that is valid JSON in an envelope, keeping its bytes.

    >>> envelope(b'{"alertname": "Up"}', 0.0)
    b'{"received_at":"1970-01-01T00:00:00.000Z","payload":{"alertname": "Up"}}'
    """
    stamp = format_timestamp(received_at) or ""
    return b'{"received_at":"' + stamp.encode() + b'","payload":' + body.strip() + b"}"


def check_format(payload: Any) -> InputError | None:
    """Whether the pipeline will recognise ``payload``: an alert format it detects, an
    Alertmanager silence or a change record (the same dispatch as ``Pipeline.process``).

    >>> check_format({"alertname": "Up"}) is None
    True
    >>> type(check_format({"hello": 1})).__name__
    'UnknownFormatError'
    """
    if is_silence_object(payload):
        return None
    if is_change_record(payload):
        return None
    try:
        normalizers.detect(payload)
    except InputError as exc:
        return exc
    return None


MAX_DEAD_LETTER_BYTES = 1 << 20  # of an oversize body, the first this many are kept


def too_large(size: int, limit: int, key: str) -> Rejected:
    """The 413 answer for a body of ``size`` bytes over ``limit`` (set by config ``key``)."""
    return Rejected(413, "PayloadTooLarge",
                    f"body of {size} bytes is over the limit of {limit} bytes ({key})")
