"""AWS CloudWatch alarm state changes delivered through Amazon SNS.

An SNS HTTP(S) subscription POSTs an envelope whose ``Message`` is the alarm as a JSON
*string*::

    {"Type": "Notification", "MessageId", "TopicArn", "Subject", "Timestamp",
     "Message": "{\\"AlarmName\\": ..., \\"NewStateValue\\": \\"ALARM\\", ...}", ...}

The bare alarm object (an already unwrapped ``Message``) is accepted too. A CloudWatch alarm
has no labels, so its fields are mapped to labels::

    alertname        AlarmName
    account          AWSAccountId (else the account of AlarmArn)
    region           the region code from AlarmArn ("eu-west-1"), else ``Region``, which
                     CloudWatch writes as a display name ("EU - Ireland")
    namespace        Trigger.Namespace
    metric_name      Trigger.MetricName
    dimension_<Name> one per Trigger.Dimensions entry, the name kept as CloudWatch spells it
    service          the value of a dimension named ServiceName or service (any case),
                     e.g. ECS's ServiceName, so ownership and topology lookups work
    severity         only for INSUFFICIENT_DATA (SEVERITY_MAP); CloudWatch has no severity

Metric-math and anomaly-detection alarms have ``Trigger.Metrics`` instead of a single metric;
the first entry with a ``MetricStat`` supplies namespace, metric name and dimensions.
An alarm name is unique within an account and region, so those three labels identify an
alarm (``IDENTIFYING_LABELS``); the others describe it.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson

from triage.core.normalize._common import (
    JSONObject,
    optional_str,
    require_list,
    require_object,
    require_str,
    timestamp,
)
from triage.core.types import Alert, Failed, Status
from triage.errors import DecodeError, SchemaError

SOURCE: Final = "cloudwatch-sns"

IDENTIFYING_LABELS: Final = ("alertname", "account", "region")

STATUS_MAP: Final[dict[str, Status]] = {
    "ALARM": "firing",
    "OK": "resolved",
    # CloudWatch cannot evaluate the alarm (metric missing, too few datapoints). Not proof of
    # a problem, but an unwatched metric is one: it fires, as a warning, with an explanation.
    "INSUFFICIENT_DATA": "firing",
}

SEVERITY_MAP: Final[dict[str, str]] = {
    "INSUFFICIENT_DATA": "warning",
}

INSUFFICIENT_DATA_NOTE: Final = (
    "CloudWatch cannot evaluate this alarm: the metric has missing or too few datapoints "
    "(the alarm's threshold was not necessarily crossed)"
)

_SNS_TYPES: Final = frozenset({"Notification", "SubscriptionConfirmation",
                               "UnsubscribeConfirmation"})
_SERVICE_DIMENSIONS: Final = frozenset({"servicename", "service"})
_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"
# "1 datapoint (10.0) was ...", "3 datapoints [32.6 (03/07/25 08:29:00), ...]",
# "The most recent datapoints: [7.0, 7.0]": the first number after "datapoint(s)", which
# CloudWatch lists most recent first.
_REASON_VALUE = re.compile(rf"datapoints?:?\s*[\[(]\s*({_NUMBER})")
_ARN = re.compile(r"^arn:[^:]*:cloudwatch:([^:]*):(\d*):alarm:")


def detect(payload: object) -> bool:
    """An SNS envelope (``Type`` and ``TopicArn``) or a bare CloudWatch alarm object.

    >>> detect({"Type": "Notification", "TopicArn": "arn:aws:sns:eu-west-1:1:t", "Message": "{}"})
    True
    >>> detect({"AlarmName": "cpu", "NewStateValue": "ALARM"})
    True
    """
    if not isinstance(payload, dict):
        return False
    kind = payload.get("Type")
    if isinstance(kind, str) and kind in _SNS_TYPES and "TopicArn" in payload:
        return True
    return "AlarmName" in payload and "NewStateValue" in payload


def reason_value(reason: str) -> float | None:
    """The most recent datapoint quoted in a ``NewStateReason``, if it quotes one.

    >>> reason_value("Threshold Crossed: 3 out of the last 3 datapoints "
    ...              "[32.6 (03/07/25 08:29:00), 33.8 (03/07/25 08:24:00)] was greater ...")
    32.6
    >>> reason_value("Threshold Crossed: 1 datapoint (10.0) was greater than (1.0).")
    10.0
    >>> reason_value("Insufficient Data: 1 datapoint was unknown.") is None
    True
    """
    match = _REASON_VALUE.search(reason)
    return float(match.group(1)) if match else None


def _unwrap(payload: JSONObject) -> tuple[JSONObject, str, float | None, str]:
    """The alarm object, its field prefix, the SNS publish time and the SNS subject."""
    kind = payload.get("Type")
    if kind is None and "AlarmName" in payload:
        return payload, "", None, ""
    if kind in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        raise SchemaError("Type", f"an SNS {kind} is not an alert; confirm a subscription by "
                                  "visiting its SubscribeURL (triage never fetches URLs)")
    if kind != "Notification":
        raise SchemaError("Type", f"expected an SNS Notification, got {str(kind)[:40]!r}")
    message = payload.get("Message")
    if isinstance(message, str):
        try:
            message = orjson.loads(message)
        except orjson.JSONDecodeError as exc:
            raise DecodeError("Message", f"not a JSON CloudWatch alarm: {exc}") from None
    alarm = require_object(message, "Message")
    published = timestamp(payload, "Timestamp", "Timestamp", required=False)
    subject = optional_str(payload, "Subject", "Subject")
    return alarm, "Message.", published, subject


def _metric(trigger: JSONObject, prefix: str) -> tuple[JSONObject, str]:
    """The object holding Namespace/MetricName/Dimensions, and its field path."""
    if "MetricName" in trigger or "Dimensions" in trigger or "Metrics" not in trigger:
        return trigger, prefix
    metrics = require_list(trigger.get("Metrics"), f"{prefix}Metrics")
    for i, entry in enumerate(metrics):
        if isinstance(entry, dict) and isinstance(entry.get("MetricStat"), dict):
            metric = require_object(entry["MetricStat"].get("Metric"),
                                    f"{prefix}Metrics[{i}].MetricStat.Metric")
            return metric, f"{prefix}Metrics[{i}].MetricStat.Metric."
    return {}, prefix


def _dimensions(metric: JSONObject, prefix: str) -> dict[str, str]:
    raw = metric.get("Dimensions")
    if raw is None:
        return {}
    out: dict[str, str] = {}
    for i, item in enumerate(require_list(raw, f"{prefix}Dimensions")):
        field = f"{prefix}Dimensions[{i}]"
        dim = require_object(item, field)
        out[require_str(dim, "name", f"{field}.name")] = optional_str(dim, "value",
                                                                      f"{field}.value")
    return out


def _text(value: object) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def normalize(payload: Any) -> list[Alert | Failed]:
    """Map one CloudWatch alarm notification to one alert; a malformed one raises.

    >>> alarm = {"AlarmName": "cpu-high", "AWSAccountId": "123456789012",
    ...          "Region": "EU - Ireland", "NewStateValue": "OK",
    ...          "StateChangeTime": "2017-01-12T16:30:42.236+0000"}
    >>> alert = normalize(alarm)[0]
    >>> alert.labels["alertname"], alert.status, alert.ends_at
    ('cpu-high', 'resolved', 1484238642.236)
    """
    alarm, p, published, subject = _unwrap(require_object(payload, ""))
    name = require_str(alarm, "AlarmName", f"{p}AlarmName")
    state = require_str(alarm, "NewStateValue", f"{p}NewStateValue")
    status = STATUS_MAP.get(state)
    if status is None:
        raise SchemaError(f"{p}NewStateValue",
                          f"expected ALARM, OK or INSUFFICIENT_DATA, got {state[:64]!r}")
    arn = optional_str(alarm, "AlarmArn", f"{p}AlarmArn")
    arn_match = _ARN.match(arn)
    labels = {"alertname": name}
    account = optional_str(alarm, "AWSAccountId", f"{p}AWSAccountId") or (
        arn_match.group(2) if arn_match else "")
    region = (arn_match.group(1) if arn_match else "") or optional_str(alarm, "Region",
                                                                       f"{p}Region")
    if account:
        labels["account"] = account
    if region:
        labels["region"] = region

    annotations: dict[str, str] = {"state": state}
    trigger_raw = alarm.get("Trigger")
    if trigger_raw is not None:
        trigger = require_object(trigger_raw, f"{p}Trigger")
        metric, mp = _metric(trigger, f"{p}Trigger.")
        for key, label in (("Namespace", "namespace"), ("MetricName", "metric_name")):
            text = optional_str(metric, key, f"{mp}{key}")
            if text:
                labels[label] = text
        for dim_name, dim_value in _dimensions(metric, mp).items():
            labels[f"dimension_{dim_name}"] = dim_value
            if dim_name.lower() in _SERVICE_DIMENSIONS and dim_value:
                labels.setdefault("service", dim_value)
        for key, annotation in (("Threshold", "threshold"),
                                ("ComparisonOperator", "comparison_operator"),
                                ("Statistic", "statistic")):
            if trigger.get(key) is not None:
                annotations[annotation] = _text(trigger[key])
    severity = SEVERITY_MAP.get(state)
    if severity:
        labels["severity"] = severity
        annotations["insufficient_data"] = INSUFFICIENT_DATA_NOTE

    reason = optional_str(alarm, "NewStateReason", f"{p}NewStateReason")
    for key, annotation in (("AlarmDescription", "description"),
                            ("OldStateValue", "old_state")):
        text = optional_str(alarm, key, f"{p}{key}")
        if text:
            annotations[annotation] = text
    if reason:
        annotations["reason"] = reason
    if arn:
        annotations["alarm_arn"] = arn
    annotations["summary"] = subject or f"{name} is {state}"

    changed = timestamp(alarm, "StateChangeTime", f"{p}StateChangeTime", required=False)
    if changed is None:
        changed = published
    if changed is None:
        raise SchemaError(f"{p}StateChangeTime", "missing")
    at = changed if published is None else max(changed, published)
    return [
        Alert(
            labels=labels,
            annotations=annotations,
            status=status,
            starts_at=changed,
            ends_at=changed if status == "resolved" else None,
            at=at,
            source=SOURCE,
            value=reason_value(reason),
        )
    ]
