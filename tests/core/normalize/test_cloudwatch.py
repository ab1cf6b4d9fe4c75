from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from triage.core.normalize import cloudwatch
from triage.core.timeutil import parse_timestamp
from triage.core.types import Alert
from triage.errors import DecodeError, SchemaError, TimestampError

Load = Callable[[str], Any]
ALARM = "cloudwatch-sns-alarm.json"
OK = "cloudwatch-sns-ok.json"


def one(items: list[Any]) -> Alert:
    [alert] = items
    assert isinstance(alert, Alert)
    return alert


def with_message(body: dict[str, Any], change: Callable[[dict[str, Any]], object]) -> None:
    message = json.loads(body["Message"])
    change(message)
    body["Message"] = json.dumps(message)


def test_alarm_notification(payload: Load) -> None:
    body = payload(ALARM)
    assert cloudwatch.detect(body)

    alert = one(cloudwatch.normalize(body))

    assert alert.labels == {
        "alertname": "checkout-cpu-high",
        "account": "123456789012",
        "region": "eu-west-1",  # the code from AlarmArn, not the display name "EU (Ireland)"
        "namespace": "AWS/ECS",
        "metric_name": "CPUUtilization",
        "dimension_ServiceName": "checkoutservice",
        "dimension_ClusterName": "prod",
        "service": "checkoutservice",
    }
    assert alert.status == "firing"
    assert alert.source == cloudwatch.SOURCE
    assert alert.starts_at == parse_timestamp("2024-05-14T10:05:12.401Z")
    assert alert.at == parse_timestamp("2024-05-14T10:05:12.456Z")  # SNS publish time
    assert alert.ends_at is None
    assert alert.value == 92.4  # the most recent datapoint in NewStateReason
    assert alert.annotations["threshold"] == "80.0"
    assert alert.annotations["comparison_operator"] == "GreaterThanThreshold"
    assert alert.annotations["summary"] == 'ALARM: "checkout-cpu-high" in EU (Ireland)'
    assert alert.annotations["description"].startswith("CPU of the checkout ECS service")
    assert alert.annotations["state"] == "ALARM"
    assert "severity" not in alert.labels


def test_ok_notification_resolves_the_same_alarm(payload: Load) -> None:
    alarm = one(cloudwatch.normalize(payload(ALARM)))
    ok = one(cloudwatch.normalize(payload(OK)))

    assert ok.status == "resolved"
    assert ok.ends_at == parse_timestamp("2024-05-14T10:22:07.918Z")
    assert ok.at == parse_timestamp("2024-05-14T10:22:07.980Z")
    assert ok.value == 41.3
    identity = cloudwatch.IDENTIFYING_LABELS
    assert {k: ok.labels[k] for k in identity} == {k: alarm.labels[k] for k in identity}


def test_insufficient_data_fires_as_a_warning(payload: Load) -> None:
    body = payload(ALARM)
    with_message(body, lambda m: m.update(
        NewStateValue="INSUFFICIENT_DATA",
        NewStateReason="Insufficient Data: 3 datapoints were unknown.",
    ))
    alert = one(cloudwatch.normalize(body))
    assert alert.status == "firing"
    assert alert.labels["severity"] == "warning"
    assert "insufficient_data" in alert.annotations
    assert alert.value is None


def test_bare_alarm_object(payload: Load) -> None:
    message = json.loads(payload(ALARM)["Message"])
    assert cloudwatch.detect(message)
    alert = one(cloudwatch.normalize(message))
    assert alert.labels["alertname"] == "checkout-cpu-high"
    assert alert.at == alert.starts_at  # no envelope: the alarm's own time
    assert alert.annotations["summary"] == "checkout-cpu-high is ALARM"


def test_region_falls_back_to_display_name_and_reason_formats(payload: Load) -> None:
    body = payload(ALARM)
    with_message(body, lambda m: (
        m.pop("AlarmArn"),
        m.update(NewStateReason="Threshold Crossed: 1 datapoint (42.73) was greater than or "
                                "equal to the threshold (10.0)."),
    ))
    alert = one(cloudwatch.normalize(body))
    assert alert.labels["region"] == "EU (Ireland)"
    assert alert.value == 42.73


def test_metric_math_alarm_takes_the_first_metric_stat(payload: Load) -> None:
    body = payload(ALARM)

    def to_metric_math(m: dict[str, Any]) -> None:
        m["Trigger"] = {
            "Period": 900, "EvaluationPeriods": 2,
            "ComparisonOperator": "GreaterThanUpperThreshold", "ThresholdMetricId": "ad1",
            "Metrics": [
                {"Id": "m1", "ReturnData": True, "MetricStat": {
                    "Metric": {"Dimensions": [{"value": "app/lb-dev/699cf0a8", "name":
                                               "LoadBalancer"}],
                               "MetricName": "TargetResponseTime",
                               "Namespace": "AWS/ApplicationELB"},
                    "Period": 900, "Stat": "p90"}},
                {"Expression": "ANOMALY_DETECTION_BAND(m1, 2)", "Id": "ad1"},
            ],
        }

    with_message(body, to_metric_math)
    alert = one(cloudwatch.normalize(body))
    assert alert.labels["metric_name"] == "TargetResponseTime"
    assert alert.labels["dimension_LoadBalancer"] == "app/lb-dev/699cf0a8"
    assert "service" not in alert.labels


def test_subscription_confirmation_is_not_an_alert(payload: Load) -> None:
    body = payload("cloudwatch-sns-subscription-confirmation.json")
    assert cloudwatch.detect(body)
    with pytest.raises(SchemaError, match="not an alert") as info:
        cloudwatch.normalize(body)
    assert info.value.field == "Type"


@pytest.mark.parametrize(
    ("mutate", "field", "error"),
    [
        (lambda b: b.update(Message="{not json"), "Message", DecodeError),
        (lambda b: b.update(Message="[1, 2]"), "Message", SchemaError),
        (lambda b: b.update(Message=17), "Message", SchemaError),
        (lambda b: b.update(Timestamp="soon"), "Timestamp", TimestampError),
        (lambda b: with_message(b, lambda m: m.pop("AlarmName")), "Message.AlarmName",
         SchemaError),
        (lambda b: with_message(b, lambda m: m.update(NewStateValue="RED")),
         "Message.NewStateValue", SchemaError),
        (lambda b: with_message(b, lambda m: m.update(StateChangeTime="14/05/24 10:05")),
         "Message.StateChangeTime", TimestampError),
        (lambda b: with_message(b, lambda m: m.update(Trigger="cpu")), "Message.Trigger",
         SchemaError),
        (lambda b: with_message(b, lambda m: m["Trigger"].update(Dimensions={"a": "b"})),
         "Message.Trigger.Dimensions", SchemaError),
        (lambda b: with_message(b, lambda m: m["Trigger"]["Dimensions"][1].pop("name")),
         "Message.Trigger.Dimensions[1].name", SchemaError),
        (lambda b: with_message(b, lambda m: m.update(AWSAccountId=123456789012)),
         "Message.AWSAccountId", SchemaError),
        (lambda b: b.update(Type="Notice"), "Type", SchemaError),
    ],
)
def test_malformed_notification_raises_naming_the_field(
    payload: Load, mutate: Callable[[dict[str, Any]], object], field: str,
    error: type[Exception],
) -> None:
    body = payload(ALARM)
    mutate(body)
    with pytest.raises(error) as info:
        cloudwatch.normalize(body)
    assert getattr(info.value, "field", None) == field


def test_missing_times_raise(payload: Load) -> None:
    message = json.loads(payload(ALARM)["Message"])
    del message["StateChangeTime"]
    with pytest.raises(SchemaError) as info:
        cloudwatch.normalize(message)
    assert info.value.field == "StateChangeTime"
