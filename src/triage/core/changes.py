"""Change records (deploys, config changes, feature-flag flips, infra), indexed by service and
time so suspect-change lookups are a bisect, not a scan.

A record (JSON Lines file or the ``changes`` topic): ``id``, ``service``, ``kind``
(``deploy`` | ``config`` | ``feature_flag`` | ``infra``), ``at``, optional ``description``,
``author``.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from triage.core.timeutil import parse_timestamp
from triage.errors import SchemaError

ChangeKind = Literal["deploy", "config", "feature_flag", "infra"]
KINDS: Final = ("deploy", "config", "feature_flag", "infra")


@dataclass(frozen=True, slots=True)
class ChangeRecord:
    """One change to one service at one time."""

    id: str
    service: str
    kind: ChangeKind
    at: float
    description: str = ""
    author: str = ""


def is_change_record(obj: object) -> bool:
    """Whether a decoded input value looks like a change record rather than an alert."""
    return (isinstance(obj, dict) and obj.get("kind") in KINDS and "service" in obj
            and "id" in obj and "at" in obj and "alertname" not in obj)


def change_from_dict(obj: Mapping[str, Any]) -> ChangeRecord:
    """Validate and build a ``ChangeRecord``; ``SchemaError`` names the bad field.

    >>> change_from_dict({"id": "d1", "service": "cart", "kind": "deploy",
    ...                   "at": "2026-11-27T10:00:00Z"}).at
    1795773600.0
    """
    if not isinstance(obj, Mapping):
        raise SchemaError("", "a change record must be an object")
    fields: dict[str, str] = {}
    for key in ("id", "service", "kind"):
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            raise SchemaError(key, "missing" if value is None else "expected a non-empty string")
        fields[key] = value
    if fields["kind"] not in KINDS:
        raise SchemaError("kind", f"unknown kind {fields['kind']!r}; one of {', '.join(KINDS)}")
    at = parse_timestamp(obj.get("at"), "at")
    if at is None:
        raise SchemaError("at", "missing")
    extra: dict[str, str] = {}
    for key in ("description", "author"):
        value = obj.get(key)
        if value is not None and not isinstance(value, str):
            raise SchemaError(key, "expected a string")
        extra[key] = value or ""
    return ChangeRecord(fields["id"], fields["service"], fields["kind"], at,  # type: ignore[arg-type]
                        extra["description"], extra["author"])


class ChangeIndex:
    """Change records by service, sorted by time; adding the same id twice keeps one.

    >>> idx = ChangeIndex()
    >>> idx.add(ChangeRecord("d1", "cart", "deploy", 100.0))
    True
    >>> [c.id for c in idx.between("cart", 50.0, 150.0)]
    ['d1']
    """

    def __init__(self) -> None:
        self._times: dict[str, list[tuple[float, str]]] = {}
        self._records: dict[str, ChangeRecord] = {}
        self._new: list[ChangeRecord] = []

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[ChangeRecord]:
        return iter(self._records.values())

    def add(self, record: ChangeRecord) -> bool:
        """Index ``record``; False if a record with its id is already known."""
        if record.id in self._records:
            return False
        self._records[record.id] = record
        insort(self._times.setdefault(record.service, []), (record.at, record.id))
        self._new.append(record)
        return True

    def take_new(self) -> list[ChangeRecord]:
        """Records added since the last call (for persistence)."""
        new, self._new = self._new, []
        return new

    def between(self, service: str, start: float, end: float) -> list[ChangeRecord]:
        """Changes to ``service`` with ``start <= at <= end``, oldest first."""
        times = self._times.get(service)
        if not times:
            return []
        lo = bisect_left(times, (start, ""))
        hi = bisect_right(times, (end, "\uffff"))
        return [self._records[i] for _, i in times[lo:hi]]

    def expire(self, before: float) -> int:
        """Forget changes older than ``before``; returns how many."""
        old = [r for r in self._records.values() if r.at < before]
        for r in old:
            del self._records[r.id]
            self._times[r.service].remove((r.at, r.id))
        return len(old)
