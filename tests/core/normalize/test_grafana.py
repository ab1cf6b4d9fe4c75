from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from triage.core.normalize import grafana
from triage.core.timeutil import parse_timestamp
from triage.core.types import Alert, Failed
from triage.errors import SchemaError

Load = Callable[[str], Any]
REAL = "grafana-webhook-docs-example.json"


def test_real_payload_is_detected_and_mapped(payload: Load) -> None:
    body = payload(REAL)
    assert grafana.detect(body)

    memory, cpu = grafana.normalize(body)

    assert isinstance(memory, Alert) and isinstance(cpu, Alert)
    assert memory.labels == {"alertname": "High memory usage", "team": "blue", "zone": "us-1"}
    assert cpu.labels == {"alertname": "High CPU usage", "team": "blue", "zone": "eu-1"}
    assert memory.status == "firing"
    assert memory.source == grafana.SOURCE
    # 09:51:03.157076+02:00 == 07:51:03.157076 UTC
    assert memory.starts_at == pytest.approx(parse_timestamp("2021-10-12T07:51:03.157076Z"))
    assert memory.at == memory.starts_at
    assert memory.ends_at is None
    # values {"B": 44.239..., "C": 1}: the alphabetically-first refId is the measured value
    assert memory.value == pytest.approx(44.23943737541908)
    assert memory.source_fingerprint == "c6eadffa33fcdf37"
    assert memory.fingerprint == ""  # triage computes its own, later, from the labels
    assert memory.generator_url == "https://play.grafana.org/alerting/1afz29v7z/edit"
    assert memory.annotations["runbook_url"] == "https://myrunbook.com/runbook/1234"
    assert memory.annotations["silence_url"].startswith("https://play.grafana.org/alerting/")
    assert "dashboard_url" not in memory.annotations  # empty links are not kept


def test_value_annotation_wins_over_values(payload: Load) -> None:
    body = payload(REAL)
    body["alerts"][0]["annotations"]["value"] = "97.5"
    body["alerts"][1]["annotations"]["value"] = "n/a"
    body["alerts"][1]["values"] = {"A": None, "B": "x", "D": 3}

    memory, cpu = grafana.normalize(body)

    assert isinstance(memory, Alert) and memory.value == 97.5
    assert isinstance(cpu, Alert) and cpu.value == 3.0  # first refId holding a number


def test_resolved_alert(payload: Load) -> None:
    body = payload(REAL)
    body["status"] = "resolved"
    body["state"] = "ok"
    alert = body["alerts"][0]
    alert["status"] = "resolved"
    alert["endsAt"] = "2021-10-12T10:06:03+02:00"

    first, _ = grafana.normalize(body)

    assert isinstance(first, Alert)
    assert first.status == "resolved"
    assert first.ends_at == parse_timestamp("2021-10-12T08:06:03Z")
    assert first.at == first.ends_at


def test_alert_without_status_uses_notification_status(payload: Load) -> None:
    body = payload(REAL)
    body["status"] = "resolved"
    del body["alerts"][0]["status"]
    first, second = grafana.normalize(body)
    assert isinstance(first, Alert) and first.status == "resolved"
    assert isinstance(second, Alert) and second.status == "firing"


def test_not_alertmanager_webhook() -> None:
    from triage.core.normalize import alertmanager

    assert not grafana.detect({"version": "4", "groupKey": "{}", "alerts": []})
    assert not alertmanager.detect_webhook({"version": "4", "groupKey": "{}", "alerts": [],
                                            "orgId": 1})


@pytest.mark.parametrize(
    ("mutate", "field", "error"),
    [
        (lambda a: a.pop("labels"), "alerts[0].labels", "SchemaError"),
        (lambda a: a.update(labels=["alertname"]), "alerts[0].labels", "SchemaError"),
        (lambda a: a.update(status="pending"), "alerts[0].status", "SchemaError"),
        (lambda a: a.update(startsAt="12/10/2021"), "alerts[0].startsAt", "TimestampError"),
        (lambda a: a.update(endsAt=True), "alerts[0].endsAt", "TimestampError"),
        (lambda a: a.update(values=[1, 2]), "alerts[0].values", "SchemaError"),
        (lambda a: a.update(dashboardURL=7), "alerts[0].dashboardURL", "SchemaError"),
    ],
)
def test_bad_alert_becomes_failed(
    payload: Load, mutate: Callable[[dict[str, Any]], object], field: str, error: str
) -> None:
    body = payload(REAL)
    mutate(body["alerts"][0])

    bad, ok = grafana.normalize(body)

    assert isinstance(bad, Failed)
    assert (bad.error, bad.field, bad.source) == (error, field, grafana.SOURCE)
    assert isinstance(ok, Alert)


def test_alerts_must_be_a_list(payload: Load) -> None:
    body = payload(REAL)
    body["alerts"] = None
    with pytest.raises(SchemaError) as info:
        grafana.normalize(body)
    assert info.value.field == "alerts"
