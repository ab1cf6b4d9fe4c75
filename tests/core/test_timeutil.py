from __future__ import annotations

import pytest

from triage.core.timeutil import format_timestamp, parse_duration, parse_timestamp
from triage.errors import TimestampError


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2021-10-12T09:51:03Z", 1634032263.0),
        ("2021-10-12T11:51:03+02:00", 1634032263.0),
        ("2018-03-07T06:33:21.873077559-05:00", 1520422401.873077),  # Go's nanoseconds
        ("2021-10-12T09:51:03", 1634032263.0),  # naive is UTC
        (1634032263, 1634032263.0),
        (1634032263000, 1634032263.0),  # epoch milliseconds
    ],
)
def test_parse_timestamp(text: object, expected: float) -> None:
    assert parse_timestamp(text) == pytest.approx(expected, abs=1e-6)


def test_go_zero_time_is_none() -> None:
    assert parse_timestamp("0001-01-01T00:00:00Z") is None


@pytest.mark.parametrize("bad", ["yesterday", "2021-13-45T00:00:00Z", True, [1], -5])
def test_bad_timestamp_names_field(bad: object) -> None:
    with pytest.raises(TimestampError) as info:
        parse_timestamp(bad, "alerts[0].startsAt")
    assert info.value.field == "alerts[0].startsAt"


def test_format_round_trip() -> None:
    assert format_timestamp(1634032263.5) == "2021-10-12T09:51:03.500Z"
    assert parse_timestamp(format_timestamp(1634032263.5)) == 1634032263.5
    assert format_timestamp(None) is None


@pytest.mark.parametrize(("text", "seconds"), [("5m", 300), ("1h30m", 5400), ("7d", 604800),
                                               ("250ms", 0.25), (45, 45), ("90s", 90)])
def test_parse_duration(text: object, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["5 minutes", "", "m5", -1, "1h-5m"])
def test_bad_duration(bad: object) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_duration(bad)
