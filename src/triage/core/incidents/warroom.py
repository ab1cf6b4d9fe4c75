"""The war-room decision: when an incident gets everyone in one room, and why.

Rules (all config, section ``war_room``)::

    war_room:
      p1: true             # a P1 opens a war room at once
      p2_after: 15m        # a P2 (or higher) incident older than this opens one; null: off
      min_teams: 3         # services of this many distinct teams affected opens one; null: off
      decide_within: 15m   # the decision window, from the incident's opening

The decision is made within the incident's first ``decide_within``. Exactly:

* A P1 (with ``p1``) always opens, at any age: at ``priority_since`` when given, else ``now``.
* The P2 rule fires at ``max(opened_at + p2_after, priority_since)``; the team rule fires at
  ``now`` (the update that brought the n-th team). A rule opens the room only if it fired at or
  before ``opened_at + decide_within``; the decision reports the time the rule fired, even when
  ``now`` is later (a replay or a late re-check still says 10:17:11, not 10:20:00).
* So after the window a closed war room stays closed unless the incident becomes a P1.
* Once open, a war room stays open: pass the ``previous`` decision and it is returned as is.
  (Rules only ever open a room; responders close it.)

``p2_after`` must not exceed ``decide_within``, or the P2 rule could never fire. The function
is pure: the caller schedules a re-check at ``next_check(...)`` so a P2's timer fires in event
time even if no alert arrives.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from triage.core.incidents.priority import rank
from triage.core.thresholds import format_duration
from triage.core.timeutil import parse_duration
from triage.errors import ConfigError

_KEYS: Final = ("p1", "p2_after", "min_teams", "decide_within")
_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})


@dataclass(frozen=True, slots=True)
class WarRoomPolicy:
    """The validated ``war_room`` section; ``None`` turns the P2 or the team rule off.

    >>> WarRoomPolicy().p2_after
    900.0
    """

    p1: bool = True
    p2_after: float | None = 900.0
    min_teams: int | None = 3
    decide_within: float = 900.0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.decide_within) and self.decide_within >= 0):
            raise ConfigError("war_room.decide_within",
                              f"expected a duration >= 0, got {self.decide_within!r}")
        if self.p2_after is not None:
            if not (math.isfinite(self.p2_after) and self.p2_after >= 0):
                raise ConfigError("war_room.p2_after",
                                  f"expected a duration >= 0, got {self.p2_after!r}")
            if self.p2_after > self.decide_within:
                raise ConfigError(
                    "war_room.p2_after",
                    f"{format_duration(self.p2_after)} is after decide_within "
                    f"{format_duration(self.decide_within)}, so the P2 rule could never fire")
        if self.min_teams is not None and self.min_teams < 1:
            raise ConfigError("war_room.min_teams", f"expected a count >= 1, got "
                                                    f"{self.min_teams!r}")


@dataclass(frozen=True, slots=True)
class WarRoomDecision:
    """Whether the war room is open, why, and when the deciding rule fired (None if closed)."""

    open: bool
    reason: str
    at: float | None


def parse_war_room(data: object) -> WarRoomPolicy:
    """Validate the raw ``war_room`` config section; errors name the key.

    >>> parse_war_room({"p2_after": "10m", "min_teams": 4}).p2_after
    600.0
    >>> parse_war_room({"p2_after": "soon"})
    Traceback (most recent call last):
    ...
    triage.errors.ConfigError: config war_room.p2_after: expected a duration like '5m' or \
'1h30m', got 'soon'
    """
    if data is None:
        return WarRoomPolicy()
    if not isinstance(data, Mapping):
        raise ConfigError("war_room", f"expected a mapping, got {type(data).__name__}")
    for key in data:
        if key not in _KEYS:
            raise ConfigError(f"war_room.{key}",
                              f"unknown setting (expected one of {', '.join(_KEYS)})")
    defaults = WarRoomPolicy()
    p1 = _bool(data["p1"], "war_room.p1") if "p1" in data else defaults.p1
    p2_after = (_duration(data["p2_after"], "war_room.p2_after")
                if data.get("p2_after") is not None else
                None if "p2_after" in data else defaults.p2_after)
    min_teams = (_count(data["min_teams"], "war_room.min_teams")
                 if data.get("min_teams") is not None else
                 None if "min_teams" in data else defaults.min_teams)
    decide_within = (_duration(data["decide_within"], "war_room.decide_within")
                     if data.get("decide_within") is not None else defaults.decide_within)
    return WarRoomPolicy(p1=p1, p2_after=p2_after, min_teams=min_teams,
                         decide_within=decide_within)


def decide_war_room(
    *,
    priority: str,
    opened_at: float,
    now: float,
    teams: Collection[str],
    policy: WarRoomPolicy,
    previous: WarRoomDecision | None = None,
    priority_since: float | None = None,
) -> WarRoomDecision:
    """Decide whether the incident's war room is open at event time ``now``.

    ``teams``: the teams of the affected services (duplicates and empty names are ignored).
    ``priority_since``: when the incident reached ``priority`` (default: it always had it).

    >>> policy = WarRoomPolicy()
    >>> decide_war_room(priority="P2", opened_at=0.0, now=1200.0, teams=["cart"], policy=policy)
    WarRoomDecision(open=True, reason='P2 open for 15m (since 00:00:00)', at=900.0)
    >>> decide_war_room(priority="P3", opened_at=0.0, now=60.0, policy=policy,
    ...                 teams=["cart", "checkout", "web"]).reason
    '3 teams affected: cart, checkout, web'
    """
    if previous is not None and previous.open:
        return previous
    rank_ = rank(priority)
    if policy.p1 and rank_ == 1:
        at = now if priority_since is None else max(opened_at, priority_since)
        return WarRoomDecision(True, "P1: war room opens at once", at)

    deadline = opened_at + policy.decide_within
    fired: list[tuple[float, int, str]] = []
    closed: list[str] = []

    if policy.p2_after is not None and rank_ <= 2:
        since = opened_at if priority_since is None else max(opened_at, priority_since)
        fires_at = max(opened_at + policy.p2_after, since)
        if fires_at <= now and fires_at <= deadline:
            fired.append((fires_at, 0, f"{priority} open for "
                                       f"{_age(fires_at - opened_at)} (since {_hms(opened_at)})"))
        elif fires_at > deadline:
            closed.append(f"{priority} since {_hms(since)}, after the decision window")
        else:
            closed.append(f"{priority} open for {_age(now - opened_at)}, opens after "
                          f"{_age(policy.p2_after)} (at {_hms(fires_at)})")
    else:
        closed.append(priority)

    names = sorted({t for t in teams if t})
    if policy.min_teams is not None:
        listed = f": {', '.join(names)}" if names else ""
        counted = f"{len(names)} team{'' if len(names) == 1 else 's'} affected{listed}"
        if len(names) >= policy.min_teams and now <= deadline:
            fired.append((now, 1, counted))
        else:
            closed.append(f"{counted} ({policy.min_teams} needed)")

    if fired:
        fired.sort()
        return WarRoomDecision(True, "; ".join(text for _, _, text in fired), fired[0][0])
    if now > deadline:
        window = (f"no war room: not opened within the first {_age(policy.decide_within)} "
                  f"(by {_hms(deadline)})")
        only_p1 = "; only a P1 opens it now" if policy.p1 else ""
        return WarRoomDecision(False, window + only_p1, None)
    return WarRoomDecision(False, "no war room yet: " + "; ".join(closed), None)


def next_check(
    *,
    priority: str,
    opened_at: float,
    policy: WarRoomPolicy,
    priority_since: float | None = None,
) -> float | None:
    """The event time at which the decision could change without new alerts, or None.

    Only the P2 timer changes with time alone; the caller re-decides at that time.

    >>> next_check(priority="P2", opened_at=100.0, policy=WarRoomPolicy())
    1000.0
    >>> next_check(priority="P3", opened_at=100.0, policy=WarRoomPolicy()) is None
    True
    """
    if policy.p1 and rank(priority) == 1:
        return None  # open at once: nothing to wait for
    if policy.p2_after is None or rank(priority) > 2:
        return None
    fires_at = opened_at + policy.p2_after
    if priority_since is not None and priority_since > fires_at:
        return None  # the update that raised the priority already decided
    return fires_at


def _hms(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S")


def _age(seconds: float) -> str:
    # Whole seconds: "open for 15m", not "open for 900.25s".
    return format_duration(float(round(seconds)))


def _bool(value: object, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE  # environment variables arrive as strings
    raise ConfigError(key, f"expected true or false, got {value!r}")


def _duration(value: object, key: str) -> float:
    try:
        seconds = parse_duration(value, key)
    except ValueError as exc:
        raise ConfigError(key, str(exc).removeprefix(f"{key}: ")) from None
    if not math.isfinite(seconds):
        raise ConfigError(key, f"expected a finite duration, got {value!r}")
    return seconds


def _count(value: object, key: str) -> int:
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(key, f"expected a whole number, got {value!r}")
