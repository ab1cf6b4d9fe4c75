from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from triage.core.normalize import generic
from triage.core.timeutil import parse_timestamp
from triage.core.types import Alert, Failed
from triage.errors import SchemaError, TimestampError

Load = Callable[[str], Any]
REPO = Path(__file__).resolve().parents[3]
SCHEMA = json.loads((REPO / "schemas" / "alert.schema.json").read_text(encoding="utf-8"))


def test_single_alert(payload: Load) -> None:
    body = payload("generic-single.json")
    assert generic.detect(body)

    [alert] = generic.normalize(body)

    assert isinstance(alert, Alert)
    assert alert.labels == {
        "alertname": "BackupFailed",
        "severity": "error",  # top-level wins over labels.severity
        "service": "postgres",
        "instance": "db-1.example.com",
        "team": "storage",
        "source": "cron/backup.sh",
    }
    assert alert.annotations == {
        "runbook_url": "https://runbooks.example.com/backup-failed",
        "summary": "Nightly backup of db-1 failed",
        "description": "pg_dump exited with status 1 after 312 s",
    }
    assert alert.status == "firing"
    assert alert.value == 1.0
    assert alert.starts_at == alert.at == parse_timestamp("2024-05-14T02:00:05Z")
    assert alert.ends_at is None
    assert alert.source == generic.SOURCE
    assert alert.source_fingerprint == "backup-db-1"


def test_array_with_epoch_seconds_and_resolved(payload: Load) -> None:
    body = payload("generic-array.json")
    assert generic.detect(body)

    firing, resolved = generic.normalize(body)

    assert isinstance(firing, Alert) and isinstance(resolved, Alert)
    assert firing.labels == {"alertname": "CertificateExpiringSoon", "severity": "warning",
                             "service": "frontend", "instance": "shop.example.com:443"}
    assert firing.starts_at == firing.at == 1715680800.0
    assert firing.value == 9.0
    assert "source" not in firing.labels  # only when given
    assert resolved.status == "resolved"
    assert resolved.starts_at == parse_timestamp("2024-05-13T08:00:00Z")
    assert resolved.ends_at == resolved.at == parse_timestamp("2024-05-14T10:00:00Z")
    assert "severity" not in resolved.labels


def test_minimal_alert_has_no_event_time() -> None:
    [alert] = generic.normalize({"alertname": "Ping"})
    assert isinstance(alert, Alert)
    assert (alert.status, alert.starts_at, alert.at, alert.ends_at) == ("firing", 0.0, 0.0, None)


def test_explicit_at_and_severity_alias() -> None:
    [alert] = generic.normalize({"alertname": "Ping", "severity": "warn",
                                 "at": 1715680900, "starts_at": 1715680800})
    assert isinstance(alert, Alert)
    assert alert.labels["severity"] == "warning"
    assert (alert.starts_at, alert.at) == (1715680800.0, 1715680900.0)


def test_epoch_milliseconds_are_read_as_such() -> None:
    [alert] = generic.normalize({"alertname": "Ping", "starts_at": 1715680800123})
    assert isinstance(alert, Alert) and alert.starts_at == pytest.approx(1715680800.123)


@pytest.mark.parametrize(
    ("change", "field", "error"),
    [
        ({"alertname": None}, "alertname", SchemaError),
        ({"alertname": ""}, "alertname", SchemaError),
        ({"alertname": 5}, "alertname", SchemaError),
        ({"status": "open"}, "status", SchemaError),
        ({"severity": "sev1"}, "severity", SchemaError),
        ({"severity": "WARNING"}, "severity", SchemaError),
        ({"service": {"name": "db"}}, "service", SchemaError),
        ({"labels": ["team"]}, "labels", SchemaError),
        ({"labels": {"team": {"name": "x"}}}, "labels.team", SchemaError),
        ({"annotations": "x"}, "annotations", SchemaError),
        ({"value": "93%"}, "value", SchemaError),
        ({"value": True}, "value", SchemaError),
        ({"starts_at": "yesterday"}, "starts_at", TimestampError),
        ({"ends_at": -5}, "ends_at", TimestampError),
        ({"at": [1]}, "at", TimestampError),
    ],
)
def test_bad_single_alert_raises(
    payload: Load, change: dict[str, Any], field: str, error: type[Exception]
) -> None:
    body = payload("generic-single.json") | change
    with pytest.raises(error) as info:
        generic.normalize(body)
    assert getattr(info.value, "field", None) == field


def test_bad_element_in_array_becomes_failed(payload: Load) -> None:
    body = payload("generic-array.json")
    body.insert(1, {"alertname": "X", "starts_at": "not a time"})
    body.append(7)

    first, bad_time, third, bad_shape = generic.normalize(body)

    assert isinstance(first, Alert) and isinstance(third, Alert)
    assert isinstance(bad_time, Failed)
    assert (bad_time.error, bad_time.field, bad_time.source) == (
        "TimestampError", "[1].starts_at", generic.SOURCE)
    assert isinstance(bad_shape, Failed) and bad_shape.field == "[3]"


def test_detect_rejects_other_shapes() -> None:
    assert not generic.detect([{"labels": {"alertname": "x"}}])
    assert not generic.detect({"labels": {"alertname": "x"}})
    assert not generic.detect(["alertname"])
    assert not generic.detect("alertname")


@pytest.mark.parametrize("name", ["generic-single.json", "generic-array.json"])
def test_fixtures_validate_against_the_published_schema(payload: Load, name: str) -> None:
    jsonschema.Draft202012Validator.check_schema(SCHEMA)
    jsonschema.Draft202012Validator(SCHEMA).validate(payload(name))


@pytest.mark.parametrize(
    "body",
    [
        {"status": "firing"},
        {"alertname": ""},
        {"alertname": "x", "status": "open"},
        {"alertname": "x", "value": "1"},
        {"alertname": "x", "labels": {"a": {"b": "c"}}},
        [],
    ],
)
def test_schema_rejects_what_the_normalizer_rejects(body: Any) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(SCHEMA).validate(body)
    if isinstance(body, dict) and "alertname" in body:
        with pytest.raises(SchemaError):
            generic.normalize(body)
