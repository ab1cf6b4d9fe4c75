"""Helpers shared by the vendor normalizers: typed field access that raises ``SchemaError``
naming the field, and the conversion of one bad alert into a ``Failed`` outcome."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from triage.core.timeutil import parse_timestamp
from triage.core.types import Failed
from triage.errors import InputError, SchemaError, TimestampError

JSONObject = dict[str, Any]


def require_object(obj: object, field: str) -> JSONObject:
    """``obj`` as a JSON object, or ``SchemaError`` naming ``field``."""
    if not isinstance(obj, dict):
        raise SchemaError(field, f"expected an object, got {_kind(obj)}")
    return obj


def require_list(obj: object, field: str) -> list[Any]:
    """``obj`` as a JSON array, or ``SchemaError`` naming ``field``."""
    if not isinstance(obj, list):
        raise SchemaError(field, f"expected an array, got {_kind(obj)}")
    return obj


def require_str(obj: Mapping[str, Any], key: str, field: str) -> str:
    """A required non-empty string member."""
    value = obj.get(key)
    if value is None:
        raise SchemaError(field, "missing")
    if not isinstance(value, str):
        raise SchemaError(field, f"expected a string, got {_kind(value)}")
    if not value:
        raise SchemaError(field, "empty")
    return value


def optional_str(obj: Mapping[str, Any], key: str, field: str, default: str = "") -> str:
    """An optional string member (``null`` and absent give ``default``)."""
    value = obj.get(key)
    if value is None:
        return default
    if not isinstance(value, str):
        raise SchemaError(field, f"expected a string, got {_kind(value)}")
    return value


def string_map(obj: object, field: str, *, required: bool) -> dict[str, str]:
    """A ``{str: str}`` object such as labels or annotations.

    Numbers and booleans are accepted as values and turned into their JSON text, since many
    senders template them unquoted; nested objects and arrays are a ``SchemaError``.
    """
    if obj is None:
        if required:
            raise SchemaError(field, "missing")
        return {}
    if not isinstance(obj, dict):
        raise SchemaError(field, f"expected an object of strings, got {_kind(obj)}")
    if required and not obj:
        raise SchemaError(field, "empty: an alert needs at least one label")
    out: dict[str, str] = {}
    for key, value in obj.items():
        if isinstance(value, str):
            out[key] = value
        elif isinstance(value, bool):
            out[key] = "true" if value else "false"
        elif isinstance(value, int | float):
            out[key] = orjson.dumps(value).decode()
        elif value is None:
            continue
        else:
            raise SchemaError(f"{field}.{key}", f"expected a string, got {_kind(value)}")
    return out


def timestamp(obj: Mapping[str, Any], key: str, field: str, *, required: bool) -> float | None:
    """A timestamp member; Go's zero time counts as absent."""
    value = obj.get(key)
    if value is None:
        if required:
            raise SchemaError(field, "missing")
        return None
    try:
        parsed = parse_timestamp(value, field)
    except TimestampError:
        raise
    if parsed is None and required:
        raise TimestampError(field, "zero time where a start time is required")
    return parsed


def number(value: object) -> float | None:
    """A float from a number or numeric string, else ``None`` (values are optional)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def failed(exc: InputError, raw: object, source: str | None) -> Failed:
    """The ``Failed`` outcome for one bad alert (or payload), keeping it as raw JSON text."""
    text = raw if isinstance(raw, str) else orjson.dumps(raw, default=str).decode()
    return Failed(error=type(exc).__name__, field=exc.field, reason=exc.message, raw=text,
                  source=source)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
