"""What responders do to an incident: the rules, as pure functions from the incident's state
and its log to the log rows a command appends (``triage.desk.store`` writes them).

**Status** moves forward along triggered → acknowledged → investigating → identified →
mitigated → resolved → closed; a move may skip steps (an incident fixed at once goes from
acknowledged to resolved), and each step reached gets its own time, never earlier than the
step before it. Going back is a correction (``correct=True``) and needs a reason. A resolved
incident reopens (to investigating) within ``REOPEN_WITHIN`` of its resolution, with a
reason; a closed one never does (open a new one).

**The timeline** is typed: every entry has one of ``ENTRY_TYPES``, an author, a time, and
may be pinned; a hypothesis is open until confirmed or refuted. Triage's own events and
every status change, role change and access grant are on it too (``timeline``).

**Roles** are time-bounded: a person assumes a role (incident commander, comms lead, ops
lead, scribe, liaison) and renounces it, and a handoff does both in one step with a note.
One person holds a role at a time.

>>> row = {"id": "inc-1", "status": "triggered", "triggered_at": 0.0,
...        **{f"{s}_at": None for s in STATUSES[1:]}, "seq": 1, "commander": None}
>>> rows = set_status(row, [], "acknowledged", actor="ana", at=60.0)
>>> [(r["type"], r["body"]["to"]) for r in rows]
[('status.changed', 'acknowledged')]
>>> set_status(row, [], "closed", actor="ana", at=60.0)  # doctest: +ELLIPSIS
Traceback (most recent call last):
...
triage.desk.rules.ConflictError: status: closed only follows resolved (...)
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from triage.core.timeutil import format_timestamp
from triage.desk.mitigation import stability
from triage.desk.rules import (
    ConflictError,
    MissingError,
    RuleError,
    check_actor,
    check_text,
)
from triage.desk.rules import row_of as _row
from triage.desk.schema import STATUSES

ENTRY_TYPES = ("alert", "observation", "hypothesis", "negative_finding", "decision", "action",
               "mitigation", "status_update", "role_change", "access_grant", "change")
# what a responder may post (the others are written by the desk itself, from what happened)
POSTABLE = ("observation", "hypothesis", "negative_finding", "decision", "action")
HYPOTHESIS_STATES = ("open", "confirmed", "refuted")
ROLES = ("incident_commander", "comms_lead", "ops_lead", "scribe", "liaison")
REOPEN_WITHIN = 7 * 86400.0


def _last_step_at(row: dict[str, Any], upto: str) -> tuple[str, float] | None:
    """The latest status reached before ``upto`` in the order, and its time."""
    best = None
    for s in STATUSES[:STATUSES.index(upto)]:
        t = row.get(f"{s}_at")
        if t is not None:
            best = (s, t)
    return best


def set_status(row: dict[str, Any], log: Sequence[dict[str, Any]], to: str, *, actor: str,
               at: float, reason: str | None = None, correct: bool = False
               ) -> list[dict[str, Any]]:
    """Move the incident to status ``to`` at ``at``: the log rows to append. A
    ``RuleError`` names what the rules refuse."""
    check_actor(actor)
    if to not in STATUSES:
        raise RuleError("status", f"one of {', '.join(STATUSES)}; got {to!r}")
    now = row["status"]
    order, target = STATUSES.index(now), STATUSES.index(to)
    seq = (log[-1]["seq"] if log else row["seq"]) + 1
    body: dict[str, Any] = {"from": now, "to": to}
    if to == now:
        raise ConflictError("status", f"the incident is {now} already")
    if to == "closed" and now != "resolved":
        raise ConflictError("status", f"closed only follows resolved (the incident is {now})")
    if target < order:
        if now == "closed":
            raise ConflictError("status", "a closed incident does not reopen: open a new one")
        reopening = now == "resolved" and to == "investigating"
        if reopening:
            if reason is None:
                raise RuleError("reason", "a reopened incident needs a reason")
            resolved_at = row.get("resolved_at") or 0.0
            if at - resolved_at > REOPEN_WITHIN:
                raise ConflictError("status", "resolved more than 7 days ago: open a new incident")
        elif not correct:
            raise ConflictError("status", f"{to} comes before {now}: a correction "
                            "(correct, with a reason) can go back")
        elif reason is None:
            raise RuleError("reason", "a correction needs a reason")
        body.update(reason=check_text(reason, "reason"),
                    kind="reopened" if reopening else "corrected")
        return [_row(row["id"], seq, "status.changed", actor, at, body)]
    if to == "resolved":
        stable, why = stability(log, now=at)
        if not stable:
            if reason is None:
                raise ConflictError("status", f"{why}; give a reason to resolve anyway")
            body["overrode"] = why
    before = _last_step_at(row, to)
    if before is not None and at < before[1]:
        raise RuleError("at", f"{to} cannot be earlier than {before[0]} "
                        f"({at:.0f} < {before[1]:.0f})")
    if reason is not None:
        body["reason"] = check_text(reason, "reason")
    return [_row(row["id"], seq, "status.changed", actor, at, body)]


def apply_status(row: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """The incident after a ``status.changed`` row: the status, and its step's time if the
    step was not reached before; a move back clears the times of the steps after it (the
    log keeps them)."""
    body = change["body"]
    new = {**row, "status": body["to"], "seq": change["seq"], "updated_at": change["at"]}
    to = STATUSES.index(body["to"])
    if to < STATUSES.index(body["from"]):
        for s in STATUSES[to + 1:]:
            new[f"{s}_at"] = None
    elif new.get(f"{body['to']}_at") is None:
        new[f"{body['to']}_at"] = change["at"]
    return new


def add_entry(row: dict[str, Any], log: Sequence[dict[str, Any]], kind: str, text: str, *,
              actor: str, at: float, pinned: bool = False) -> list[dict[str, Any]]:
    """A timeline entry a responder posts (an observation, a hypothesis (open), a negative
    finding, a decision, an action)."""
    check_actor(actor)
    if kind not in POSTABLE:
        raise RuleError("type", f"one of {', '.join(POSTABLE)}; got {kind!r}")
    if row["status"] == "closed":
        raise ConflictError("status", "the incident is closed")
    body: dict[str, Any] = {"entry": kind, "text": check_text(text), "pinned": bool(pinned)}
    if kind == "hypothesis":
        body["state"] = "open"
    seq = (log[-1]["seq"] if log else row["seq"]) + 1
    return [_row(row["id"], seq, "entry.added", actor, at, body)]


def _entry(log: Sequence[dict[str, Any]], seq: int) -> dict[str, Any]:
    for e in log:
        if e["seq"] == seq and e["type"] == "entry.added":
            return e
    raise MissingError("entry", f"no timeline entry #{seq} on this incident")


def pin(row: dict[str, Any], log: Sequence[dict[str, Any]], entry: int, *, actor: str,
        at: float, pinned: bool = True) -> list[dict[str, Any]]:
    check_actor(actor)
    _entry(log, entry)
    return [_row(row["id"], log[-1]["seq"] + 1, "entry.pinned", actor, at,
                 {"entry": entry, "pinned": pinned})]


def judge(row: dict[str, Any], log: Sequence[dict[str, Any]], entry: int, state: str, *,
          actor: str, at: float, reason: str | None = None) -> list[dict[str, Any]]:
    """Confirm or refute a hypothesis (or open it again)."""
    check_actor(actor)
    target = _entry(log, entry)
    if target["body"]["entry"] != "hypothesis":
        raise ConflictError("entry", f"#{entry} is a {target['body']['entry']}, not a hypothesis")
    if state not in HYPOTHESIS_STATES:
        raise RuleError("state", f"one of {', '.join(HYPOTHESIS_STATES)}; got {state!r}")
    body: dict[str, Any] = {"entry": entry, "state": state}
    if reason is not None:
        body["reason"] = check_text(reason, "reason")
    return [_row(row["id"], log[-1]["seq"] + 1, "hypothesis.judged", actor, at, body)]


def holders(log: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Who holds each role now: role -> {person, since, note}."""
    now: dict[str, dict[str, Any]] = {}
    for e in log:
        body = e["body"]
        if e["type"] == "role.assumed":
            now[body["role"]] = {"person": body["person"], "since": e["at"],
                                 "note": body.get("note")}
        elif e["type"] == "role.renounced" and now.get(body["role"], {}).get(
                "person") == body["person"]:
            del now[body["role"]]
    return now


def assume_role(row: dict[str, Any], log: Sequence[dict[str, Any]], role: str, person: str,
                *, actor: str, at: float, note: str | None = None) -> list[dict[str, Any]]:
    """``person`` takes ``role``; whoever held it hands it over (renounced, with the note)."""
    check_actor(actor)
    if role not in ROLES:
        raise RuleError("role", f"one of {', '.join(ROLES)}; got {role!r}")
    check_actor(person, "person")
    if row["status"] == "closed":
        raise ConflictError("status", "the incident is closed")
    seq = (log[-1]["seq"] if log else row["seq"]) + 1
    held = holders(log).get(role)
    rows = []
    if held is not None:
        if held["person"] == person:
            raise ConflictError("person", f"{person} holds {role} already")
        rows.append(_row(row["id"], seq, "role.renounced", actor, at, {
            "role": role, "person": held["person"], "note": note, "to": person}))
        seq += 1
    rows.append(_row(row["id"], seq, "role.assumed", actor, at, {
        "role": role, "person": person, "note": note,
        **({"from": held["person"]} if held is not None else {})}))
    return rows


def renounce_role(row: dict[str, Any], log: Sequence[dict[str, Any]], role: str, *,
                  actor: str, at: float, note: str | None = None) -> list[dict[str, Any]]:
    check_actor(actor)
    held = holders(log).get(role)
    if held is None:
        raise ConflictError("role", f"nobody holds {role}")
    return [_row(row["id"], log[-1]["seq"] + 1, "role.renounced", actor, at,
                 {"role": role, "person": held["person"], "note": note})]


def _triage_text(kind: str, body: dict[str, Any]) -> str:
    inc = body.get("incident", {})
    return (f"triage: {kind.split('.', 1)[1]}: {inc.get('priority')}, "
            f"{inc.get('alert_count')} alerts on {', '.join(inc.get('services') or [])}")


def _reason(body: dict[str, Any], key: str = "reason", fmt: str = ": {}") -> str:
    return fmt.format(body[key]) if body.get(key) else ""


def _mitigation_text(kind: str, body: dict[str, Any]) -> str:
    crit = f"PromQL {body['promql']}" if body.get("promql") else body.get("manual") or "none"
    return (f"{body['action']}{_reason(body, 'hypothesis', ' (tests #{})')}; success: {crit}, "
            f"held {body['window'] / 60:.0f} min")


def _access_text(kind: str, body: dict[str, Any]) -> str:
    what = kind.split(".", 1)[1]
    if what == "requested":
        return (f"{body['who']} asks for {body['level']} on {body['resource']} for "
                f"{body['seconds'] / 60:.0f} min: {body['why']}")
    return f"request #{body['request']} {what}"


# log row type -> (timeline entry type, its text); the others are not on the timeline
# (entry.added is the entry itself; entry.pinned and hypothesis.judged change one)
ENTRY_OF: dict[str, tuple[str, Callable[[str, dict[str, Any]], str]]] = {
    "triage.created": ("alert", _triage_text),
    "triage.updated": ("alert", _triage_text),
    "triage.resolved": ("alert", _triage_text),
    "status.changed": ("status_update",
                       lambda k, b: f"{b['from']} → {b['to']}{_reason(b)}"),
    "role.assumed": ("role_change",
                     lambda k, b: f"{b['person']} takes {b['role']}{_reason(b, 'note', ' ({})')}"),
    "role.renounced": ("role_change", lambda k, b: f"{b['person']} hands over {b['role']}"
                                                   f"{_reason(b, 'note', ' ({})')}"),
    "mitigation.added": ("mitigation", _mitigation_text),
    "mitigation.outcome": ("mitigation", lambda k, b: f"#{b['mitigation']} {b['outcome']}"
                                                      f"{_reason(b, 'note')}"),
    "change.emergency": ("change", lambda k, b: f"emergency {b['kind']} on {b['service']} "
                                                f"({b['risk']} risk): {b['what']}; rollback: "
                                                f"{b['rollback']}"),
    "change.approved": ("change", lambda k, b: f"change #{b['change']} "
                                               + ("retro-approved" if b["retro"] else "approved")),
    **{f"access.{w}": ("access_grant", _access_text)
       for w in ("requested", "granted", "denied", "revoked", "expired")},
    "update.sent": ("status_update",
                    lambda k, b: f"to {b['audience']} ({b['channel']}): {b['text']}"),
    "update.overdue": ("status_update", lambda k, b: f"update overdue ({b['priority']}: due "
                                                     f"{format_timestamp(b['due'])})"),
}


def timeline(log: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The incident's typed timeline from its log: entries as posted (with their pin and a
    hypothesis's state as they are now), and what else happened as the entry types of
    ``ENTRY_OF`` (triage's events as ``alert``, status changes and updates as
    ``status_update``, role changes, mitigations, changes, access grants)."""
    out: list[dict[str, Any]] = []
    by_seq: dict[int, dict[str, Any]] = {}
    for e in log:
        body, kind = e["body"], e["type"]
        entry: dict[str, Any] | None = None
        if kind == "entry.added":
            entry = {"type": body["entry"], "text": body["text"], "pinned": body["pinned"],
                     **({"state": body["state"]} if "state" in body else {})}
        elif kind in ENTRY_OF:
            entry_type, text = ENTRY_OF[kind]
            entry = {"type": entry_type, "text": text(kind, body), "pinned": False}
        elif kind == "entry.pinned" and body["entry"] in by_seq:
            by_seq[body["entry"]]["pinned"] = body["pinned"]
        elif kind == "hypothesis.judged" and body["entry"] in by_seq:
            by_seq[body["entry"]]["state"] = body["state"]
        if entry is not None:
            entry.update(seq=e["seq"], at=e["at"], author=e["actor"])
            by_seq[e["seq"]] = entry
            out.append(entry)
    return out
