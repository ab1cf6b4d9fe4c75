"""Timestamps and durations.

Core time is a float: seconds since the Unix epoch, UTC. Parsing is cached because alert
storms repeat the same ``startsAt`` strings thousands of times.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

from triage.errors import TimestampError

# Go's zero time, which Alertmanager and Grafana send for "no end yet".
_ZERO_TIME_PREFIX = "0001-01-01"
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


@lru_cache(maxsize=65536)
def _parse_text(text: str) -> float | None:
    if text.startswith(_ZERO_TIME_PREFIX):
        return None
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise TimestampError("", f"not an RFC 3339 timestamp: {text[:64]!r}") from None
    if parsed.tzinfo is None:  # naive timestamps are read as UTC, as Prometheus does
        parsed = parsed.replace(tzinfo=UTC)
    seconds = parsed.timestamp()
    if seconds < 0:
        raise TimestampError("", f"before 1970, not an alert time: {text[:64]!r}")
    return seconds


def parse_timestamp(value: object, field: str = "") -> float | None:
    """Parse an RFC 3339 string or epoch seconds to epoch seconds; Go's zero time is ``None``.

    >>> parse_timestamp("2021-10-12T09:51:03Z")
    1634032263.0
    >>> parse_timestamp("0001-01-01T00:00:00Z") is None
    True
    """
    if value is None or value == "":
        return None
    if isinstance(value, str):
        try:
            return _parse_text(value)
        except TimestampError as exc:
            raise TimestampError(field, exc.message) from None
    if isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
        if seconds > 1e11:  # epoch milliseconds, as CloudWatch and many scripts send
            seconds /= 1000.0
        if not 0 <= seconds < 253402300800:  # year 10000
            raise TimestampError(field, f"epoch seconds out of range: {value!r}")
        return seconds
    raise TimestampError(field,
                         f"expected a timestamp string or number, got {type(value).__name__}")


def format_timestamp(ts: float | None) -> str | None:
    """Format epoch seconds as RFC 3339 UTC with milliseconds.

    >>> format_timestamp(1634032263.5)
    '2021-10-12T09:51:03.500Z'
    """
    if ts is None:
        return None
    return _format_timestamp(ts)


@lru_cache(maxsize=4096)
def _format_timestamp(ts: float) -> str:
    # Cached: a storm formats the same few event times over and over (every record a stage
    # writes carries one; 3% of a Kafka worker's time before the cache).
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="milliseconds").replace(
        "+00:00", "Z"
    )


def parse_duration(value: object, field: str = "duration") -> float:
    """Parse a Go/Prometheus style duration (``90s``, ``5m``, ``1h30m``, ``7d``) or seconds.

    >>> parse_duration("1h30m")
    5400.0
    >>> parse_duration(45)
    45.0
    """
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0:
            raise ValueError(f"{field}: negative duration {value!r}")
        return float(value)
    if not isinstance(value, str) or not value:
        raise ValueError(f"{field}: expected a duration like '5m', got {value!r}")
    text = value.strip()
    pos = 0
    total = 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(f"{field}: expected a duration like '5m' or '1h30m', got {value!r}")
    return total
