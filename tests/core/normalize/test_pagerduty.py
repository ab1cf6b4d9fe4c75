from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from triage.core.fingerprint import FingerprintPolicy, labelset_fingerprint
from triage.core.normalize import pagerduty
from triage.core.types import Alert
from triage.errors import SchemaError, TimestampError

Load = Callable[[str], Any]


def one(items: list[Any]) -> Alert:
    [alert] = items
    assert isinstance(alert, Alert)
    return alert


def test_trigger_from_the_documentation(payload: Load) -> None:
    body = payload("pagerduty-trigger.json")
    assert pagerduty.detect(body)

    alert = one(pagerduty.normalize(body))

    assert alert.labels == {
        "alertname": "deploy",  # payload.class
        "dedup_key": "samplekeyhere",
        "instance": "monitoringtool:cloudvendor:central-region-dc-01:852559987:"
                    "cluster/api-stats-prod-003",
        "service": "postgres",
        "group": "prod-datapipe",
        "severity": "info",
    }
    assert alert.status == "firing"
    assert alert.starts_at == alert.at == 1437122578.315  # 2015-07-17T08:42:58.315+0000
    assert alert.ends_at is None
    assert alert.source == pagerduty.SOURCE
    assert alert.annotations["summary"] == "Example alert on host1.example.com"
    assert alert.annotations["ping time"] == "1500ms"
    assert alert.annotations["load avg"] == "0.75"  # non-strings as JSON text
    assert alert.annotations["client"] == "Sample Monitoring Service"
    assert "acknowledged" not in alert.annotations
    assert alert.generator_url == "https://monitoring.example.com"
    assert all("routing" not in key for key in (*alert.labels, *alert.annotations))


def test_resolve_carries_only_the_dedup_key(payload: Load) -> None:
    alert = one(pagerduty.normalize(payload("pagerduty-resolve.json")))

    assert alert.labels == {"dedup_key": "samplekeyhere"}
    assert alert.status == "resolved"
    assert alert.starts_at == alert.at == 0.0  # no event time: the pipeline's clock decides
    assert alert.ends_at is None


def test_resolve_matches_trigger_under_the_identifying_labels(payload: Load) -> None:
    trigger = one(pagerduty.normalize(payload("pagerduty-trigger.json")))
    resolve = one(pagerduty.normalize(payload("pagerduty-resolve.json")))
    policy = FingerprintPolicy(include=frozenset(pagerduty.IDENTIFYING_LABELS))

    assert labelset_fingerprint(policy.identifying(trigger.labels)) == labelset_fingerprint(
        policy.identifying(resolve.labels)
    )


def test_acknowledge_keeps_firing_and_says_so(payload: Load) -> None:
    alert = one(pagerduty.normalize(payload("pagerduty-acknowledge.json")))
    assert alert.status == "firing"
    assert alert.annotations["acknowledged"] == "true"


def test_resolve_with_timestamp_sets_ends_at(payload: Load) -> None:
    body = payload("pagerduty-resolve.json")
    body["payload"] = {"timestamp": "2015-07-17T09:00:00Z", "summary": "ok again"}
    alert = one(pagerduty.normalize(body))
    assert alert.ends_at == alert.at == 1437123600.0
    assert alert.labels["alertname"] == "ok again"


def test_alertname_falls_back_to_summary(payload: Load) -> None:
    body = payload("pagerduty-trigger.json")
    del body["payload"]["class"]
    del body["payload"]["component"]
    alert = one(pagerduty.normalize(body))
    assert alert.labels["alertname"] == "Example alert on host1.example.com"
    assert "service" not in alert.labels


def test_trigger_without_dedup_key_gets_a_deterministic_one(payload: Load) -> None:
    body = payload("pagerduty-trigger.json")
    del body["dedup_key"]
    first = one(pagerduty.normalize(body))
    second = one(pagerduty.normalize(payload("pagerduty-trigger.json") | {"dedup_key": None}))
    body["payload"]["summary"] = "Another alert"
    third = one(pagerduty.normalize(body))

    assert first.labels["dedup_key"].startswith("triage-")
    assert first.labels["dedup_key"] == second.labels["dedup_key"]
    assert third.labels["dedup_key"] != first.labels["dedup_key"]


def test_trigger_without_timestamp(payload: Load) -> None:
    body = payload("pagerduty-trigger.json")
    del body["payload"]["timestamp"]
    alert = one(pagerduty.normalize(body))
    assert alert.at == alert.starts_at == 0.0


def test_custom_details_that_are_not_an_object(payload: Load) -> None:
    body = payload("pagerduty-trigger.json")
    body["payload"]["custom_details"] = "free text"
    assert one(pagerduty.normalize(body)).annotations["custom_details"] == "free text"
    body["payload"]["custom_details"] = [1, 2]
    assert one(pagerduty.normalize(body)).annotations["custom_details"] == "[1,2]"


@pytest.mark.parametrize(
    ("name", "mutate", "field", "error"),
    [
        ("pagerduty-trigger.json", lambda b: b.pop("routing_key"), "routing_key", SchemaError),
        ("pagerduty-trigger.json", lambda b: b.update(event_action="page"), "event_action",
         SchemaError),
        ("pagerduty-trigger.json", lambda b: b.update(event_action=1), "event_action",
         SchemaError),
        ("pagerduty-trigger.json", lambda b: b.pop("payload"), "payload", SchemaError),
        ("pagerduty-trigger.json", lambda b: b["payload"].pop("summary"), "payload.summary",
         SchemaError),
        ("pagerduty-trigger.json", lambda b: b["payload"].pop("source"), "payload.source",
         SchemaError),
        ("pagerduty-trigger.json", lambda b: b["payload"].pop("severity"), "payload.severity",
         SchemaError),
        ("pagerduty-trigger.json", lambda b: b["payload"].update(severity="sev1"),
         "payload.severity", SchemaError),
        ("pagerduty-trigger.json", lambda b: b["payload"].update(timestamp="last tuesday"),
         "payload.timestamp", TimestampError),
        ("pagerduty-trigger.json", lambda b: b["payload"].update(component=["a"]),
         "payload.component", SchemaError),
        ("pagerduty-trigger.json", lambda b: b.update(dedup_key=42), "dedup_key", SchemaError),
        ("pagerduty-resolve.json", lambda b: b.pop("dedup_key"), "dedup_key", SchemaError),
        ("pagerduty-resolve.json", lambda b: b.update(payload="x"), "payload", SchemaError),
    ],
)
def test_malformed_event_raises_naming_the_field(
    payload: Load,
    name: str,
    mutate: Callable[[dict[str, Any]], object],
    field: str,
    error: type[Exception],
) -> None:
    body = payload(name)
    mutate(body)
    with pytest.raises(error) as info:
        pagerduty.normalize(body)
    assert getattr(info.value, "field", None) == field
