"""The desk's lifecycle events: every change to an incident (triage's events, status moves,
timeline entries, roles, updates, mitigations, changes, access), one JSON object each, for
ticketing systems (``schemas/lifecycle-event.schema.json``, ``schema_version`` 1), published
on the ``incidents.lifecycle`` topic by ``triage desk publish``.

They are queued in the outbox (route ``LIFECYCLE_ROUTE``) in the transaction that appends
the row, so none is lost; the publisher sends them in order per incident, keyed by the
incident id, at least once. ``event_id`` (incident id and the row's ``seq``) is unique: a
consumer drops one it has seen.

>>> inc = {"id": "inc-1", "title": "db: 3 alerts", "status": "acknowledged", "priority": "P1",
...        "services": ["db"], "triggered_at": 0.0, "acknowledged_at": 60.0}
>>> row = {"seq": 4, "type": "status.changed", "actor": "ana", "at": 60.0,
...        "body": {"from": "triggered", "to": "acknowledged"}}
>>> e = lifecycle_event(inc, row)
>>> e["event_id"], e["type"], e["incident"]["acknowledged_at"]
('inc-1:4', 'status.changed', '1970-01-01T00:01:00.000Z')
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from triage.core.timeutil import format_timestamp
from triage.desk.schema import STATUS_AT

LIFECYCLE_ROUTE = "kafka:lifecycle"
SCHEMA_VERSION = 1
FIELDS = ("id", "title", "status", "priority", "services", "root_cause", "owner_team",
          "owner_person", "commander", "firing", "alert_count")


def published(row: dict[str, Any]) -> bool:
    """Whether a log row is a lifecycle event (deliveries' own bookkeeping is not)."""
    return not row["type"].startswith("notify.")


def lifecycle_event(incident: dict[str, Any], row: dict[str, Any]) -> dict[str, Any]:
    """The event for ``row``, with the incident as it is after it."""
    state = {k: incident.get(k) for k in FIELDS}
    state.update({col: format_timestamp(incident.get(col)) for col in STATUS_AT.values()})
    return {"schema_version": SCHEMA_VERSION, "event_id": f"{incident['id']}:{row['seq']}",
            "type": row["type"], "at": format_timestamp(row["at"]), "actor": row["actor"],
            "incident": state, "body": row["body"]}


def queued(incident: dict[str, Any], rows: Iterable[dict[str, Any]], *, now: float
           ) -> list[dict[str, Any]]:
    """Outbox rows for the lifecycle topic."""
    return [{"incident_id": incident["id"], "seq": row["seq"], "route": LIFECYCLE_ROUTE,
             "payload": lifecycle_event(incident, row), "state": "pending", "attempts": 0,
             "next_at": now, "created_at": now} for row in rows if published(row)]
