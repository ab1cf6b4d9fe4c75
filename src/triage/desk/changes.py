"""Emergency changes and just-in-time access, as the incident's own records.

**Emergency change** (the emergency CAB): what, why, risk, rollback plan, approver and the
time of approval, or a retro-approval after the fact. A high-risk change needs an approver
other than the person who made it. Each change is linked to its incident and written back
as one of triage's change records (notification kind ``change``, format ``change``: point
a route at ``triage serve``'s ``/api/v1/alerts``), so triage names it as a suspect the next
time its service fails.

**Just-in-time access**: a request (who, what resource, what level, why, for how long),
approved or denied by someone else, granted until an expiry, revoked early or expired by
the desk (``desk serve`` checks every 30 s). Every step is a row of the log: the audit
trail of who held what, when and why. The desk does not talk to a cloud IAM; it records,
enforces the expiry in its own data, and tells receivers (notification kind ``access``).

>>> row = {"id": "inc-1", "status": "investigating", "seq": 2}
>>> rows = record_change(row, [], service="cart", kind="config", what="raise pool to 200",
...                      why="connections exhausted", risk="high", rollback="set it back",
...                      actor="ana", at=100.0, approver="ana")
Traceback (most recent call last):
...
triage.desk.rules.ConflictError: approver: a high-risk change needs an approver other than ana
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from triage.core.timeutil import format_timestamp
from triage.desk.rules import ConflictError, MissingError, RuleError, check_actor, check_text
from triage.desk.rules import row_of as _row

RISKS = ("low", "medium", "high")
CHANGE_KINDS = ("deploy", "config", "feature_flag", "infra")
LEVELS = ("read", "write", "admin")
MAX_ACCESS = 8 * 3600.0


def _next(row: dict[str, Any], log: Sequence[dict[str, Any]]) -> int:
    return int((log[-1]["seq"] if log else row["seq"]) + 1)


def _open(row: dict[str, Any]) -> None:
    if row["status"] == "closed":
        raise ConflictError("status", "the incident is closed")


# -- emergency changes -------------------------------------------------------------------

def record_change(row: dict[str, Any], log: Sequence[dict[str, Any]], *, service: str,
                  kind: str, what: str, why: str, risk: str, rollback: str, actor: str,
                  at: float, approver: str | None = None) -> list[dict[str, Any]]:
    """An emergency change made (approved at once when ``approver`` is given)."""
    check_actor(actor)
    _open(row)
    check_actor(service, "service")
    if kind not in CHANGE_KINDS:
        raise RuleError("kind", f"one of {', '.join(CHANGE_KINDS)}; got {kind!r}")
    if risk not in RISKS:
        raise RuleError("risk", f"one of {', '.join(RISKS)}; got {risk!r}")
    body: dict[str, Any] = {"service": service, "kind": kind,
                            "what": check_text(what, "what"), "why": check_text(why, "why"),
                            "risk": risk, "rollback": check_text(rollback, "rollback")}
    seq = _next(row, log)
    body["id"] = f"emergency-{row['id']}-{seq}"
    rows = [_row(row["id"], seq, "change.emergency", actor, at, body)]
    if approver is not None:
        rows += approve_change(row, [*log, *rows], seq, approver=approver, at=at)
    return rows


def approve_change(row: dict[str, Any], log: Sequence[dict[str, Any]], change: int, *,
                   approver: str, at: float) -> list[dict[str, Any]]:
    """Approve an emergency change (a retro-approval when it comes after the change)."""
    check_actor(approver, "approver")
    target = next((e for e in log if e["seq"] == change and e["type"] == "change.emergency"),
                  None)
    if target is None:
        raise MissingError("change", f"no emergency change #{change} on this incident")
    if any(e["type"] == "change.approved" and e["body"]["change"] == change for e in log):
        raise ConflictError("change", f"change #{change} is approved already")
    if target["body"]["risk"] == "high" and approver == target["actor"]:
        raise ConflictError("approver", "a high-risk change needs an approver other than "
                            f"{target['actor']}")
    return [_row(row["id"], _next(row, log), "change.approved", approver, at,
                 {"change": change, "retro": at > target["at"]})]


def emergency_changes(log: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out: dict[int, dict[str, Any]] = {}
    for e in log:
        if e["type"] == "change.emergency":
            out[e["seq"]] = {**e["body"], "seq": e["seq"], "at": e["at"], "by": e["actor"],
                             "approver": None, "approved_at": None, "retro": None}
        elif e["type"] == "change.approved" and e["body"]["change"] in out:
            out[e["body"]["change"]].update(approver=e["actor"], approved_at=e["at"],
                                            retro=e["body"]["retro"])
    return list(out.values())


def change_record(row: dict[str, Any], entry: dict[str, Any]) -> dict[str, Any]:
    """Triage's change record for a ``change.emergency`` row (``triage.core.changes``)."""
    body = entry["body"]
    return {"id": body["id"], "service": body["service"], "kind": body["kind"],
            "at": format_timestamp(entry["at"]), "author": entry["actor"],
            "description": f"emergency change for {row['id']}: {body['what']} "
                           f"(why: {body['why']}; risk {body['risk']}; "
                           f"rollback: {body['rollback']})"}


# -- just-in-time access ---------------------------------------------------------------

def request_access(row: dict[str, Any], log: Sequence[dict[str, Any]], *, who: str,
                   resource: str, level: str, why: str, minutes: float, actor: str,
                   at: float) -> list[dict[str, Any]]:
    check_actor(actor)
    _open(row)
    check_actor(who, "who")
    resource = check_text(resource, "resource")
    if level not in LEVELS:
        raise RuleError("level", f"one of {', '.join(LEVELS)}; got {level!r}")
    if not isinstance(minutes, int | float) or not 0 < minutes * 60 <= MAX_ACCESS:
        raise RuleError("minutes", f"more than 0 and at most {MAX_ACCESS / 60:.0f}")
    return [_row(row["id"], _next(row, log), "access.requested", actor, at, {
        "who": who, "resource": resource, "level": level, "why": check_text(why, "why"),
        "seconds": float(minutes) * 60})]


def _request(log: Sequence[dict[str, Any]], seq: int) -> tuple[dict[str, Any], str]:
    found = next((e for e in log if e["seq"] == seq and e["type"] == "access.requested"),
                 None)
    if found is None:
        raise MissingError("request", f"no access request #{seq} on this incident")
    state = "requested"
    for e in log:
        if e["type"].startswith("access.") and e["body"].get("request") == seq:
            state = e["type"].split(".", 1)[1]
    return found, state


def decide_access(row: dict[str, Any], log: Sequence[dict[str, Any]], request: int,
                  approve: bool, *, approver: str, at: float, note: str | None = None
                  ) -> list[dict[str, Any]]:
    """Grant (until now + the requested time) or deny; never by the requester."""
    check_actor(approver, "approver")
    found, state = _request(log, request)
    if state != "requested":
        raise ConflictError("request", f"request #{request} is {state} already")
    if approver in (found["body"]["who"], found["actor"]):
        raise ConflictError("approver", "access is decided by someone other than who asked "
                            "for it and who gets it")
    body: dict[str, Any] = {"request": request, "note": note}
    if approve:
        body["expires_at"] = at + found["body"]["seconds"]
    return [_row(row["id"], _next(row, log), "access.granted" if approve else "access.denied",
                 approver, at, body)]


def revoke_access(row: dict[str, Any], log: Sequence[dict[str, Any]], request: int, *,
                  actor: str, at: float, reason: str | None = None) -> list[dict[str, Any]]:
    check_actor(actor)
    _, state = _request(log, request)
    if state != "granted":
        raise ConflictError("request", f"request #{request} is {state}, not granted")
    return [_row(row["id"], _next(row, log), "access.revoked", actor, at,
                 {"request": request, "reason": reason})]


def expire_access(row: dict[str, Any], log: Sequence[dict[str, Any]], *, now: float
                  ) -> list[dict[str, Any]]:
    """``access.expired`` rows for the grants whose time is up."""
    rows: list[dict[str, Any]] = []
    for grant in access(log, now=now):
        if grant["state"] == "granted" and grant["expires_at"] <= now:
            rows.append(_row(row["id"], _next(row, [*log, *rows]), "access.expired", "desk",
                             now, {"request": grant["seq"], "expired_at": grant["expires_at"]}))
    return rows


def access(log: Sequence[dict[str, Any]], *, now: float | None = None
           ) -> list[dict[str, Any]]:
    """Every request with its state (requested, granted, denied, revoked, expired), who
    decided, and when it expires; the audit trail of who held what, when and why."""
    out: dict[int, dict[str, Any]] = {}
    for e in log:
        body = e["body"]
        if e["type"] == "access.requested":
            out[e["seq"]] = {**body, "seq": e["seq"], "requested_at": e["at"],
                             "requested_by": e["actor"], "state": "requested",
                             "decided_by": None, "expires_at": None, "ended_at": None}
        elif e["type"].startswith("access.") and body.get("request") in out:
            req = out[body["request"]]
            req["state"] = e["type"].split(".", 1)[1]
            if e["type"] in ("access.granted", "access.denied"):
                req["decided_by"] = e["actor"]
                req["expires_at"] = body.get("expires_at")
            else:
                req["ended_at"] = e["at"]
    return list(out.values())
