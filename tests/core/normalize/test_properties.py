"""Property: whatever JSON arrives, normalization returns ``Alert | Failed`` items or raises an
``InputError`` subclass, never any other exception (the worker must not crash on input)."""

from __future__ import annotations

import copy
import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.core.normalize.conftest import read_payload

from triage.core import normalize as registry
from triage.core.types import Alert, Failed
from triage.errors import InputError

# What orjson can decode: 64-bit integers, finite floats, strings without lone surrogates.
scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    # strings that look like what the formats expect, so detection and parsing go deeper
    | st.sampled_from([
        "firing", "resolved", "trigger", "resolve", "acknowledge", "ALARM", "OK",
        "INSUFFICIENT_DATA", "Notification", "SubscriptionConfirmation", "4", "1",
        "2024-05-14T10:05:12.401+0000", "0001-01-01T00:00:00Z", "critical", "warn", "{}",
        '{"AlarmName": "x", "NewStateValue": "ALARM"}', "1e+00",
    ])
)
keys = st.sampled_from([
    "alertname", "labels", "annotations", "status", "alerts", "startsAt", "endsAt", "orgId",
    "version", "groupKey", "data", "state", "values", "event_action", "routing_key",
    "dedup_key", "payload", "summary", "source", "severity", "timestamp", "Type", "TopicArn",
    "Message", "AlarmName", "NewStateValue", "Trigger", "Dimensions", "starts_at", "at",
    "value", "activeAt",
]) | st.text(max_size=10)
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(keys, children, max_size=6),
    max_leaves=25,
)

REAL_PAYLOADS = [
    "alertmanager-webhook-prometheus-msteams.json",
    "grafana-webhook-docs-example.json",
    "alertmanager-api-v2-postable.json",
    "prometheus-api-v1-alerts.json",
    "pagerduty-trigger.json",
    "pagerduty-resolve.json",
    "cloudwatch-sns-alarm.json",
    "cloudwatch-sns-ok.json",
    "generic-single.json",
    "generic-array.json",
]
PAYLOADS = {name: read_payload(name) for name in REAL_PAYLOADS}


def check(payload: Any) -> None:
    try:
        items = registry.normalize(payload)
    except InputError:
        return
    assert isinstance(items, list)
    for item in items:
        assert isinstance(item, Alert | Failed)
        if isinstance(item, Failed):
            assert item.error and item.reason
            if item.raw.startswith(("{", "[")):
                json.loads(item.raw)  # the raw alert is kept as valid JSON text


@settings(max_examples=300, deadline=None)
@given(json_values)
def test_arbitrary_json_never_escapes_as_another_exception(payload: Any) -> None:
    check(payload)


def _containers(node: Any, out: list[Any]) -> list[Any]:
    """Every dict and list inside ``node`` (including itself), depth first."""
    if isinstance(node, dict):
        out.append(node)
        for child in node.values():
            _containers(child, out)
    elif isinstance(node, list):
        out.append(node)
        for child in node:
            _containers(child, out)
    return out


@st.composite
def mutated_payloads(draw: st.DrawFn) -> Any:
    """A real payload with a few members dropped or replaced by random JSON (also inside the
    JSON string that SNS wraps CloudWatch alarms in)."""
    payload = copy.deepcopy(PAYLOADS[draw(st.sampled_from(REAL_PAYLOADS))])
    wrapped = isinstance(payload, dict) and isinstance(payload.get("Message"), str)
    if wrapped and draw(st.booleans()):
        target = json.loads(payload["Message"])
    else:
        target, wrapped = payload, False
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        container = draw(st.sampled_from(_containers(target, [])))
        if not container:
            continue
        if isinstance(container, dict):
            key = draw(st.sampled_from(sorted(container)))
        else:
            key = draw(st.integers(min_value=0, max_value=len(container) - 1))
        if draw(st.booleans()):
            del container[key]
        else:
            container[key] = draw(json_values)
    if wrapped:
        payload["Message"] = json.dumps(target)
    return payload


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated_payloads())
def test_mutated_real_payloads_never_escape_as_another_exception(payload: Any) -> None:
    check(payload)


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(REAL_PAYLOADS))
def test_real_payloads_normalize_cleanly(name: str) -> None:
    items = registry.normalize(copy.deepcopy(PAYLOADS[name]))
    assert items and all(isinstance(item, Alert) for item in items)
