from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from triage.core.normalize import alertmanager
from triage.core.timeutil import parse_timestamp
from triage.core.types import Alert, Failed

Load = Callable[[str], Any]


def alerts_of(items: list[Alert | Failed]) -> list[Alert]:
    assert all(isinstance(item, Alert) for item in items), items
    return [item for item in items if isinstance(item, Alert)]


def test_real_webhook_is_detected_and_mapped(payload: Load) -> None:
    body = payload("alertmanager-webhook-prometheus-msteams.json")
    assert alertmanager.detect_webhook(body)

    [alert] = alerts_of(alertmanager.normalize_webhook(body))

    assert alert.labels == {
        "alertname": "high_memory_load",
        "instance": "instance-with-hyphen_and_underscore",
        "job": "docker_nodes",
        "monitor": "master",
        "severity": "warning",
    }
    assert alert.status == "firing"
    assert alert.source == alertmanager.WEBHOOK
    # 2018-03-07T06:33:21.873077559-05:00 == 11:33:21.873077 UTC (nanoseconds truncated)
    assert alert.starts_at == pytest.approx(1520422401.873077)
    assert alert.at == alert.starts_at
    assert alert.ends_at is None  # Go's zero time means "no end yet"
    assert alert.annotations["summary"] == "Server High Memory usage"
    assert alert.value is None


def test_webhook_resolved_alert_uses_ends_at(payload: Load) -> None:
    body = payload("alertmanager-webhook-prometheus-msteams.json")
    body["status"] = "resolved"
    body["alerts"][0]["status"] = "resolved"
    body["alerts"][0]["endsAt"] = "2018-03-07T12:03:21Z"

    [alert] = alerts_of(alertmanager.normalize_webhook(body))

    assert alert.status == "resolved"
    assert alert.ends_at == parse_timestamp("2018-03-07T12:03:21Z")
    assert alert.at == alert.ends_at


def test_webhook_alert_without_status_takes_the_group_status(payload: Load) -> None:
    body = payload("alertmanager-webhook-prometheus-msteams.json")
    body["status"] = "resolved"
    body["alerts"][0].pop("status", None)
    [alert] = alerts_of(alertmanager.normalize_webhook(body))
    assert alert.status == "resolved"


def test_api_v2_postable_alerts(payload: Load) -> None:
    body = payload("alertmanager-api-v2-postable.json")
    assert alertmanager.detect_api_v2(body)

    crash, cpu = alerts_of(alertmanager.normalize_api_v2(body))

    assert crash.labels["pod"] == "checkoutservice-7d4b9c6f8-x2lqz"
    assert crash.status == "firing"  # the pipeline resolves it once endsAt has passed
    assert crash.starts_at == parse_timestamp("2024-05-14T10:02:00Z")
    assert crash.ends_at == parse_timestamp("2024-05-14T10:06:00Z")
    assert crash.generator_url.startswith("http://prometheus:9090/graph")
    assert crash.source == alertmanager.API_V2
    assert cpu.value == 93.5  # from the value annotation
    assert cpu.ends_at is None


def test_api_v2_gettable_alert_status_object(payload: Load) -> None:
    body = payload("alertmanager-api-v2-postable.json")
    body[0]["status"] = {"state": "suppressed", "silencedBy": ["abc"], "inhibitedBy": []}
    body[1]["status"] = {"state": "bogus"}

    ok, bad = alertmanager.normalize_api_v2(body)

    assert isinstance(ok, Alert) and ok.status == "firing"
    assert isinstance(bad, Failed) and bad.field == "[1].status.state"


def test_prometheus_v1_alerts(payload: Load) -> None:
    body = payload("prometheus-api-v1-alerts.json")
    assert alertmanager.detect_prometheus_v1(body)

    latency, down = alerts_of(alertmanager.normalize_prometheus_v1(body))

    assert latency.labels == {"alertname": "HighRequestLatency", "job": "frontend",
                              "severity": "critical"}
    assert latency.status == "firing"
    assert latency.value == 1.2
    assert latency.starts_at == pytest.approx(parse_timestamp("2018-07-04T18:27:12.606021Z"))
    assert down.status == "pending"
    assert down.value == 0.0
    assert down.source == alertmanager.PROMETHEUS_V1


@pytest.mark.parametrize(
    ("mutate", "field", "error"),
    [
        (lambda a: a.pop("labels"), "alerts[0].labels", "SchemaError"),
        (lambda a: a.update(labels={}), "alerts[0].labels", "SchemaError"),
        (lambda a: a.update(labels={"alertname": ["x"]}), "alerts[0].labels.alertname",
         "SchemaError"),
        (lambda a: a.update(startsAt="yesterday"), "alerts[0].startsAt", "TimestampError"),
        (lambda a: a.pop("startsAt"), "alerts[0].startsAt", "SchemaError"),
        (lambda a: a.update(status="exploded"), "alerts[0].status", "SchemaError"),
        (lambda a: a.update(annotations="text"), "alerts[0].annotations", "SchemaError"),
        (lambda a: a.update(generatorURL=5), "alerts[0].generatorURL", "SchemaError"),
    ],
)
def test_webhook_bad_alert_becomes_failed(
    payload: Load, mutate: Callable[[dict[str, Any]], object], field: str, error: str
) -> None:
    body = payload("alertmanager-webhook-prometheus-msteams.json")
    good = dict(body["alerts"][0])
    mutate(body["alerts"][0])
    body["alerts"].append(good)

    bad, ok = alertmanager.normalize_webhook(body)

    assert isinstance(bad, Failed)
    assert (bad.error, bad.field, bad.source) == (error, field, alertmanager.WEBHOOK)
    assert isinstance(ok, Alert)  # one bad alert does not sink its siblings


def test_non_object_alert_in_api_v2_list(payload: Load) -> None:
    body = payload("alertmanager-api-v2-postable.json")
    body.append("not an alert")
    *_, bad = alertmanager.normalize_api_v2(body)
    assert isinstance(bad, Failed)
    assert bad.field == "[2]"
    assert "not an alert" in bad.raw


def test_webhook_alerts_not_a_list_raises(payload: Load) -> None:
    from triage.errors import SchemaError

    body = payload("alertmanager-webhook-prometheus-msteams.json")
    body["alerts"] = {"oops": 1}
    with pytest.raises(SchemaError) as info:
        alertmanager.normalize_webhook(body)
    assert info.value.field == "alerts"


def test_api_v2_alert_without_starts_at_is_taken_with_no_time(payload: Load) -> None:
    """``startsAt`` is optional in API v2 (Alertmanager takes "now"): 0 marks "no time
    given", which the pipeline replaces by the receive time. Webhook alerts still need it
    (Alertmanager always sends it there): see test_webhook_bad_alert_becomes_failed."""
    body = payload("alertmanager-api-v2-postable.json")
    del body[1]["startsAt"]

    crash, cpu = alerts_of(alertmanager.normalize_api_v2(body))

    assert crash.starts_at == parse_timestamp("2024-05-14T10:02:00Z")
    assert (cpu.starts_at, cpu.at) == (0.0, 0.0)
