"""triage's generic JSON alert, for scripts and tools without a dedicated normalizer.

A payload is one object or a JSON array of them (published as ``schemas/alert.schema.json``)::

    {"alertname": "DiskFull",                      required, non-empty
     "status": "firing" | "resolved",              default firing
     "severity": "critical" | "error" | "warning" | "info" (or an alias in SEVERITY_MAP),
     "service": "db", "instance": "db-1",
     "labels": {"team": "storage"}, "annotations": {"runbook_url": "..."},
     "summary": "...", "description": "...", "value": 93.5,
     "starts_at" | "ends_at" | "at": RFC 3339 string or epoch seconds,
     "source": "cron-check", "fingerprint": "..."}

Top-level ``alertname``, ``severity``, ``service``, ``instance`` and ``source`` become labels
and win over the same keys in ``labels`` (they are the documented fields; ``labels`` is the
open-ended rest); likewise ``summary`` and ``description`` win over ``annotations``.
``source`` is a label only when given. ``fingerprint`` is kept as ``source_fingerprint``.
Unknown members are ignored.

Times: ``at`` defaults to the latest of ``starts_at`` and (when resolved) ``ends_at``;
``starts_at`` defaults to ``at``, else to ``ends_at`` when resolved. With no time at all,
``starts_at`` and ``at`` are ``0.0`` ("no event time") and the pipeline's clock takes over.

A single object that is malformed raises ``SchemaError``; in an array each bad element
becomes a ``Failed`` item (field ``[i].name``) and the others still pass.
"""

from __future__ import annotations

from typing import Any, Final

from triage.core.normalize._common import (
    JSONObject,
    failed,
    optional_str,
    require_object,
    require_str,
    string_map,
    timestamp,
)
from triage.core.types import Alert, Failed, Status
from triage.errors import InputError, SchemaError

SOURCE: Final = "generic"

STATUS_MAP: Final[dict[str, Status]] = {
    "firing": "firing",
    "resolved": "resolved",
}

SEVERITY_MAP: Final[dict[str, str]] = {
    "critical": "critical",
    "crit": "critical",
    "fatal": "critical",
    "error": "error",
    "err": "error",
    "high": "error",
    "warning": "warning",
    "warn": "warning",
    "medium": "warning",
    "info": "info",
    "informational": "info",
    "low": "info",
}

# Top-level members that become labels, in the order they are applied.
_LABEL_FIELDS: Final = ("alertname", "service", "instance", "source")


def detect(payload: object) -> bool:
    """An object with ``alertname``, or a non-empty array whose first element is one.

    >>> detect({"alertname": "DiskFull"}), detect([{"alertname": "DiskFull"}]), detect([])
    (True, True, False)
    """
    if isinstance(payload, list):
        return bool(payload) and isinstance(payload[0], dict) and "alertname" in payload[0]
    return isinstance(payload, dict) and "alertname" in payload


def _alert(raw: Any, prefix: str) -> Alert:
    obj: JSONObject = require_object(raw, prefix or "")

    def path(key: str) -> str:
        return f"{prefix}.{key}" if prefix else key

    labels = string_map(obj.get("labels"), path("labels"), required=False)
    labels["alertname"] = require_str(obj, "alertname", path("alertname"))
    for key in _LABEL_FIELDS[1:]:
        text = optional_str(obj, key, path(key))
        if text:
            labels[key] = text
    severity_text = optional_str(obj, "severity", path("severity"))
    if severity_text:
        severity = SEVERITY_MAP.get(severity_text)
        if severity is None:
            raise SchemaError(path("severity"), "expected critical, error, warning or info, "
                                                f"got {severity_text[:64]!r}")
        labels["severity"] = severity

    annotations = string_map(obj.get("annotations"), path("annotations"), required=False)
    for key in ("summary", "description"):
        text = optional_str(obj, key, path(key))
        if text:
            annotations[key] = text

    status_text = optional_str(obj, "status", path("status"), "firing")
    status = STATUS_MAP.get(status_text)
    if status is None:
        raise SchemaError(path("status"), f"expected firing or resolved, got {status_text[:64]!r}")

    value = obj.get("value")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise SchemaError(path("value"), "expected a number")

    starts_at = timestamp(obj, "starts_at", path("starts_at"), required=False)
    ends_at = timestamp(obj, "ends_at", path("ends_at"), required=False)
    at = timestamp(obj, "at", path("at"), required=False)
    if at is None:
        candidates = [t for t in (starts_at, ends_at if status == "resolved" else None)
                      if t is not None]
        at = max(candidates) if candidates else 0.0
    if starts_at is None:
        starts_at = ends_at if status == "resolved" and ends_at is not None else at

    fingerprint = obj.get("fingerprint")
    return Alert(
        labels=labels,
        annotations=annotations,
        status=status,
        starts_at=starts_at,
        ends_at=ends_at,
        at=at,
        source=SOURCE,
        value=None if value is None else float(value),
        source_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
    )


def normalize(payload: Any) -> list[Alert | Failed]:
    """Map one generic alert, or an array of them, to alerts.

    >>> [a.labels for a in normalize({"alertname": "DiskFull", "severity": "warn",
    ...                                "labels": {"severity": "page", "team": "db"}})]
    [{'severity': 'warning', 'team': 'db', 'alertname': 'DiskFull'}]
    """
    if not isinstance(payload, list):
        return [_alert(payload, "")]
    out: list[Alert | Failed] = []
    for i, raw in enumerate(payload):
        try:
            out.append(_alert(raw, f"[{i}]"))
        except InputError as exc:
            out.append(failed(exc, raw, SOURCE))
    return out
