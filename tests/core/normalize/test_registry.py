from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from triage.core import normalize as registry
from triage.core.normalize import alertmanager, cloudwatch, generic, grafana, pagerduty
from triage.core.types import Alert
from triage.errors import UnknownFormatError

Load = Callable[[str], Any]

FORMATS = [
    ("alertmanager-webhook-prometheus-msteams.json", alertmanager.WEBHOOK),
    ("grafana-webhook-docs-example.json", grafana.SOURCE),
    ("alertmanager-api-v2-postable.json", alertmanager.API_V2),
    ("prometheus-api-v1-alerts.json", alertmanager.PROMETHEUS_V1),
    ("pagerduty-trigger.json", pagerduty.SOURCE),
    ("pagerduty-acknowledge.json", pagerduty.SOURCE),
    ("pagerduty-resolve.json", pagerduty.SOURCE),
    ("cloudwatch-sns-alarm.json", cloudwatch.SOURCE),
    ("cloudwatch-sns-ok.json", cloudwatch.SOURCE),
    ("cloudwatch-sns-subscription-confirmation.json", cloudwatch.SOURCE),
    ("generic-single.json", generic.SOURCE),
    ("generic-array.json", generic.SOURCE),
]


@pytest.mark.parametrize(("name", "source"), FORMATS)
def test_each_payload_is_detected_as_its_format(payload: Load, name: str, source: str) -> None:
    body = payload(name)
    assert registry.detect(body).name == source
    claimed = [n.name for n in registry.REGISTRY if n.detect(body)]
    # the more general Alertmanager API v2 list shape must not also claim generic arrays etc.
    assert claimed[0] == source


@pytest.mark.parametrize(("name", "source"), [f for f in FORMATS if "subscription" not in f[0]])
def test_normalize_yields_alerts_tagged_with_their_source(
    payload: Load, name: str, source: str
) -> None:
    items = registry.normalize(payload(name))
    assert items
    assert all(isinstance(item, Alert) and item.source == source for item in items)


def test_generic_array_with_labels_is_not_taken_for_alertmanager() -> None:
    body = [{"alertname": "DiskFull", "labels": {"team": "db"}}]
    assert registry.detect(body).name == generic.SOURCE
    [alert] = registry.normalize(body)
    assert isinstance(alert, Alert) and alert.labels == {"team": "db", "alertname": "DiskFull"}


def test_every_normalizer_is_registered_once() -> None:
    names = [n.name for n in registry.REGISTRY]
    assert len(names) == len(set(names)) == 7
    assert set(registry.BY_NAME) == set(names)


@pytest.mark.parametrize(
    "body",
    [None, 3, "alert", True, [], {}, [1, 2], [{"foo": 1}], {"alerts": []},
     {"status": "success", "data": []}, {"Type": "Notification"}],
)
def test_unknown_shapes_raise_unknown_format(body: Any) -> None:
    with pytest.raises(UnknownFormatError) as info:
        registry.normalize(body)
    assert "no normalizer recognises" in info.value.message
    assert info.value.field == ""


def test_identifying_labels_are_exported_for_sources_without_labels() -> None:
    assert pagerduty.IDENTIFYING_LABELS == ("dedup_key",)
    assert cloudwatch.IDENTIFYING_LABELS == ("alertname", "account", "region")
