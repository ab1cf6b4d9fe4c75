"""The Prometheus family: Alertmanager webhook v4, Alertmanager API v2 alert lists and the
Prometheus ``/api/v1/alerts`` response. Labels pass through unchanged, so fingerprints match
the ones Alertmanager computes."""

from __future__ import annotations

from typing import Any, Final

from triage.core.normalize._common import (
    failed,
    number,
    optional_str,
    require_list,
    require_object,
    string_map,
    timestamp,
)
from triage.core.types import Alert, Failed, Status
from triage.errors import InputError, SchemaError

WEBHOOK: Final = "alertmanager-webhook"
API_V2: Final = "alertmanager-api-v2"
PROMETHEUS_V1: Final = "prometheus-api-v1"

STATUS_MAP: Final[dict[str, Status]] = {
    "firing": "firing",
    "resolved": "resolved",
    # Prometheus rule states (/api/v1/alerts)
    "pending": "pending",
    "inactive": "resolved",
    # Alertmanager API v2 GettableAlert status.state
    "active": "firing",
    "suppressed": "firing",
    "unprocessed": "firing",
}


def detect_webhook(payload: object) -> bool:
    """Alertmanager's webhook body: ``version: "4"``, a ``groupKey`` and ``alerts``."""
    return (
        isinstance(payload, dict)
        and payload.get("version") == "4"
        and "alerts" in payload
        and "groupKey" in payload
        and "orgId" not in payload  # Grafana's webhook imitates this shape
    )


def detect_api_v2(payload: object) -> bool:
    """A JSON array of alerts that carry ``labels`` (what Prometheus POSTs to Alertmanager)."""
    return (
        isinstance(payload, list)
        and bool(payload)
        and isinstance(payload[0], dict)
        and "labels" in payload[0]
        and "alertname" not in payload[0]  # a generic alert array that also carries labels
    )


def detect_prometheus_v1(payload: object) -> bool:
    """``{"status": "success", "data": {"alerts": [...]}}`` from Prometheus."""
    if not isinstance(payload, dict) or "status" not in payload:
        return False
    data = payload.get("data")
    return isinstance(data, dict) and "alerts" in data


def _alert(
    raw: Any, field: str, source: str, *, default_status: str, value: float | None = None
) -> Alert:
    obj = require_object(raw, field)
    labels = string_map(obj.get("labels"), f"{field}.labels", required=True)
    annotations = string_map(obj.get("annotations"), f"{field}.annotations", required=False)
    if isinstance(obj.get("status"), dict):  # GettableAlert: {"state": "active", ...}
        obj = dict(obj, status=obj["status"].get("state"))
        field_status = f"{field}.status.state"
    else:
        field_status = f"{field}.status"
    status_text = optional_str(obj, "status", field_status, default_status)
    status = STATUS_MAP.get(status_text)
    if status is None:
        raise SchemaError(field_status, f"unknown status {status_text[:64]!r}")
    starts_at = timestamp(obj, "startsAt", f"{field}.startsAt", required=False)
    ends_at = timestamp(obj, "endsAt", f"{field}.endsAt", required=False)
    updated_at = timestamp(obj, "updatedAt", f"{field}.updatedAt", required=False)
    if starts_at is None:
        if status == "resolved" and ends_at is not None:
            starts_at = ends_at
        elif updated_at is not None:
            starts_at = updated_at
        elif source == "alertmanager-api-v2":
            # optional in API v2 (Alertmanager takes "now"): 0 is "no time given", which
            # the pipeline turns into the receive time
            starts_at = 0.0
        else:
            raise SchemaError(f"{field}.startsAt", "missing")
    at = starts_at
    if updated_at is not None and updated_at > at:
        at = updated_at
    if status == "resolved" and ends_at is not None and ends_at > at:
        at = ends_at
    if value is None:
        value = number(annotations.get("value"))
    fingerprint = obj.get("fingerprint")
    return Alert(
        labels=labels,
        annotations=annotations,
        status=status,
        starts_at=starts_at,
        ends_at=ends_at,
        at=at,
        source=source,
        value=value,
        generator_url=optional_str(obj, "generatorURL", f"{field}.generatorURL"),
        source_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
    )


def _each(items: list[Any], prefix: str, source: str, **kw: Any) -> list[Alert | Failed]:
    out: list[Alert | Failed] = []
    for i, raw in enumerate(items):
        try:
            out.append(_alert(raw, f"{prefix}[{i}]", source, **kw))
        except InputError as exc:
            out.append(failed(exc, raw, source))
    return out


def normalize_webhook(payload: Any) -> list[Alert | Failed]:
    """Alertmanager webhook v4: one alert per element of ``alerts``; a missing per-alert
    ``status`` falls back to the group's."""
    alerts = require_list(payload.get("alerts"), "alerts")
    group_status = optional_str(payload, "status", "status", "firing")
    return _each(alerts, "alerts", WEBHOOK, default_status=group_status)


def normalize_api_v2(payload: Any) -> list[Alert | Failed]:
    """Alertmanager API v2 ``postableAlerts``: status comes from ``endsAt`` (resolved once it
    has passed, which the pipeline decides against its clock)."""
    return _each(payload, "", API_V2, default_status="firing")


def normalize_prometheus_v1(payload: Any) -> list[Alert | Failed]:
    """Prometheus ``/api/v1/alerts``: ``state`` firing/pending/inactive, ``activeAt`` is the
    start, ``value`` the sample that fired the rule."""
    alerts = require_list(payload["data"].get("alerts"), "data.alerts")
    out: list[Alert | Failed] = []
    for i, raw in enumerate(alerts):
        field = f"data.alerts[{i}]"
        try:
            obj = require_object(raw, field)
            state = optional_str(obj, "state", f"{field}.state", "firing")
            shaped = dict(obj, status=state, startsAt=obj.get("activeAt"))
            out.append(_alert(shaped, field, PROMETHEUS_V1, default_status="firing",
                              value=number(obj.get("value"))))
        except InputError as exc:
            out.append(failed(exc, raw, PROMETHEUS_V1))
    return out
