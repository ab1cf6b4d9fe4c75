"""What one of triage's incident events does to the desk: the log rows it appends and the
incident's new current state. Pure: no database here (``triage.desk.store`` writes it).

An incident enters the desk ``triggered`` with triage's first event. Triage's later events
update what triage knows (priority, services, root cause, owner, alerts); they never undo a
responder's decision. One rule moves the status: when triage sees every alert resolved while
no one has acknowledged the incident, the desk resolves it (``status.changed`` by triage,
with the reason); if triage then sees an alert firing again in that incident, the desk
reopens it as ``triggered``. Once a person has acknowledged it, only people move it.

>>> created = {"event_id": "inc-1:1", "type": "incident.created", "at": 60.0,
...            "incident": {"id": "inc-1", "sequence": 1, "status": "open",
...                         "priority": "P2", "services": ["db"], "alert_count": 2,
...                         "root_cause": {"service": "db"}, "first_seen": 0.0,
...                         "last_seen": 30.0, "owner": {"team": "data"},
...                         "war_room": {"open": False}}}
>>> row, rows = apply_triage(None, created, [])
>>> row["status"], row["title"], [r["type"] for r in rows]
('triggered', 'db: 2 alerts', ['triage.created'])
>>> done = {**created, "event_id": "inc-1:2", "type": "incident.resolved", "at": 90.0,
...         "incident": {**created["incident"], "sequence": 2, "status": "resolved"}}
>>> row, rows = apply_triage(row, done, [])
>>> row["status"], [r["type"] for r in rows], rows[1]["body"]["reason"][:28]
('resolved', ['triage.resolved', 'status.changed'], 'every alert resolved before ')
"""

from __future__ import annotations

from typing import Any

from triage.core.timeutil import parse_timestamp
from triage.desk.schema import STATUS_AT, STATUSES
from triage.errors import SchemaError

TRIAGE = "triage"  # the actor of what triage did
EVENT_TYPES = {"incident.created": "triage.created", "incident.updated": "triage.updated",
               "incident.resolved": "triage.resolved"}


def _time(value: Any, field: str) -> float:
    t = parse_timestamp(value, field)
    if t is None:
        raise SchemaError(field, "missing time")
    return t


def check_event(event: Any) -> tuple[str, str, float, dict[str, Any]]:
    """(event_id, log type, at, incident) of one of triage's incident events; a
    ``SchemaError`` naming the field if it is not one."""
    if not isinstance(event, dict):
        raise SchemaError("", f"expected an incident event object, got {type(event).__name__}")
    event_id = event.get("event_id")
    if not isinstance(event_id, str) or not event_id:
        raise SchemaError("event_id", "missing or not a string")
    kind = EVENT_TYPES.get(event.get("type"))  # type: ignore[arg-type]
    if kind is None:
        raise SchemaError("type", f"not an incident event type: {event.get('type')!r}")
    inc = event.get("incident")
    if not isinstance(inc, dict):
        raise SchemaError("incident", "missing or not an object")
    if not isinstance(inc.get("id"), str) or not inc["id"]:
        raise SchemaError("incident.id", "missing or not a string")
    if not isinstance(inc.get("sequence"), int):
        raise SchemaError("incident.sequence", "missing or not an integer")
    return event_id, kind, _time(event.get("at"), "at"), inc


def title_of(inc: dict[str, Any]) -> str:
    """A line that says what is failing: the root cause (or first service) and how much."""
    services = [s for s in inc.get("services") or [] if isinstance(s, str)]
    root = (inc.get("root_cause") or {}).get("service") or (services[0] if services else "?")
    n = int(inc.get("alert_count") or 0)
    more = len(services) - 1 if root in services else len(services)
    title = f"{root}: {n} alert{'s' if n != 1 else ''}"
    return title + (f" on {more + 1} services" if more > 0 else "")


def apply_triage(row: dict[str, Any] | None, event: dict[str, Any], log: list[dict[str, Any]]
                 ) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The incident's state after ``event`` (``row``: before, None if new) and the log rows
    to append (``log``: rows appended for this incident earlier in the same batch, whose
    ``seq`` this continues). A triage event older than one applied is logged, and changes
    nothing else."""
    event_id, kind, at, inc = check_event(event)
    seq = (log[-1]["seq"] if log else (row["seq"] if row else 0))
    rows = [{"incident_id": inc["id"], "seq": seq + 1, "type": kind, "actor": TRIAGE,
             "at": at, "body": event, "source_id": event_id}]
    if row is not None and inc["sequence"] <= row["triage_sequence"]:
        return {**row, "seq": seq + 1}, rows
    firing = inc.get("status") != "resolved"
    new = dict(row) if row is not None else {
        "id": inc["id"], "status": "triggered", "commander": None,
        **{col: None for col in STATUS_AT.values()}, "triggered_at": at}
    new.update(
        title=title_of(inc), priority=str(inc.get("priority") or "P4"),
        services=list(inc.get("services") or []),
        root_cause=(inc.get("root_cause") or {}).get("service"),
        owner_team=(inc.get("owner") or {}).get("team"),
        owner_person=(inc.get("owner") or {}).get("person"),
        war_room=bool((inc.get("war_room") or {}).get("open")),
        alert_count=int(inc.get("alert_count") or 0), firing=firing,
        first_seen=_seen(inc.get("first_seen"), at), last_seen=_seen(inc.get("last_seen"), at),
        triage_sequence=inc["sequence"], updated_at=at)
    status = new["status"]
    if not firing and status == "triggered":
        rows.append(_status(inc["id"], seq + 2, at, status, "resolved",
                            "every alert resolved before anyone acknowledged the incident"))
        new["status"], new["resolved_at"] = "resolved", at
    elif (firing and status == "resolved" and row is not None and not row["firing"]
          and row["acknowledged_at"] is None):  # resolved by the rule above, not by a person
        rows.append(_status(inc["id"], seq + 2, at, status, "triggered",
                            "an alert fires again in an incident triage had resolved"))
        new["status"], new["resolved_at"], new["triggered_at"] = "triggered", None, at
    new["seq"] = rows[-1]["seq"]
    return new, rows


def _seen(value: Any, default: float) -> float:
    t = parse_timestamp(value) if value is not None else None
    return default if t is None else t


def _status(incident_id: str, seq: int, at: float, old: str, new: str,
            reason: str) -> dict[str, Any]:
    assert old in STATUSES and new in STATUSES
    return {"incident_id": incident_id, "seq": seq, "type": "status.changed",
            "actor": TRIAGE, "at": at, "body": {"from": old, "to": new, "reason": reason},
            "source_id": None}
