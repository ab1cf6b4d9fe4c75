"""PagerDuty Events API v2 alert events (what monitoring tools POST to ``/v2/enqueue``).

One event is one alert observation::

    {"routing_key": "...", "event_action": "trigger" | "acknowledge" | "resolve",
     "dedup_key": "...",
     "payload": {"summary", "source", "severity", "timestamp", "component", "group",
                 "class", "custom_details"},
     "client": "...", "client_url": "...", "links": [...], "images": [...]}

PagerDuty events have no labels, so the identifying fields are mapped to labels::

    alertname  payload.class, else payload.summary
    dedup_key  dedup_key (derived for a trigger without one, see ``derive_dedup_key``)
    instance   payload.source
    service    payload.component (if present)
    group      payload.group (if present)
    severity   payload.severity through SEVERITY_MAP

``acknowledge`` and ``resolve`` events carry only ``dedup_key``, so the identity of a
PagerDuty alert is the dedup key alone: the source's identifying labels default to
``IDENTIFYING_LABELS`` so that a resolve matches its trigger's fingerprint.

``routing_key`` is an integration secret: it is validated but never copied into labels or
annotations. ``payload.timestamp`` is optional in PagerDuty; without it ``starts_at`` and
``at`` are ``0.0`` ("no event time") and the pipeline's clock takes over (it uses
``max(watermark, alert.at)``), which is the normal case for acknowledge and resolve events.
"""

from __future__ import annotations

import hashlib
from typing import Any, Final

import orjson

from triage.core.normalize._common import (
    optional_str,
    require_object,
    require_str,
    timestamp,
)
from triage.core.types import Alert, Failed, Status
from triage.errors import SchemaError

SOURCE: Final = "pagerduty-events-v2"

# A resolve or acknowledge carries only the dedup key, so it alone identifies an alert.
IDENTIFYING_LABELS: Final = ("dedup_key",)

STATUS_MAP: Final[dict[str, Status]] = {
    "trigger": "firing",
    "acknowledge": "firing",  # still a problem, someone is on it: annotated acknowledged=true
    "resolve": "resolved",
}

SEVERITY_MAP: Final[dict[str, str]] = {
    "critical": "critical",
    "error": "error",
    "warning": "warning",
    "info": "info",
}

# The payload fields a derived dedup key is built from, in this order.
_DEDUP_FIELDS: Final = ("summary", "source", "component", "group", "class")


def detect(payload: object) -> bool:
    """An object with ``event_action`` (and usually ``routing_key``): a PagerDuty v2 event.

    >>> detect({"routing_key": "k", "event_action": "resolve", "dedup_key": "d"})
    True
    >>> detect({"alertname": "DiskFull"})
    False
    """
    return isinstance(payload, dict) and "event_action" in payload and (
        "routing_key" in payload or "payload" in payload or "dedup_key" in payload
    )


def derive_dedup_key(body: dict[str, Any]) -> str:
    """A deterministic dedup key for a trigger that has none.

    PagerDuty itself would assign a random UUID, making every such trigger a new alert;
    triage instead hashes (SHA-1) ``summary``, ``source``, ``component``, ``group`` and
    ``class`` so that repeats of the same event deduplicate. Senders whose summary carries a
    changing value ("CPU at 93%") should set ``dedup_key`` themselves.

    >>> derive_dedup_key({"summary": "Disk full", "source": "db-1"})
    'triage-c6749fb4a587692b'
    """
    parts = [body.get(name) if isinstance(body.get(name), str) else "" for name in _DEDUP_FIELDS]
    digest = hashlib.sha1(orjson.dumps(parts), usedforsecurity=False).hexdigest()
    return f"triage-{digest[:16]}"


def _details(value: object) -> dict[str, str]:
    """``custom_details`` flattened one level to strings (JSON text for non-strings)."""
    if value is None:
        return {}
    if isinstance(value, dict):
        return {
            str(key): item if isinstance(item, str) else orjson.dumps(item).decode()
            for key, item in value.items()
            if item is not None
        }
    return {"custom_details": value if isinstance(value, str) else orjson.dumps(value).decode()}


def normalize(payload: Any) -> list[Alert | Failed]:
    """Map one PagerDuty v2 event to one alert; a malformed event raises ``SchemaError``.

    >>> event = {"routing_key": "k", "event_action": "trigger", "dedup_key": "db-disk",
    ...          "payload": {"summary": "Disk full", "source": "db-1", "severity": "error",
    ...                      "timestamp": "2015-07-17T08:42:58.315+0000"}}
    >>> alert = normalize(event)[0]
    >>> alert.labels["dedup_key"], alert.labels["severity"], alert.status, alert.at
    ('db-disk', 'error', 'firing', 1437122578.315)
    """
    event = require_object(payload, "")
    require_str(event, "routing_key", "routing_key")
    action = require_str(event, "event_action", "event_action")
    status = STATUS_MAP.get(action)
    if status is None:
        raise SchemaError("event_action", f"expected trigger, acknowledge or resolve, got "
                                          f"{action[:64]!r}")
    dedup_key = optional_str(event, "dedup_key", "dedup_key")
    body_raw = event.get("payload")
    if action == "trigger":
        body = require_object(body_raw, "payload")
        summary = require_str(body, "summary", "payload.summary")
        require_str(body, "source", "payload.source")
        require_str(body, "severity", "payload.severity")
        dedup_key = dedup_key or derive_dedup_key(body)
    else:
        # acknowledge / resolve: only dedup_key is meaningful; a payload, if any, is optional
        body = require_object(body_raw, "payload") if body_raw is not None else {}
        summary = optional_str(body, "summary", "payload.summary")
        if not dedup_key:
            raise SchemaError("dedup_key", f"missing: an {action} event must name the alert "
                                           "it applies to")

    labels: dict[str, str] = {"dedup_key": dedup_key}
    alertname = optional_str(body, "class", "payload.class") or summary
    if alertname:
        labels["alertname"] = alertname
    for key, label in (("source", "instance"), ("component", "service"), ("group", "group")):
        text = optional_str(body, key, f"payload.{key}")
        if text:
            labels[label] = text
    severity_text = optional_str(body, "severity", "payload.severity")
    if severity_text:
        severity = SEVERITY_MAP.get(severity_text)
        if severity is None:
            raise SchemaError("payload.severity", "expected critical, error, warning or info, "
                                                  f"got {severity_text[:64]!r}")
        labels["severity"] = severity

    annotations = _details(body.get("custom_details"))
    if summary:
        annotations["summary"] = summary
    client = optional_str(event, "client", "client")
    if client:
        annotations["client"] = client
    links = event.get("links")
    if isinstance(links, list) and links:
        annotations["links"] = orjson.dumps(links).decode()
    if action == "acknowledge":
        annotations["acknowledged"] = "true"

    at = timestamp(body, "timestamp", "payload.timestamp", required=False)
    at = 0.0 if at is None else at
    return [
        Alert(
            labels=labels,
            annotations=annotations,
            status=status,
            starts_at=at,
            ends_at=at if status == "resolved" and at else None,
            at=at,
            source=SOURCE,
            generator_url=optional_str(event, "client_url", "client_url"),
            source_fingerprint=None,
        )
    ]

