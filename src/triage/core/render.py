"""Outcomes as JSON-ready dicts: the stage-1 output stream and the dead-letter records.

One object per line. Common members: ``schema_version`` (1), ``kind`` (``alert`` for a state
change, ``suppressed``, ``failed``), ``at`` (the pipeline clock when it was decided).
Deduplicated repeats are counted, not written.
"""

from __future__ import annotations

from typing import Any

from triage.core.timeutil import format_timestamp
from triage.core.types import Alert, Failed, Outcome, Suppressed, Triaged

SCHEMA_VERSION = 1


def _alert_fields(alert: Alert) -> dict[str, Any]:
    return {
        "fingerprint": alert.fingerprint,
        "status": alert.status,
        "labels": alert.labels,
        "annotations": alert.annotations,
        "starts_at": format_timestamp(alert.starts_at),
        "ends_at": format_timestamp(alert.ends_at),
        "source": alert.source,
        "value": alert.value,
        "generator_url": alert.generator_url or None,
        "source_fingerprint": alert.source_fingerprint,
    }


def render_outcome(outcome: Outcome, now: float, line: int | None = None) -> dict[str, Any] | None:
    """The output record for ``outcome``, or ``None`` for a deduplicated repeat.

    >>> from triage.core.types import Failed
    >>> render_outcome(Failed("DecodeError", "payload", "not JSON", "{oops"), 0.0)["reason"]
    'not JSON'
    """
    if isinstance(outcome, Triaged):
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "alert",
            "change": outcome.change,
            "at": format_timestamp(now),
            "occurrence": outcome.occurrence,
            "count": outcome.count,
            "first_seen": format_timestamp(outcome.first_seen),
            "last_seen": format_timestamp(outcome.last_seen),
            "flapping": outcome.flapping,
            "reason": outcome.reason or None,
            **_alert_fields(outcome.alert),
        }
    if isinstance(outcome, Suppressed):
        return {
            "schema_version": SCHEMA_VERSION,
            "kind": "suppressed",
            "reason": outcome.reason,
            "detail": outcome.detail,
            "by": outcome.by,
            "at": format_timestamp(now),
            "noise_score": outcome.noise_score,
            **_alert_fields(outcome.alert),
        }
    if isinstance(outcome, Failed):
        return render_failure(outcome, now, line)
    return None


def render_failure(failure: Failed, now: float, line: int | None = None) -> dict[str, Any]:
    """A dead-letter record: the error class, the field, the reason and the raw payload."""
    return {
        "schema_version": SCHEMA_VERSION,
        "kind": "failed",
        "error": failure.error,
        "field": failure.field or None,
        "reason": failure.reason,
        "source": failure.source,
        "line": line,
        "at": format_timestamp(now),
        "raw": failure.raw,
    }
