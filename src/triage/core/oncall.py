"""On-call rotations and overrides: who owns a page at a given instant, and coverage checks.

A ``Rotation`` hands a team's pager from one member to the next every ``length`` seconds of
*local wall-clock time*: a weekly rotation with handoff ``09:00`` in ``Europe/Berlin`` hands
over at 09:00 Berlin time every Monday, summer or winter, so the shift that spans a DST change
is an hour shorter or longer in real time. A rotation may be restricted to some days of the
week and/or hours of the day (a layer of a follow-the-sun schedule). An ``Override`` puts one
person on call for a fixed window and wins over every rotation of its team.

``OnCallSchedule.on_call`` answers "who is paged for team X at t"; ``coverage`` walks every
boundary (handoffs, restriction edges, override edges) of a time range and reports exactly
when a team has nobody on call (gaps) and when two layers of one team are both on call
(overlaps). Times are epoch seconds passed in; nothing here reads a clock.

>>> from datetime import date
>>> rota = Rotation("cart", ("ana", "bo"), length=7 * 86400.0, handoff="09:00",
...                 timezone="Europe/Berlin", start=date(2026, 11, 2))
>>> schedule = OnCallSchedule([rota])
>>> schedule.on_call("cart", 1793692800.0).person  # 2026-11-03T08:00Z
'ana'
>>> schedule.on_call("cart", 1793692800.0 + 7 * 86400).person
'bo'
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Final, Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from triage.core.timeutil import parse_duration, parse_timestamp
from triage.errors import ConfigError, TimestampError

Via = Literal["override", "rotation"]

WEEKDAYS: Final[tuple[str, ...]] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_DAY_NAMES: Final[dict[str, int]] = {
    **{name: i for i, name in enumerate(WEEKDAYS)},
    **{name: i for i, name in enumerate(
        ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"))},
}
_CLOCK: Final = re.compile(r"^([01]?\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$")
# A rotation shorter than this is a typo (``length: 7`` meaning days, read as seconds), and
# the DST correction in ``Rotation.shift_index`` steps one shift at a time.
MIN_LENGTH: Final = 60.0
_DAY: Final = timedelta(days=1)


class _FieldError(ValueError):
    """A bad ``Rotation``/``Override`` field; ``parse_oncall`` turns it into a ConfigError."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


# ---------------------------------------------------------------------------------------------
# Wall-clock time


def parse_clock(text: str) -> time:
    """Parse a time of day ``HH:MM`` or ``HH:MM:SS`` (24-hour clock).

    >>> parse_clock("09:00"), parse_clock("7:30:15")
    (datetime.time(9, 0), datetime.time(7, 30, 15))
    """
    match = _CLOCK.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise ValueError(f"expected a time of day like '09:00', got {text!r}")
    return time(int(match.group(1)), int(match.group(2)), int(match.group(3) or 0))


def _local(at: float, tz: ZoneInfo) -> datetime:
    return datetime.fromtimestamp(at, tz).replace(tzinfo=None)


@lru_cache(maxsize=65536)
def _instant(wall: datetime, tz: ZoneInfo) -> float:
    """The first instant at which the local clock in ``tz`` reads ``wall`` or later.

    For an ordinary time that is simply that time; for a time that happens twice (the hour
    repeated when DST ends) it is the first occurrence; for a time that never happens (the
    hour skipped when DST starts) it is the moment of the jump. Defined this way the map
    from wall-clock time to instant never runs backwards, so shifts never have negative
    length.
    """
    before = wall.replace(tzinfo=tz, fold=0)
    after = wall.replace(tzinfo=tz, fold=1)
    off_before, off_after = before.utcoffset(), after.utcoffset()
    if off_before is None or off_after is None or off_after <= off_before:
        return before.timestamp()
    # In a gap (PEP 495: fold=0 reads it with the old offset, fold=1 with the new one); the
    # transition lies between the two readings, at a whole second in every tz database.
    lo, hi = math.floor(after.timestamp()), math.ceil(before.timestamp())
    while lo < hi:
        mid = (lo + hi) // 2
        if _local(mid, tz) >= wall:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise _FieldError("timezone", f"unknown IANA time zone {name!r} "
                                      "(e.g. 'Europe/Berlin', 'UTC')") from None


# ---------------------------------------------------------------------------------------------
# Rotations and overrides


class Shift(NamedTuple):
    """A stretch during which ``person`` is on call through one rotation's shift ``number``."""

    person: str
    start: float
    end: float
    number: int


@dataclass(frozen=True, slots=True)
class Rotation:
    """One layer of a team's schedule: members take turns, handing over at ``handoff``.

    ``start`` is the date of the first handoff, when ``members[0]`` goes on call; before it
    this rotation covers nobody. ``length`` is seconds of local wall-clock time. ``days``
    (0=Mon..6=Sun) and ``hours`` (local ``[from, to)``) restrict when the layer is active;
    a window whose end is at or before its start runs past midnight and belongs to the day
    it starts on (``21:00-09:00`` on ``fri`` covers Friday night until Saturday 09:00).

    >>> from datetime import date, time
    >>> day = Rotation("web", ("ana",), length=86400.0, handoff="09:00", timezone="UTC",
    ...                start=date(2026, 11, 2), hours=(time(9), time(17)))
    >>> day.shift_at(1794042000.0)  # 2026-11-07T09:00Z
    Shift(person='ana', start=1794042000.0, end=1794070800.0, number=5)
    >>> day.shift_at(1794042000.0 - 1) is None
    True
    """

    team: str
    members: tuple[str, ...]
    length: float
    handoff: str
    timezone: str
    start: date
    days: tuple[int, ...] | None = None
    hours: tuple[time, time] | None = None
    _tz: ZoneInfo = field(init=False, repr=False, compare=False)
    _anchor: datetime = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.team, str) or not self.team:
            raise _FieldError("team", "must be a non-empty team name")
        if not isinstance(self.members, tuple):
            object.__setattr__(self, "members", tuple(self.members))
        if not self.members:
            raise _FieldError("members", "needs at least one member")
        for i, member in enumerate(self.members):
            if not isinstance(member, str) or not member.strip():
                raise _FieldError(f"members[{i}]", f"must be a non-empty name, got {member!r}")
        if not math.isfinite(self.length) or self.length < MIN_LENGTH:
            raise _FieldError("length", f"must be at least 1m, got {self.length!r} seconds")
        try:
            handoff = parse_clock(self.handoff)
        except ValueError as exc:
            raise _FieldError("handoff", str(exc)) from None
        if isinstance(self.start, datetime) or not isinstance(self.start, date):
            raise _FieldError("start", f"must be a date (the handoff time is `handoff`), "
                                       f"got {self.start!r}")
        if self.days is not None:
            days = tuple(sorted(set(self.days)))
            if not days or any(not isinstance(d, int) or not 0 <= d <= 6 for d in days):
                raise _FieldError("days", f"must be weekdays 0=Mon..6=Sun, got {self.days!r}")
            object.__setattr__(self, "days", days)
        if self.hours is not None and (
            len(self.hours) != 2 or not all(isinstance(h, time) for h in self.hours)
        ):
            raise _FieldError("hours", f"must be two times of day, got {self.hours!r}")
        object.__setattr__(self, "_tz", _zone(self.timezone))
        object.__setattr__(self, "_anchor", datetime.combine(self.start, handoff))

    # -- shifts ------------------------------------------------------------------------------

    def boundary(self, k: int) -> float:
        """The instant of handoff ``k`` (0: the first, when ``members[0]`` takes over).

        >>> from datetime import date
        >>> r = Rotation("t", ("a", "b"), length=86400.0, handoff="09:00",
        ...              timezone="Europe/Berlin", start=date(2026, 3, 28))
        >>> (r.boundary(1) - r.boundary(0)) / 3600  # 29 March: clocks go forward
        23.0
        """
        return _instant(self._anchor + timedelta(seconds=k * self.length), self._tz)

    def shift_index(self, at: float) -> int:
        """The number ``k`` of the shift under way at ``at`` (``-1``: before ``start``).

        >>> from datetime import date
        >>> r = Rotation("t", ("a", "b"), length=86400.0, handoff="00:00", timezone="UTC",
        ...              start=date(1970, 1, 2))
        >>> r.shift_index(86399.0), r.shift_index(86400.0), r.shift_index(3 * 86400.0)
        (-1, 0, 2)
        """
        if at < self.boundary(0):
            return -1
        wall = (_local(at, self._tz) - self._anchor).total_seconds()
        k = max(0, math.floor(wall / self.length))
        # The wall clock runs backwards for an hour when DST ends, so the estimate can be off
        # by the shifts that fit into that hour; step to the exact one.
        while k > 0 and self.boundary(k) > at:
            k -= 1
        while self.boundary(k + 1) <= at:
            k += 1
        return k

    def member(self, k: int) -> str:
        """Who holds shift ``k``: members take turns in order."""
        return self.members[k % len(self.members)]

    def shift_at(self, at: float) -> Shift | None:
        """The stretch of this rotation covering ``at``, or ``None`` (before start, outside
        the restricted days/hours). The stretch is the shift clipped to the restriction
        window it falls in.
        """
        k = self.shift_index(at)
        if k < 0:
            return None
        for shift in self._clip(k, self.boundary(k), self.boundary(k + 1)):
            if shift.start <= at < shift.end:
                return shift
        return None

    def shifts(self, *, start: float, end: float) -> list[Shift]:
        """Every stretch this rotation is on call within ``[start, end)``, clipped to it.

        >>> from datetime import date
        >>> r = Rotation("t", ("a", "b"), length=3600.0, handoff="00:00", timezone="UTC",
        ...              start=date(1970, 1, 1))
        >>> [(s.person, s.start, s.end) for s in r.shifts(start=1800.0, end=7200.0)]
        [('a', 1800.0, 3600.0), ('b', 3600.0, 7200.0)]
        """
        start = max(start, self.boundary(0))
        if start >= end:
            return []
        out: list[Shift] = []
        k = self.shift_index(start)
        windows = self._windows(start, end)
        while True:
            s, e = self.boundary(k), self.boundary(k + 1)
            if s >= end:
                return out
            out.extend(self._clip(k, max(s, start), min(e, end), windows))
            k += 1

    def _clip(self, k: int, start: float, end: float,
              windows: list[tuple[float, float]] | None = None) -> Iterator[Shift]:
        if windows is None:
            windows = self._windows(start, end)
        person = self.member(k)
        for ws, we in windows:
            s, e = max(ws, start), min(we, end)
            if s < e:
                yield Shift(person, s, e, k)

    def _windows(self, start: float, end: float) -> list[tuple[float, float]]:
        """The restriction windows meeting ``[start, end)``, adjacent ones merged."""
        if self.days is None and self.hours is None:
            return [(start, end)]
        tz = self._tz
        day = _local(start, tz).date() - _DAY  # yesterday's window may run past midnight
        last = _local(end, tz).date() + _DAY
        merged: list[tuple[float, float]] = []
        while day <= last:
            if self.days is None or day.weekday() in self.days:
                if self.hours is None:
                    opens, closes = datetime.combine(day, time()), datetime.combine(day + _DAY,
                                                                                    time())
                else:
                    begin, finish = self.hours
                    opens = datetime.combine(day, begin)
                    closes = datetime.combine(day + _DAY if finish <= begin else day, finish)
                ws, we = _instant(opens, tz), _instant(closes, tz)
                if ws < we and we > start and ws < end:
                    if merged and merged[-1][1] >= ws:
                        merged[-1] = (merged[-1][0], max(merged[-1][1], we))
                    else:
                        merged.append((ws, we))
            day += _DAY
        return merged


@dataclass(frozen=True, slots=True)
class Override:
    """``person`` is on call for ``team`` over ``[starts_at, ends_at)``, whatever the rotations say.

    >>> Override("cart", "cy", 100.0, 200.0).active(150.0)
    True
    """

    team: str
    person: str
    starts_at: float
    ends_at: float

    def __post_init__(self) -> None:
        if not isinstance(self.team, str) or not self.team:
            raise _FieldError("team", "must be a non-empty team name")
        if not isinstance(self.person, str) or not self.person.strip():
            raise _FieldError("person", "must be a non-empty name")
        if not self.ends_at > self.starts_at:
            raise _FieldError("ends_at", "must be after starts_at")

    def active(self, at: float) -> bool:
        """Whether the override holds at ``at`` (start inclusive, end exclusive)."""
        return self.starts_at <= at < self.ends_at


# ---------------------------------------------------------------------------------------------
# The schedule


@dataclass(frozen=True, slots=True)
class OnCall:
    """Who is paged for ``team``, and why: an override, or rotation ``rotation_index`` (its
    position in the schedule's ``rotations``, i.e. ``oncall.rotations[i]`` in the config).
    ``shift_start``/``shift_end`` bound that layer's stretch (rotation shift clipped to its
    restriction window, or the override's window).
    """

    person: str
    team: str
    via: Via
    rotation_index: int | None
    shift_start: float
    shift_end: float


@dataclass(frozen=True, slots=True)
class Gap:
    """Nobody is on call for ``team`` over ``[start, end)``."""

    team: str
    start: float
    end: float


@dataclass(frozen=True, slots=True)
class Overlap:
    """Two or more rotation layers of ``team`` are active over ``[start, end)``; ``people``
    holds each active layer's person in config order (the first one is paged).
    """

    team: str
    start: float
    end: float
    people: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CoverageReport:
    """Gaps and overlaps per team, each sorted by team then time, adjacent ones merged."""

    start: float
    end: float
    gaps: list[Gap]
    overlaps: list[Overlap]

    @property
    def ok(self) -> bool:
        """No gaps (overlaps are resolved deterministically, so they are warnings)."""
        return not self.gaps


class OnCallSchedule:
    """All teams' rotations and overrides.

    When several entries cover an instant the first in config order wins: any override over
    every rotation, then the first rotation. ``coverage`` reports rotation overlaps so they
    can be fixed rather than silently resolved.

    >>> from datetime import date
    >>> r = Rotation("cart", ("ana", "bo"), length=86400.0, handoff="00:00", timezone="UTC",
    ...              start=date(1970, 1, 1))
    >>> s = OnCallSchedule([r], [Override("cart", "cy", 3600.0, 7200.0)])
    >>> [s.on_call("cart", t).person for t in (0.0, 3600.0, 86400.0)]
    ['ana', 'cy', 'bo']
    >>> s.on_call("billing", 0.0) is None
    True
    """

    __slots__ = ("_overrides_by_team", "_rotations_by_team", "overrides", "rotations")

    def __init__(self, rotations: Iterable[Rotation] = (),
                 overrides: Iterable[Override] = ()) -> None:
        self.rotations: tuple[Rotation, ...] = tuple(rotations)
        self.overrides: tuple[Override, ...] = tuple(overrides)
        by_team: dict[str, list[tuple[int, Rotation]]] = {}
        for i, rotation in enumerate(self.rotations):
            by_team.setdefault(rotation.team, []).append((i, rotation))
        self._rotations_by_team = by_team
        overrides_by_team: dict[str, list[Override]] = {}
        for override in self.overrides:
            overrides_by_team.setdefault(override.team, []).append(override)
        self._overrides_by_team = overrides_by_team

    def __repr__(self) -> str:
        return (f"OnCallSchedule({len(self.rotations)} rotations, "
                f"{len(self.overrides)} overrides, teams={list(self.teams)})")

    @property
    def teams(self) -> tuple[str, ...]:
        """Every team with a rotation or an override, sorted."""
        return tuple(sorted(self._rotations_by_team.keys() | self._overrides_by_team.keys()))

    def on_call(self, team: str, at: float) -> OnCall | None:
        """Who is on call for ``team`` at ``at``; ``None`` if nobody (unknown team, a gap)."""
        for override in self._overrides_by_team.get(team, ()):
            if override.active(at):
                return OnCall(override.person, team, "override", None,
                              override.starts_at, override.ends_at)
        for index, rotation in self._rotations_by_team.get(team, ()):
            shift = rotation.shift_at(at)
            if shift is not None:
                return OnCall(shift.person, team, "rotation", index, shift.start, shift.end)
        return None

    def coverage(self, *, start: float, end: float) -> CoverageReport:
        """Exact gaps and overlaps of every team over ``[start, end)``.

        Walks the boundaries of every layer (handoffs, restriction edges, override edges)
        rather than sampling, so a one-second gap is found as surely as a one-week gap.

        >>> from datetime import date, time
        >>> r = Rotation("web", ("ana",), length=86400.0, handoff="00:00", timezone="UTC",
        ...              start=date(1970, 1, 1), hours=(time(9), time(17)))
        >>> report = OnCallSchedule([r]).coverage(start=0.0, end=86400.0)
        >>> [(g.start / 3600, g.end / 3600) for g in report.gaps]
        [(0.0, 9.0), (17.0, 24.0)]
        """
        gaps: list[Gap] = []
        overlaps: list[Overlap] = []
        if not end > start:
            return CoverageReport(start, end, gaps, overlaps)
        for team in self.teams:
            team_gaps, team_overlaps = _team_coverage(
                team,
                rotations=self._rotations_by_team.get(team, []),
                overrides=self._overrides_by_team.get(team, []),
                start=start, end=end)
            gaps.extend(team_gaps)
            overlaps.extend(team_overlaps)
        return CoverageReport(start, end, gaps, overlaps)


def _team_coverage(team: str, *, rotations: Sequence[tuple[int, Rotation]],
                   overrides: Sequence[Override], start: float,
                   end: float) -> tuple[list[Gap], list[Overlap]]:
    # Sweep line over (time, +1 start / -1 end, layer, person) events, layer -1 for overrides.
    # At each instant ends apply before starts, so a handoff within one layer is seamless.
    events: list[tuple[float, int, int, str]] = []
    for index, rotation in rotations:
        for shift in rotation.shifts(start=start, end=end):
            events.append((shift.start, 1, index, shift.person))
            events.append((shift.end, -1, index, shift.person))
    for override in overrides:
        s, e = max(override.starts_at, start), min(override.ends_at, end)
        if s < e:
            events.append((s, 1, -1, override.person))
            events.append((e, -1, -1, override.person))
    events.sort(key=lambda ev: (ev[0], ev[1]))
    active: dict[int, str] = {}
    overriding = 0
    gaps: list[Gap] = []
    overlaps: list[Overlap] = []
    cursor = start
    i = 0
    while cursor < end:
        while i < len(events) and events[i][0] <= cursor:
            _, delta, layer, person = events[i]
            if layer < 0:
                overriding += delta
            elif delta > 0:
                active[layer] = person
            else:
                active.pop(layer, None)
            i += 1
        nxt = events[i][0] if i < len(events) else end
        nxt = min(nxt, end)
        if not active and not overriding:
            if gaps and gaps[-1].end == cursor:
                gaps[-1] = Gap(team, gaps[-1].start, nxt)
            else:
                gaps.append(Gap(team, cursor, nxt))
        if len(active) >= 2:
            people = tuple(active[k] for k in sorted(active))
            last = overlaps[-1] if overlaps else None
            if last is not None and last.end == cursor and last.people == people:
                overlaps[-1] = Overlap(team, last.start, nxt, people)
            else:
                overlaps.append(Overlap(team, cursor, nxt, people))
        cursor = nxt
    return gaps, overlaps


# ---------------------------------------------------------------------------------------------
# Config


_ROTATION_KEYS: Final = frozenset(
    {"team", "members", "length", "handoff", "timezone", "start", "days", "hours"})
_OVERRIDE_KEYS: Final = frozenset({"team", "person", "starts_at", "ends_at"})


def parse_oncall(data: object, *, key: str = "oncall") -> OnCallSchedule:
    """Build the schedule from the ``oncall`` config section; errors name the bad key.

    >>> s = parse_oncall({"rotations": [{"team": "cart", "members": ["ana", "bo"],
    ...     "length": "7d", "handoff": "09:00", "timezone": "Europe/Berlin",
    ...     "start": "2026-11-02", "days": ["mon-fri"], "hours": "09:00-17:00"}],
    ...     "overrides": [{"team": "cart", "person": "cy",
    ...                    "starts_at": "2026-12-24T00:00:00Z", "ends_at": 1798675200}]})
    >>> s.rotations[0].days, s.overrides[0].person
    ((0, 1, 2, 3, 4), 'cy')
    >>> parse_oncall({"rotations": [{"team": "cart"}]})
    Traceback (most recent call last):
    ...
    triage.errors.ConfigError: config oncall.rotations[0].members: required
    """
    if data is None:
        return OnCallSchedule()
    section = _mapping(data, key)
    _no_unknown(section, {"rotations", "overrides"}, key)
    rotations = [_parse_rotation(item, f"{key}.rotations[{i}]")
                 for i, item in enumerate(_sequence(section.get("rotations"), f"{key}.rotations"))]
    overrides = [_parse_override(item, f"{key}.overrides[{i}]")
                 for i, item in enumerate(_sequence(section.get("overrides"), f"{key}.overrides"))]
    return OnCallSchedule(rotations, overrides)


def _mapping(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
    return value


def _sequence(value: object, key: str) -> Sequence[object]:
    if value is None:
        return ()
    if isinstance(value, str | bytes) or not isinstance(value, Sequence):
        raise ConfigError(key, f"expected a list, got {type(value).__name__}")
    return value


def _no_unknown(section: Mapping[str, object], allowed: Iterable[str], key: str) -> None:
    allowed = set(allowed)
    for name in section:
        if name not in allowed:
            raise ConfigError(f"{key}.{name}",
                              f"unknown key (expected one of: {', '.join(sorted(allowed))})")


def _required(section: Mapping[str, object], name: str, key: str) -> object:
    value = section.get(name)
    if value is None or value == "":
        raise ConfigError(f"{key}.{name}", "required")
    return value


def _string(value: object, key: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(key, f"expected a string, got {value!r}")
    return value


def _parse_rotation(item: object, key: str) -> Rotation:
    section = _mapping(item, key)
    _no_unknown(section, _ROTATION_KEYS, key)
    team = _string(_required(section, "team", key), f"{key}.team")
    raw_members = _required(section, "members", key)
    members = tuple(_string(m, f"{key}.members[{i}]")
                    for i, m in enumerate(_sequence(raw_members, f"{key}.members")))
    try:
        length = parse_duration(_required(section, "length", key), "length")
    except ValueError as exc:
        raise ConfigError(f"{key}.length", str(exc).removeprefix("length: ")) from None
    handoff = _clock_text(_required(section, "handoff", key), f"{key}.handoff")
    timezone = _string(_required(section, "timezone", key), f"{key}.timezone")
    start = _date(_required(section, "start", key), f"{key}.start")
    days = None if section.get("days") is None else _days(section["days"], f"{key}.days")
    hours = None if section.get("hours") is None else _hours(section["hours"], f"{key}.hours")
    try:
        return Rotation(team, members, length=length, handoff=handoff, timezone=timezone,
                        start=start, days=days, hours=hours)
    except _FieldError as exc:
        raise ConfigError(f"{key}.{exc.field}", exc.message) from None


def _parse_override(item: object, key: str) -> Override:
    section = _mapping(item, key)
    _no_unknown(section, _OVERRIDE_KEYS, key)
    team = _string(_required(section, "team", key), f"{key}.team")
    person = _string(_required(section, "person", key), f"{key}.person")
    starts_at = _epoch(_required(section, "starts_at", key), f"{key}.starts_at")
    ends_at = _epoch(_required(section, "ends_at", key), f"{key}.ends_at")
    try:
        return Override(team, person, starts_at, ends_at)
    except _FieldError as exc:
        raise ConfigError(f"{key}.{exc.field}", exc.message) from None


def _clock_text(value: object, key: str) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        # YAML 1.1 reads an unquoted 9:00 as the base-60 number 540.
        raise ConfigError(key, f"expected a time of day like \"09:00\", got the number "
                               f"{value} (quote it: YAML reads unquoted 9:00 as 540)")
    if isinstance(value, time):
        return value.isoformat()
    text = _string(value, key)
    try:
        parse_clock(text)
    except ValueError as exc:
        raise ConfigError(key, str(exc)) from None
    return text


def _date(value: object, key: str) -> date:
    if isinstance(value, datetime):
        raise ConfigError(key, "expected a date like 2026-11-02 (the time of day is `handoff`)")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        try:
            return date.fromisoformat(value.strip())
        except ValueError:
            pass
    raise ConfigError(key, f"expected a date like 2026-11-02, got {value!r}")


def _epoch(value: object, key: str) -> float:
    # YAML turns unquoted ISO times into datetimes; naive ones are UTC, as in the settings.
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, date):
        return datetime.combine(value, time(), UTC).timestamp()
    try:
        parsed = parse_timestamp(value, key)
    except TimestampError as exc:
        raise ConfigError(key, exc.message) from None
    if parsed is None:
        raise ConfigError(key, "required")
    return parsed


def _day(value: object, key: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 6:
        return value
    if isinstance(value, str) and value.strip().lower() in _DAY_NAMES:
        return _DAY_NAMES[value.strip().lower()]
    raise ConfigError(key, f"expected a weekday (mon..sun or 0=Mon..6=Sun), got {value!r}")


def _days(value: object, key: str) -> tuple[int, ...]:
    items = [value] if isinstance(value, str) else _sequence(value, key)
    days: set[int] = set()
    for i, item in enumerate(items):
        where = f"{key}[{i}]" if not isinstance(value, str) else key
        if isinstance(item, str) and "-" in item:  # a range such as mon-fri or fri-mon
            first, _, last = item.partition("-")
            a, b = _day(first, where), _day(last, where)
            days.update((a + n) % 7 for n in range((b - a) % 7 + 1))
        else:
            days.add(_day(item, where))
    if not days:
        raise ConfigError(key, "needs at least one weekday (leave it out for every day)")
    return tuple(sorted(days))


def _hours(value: object, key: str) -> tuple[time, time]:
    text = _string(value, key)
    first, sep, last = text.partition("-")
    try:
        if not sep:
            raise ValueError
        begin = parse_clock(first)
        # "24:00" ends a window at midnight; a window ending at or before it starts wraps.
        finish = time() if last.strip() == "24:00" else parse_clock(last)
    except ValueError:
        raise ConfigError(key, f"expected local hours like '09:00-17:00', got {value!r}") from None
    return begin, finish
