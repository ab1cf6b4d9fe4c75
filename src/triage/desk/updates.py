"""Status updates per audience: templates, the cadence set by priority, reminders when one
is overdue, and the comms log (every message sent, in the incident's log).

Audiences and what their template says:

- ``responders``: conditions / actions / needs (what is true now, what is being done, what
  help is wanted);
- ``internal`` and ``executive``: impact, status, the time of the next update;
- ``customers``: plain language, with no internal name. A customer update that names a
  service, a team or a person of the incident is refused, naming the word.

The cadence: P1 every 30 minutes, P2 every hour, P3 every 4 hours, P4 none. An open
incident whose last update (or, before the first, its trigger) is older than that is
overdue; ``remind`` appends one ``update.overdue`` row per due time, and the desk counts
them (``triage_desk_updates_overdue``).

>>> row = {"id": "inc-1", "priority": "P1", "status": "investigating", "title": "db: 3 alerts",
...        "services": ["db", "api"], "root_cause": "db", "owner_team": "data",
...        "owner_person": "zoe", "commander": "ana", "triggered_at": 0.0, "seq": 3,
...        "alert_count": 3, "firing": True}
>>> print(draft(row, [], "customers", now=600.0))  # doctest: +NORMALIZE_WHITESPACE
We are investigating a problem that may affect some of our services. We are working on it
and will post the next update by 00:30 UTC.
>>> send_update(row, [], "customers", "The db cluster is down", actor="ana", at=600.0)
Traceback (most recent call last):
...
triage.desk.rules.RuleError: text: a customer update names "db", an internal name
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from triage.core.timeutil import format_timestamp
from triage.desk.lifecycle import holders
from triage.desk.rules import ConflictError, RuleError, check_actor, check_text

AUDIENCES = ("responders", "internal", "executive", "customers")
CADENCE = {"P1": 1800.0, "P2": 3600.0, "P3": 14400.0}  # seconds between updates; P4: none
CHANNELS = ("desk", "webhook", "email", "chat", "status-page")
OPEN = ("triggered", "acknowledged", "investigating", "identified", "mitigated")
PLAIN_STATUS = {"triggered": "are looking into", "acknowledged": "are looking into",
                "investigating": "are investigating", "identified": "have found the cause of",
                "mitigated": "have put a fix in place for", "resolved": "have resolved",
                "closed": "have resolved"}


def _clock(t: float) -> str:
    return (format_timestamp(t) or "")[11:16] + " UTC"


def cadence(priority: str) -> float | None:
    """Seconds between updates at ``priority`` (None: no cadence)."""
    return CADENCE.get(priority)


def last_update(log: Sequence[dict[str, Any]]) -> float | None:
    sent = [e["at"] for e in log if e["type"] == "update.sent"]
    return max(sent) if sent else None


def next_due(row: dict[str, Any], log: Sequence[dict[str, Any]]) -> float | None:
    """When the next update is due (None: none is, the incident is over or has no cadence)."""
    every = cadence(row["priority"])
    if every is None or row["status"] not in OPEN:
        return None
    since = last_update(log)
    return (since if since is not None else row["triggered_at"]) + every


def internal_names(row: dict[str, Any], log: Sequence[dict[str, Any]]) -> set[str]:
    """Names a customer must not read: services, root cause, teams, people, the id."""
    names = {row["id"], *(row.get("services") or [])}
    for key in ("root_cause", "owner_team", "owner_person", "commander"):
        if row.get(key):
            names.add(row[key])
    names |= {h["person"] for h in holders(log).values()}
    names |= {e["actor"] for e in log if e["actor"] != "triage"}
    return {n for n in names if n and len(n) >= 2}


def draft(row: dict[str, Any], log: Sequence[dict[str, Any]], audience: str, *,
          now: float) -> str:
    """The template for ``audience``, filled from what the desk knows now."""
    if audience not in AUDIENCES:
        raise RuleError("audience", f"one of {', '.join(AUDIENCES)}; got {audience!r}")
    due = next_due(row, log)
    every = cadence(row["priority"]) or 3600.0
    next_at = due if due is not None and due > now else now + every
    status = row["status"]
    if audience == "responders":
        entries = [e for e in log if e["type"] == "entry.added"]
        actions = [e["body"]["text"] for e in entries if e["body"]["entry"] in
                   ("action", "decision")][-3:]
        return (f"CONDITIONS: {row['title']} ({row['priority']}, {status}); "
                f"{'alerts still firing' if row.get('firing') else 'no alert firing'}. "
                f"Probable root cause: {row.get('root_cause') or 'not known yet'}.\n"
                f"ACTIONS: {'; '.join(actions) if actions else 'none recorded yet'}.\n"
                f"NEEDS: ")
    if audience in ("internal", "executive"):
        services = ", ".join(row.get("services") or []) or "unknown"
        return (f"IMPACT: {row['priority']} incident on {services}"
                f"{'; alerts still firing' if row.get('firing') else ''}.\n"
                f"STATUS: {status}"
                f"{'; incident commander ' + row['commander'] if row.get('commander') else ''}."
                + (f"\nNEXT UPDATE: by {_clock(next_at)}." if status in OPEN else
                   "\nNEXT UPDATE: none planned (the incident is over)."))
    return (f"We {PLAIN_STATUS.get(status, 'are looking into')} a problem that may affect "
            "some of our services. We are working on it and will post the next update by "
            f"{_clock(next_at)}." if status in OPEN else
            "The problem that affected some of our services is resolved. Thank you for "
            "your patience.")


def send_update(row: dict[str, Any], log: Sequence[dict[str, Any]], audience: str,
                text: str, *, actor: str, at: float, channel: str = "desk"
                ) -> list[dict[str, Any]]:
    """Record an update sent to ``audience`` (the comms log): the row to append."""
    check_actor(actor)
    if audience not in AUDIENCES:
        raise RuleError("audience", f"one of {', '.join(AUDIENCES)}; got {audience!r}")
    if channel not in CHANNELS:
        raise RuleError("channel", f"one of {', '.join(CHANNELS)}; got {channel!r}")
    text = check_text(text)
    if row["status"] == "closed":
        raise ConflictError("status", "the incident is closed")
    if audience == "customers":
        for name in sorted(internal_names(row, log), key=len, reverse=True):
            if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text, re.IGNORECASE):
                raise RuleError("text", f'a customer update names "{name}", an internal name')
    seq = (log[-1]["seq"] if log else row["seq"]) + 1
    return [{"incident_id": row["id"], "seq": seq, "type": "update.sent", "actor": actor,
             "at": at, "body": {"audience": audience, "channel": channel, "text": text},
             "source_id": None}]


def remind(row: dict[str, Any], log: Sequence[dict[str, Any]], *, now: float
           ) -> list[dict[str, Any]]:
    """An ``update.overdue`` row if the next update is overdue and not reminded of yet."""
    due = next_due(row, log)
    if due is None or now < due:
        return []
    if any(e["type"] == "update.overdue" and e["body"]["due"] == due for e in log):
        return []
    seq = (log[-1]["seq"] if log else row["seq"]) + 1
    return [{"incident_id": row["id"], "seq": seq, "type": "update.overdue",
             "actor": "desk", "at": now, "body": {"due": due, "priority": row["priority"]},
             "source_id": None}]


def comms_log(log: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every message sent (audience, channel, text, sent at, by whom), each with the
    attempts to deliver it to webhook receivers (route, HTTP status or error, outcome)."""
    out: list[dict[str, Any]] = []
    by_seq: dict[int, dict[str, Any]] = {}
    for e in log:
        if e["type"] == "update.sent":
            entry = {"audience": e["body"]["audience"], "channel": e["body"]["channel"],
                     "text": e["body"]["text"], "sent_at": e["at"], "by": e["actor"],
                     "seq": e["seq"], "deliveries": []}
            by_seq[e["seq"]] = entry
            out.append(entry)
        elif e["type"] == "notify.attempt" and e["body"]["about"] in by_seq:
            b = e["body"]
            by_seq[b["about"]]["deliveries"].append({
                "route": b["route"], "attempt": b["attempt"], "status": b["status"],
                "error": b["error"], "outcome": b["outcome"], "at": e["at"]})
    return out
