"""The mitigation log: what was tried, which hypothesis it tests, how to tell it worked, and
how it turned out; and the stabilization window that gates resolving.

A mitigation has an action, optionally the timeline entry of the hypothesis it tests, and
success criteria: a PromQL expression (it holds when Prometheus returns any series for it,
as an alerting rule fires: ``rate(http_errors_total[5m]) < 0.01``) or a manual check (a
sentence a person confirms). Checks are recorded as they are made (``desk serve`` queries
Prometheus every 15 s; a person records a manual one). Its outcome is worked, failed or
abandoned.

**Stabilization.** While a mitigation with criteria is live (no outcome yet, or worked),
the incident may resolve only once those criteria have held, check after check, for the
mitigation's window (10 minutes by default). A resolution with a reason overrides it.

>>> log = [{"seq": 4, "type": "mitigation.added", "at": 0.0, "actor": "ana", "body": {
...     "action": "roll back", "hypothesis": None, "promql": "up == 1", "manual": None,
...     "window": 600.0}}]
>>> stability(log, now=100.0)
(False, 'mitigation #4 (roll back): its criteria have not held yet')
>>> log += [{"seq": 5, "type": "mitigation.checked", "at": 100.0, "actor": "desk",
...          "body": {"mitigation": 4, "holds": True, "value": "1", "source": "prometheus"}}]
>>> stability(log, now=400.0)
(False, 'mitigation #4 (roll back): its criteria have held for 5 of 10 minutes')
>>> stability(log, now=700.0)
(True, '')
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from triage.desk.rules import ConflictError, MissingError, RuleError, check_actor, check_text
from triage.desk.rules import row_of as _row

OUTCOMES = ("worked", "failed", "abandoned")
WINDOW = 600.0
MAX_WINDOW = 86_400.0


def _next(row: dict[str, Any], log: Sequence[dict[str, Any]]) -> int:
    return int((log[-1]["seq"] if log else row["seq"]) + 1)


def add_mitigation(row: dict[str, Any], log: Sequence[dict[str, Any]], action: str, *,
                   actor: str, at: float, hypothesis: int | None = None,
                   promql: str | None = None, manual: str | None = None,
                   window: float = WINDOW) -> list[dict[str, Any]]:
    """A mitigation tried: the row to append."""
    check_actor(actor)
    action = check_text(action, "action")
    if row["status"] in ("resolved", "closed"):
        raise ConflictError("status", f"the incident is {row['status']}")
    if promql is not None and manual is not None:
        raise RuleError("criteria", "either a PromQL expression or a manual check, not both")
    if promql is not None:
        promql = check_text(promql, "promql")
    if manual is not None:
        manual = check_text(manual, "manual")
    if not isinstance(window, int | float) or not 0 <= window <= MAX_WINDOW:
        raise RuleError("window", f"seconds, from 0 to {MAX_WINDOW:.0f}")
    if hypothesis is not None:
        target = next((e for e in log if e["seq"] == hypothesis and e["type"] == "entry.added"),
                      None)
        if target is None:
            raise MissingError("hypothesis", f"no timeline entry #{hypothesis}")
        if target["body"]["entry"] != "hypothesis":
            raise ConflictError("hypothesis", f"#{hypothesis} is a {target['body']['entry']}, "
                                "not a hypothesis")
    return [_row(row["id"], _next(row, log), "mitigation.added", actor, at, {
        "action": action, "hypothesis": hypothesis, "promql": promql, "manual": manual,
        "window": float(window)})]


def _mitigation(log: Sequence[dict[str, Any]], seq: int) -> dict[str, Any]:
    for e in log:
        if e["seq"] == seq and e["type"] == "mitigation.added":
            return e
    raise MissingError("mitigation", f"no mitigation #{seq} on this incident")


def check(row: dict[str, Any], log: Sequence[dict[str, Any]], mitigation: int, holds: bool,
          *, actor: str, at: float, value: str | None = None, source: str = "manual"
          ) -> list[dict[str, Any]]:
    """A check of a mitigation's criteria (Prometheus's answer, or a person's)."""
    check_actor(actor)
    _mitigation(log, mitigation)
    if not isinstance(holds, bool):
        raise RuleError("holds", "true or false")
    return [_row(row["id"], _next(row, log), "mitigation.checked", actor, at, {
        "mitigation": mitigation, "holds": holds, "value": value, "source": source})]


def set_outcome(row: dict[str, Any], log: Sequence[dict[str, Any]], mitigation: int,
                outcome: str, *, actor: str, at: float, note: str | None = None
                ) -> list[dict[str, Any]]:
    check_actor(actor)
    _mitigation(log, mitigation)
    if outcome not in OUTCOMES:
        raise RuleError("outcome", f"one of {', '.join(OUTCOMES)}; got {outcome!r}")
    body: dict[str, Any] = {"mitigation": mitigation, "outcome": outcome}
    if note is not None:
        body["note"] = check_text(note, "note")
    return [_row(row["id"], _next(row, log), "mitigation.outcome", actor, at, body)]


def mitigations(log: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each mitigation with its checks, outcome, and since when its criteria have held
    without a failing check (``held_since``; None if the last check failed or none was
    made)."""
    out: dict[int, dict[str, Any]] = {}
    for e in log:
        body = e["body"]
        if e["type"] == "mitigation.added":
            out[e["seq"]] = {**body, "seq": e["seq"], "at": e["at"], "by": e["actor"],
                             "checks": [], "outcome": None, "held_since": None}
        elif e["type"] == "mitigation.checked" and body["mitigation"] in out:
            m = out[body["mitigation"]]
            m["checks"].append({"at": e["at"], "holds": body["holds"], "value": body["value"],
                                "source": body["source"], "by": e["actor"]})
            if not body["holds"]:
                m["held_since"] = None
            elif m["held_since"] is None:
                m["held_since"] = e["at"]
        elif e["type"] == "mitigation.outcome" and body["mitigation"] in out:
            out[body["mitigation"]]["outcome"] = body["outcome"]
    return list(out.values())


def stability(log: Sequence[dict[str, Any]], *, now: float) -> tuple[bool, str]:
    """Whether every live mitigation's criteria have held for its window (and why not)."""
    for m in mitigations(log):
        if m["outcome"] in ("failed", "abandoned") or (m["promql"] is None
                                                       and m["manual"] is None):
            continue
        name = f"mitigation #{m['seq']} ({m['action']})"
        if m["held_since"] is None:
            return False, f"{name}: its criteria have not held yet"
        held = now - m["held_since"]
        if held < m["window"]:
            return False, (f"{name}: its criteria have held for {held / 60:.0f} of "
                           f"{m['window'] / 60:.0f} minutes")
    return True, ""
