"""Vendor normalizers, auto-detected per payload.

Each normalizer is a pure mapping from one vendor format to core ``Alert`` objects, with
lookup tables for status and severity, registered here by name. Detection tries them in
``REGISTRY`` order and takes the first that claims the payload; more specific shapes come
before more general ones (Grafana's webhook imitates Alertmanager's, so it goes first).

>>> [a.labels["alertname"] for a in normalize({"alertname": "DiskFull", "service": "db"})]
['DiskFull']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from triage.core.normalize import alertmanager, cloudwatch, generic, grafana, pagerduty
from triage.core.types import Alert, Failed
from triage.errors import UnknownFormatError


@dataclass(frozen=True, slots=True)
class Normalizer:
    """A named vendor format: ``detect(payload)`` claims it, ``normalize(payload)`` maps it."""

    name: str
    detect: Callable[[Any], bool]
    normalize: Callable[[Any], list[Alert | Failed]]
    description: str


REGISTRY: tuple[Normalizer, ...] = (
    Normalizer(grafana.SOURCE, grafana.detect, grafana.normalize,
               "Grafana unified-alerting webhook"),
    Normalizer(alertmanager.WEBHOOK, alertmanager.detect_webhook, alertmanager.normalize_webhook,
               "Alertmanager webhook v4 (what Alertmanager POSTs to a receiver)"),
    Normalizer(alertmanager.PROMETHEUS_V1, alertmanager.detect_prometheus_v1,
               alertmanager.normalize_prometheus_v1, "Prometheus /api/v1/alerts response"),
    Normalizer(pagerduty.SOURCE, pagerduty.detect, pagerduty.normalize,
               "PagerDuty Events API v2 event"),
    Normalizer(cloudwatch.SOURCE, cloudwatch.detect, cloudwatch.normalize,
               "AWS CloudWatch alarm delivered through SNS"),
    Normalizer(alertmanager.API_V2, alertmanager.detect_api_v2, alertmanager.normalize_api_v2,
               "Alertmanager API v2 alert list (what Prometheus POSTs to Alertmanager)"),
    Normalizer(generic.SOURCE, generic.detect, generic.normalize,
               "triage generic JSON alert, or an array of them (schemas/alert.schema.json)"),
)

BY_NAME = {n.name: n for n in REGISTRY}


def detect(payload: Any) -> Normalizer:
    """The normalizer that claims ``payload``, or ``UnknownFormatError``."""
    for normalizer in REGISTRY:
        if normalizer.detect(payload):
            return normalizer
    raise UnknownFormatError("", f"no normalizer recognises this payload ({_shape(payload)}); "
                                 f"supported: {', '.join(BY_NAME)}")


def normalize(payload: Any) -> list[Alert | Failed]:
    """Detect the format of a decoded payload and map it to alerts (and per-alert failures).

    Raises ``InputError`` when the payload as a whole cannot be used.
    """
    return detect(payload).normalize(payload)


def _shape(payload: Any) -> str:
    if isinstance(payload, dict):
        keys = ", ".join(sorted(map(str, payload))[:8])
        return f"an object with keys {keys}" if keys else "an empty object"
    if isinstance(payload, list):
        return f"an array of {len(payload)}" if payload else "an empty array"
    return f"a JSON {type(payload).__name__}"
