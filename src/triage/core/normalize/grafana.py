"""Grafana unified-alerting webhook (contact point type "webhook", payload ``version: "1"``).

The body imitates Alertmanager's webhook (``alerts``, ``groupKey``, ``commonLabels`` ...) and
adds ``orgId``, ``state``, ``title`` and, per alert, ``values``, ``fingerprint`` and links to
the silence, dashboard and panel. Labels pass through unchanged, so triage's fingerprint is
computed over the same label set Grafana's Alertmanager uses; Grafana's own ``fingerprint``
is kept as ``source_fingerprint`` for reference only.
"""

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

SOURCE: Final = "grafana-webhook"

STATUS_MAP: Final[dict[str, Status]] = {
    "firing": "firing",
    "resolved": "resolved",
}

# Per-alert links Grafana adds; kept as annotations (when non-empty) so responders can click
# through. Annotations with the same name that the rule itself defines win.
LINK_ANNOTATIONS: Final = {
    "silenceURL": "silence_url",
    "dashboardURL": "dashboard_url",
    "panelURL": "panel_url",
}


def detect(payload: object) -> bool:
    """Grafana's webhook body: an object with ``orgId`` and ``alerts``.

    >>> detect({"orgId": 1, "alerts": [], "version": "1"})
    True
    >>> detect({"version": "4", "groupKey": "{}", "alerts": []})
    False
    """
    return isinstance(payload, dict) and "orgId" in payload and "alerts" in payload


def pick_value(annotations: dict[str, str], values: dict[str, Any]) -> float | None:
    """The alert's value: the ``value`` annotation if it is numeric, else a query's result.

    Grafana reports every query and expression of the rule in ``values`` keyed by refId
    (``{"B": 44.2, "C": 1}``), without saying which is "the" value. The heuristic: take the
    alphabetically-first refId that holds a number. Rules are usually built as query ``A``,
    reduce ``B``, threshold ``C``, so this picks the measured value rather than the 0/1
    threshold result. A rule author who wants a specific value can template it into a
    ``value`` annotation, which always wins.

    >>> pick_value({}, {"C": 1, "B": 44.5})
    44.5
    >>> pick_value({"value": "3"}, {"B": 44.5})
    3.0
    """
    annotated = number(annotations.get("value"))
    if annotated is not None:
        return annotated
    for ref_id in sorted(values):
        candidate = values[ref_id]
        if isinstance(candidate, int | float) and not isinstance(candidate, bool):
            return float(candidate)
    return None


def _alert(raw: Any, field: str, *, default_status: str) -> Alert:
    obj = require_object(raw, field)
    labels = string_map(obj.get("labels"), f"{field}.labels", required=True)
    annotations = string_map(obj.get("annotations"), f"{field}.annotations", required=False)
    status_text = optional_str(obj, "status", f"{field}.status", default_status)
    status = STATUS_MAP.get(status_text)
    if status is None:
        raise SchemaError(f"{field}.status", f"unknown status {status_text!r}")
    starts_at = timestamp(obj, "startsAt", f"{field}.startsAt", required=False)
    ends_at = timestamp(obj, "endsAt", f"{field}.endsAt", required=False)
    if starts_at is None:
        if status == "resolved" and ends_at is not None:
            starts_at = ends_at
        else:
            raise SchemaError(f"{field}.startsAt", "missing")
    at = starts_at
    if status == "resolved" and ends_at is not None and ends_at > at:
        at = ends_at
    values = obj.get("values")
    if values is None:
        values = {}
    elif not isinstance(values, dict):
        raise SchemaError(f"{field}.values", "expected an object of refId to number")
    for key, annotation in LINK_ANNOTATIONS.items():
        link = optional_str(obj, key, f"{field}.{key}")
        if link and annotation not in annotations:
            annotations[annotation] = link
    fingerprint = obj.get("fingerprint")
    return Alert(
        labels=labels,
        annotations=annotations,
        status=status,
        starts_at=starts_at,
        ends_at=ends_at,
        at=at,
        source=SOURCE,
        value=pick_value(annotations, values),
        generator_url=optional_str(obj, "generatorURL", f"{field}.generatorURL"),
        source_fingerprint=fingerprint if isinstance(fingerprint, str) else None,
    )


def normalize(payload: Any) -> list[Alert | Failed]:
    """One alert per element of ``alerts``; a missing per-alert ``status`` falls back to the
    notification's ``status``. A bad alert becomes a ``Failed`` item, the others still pass.

    >>> alert = {"labels": {"alertname": "Cpu"}, "startsAt": "2021-10-12T09:51:03Z",
    ...          "values": {"B": 91.5, "C": 1}}
    >>> [(a.status, a.value) for a in normalize({"orgId": 1, "alerts": [alert]})]
    [('firing', 91.5)]
    """
    alerts = require_list(payload.get("alerts"), "alerts")
    group_status = optional_str(payload, "status", "status", "firing")
    out: list[Alert | Failed] = []
    for i, raw in enumerate(alerts):
        try:
            out.append(_alert(raw, f"alerts[{i}]", default_status=group_status))
        except InputError as exc:
            out.append(failed(exc, raw, SOURCE))
    return out
