"""Notifications: what the desk tells webhook receivers, in three payload formats, routed by
priority, team and audience, delivered with retries and a dead letter.

**What is told.** An incident triggered on the desk, a status change, and a status update
recorded as sent (to the routes that take its audience); on request (``kinds``), emergency
changes and access decisions.

**Routes** (``desk.notify`` in the config): a name, a URL, a format, and optional filters
(``priorities``, ``teams``, ``audiences``, ``kinds``). Formats:

- ``json``: triage's own, ``{"schema_version": 1, "kind", "incident", "entry"}``;
- ``slack``: a Slack-compatible incoming-webhook body (``text`` and ``blocks``);
- ``alertmanager``: the Alertmanager webhook body (version 4), so existing bridges such as
  ticketing adapters take it as one alert per incident (firing until resolved);
- ``change``: triage's change record, for the kind ``change`` (an emergency change), so
  a route to ``triage serve`` writes the change back where triage looks for suspects.

**Nothing lost.** A delivery is queued in the ``outbox`` in the same transaction as the row
it tells of. The dispatcher (``desk serve``, every few seconds) posts what is due; a 2xx is
done, a 5xx, 429 or a network error is retried with backoff (5 s, doubling, up to
``MAX_ATTEMPTS``), a 4xx is dead at once. Every attempt is a ``notify.attempt`` row of the
incident's log (the comms log), and a dead delivery a ``notify.dead`` row, with the reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from triage.core.timeutil import format_timestamp

FORMATS = ("json", "slack", "alertmanager", "change")
KINDS = ("triggered", "status", "update", "change", "access")
DEFAULT_KINDS = ("triggered", "status", "update")
MAX_ATTEMPTS = 6
BACKOFF = 5.0  # seconds before the second attempt; doubles after each


@dataclass(frozen=True)
class Route:
    name: str
    url: str
    format: str = "json"
    priorities: tuple[str, ...] = ()  # empty: every one
    teams: tuple[str, ...] = ()
    audiences: tuple[str, ...] = ()
    kinds: tuple[str, ...] = DEFAULT_KINDS
    token: str | None = None  # sent as a bearer token (e.g. to triage serve)

    def takes(self, kind: str, incident: dict[str, Any], audience: str | None) -> bool:
        if kind not in self.kinds or (self.format == "change") != (kind == "change"):
            return False
        if self.priorities and incident["priority"] not in self.priorities:
            return False
        if self.teams and incident.get("owner_team") not in self.teams:
            return False
        return not (kind == "update" and self.audiences and audience not in self.audiences)


def kind_of(row: dict[str, Any]) -> str | None:
    """What a log row tells receivers, if anything."""
    if row["type"] == "triage.created":
        return "triggered"
    if row["type"] == "status.changed":
        return "status"
    if row["type"] == "update.sent":
        return "update"
    if row["type"] == "change.emergency":
        return "change"
    if row["type"] in ("access.granted", "access.denied", "access.revoked", "access.expired"):
        return "access"
    return None


def deliveries(routes: Sequence[Route], incident: dict[str, Any],
               rows: Iterable[dict[str, Any]], *, now: float) -> list[dict[str, Any]]:
    """The outbox rows for ``rows`` just appended to ``incident``'s log."""
    out: list[dict[str, Any]] = []
    for row in rows:
        kind = kind_of(row)
        if kind is None:
            continue
        audience = row["body"].get("audience") if kind == "update" else None
        out.extend({"incident_id": incident["id"], "seq": row["seq"], "route": route.name,
                    "payload": render(route.format, kind, incident, row), "state": "pending",
                    "attempts": 0, "next_at": now, "created_at": now}
                   for route in routes if route.takes(kind, incident, audience))
    return out


def _summary(kind: str, incident: dict[str, Any], row: dict[str, Any]) -> str:
    head = f"{incident['priority']} {incident['title']}"
    if kind == "triggered":
        return f"{head}: triggered (owner {incident.get('owner_team') or '?'})"
    if kind == "status":
        body = row["body"]
        return f"{head}: {body['from']} → {body['to']}" + (
            f" ({body['reason']})" if body.get("reason") else "")
    if kind == "change":
        body = row["body"]
        return (f"{head}: emergency change on {body['service']} ({body['risk']} risk): "
                f"{body['what']}")
    if kind == "access":
        return f"{head}: access {row['type'].split('.', 1)[1]} (request #{row['body']['request']})"
    return f"{head}: update to {row['body']['audience']}: {row['body']['text']}"


def _incident(incident: dict[str, Any]) -> dict[str, Any]:
    keep = ("id", "title", "status", "priority", "services", "root_cause", "owner_team",
            "owner_person", "commander", "firing", "alert_count")
    return {k: incident.get(k) for k in keep} | {
        "triggered_at": format_timestamp(incident.get("triggered_at"))}


def render(fmt: str, kind: str, incident: dict[str, Any], row: dict[str, Any]
           ) -> dict[str, Any]:
    """The body a ``fmt`` receiver gets for a ``kind`` row of ``incident``.

    >>> inc = {"id": "inc-1", "title": "db: 3 alerts", "status": "acknowledged",
    ...        "priority": "P1", "services": ["db"], "owner_team": "data",
    ...        "triggered_at": 0.0}
    >>> row = {"seq": 4, "at": 60.0, "actor": "ana", "type": "status.changed",
    ...        "body": {"from": "triggered", "to": "acknowledged"}}
    >>> render("slack", "status", inc, row)["text"]
    'P1 db: 3 alerts: triggered → acknowledged'
    >>> am = render("alertmanager", "status", inc, row)
    >>> am["version"], am["status"], am["alerts"][0]["labels"]["incident"]
    ('4', 'firing', 'inc-1')
    """
    summary = _summary(kind, incident, row)
    if fmt == "change":
        from triage.desk.changes import change_record
        return change_record(incident, row)
    if fmt == "slack":
        return {"text": summary, "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": f"*{summary}*"}},
            {"type": "context", "elements": [{"type": "mrkdwn", "text":
                f"{incident['id']} · {incident['status']} · by {row['actor']}"}]}]}
    if fmt == "alertmanager":
        over = incident["status"] in ("resolved", "closed")
        labels = {"alertname": "TriageIncident", "incident": incident["id"],
                  "priority": incident["priority"], "severity": {
                      "P1": "critical", "P2": "critical", "P3": "warning"}.get(
                          incident["priority"], "info"),
                  "team": incident.get("owner_team") or "", "desk_status": incident["status"]}
        fingerprint = hashlib.sha256(incident["id"].encode()).hexdigest()[:16]
        alert = {"status": "resolved" if over else "firing", "labels": labels,
                 "annotations": {"summary": summary, "description": summary},
                 "startsAt": format_timestamp(incident.get("triggered_at")),
                 "endsAt": format_timestamp(row["at"]) if over else "0001-01-01T00:00:00Z",
                 "generatorURL": "", "fingerprint": fingerprint}
        return {"version": "4", "groupKey": f"{{}}:{{incident=\"{incident['id']}\"}}",
                "truncatedAlerts": 0, "status": alert["status"], "receiver": "triage-desk",
                "groupLabels": {"incident": incident["id"]}, "commonLabels": labels,
                "commonAnnotations": alert["annotations"], "externalURL": "",
                "alerts": [alert]}
    return {"schema_version": 1, "kind": kind, "summary": summary,
            "incident": _incident(incident),
            "entry": {"seq": row["seq"], "type": row["type"], "actor": row["actor"],
                      "at": format_timestamp(row["at"]), "body": row["body"]}}


def next_try(attempts: int, now: float) -> float:
    """When to try again after ``attempts`` failed ones."""
    return now + BACKOFF * 2.0 ** (attempts - 1)


def retryable(status: int | None) -> bool:
    """Whether a failed attempt is worth another: network errors, 5xx and 429."""
    return status is None or status >= 500 or status == 429
