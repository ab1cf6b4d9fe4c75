"""What every desk rule shares: its errors (a wrong value, a conflict with the incident's
state, something missing) and the checks of who does it and what they wrote."""

from __future__ import annotations

from typing import Any

from triage.errors import InputError

MAX_TEXT = 10_000


class RuleError(InputError):
    """A command with a wrong value (names the field and why): HTTP 422."""


class ConflictError(RuleError):
    """A command the incident's state does not allow now: HTTP 409."""


class MissingError(RuleError):
    """No such incident, or no such entry on it: HTTP 404."""


def row_of(incident_id: str, seq: int, kind: str, actor: str, at: float,
         body: dict[str, Any]) -> dict[str, Any]:
    return {"incident_id": incident_id, "seq": seq, "type": kind, "actor": actor, "at": at,
            "body": body, "source_id": None}


def check_actor(actor: str, field: str = "actor") -> None:
    if not isinstance(actor, str) or not actor.strip() or len(actor) > 128:
        raise RuleError(field, "a name of 1 to 128 characters")


def check_text(text: Any, field: str = "text") -> str:
    if not isinstance(text, str) or not text.strip():
        raise RuleError(field, "empty")
    if len(text) > MAX_TEXT:
        raise RuleError(field, f"longer than {MAX_TEXT} characters")
    return text
